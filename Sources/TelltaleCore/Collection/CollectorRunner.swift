import Logging
import ServiceLifecycle
import TelltaleMetrics

/// The store source under which the runner publishes the self-metrics.
let selfMetricsSource = "telltale"

/// Runs every collector on its own schedule and publishes each run into the store.
///
/// A collector never runs twice at once: its loop waits for a run to really end, even after
/// the run's timeout has already been reported as a failure, before it starts the next one.
/// Schedules, timeouts and run durations follow `clock`: a test can drive them by hand.
public final class CollectorRunner<C: Clock>: Service, Sendable where C.Duration == Duration {
    public let collectors: [any Collector]
    public let health: CollectorHealth
    private let store: MetricStore
    private let logger: Logger
    private let throttled: LogThrottle
    /// Called after each run is published (alerting evaluates the fresh snapshot).
    private let afterEachRun: @Sendable () -> Void

    /// More self-metrics published with the collectors' (the HTTP server's connections).
    private let moreSelfFamilies: @Sendable () -> [MetricFamily]
    private let clock: C

    public init(collectors: [any Collector], store: MetricStore, logger: Logger, clock: C,
                afterEachRun: @escaping @Sendable () -> Void = {}, moreSelfFamilies: @escaping @Sendable () -> [MetricFamily] = { [] }) {
        self.clock = clock
        self.moreSelfFamilies = moreSelfFamilies
        self.collectors = collectors
        self.store = store
        self.logger = logger
        throttled = LogThrottle(logger)
        self.afterEachRun = afterEachRun
        self.health = CollectorHealth(collectors: collectors.map(\.name))
    }

    public func run() async throws {
        await store.publish([selfMetricsSource: selfFamilies])
        guard !collectors.isEmpty else {
            // Nothing to run, but returning early would read as this service failing.
            try await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for collector in self.collectors {
                    group.addTask { await self.loop(collector) }
                }
            }
        }
    }

    /// Runs every collector once, concurrently; true when all of them succeeded.
    public func runOnce() async -> Bool {
        await store.publish([selfMetricsSource: selfFamilies])
        return await withTaskGroup(of: Bool.self) { group in
            for collector in collectors {
                group.addTask { await self.runAndPublish(collector) }
            }
            return await group.reduce(true) { $0 && $1 }
        }
    }

    private var selfFamilies: [MetricFamily] { health.families + moreSelfFamilies() }

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
