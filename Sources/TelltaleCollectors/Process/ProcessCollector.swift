import Glibc
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A process to watch besides Telltale itself, found by pid file or by command line.
public struct WatchedProcess: Sendable, Equatable {
    public enum Match: Sendable, Equatable {
        case pidFile(String)
        /// A regular expression searched in the command line (arguments joined by spaces).
        case pattern(String)
    }

    public let name: String
    public let match: Match

    public init(name: String, match: Match) {
        self.name = name
        self.match = match
    }
}

/// Telltale's own process metrics under the standard client-library names, and the same
/// figures for watched processes as `telltale_process_*{name}`.
public struct ProcessCollector: Collector {
    public let name = "process"
    public let schedule: Schedule
    let watched: [WatchedProcess]
    /// Each watched pattern, compiled once (the configuration checked that it compiles).
    private let patterns: [String: BoundedRegex]
    /// Where procfs is mounted: a fixture tree in unit tests.
    let procRoot: String
    /// Read once: processes' start times count from it, and it does not change.
    private let bootTime: Double

    public var settings: CollectorSettings { CollectorSettings(schedule, watched, procRoot) }

    public init(schedule: Schedule, watched: [WatchedProcess], procRoot: String = "/proc") {
        self.schedule = schedule
        self.watched = watched
        self.procRoot = procRoot
        bootTime = ProcFS.bootTime(root: procRoot) ?? 0
        patterns = Dictionary(watched.compactMap { process in
            guard case .pattern(let pattern) = process.match else { return nil }
            return (try? BoundedRegex(pattern, anchoring: .anywhere)).map { (pattern, $0) }
        }, uniquingKeysWith: { first, _ in first })
    }

    public func collect() async throws -> CollectionResult {
        try await BlockingIO.run { try self.collectBlocking() }
    }

    /// Reads /proc, which can block (a hung mount): run only on `BlockingIO`'s threads.
    private func collectBlocking() throws -> CollectionResult {
        guard let own = ProcessStats.read(pid: "self", root: procRoot, bootTime: bootTime) else {
            throw CollectionProblem(reason: "procfs", "cannot read \(procRoot)/self/stat")
        }
        var ownFamilies = ProcessFamilies(prefix: "process")
        ownFamilies.add(own)
        var families = ownFamilies.build()
        if !watched.isEmpty {
            families += watchedFamilies()
        }
        return CollectionResult(families: families)
    }

    private func watchedFamilies() -> [MetricFamily] {
        let commandLines = watched.contains { if case .pattern = $0.match { true } else { false } }
            ? commandLines() : [:]
        var figures = ProcessFamilies(prefix: "telltale_process")
        var up = FamilyBuilder(ProcessFamilies.up)
        for process in watched {
            let pids = matchingPIDs(process.match, commandLines: commandLines)
            let stats = pids.compactMap { ProcessStats.read(pid: $0, root: procRoot, bootTime: bootTime) }
            up.set(Double(stats.count), ["name": process.name])
            if let combined = ProcessStats.combined(stats) {
                figures.add(combined, ["name": process.name])
            }
        }
        return figures.build() + [up.build()]
    }

    private func matchingPIDs(_ match: WatchedProcess.Match, commandLines: [String: String]) -> [String] {
        switch match {
        case .pidFile(let path):
            guard let text = try? BoundedFile.read(path, limit: 64).get(), let pid = Int32(text.trimming(" \n\t")), pid > 0 else {
                return []
            }
            return ["\(pid)"]
        case .pattern(let pattern):
            guard let regex = patterns[pattern] else { return [] }
            // A command line that exhausts the match budget is not counted as a match.
            return commandLines.filter { (try? regex.matches($0.value)) ?? false }.map(\.key)
        }
    }

    /// Command lines of every process but Telltale itself, keyed by pid.
    private func commandLines() -> [String: String] {
        let own = "\(getpid())"
        var lines: [String: String] = [:]
        for pid in ProcFS.list(procRoot) ?? [] where pid != own && pid.allSatisfy(\.isNumber) {
            guard let raw = ProcFS.read("\(procRoot)/\(pid)/cmdline"), !raw.isEmpty else { continue }
            lines[pid] = raw.split(separator: "\0").joined(separator: " ")
        }
        return lines
    }
}

extension ProcessStats {
    /// Several matching processes as one: summed usage, earliest start, tightest fd limit.
    static func combined(_ all: [ProcessStats]) -> ProcessStats? {
        guard var total = all.first else { return nil }
        for stats in all.dropFirst() {
            total.cpuSeconds += stats.cpuSeconds
            total.residentBytes += stats.residentBytes
            total.virtualBytes += stats.virtualBytes
            total.threads += stats.threads
            total.startTime = min(total.startTime, stats.startTime)
            total.openFDs = both(total.openFDs, stats.openFDs, +)
            total.maxFDs = both(total.maxFDs, stats.maxFDs, min)
        }
        return total
    }
}

/// Combines two optional figures; unknown when either is unknown (another user's fds, say).
private func both(_ left: Double?, _ right: Double?, _ combine: (Double, Double) -> Double) -> Double? {
    guard let left, let right else { return nil }
    return combine(left, right)
}

/// The seven standard process families under one prefix.
struct ProcessFamilies {
    static let up = MetricDescriptor(
        "telltale_process_up", .gauge, help: "How many running processes matched the watched process's pid file or pattern.")

    private var cpu, resident, virtual, openFDs, maxFDs, start, threads: FamilyBuilder

    init(prefix: String) {
        let whose = prefix == "process" ? "Telltale's own process" : "the watched process (summed over matches)"
        cpu = FamilyBuilder(MetricDescriptor("\(prefix)_cpu_seconds", .counter,
                                             help: "User and system CPU time of \(whose).", unit: "seconds"))
        resident = FamilyBuilder(MetricDescriptor("\(prefix)_resident_memory_bytes", .gauge,
                                                  help: "Resident memory of \(whose).", unit: "bytes"))
        virtual = FamilyBuilder(MetricDescriptor("\(prefix)_virtual_memory_bytes", .gauge,
                                                 help: "Virtual memory of \(whose).", unit: "bytes"))
        openFDs = FamilyBuilder(MetricDescriptor("\(prefix)_open_fds", .gauge, help: "Open file descriptors of \(whose)."))
        maxFDs = FamilyBuilder(MetricDescriptor("\(prefix)_max_fds", .gauge,
                                                help: "Soft limit on open file descriptors of \(whose)."))
        start = FamilyBuilder(MetricDescriptor("\(prefix)_start_time_seconds", .gauge,
                                               help: "Start time of \(whose) in Unix seconds.", unit: "seconds"))
        threads = FamilyBuilder(MetricDescriptor("\(prefix)_threads", .gauge, help: "Threads of \(whose)."))
    }

    mutating func add(_ stats: ProcessStats, _ labels: Labels = .none) {
        cpu.set(stats.cpuSeconds, labels)
        resident.set(stats.residentBytes, labels)
        virtual.set(stats.virtualBytes, labels)
        threads.set(stats.threads, labels)
        start.set(stats.startTime, labels)
        if let open = stats.openFDs { openFDs.set(open, labels) }
        if let max = stats.maxFDs { maxFDs.set(max, labels) }
    }

    func build() -> [MetricFamily] {
        [cpu, resident, virtual, openFDs, maxFDs, start, threads].map { $0.build() }
    }
}
