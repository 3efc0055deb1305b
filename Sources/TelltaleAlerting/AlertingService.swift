import Logging
import ServiceLifecycle
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Loads rules, evaluates them after every collection against the snapshot `/metrics`
/// serves, records transitions in the outbox and — on the one replica holding the advisory
/// lock — delivers them. Evaluation (`Evaluation.swift`), leadership (`Leadership.swift`)
/// and delivery (`DeliveryLoop.swift`) are extensions of this type around one state.
public final class AlertingService: Service, Sendable {
    let config: AlertingConfig
    let store: MetricStore
    let client: PostgresClient
    let http: HTTPClient
    let logger: Logger
    let throttled: LogThrottle
    /// Wall-clock time; a parameter so that tests can move it.
    let now: @Sendable () -> UnixTime
    private let wake: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>

    struct State {
        var catalog = RuleCatalog()
        var evaluator: Evaluator
        var leader = false
        var leaderGeneration = -1
        var unsaved: [AlertEvent] = []
        /// Unix seconds of the last reload, on the service's clock.
        var lastReload: Double?
        var databaseError: String?
        var queueDepths: [String: Int] = [:]
        var notifications = FamilyBuilder(AlertMetrics.notifications)
        var lastNotification: [String: String] = [:]
        /// Unix seconds of each channel's last delivery and last failed attempt.
        var lastDelivery: [String: Double] = [:]
        var lastFailure: [String: Double] = [:]
        var failingChannels: Set<String> = []
        /// When the outbox next needs the delivery loop (Unix seconds): now after a record or
        /// a change of leader, a row's retry time, nil when nothing waits.
        var deliveryDue: Double?
        /// How long the last evaluation of every rule took.
        var evaluationSeconds: Double?
    }

    let state: Mutex<State>
    /// Alertmanager channels' alerts, re-sent by `alertmanagerLoop` (not through the outbox).
    let alertmanager = AlertmanagerSender()

    public init(config: AlertingConfig, store: MetricStore, logger: Logger, now: @escaping @Sendable () -> UnixTime = { .now }) {
        self.config = config
        self.store = store
        self.logger = logger
        self.now = now
        throttled = LogThrottle(logger)
        client = config.makeClient()
        http = HTTPClient(threads: 4)
        state = Mutex(State(evaluator: Evaluator(samples: SampleHistory(maxSamples: config.maxSamples))))
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The least time from one evaluation's end to the next one's start on collections.
    static let evaluationSpacing = Duration.milliseconds(250)

    /// Called after every collector run: evaluate against the fresh snapshot.
    public func collectionFinished() {
        wake.yield()
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await _ in self.wakeups {
                        await self.evaluateOnce()
                        // With many sources, collections finish all the time (fifty providers
                        // polled each second): evaluating after each one kept a core busy with
                        // evaluations and the renders of their metrics. Collections that finish
                        // meanwhile are coalesced into the next evaluation.
                        try? await Task.sleep(for: Self.evaluationSpacing)
                    }
                }
                group.addTask { await self.deliveryLoop() }
                group.addTask { await OutboxRetention(service: self).run() }
                if self.config.systemHealth.enabled { group.addTask { await SystemHealthWriter(service: self).run() } }
                group.addTask { await self.alertmanagerLoop() }
                group.addTask {
                    // A periodic wake-up, so `for` durations elapse and rules reload without collections.
                    while (try? await Task.sleep(for: self.config.interval)) != nil { self.wake.yield() }
                }
            }
        }
    }

    var outbox: Outbox { Outbox(client: client, timeouts: config.timeouts) }

    /// Publishes alerting's families; the store renders only if one of them changed.
    func publishMetrics() async {
        // Built from a copy, outside the lock: matching silences against many alerts takes time.
        let state = state.withLock { $0 }
        let families = AlertMetrics.families(
            catalog: state.catalog, evaluator: state.evaluator, now: now().seconds, leader: state.leader,
            databaseUp: state.databaseError == nil, notifications: state.notifications, queueDepths: state.queueDepths,
            failing: state.failingChannels, unrecordedCount: state.unsaved.count, evaluationSeconds: state.evaluationSeconds)
        await store.publish(["alerting": families])
    }
}

extension AlertingConfig {
    /// The one connection to the alerting database, for the service and the CLI commands.
    func makeClient() -> PostgresClient {
        PostgresClient(target: "alerting", dsn: dsn, connectTimeout: connectTimeout)
    }
}
