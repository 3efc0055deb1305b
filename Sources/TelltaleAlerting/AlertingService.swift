import Logging
import ServiceLifecycle
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// What `/` shows about alerting.
public struct AlertingStatus: Sendable {
    public struct RuleRow: Sendable {
        public let name: String
        public let state: String
        public let error: String?
    }

    public struct ChannelRow: Sendable {
        public let name: String
        public let kind: String
        public let lastNotification: String
        public let failing: Bool
    }

    public var leader = false
    public var databaseError: String?
    public var rules: [RuleRow] = []
    public var channels: [ChannelRow] = []
}

/// Loads rules, evaluates them after every collection against the snapshot `/metrics`
/// serves, records transitions in the outbox and — on the one replica holding the advisory
/// lock — delivers them.
public final class AlertingService: Service, Sendable {
    /// `pg_try_advisory_lock` key shared by every replica ("telltale" in ASCII).
    static let leaderLockKey = "128034866668645"
    static let deliveryTick = Duration.seconds(1)

    private let config: AlertingConfig
    private let store: MetricStore
    private let client: PostgresClient
    private let http: HTTPClient
    private let logger: Logger
    private let throttled: LogThrottle
    private let wake: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>

    private struct State {
        var catalog = RuleCatalog()
        var evaluator = Evaluator()
        var leader = false
        var leaderGeneration = -1
        var unsaved: [AlertEvent] = []
        var lastReload: ContinuousClock.Instant?
        var databaseError: String?
        var queueDepths: [String: Int] = [:]
        var notifications = FamilyBuilder(AlertMetrics.notifications)
        var lastNotification: [String: String] = [:]
        var failingChannels: Set<String> = []
    }

    private let state = Mutex(State())

