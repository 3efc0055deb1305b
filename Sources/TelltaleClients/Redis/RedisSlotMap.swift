import TelltaleCore
import TelltaleMetrics

/// Which master of a Redis Cluster serves each of the 16384 hash slots, as `CLUSTER SHARDS`
/// (Redis 7) or `CLUSTER SLOTS` tells it.
package struct RedisSlotMap: Sendable, Equatable {
    /// The masters that serve at least one slot, sorted by name (`host:port`).
    package let masters: [RedisEndpoint]
    /// For each slot, the index of its master in `masters`, or -1 when none serves it.
    package let owners: [Int16]

    package init(masters: [RedisEndpoint], owners: [Int16]) {
        self.masters = masters
        self.owners = owners
    }

    /// The master of `slot`, nil when no master serves it.
    package func master(of slot: Int) -> RedisEndpoint? {
        guard slot >= 0, slot < owners.count else { return nil }
        let owner = Int(owners[slot])
        return owner >= 0 && owner < masters.count ? masters[owner] : nil
    }

    /// Builds the map from slot ranges and the master of each; nil when a range is invalid
    /// or no slot is served.
    package static func make(_ ranges: [(first: Int, last: Int, master: RedisEndpoint)]) -> RedisSlotMap? {
        // At most one range per slot: more is a broken or hostile reply, not a cluster.
        guard ranges.count <= RedisHashSlot.count else { return nil }
        var names: [String: RedisEndpoint] = [:]
        for range in ranges {
            guard range.first >= 0, range.first <= range.last, range.last < RedisHashSlot.count else { return nil }
            names[range.master.description] = range.master
        }
        guard !names.isEmpty else { return nil }
        let sorted = names.keys.sorted()
        let index = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1, Int16(truncatingIfNeeded: $0)) })
        var owners = [Int16](repeating: -1, count: RedisHashSlot.count)
        for range in ranges {
            let owner = index[range.master.description] ?? -1
            for slot in range.first...range.last { owners[slot] = owner }
        }
        return RedisSlotMap(masters: sorted.compactMap { names[$0] }, owners: owners)
    }

    /// Reads a `CLUSTER SHARDS` reply (RESP2: each shard and node a flat list of names and
    /// values). A node's address is its `endpoint` (`ip` when absent); `?` or empty (an
    /// unknown endpoint) means the host that was asked. `tls-port` is preferred when `tls`.
    package static func parse(shards reply: RedisValue, asked: RedisEndpoint, tls: Bool) -> RedisSlotMap? {
        guard case .array(let shards) = reply else { return nil }
        var ranges: [(first: Int, last: Int, master: RedisEndpoint)] = []
        for shard in shards {
            let fields = pairs(shard)
            let bounds = (fields["slots"]?.array ?? []).compactMap { $0.integer }
            guard bounds.count.isMultiple(of: 2) else { return nil }
            guard !bounds.isEmpty else { continue }
            let master = (fields["nodes"]?.array ?? []).map(pairs).first { $0["role"]?.string == "master" }
            guard let master else { continue }
            let port = (tls ? master["tls-port"] ?? master["port"] : master["port"] ?? master["tls-port"])?.integer
            let host = [master["endpoint"], master["ip"]].lazy.compactMap { $0?.string }.first ?? ""
            guard let endpoint = endpoint(host: host, port: port, asked: asked) else { return nil }
            for pair in stride(from: 0, to: bounds.count, by: 2) {
                guard let first = Int(exactly: bounds[pair]), let last = Int(exactly: bounds[pair + 1]) else { return nil }
                ranges.append((first, last, endpoint))
            }
        }
        return make(ranges)
    }

    /// Reads a `CLUSTER SLOTS` reply: `[first, last, [host, port, id, …], replicas…]` per range.
    package static func parse(slots reply: RedisValue, asked: RedisEndpoint) -> RedisSlotMap? {
        guard case .array(let entries) = reply else { return nil }
        var ranges: [(first: Int, last: Int, master: RedisEndpoint)] = []
        for entry in entries {
            let parts = entry.array
            guard parts.count >= 3, let first = parts[0].integer.flatMap({ Int(exactly: $0) }),
                  let last = parts[1].integer.flatMap({ Int(exactly: $0) }) else { return nil }
            let node = parts[2].array
            guard node.count >= 2, let endpoint = endpoint(host: node[0].string ?? "", port: node[1].integer, asked: asked) else {
                return nil
            }
            ranges.append((first, last, endpoint))
        }
        return make(ranges)
    }

    private static func endpoint(host: String, port: Int64?, asked: RedisEndpoint) -> RedisEndpoint? {
        guard let port, port > 0, port <= 65535 else { return nil }
        guard host.isEmpty || host == "?" else { return .tcp(host: host, port: Int(port)) }
        guard case .tcp(let askedHost, _) = asked else { return nil }
        return .tcp(host: askedHost, port: Int(port))
    }

    /// A RESP2 flat list of names and values as a dictionary (the first of a repeated name).
    private static func pairs(_ value: RedisValue) -> [String: RedisValue] {
        let items = value.array
        var fields: [String: RedisValue] = [:]
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            if let name = items[index].string, fields[name] == nil { fields[name] = items[index + 1] }
        }
        return fields
    }
}

/// A `MOVED slot host:port` or `ASK slot host:port` error reply.
package struct RedisRedirect: Sendable, Equatable {
    package let ask: Bool
    package let slot: Int
    package let target: RedisEndpoint

    /// Reads the redirect; an empty host (`MOVED 3999 :6380`, an unknown endpoint) means the
    /// host of the node that answered.
    package init?(_ reply: String, from node: RedisEndpoint) {
        let words = reply.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK", let slot = Int(words[1]),
              (0..<RedisHashSlot.count).contains(slot), let colon = words[2].lastIndex(of: ":"),
              let port = Int(words[2][words[2].index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(words[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty || host == "?" {
            guard case .tcp(let nodeHost, _) = node else { return nil }
            host = nodeHost
        }
        ask = words[0] == "ASK"
        self.slot = slot
        target = .tcp(host: host, port: port)
    }
}
