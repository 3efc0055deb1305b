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
    /// Everything the collector was made from. A reload keeps a running collector whose
    /// replacement has the same name, type and settings, and with it its state (watermarks,
    /// totals, stream positions, last good values).
    var settings: CollectorSettings { get }
}

extension Collector {
    public func familiesWhenFailed() -> [MetricFamily] { [] }
}

/// Equatable values of any types, compared part by part: a collector's settings.
public struct CollectorSettings: Sendable, Equatable {
    private let parts: [Part]

    public init<each Value: Equatable & Sendable>(_ value: repeat each Value) {
        var parts: [Part] = []
        for part in repeat each value { parts.append(Part(part)) }
        self.parts = parts
    }

    /// One value with the equality of its own type.
    private struct Part: Sendable, Equatable {
        let value: any Sendable
        let equals: @Sendable (any Sendable) -> Bool

        init<Value: Equatable & Sendable>(_ value: Value) {
            self.value = value
            equals = { ($0 as? Value) == value }
        }

        static func == (left: Part, right: Part) -> Bool { left.equals(right.value) }
    }
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

/// The problems of one run, one per key with a count, so that a million bad rows (or a
/// thousand queues an ACL does not cover) make one line naming the first of them.
package struct ProblemTally {
    /// What the count of the further ones is of, after "and N more" (`queues`, say).
    private let more: String
    private var first: [String: (reason: String, message: String, count: Int)] = [:]
    private var order: [String] = []

    package init(countingMore more: String = "") {
        self.more = more
    }

    /// Counts a problem; `message` is made only for the first of its key.
    package mutating func add(_ key: String, reason: String, _ message: @autoclosure () -> String) {
        if let existing = first[key] {
            first[key]?.count = existing.count + 1
        } else {
            first[key] = (reason, message(), 1)
            order.append(key)
        }
    }

    package var list: [CollectionProblem] {
        order.compactMap { key in
            first[key].map { entry in
                let suffix = entry.count > 1 ? " (and \(entry.count - 1) more\(more.isEmpty ? "" : " " + more))" : ""
                return CollectionProblem(reason: entry.reason, entry.message + suffix)
            }
        }
    }
}
