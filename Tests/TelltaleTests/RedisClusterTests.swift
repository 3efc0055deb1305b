import NIOCore
import Synchronization
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// Redis Cluster: hash slots, slot maps, routing of a pipeline over several nodes, redirects,
/// an unreachable node, and the `cluster:` configuration.
@Suite struct RedisClusterTests {
    // MARK: hash slots

    @Test func crc16AndSlotsAsTheClusterSpecifies() {
        let check = Array("123456789".utf8)
        #expect(check.withUnsafeBytes { RedisHashSlot.crc16($0) } == 0x31C3)
        // Values from the Redis documentation of CLUSTER KEYSLOT.
        #expect(RedisHashSlot.slot("somekey") == 11058)
        #expect(RedisHashSlot.slot("foo{hash_tag}") == 2515)
        #expect(RedisHashSlot.slot("foo") == 12182)
        #expect(RedisHashSlot.slot("") == 0)
    }

    @Test func hashTagsAsTheClusterSpecifies() {
        #expect(RedisHashSlot.slot("{user1000}.following") == RedisHashSlot.slot("{user1000}.followers"))
        #expect(RedisHashSlot.slot("{bull}:emails:wait") == RedisHashSlot.slot("bull"))
        // An empty tag hashes the whole key; only the first `{` and the next `}` count.
        #expect(RedisHashSlot.slot("foo{}{bar}") != RedisHashSlot.slot("bar"))
        #expect(RedisHashSlot.slot("foo{{bar}}zap") == RedisHashSlot.slot("{bar"))
        #expect(RedisHashSlot.slot("foo{bar}{zap}") == RedisHashSlot.slot("bar"))
        #expect(RedisHashSlot.hashTag("{bull}") == "bull")
        #expect(RedisHashSlot.hashTag("bull") == nil)
        #expect(RedisHashSlot.hashTag("{}bull") == nil)
        #expect(RedisHashSlot.hashTag("{bull") == nil)
        #expect(RedisHashSlot.hashTag("app{eu}") == "eu")
    }

    // MARK: routes of a pipeline

