import Logging
import ServiceLifecycle
import Synchronization
import TelltaleMetrics

/// The store source under which the runner publishes the self-metrics.
let selfMetricsSource = "telltale"

/// Runs every collector on its own schedule and publishes each run into the store.
///
/// A collector never runs twice at once: its loop waits for a run to really end, even after
/// the run's timeout has already been reported as a failure, before it starts the next one.
/// Schedules, timeouts and run durations follow `clock`: a test can drive them by hand.
///
/// A reload hands it a new set of collectors (`replace(with:)`): those equal to a running one
/// are dropped in favour of the running one, which keeps its state and schedule.
public final class CollectorRunner<C: Clock>: Service, Sendable where C.Duration == Duration {
    public let health: CollectorHealth
    private let store: MetricStore
    private let logger: Logger
    private let throttled: LogThrottle
    /// Called after each run is published (alerting evaluates the fresh snapshot).
    private let afterEachRun: @Sendable () -> Void

    /// More self-metrics published with the collectors' (the HTTP server's connections).
    private let moreSelfFamilies: @Sendable () -> [MetricFamily]
    private let clock: C
    /// The collectors running now, in the order `/` lists them.
    private let running: Mutex<[RunningCollector]>
    /// Collectors to start, read by `run()`: the first ones, then each reload's new ones.
    private let starts = AsyncStream.makeStream(of: RunningCollector.self)

    /// A collector and the means to stop its loop and to learn that it ended.
    private struct RunningCollector: Sendable {
        let collector: any Collector
        let stop = AsyncStream.makeStream(of: Void.self)
        let ended = AsyncStream.makeStream(of: Void.self)
    }

    public init(collectors: [any Collector], store: MetricStore, logger: Logger, clock: C,
                afterEachRun: @escaping @Sendable () -> Void = {}, moreSelfFamilies: @escaping @Sendable () -> [MetricFamily] = { [] }) {
        self.clock = clock
        self.moreSelfFamilies = moreSelfFamilies
        let running = collectors.map { RunningCollector(collector: $0) }
        self.running = Mutex(running)
        for collector in running { starts.continuation.yield(collector) }
        self.store = store
        self.logger = logger
        throttled = LogThrottle(logger)
        self.afterEachRun = afterEachRun
        self.health = CollectorHealth(collectors: collectors.map(\.name))
    }

    /// The collectors running now, in the order `/` lists them.
    public var collectors: [any Collector] { running.withLock { $0.map(\.collector) } }

