import Foundation
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// BullMQ (v5, v6) and Bull (v3, v4) queues in Redis, read-only.
///
/// Every queue's counts and new events come from one pipelined round trip of
/// LLEN/ZCARD/HGET/EXISTS/XRANGE — no Lua, no writes, so a read-only ACL user suffices. A
/// second round trip reads what the first pointed at: the head job, active jobs' locks and
/// the hashes of newly finished jobs. Completed and failed totals come from the events
/// stream, which BullMQ writes even for jobs removed on completion.
///
/// An error reply to any of a queue's commands is that queue's error, never a zero: its
/// gauges are absent that run, `telltale_queue_up` is 0 and the run reports `redis_error`.
public final class QueueCollector: Collector {
    /// `queues:<source>`.
    public let name: String
    public let schedule: Schedule
    let config: QueueCollectorConfig
    let client: any RedisQuerying
    /// The password, out of every message (Redis may echo a command's arguments).
    let redactor: Redactor
    /// The queues listed in the configuration: collected whether or not they exist.
    private let explicitQueues: Set<QueueID>

    /// Events kept per queue between runs to time jobs whose hashes were already removed.
    static let trackedJobsCap = 100_000

    private struct State {
        var discovery = QueueDiscovery()
        /// Last events-stream entry read per queue; absent until the first run marks the end.
        var streamCursors: [QueueID: String] = [:]
        /// By job (`queue.key(id)`, by its bytes, as Redis tells keys apart).
        var addedAt: [ExactString: (ms: Double, name: String)] = [:]
        var activeSince: [ExactString: Double] = [:]
        var completed: FamilyBuilder
        var failed: FamilyBuilder
        var duration: FamilyBuilder
        var wait: FamilyBuilder
        var attempts: FamilyBuilder
        var stalled: FamilyBuilder
        var jobNames: Set<String> = []
        var dropped = 0.0
        /// The queues of the last run (at first, the listed ones), sorted, for
        /// `telltale_queue_up` 0 when a run fails as a whole.
        var lastQueues: [QueueID]
        /// Whether the last failed run still heard Redis (an error reply such as a SCAN
        /// refused by an ACL), so that `telltale_redis_up` stays 1.
        var failedWithReply = false
        /// Each queue's label sets with a `state` (`QueueMetrics.states` order), kept from run
        /// to run: `telltale_queue_jobs` then shares them with the previous run's family
        /// instead of allocating eight new label sets per queue every run.
        var stateLabels: [QueueID: [Labels]] = [:]
    }

    private let state: Mutex<State>

    public var settings: CollectorSettings { CollectorSettings(config) }

    public convenience init(config: QueueCollectorConfig) {
        self.init(config: config, client: config.redis.makeClient())
    }

    /// Reads the queues through `client` rather than the configured Redis (unit tests' fakes).
    package init(config: QueueCollectorConfig, client: any RedisQuerying) {
        self.config = config
        name = "queues:\(config.name)"
        self.schedule = config.schedule
        self.client = client
        redactor = Redactor(config.redis.secrets)
        explicitQueues = Set(config.queues)
        state = Mutex(State(
            completed: FamilyBuilder(QueueMetrics.completed), failed: FamilyBuilder(QueueMetrics.failed),
            duration: FamilyBuilder(QueueMetrics.duration, buckets: config.durationBuckets),
            wait: FamilyBuilder(QueueMetrics.wait, buckets: config.waitBuckets),
            attempts: FamilyBuilder(QueueMetrics.attempts, buckets: QueueMetrics.attemptBuckets),
            stalled: FamilyBuilder(QueueMetrics.stalled),
            lastQueues: Array(Set(config.queues).sorted().prefix(config.maxQueues))))
    }

    public func collect() async throws -> CollectionResult {
        state.withLock { $0.failedWithReply = false }
        do {
            return try await collectQueues()
        } catch let error as RedisError {
            state.withLock { $0.failedWithReply = error.kind == .redisError }
            throw CollectionProblem(reason: error.kind.rawValue, redactor.redact(error.message))
        }
    }

