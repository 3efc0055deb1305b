import Synchronization
import TelltaleMetrics

/// What one collector's last runs looked like, for `/`, `/readyz` and the self-metrics.
public struct CollectorStatus: Sendable {
    public enum State: String, Sendable {
        case pending, ok, failed
    }

    public let name: String
    public var state: State = .pending
    public var lastError: String?
    public var lastDuration: Duration?
    public var lastSuccess: UnixTime?
}

/// Telltale's own metrics about its collectors, updated after every run.
public final class CollectorHealth: Sendable {
    package static let up = MetricDescriptor(
        "telltale_collector_up", .gauge, help: "Whether the collector's last run succeeded (1) or failed or timed out (0).")
    package static let duration = MetricDescriptor(
        "telltale_collector_duration_seconds", .histogram, help: "How long collector runs took.", unit: "seconds")
    package static let lastSuccess = MetricDescriptor(
        "telltale_collector_last_success_timestamp_seconds", .gauge,
        help: "Unix time of the collector's last successful run.", unit: "seconds")
    package static let errors = MetricDescriptor(
        "telltale_collector_errors", .counter, help: "Problems met by collector runs, by reason.")
    package static let build = MetricDescriptor("telltale_build", .info, help: "Telltale's version.")
    /// Counted by the collectors that cap their series (SQL rows, queues, provider balances).
    package static let seriesDropped = MetricDescriptor(
        "telltale_series_dropped", .counter, help: "Series not exported because a collector's label-set cap was reached.")

    private struct State {
        /// The collectors in the order `/` lists them.
        var order: [String]
        /// Set once every collector's first run was visible: collectors a reload adds later
        /// are pending on `/`, but do not make a ready replica unready.
        var wasReady = false
        var statuses: [String: CollectorStatus]
        var up = FamilyBuilder(CollectorHealth.up)
        var duration = FamilyBuilder(CollectorHealth.duration, buckets: Buckets.defaultSeconds)
        var lastSuccess = FamilyBuilder(CollectorHealth.lastSuccess)
        var errors = FamilyBuilder(CollectorHealth.errors)
    }

    private let state: Mutex<State>

    public init(collectors: [String]) {
        state = Mutex(State(order: collectors,
                            statuses: Dictionary(collectors.map { ($0, CollectorStatus(name: $0)) }, uniquingKeysWith: { first, _ in first })))
    }

    /// After a reload: collectors still present keep their status and series (a replaced
    /// one's until its first run), new ones are pending, removed ones disappear.
    package func replaceCollectors(with collectors: [String]) {
        state.withLock { state in
            let kept = Set(collectors)
            state.order = collectors
            state.statuses = Dictionary(collectors.map { ($0, state.statuses[$0] ?? CollectorStatus(name: $0)) },
                                        uniquingKeysWith: { first, _ in first })
            let stillRunning: (Labels) -> Bool = { $0["collector"].map(kept.contains) ?? true }
            state.up.retain(where: stillRunning)
            state.duration.retain(where: stillRunning)
            state.lastSuccess.retain(where: stillRunning)
            state.errors.retain(where: stillRunning)
        }
    }

    /// Records a finished (or timed-out) run.
    package func record(_ collector: String, duration: Duration, problems: [CollectionProblem], at now: UnixTime) {
        state.withLock { state in
            let labels: Labels = ["collector": collector]
            let succeeded = problems.isEmpty
            state.up.set(succeeded ? 1 : 0, labels)
            state.duration.observe(duration.seconds, labels)
            for problem in problems {
                state.errors.add(1, labels.adding("reason", problem.reason))
            }
            var status = state.statuses[collector] ?? CollectorStatus(name: collector)
            status.lastDuration = duration
            status.lastError = problems.first?.description
            if succeeded {
                status.lastSuccess = now
                state.lastSuccess.set(now.seconds, labels)
            }
            state.statuses[collector] = status
        }
    }

    /// Marks the run's result as visible on `/metrics`: `/readyz` waits for this, not for the
    /// run alone, so that ready means the first results can be scraped.
    package func settle(_ collector: String, succeeded: Bool) {
        state.withLock { $0.statuses[collector]?.state = succeeded ? .ok : .failed }
    }

    /// Counts a problem found outside a run (a family clash found while merging, say).
    package func count(_ collector: String, reason: String) {
        state.withLock { $0.errors.add(1, ["collector": collector, "reason": reason]) }
    }

    public var statuses: [CollectorStatus] {
        state.withLock { state in state.order.compactMap { state.statuses[$0] } }
    }

    /// Collectors whose first run is not yet visible.
    public var pending: [String] {
        statuses.filter { $0.state == .pending }.map(\.name)
    }

    /// What `/readyz` waits for: the collectors of the start still pending; none once all
    /// of them were visible (a reload does not make the replica unready).
    public var notReady: [String] {
        let waiting = pending
        return state.withLock { state in
            if waiting.isEmpty { state.wasReady = true }
            return state.wasReady ? [] : waiting
        }
    }

    package var families: [MetricFamily] {
        state.withLock { state in
            var build = FamilyBuilder(Self.build)
            build.set(1, ["version": TelltaleVersion.current])
            return [state.up.build(), state.duration.build(), state.lastSuccess.build(), state.errors.build(), build.build()]
        }
    }
}
