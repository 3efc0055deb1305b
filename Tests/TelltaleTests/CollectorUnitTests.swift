import NIOCore
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct PostgresUnitTests {
    @Test func timestampsParseInUTC() {
        #expect(PGTimestamp.parse("1970-01-01") == 0)
        #expect(PGTimestamp.parse("2026-11-21 17:03:55.25+00") == 1_795_280_635.25)
        #expect(PGTimestamp.parse("2026-11-21 18:03:55.25+01") == 1_795_280_635.25)
        #expect(PGTimestamp.parse("2026-11-21 12:33:55.25-04:30") == 1_795_280_635.25)
        #expect(PGTimestamp.parse("infinity") == .infinity)
        #expect(PGTimestamp.parse("garbage") == nil)
    }

    @Test func watermarksCompareBigIntegersExactly() {
        var watermark = Watermark(text: "0")
        watermark.advance(to: .int(1_800_000_000_000_000_001))
        watermark.advance(to: .int(1_800_000_000_000_000_003))
        watermark.advance(to: .int(1_800_000_000_000_000_002))
        #expect(watermark.text == "1800000000000000003")
        watermark.advance(to: .null)
        #expect(watermark.text == "1800000000000000003")
    }

    @Test func timestampWatermarksKeepTheServersText() {
        var watermark = Watermark(text: "1970-01-01")
        watermark.advance(to: .timestamp(seconds: 1_795_280_635.123456, text: "2026-11-21 17:03:55.123456+00"))
        watermark.advance(to: .timestamp(seconds: 1_795_280_000, text: "2026-11-21 16:53:20+00"))
        #expect(watermark.text == "2026-11-21 17:03:55.123456+00")
    }

    @Test func dsnPasswordsAreRedacted() {
        let info = DSNInfo("postgres://app:s3cret@db.example:5433/shop")
        #expect(info.isValid && info.password == "s3cret")
        #expect(info.redact("auth failed for s3cret") == "auth failed for ***")
        let broken = DSNInfo("postgresql://app:s3cret@[::1/shop")
        #expect(!broken.isValid)
        #expect(!broken.redact("bad URI postgresql://app:s3cret@[::1/shop").contains("s3cret"))
    }
}

@Suite struct QueueUnitTests {
    @Test func queuesWhoseNamesDifferOnlyInUnicodeNormalisationAreTwoQueues() {
        // Two Redis keys (é in NFC and in NFD) that Swift's String == holds equal.
        let composed = QueueID(prefix: "bull", name: "caf\u{E9}", source: "default")
        let decomposed = QueueID(prefix: "bull", name: "cafe\u{301}", source: "default")
        #expect(composed != decomposed)
        #expect(Set([composed, decomposed]).count == 2)
        #expect((composed < decomposed) != (decomposed < composed))
    }

    func counts(_ replies: [RedisValue]) -> QueueCounts {
        QueueCounts(queue: QueueID(prefix: "bull", name: "q", source: "default"), replies: ArraySlice(replies))
    }

    func replies(wait: Int64, waitTail: String?, waitBeforeTail: String? = nil, pausedFlag: RedisValue = .null,
                 metaPaused: Int64 = 0) -> [RedisValue] {
        // LRANGE key -2 -1 answers the last two entries, oldest first.
        let waitEnd = [waitBeforeTail, waitTail].compactMap { $0 }.map(RedisValue.string)
        return [.integer(wait), .array(waitEnd), .integer(0), .array([]), .integer(1), .integer(2), .integer(3), .integer(4),
                .integer(5), .integer(6), pausedFlag, .integer(metaPaused), .integer(1),
                .array([.string("7"), .string("0:123")]),
                .array([.array([.string("1700000000000-0"), .array(["event", "completed", "jobId", "7"].map(RedisValue.string))])]),
                .integer(2)]
    }