    private func collectQueues() async throws -> CollectionResult {
        let servers = try await client.servers()
        let queues = try await currentQueues(servers)
        // Round trip 1: every queue's counts and new events, plus INFO and CLIENT LIST of the
        // first server (keyless commands go there); the other servers' meanwhile.
        let overdueBound = QueueCounts.overdueBound(nowMs: UnixTime.now.seconds * 1000)
        let cursors = state.withLock { $0.streamCursors }
        var countCommands = RedisCommands()
        for queue in queues {
            QueueCounts.appendCommands(queue, overdueBound: overdueBound, eventsCursor: cursors[queue], to: &countCommands)
        }
        for command in ServerReplies.commands { countCommands.append(command) }
        async let otherServers = ServerReplies.read(servers.dropFirst(), client)
        let countReplies = try await client.pipeline(countCommands)
        let serverReplies = [ServerReplies(server: servers.first ?? "", countReplies.suffix(ServerReplies.commandCount))]
            + (await otherServers)
        let all = zip(queues, countReplies.chunks(of: QueueCounts.commandCount)).map { QueueCounts(queue: $0, replies: $1) }
        let readings = all.map(reading)
        var counts: [QueueCounts] = [], failed: [QueueCounts] = [], gone: Set<QueueID> = []
        counts.reserveCapacity(all.count)
        for (count, reading) in zip(all, readings) {
            switch reading {
            case .clean: counts.append(count)
            case .failed: failed.append(count)
            case .gone: gone.insert(count.queue)
            }
        }
        if !gone.isEmpty { forget(gone) }
        // Only queues read cleanly feed the events: a failed queue's cursor stays where it
        // was, and its events are read once it answers again.
        let events = recordEvents(counts)
        // Round trip 2: head jobs' timestamps, active jobs' locks, finished jobs' hashes, the
        // names of jobs queued before Telltale saw them. The families of the counts are built
        // meanwhile.
        let followUp = FollowUp(counts: counts, finished: events.finished, unnamed: events.unnamed)
        async let pendingReplies = client.pipeline(followUp.commands)
        var families = countFamilies(counts, servers: serverReplies)
        let followReplies = try await pendingReplies
        // A queue with an error reply in the follow-up is down too: none of its gauges.
        let followUpErrors = followUp.errors(followReplies)
        var problems = QueueProblems(redactor: redactor)
        for count in failed { problems.add(count.queue, count.error ?? "") }
        for (count, error) in zip(counts, followUpErrors) {
            if let error { problems.add(count.queue, error) }
        }
        if followUpErrors.contains(where: { $0 != nil }) {
            // Rare: the gauges of the counts were built before the follow-up answered.
            let down = Set(zip(counts, followUpErrors).compactMap { $1 == nil ? nil : $0.queue })
            families = families.map { Self.without(down, $0) }
        }
        families += followUpFamilies(counts, followUp, followReplies, errors: followUpErrors)
        remember(events, followUp.unnamedJobReplies(followReplies))
        families += accumulate(events, followUp.finishedJobReplies(followReplies),
                               clean: zip(counts, followUpErrors).compactMap { $1 == nil ? $0.queue : nil },
                               present: Set(queues).subtracting(gone))
        let (up, present) = upFamily(all, readings, followUpErrors)
        families.append(up)
        families += serverFamilies(serverReplies)
        state.withLock { $0.lastQueues = present }
        return CollectionResult(families: families, problems: problems.list)
    }

    /// How a queue of a run reads.
    enum Reading {
        /// Every reply as expected.
        case clean
        /// Redis answered one of its commands with an error (NOPERM, WRONGTYPE, MOVED…):
        /// absent this run, `telltale_queue_up` 0.
        case failed
        /// Discovered, and now without `meta`, `id` or any job (obliterated): absent from now
        /// on, until discovery finds it again. Listed queues are never gone.
        case gone
    }

    private func reading(_ count: QueueCounts) -> Reading {
        if count.error != nil { return .failed }
        // `exists` is true for nearly every queue: the set is consulted only for the others.
        if !count.exists && !count.hasJobs && !explicitQueues.contains(count.queue) { return .gone }
        return .clean
    }

    /// Obliterated queues: out of discovery (until a pass finds them again) and of the cursors.
    private func forget(_ gone: Set<QueueID>) {
        state.withLock { state in
            state.discovery.forget(gone)
            for queue in gone { state.streamCursors[queue] = nil }
        }
    }