    @Test func everyAppendRecordsItsFirstKey() {
        var commands = RedisCommands()
        commands.append("LLEN", key: "{a}:q:", "wait")
        commands.append("EXISTS", keys: "{b}:q:", ["1", "2"], keySuffix: ":lock")
        commands.append(["CLIENT", "LIST"])
        commands.append(["GET", "plain"])
        commands.append(["scan", "0"])
        commands.append(["GET", "x"], keyless: true)
        commands.append(["PING"])
        commands.append("EXISTS", keys: "{c}:q:", [], keySuffix: "")
        #expect(commands.slots() == [RedisHashSlot.slot("a"), RedisHashSlot.slot("b"), nil, RedisHashSlot.slot("plain"),
                                     nil, nil, nil, nil])
        #expect(commands.routes.count == commands.count)
    }

    @Test func aSubsetIsTheSameBytesInTheNewOrder() {
        var commands = RedisCommands()
        commands.append("LLEN", key: "{a}:q:", "wait")
        commands.append(["INFO", "server"])
        commands.append("HGET", key: "{b}:q:", "meta", "paused")
        let subset = commands.subset([2, 0])
        let reordered = RedisCommands([["HGET", "{b}:q:meta", "paused"], ["LLEN", "{a}:q:wait"]])
        #expect(Array(subset.bytes.readableBytesView) == Array(reordered.bytes.readableBytesView))
        #expect(subset.count == 2)
        #expect(subset.slots() == [RedisHashSlot.slot("b"), RedisHashSlot.slot("a")])
        #expect(commands.subset([]).isEmpty)
    }

    // MARK: slot maps

    static let asked = RedisEndpoint.tcp(host: "10.0.0.9", port: 7000)

    static func shardsReply(_ shards: [(slots: [Int64], node: [(String, RedisValue)], replica: Bool)]) -> RedisValue {
        .array(shards.map { shard in
            var nodes: [RedisValue] = [.array(shard.node.flatMap { [.string($0.0), $0.1] })]
            if shard.replica {
                nodes.append(.array([.string("id"), .string("r"), .string("port"), .integer(7999), .string("ip"), .string("10.0.0.99"),
                                     .string("endpoint"), .string("10.0.0.99"), .string("role"), .string("replica")]))
                nodes.reverse()  // the master is not always first
            }
            return .array([.string("slots"), .array(shard.slots.map { .integer($0) }), .string("nodes"), .array(nodes)])
        })
    }

    @Test func clusterShardsIsRead() throws {
        let reply = Self.shardsReply([
            ([0, 5460], [("id", .string("a")), ("port", .integer(7001)), ("ip", .string("10.0.0.1")), ("endpoint", .string("10.0.0.1")),
                         ("role", .string("master")), ("health", .string("online"))], true),
            ([5461, 10922, 16000, 16383], [("port", .integer(7002)), ("tls-port", .integer(7102)), ("ip", .string("10.0.0.2")),
                                           ("endpoint", .string("?")), ("role", .string("master"))], false),
            ([], [("port", .integer(7004)), ("ip", .string("10.0.0.4")), ("role", .string("master"))], false),
        ])
        let map = try #require(RedisSlotMap.parse(shards: reply, asked: Self.asked, tls: false))
        #expect(map.masters == [.tcp(host: "10.0.0.1", port: 7001), .tcp(host: "10.0.0.9", port: 7002)])
        #expect(map.master(of: 0) == .tcp(host: "10.0.0.1", port: 7001))
        #expect(map.master(of: 5461) == .tcp(host: "10.0.0.9", port: 7002))
        #expect(map.master(of: 16383) == .tcp(host: "10.0.0.9", port: 7002))
        #expect(map.master(of: 12000) == nil)
        let tls = try #require(RedisSlotMap.parse(shards: reply, asked: Self.asked, tls: true))
        #expect(tls.masters.contains(.tcp(host: "10.0.0.9", port: 7102)))
    }

    @Test func clusterSlotsIsRead() throws {
        let reply = RedisValue.array([
            .array([.integer(0), .integer(8191), .array([.string("10.0.0.1"), .integer(7001), .string("id-a")]),
                    .array([.string("10.0.0.5"), .integer(7005), .string("id-r")])]),
            .array([.integer(8192), .integer(16383), .array([.string(""), .integer(7002), .string("id-b")])]),
        ])
        let map = try #require(RedisSlotMap.parse(slots: reply, asked: Self.asked))
        #expect(map.masters == [.tcp(host: "10.0.0.1", port: 7001), .tcp(host: "10.0.0.9", port: 7002)])
        #expect(map.master(of: 8191) == .tcp(host: "10.0.0.1", port: 7001))
        #expect(map.master(of: 8192) == .tcp(host: "10.0.0.9", port: 7002))
    }

    @Test func brokenSlotMapsAreRefused() {
        let node = RedisValue.array([.string("10.0.0.1"), .integer(7001)])
        for reply in [RedisValue.error("ERR unknown subcommand"), .array([]), .string("x"),
                      .array([.array([.integer(5), .integer(4), node])]),
                      .array([.array([.integer(0), .integer(16384), node])]),
                      .array([.array([.integer(0), .integer(1), .array([.string("h"), .integer(70000)])])]),
                      .array([.array([.integer(-1), .integer(1), node])])] {
            #expect(RedisSlotMap.parse(slots: reply, asked: Self.asked) == nil, "\(reply)")
        }
        let tooMany = RedisValue.array(Array(repeating: .array([.integer(0), .integer(16383), node]), count: 16385))
        #expect(RedisSlotMap.parse(slots: tooMany, asked: Self.asked) == nil)
        #expect(RedisSlotMap.parse(shards: .array([.array([.string("slots"), .array([.integer(1)])])]), asked: Self.asked, tls: false) == nil)
    }

    @Test func redirectsAreRead() {
        let node = RedisEndpoint.tcp(host: "10.0.0.3", port: 7003)
        #expect(RedisRedirect("MOVED 3999 127.0.0.1:6381", from: node) == RedisRedirect("MOVED 3999 127.0.0.1:6381", from: node))
        let moved = RedisRedirect("MOVED 3999 127.0.0.1:6381", from: node)
        #expect(moved?.ask == false && moved?.slot == 3999 && moved?.target == .tcp(host: "127.0.0.1", port: 6381))
        let ask = RedisRedirect("ASK 12 :7004", from: node)
        #expect(ask?.ask == true && ask?.target == .tcp(host: "10.0.0.3", port: 7004))
        #expect(RedisRedirect("MOVED 3999 [::1]:6381", from: node)?.target == .tcp(host: "::1", port: 6381))
        for bad in ["MOVED", "MOVED 16384 h:1", "MOVED 1 h", "MOVED 1 h:0", "ASKING 1 h:1", "MOVED x h:1"] {
            #expect(RedisRedirect(bad, from: node) == nil, "\(bad)")
        }
    }

    // MARK: the cluster client

    @Test func aPipelineIsSplitByNodeAndReassembledInOrder() async throws {
        let cluster = FakeCluster(nodes: 3)
        let client = cluster.client()
        let keys = (0..<60).map { "{k\($0)}:x" }
        var commands = RedisCommands()
        for key in keys { commands.append(["GET", key]) }
        commands.append(["INFO"])
        let replies = try await client.pipeline(commands)
        #expect(replies.count == keys.count + 1)
        for (key, reply) in zip(keys, replies) {
            #expect(reply == .string("\(key)@\(cluster.owner(of: key))"), "\(key)")
        }
        // The keyless command went to the first master.
        #expect(replies.last == .string("info@node0"))
        #expect(Set(keys.map(cluster.owner)).count == 3, "the keys cover every node")
        // The map read (one round trip), then one round trip to each node.
        #expect(client.roundTripCount == 4)
        #expect(cluster.pipelines(of: 0) == 1 && cluster.pipelines(of: 1) == 1 && cluster.pipelines(of: 2) == 2)
        #expect(try await client.servers() == ["n0:7000", "n1:7001", "n2:7002"])
    }

    @Test func clusterSlotsStandsInWhereShardsIsUnknown() async throws {
        let cluster = FakeCluster(nodes: 2, knowsShards: false)
        let client = cluster.client()
        let replies = try await client.pipeline(RedisCommands([["GET", "{a}"], ["GET", "{b}"]]))
        #expect(replies == [.string("{a}@\(cluster.owner(of: "{a}"))"), .string("{b}@\(cluster.owner(of: "{b}"))")])
    }

    @Test func movedRefreshesTheMapAndResends() async throws {
        let cluster = FakeCluster(nodes: 3)
        let client = cluster.client()
        let key = "{bull}:q:wait"
        _ = try await client.pipeline(RedisCommands([["GET", key]]))
        let from = cluster.ownerIndex(of: key)
        let to = (from + 1) % 3
        cluster.move(slot: RedisHashSlot.slot(key), to: to)
        let mapReads = cluster.mapReads
        let replies = try await client.pipeline(RedisCommands([["GET", key], ["GET", "{other}"]]))
        #expect(replies[0] == .string("\(key)@node\(to)"))
        #expect(replies[1] == .string("{other}@\(cluster.owner(of: "{other}"))"))
        #expect(cluster.mapReads == mapReads + 1, "one map read for the MOVED")
        // The next call goes straight to the new owner.
        let before = cluster.pipelines(of: from)
        #expect(try await client.pipeline(RedisCommands([["GET", key]])) == [.string("\(key)@node\(to)")])
        #expect(cluster.pipelines(of: from) == before)
    }

    @Test func askSendsAskingWithoutChangingTheMap() async throws {
        let cluster = FakeCluster(nodes: 2)
        let client = cluster.client()
        let key = "{t}:q:id"
        _ = try await client.pipeline(RedisCommands([["GET", key]]))
        let from = cluster.ownerIndex(of: key)
        cluster.migrate(slot: RedisHashSlot.slot(key), to: 1 - from)
        let mapReads = cluster.mapReads
        #expect(try await client.pipeline(RedisCommands([["GET", key]])) == [.string("\(key)@node\(1 - from)")])
        #expect(cluster.mapReads == mapReads)
        #expect(cluster.askings(of: 1 - from) == 1)
    }

    @Test func redirectsAreBounded() async throws {
        let cluster = FakeCluster(nodes: 2)
        let client = cluster.client()
        let key = "{loop}"
        _ = try await client.pipeline(RedisCommands([["GET", key]]))
        cluster.pingPong(slot: RedisHashSlot.slot(key))
        let replies = try await client.pipeline(RedisCommands([["GET", key], ["GET", "{fine}"]]))
        guard case .error(let message) = replies[0] else {
            Issue.record("expected the redirect as an error reply, got \(replies[0])")
            return
        }
        #expect(message.hasPrefix("MOVED "))
        #expect(replies[1] == .string("{fine}@\(cluster.owner(of: "{fine}"))"))
    }

    @Test func anUnreachableNodeFailsOnlyItsCommands() async throws {
        let cluster = FakeCluster(nodes: 3)
        let client = cluster.client()
        let keys = (0..<30).map { "{d\($0)}" }
        var commands = RedisCommands()
        for key in keys { commands.append(["GET", key]) }
        _ = try await client.pipeline(commands)
        cluster.setDown(1, true)
        let replies = try await client.pipeline(commands)
        for (key, reply) in zip(keys, replies) {
            if cluster.ownerIndex(of: key) == 1 {
                #expect(reply == .error("ERR node n1:7001 unreachable: connection refused"), "\(key)")
            } else {
                #expect(reply == .string("\(key)@\(cluster.owner(of: key))"), "\(key)")
            }
        }
        await #expect(throws: RedisError.self) { try await client.pipeline(RedisCommands([["SCAN", "0"]]), on: "n1:7001") }
        #expect(try await client.pipeline(RedisCommands([["SCAN", "0"]]), on: "n2:7002") == [.string("scan@node2")])
        // Every node down: the cluster cannot be reached at all.
        for node in 0..<3 { cluster.setDown(node, true) }
        await #expect(throws: RedisError.self) { try await client.pipeline(commands) }
        for node in 0..<3 { cluster.setDown(node, false) }
        #expect(try await client.pipeline(RedisCommands([["GET", "{d0}"]])) == [.string("{d0}@\(cluster.owner(of: "{d0}"))")])
    }

    @Test func noReachableSeedIsAnError() async {
        let cluster = FakeCluster(nodes: 2)
        for node in 0..<2 { cluster.setDown(node, true) }
        let client = cluster.client()
        await #expect(throws: RedisError.self) { try await client.servers() }
        await #expect(throws: RedisError.self) { try await client.pipeline(RedisCommands([["GET", "a"]])) }
    }

    @Test func nodesGetTheClustersCredentials() async throws {
        let cluster = FakeCluster(nodes: 2)
        var settings = cluster.settings
        settings.password = "pw"
        settings.username = "u"
        let made = Mutex<[RedisSettings]>([])
        let client = RedisClusterClient(settings: settings) { node in
            made.withLock { $0.append(node) }
            return cluster.node(node.endpoint)
        }
        _ = try await client.pipeline(RedisCommands([["GET", "{a}"], ["GET", "{b}"], ["GET", "{c}"]]))
        let nodes = made.withLock { $0 }
        #expect(!nodes.isEmpty)
        #expect(nodes.allSatisfy { $0.password == "pw" && $0.username == "u" && $0.topology == .standalone && $0.database == 0 })
    }

    // MARK: discovery

    @Test func discoveryScansEveryMasterAndKeepsAnUnreachableOnesQueues() async throws {
        let cluster = FakeCluster(nodes: 3)
        cluster.setScanKeys(0, ["{a}:q0:meta", "{a}:q0:wait"])
        cluster.setScanKeys(1, ["{b}:q1:id"])
        cluster.setScanKeys(2, ["{c}:q2:meta", "other:x:meta"])
        let client = cluster.client()
        var config = QueueCollectorConfig()
        config.prefixes = ["{a}", "{b}", "{c}"]
        var discovery = QueueDiscovery()
        try await discovery.advance(client: client, servers: try await client.servers(), config: config)
        let first: Set = [QueueID(prefix: "{a}", name: "q0", source: "default"), QueueID(prefix: "{b}", name: "q1", source: "default"), QueueID(prefix: "{c}", name: "q2", source: "default")]
        #expect(discovery.known == first)
        // A master down: the others are scanned, and its queues stay known (their reads fail).
        cluster.setDown(1, true)
        cluster.setScanKeys(0, ["{a}:q0:meta", "{a}:q3:meta"])
        try await discovery.advance(client: client, servers: try await client.servers(), config: config)
        #expect(discovery.known == first.union([QueueID(prefix: "{a}", name: "q3", source: "default")]))
        // Back: a complete pass replaces the known set again.
        cluster.setDown(1, false)
        cluster.setScanKeys(1, [])
        try await discovery.advance(client: client, servers: try await client.servers(), config: config)
        #expect(discovery.known == [QueueID(prefix: "{a}", name: "q0", source: "default"), QueueID(prefix: "{a}", name: "q3", source: "default"), QueueID(prefix: "{c}", name: "q2", source: "default")])
    }

    @Test func aPassStartsOverWhenTheServerChanges() async throws {
        let redis = ScriptedRedis { command in
            // A SCAN page that is never the last: the pass stays pending on its server.
            command.first == "SCAN" ? "*2\r\n$2\r\n17\r\n*1\r\n$11\r\nbull:q:meta\r\n" : nil
        }
        var config = QueueCollectorConfig()
        config.discoveryBudget = .milliseconds(1)
        var discovery = QueueDiscovery()
        try await discovery.advance(client: redis, servers: ["old:6379"], config: config)
        #expect(discovery.pendingServers == ["old:6379"])
        try await discovery.advance(client: redis, servers: ["new:6379"], config: config)
        #expect(discovery.pendingServers == ["new:6379"])
    }

    @Test func aStandaloneServerThatFailsStillFailsDiscovery() async {
        let redis = ScriptedRedis()
        redis.isDown.value = true
        var discovery = QueueDiscovery()
        await #expect(throws: RedisError.self) { try await discovery.advance(client: redis, servers: ["fake:6379"], config: QueueCollectorConfig()) }
    }

    // MARK: configuration

    static func queues(_ redis: String, prefixes: String = "[\"{bull}\"]") throws -> QueueCollectorConfig {
        let config = try TelltaleConfig.parse("queues:\n  redis: \(redis)\n  prefixes: \(prefixes)\n")
        return try #require(config.source(QueueSources.self)?.sources.first)
    }

    static func problems(_ redis: String) -> [String] {
        do {
            _ = try queues(redis)
            return []
        } catch {
            return (error as? ConfigErrors)?.problems ?? ["\(error)"]
        }
    }

    @Test func theClusterBlockIsRead() throws {
        let config = try Self.queues("{cluster: {addresses: [\"10.0.1.1:6379\", \"[::1]:7000\"]}, password: pw, command_timeout: 3s}")
        #expect(config.redis.topology == .cluster(seeds: [.tcp(host: "10.0.1.1", port: 6379), .tcp(host: "::1", port: 7000)]))
        #expect(config.redis.endpoint == .tcp(host: "10.0.1.1", port: 6379))
        #expect(config.redis.password == "pw" && config.redis.commandTimeout == .seconds(3))
        #expect(config.clusterWarnings.isEmpty)
        let withURL = try Self.queues("{url: \"redis://u:p@10.0.1.9:7000\", cluster: {addresses: [\"10.0.1.1:6379\"]}}")
        #expect(withURL.redis.username == "u" && withURL.redis.password == "p")
        #expect(withURL.redis.topology == .cluster(seeds: [.tcp(host: "10.0.1.1", port: 6379), .tcp(host: "10.0.1.9", port: 7000)]))
    }

    @Test func clusterProblems() {
        #expect(Self.problems("{cluster: {addresses: []}}").contains { $0.hasPrefix("queues.redis.cluster.addresses: list at least one") })
        #expect(Self.problems("{cluster: {}}").contains { $0.hasPrefix("queues.redis.cluster.addresses: list at least one") })
        #expect(Self.problems("{cluster: {addresses: [\"nohost\"]}}").contains { $0.hasPrefix("queues.redis.cluster.addresses[0]: expected host:port") })
        #expect(Self.problems("{cluster: {addresses: [\"h:1\"]}, db: 2}").contains { $0.hasPrefix("queues.redis.db: a Redis Cluster has only database 0") })
        #expect(Self.problems("{url: \"redis://h:1/3\", cluster: {addresses: [\"h:1\"]}}").contains { $0.hasPrefix("queues.redis.url: a Redis Cluster has only database 0") })
        #expect(Self.problems("{host: h, cluster: {addresses: [\"h:1\"]}}").contains { $0.hasPrefix("queues.redis.host: cannot be used with cluster") })
        #expect(Self.problems("{cluster: {addresses: [\"h:1\"], master: x}}").contains("queues.redis.cluster.master: unknown key"))
        #expect(Self.problems("{url: \"unix:///tmp/r.sock\", cluster: {addresses: [\"h:1\"]}}").contains { $0.hasPrefix("queues.redis.url: a cluster is reached over TCP") })
    }

    @Test func aPrefixWithoutHashTagIsAWarningOnACluster() throws {
        let config = try Self.queues("{cluster: {addresses: [\"h:1\"]}}", prefixes: "[\"{bull}\", bull, \"{}x\"]")
        #expect(config.clusterWarnings.count == 2)
        #expect(config.clusterWarnings.first?.contains("\"bull\" has no hash tag") == true)
        #expect(QueueCollectorConfig.clusterPrefixWarnings(prefixes: ["{a}", "app{eu}"]).isEmpty)
        #expect(try Self.queues("{url: \"redis://h:1\"}", prefixes: "[bull]").clusterWarnings.isEmpty)
    }
}

