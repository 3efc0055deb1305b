import Foundation
import Logging
import NIOCore
import Synchronization
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

/// A collector whose run takes as long as asked, to exercise the runner's timeout.
struct SleepyCollector: Collector {
    let name = "sleepy"
    let sleep: Duration
    /// Generous, so that a busy machine does not time a quick run out; short where a test
    /// wants the run to time out.
    var timeout = Duration.seconds(30)
    var schedule: Schedule { Schedule(interval: .seconds(10), timeout: timeout) }
    var settings: CollectorSettings { CollectorSettings(sleep, timeout) }

    func collect() async throws -> CollectionResult {
        // A detached sleep ignores cancellation, as a blocking C call does.
        let sleep = self.sleep
        await Task.detached { try? await Task.sleep(for: sleep) }.value
        var builder = FamilyBuilder(MetricDescriptor("sleepy_value", .gauge, help: "h"))
        builder.set(1)
        return CollectionResult(families: [builder.build()])
    }
}

/// Counts its runs; a run ends only when the test lets it (`release`), like a slow source.
final class GatedCollector: Collector {
    let name = "gated"
    let schedule = Schedule(interval: .seconds(10), timeout: .seconds(5))
    let settings = CollectorSettings(10)
    private let state = Mutex((runs: 0, released: 0))

    var runs: Int { state.withLock { $0.runs } }
    func release() { state.withLock { $0.released += 1 } }

    func collect() async throws -> CollectionResult {
        let run = state.withLock { state in
            state.runs += 1
            return state.runs
        }
        // Ignores cancellation, as a blocking C call does.
        while state.withLock({ $0.released < run }) { await Task.yield() }
        return CollectionResult(families: [])
    }
}

@Suite struct RunnerScheduleTests {
    @Test func runsFollowTheScheduleAndATimedOutRunHoldsBackTheNext() async throws {
        let clock = ManualClock()
        let collector = GatedCollector()
        let runner = CollectorRunner(collectors: [collector], store: MetricStore(), logger: Logger(label: "test"), clock: clock)
        let running = Task { try await runner.run() }
        defer { running.cancel() }
        // The first run comes within the stagger (at most half a second).
        #expect(await eventually("the loop sleeps") { clock.sleeping == 1 })
        clock.advance(by: .milliseconds(500))
        #expect(await eventually("first run") { collector.runs == 1 })
        collector.release()
        #expect(await eventually("sleeping until the next run") { clock.sleeping == 1 && runner.health.pending.isEmpty })
        clock.advance(by: .seconds(9))
        #expect(collector.runs == 1)
        clock.advance(by: .seconds(1))
        #expect(await eventually("second run") { collector.runs == 2 })
        // Past its timeout the run is a failure, but the next one waits for it to end.
        #expect(await eventually("timeout armed") { clock.sleeping == 1 })
        clock.advance(by: .seconds(5))
        #expect(await eventually("timeout reported") { runner.health.statuses.first?.lastError?.hasPrefix("timeout") == true })
        clock.advance(by: .seconds(30))
        #expect(collector.runs == 2)
        collector.release()
        #expect(await eventually("third run, at once") { collector.runs == 3 })
        collector.release()
    }
}

@Suite struct CollectorTests {
    @Test func timedOutRunIsReportedAsFailureAndItsFamiliesDropped() async {
        let store = MetricStore()
        let runner = CollectorRunner(collectors: [SleepyCollector(sleep: .milliseconds(400), timeout: .milliseconds(100))], store: store,
                                     logger: Logger(label: "test"))
        let clock = ContinuousClock()
        let started = clock.now
        #expect(await runner.runOnce() == false)
        // runOnce waits for the run to really end before returning, so no two runs overlap.
        #expect(clock.now - started >= .milliseconds(400))
        let up = store.snapshot.family(named: "telltale_collector_up")
        #expect(up?.series.first?.value == .number(0))
        #expect(store.snapshot.family(named: "sleepy_value") == nil)
        #expect(runner.health.statuses.first?.lastError?.hasPrefix("timeout") == true)
        #expect(runner.health.pending.isEmpty)
    }