    /// A queue family without the series of `queues`.
    private static func without(_ queues: Set<QueueID>, _ family: MetricFamily) -> MetricFamily {
        guard family.name.hasPrefix("telltale_queue_") else { return family }
        return MetricFamily(family.descriptor, series: family.series.filter { series in
            !queues.contains(QueueID(labels: series.labels))
        })
    }

    /// `telltale_queue_up`: 1 for every queue read cleanly, 0 for those Redis answered with
    /// an error, in label order as every queue family (queues come sorted); and those queues.
    private func upFamily(_ all: [QueueCounts], _ readings: [Reading], _ followUpErrors: [String?])
        -> (MetricFamily, [QueueID]) {
        var series: [Series] = [], queues: [QueueID] = []
        series.reserveCapacity(all.count)
        queues.reserveCapacity(all.count)
        var position = 0
        for (count, reading) in zip(all, readings) {
            switch reading {
            case .gone: continue
            case .failed: series.append(Self.sample(0, count.queue.labels))
            case .clean:
                series.append(Self.sample(followUpErrors[position] == nil ? 1 : 0, count.queue.labels))
                position += 1
            }
            queues.append(count.queue)
        }
        return (MetricFamily(QueueMetrics.up, series: series), queues)
    }

    /// After a run that failed as a whole (Redis unreachable): every queue of the last run at
    /// 0, and the source's `telltale_redis_up` 0.
    public func familiesWhenFailed() -> [MetricFamily] {
        let (queues, answered) = state.withLock { ($0.lastQueues, $0.failedWithReply) }
        return [MetricFamily(QueueMetrics.up, series: queues.map { Self.sample(0, $0.labels) }),
                RedisInfoFamilies.up(answered ? 1 : 0, source: config.name)]
    }

    /// `telltale_redis_up` 1 and every server's INFO.
    private func serverFamilies(_ servers: [ServerReplies]) -> [MetricFamily] {
        var info = RedisInfoFamilies()
        for server in servers { info.add(server.info, source: config.name, node: server.server) }
        let up: Double = servers.allSatisfy(\.answered) ? 1 : 0
        return [RedisInfoFamilies.up(up, source: config.name)] + info.build()
    }

    /// Explicit queues plus discovered ones, sorted, capped at `max_queues`.
    private func currentQueues(_ servers: [String]) async throws -> [QueueID] {
        var discovery = state.withLock { $0.discovery }
        if config.discoveryEnabled && discovery.isDue {
            try await discovery.advance(client: client, servers: servers, config: config)
            state.withLock { [discovery] in $0.discovery = discovery }
        }
        let all = Set(config.queues).union(config.discoveryEnabled ? discovery.known : []).sorted()
        let excess = max(0, all.count - config.maxQueues)
        if excess > 0 { state.withLock { $0.dropped += Double(excess) } }
        return Array(all.prefix(config.maxQueues))
    }

    // Queues come sorted, and states are visited in name order, so every family's series are
    // built in label order: no dictionary, no sort (this is thousands of series per run).

    /// The families of the counts round trip alone.
    private func countFamilies(_ counts: [QueueCounts], servers: [ServerReplies]) -> [MetricFamily] {
        var jobs: [Series] = [], paused: [Series] = [], overdue: [Series] = [], workers: [Series] = []
        jobs.reserveCapacity(counts.count * QueueMetrics.states.count)
        // Workers connect to the master: a replica's CLIENT LIST cannot tell them.
        let clientNames = config.redis.readsFromReplica ? nil : Self.clientNames(servers.map(\.clientList))
        let stateLabels = stateLabels(counts.map(\.queue))
        for (count, stateLabels) in zip(counts, stateLabels) {
            let labels = count.queue.labels
            for index in QueueMetrics.statesInNameOrder {
                jobs.append(Self.sample(Double(count.states[index]), stateLabels[index]))
            }
            paused.append(Self.sample(count.isPaused ? 1 : 0, labels))
            overdue.append(Self.sample(Double(count.overdueDelayed), labels))
            if let clientNames {
                workers.append(Self.sample(Double(clientNames.map { Self.workerCount(count.queue, $0) }.max() ?? 0), labels))
            }
        }
        var dropped = FamilyBuilder(CollectorHealth.seriesDropped)
        dropped.set(state.withLock { $0.dropped }, ["collector": name, "metric": QueueMetrics.jobs.name])
        return [MetricFamily(QueueMetrics.jobs, series: jobs), MetricFamily(QueueMetrics.paused, series: paused),
                MetricFamily(QueueMetrics.overdue, series: overdue), MetricFamily(QueueMetrics.workers, series: workers),
                dropped.build()]
    }