/// Several scripted cluster nodes sharing one slot table: GET answers `key@nodeN` on the
/// key's owner and MOVED elsewhere; a slot being migrated answers ASK on its owner and is
/// served, after ASKING, by the importing node.
final class FakeCluster: Sendable {
    private struct State {
        var owners: [Int]
        var migrating: [Int: Int] = [:]
        var pingPong: Set<Int> = []
        var down: Set<Int> = []
        var pipelines: [Int: Int] = [:]
        var askings: [Int: Int] = [:]
        var mapReads = 0
        var scanKeys: [Int: [String]] = [:]
    }

    let count: Int
    let knowsShards: Bool
    private let state: Mutex<State>

    init(nodes: Int, knowsShards: Bool = true) {
        count = nodes
        self.knowsShards = knowsShards
        state = Mutex(State(owners: (0..<RedisHashSlot.count).map { $0 * nodes / RedisHashSlot.count }))
    }

    func endpoint(_ node: Int) -> RedisEndpoint { .tcp(host: "n\(node)", port: 7000 + node) }

    var settings: RedisSettings {
        var settings = RedisSettings()
        settings.topology = .cluster(seeds: [endpoint(count - 1)])
        return settings
    }

    func client() -> RedisClusterClient {
        RedisClusterClient(settings: settings) { self.node($0.endpoint) }
    }