    public init(config: AlertingConfig, store: MetricStore, logger: Logger) {
        self.config = config
        self.store = store
        self.logger = logger
        throttled = LogThrottle(logger)
        client = PostgresClient(target: "alerting", dsn: config.dsn, connectTimeout: config.connectTimeout)
        http = HTTPClient(threads: 4)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Called after every collector run: evaluate against the fresh snapshot.
    public func collectionFinished() {
        wake.yield()
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.evaluationLoop() }
                group.addTask { await self.deliveryLoop() }
                group.addTask {
                    // A periodic wake-up, so `for` durations elapse and rules reload without collections.
                    while (try? await Task.sleep(for: self.config.interval)) != nil { self.wake.yield() }
                }
            }
        }
    }

    public var status: AlertingStatus {
        state.withLock { state in
            var status = AlertingStatus(leader: state.leader, databaseError: state.databaseError)
            let names = Set(state.catalog.rules.keys).union(state.catalog.ruleErrors.keys).sorted()
            status.rules = names.map { name in
                AlertingStatus.RuleRow(name: name, state: Self.summary(state.evaluator.states[name], known: state.catalog.rules[name] != nil),
                                       error: state.catalog.ruleErrors[name] ?? state.evaluator.errors[name])
            }
            status.channels = state.catalog.channels.values.sorted { $0.name < $1.name }.map { channel in
                AlertingStatus.ChannelRow(name: channel.name, kind: channel.kind.rawValue,
                                          lastNotification: state.lastNotification[channel.name] ?? "none",
                                          failing: state.failingChannels.contains(channel.name))
            } + state.catalog.channelErrors.keys.sorted().filter { state.catalog.channels[$0] == nil }.map {
                AlertingStatus.ChannelRow(name: $0, kind: "?", lastNotification: state.catalog.channelErrors[$0] ?? "", failing: true)
            }
            return status
        }
    }

    private static func summary(_ states: [String: Evaluator.SeriesState]?, known: Bool) -> String {
        guard known else { return "invalid" }
        guard let states, !states.isEmpty else { return "inactive" }
        let firing = states.values.filter { $0.phase == .firing }
        let noData = states.values.filter(\.noData).count
        var parts: [String] = []
        if !firing.isEmpty { parts.append("firing (\(firing.count))") }
        if states.count > firing.count { parts.append("pending (\(states.count - firing.count))") }
        if noData > 0 { parts.append("no data (\(noData))") }
        return parts.joined(separator: ", ")
    }

    // MARK: Evaluation

    private func evaluationLoop() async {
        for await _ in wakeups {
            await evaluateOnce()
        }
    }

    func evaluateOnce() async {
        do throws(PostgresError) {
            try await reloadIfDue()
            try await checkLeadership()
            state.withLock { $0.databaseError = nil }
        } catch {
            state.withLock { $0.databaseError = error.message }
            throttled.warning("alerting database unavailable", ["problem": "\(error.message)"])
        }
        // Evaluated outside the lock: matching takes time, and `/`, the metrics and the
        // delivery loop read this state meanwhile. This loop is the evaluator's only writer.
        let snapshot = store.snapshot
        var (evaluator, catalog) = state.withLock { ($0.evaluator, $0.catalog) }
        let fresh = evaluator.evaluate(catalog, snapshot, now: UnixTime.now.seconds, link: config.externalURL)
        let (events, leader) = state.withLock { [evaluator] state in
            state.evaluator = evaluator
            state.unsaved += fresh
            return (state.unsaved, state.leader)
        }
        for event in fresh where event.status != .test {
            logger.info("alert \(event.status.rawValue)", metadata: ["rule": "\(event.rule)", "series": "\(event.seriesKey)"])
        }
        if leader && !events.isEmpty {
            do throws(PostgresError) {
                try await outbox.record(events, channels: catalog.rules.mapValues(\.channel))
                state.withLock { $0.unsaved.removeFirst(min(events.count, $0.unsaved.count)) }
            } catch {
                throttled.warning("could not record alert transitions; will retry", ["problem": "\(error.message)"])
            }
        } else if !leader {
            // Followers evaluate for their own metrics; the leader records and sends.
            state.withLock { $0.unsaved.removeAll() }
        }
        await publishMetrics()
    }

    private var outbox: Outbox { Outbox(client: client, timeouts: config.timeouts) }

    /// Reloads every interval, and at once when a trigger NOTIFYed a change of rules or channels.
    private func reloadIfDue() async throws(PostgresError) {
        let notified = try await client.notified(on: "telltale_rules", timeouts: config.timeouts)
        let (due, previous) = state.withLock { state in
            (notified || state.lastReload.map { ContinuousClock.now - $0 >= config.interval } ?? true, state.catalog)
        }
        guard due else { return }
        let catalog = try await RuleLoader(settings: config).load(client, previous: previous)
        state.withLock { state in
            state.catalog = catalog
            state.lastReload = .now
        }
    }

    /// Tries for the advisory lock when not holding it on the current connection; a new
    /// leader first adopts the firing episodes its predecessor recorded.
    private func checkLeadership() async throws(PostgresError) {
        let generation = await client.generation
        guard !state.withLock({ $0.leader && $0.leaderGeneration == generation }) else { return }
        state.withLock { $0.leader = false }
        let result = try await client.query("SELECT pg_try_advisory_lock($1::bigint)", parameters: [Self.leaderLockKey],
                                            timeouts: config.timeouts)
        guard result.rows.first?.first == .bool(true) else { return }
        let firing = try await outbox.firing()
        let currentGeneration = await client.generation
        state.withLock { state in
            let recorded = Set(firing.map { "\($0.rule)|\($0.seriesKey)" })
            state.unsaved += state.evaluator.unrecordedFiring(state.catalog, recorded: recorded, now: UnixTime.now.seconds,
                                                              link: config.externalURL)
            state.evaluator.adopt(firing: firing.map { row in
                (row.rule, row.seriesKey, row.since, row.value, Self.labels(fromKey: row.seriesKey))
            })
            state.leader = true
            state.leaderGeneration = currentGeneration
        }
        logger.info("became the alerting leader")
    }

    /// Reads `{a="x",b="y"}` back into labels (the key is written by `AlertEvent.seriesKey`).
    static func labels(fromKey key: String) -> Labels {
        guard case .success(let matchers) = LabelMatcher.parseList(String(key.dropFirst().dropLast())) else { return .none }
        return Labels(matchers.map { ($0.name, $0.value) })
    }

    // MARK: Delivery

    private func deliveryLoop() async {
        while (try? await Task.sleep(for: Self.deliveryTick)) != nil {
            guard state.withLock({ $0.leader }) else { continue }
            do throws(PostgresError) {
                try await deliverPending()
            } catch {
                throttled.warning("could not read the notification outbox", ["problem": "\(error.message)"])
            }
        }
    }

    /// Each channel is a queue: its oldest row goes first, and a row waiting for a retry
    /// holds back the rows behind it, so a resolved message never overtakes its firing one.
    private func deliverPending() async throws(PostgresError) {
        let pending = try await outbox.pending()
        let depths = try await outbox.queueDepths()
        state.withLock { $0.queueDepths = depths }
        let channels = state.withLock { $0.catalog.channels }
        let byChannel = Dictionary(grouping: pending, by: \.channel)
        await withTaskGroup(of: Void.self) { group in
            for (name, rows) in byChannel {
                group.addTask { await self.deliver(rows, to: channels[name]) }
            }
        }
        await publishMetrics()
    }

    private func deliver(_ rows: [Outbox.Pending], to channel: Channel?) async {
        let deliverer = Deliverer(http: http, timeout: config.deliveryTimeout)
        for row in rows {
            guard row.nextAttempt <= UnixTime.now.seconds else { return }
            guard let channel, channel.enabled else { return }  // a disabled channel keeps its queue
            let outcome = await deliverer.send(row.event, key: row.key, to: channel)
            do throws(PostgresError) {
                switch outcome {
                case .delivered:
                    try await outbox.markDelivered(row.id)
                case .rateLimited(let after):
                    try await outbox.retry(row.id, after: after, error: "rate limited")
                case .transient(let reason):
                    try await outbox.retry(row.id, after: Deliverer.backoff(attempts: row.attempts), error: reason)
                case .permanent(let reason):
                    try await outbox.markFailed(row.id, error: reason)
                }
            } catch {
                throttled.warning("could not update the outbox", ["problem": "\(error.message)"])
                return
            }
            recordOutcome(outcome, channel: channel.name, event: row.event)
            if case .delivered = outcome { continue }
            if case .permanent = outcome { continue }
            return
        }
    }

    private func recordOutcome(_ outcome: DeliveryOutcome, channel: String, event: AlertEvent) {
        state.withLock { state in
            state.notifications.add(1, ["channel": channel, "outcome": outcome.label])
            state.lastNotification[channel] = "\(event.status.rawValue) \(event.rule): \(outcome.label) at "
                + UnixTime.now.iso8601
            switch outcome {
            case .delivered: state.failingChannels.remove(channel)
            case .permanent: state.failingChannels.insert(channel)
            case .rateLimited, .transient: break
            }
        }
        if case .permanent(let reason) = outcome {
            logger.error("channel refused a notification; marked failing", metadata: ["channel": "\(channel)", "problem": "\(reason)"])
        }
    }

    // MARK: Metrics

    private func publishMetrics() async {
        let families = state.withLock { state in
            AlertMetrics.families(catalog: state.catalog, evaluator: state.evaluator, leader: state.leader,
                                  databaseUp: state.databaseError == nil, notifications: state.notifications,
                                  queueDepths: state.queueDepths, failing: state.failingChannels,
                                  unrecordedCount: state.unsaved.count)
        }
        await store.publish(["alerting": families])
    }

    /// Sends a test message straight to a channel (not through the outbox).
    public static func testNotify(channel name: String, config: AlertingConfig) async -> (delivered: Bool, message: String) {
        let client = PostgresClient(target: "alerting", dsn: config.dsn, connectTimeout: config.connectTimeout)
        let catalog: RuleCatalog
        do {
            catalog = try await RuleLoader(settings: config).load(client, previous: RuleCatalog())
        } catch {
            return (false, "cannot read channels: \(error.message)")
        }
        guard let channel = catalog.channels[name] else {
            return (false, catalog.channelErrors[name].map { "channel \(name) is not usable: \($0)" } ?? "no channel named \(name)")
        }
        let now = UnixTime.now.seconds
        let event = AlertEvent(rule: "telltale-test", environment: config.environment ?? "any", severity: "info", status: .test,
                               metric: "telltale_build_info", comparison: "==", threshold: 1, value: 1, labels: [:],
                               description: "A test message from Telltale.", startsAt: now, endsAt: nil, link: config.externalURL)
        let outcome = await Deliverer(http: HTTPClient(threads: 1), timeout: config.deliveryTimeout)
            .send(event, key: "test|\(Checked.int64(now * 1000) ?? 0)", to: channel)
        switch outcome {
        case .delivered(let status): return (true, "\(name) (\(channel.kind.rawValue)): delivered, HTTP \(status)")
        case .rateLimited(let after): return (false, "\(name): rate limited, retry after \(after)")
        case .transient(let reason), .permanent(let reason): return (false, "\(name) (\(channel.kind.rawValue)): not delivered: \(reason)")
        }
    }

    /// Runs the migrations; returns the versions applied now.
    public static func migrate(config: AlertingConfig) async throws(PostgresError) -> [Int] {
        let client = PostgresClient(target: "alerting", dsn: config.dsn, connectTimeout: config.connectTimeout)
        return try await AlertSchema.migrate(client, timeouts: config.timeouts)
    }
}