    public func run() async throws {
        await publishSelfMetrics()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for await started in self.starts.stream {
                    group.addTask { await self.loop(started) }
                }
            }
        }
    }

    /// What a reload changed, by collector name.
    public struct Replacement: Sendable, Equatable {
        public var kept: [String] = []
        public var replaced: [String] = []
        public var added: [String] = []
        public var removed: [String] = []
    }

    /// Runs `collectors` from now on. One equal to a running collector (same name, type and
    /// settings) leaves that one running; a changed one replaces the collector of its name
    /// once that one's loop has ended, so that the two never publish over each other, and
    /// its last series stay on `/metrics` until the new one's first run; a removed one's
    /// series go. Calls must not overlap (the reloader runs one at a time).
    @discardableResult
    public func replace(with collectors: [any Collector]) async -> Replacement {
        let old = running.withLock { $0 }
        let oldByName = Dictionary(old.map { ($0.collector.name, $0) }, uniquingKeysWith: { first, _ in first })
        var change = Replacement()
        var next: [RunningCollector] = []
        var fresh: [RunningCollector] = []
        for collector in collectors {
            if let current = oldByName[collector.name], Self.same(current.collector, collector) {
                change.kept.append(collector.name)
                next.append(current)
            } else {
                oldByName[collector.name] == nil ? change.added.append(collector.name) : change.replaced.append(collector.name)
                let made = RunningCollector(collector: collector)
                fresh.append(made)
                next.append(made)
            }
        }
        let names = Set(collectors.map(\.name))
        change.removed = old.map(\.collector.name).filter { !names.contains($0) }
        let stopping = old.filter { !change.kept.contains($0.collector.name) }
        for loop in stopping { loop.stop.continuation.finish() }
        for loop in stopping { for await _ in loop.ended.stream {} }
        running.withLock { $0 = next }
        health.replaceCollectors(with: next.map(\.collector.name))
        let gone = Dictionary(uniqueKeysWithValues: change.removed.map { ($0, [MetricFamily]()) })
        await store.publish(gone.merging([selfMetricsSource: selfFamilies]) { _, new in new })
        for collector in fresh { starts.continuation.yield(collector) }
        return change
    }

    private static func same(_ running: any Collector, _ new: any Collector) -> Bool {
        ObjectIdentifier(type(of: running)) == ObjectIdentifier(type(of: new)) && running.settings == new.settings
    }

    /// Runs every collector once, concurrently; true when all of them succeeded.
    public func runOnce() async -> Bool {
        await publishSelfMetrics()
        return await withTaskGroup(of: Bool.self) { group in
            for collector in collectors {
                group.addTask { await self.runAndPublish(collector) }
            }
            return await group.reduce(true) { $0 && $1 }
        }
    }

    private var selfFamilies: [MetricFamily] { health.families + moreSelfFamilies() }

    /// Publishes the self-metrics now, for a change outside any run (a failed reload).
    public func publishSelfMetrics() async {
        await store.publish([selfMetricsSource: selfFamilies])
    }

    /// Runs `started`'s loop until its stop or shutdown, then reports that it ended.
    private func loop(_ started: RunningCollector) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.loop(started.collector) }
            group.addTask { for await _ in started.stop.stream {} }
            await group.next()
            group.cancelAll()
        }
        started.ended.continuation.finish()
    }

    private func loop(_ collector: any Collector) async {
        let interval = collector.schedule.interval
        // A small random offset keeps collectors with equal intervals from hitting at once.
        let stagger = min(interval / 10, .milliseconds(500))
        var next = clock.now.advanced(by: stagger * Double.random(in: 0..<1))
        while !Task.isCancelled {
            do { try await clock.sleep(until: next, tolerance: nil) } catch { return }
            await runAndPublish(collector)
            next = max(next.advanced(by: interval), clock.now)
        }
    }

    @discardableResult
    private func runAndPublish(_ collector: any Collector) async -> Bool {
        let started = clock.now
        let (outcome, runEnded) = await runWithTimeout(collector)
        // Stopped by a reload: the collector's replacement, if any, publishes from now on.
        if Task.isCancelled { return false }
        let problems: [CollectionProblem]
        var families: [MetricFamily] = []
        switch outcome {
        case .finished(.success(let result)):
            families = result.families
            problems = result.problems
        case .finished(.failure(let error)):
            problems = [error as? CollectionProblem ?? CollectionProblem(reason: "error", "\(error)")]
            families = collector.familiesWhenFailed()
        case .timedOut:
            problems = [CollectionProblem(reason: "timeout", "no result within \(collector.schedule.timeout)")]
            families = collector.familiesWhenFailed()
        }
        for problem in problems {
            throttled.warning("collector run failed", ["collector": "\(collector.name)", "problem": "\(problem)"])
        }
        health.record(collector.name, duration: started.duration(to: clock.now), problems: problems, at: .now)
        let conflicts = await store.publish([collector.name: families, selfMetricsSource: selfFamilies])
        health.settle(collector.name, succeeded: problems.isEmpty)
        afterEachRun()
        for conflict in conflicts where conflict.source == collector.name {
            health.count(collector.name, reason: "family_conflict")
            logger.error("family defined differently by another source; series dropped",
                         metadata: ["collector": "\(collector.name)", "family": "\(conflict.family)"])
        }
        // After a timeout the failure is already visible; the next run waits for this one,
        // but shutdown does not (a run stuck in a blocking call must not keep the process up).
        let (ended, finish) = AsyncStream.makeStream(of: Void.self)
        Task {
            await runEnded.value
            finish.finish()
        }
        for await _ in ended {}
        return problems.isEmpty
    }

    private enum Outcome: Sendable {
        case finished(Result<CollectionResult, any Error>)
        case timedOut
    }

    /// The run's outcome, or `.timedOut` at the deadline; plus a task that ends with the run.
    private func runWithTimeout(_ collector: any Collector) async -> (Outcome, Task<Void, Never>) {
        let work = Task { try await collector.collect() }
        let (first, continuation) = AsyncStream.makeStream(of: Outcome.self, bufferingPolicy: .bufferingOldest(1))
        let watcher = Task {
            _ = continuation.yield(.finished(await work.result))
        }
        let timer = Task {
            try await clock.sleep(for: collector.schedule.timeout)
            continuation.yield(.timedOut)
        }
        var outcome = Outcome.timedOut
        for await value in first {
            outcome = value
            break
        }
        timer.cancel()
        if case .timedOut = outcome { work.cancel() }
        return (outcome, watcher)
    }
}

extension CollectorRunner where C == ContinuousClock {
    /// A runner on the monotonic clock.
    public convenience init(collectors: [any Collector], store: MetricStore, logger: Logger,
                            afterEachRun: @escaping @Sendable () -> Void = {},
                            moreSelfFamilies: @escaping @Sendable () -> [MetricFamily] = { [] }) {
        self.init(collectors: collectors, store: store, logger: logger, clock: ContinuousClock(), afterEachRun: afterEachRun,
                  moreSelfFamilies: moreSelfFamilies)
    }
}