    func node(_ endpoint: RedisEndpoint) -> any RedisQuerying {
        FakeClusterNode(cluster: self, index: (0..<count).first { self.endpoint($0) == endpoint } ?? -1)
    }

    func ownerIndex(of key: String) -> Int { state.withLock { $0.owners[RedisHashSlot.slot(key)] } }
    func owner(of key: String) -> String { "node\(ownerIndex(of: key))" }
    func pipelines(of node: Int) -> Int { state.withLock { $0.pipelines[node] ?? 0 } }
    func askings(of node: Int) -> Int { state.withLock { $0.askings[node] ?? 0 } }
    var mapReads: Int { state.withLock { $0.mapReads } }
    func move(slot: Int, to node: Int) { state.withLock { $0.owners[slot] = node } }
    func migrate(slot: Int, to node: Int) { state.withLock { $0.migrating[slot] = node } }
    func setScanKeys(_ node: Int, _ keys: [String]) { state.withLock { $0.scanKeys[node] = keys } }
    func pingPong(slot: Int) { state.withLock { _ = $0.pingPong.insert(slot) } }
    func setDown(_ node: Int, _ down: Bool) {
        state.withLock { if down { $0.down.insert(node) } else { $0.down.remove(node) } }
    }

    /// One node's answers to a pipeline; nil when the node is down.
    func answer(_ node: Int, _ commands: [[String]]) -> [RedisValue]? {
        state.withLock { state in
            guard node >= 0, !state.down.contains(node) else { return nil }
            state.pipelines[node, default: 0] += 1
            var asking = false
            return commands.map { command in
                defer { if command.first != "ASKING" { asking = false } }
                switch (command.first ?? "", command.dropFirst().first ?? "") {
                case ("ASKING", _):
                    asking = true
                    state.askings[node, default: 0] += 1
                    return .status("OK")
                case ("CLUSTER", "SHARDS"):
                    state.mapReads += 1
                    return knowsShards ? shards(state.owners) : .error("ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.")
                case ("CLUSTER", "SLOTS"):
                    if !knowsShards { state.mapReads += 1 }
                    return slots(state.owners)
                case ("GET", let key):
                    let slot = RedisHashSlot.slot(key)
                    let owner = state.owners[slot]
                    if state.pingPong.contains(slot) { return .error("MOVED \(slot) n\(1 - node):\(7000 + 1 - node)") }
                    if let target = state.migrating[slot] {
                        if node == owner { return .error("ASK \(slot) n\(target):\(7000 + target)") }
                        if node == target && asking { return .string("\(key)@node\(node)") }
                    }
                    if owner != node { return .error("MOVED \(slot) n\(owner):\(7000 + owner)") }
                    return .string("\(key)@node\(node)")
                case ("SCAN", _) where state.scanKeys[node] != nil:
                    return .array([.string("0"), .array((state.scanKeys[node] ?? []).map { .string($0) })])
                case (let name, _):
                    return .string("\(name.lowercased())@node\(node)")
                }
            }
        }
    }

