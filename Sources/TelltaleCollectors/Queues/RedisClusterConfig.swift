import TelltaleClients
import TelltaleCore

extension RedisSettings {
    /// Most seed addresses a `cluster:` block may list.
    static let maxClusterAddresses = 1000

    /// The `cluster: {addresses: [host:port, …]}` of a source's `redis:` block, after the rest
    /// of the block was read into `settings`. The block's credentials, TLS and timeouts apply
    /// to every node. With `cluster`, `url` gives credentials (and `rediss://`) and its
    /// host:port is one more seed; `host`, `port` and `socket` are refused (a cluster is
    /// reached at its addresses), and so is a database other than 0 (a cluster has only 0).
    mutating func readCluster(_ map: ConfigMap) {
        guard let cluster = map.map("cluster") else { return }
        var seeds: [RedisEndpoint] = []
        let addresses = cluster.stringList("addresses")
        for (position, address) in (addresses ?? []).enumerated() {
            guard let endpoint = RedisClusterClient.endpoint(address) else {
                cluster.problems.add("\(cluster.childPath("addresses"))[\(position)]", "expected host:port, got \"\(address)\"")
                continue
            }
            if !seeds.contains(endpoint) { seeds.append(endpoint) }
        }
        if addresses?.isEmpty ?? true {
            cluster.problems.add(cluster.childPath("addresses"), "list at least one host:port of a cluster node")
        } else if seeds.count > Self.maxClusterAddresses {
            cluster.problems.add(cluster.childPath("addresses"), "at most \(Self.maxClusterAddresses) addresses")
        }
        cluster.finish()
        for key in ["host", "port", "socket"] where map.has(key) {
            map.problems.add(map.childPath(key), "cannot be used with cluster: list the nodes in cluster.addresses")
        }
        if map.has("url") {
            switch endpoint {
            case .unix: map.problems.add(map.childPath("url"), "a cluster is reached over TCP: unix:// cannot be used with cluster")
            case .tcp: if !seeds.contains(endpoint) && !map.has("host") { seeds.append(endpoint) }
            }
        }
        if database != 0 {
            map.problems.add(map.childPath(map.has("db") ? "db" : "url"), "a Redis Cluster has only database 0")
        }
        if let first = seeds.first { endpoint = first }
        topology = .cluster(seeds: seeds)
    }
}

extension QueueCollectorConfig {
    /// Configuration warnings of a cluster source: every prefix (configured, or of a listed
    /// queue) without a hash tag. None for another topology.
    package var clusterWarnings: [String] {
        guard case .cluster = redis.topology else { return [] }
        var prefixes: [String] = []
        for prefix in self.prefixes + queues.map(\.prefix) where !prefixes.contains(prefix) { prefixes.append(prefix) }
        return Self.clusterPrefixWarnings(prefixes: prefixes)
    }

    /// One warning per prefix without a hash tag (a non-empty `{…}`): BullMQ needs all of a
    /// queue's keys in one slot on a Redis Cluster, with a tag in the prefix or in every
    /// queue's name; otherwise a queue's keys spread over the nodes, BullMQ's scripts fail and
    /// so do Telltale's reads of several keys at once (CROSSSLOT).
    package static func clusterPrefixWarnings(prefixes: [String]) -> [String] {
        prefixes.compactMap { prefix in
            RedisHashSlot.hashTag(prefix) != nil ? nil
                : "queues: prefix \"\(prefix)\" has no hash tag: on a Redis Cluster BullMQ needs one in the prefix "
                + "(such as \"{\(prefix)}\") or in every queue name, so that a queue's keys share a slot"
        }
    }
}
