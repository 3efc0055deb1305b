import TelltaleClients
import TelltaleCore
import TelltaleMetrics

public struct HostCollectorConfig: Sendable, Equatable {
    public var enabled = true
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var filesystems = ["/"]

    public init() {}
}

extension HostCollectorConfig {
    package mutating func read(_ map: ConfigMap) {
        if let enabled = map.bool("enabled") { self.enabled = enabled }
        schedule.read(map)
        if let filesystems = map.stringList("filesystems") { self.filesystems = filesystems }
        map.finish()
    }
}

extension HostCollectorConfig: SourceSettings {
    /// `collectors.host`.
    static let registration = SourceRegistration { sections in
        var config = HostCollectorConfig()
        if let map = sections.collectors?.map("host") { config.read(map) }
        return config
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        enabled ? [HostCollector(schedule: schedule, mountPoints: filesystems)] : []
    }
}
