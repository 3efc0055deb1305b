import TelltaleMetrics
import Testing
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The process and host collectors against a fixture procfs tree.
@Suite struct ProcessHostCollectorTests {
    static let schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    /// Pids above Linux's pid_max, so that none is the test's own.
    static let workerA = "90000001"
    static let workerB = "90000002"

    /// /proc/PID/stat with `ticks` of user and of system time, `threads`, started `startTicks`
    /// after boot, 100 MiB virtual and 2560 pages resident.
    static func stat(_ pid: String, ticks: Int, threads: Int, startTicks: Int) -> String {
        "\(pid) (a (weird) name) S 1 1 1 0 -1 4194560 100 0 0 0 \(ticks) \(ticks) 0 0 20 0 \(threads) 0 \(startTicks) "
            + "104857600 2560 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
    }

    static func limits(_ maxFiles: Int) -> String {
        "Limit                     Soft Limit           Hard Limit           Units\n"
            + "Max open files            \(maxFiles)                 524288               files\n"
    }

    /// A procfs tree: Telltale itself (`self`), two workers matched by pattern, one by pid file.
    static func fixture() -> String {
        let root = temporaryDirectory()
        writeTree(root, [
            "stat": "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\nbtime 1700000000\n",
            "meminfo": "MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     250 kB\n",
            "loadavg": "0.50 0.25 0.10 1/100 1234\n",
            "self/stat": stat("1", ticks: 200, threads: 7, startTicks: 1000),
            "self/limits": limits(1024),
            "self/fd/0": "", "self/fd/1": "", "self/fd/2": "",
            "\(workerA)/stat": stat(workerA, ticks: 50, threads: 2, startTicks: 500),
            "\(workerA)/cmdline": "node\0worker.js\0--queue\0emails\0",
            "\(workerA)/limits": limits(4096),
            "\(workerA)/fd/0": "",
            "\(workerB)/stat": stat(workerB, ticks: 25, threads: 3, startTicks: 700),
            "\(workerB)/cmdline": "node\0worker.js\0--queue\0sms\0",
            "\(workerB)/limits": limits(2048),
            "\(workerB)/fd/0": "", "\(workerB)/fd/1": "",
            "app.pid": "\(workerB)\n",
        ])
        return root
    }

    @Test func ownAndWatchedProcessesFromTheTree() async throws {
        let root = Self.fixture()
        let collector = ProcessCollector(schedule: Self.schedule, watched: [
            WatchedProcess(name: "workers", match: .pattern("worker\\.js --queue")),
            WatchedProcess(name: "app", match: .pidFile("\(root)/app.pid")),
            WatchedProcess(name: "gone", match: .pidFile("\(root)/none.pid")),
        ], procRoot: root)
        let result = try await collector.collect()
        let ticks = ProcFS.clockTicksPerSecond
        #expect(result.value("process_cpu_seconds") == 400 / ticks)
        #expect(result.value("process_threads") == 7)
        #expect(result.value("process_open_fds") == 3)
        #expect(result.value("process_max_fds") == 1024)
        #expect(result.value("process_resident_memory_bytes") == 2560 * ProcFS.pageSize)
        #expect(result.value("process_start_time_seconds") == 1_700_000_000 + 1000 / ticks)

        let workers: Labels = ["name": "workers"]
        #expect(result.value("telltale_process_up", workers) == 2)
        #expect(isClose(result.value("telltale_process_cpu_seconds", workers), 150 / ticks))
        #expect(result.value("telltale_process_threads", workers) == 5)
        #expect(result.value("telltale_process_open_fds", workers) == 3)
        #expect(result.value("telltale_process_max_fds", workers) == 2048)
        #expect(result.value("telltale_process_start_time_seconds", workers) == 1_700_000_000 + 500 / ticks)
        #expect(result.value("telltale_process_up", ["name": "app"]) == 1)
        #expect(result.value("telltale_process_threads", ["name": "app"]) == 3)
        #expect(result.value("telltale_process_up", ["name": "gone"]) == 0)
        #expect(result.series("telltale_process_threads", ["name": "gone"]) == nil)
    }

    @Test func anUnreadableOwnStatFailsTheRun() async throws {
        let collector = ProcessCollector(schedule: Self.schedule, watched: [], procRoot: temporaryDirectory())
        let problem = await #expect(throws: CollectionProblem.self) { try await collector.collect() }
        #expect(problem?.reason == "procfs")
    }

    @Test func hostFiguresFromTheTree() async throws {
        let root = Self.fixture()
        let collector = HostCollector(schedule: Self.schedule, mountPoints: [root], procRoot: root)
        let first = try await collector.collect()
        #expect(first.problems.isEmpty)
        // The first run measures since boot: 850 of 1000 ticks idle (idle + iowait).
        #expect(isClose(first.value("telltale_host_cpu_usage_ratio"), 0.15))
        #expect(first.value("telltale_host_memory_usage_ratio") == 0.75)
        #expect(first.value("telltale_host_memory_total_bytes") == 1_024_000)
        #expect(first.value("telltale_host_memory_available_bytes") == 256_000)
        #expect(first.value("telltale_host_load_average", ["window": "5m"]) == 0.25)
        #expect(try #require(first.value("telltale_host_filesystem_size_bytes", ["mountpoint": root])) > 0)

        writeTree(root, ["stat": "cpu  400 0 100 1300 200 0 0 0 0 0\nbtime 1700000000\n"])
        // Since the previous run: 650 of 1000 ticks idle.
        #expect(isClose(try await collector.collect().value("telltale_host_cpu_usage_ratio"), 0.35))
    }

    @Test func missingProcFilesAreProblemsNotFailures() async throws {
        let root = temporaryDirectory()
        let result = try await HostCollector(schedule: Self.schedule, mountPoints: [root], procRoot: root).collect()
        #expect(result.problems.map(\.message) == ["cannot read \(root)/stat", "cannot read MemTotal and MemAvailable from \(root)/meminfo"])
        #expect(result.family("telltale_host_load_average") == nil)
        #expect(result.value("telltale_host_filesystem_usage_ratio", ["mountpoint": root]) != nil)
    }
}
