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