    private func ranges(_ owners: [Int]) -> [(first: Int, last: Int, node: Int)] {
        var ranges: [(first: Int, last: Int, node: Int)] = []
        for (slot, owner) in owners.enumerated() {
            if let last = ranges.last, last.node == owner, last.last == slot - 1 {
                ranges[ranges.count - 1].last = slot
            } else {
                ranges.append((slot, slot, owner))
            }
        }
        return ranges
    }

    private func shards(_ owners: [Int]) -> RedisValue {
        let all = ranges(owners)
        return .array((0..<count).map { node in
            let bounds = all.filter { $0.node == node }.flatMap { [RedisValue.integer(Int64($0.first)), .integer(Int64($0.last))] }
            let master = RedisValue.array([.string("id"), .string("id\(node)"), .string("port"), .integer(Int64(7000 + node)),
                                           .string("ip"), .string("n\(node)"), .string("endpoint"), .string("n\(node)"),
                                           .string("role"), .string("master"), .string("health"), .string("online")])
            return .array([.string("slots"), .array(bounds), .string("nodes"), .array([master])])
        })
    }

    private func slots(_ owners: [Int]) -> RedisValue {
        .array(ranges(owners).map { range in
            .array([.integer(Int64(range.first)), .integer(Int64(range.last)),
                    .array([.string("n\(range.node)"), .integer(Int64(7000 + range.node)), .string("id\(range.node)")])])
        })
    }
}

/// One node of a `FakeCluster`, as a node client: decodes the pipeline's RESP.
final class FakeClusterNode: RedisQuerying {
    let cluster: FakeCluster
    let index: Int
    private let trips = Atomic<UInt64>(0)

    init(cluster: FakeCluster, index: Int) {
        self.cluster = cluster
        self.index = index
    }

    var roundTripCount: UInt64 { trips.load(ordering: .relaxed) }

    func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue] {
        var bytes = Array(commands.bytes.readableBytesView)[...]
        var decoded: [[String]] = []
        while let (command, size) = RESP.decode(bytes) {
            bytes = bytes.dropFirst(size)
            decoded.append(command.array.compactMap(\.string))
        }
        guard let replies = cluster.answer(index, decoded) else {
            throw RedisError(kind: .connect, message: "connection refused")
        }
        trips.add(1, ordering: .relaxed)
        return replies
    }

    func servers() async throws(RedisError) -> [String] { [cluster.endpoint(index).description] }

    func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue] {
        try await pipeline(commands)
    }
}