    /// The state label sets of `queues`, in their order: those of the last run reused, the
    /// others made; queues no longer read are forgotten.
    private func stateLabels(_ queues: [QueueID]) -> [[Labels]] {
        state.withLock { state in
            var kept: [QueueID: [Labels]] = [:]
            kept.reserveCapacity(queues.count)
            let result = queues.map { queue in
                let labels = state.stateLabels[queue] ?? QueueMetrics.states.map { queue.labels.adding("state", $0) }
                kept[queue] = labels
                return labels
            }
            state.stateLabels = kept
            return result
        }
    }

    /// The families that need the follow-up round trip too.
    private func followUpFamilies(_ counts: [QueueCounts], _ followUp: FollowUp, _ replies: [RedisValue],
                                  errors: [String?]) -> [MetricFamily] {
        var oldest: [Series] = [], unlocked: [Series] = []
        let nowMs = UnixTime.now.seconds * 1000
        for (position, count) in counts.enumerated() where errors[position] == nil {
            let labels = count.queue.labels
            let headTimestamp = followUp.headTimestamp(at: position, replies)
            oldest.append(Self.sample(headTimestamp.map { max(0, (nowMs - $0) / 1000) } ?? 0, labels))
            unlocked.append(Self.sample(Double(followUp.unlockedActive(at: position, replies)), labels))
        }
        var roundTrips = FamilyBuilder(QueueMetrics.roundTrips)
        roundTrips.set(Double(client.roundTripCount), ["collector": name, "redis": config.name])
        return [MetricFamily(QueueMetrics.oldestWaiting, series: oldest), MetricFamily(QueueMetrics.unlocked, series: unlocked),
                roundTrips.build()]
    }

    private static func sample(_ value: Double, _ labels: Labels) -> Series { Series(labels: labels, value: .number(value)) }

    /// What the new events of a run tell.
    struct Events {
        /// Jobs that completed or failed, in stream order.
        var finished: [FinishedJob] = []
        /// Jobs seen starting (or active at first sight of their queue) whose `added` event
        /// came before Telltale read the stream: their hashes' name and timestamp are read.
        var unnamed: [(queue: QueueID, id: String)] = []
        /// `stalled` events by queue.
        var stalled: [QueueID: Int] = [:]
    }

    /// Reads the new events of every queue: remembers when jobs were added and started, and
    /// returns the jobs that finished, in stream order.
    private func recordEvents(_ counts: [QueueCounts]) -> Events {
        state.withLock { state in
            var events = Events()
            for (position, count) in counts.enumerated() {
                let (queue, entries) = (count.queue, count.events)
                guard state.streamCursors[queue] != nil else {
                    // First read: start at the stream's end, so earlier history is not counted (or at
                    // its beginning once there is one, if it did not exist yet).
                    state.streamCursors[queue] = entries.last?.id ?? "0-0"
                    events.unnamed += count.activeJobIDs.map { (queue, $0) }
                    continue
                }
                Self.record(entries, of: queue, at: position, into: &events, &state)
                if let last = entries.last { state.streamCursors[queue] = last.id }
            }
            // Jobs whose end was never seen (removed streams, crashed workers) must not pile up.
            if state.addedAt.count > Self.trackedJobsCap { state.addedAt.removeAll() }
            if state.activeSince.count > Self.trackedJobsCap { state.activeSince.removeAll() }
            return events
        }
    }

