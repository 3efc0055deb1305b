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

    /// As shown on `/` and in alert notices: `2026-11-28T09:06:19Z`.
    public var iso8601: String { Date(timeIntervalSince1970: seconds).formatted(.iso8601) }

    public static func < (lhs: UnixTime, rhs: UnixTime) -> Bool { lhs.seconds < rhs.seconds }
}

extension Duration {
    /// The duration as fractional seconds.
    public var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
