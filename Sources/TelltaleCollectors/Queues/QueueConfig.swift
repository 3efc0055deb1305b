import TelltaleClients
import TelltaleCore
import TelltaleMetrics
import Yams

/// A BullMQ/Bull queue: its key prefix (`bull`, or hash-tagged `{bull}`) and name, in the
/// source (`redis` label) that reads it.
public struct QueueID: Sendable, Hashable, Comparable {
    public let prefix: String
    public let name: String
    /// `bull:emails:`, the start of every key of the queue.
    let keyPrefix: String
    /// `queue`, `prefix` and `redis`: made once, as every family of every run uses them.
    let labels: Labels

    public init(prefix: String, name: String, source: String) {
        self.prefix = prefix
        self.name = name
        keyPrefix = "\(prefix):\(name):"
        labels = ["queue": name, "prefix": prefix, "redis": source]
    }

    /// The queue a series of a queue family is about, from its `prefix` and `queue` labels (to
    /// look it up in a set: equality ignores the source).
    init(labels: Labels) {
        self.init(prefix: labels["prefix"] ?? "", name: labels["queue"] ?? "", source: labels["redis"] ?? "")
    }

    /// The Redis key of one of the queue's parts, e.g. `bull:emails:wait`.
    func key(_ part: String) -> String { keyPrefix + part }

    // By bytes, as Redis tells keys apart (`String ==` would make two queues whose names are
    // canonically equivalent, such as an `é` in NFC and in NFD, one).
    public static func == (lhs: QueueID, rhs: QueueID) -> Bool {
        lhs.prefix.hasSameBytes(as: rhs.prefix) && lhs.name.hasSameBytes(as: rhs.name)
    }

    public func hash(into hasher: inout Hasher) {
        prefix.hashBytes(into: &hasher)
        name.hashBytes(into: &hasher)
    }

    public static func < (lhs: QueueID, rhs: QueueID) -> Bool {
        let prefix = lhs.prefix.comparingBytes(rhs.prefix)
        return prefix != 0 ? prefix < 0 : lhs.name.comparingBytes(rhs.name) < 0
    }
}

/// One source of the job-queue collector: one Redis (a server, a Sentinel-managed master or
/// a Cluster), explicit queues and/or discovery by SCAN.
public struct QueueCollectorConfig: Sendable, Equatable {
    /// The `redis` label, and the collector's name `queues:<name>`.
    public var name = QueueSources.defaultName
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

    package static func read(_ map: ConfigMap, name: String) -> QueueCollectorConfig {
        var config = QueueCollectorConfig()
        config.name = name
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
                config.queues += config.prefixes.map { QueueID(prefix: $0, name: scalar.string, source: name) }
            } else if let item = ConfigMap(node, path: path, problems: map.problems) {
                if let queueName = item.string("name") {
                    let prefix = item.string("prefix") ?? config.prefixes.first ?? "bull"
                    config.queues.append(QueueID(prefix: prefix, name: queueName, source: name))
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

/// `queues:`: a list of named sources, or one mapping, which is the source `default`.
public struct QueueSources: SourceSettings {
    public static let defaultName = "default"
    public var sources: [QueueCollectorConfig] = []

    /// `queues`.
    static let registration = SourceRegistration { sections in
        let root = sections.root
        guard let node = root.node("queues") else { return QueueSources() }
        if case .sequence = node {
            return QueueSources(sources: sections.namedList("queues", item: { readNamed($0) }, name: \.name))
        }
        return QueueSources(sources: root.map("queues").map { [readNamed($0, default: defaultName)] } ?? [])
    }

    /// A source: its `name` (required in a list) must be safe in a label and a collector name.
    private static func readNamed(_ map: ConfigMap, default: String? = nil) -> QueueCollectorConfig {
        let name = map.string("name") ?? `default` ?? ""
        if !isValidName(name) {
            map.problems.add(map.childPath("name"), "is required: 1 to 64 letters, digits, '_', '-' or '.'")
        }
        return QueueCollectorConfig.read(map, name: name)
    }

    static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || "_-.".utf8.contains(byte)
        }
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        sources.filter(\.enabled).map { QueueCollector(config: $0) }
    }

    /// Prefixes without a hash tag on a cluster source.
    public var warnings: [String] {
        sources.flatMap(\.clusterWarnings)
    }
}