    @Test func successfulRunPublishesFamiliesAndSelfMetrics() async {
        let store = MetricStore()
        let runner = CollectorRunner(collectors: [SleepyCollector(sleep: .zero)], store: store, logger: Logger(label: "test"))
        #expect(runner.health.pending == ["sleepy"])
        #expect(await runner.runOnce())
        let snapshot = store.snapshot
        #expect(snapshot.family(named: "sleepy_value") != nil)
        #expect(snapshot.family(named: "telltale_collector_up")?.series.first?.value == .number(1))
        #expect(snapshot.family(named: "telltale_collector_last_success_timestamp_seconds") != nil)
        #expect(snapshot.family(named: "telltale_build")?.series.first?.labels["version"] == TelltaleVersion.current)
    }

    @Test func builtInDescriptorsAreValid() async throws {
        var descriptors = [CollectorHealth.up, CollectorHealth.duration, CollectorHealth.lastSuccess, CollectorHealth.errors,
                           CollectorHealth.build, CollectorHealth.seriesDropped, MetricStore.scrapes, MetricStore.renderDuration,
                           ConnectionStats.open, ConnectionStats.closed,
                           ReloadStatus.lastSuccessful, ReloadStatus.lastSuccessTimestamp, ReloadStatus.reloads,
                           TLSReloader.reloadErrors, TLSReloader.lastReload]
        descriptors += [HostCollector.cpu, HostCollector.memory, HostCollector.memoryTotal, HostCollector.memoryAvailable,
                        HostCollector.load, HostCollector.fsSize, HostCollector.fsAvailable, HostCollector.fsUsage, ProcessFamilies.up]
        descriptors += [PostgresHealthCollector.up, PostgresHealthCollector.server, PostgresHealthCollector.inRecovery,
                        PostgresHealthCollector.maxConnections, PostgresHealthCollector.connections,
                        PostgresHealthCollector.oldestTransaction, PostgresHealthCollector.replicationLag,
                        PostgresHealthCollector.slotRetained, PostgresHealthCollector.locks, PostgresDatabaseSizeCollector.size]
            + PostgresHealthCollector.databaseCounters.map(\.descriptor)
        descriptors += [QueueMetrics.jobs, QueueMetrics.paused, QueueMetrics.up, QueueMetrics.oldestWaiting, QueueMetrics.overdue,
                        QueueMetrics.unlocked, QueueMetrics.workers, QueueMetrics.completed, QueueMetrics.failed,
                        QueueMetrics.duration, QueueMetrics.wait, QueueMetrics.attempts, QueueMetrics.roundTrips, QueueMetrics.stalled,
                        RedisInfoMetrics.up, RedisInfoMetrics.info, RedisInfoMetrics.usedMemory, RedisInfoMetrics.maxMemory,
                        RedisInfoMetrics.memoryRatio, RedisInfoMetrics.clients, RedisInfoMetrics.evicted, RedisInfoMetrics.rejected]
        descriptors += [ProviderCollector.balance, ProviderCollector.pending, ProviderCollector.up, ProviderCollector.stale,
                        ProviderCollector.duration, ProviderCollector.lastSuccess, ProviderCollector.errors,
                        ProbeCollector.success, ProbeCollector.status, ProbeCollector.duration, ProbeCollector.errorRatio]
        descriptors += [AlertMetrics.state, AlertMetrics.threshold, AlertMetrics.firing, AlertMetrics.ruleErrors,
                        AlertMetrics.notifications, AlertMetrics.queueDepth, AlertMetrics.channelFailing, AlertMetrics.leader,
                        AlertMetrics.unrecorded, AlertMetrics.databaseUp, AlertMetrics.value,
                        AlertMetrics.samples, AlertMetrics.samplesRefused, AlertMetrics.evaluationDuration, SystemHealthWriter.writes, SystemHealthWriter.lastWrite,
                        SystemHealthWriter.pruned, SystemHealthWriter.pruneFailures, SystemHealthWriter.unread,
                        OutboxRetention.pruned, OutboxRetention.pruneFailures]
        // The process families are named after their process: Telltale's own and a watched one.
        let process = try await ProcessCollector(schedule: Schedule(interval: .seconds(1), timeout: .seconds(1)),
                                                 watched: [WatchedProcess(name: "tests", match: .pattern("."))]).collect()
        #expect(process.families.count > 8)
        descriptors += process.families.map(\.descriptor)
        for descriptor in descriptors {
            #expect(descriptor.problem == nil, "\(descriptor.name)")
        }
        // Every descriptor written with a literal name in the sources is among those checked.
        #expect(try literalDescriptorNames().subtracting(descriptors.map(\.name)).isEmpty)
    }

