import Glibc
import TelltaleMetrics

/// Small readers for Linux's /proc and /sys files.
package enum ProcFS {
    package static let clockTicksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    package static let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

    /// The whole file as text, or nil if it cannot be read. /proc files report a size of 0,
    /// so this reads until end of file rather than trusting `stat`.
    package static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 { return nil }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Names in a directory (without `.` and `..`), or nil if it cannot be listed.
    package static func list(_ path: String) -> [String]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Fields of a `Key:   value unit` file such as /proc/meminfo, first number only.
    package static func keyedNumbers(_ text: String) -> [Substring: Double] {
        var values: [Substring: Double] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let number = line[line.index(after: colon)...].split(separator: " ").first
            if let number, let value = Double(number) { values[line[..<colon]] = value }
        }
        return values
    }

    /// The system's boot time in Unix seconds (`btime` in `<root>/stat`), `root` being where
    /// procfs is mounted (a fixture tree in tests).
    package static func bootTime(root: String) -> Double? {
        read("\(root)/stat").flatMap { text in
            text.split(separator: "\n").first { $0.hasPrefix("btime ") }
                .flatMap { Double($0.dropFirst("btime ".count)) }
        }
    }
}

/// The standard per-process figures, read from /proc/PID.
package struct ProcessStats: Sendable, Equatable {
    package var cpuSeconds: Double
    package var residentBytes: Double
    package var virtualBytes: Double
    package var threads: Double
    package var startTime: Double
    package var openFDs: Double?
    package var maxFDs: Double?

    /// Reads `<root>/<pid>/…`; `pid` may be `self`. Nil when the process is gone.
    package static func read(pid: String, root: String, bootTime: Double) -> ProcessStats? {
        guard let stat = ProcFS.read("\(root)/\(pid)/stat"), var stats = parse(stat: stat, bootTime: bootTime) else { return nil }
        stats.openFDs = ProcFS.list("\(root)/\(pid)/fd").map { Double($0.count) }
        stats.maxFDs = ProcFS.read("\(root)/\(pid)/limits").flatMap(parseMaxFDs)
        return stats
    }

    /// Parses /proc/PID/stat, whose start time counts from `bootTime` (Unix seconds). The
    /// command name (field 2) may contain spaces and parentheses, so fields are counted from
    /// after the last `)`.
    package static func parse(stat: String, bootTime: Double) -> ProcessStats? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field N is fields[N - 3].
        func field(_ number: Int) -> Double? {
            number - 3 < fields.count ? Double(fields[number - 3]) : nil
        }
        guard let utime = field(14), let stime = field(15), let threads = field(20),
              let startTicks = field(22), let vsize = field(23), let rssPages = field(24) else { return nil }
        return ProcessStats(
            cpuSeconds: (utime + stime) / ProcFS.clockTicksPerSecond,
            residentBytes: rssPages * ProcFS.pageSize,
            virtualBytes: vsize,
            threads: threads,
            startTime: bootTime + startTicks / ProcFS.clockTicksPerSecond)
    }

    /// The soft limit of `Max open files` in /proc/PID/limits (nil when unlimited).
    package static func parseMaxFDs(_ limits: String) -> Double? {
        guard let line = limits.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
        return line.dropFirst("Max open files".count).split(separator: " ").first.flatMap { Double($0) }
    }
}
