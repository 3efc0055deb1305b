import TelltaleClients
import TelltaleCore
import TelltaleMetrics

public struct ProcessCollectorConfig: Sendable, Equatable {
    public var enabled = true
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var watch: [WatchedProcess] = []

    public init() {}
}

extension ProcessCollectorConfig {
    package mutating func read(_ map: ConfigMap) {
        if let enabled = map.bool("enabled") { self.enabled = enabled }
        schedule.read(map)
        for (path, node) in map.list("watch") ?? [] {
            guard let item = ConfigMap(node, path: path, problems: map.problems) else { continue }
            let name = item.string("name")
            let pidFile = item.string("pid_file")
            let pattern = item.string("pattern")
            item.finish()
            guard let name, !name.isEmpty else {
                item.problems.add(item.childPath("name"), "is required")
                continue
            }
            switch (pidFile, pattern) {
            case (let file?, nil):
                watch.append(WatchedProcess(name: name, match: .pidFile(file)))
            case (nil, let pattern?):
                do {
                    _ = try BoundedRegex(pattern, anchoring: .anywhere)
                    watch.append(WatchedProcess(name: name, match: .pattern(pattern)))
                } catch {
                    item.problems.add(item.childPath("pattern"), error.description)
                }
            default:
                item.problems.add(path, "set exactly one of pid_file or pattern")
            }
        }
        if Set(watch.map(\.name)).count != watch.count {
            map.problems.add(map.childPath("watch"), "process names must be unique")
        }
        map.finish()
    }
}

extension ProcessCollectorConfig: SourceSettings {
    /// `collectors.process`.
    static let registration = SourceRegistration { sections in
        var config = ProcessCollectorConfig()
        if let map = sections.collectors?.map("process") { config.read(map) }
        return config
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        enabled ? [ProcessCollector(schedule: schedule, watched: watch)] : []
    }
}