    private static func record(_ entries: [StreamEntry], of queue: QueueID, at position: Int, into events: inout Events,
                               _ state: inout State) {
        // A failed job's `retries-exhausted` follows its `failed` event in the same script.
        var lastFinished: [ExactString: Int] = [:]
        for entry in entries {
            let jobKey = ExactString(queue.key(entry.jobId))
            switch entry.event {
            case "added": state.addedAt[jobKey] = (entry.ms, entry.fields["name"] ?? "")
            case "active":
                state.activeSince[jobKey] = entry.ms
                if state.addedAt[jobKey] == nil { events.unnamed.append((queue, entry.jobId)) }
            case "completed", "failed":
                lastFinished[jobKey] = events.finished.count
                events.finished.append(FinishedJob(
                    queue: queue, position: position, id: entry.jobId, failed: entry.event == "failed", eventMs: entry.ms,
                    activeMs: state.activeSince.removeValue(forKey: jobKey), added: state.addedAt.removeValue(forKey: jobKey)))
            case "retries-exhausted":
                let attempts = entry.fields["attemptsMade"].flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
                if let index = lastFinished[jobKey] { events.finished[index].attemptsFromEvent = attempts }
            case "stalled": events.stalled[queue, default: 0] += 1
            default: break
            }
        }
    }

    /// The name and enqueue time of jobs whose `added` event was not seen, from their hashes,
    /// for when they finish (their hash may be gone by then). Jobs that finished this run
    /// already are not kept.
    private func remember(_ events: Events, _ replies: ArraySlice<RedisValue>) {
        guard !events.unnamed.isEmpty else { return }
        let finished = Set(events.finished.map { ExactString($0.queue.key($0.id)) })
        state.withLock { state in
            for (job, reply) in zip(events.unnamed, replies) {
                let fields = reply.array
                let jobKey = ExactString(job.queue.key(job.id))
                guard fields.count == 2, let name = fields[0].string, !finished.contains(jobKey),
                      let timestamp = fields[1].string.flatMap(Double.init), timestamp.isFinite else { continue }
                state.addedAt[jobKey] = (timestamp, name)
            }
        }
    }

    /// Adds finished jobs to the counters and histograms; their own hashes give exact times,
    /// stream timestamps stand in for jobs already removed (and for a hash read with an error
    /// reply, which is never read as numbers). Queues read cleanly get zero totals before their
    /// first finished job; queues down this run keep what they have; the others are dropped.
    private func accumulate(_ events: Events, _ replies: ArraySlice<RedisValue>, clean: [QueueID],
                            present: Set<QueueID>) -> [MetricFamily] {
        state.withLock { state in
            for (job, reply) in zip(events.finished, replies) {
                // Only finite times: an `inf` in a job hash would stick a histogram's _sum at NaN.
                let fields = reply.array.map { $0.string.flatMap(Double.init).flatMap { $0.isFinite ? $0 : nil } }
                let hashName = reply.array.count == 6 ? reply.array[5].string : nil
                let processedOn = fields.count == 6 ? fields[0] ?? job.activeMs : job.activeMs
                let finishedOn = fields.count == 6 ? fields[1] ?? job.eventMs : job.eventMs
                let timestamp = fields.count == 6 ? fields[2] ?? job.added?.ms : job.added?.ms
                let attempts = (fields.count == 6 ? fields[3] ?? fields[4] : nil) ?? job.attemptsFromEvent
                var labels = job.queue.labels
                if config.jobNames {
                    labels = labels.adding("job_name", jobNameLabel(hashName ?? job.added?.name ?? "", &state.jobNames))
                }
                if job.failed { state.failed.add(1, labels) } else { state.completed.add(1, labels) }
                if let processedOn { state.duration.observe(max(0, finishedOn - processedOn) / 1000, labels) }
                if let processedOn, let timestamp { state.wait.observe(max(0, processedOn - timestamp) / 1000, job.queue.labels) }
                if let attempts { state.attempts.observe(attempts, job.queue.labels) }
            }
            for (queue, stalled) in events.stalled { state.stalled.add(Double(stalled), queue.labels) }
            for queue in clean {
                state.completed.touchCounter(queue.labels, unlessNamed: config.jobNames)
                state.failed.touchCounter(queue.labels, unlessNamed: config.jobNames)
                state.stalled.touchCounter(queue.labels, unlessNamed: false)
            }
            let keep: (Labels) -> Bool = { present.contains(QueueID(labels: $0)) }
            state.completed.retain(where: keep)
            state.failed.retain(where: keep)
            state.duration.retain(where: keep)
            state.wait.retain(where: keep)
            state.attempts.retain(where: keep)
            state.stalled.retain(where: keep)
            return [state.completed, state.failed, state.duration, state.wait, state.attempts, state.stalled].map { $0.build() }
        }
    }