    /// Regression: NOPERM, WRONGTYPE or MOVED read as zeros with the collector up.
    @Test func anErrorReplyIsTheQueuesError() {
        var withError = replies(wait: 9, waitTail: "41")
        withError[6] = .error("NOPERM this user has no permissions to access one of the keys used as arguments")
        #expect(counts(withError).error?.hasPrefix("NOPERM") == true)
        #expect(counts(replies(wait: 9, waitTail: "41")).error == nil)
        #expect(counts(Array(replies(wait: 9, waitTail: "41").prefix(10))).error != nil)
    }

    /// Regression: LLEN answering Int64.min (with a legacy marker at the tail) trapped.
    @Test func hostileIntegersAreClampedNotTrapped() {
        var hostile = replies(wait: 0, waitTail: "0:1700000000000")
        hostile[0] = .integer(.min)
        #expect(counts(hostile).states[0] == 0)
        hostile[4] = .integer(.min)
        #expect(counts(hostile).states.allSatisfy { $0 >= 0 })
    }

    @Test func aQueueWithoutMetaOrIdIsGone() {
        var obliterated = replies(wait: 0, waitTail: nil)
        obliterated[15] = .integer(0)
        #expect(!counts(obliterated).exists)
        #expect(counts(replies(wait: 0, waitTail: nil)).exists)
    }

    /// Regression: a renamed AUTH put the password in the log through the quoted arguments.
    @Test func errorRepliesNeverQuoteArguments() {
        let reply = "ERR unknown command 'AUTH', with args beginning with: 'hunter2' "
        #expect(!RedisReplyError.describe(reply).contains("hunter2"))
        #expect(RedisReplyError.describe("NOAUTH Authentication required.").contains("queues.redis.password"))
        #expect(RedisReplyError.code("MOVED 3999 127.0.0.1:6381") == "MOVED")
    }

    @Test func legacyMarkersAreNotCounted() {
        let marked = counts(replies(wait: 3, waitTail: "0:1700000000000", waitBeforeTail: "12"))
        #expect(marked.states[0] == 2)
        #expect(marked.headJobID == "12")
        let onlyMarker = counts(replies(wait: 1, waitTail: "0:1700000000000"))
        #expect(onlyMarker.states[0] == 0 && onlyMarker.headJobID == nil)
    }

    @Test func statesFollowGetJobCountsOrder() {
        let result = counts(replies(wait: 9, waitTail: "41"))
        #expect(result.states == [9, 0, 1, 2, 3, 4, 5, 6])
        #expect(result.activeJobIDs == ["7"])
        #expect(result.overdueDelayed == 1)
        #expect(result.events.map(\.jobId) == ["7"] && result.events[0].ms == 1_700_000_000_000)
    }

    @Test func commandsAreEncodedInRESP() {
        var commands = RedisCommands([["PING"]])
        commands.append("LRANGE", key: "bull:é:", "wait", "-2", "-1")
        commands.append(["SET", "", String(repeating: "x", count: 10)])
        #expect(commands.count == 3)
        let expected = "*1\r\n$4\r\nPING\r\n" + "*4\r\n$6\r\nLRANGE\r\n$12\r\nbull:é:wait\r\n$2\r\n-2\r\n$2\r\n-1\r\n"
            + "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$10\r\nxxxxxxxxxx\r\n"
        #expect(String(buffer: commands.bytes) == expected)
    }

    @Test func pausedFlagsOfEveryLayout() {
        #expect(counts(replies(wait: 0, waitTail: nil, pausedFlag: .string("1"))).isPaused)
        #expect(counts(replies(wait: 0, waitTail: nil, metaPaused: 1)).isPaused)
        #expect(!counts(replies(wait: 0, waitTail: nil)).isPaused)
    }

    @Test func discoveryReadsQueueNamesFromKeys() {
        #expect(QueueDiscovery.queue(fromKey: "bull:emails:id", prefix: "bull", source: "default") == QueueID(prefix: "bull", name: "emails", source: "default"))
        #expect(QueueDiscovery.queue(fromKey: "{bull}:a:b:meta", prefix: "{bull}", source: "default") == QueueID(prefix: "{bull}", name: "a:b", source: "default"))
        #expect(QueueDiscovery.queue(fromKey: "bull:emails:123", prefix: "bull", source: "default") == nil)
        #expect(QueueDiscovery.globEscaped("b[u]*?") == #"b\[u\]\*\?"#)
    }

