import Glibc
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Host CPU, memory, load and filesystem usage: what the admin schema's `cpuThreshold` and
/// `memoryThreshold` alerts compare against.
public final class HostCollector: Collector {
    static let cpu = MetricDescriptor(
        "telltale_host_cpu_usage_ratio", .gauge, help: "Share of CPU time not idle since the previous run (0-1).", unit: "ratio")
    static let memory = MetricDescriptor(
        "telltale_host_memory_usage_ratio", .gauge, help: "1 - MemAvailable / MemTotal (0-1).", unit: "ratio")
    static let memoryTotal = MetricDescriptor(
        "telltale_host_memory_total_bytes", .gauge, help: "MemTotal from /proc/meminfo.", unit: "bytes")
    static let memoryAvailable = MetricDescriptor(
        "telltale_host_memory_available_bytes", .gauge, help: "MemAvailable from /proc/meminfo.", unit: "bytes")
    static let load = MetricDescriptor(
        "telltale_host_load_average", .gauge, help: "System load average over the window (1m, 5m, 15m).")
    static let fsSize = MetricDescriptor(
        "telltale_host_filesystem_size_bytes", .gauge, help: "Size of the filesystem at the mount point.", unit: "bytes")
    static let fsAvailable = MetricDescriptor(
        "telltale_host_filesystem_available_bytes", .gauge,
        help: "Space available to unprivileged users on the filesystem.", unit: "bytes")
    static let fsUsage = MetricDescriptor(
        "telltale_host_filesystem_usage_ratio", .gauge, help: "Used space as df computes it: used / (used + available).",
        unit: "ratio")

    public let name = "host"
    public let schedule: Schedule
    let mountPoints: [String]
    /// Where procfs is mounted: a fixture tree in unit tests.
    let procRoot: String
    /// CPU counters of the previous run, to turn cumulative jiffies into a recent ratio.
    private let previousCPU = Mutex<CPUTimes?>(nil)

    public var settings: CollectorSettings { CollectorSettings(schedule, mountPoints, procRoot) }

    public init(schedule: Schedule, mountPoints: [String], procRoot: String = "/proc") {
        self.schedule = schedule
        self.mountPoints = mountPoints
        self.procRoot = procRoot
    }

    public func collect() async throws -> CollectionResult {
        try await BlockingIO.run { try self.collectBlocking() }
    }

    /// Reads /proc and statvfs, which can block (a hung mount): run only on `BlockingIO`'s threads.
    private func collectBlocking() throws -> CollectionResult {
        var families: [MetricFamily] = []
        var problems: [CollectionProblem] = []
        func gauge(_ descriptor: MetricDescriptor, _ values: [(Labels, Double)]) {
            var builder = FamilyBuilder(descriptor)
            for (labels, value) in values { builder.set(value, labels) }
            families.append(builder.build())
        }

        if let ratio = cpuUsage() {
            gauge(Self.cpu, [(.none, ratio)])
        } else {
            problems.append(CollectionProblem(reason: "procfs", "cannot read \(procRoot)/stat"))
        }
        let memory = ProcFS.read("\(procRoot)/meminfo").map(ProcFS.keyedNumbers) ?? [:]
        if let total = memory["MemTotal"], let available = memory["MemAvailable"], total > 0 {
            gauge(Self.memory, [(.none, 1 - available / total)])
            gauge(Self.memoryTotal, [(.none, total * 1024)])
            gauge(Self.memoryAvailable, [(.none, available * 1024)])
        } else {
            problems.append(CollectionProblem(reason: "procfs", "cannot read MemTotal and MemAvailable from \(procRoot)/meminfo"))
        }
        if let averages = ProcFS.read("\(procRoot)/loadavg")?.split(separator: " ").prefix(3).compactMap({ Double($0) }),
           averages.count == 3 {
            gauge(Self.load, zip(["1m", "5m", "15m"], averages).map { (["window": $0.0], $0.1) })
        }

        var size: [(Labels, Double)] = [], available: [(Labels, Double)] = [], usage: [(Labels, Double)] = []
        for mountPoint in mountPoints {
            var fs = statvfs()
            guard statvfs(mountPoint, &fs) == 0 else {
                problems.append(CollectionProblem(reason: "filesystem", "statvfs(\(mountPoint)) failed: \(String(cString: strerror(errno)))"))
                continue
            }
            let blockSize = Double(fs.f_frsize)
            let total = Double(fs.f_blocks) * blockSize
            let free = Double(fs.f_bfree) * blockSize
            let avail = Double(fs.f_bavail) * blockSize
            let labels: Labels = ["mountpoint": mountPoint]
            size.append((labels, total))
            available.append((labels, avail))
            let used = total - free
            usage.append((labels, used + avail > 0 ? used / (used + avail) : 0))
        }
        gauge(Self.fsSize, size)
        gauge(Self.fsAvailable, available)
        gauge(Self.fsUsage, usage)
        return CollectionResult(families: families, problems: problems)
    }

    /// Busy share since the previous run; on the first run, since boot.
    private func cpuUsage() -> Double? {
        guard let current = ProcFS.read("\(procRoot)/stat").flatMap(CPUTimes.parse) else { return nil }
        let previous = previousCPU.withLock { previous in
            defer { previous = current }
            return previous
        }
        let base = previous ?? CPUTimes(total: 0, idle: 0)
        let total = current.total - base.total
        guard total > 0 else { return 0 }
        return min(1, max(0, 1 - (current.idle - base.idle) / total))
    }
}

/// The aggregate `cpu` line of /proc/stat, in clock ticks.
struct CPUTimes: Sendable, Equatable {
    var total: Double
    /// idle + iowait: time the CPUs had nothing to run.
    var idle: Double

    static func parse(_ stat: String) -> CPUTimes? {
        guard let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let ticks = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard ticks.count >= 5 else { return nil }
        // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
        return CPUTimes(total: ticks.prefix(8).reduce(0, +), idle: ticks[3] + ticks[4])
    }
}