    /// A job name as a label value, or `_other` once `max` distinct names have been seen.
    private func jobNameLabel(_ name: String, _ seen: inout Set<String>) -> String {
        if seen.contains(name) { return name }
        guard seen.count < config.maxJobNames else { return "_other" }
        seen.insert(name)
        return name
    }

    /// `name=` fields of each server's CLIENT LIST, or nil when the user may not run it.
    private static func clientNames(_ replies: [RedisValue?]) -> [[Substring]]? {
        let texts = replies.compactMap { $0?.string }
        guard !texts.isEmpty else { return nil }
        return texts.map { text in
            text.split(separator: "\n").compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("name=") }?.dropFirst(5)
            }
        }
    }

    /// Connections named as BullMQ and Bull workers name them: Node and Bull use the
    /// base64 of the queue name, Python bullmq the plain name; workers add `:w:<name>`.
    static func workerCount(_ queue: QueueID, _ names: [Substring]) -> Int {
        let base64 = Data(queue.name.utf8).base64EncodedString()
        let roots = ["\(queue.prefix):\(base64)", "\(queue.prefix):\(queue.name)"]
        // By bytes, as Redis compares names (Swift's `==` and `hasPrefix` hold canonically
        // equivalent texts equal).
        return names.filter { name in
            roots.contains { name.utf8.elementsEqual($0.utf8) || name.utf8.starts(with: ($0 + ":w:").utf8) }
        }.count
    }
}

/// INFO and CLIENT LIST of one server: the Redis itself, and the workers connected to it.
/// A BullMQ worker on a cluster connects to every master, so a queue's workers are the most
/// any one server lists.
struct ServerReplies {
    static let commands = [["INFO"], ["CLIENT", "LIST"]]
    static var commandCount: Int { commands.count }

    let server: String
    let info: RedisValue?
    let clientList: RedisValue?
    /// False when the server could not be reached (one node of a cluster, say).
    let answered: Bool

    init(server: String, _ replies: ArraySlice<RedisValue>) {
        self.server = server
        info = replies.first
        clientList = replies.dropFirst().first
        answered = true
    }

    private init(unreachable server: String) {
        self.server = server
        info = nil
        clientList = nil
        answered = false
    }

    /// The servers' replies, all in parallel. A server that cannot be reached costs its own
    /// replies only: the queues on the other servers are still read.
    static func read(_ servers: ArraySlice<String>, _ client: any RedisQuerying) async -> [ServerReplies] {
        await withTaskGroup(of: (Int, ServerReplies).self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask {
                    do {
                        return (index, ServerReplies(server: server, try await client.pipeline(RedisCommands(commands), on: server)[...]))
                    } catch {
                        return (index, ServerReplies(unreachable: server))
                    }
                }
            }
            var replies: [(Int, ServerReplies)] = []
            for await reply in group { replies.append(reply) }
            return replies.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

/// Redis error replies of one run, one problem per error code with a count, so that an ACL
/// that covers none of a thousand queues makes one log line, naming the first queue. The
/// messages never quote a command's arguments and never hold the password.
struct QueueProblems {
    let redactor: Redactor
    private var tally = ProblemTally(countingMore: "queues")

    init(redactor: Redactor) {
        self.redactor = redactor
    }

    mutating func add(_ queue: QueueID, _ reply: String) {
        tally.add(RedisReplyError.code(reply), reason: "redis_error",
                  redactor.redact("queue \(queue.prefix):\(queue.name): \(RedisReplyError.describe(reply, redacting: redactor))"))
    }

    var list: [CollectionProblem] { tally.list }
}

extension FamilyBuilder {
    /// Creates a zero counter so a queue's totals exist before its first finished job.
    fileprivate mutating func touchCounter(_ labels: Labels, unlessNamed named: Bool) {
        if !named && !contains(labels) { add(0, labels) }
    }
}

extension Array {
    func chunks(of size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
