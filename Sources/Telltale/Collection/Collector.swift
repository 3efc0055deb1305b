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
    /// What to publish when a run timed out or threw. A collector with an `*_up` family
    /// returns it at 0: a source that cannot answer must read as 0, not vanish.
    func familiesWhenFailed() -> [MetricFamily]
}

extension Collector {
    public func familiesWhenFailed() -> [MetricFamily] { [] }
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

    /// Messages are clipped to this: a source's error text may be any size.
    public static let maxMessageLength = 500

    public init(reason: String, _ message: String) {
        self.reason = reason
        self.message = message.clipped(Self.maxMessageLength)
    }

    public var description: String { "\(reason): \(message)" }
}
