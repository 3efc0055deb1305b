import TelltaleMetrics

/// Conversions of numbers that come from outside (sources, headers, table rows, config).
///
/// Swift traps when a `Double` that is not finite or out of range is converted to an integer
/// or a `Duration`: one odd header or row would kill the process, and a crash loop would
/// follow while the row exists. Every such number goes through one of these instead.
package enum Checked {
    /// The whole part of `value`, or nil when it is not finite or does not fit in an `Int64`.
    package static func int64(_ value: Double) -> Int64? {
        Int64(exactly: value.rounded(.towardZero))
    }

    /// The whole part of `value`, or nil when it is not finite or does not fit in an `Int`.
    package static func int(_ value: Double) -> Int? {
        Int(exactly: value.rounded(.towardZero))
    }

    /// `seconds` as a duration, or nil when it is not a finite number from 0 to `limit`.
    package static func duration(seconds: Double, max limit: Double) -> Duration? {
        guard seconds.isFinite, seconds >= 0, seconds <= limit else { return nil }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// `seconds` clamped into 0…`limit`, or nil when it is not a number at all.
    package static func clampedDuration(seconds: Double, max limit: Double) -> Duration? {
        guard !seconds.isNaN else { return nil }
        return duration(seconds: min(max(seconds, 0), limit), max: limit)
    }
}