    /// The names of `MetricDescriptor("…"` literals in Sources/.
    private func literalDescriptorNames() throws -> Set<String> {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        var names: Set<String> = []
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: /MetricDescriptor\(\s*"([a-z_:][a-z0-9_:]*)"/) { names.insert(String(match.1)) }
        }
        #expect(names.count > 50)
        return names
    }
}

/// `telltale`'s `main` is synchronous: the main thread only waits (Sources/telltale/main.swift),
/// so work sent to the main actor or the main queue would never run. Neither Telltale nor the
/// packages it builds from send any; this keeps it so.
@Suite struct MainThreadTests {
    @Test func nothingIsSentToTheMainActorOrTheMainQueue() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var folders = [root.appendingPathComponent("Sources")]
        let checkouts = root.appendingPathComponent(".build/checkouts")
        for package in (try? FileManager.default.contentsOfDirectory(atPath: checkouts.path)) ?? [] {
            folders.append(checkouts.appendingPathComponent(package).appendingPathComponent("Sources"))
        }
        var offending: [String] = []
        for folder in folders {
            let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
            for file in files {
                let text = try String(contentsOf: file, encoding: .utf8)
                guard text.contains("MainActor") || text.contains(".main") else { continue }
                for line in text.split(separator: "\n") where !line.trimming(" ").hasPrefix("//")
                    && line.contains(/@MainActor|MainActor\.run|DispatchQueue\.main|RunLoop\.main/) {
                    offending.append("\(file.lastPathComponent): \(line.trimming(" "))")
                }
            }
        }
        #expect(offending.isEmpty, "\(offending.prefix(10))")
    }
}

@Suite struct ProcFSTests {
    @Test func statIsParsedAfterTheLastParenthesis() throws {
        // A command name with spaces and parentheses must not shift the fields.
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 1000 "
            + "104857600 2560 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        let stats = try #require(ProcessStats.parse(stat: stat, bootTime: 0))
        #expect(stats.cpuSeconds == 400 / ProcFS.clockTicksPerSecond)
        #expect(stats.threads == 7)
        #expect(stats.virtualBytes == 104_857_600)
        #expect(stats.residentBytes == 2560 * ProcFS.pageSize)
    }

    @Test func ownProcessIsReadable() throws {
        let stats = try #require(ProcessStats.read(pid: "self", root: "/proc", bootTime: 0))
        #expect(stats.residentBytes > 0)
        #expect(stats.openFDs ?? 0 > 0)
        #expect(stats.maxFDs ?? 0 > 0)
    }

    @Test func maxFDsFromLimits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n"
            + "Max open files            1024                 524288               files\n"
        #expect(ProcessStats.parseMaxFDs(limits) == 1024)
    }

    @Test func cpuTimes() throws {
        let times = try #require(CPUTimes.parse("cpu  100 0 50 800 50 0 0 0 10 0\ncpu0 1 2 3\n"))
        #expect(times == CPUTimes(total: 1000, idle: 850))
    }

    @Test func hostCollectorReportsRatiosBetweenZeroAndOne() async throws {
        let collector = HostCollector(schedule: Schedule(interval: .seconds(1), timeout: .seconds(1)), mountPoints: ["/", "/nonexistent"])
        let result = try await collector.collect()
        for name in ["telltale_host_cpu_usage_ratio", "telltale_host_memory_usage_ratio", "telltale_host_filesystem_usage_ratio"] {
            let family = try #require(result.families.first { $0.name == name })
            for series in family.series {
                guard case .number(let value) = series.value else { Issue.record("not a number"); continue }
                #expect((0...1).contains(value))
            }
        }
        #expect(result.problems.map(\.reason) == ["filesystem"])
    }
}

