import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A BullMQ/Bull queue: its key prefix (`bull`, or hash-tagged `{bull}`) and name.
public struct QueueID: Sendable, Hashable, Comparable {
    public let prefix: String
    public let name: String
    /// `bull:emails:`, the start of every key of the queue.
    let keyPrefix: String

    public init(prefix: String, name: String) {
        self.prefix = prefix
        self.name = name
        keyPrefix = "\(prefix):\(name):"
    }

    /// The Redis key of one of the queue's parts, e.g. `bull:emails:wait`.
    func key(_ part: String) -> String { keyPrefix + part }

    public static func == (lhs: QueueID, rhs: QueueID) -> Bool {
        lhs.prefix == rhs.prefix && lhs.name == rhs.name
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(prefix)
        hasher.combine(name)
    }

    var labels: Labels { ["queue": name, "prefix": prefix] }

    public static func < (lhs: QueueID, rhs: QueueID) -> Bool {
        (lhs.prefix, lhs.name) < (rhs.prefix, rhs.name)
    }
}

/// The job-queue collector: one Redis, explicit queues and/or discovery by SCAN.
public struct QueueCollectorConfig: Sendable {
    public var enabled = false
    public var redis = RedisSettings()
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var prefixes = ["bull"]
    public var queues: [QueueID] = []
    public var discoveryEnabled = true
    public var discoveryInterval = Duration.seconds(60)
    /// How long one discovery pass may SCAN before it continues on the next run.
    public var discoveryBudget = Duration.milliseconds(500)
    public var scanCount = 1000
    public var maxQueues = 1000
    public var jobNames = false
    public var maxJobNames = 50
    public var durationBuckets: [Double] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
    public var waitBuckets: [Double] = [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]

    package static func read(_ map: ConfigMap) -> QueueCollectorConfig {
        var config = QueueCollectorConfig()
        config.enabled = map.bool("enabled") ?? true
        config.schedule.read(map)
        if let redis = map.map("redis") {
            config.redis = RedisSettings.read(redis)
            redis.finish()
        } else {
            map.problems.add(map.childPath("redis"), "is required")
        }
        if let prefixes = map.stringList("prefixes") { config.prefixes = prefixes }
        for (path, node) in map.list("queues") ?? [] {
            if case .scalar(let scalar) = node {
                config.queues += config.prefixes.map { QueueID(prefix: $0, name: scalar.string) }
            } else if let item = ConfigMap(node, path: path, problems: map.problems) {
                if let name = item.string("name") {
                    config.queues.append(QueueID(prefix: item.string("prefix") ?? config.prefixes.first ?? "bull", name: name))
                } else {
                    item.problems.add(item.childPath("name"), "is required")
                }
                item.finish()
            }
        }
        if let discovery = map.map("discovery") {
            if let enabled = discovery.bool("enabled") { config.discoveryEnabled = enabled }
            if let interval = discovery.duration("interval") { config.discoveryInterval = interval }
            if let budget = discovery.duration("budget") { config.discoveryBudget = budget }
            if let count = discovery.int("scan_count", in: 10...100_000) { config.scanCount = count }
            discovery.finish()
        }
        if let cap = map.int("max_queues", in: 1...100_000) { config.maxQueues = cap }
        if let names = map.map("job_names") {
            if let enabled = names.bool("enabled") { config.jobNames = enabled }
            if let cap = names.int("max", in: 1...10_000) { config.maxJobNames = cap }
            names.finish()
        }
        if let buckets = readBuckets(map, "duration_buckets") { config.durationBuckets = buckets }
        if let buckets = readBuckets(map, "wait_buckets") { config.waitBuckets = buckets }
        if config.queues.isEmpty && !config.discoveryEnabled {
            map.problems.add(map.path, "list queues or enable discovery")
        }
        map.finish()
        return config
    }

    private static func readBuckets(_ map: ConfigMap, _ key: String) -> [Double]? {
        guard let texts = map.stringList(key) else { return nil }
        let bounds = texts.compactMap(Double.init)
        if bounds.count != texts.count || Buckets.problem(bounds) != nil {
            map.problems.add(map.childPath(key), Buckets.problem(bounds) ?? "expected numbers")
            return nil
        }
        return bounds
    }

    public init() {}
}

extension QueueCollectorConfig: SourceSettings {
    /// `queues`.
    static let registration = SourceRegistration { sections in
        sections.root.map("queues").map(QueueCollectorConfig.read) ?? QueueCollectorConfig()
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        enabled ? [QueueCollector(config: self)] : []
    }
}