    @Test func workersAreCountedUnderBothNamingSchemes() {
        let names: [Substring] = ["bull:ZW1haWxz", "bull:ZW1haWxz:w:node-1", "bull:emails:w:py", "bull:emails", "bull:ZW1haWxz:qe",
                                  "bull:other"]
        #expect(QueueCollector.workerCount(QueueID(prefix: "bull", name: "emails", source: "default"), names) == 4)
        // Names are bytes to Redis: a worker of the NFD queue is not one of the NFC queue's.
        let cafe: [Substring] = ["bull:caf\u{E9}:w:1", "bull:cafe\u{301}:w:2", "bull:cafe\u{301}"]
        #expect(QueueCollector.workerCount(QueueID(prefix: "bull", name: "caf\u{E9}", source: "default"), cafe) == 1)
    }

    @Test func redisURLs() {
        let full = RedisSettings.parse(url: "redis://ro:pa:ss@cache.local:6380/5")
        #expect(full?.endpoint == .tcp(host: "cache.local", port: 6380))
        #expect(full?.username == "ro" && full?.password == "pa:ss" && full?.database == 5)
        #expect(RedisSettings.parse(url: "redis://:secret@h")?.password == "secret")
        #expect(RedisSettings.parse(url: "unix:///run/redis.sock?db=2")?.endpoint == .unix(path: "/run/redis.sock"))
        #expect(RedisSettings.parse(url: "http://x") == nil)
        #expect(RedisSettings.parse(url: "redis://h/99999999999") == nil)
        #expect(RedisSettings.parse(url: "unix:///s?db=-1") == nil)
        #expect(RedisSettings.parse(url: "redis://u:p%40ss%3Aw%2Frd%2541%231@h:1/0")?.password == "p@ss:w/rd%41#1")
        #expect(RedisSettings.parse(url: "redis://[::1]:6380/3")?.endpoint == .tcp(host: "::1", port: 6380))
        #expect(RedisSettings.parse(url: "redis://[::1]")?.endpoint == .tcp(host: "::1", port: 6379))
        #expect(!"\(full!)".contains("pa:ss"))
    }
}

@Suite struct ProviderUnitTests {
    let document = JSONValue.parse(Array(#"""
        {"btc": {"amount": 0.5, "pendingAmount": "0.25"}, "eth": {"amount": 1, "pendingAmount": 0},
         "data": {"wallets": [{"code": "EUR", "available": "10.50"}, {"code": "USD", "available": true}]}}
        """#.utf8))!

    @Test func keysBecomeLabels() throws {
        let path = try #require(JSONPath("{currency}"))
        let selected = path.select(document).filter { ["btc", "eth"].contains($0.labels.first?.1) }
        #expect(selected.map { $0.labels.first?.1 } == ["btc", "eth"])
        #expect(JSONPath("amount")!.select(selected[0].node).first?.node.number == 0.5)
        #expect(JSONPath("pendingAmount")!.select(selected[0].node).first?.node.number == 0.25)
    }

    @Test func arraysAndNumericStrings() throws {
        let wallets = try #require(JSONPath("$.data.wallets[*]")).select(document)
        #expect(wallets.count == 2)
        #expect(JSONPath("available")!.select(wallets[0].node).first?.node.number == 10.5)
        // A boolean is not a number, even though Foundation would bridge it to 1.
        #expect(JSONPath("available")!.select(wallets[1].node).first?.node.number == nil)
        #expect(JSONPath("data.wallets[1].code")!.select(document).first?.node.labelText == "USD")
    }

    @Test func malformedPathsAreRejected() {
        #expect(JSONPath("a[") == nil)
        #expect(JSONPath("{}") == nil)
        #expect(JSONPath("a[x]") == nil)
        #expect(JSONPath("a['b.c']")?.steps == [.key("a"), .key("b.c")])
    }

    @Test func garbageIsNotJSON() {
        #expect(JSONValue.parse(Array("<html>".utf8)) == nil)
        #expect(JSONValue.parse(Array(#"{"a": "#.utf8)) == nil)
    }
}
