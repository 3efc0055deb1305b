import TelltaleMetrics

/// A source Telltale polls on its own schedule.
///
/// `collect()` returns the source's complete current families; they replace the previous
/// run's, so a series the source no longer reports disappears from `/metrics`.
public protocol Collector: Sendable {
    /// The `collector` label value; unique among the enabled collectors.
    var name: String { get }
    var schedule: Schedule { get }
    func collect() async throws -> CollectionResult
}

public struct Schedule: Sendable, Equatable {
    public var interval: Duration
    public var timeout: Duration

    public init(interval: Duration, timeout: Duration) {
        self.interval = interval
        self.timeout = timeout
    }
}

/// One run's families plus the problems it met and recovered from (a failed query among
/// several, say). Any problem marks the run unsuccessful in `telltale_collector_up`.
public struct CollectionResult: Sendable {
    public var families: [MetricFamily]
    public var problems: [CollectionProblem]

    public init(families: [MetricFamily], problems: [CollectionProblem] = []) {
        self.families = families
        self.problems = problems
    }
}

/// A failure with a short machine-readable reason (the `reason` label) and a message for logs
/// and the status page. Messages must never contain secrets: collectors build them from
/// redacted values only.
public struct CollectionProblem: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public let message: String

    public init(reason: String, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason): \(message)" }
}
