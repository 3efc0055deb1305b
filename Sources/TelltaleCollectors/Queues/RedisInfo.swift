import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// What one `INFO` says about a Redis server: the few fields an operator of BullMQ watches
/// (its production guide requires `maxmemory-policy noeviction` and headroom under
/// `maxmemory`). A field that is missing or not a number is absent, never 0.
struct RedisInfo: Equatable {
    var version: String?
    var role: String?
    var maxmemoryPolicy: String?
    var usedMemory: Double?
    var maxmemory: Double?
    var connectedClients: Double?
    var evictedKeys: Double?
    var rejectedConnections: Double?

    /// INFO's text is at most a few KiB; anything past this is not read.
    static let maxLength = 256 * 1024
    /// Label values from INFO are clipped: they come from the server.
    static let maxValueLength = 64

    /// Parses `key:value` lines; comments (`# Server`) and unknown keys are skipped.
    init(_ text: String) {
        for line in text.utf8.prefix(Self.maxLength).split(separator: UInt8(ascii: "\n")) {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), line.first != UInt8(ascii: "#") else { continue }
            let key = String(decoding: line[..<colon], as: UTF8.self)
            var value = line[line.index(after: colon)...]
            if value.last == UInt8(ascii: "\r") { value = value.dropLast() }
            let text = String(decoding: value.prefix(Self.maxValueLength), as: UTF8.self)
            switch key {
            case "redis_version": version = text
            case "role": role = text
            case "maxmemory_policy": maxmemoryPolicy = text
            case "used_memory": usedMemory = Self.number(text)
            case "maxmemory": maxmemory = Self.number(text)
            case "connected_clients": connectedClients = Self.number(text)
            case "evicted_keys": evictedKeys = Self.number(text)
            case "rejected_connections": rejectedConnections = Self.number(text)
            default: continue
            }
        }
    }

    /// A finite, non-negative number, or nil.
    private static func number(_ text: String) -> Double? {
        guard let value = Double(text), value.isFinite, value >= 0 else { return nil }
        return value
    }
}

/// The `telltale_redis_*` families of one source: `up` per source, the rest per server.
struct RedisInfoFamilies {
    private var info = FamilyBuilder(RedisInfoMetrics.info)
    private var used = FamilyBuilder(RedisInfoMetrics.usedMemory)
    private var max = FamilyBuilder(RedisInfoMetrics.maxMemory)
    private var ratio = FamilyBuilder(RedisInfoMetrics.memoryRatio)
    private var clients = FamilyBuilder(RedisInfoMetrics.clients)
    private var evicted = FamilyBuilder(RedisInfoMetrics.evicted)
    private var rejected = FamilyBuilder(RedisInfoMetrics.rejected)

    /// Adds one server's INFO (`node` is its address). An error reply (an ACL user without
    /// INFO) adds nothing: those families are absent, not 0.
    mutating func add(_ reply: RedisValue?, source: String, node: String) {
        guard let text = reply?.string else { return }
        let parsed = RedisInfo(text)
        let labels: Labels = ["redis": source, "node": node]
        info.set(1, labels.adding("version", parsed.version ?? "")
            .adding("role", parsed.role ?? "").adding("maxmemory_policy", parsed.maxmemoryPolicy ?? ""))
        if let value = parsed.usedMemory { used.set(value, labels) }
        if let value = parsed.maxmemory { max.set(value, labels) }
        if let usedMemory = parsed.usedMemory, let limit = parsed.maxmemory, limit > 0 { ratio.set(usedMemory / limit, labels) }
        if let value = parsed.connectedClients { clients.set(value, labels) }
        if let value = parsed.evictedKeys { evicted.set(value, labels) }
        if let value = parsed.rejectedConnections { rejected.set(value, labels) }
    }

    func build() -> [MetricFamily] {
        [info, used, max, ratio, clients, evicted, rejected].map { $0.build() }
    }

    /// `telltale_redis_up`: 1 when every server of the source answered this run.
    static func up(_ value: Double, source: String) -> MetricFamily {
        var up = FamilyBuilder(RedisInfoMetrics.up)
        up.set(value, ["redis": source])
        return up.build()
    }
}

enum RedisInfoMetrics {
    static let up = MetricDescriptor(
        "telltale_redis_up", .gauge, help: "1 when every Redis server of the source answered this run, 0 when one could not be reached.")
    static let info = MetricDescriptor(
        "telltale_redis_info", .gauge, help: "Always 1: the server's version, role and maxmemory-policy as labels.")
    static let usedMemory = MetricDescriptor(
        "telltale_redis_memory_used_bytes", .gauge, help: "Memory Redis has allocated (INFO used_memory).", unit: "bytes")
    static let maxMemory = MetricDescriptor(
        "telltale_redis_memory_max_bytes", .gauge, help: "The maxmemory limit (0: none).", unit: "bytes")
    static let memoryRatio = MetricDescriptor(
        "telltale_redis_memory_used_ratio", .gauge, help: "used_memory / maxmemory; absent when no limit is set.")
    static let clients = MetricDescriptor(
        "telltale_redis_connected_clients", .gauge, help: "Client connections, replicas excluded.")
    static let evicted = MetricDescriptor(
        "telltale_redis_evicted_keys", .counter, help: "Keys evicted to stay under maxmemory (BullMQ loses jobs when this grows).")
    static let rejected = MetricDescriptor(
        "telltale_redis_rejected_connections", .counter, help: "Connections refused because of the maxclients limit.")
}
