import Foundation
import Glibc
import TelltaleMetrics

/// Wall-clock time as Unix seconds, for timestamps exposed in metrics and shown on `/`.
public struct UnixTime: Sendable, Comparable {
    public let seconds: Double

    public init(seconds: Double) { self.seconds = seconds }

    public static var now: UnixTime {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UnixTime(seconds: Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9)
    }

    /// As shown on `/` and in alert notices: `2026-11-28T09:06:19Z`; whole seconds, clamped to
    /// the years 0001–9999 (NaN as the epoch). Computed here rather than with Foundation's
    /// `ISO8601FormatStyle`, whose calendar and time zone load ICU's data into the process.
    public var iso8601: String {
        let bounded = seconds.isNaN ? 0 : min(max(seconds, Self.earliest), Self.latest)
        let whole = Int64(bounded.rounded(.down))
        let days = (whole - (whole < 0 ? 86_399 : 0)) / 86_400
        let secondOfDay = whole - days * 86_400
        let (year, month, day) = Self.civilDate(daysSinceEpoch: days)
        return Self.digits(year, 4) + "-" + Self.digits(month, 2) + "-" + Self.digits(day, 2) + "T"
            + Self.digits(secondOfDay / 3600, 2) + ":" + Self.digits(secondOfDay / 60 % 60, 2) + ":"
            + Self.digits(secondOfDay % 60, 2) + "Z"
    }

    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    private static let earliest = -62_135_596_800.0
    private static let latest = 253_402_300_799.0

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
    /// `civil_from_days`, in eras of 400 years).
    private static func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = daysSinceEpoch + 719_468  // from 0000-03-01
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func digits(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    public static func < (lhs: UnixTime, rhs: UnixTime) -> Bool { lhs.seconds < rhs.seconds }
}

extension Duration {
    /// The duration as fractional seconds.
    public var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}

/// How the process names a UTC local time zone to Foundation.
///
/// Foundation keeps the zone named `GMT` in code, while any other name, `Etc/UTC` included
/// (where `/etc/localtime` points on most servers and images), loads ICU's zone tables: about
/// 1.5 MiB resident for good, read once at start through Hummingbird's `Date` header. On a UTC
/// host Telltale therefore sets `TZ=GMT` as it starts. Local time stays UTC either way, and logs show
/// offsets (`+0000`), not zone names. The zone is then fixed for the process' life: a
/// change of `/etc/localtime` reaches the logs at the next start.
public enum LocalTimeZone {
    /// Names of UTC in a zoneinfo directory (`right/UTC` is not among them: its clock counts
    /// leap seconds).
    private static let namesOfUTC: Set<String> = [
        "UTC", "UCT", "Universal", "Zulu", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich",
        "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0",
        "Etc/GMT-0", "Etc/Greenwich",
    ]

    /// The zone of an IANA name, UTC's names as GMT (same clock, no ICU zone behind it); nil
    /// for an unknown name.
    public static func zone(named name: String) -> TimeZone? {
        namesOfUTC.contains(name) ? .gmt : TimeZone(identifier: name)
    }

    /// Sets `TZ=GMT` when nothing names the zone (neither `TZ` nor `TZFILE`) and the local
    /// zone is UTC. Call it before anything starts a thread or reads the zone.
    public static func nameUTCAsGMT() {
        let environmentNamesZone = getenv("TZ") != nil || getenv("TZFILE") != nil
        guard namesGMT(environmentNamesZone: environmentNamesZone, localtime: readLink("/etc/localtime")) else { return }
        setenv("TZ", "GMT", 0)
    }

    /// What `/etc/localtime` is to the decision: `.missing` (glibc then uses UTC), a link's
    /// target, or `.other` (a copied file, which is left alone).
    package enum Localtime {
        case missing
        case link(String)
        case other
    }

    package static func namesGMT(environmentNamesZone: Bool, localtime: Localtime) -> Bool {
        guard !environmentNamesZone else { return false }
        switch localtime {
        case .missing: return true
        case .other: return false
        case .link(let target): return zoneName(inLink: target).map(namesOfUTC.contains) ?? false
        }
    }

    /// What follows the last `zoneinfo/` in a link's target, if anything.
    private static func zoneName(inLink target: String) -> String? {
        let bytes = Array(target.utf8), marker = Array("zoneinfo/".utf8)
        guard bytes.count >= marker.count else { return nil }
        for start in stride(from: bytes.count - marker.count, through: 0, by: -1)
        where bytes[start..<start + marker.count].elementsEqual(marker) {
            return String(decoding: bytes[(start + marker.count)...], as: UTF8.self)
        }
        return nil
    }

    private static func readLink(_ path: String) -> Localtime {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, Int(PATH_MAX))
        if count >= 0 {
            return .link(String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return errno == ENOENT ? .missing : .other
    }
}
