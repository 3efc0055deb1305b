import Foundation
import Testing
@testable import TelltaleCore

/// Telltale's own JSON writer and ISO 8601 times, which replaced Foundation's (and with them
/// ICU's locale, collation and time-zone data) on the notification path.
@Suite struct JSONTextTests {
    @Test func keysInByteOrderAndCompact() {
        let value: JSONValue = ["b": 1, "a": ["z": true, "Z": nil], "é": "x", "ez": "y", "": []]
        #expect(value.text == #"{"":[],"a":{"Z":null,"z":true},"b":1,"ez":"y","é":"x"}"#)
    }

    @Test func stringsEscapeQuotesBackslashesAndControlCharacters() {
        let value = JSONValue.string("say \"hi\"\\ \n\r\t\u{1}\u{1F} / ü 🚨")
        #expect(value.text == #""say \"hi\"\\ \n\r\t\u0001\u001f / ü 🚨""#)
    }

    @Test func numbersWholeWithoutFractionAndNonFiniteAsNull() {
        #expect(JSONValue.array([3, .number(-0.0), .number(1.5), .number(0.1), .number(1e300), .number(-2e-7)]).text
                == "[3,0,1.5,0.1,1e+300,-2e-07]")
        #expect(JSONValue.array([.number(.nan), .number(.infinity), .number(-.infinity)]).text == "[null,null,null]")
        #expect(JSONValue.number(0x1p53).text == "9007199254740992.0")
        #expect(JSONValue.number(-0x1p63).text == "-9.223372036854776e+18")
        #expect(JSONValue.int(Int(Int32.max)).text == "2147483647")
    }

    @Test func foundationReadsBackTheSameDocument() throws {
        let value: JSONValue = ["text": "line\none \"quoted\" \u{0}", "n": .number(2.25), "list": .strings(["a", "b"]),
                                "labels": .strings(["mount": "/", "path": "C:\\"]), "flag": false, "none": nil]
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(value.bytes)) as? NSDictionary)
        #expect(parsed["text"] as? String == "line\none \"quoted\" \u{0}")
        #expect(parsed["n"] as? Double == 2.25)
        #expect(parsed["list"] as? [String] == ["a", "b"])
        #expect(parsed["labels"] as? [String: String] == ["mount": "/", "path": "C:\\"])
        #expect(parsed["flag"] as? Bool == false)
        #expect(parsed["none"] is NSNull)
        #expect(JSONValue.parse(value.bytes) == value)
    }

    @Test func iso8601AgreesWithFoundation() {
        let times: [Double] = [0, 1, 59.999, 86_399, 86_400, 951_782_400, 951_868_799, 1_800_000_000, 1_709_164_800,
                               4_107_542_400, -1, -86_400, -2_208_988_800, -12_219_292_800, 253_402_300_799, 1e10 + 0.5]
        for time in times {
            #expect(UnixTime(seconds: time).iso8601 == Date(timeIntervalSince1970: time).formatted(.iso8601), "\(time)")
        }
    }

    /// ISO 8601 counts Gregorian years before 1582 too; Foundation's calendar turns Julian there.
    @Test func iso8601IsProlepticGregorian() {
        #expect(UnixTime(seconds: -12_219_292_801).iso8601 == "1582-10-14T23:59:59Z")
        #expect(UnixTime(seconds: -62_135_596_800).iso8601 == "0001-01-01T00:00:00Z")
    }

    @Test func iso8601ClampsWhatFoundationCannotShow() {
        #expect(UnixTime(seconds: .nan).iso8601 == "1970-01-01T00:00:00Z")
        #expect(UnixTime(seconds: .infinity).iso8601 == "9999-12-31T23:59:59Z")
        #expect(UnixTime(seconds: -.infinity).iso8601 == "0001-01-01T00:00:00Z")
        #expect(UnixTime(seconds: 1e300).iso8601 == "9999-12-31T23:59:59Z")
    }
}

/// A UTC host's zone is named GMT, which Foundation keeps without ICU's zone tables; any zone
/// the operator names, or a local zone other than UTC, is left as it is.
@Suite struct LocalTimeZoneTests {
    @Test func utcLinksAndAMissingFileAreNamedGMT() {
        for target in ["/usr/share/zoneinfo/Etc/UTC", "../usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/GMT+0",
                       "/usr/share/zoneinfo/Zulu"] {
            #expect(LocalTimeZone.namesGMT(environmentNamesZone: false, localtime: .link(target)), "\(target)")
        }
        #expect(LocalTimeZone.namesGMT(environmentNamesZone: false, localtime: .missing))
    }

    @Test func otherZonesAndNamedZonesAreLeftAlone() {
        for target in ["/usr/share/zoneinfo/Europe/Berlin", "/usr/share/zoneinfo/right/UTC", "/usr/share/zoneinfo/Etc/GMT+1",
                       "/etc/UTC", "/usr/share/zoneinfo/", "UTC"] {
            #expect(!LocalTimeZone.namesGMT(environmentNamesZone: false, localtime: .link(target)), "\(target)")
        }
        #expect(!LocalTimeZone.namesGMT(environmentNamesZone: false, localtime: .other))
        #expect(!LocalTimeZone.namesGMT(environmentNamesZone: true, localtime: .link("/usr/share/zoneinfo/Etc/UTC")))
        #expect(!LocalTimeZone.namesGMT(environmentNamesZone: true, localtime: .missing))
    }
}