/// Runs often and counts its runs in a family, so a test sees which instance is publishing.
final class CountingCollector: Collector {
    let name: String
    let version: Int
    let schedule = Schedule(interval: .milliseconds(20), timeout: .seconds(30))
    private let runs = Mutex(0)

    init(_ name: String, version: Int = 1) {
        self.name = name
        self.version = version
    }

    var settings: CollectorSettings { CollectorSettings(version) }
    var runCount: Int { runs.withLock { $0 } }

    func collect() async throws -> CollectionResult {
        let count = runs.withLock { runs in
            runs += 1
            return runs
        }
        var builder = FamilyBuilder(MetricDescriptor("counting_\(name)_runs", .counter, help: "h"))
        builder.add(Double(count), ["version": String(version)])
        return CollectionResult(families: [builder.build()])
    }
}

@Suite struct RunnerReplaceTests {
    func exposition(_ store: MetricStore) -> String {
        String(buffer: store.exposition(format: .text).joined)
    }

    @Test func equalCollectorsKeepRunningChangedOnesAreReplacedRemovedOnesGo() async throws {
        let store = MetricStore()
        let (kept, changed, removed) = (CountingCollector("kept"), CountingCollector("changed"), CountingCollector("removed"))
        let runner = CollectorRunner(collectors: [kept, changed, removed], store: store, logger: Logger(label: "test"))
        let running = Task { try await runner.run() }
        defer { running.cancel() }
        #expect(await eventually("every collector ran") { runner.health.pending.isEmpty })

        let (keptAgain, changedAgain, added) = (CountingCollector("kept"), CountingCollector("changed", version: 2), CountingCollector("added"))
        let change = await runner.replace(with: [keptAgain, changedAgain, added])
        #expect(change == CollectorRunner.Replacement(kept: ["kept"], replaced: ["changed"], added: ["added"], removed: ["removed"]))
        #expect(runner.collectors.map(\.name) == ["kept", "changed", "added"])
        #expect(runner.health.statuses.map(\.name) == ["kept", "changed", "added"])
        // The removed collector's series go at once; the replaced one's stay until its successor runs.
        #expect(!exposition(store).contains("counting_removed_runs"))
        #expect(!exposition(store).contains("collector=\"removed\""))
        #expect(await eventually("the new collectors run") { changedAgain.runCount > 0 && added.runCount > 0 })
        #expect(await eventually("the replacement publishes") { exposition(store).contains("counting_changed_runs_total{version=\"2\"}") })
        // The equal collector was not started again: the running instance goes on counting.
        let before = kept.runCount
        #expect(await eventually("the kept instance goes on") { kept.runCount > before })
        #expect(keptAgain.runCount == 0)
        let stoppedAt = changed.runCount
        try await Task.sleep(for: .milliseconds(100))
        #expect(changed.runCount == stoppedAt)
    }
}

@Suite struct ReadinessTests {
    @Test func collectorsAddedByAReloadDoNotMakeAReadyReplicaUnready() {
        let health = CollectorHealth(collectors: ["a"])
        #expect(health.notReady == ["a"])
        health.record("a", duration: .zero, problems: [], at: .now)
        health.settle("a", succeeded: true)
        #expect(health.notReady.isEmpty)
        health.replaceCollectors(with: ["a", "b"])
        #expect(health.pending == ["b"])
        #expect(health.notReady.isEmpty)
    }

    @Test func duplicateNamesDoNotTrap() {
        let health = CollectorHealth(collectors: ["a", "a"])
        health.replaceCollectors(with: ["b", "b"])
        #expect(health.pending == ["b", "b"] || health.pending == ["b"])
    }
}
