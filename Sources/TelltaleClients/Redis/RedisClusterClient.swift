import Synchronization
import TelltaleCore
import TelltaleMetrics

extension RedisSettings {
    /// The client for these settings: one server, or every master of a cluster.
    package func makeClient() -> any RedisQuerying {
        if case .cluster = topology { return RedisClusterClient(settings: self) }
        return RedisClient(settings: self)
    }
}

/// Telltale's access to a Redis Cluster: one `RedisClient` per node (each with its own
/// connection, thread and reconnect backoff), and the slot map that says which master owns
/// each key.
///
/// A pipeline is split by the master that owns each command's key (keyless commands go to
/// the first master); every node's part is sent in parallel, one round trip each, and the
/// replies come back in the original order. `MOVED` refreshes the map (once per call) and
/// resends the command where the reply says; `ASK` sends `ASKING` and the command to the
/// named node without touching the map; after `maxRedirects` the redirect stays the
/// command's error reply. A node that cannot be reached answers its commands with an error
/// reply (`ERR node host:port unreachable: …`), so that the queues on the other nodes keep
/// reporting; only when no node at all can be reached does the call throw.
public final class RedisClusterClient: RedisQuerying {
    public let settings: RedisSettings
    /// Where the slot map is read from first (then from the known masters).
    package let seeds: [RedisEndpoint]
    /// Redirects followed for one command within one call.
    package static let maxRedirects = 3
    /// The least time between two reads of the slot map, unless there is none.
    package static let refreshPause = Duration.seconds(1)

    private let makeNode: @Sendable (RedisSettings) -> any RedisQuerying
    private let refreshGate = SerialGate()
    private let redactor: Redactor

    private struct State {
        var nodes: [String: any RedisQuerying] = [:]
        var map: RedisSlotMap?
        /// Set by a MOVED and by a node failure: the map is read again at the next call.
        var stale = true
        var lastRefresh: ContinuousClock.Instant?
        /// Round trips of node clients that were dropped, so that the total never goes back.
        var retiredRoundTrips: UInt64 = 0
    }

    private let state = Mutex(State())

    public convenience init(settings: RedisSettings) {
        self.init(settings: settings) { RedisClient(settings: $0) }
    }

    /// With `makeNode` making each node's client (unit tests' scripted nodes).
    package init(settings: RedisSettings, makeNode: @escaping @Sendable (RedisSettings) -> any RedisQuerying) {
        self.settings = settings
        if case .cluster(let seeds) = settings.topology, !seeds.isEmpty {
            self.seeds = seeds
        } else {
            self.seeds = [settings.endpoint]
        }
        self.makeNode = makeNode
        redactor = Redactor(settings.password.map { [$0] } ?? [])
    }

    /// The sum of every node client's round trips.
    public var roundTripCount: UInt64 {
        state.withLock { state in state.nodes.values.reduce(state.retiredRoundTrips) { $0 &+ $1.roundTripCount } }
    }

    /// Every master that serves slots, `host:port`, sorted.
    package func servers() async throws(RedisError) -> [String] {
        try await currentMap().masters.map(\.description)
    }

    /// Sends the commands to one node as they are (no redirect is followed). Throws when the
    /// node cannot be reached.
    package func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue] {
        let map = try await currentMap()
        guard let endpoint = map.masters.first(where: { $0.description == server }) ?? Self.endpoint(server) else {
            throw RedisError(kind: .connect, message: "\(server) is not a node of the cluster")
        }
        do {
            return try await node(endpoint).pipeline(commands)
        } catch {
            state.withLock { $0.stale = true }
            throw RedisError(kind: error.kind, message: "cluster node \(server): \(error.message)")
        }
    }

    /// One part of a pipeline for one node.
    private struct Batch {
        let endpoint: RedisEndpoint
        var indices: [Int] = []
        /// Each command preceded by ASKING (after an ASK redirect).
        var asking = false
    }

    public func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let map = try await currentMap()
        var replies = [RedisValue](repeating: .null, count: commands.count)
        var batches = Self.split(commands, map)
        var refreshed = false
        for round in 0...Self.maxRedirects {
            let failures = await send(batches, commands, into: &replies)
            if round == 0 && failures == batches.count {
                // Nothing answered: if no node can be reached either, the cluster is down as a whole.
                do {
                    _ = try await refresh()
                } catch {
                    throw RedisError(kind: error.kind, message: "no node of the cluster answers: \(error.message)")
                }
            }
            guard round < Self.maxRedirects else { break }
            let (moved, asked) = redirects(batches, replies)
            if moved.isEmpty && asked.isEmpty { break }
            if !moved.isEmpty && !refreshed {
                // The slots moved: the map is read again now (once per call); the commands go
                // where the redirects say whether or not that read succeeds.
                refreshed = true
                state.withLock { $0.stale = true }
                _ = try? await refresh()
            }
            batches = moved + asked
        }
        return replies
    }

    /// Commands grouped by the master of their key's slot; keyless commands and slots that no
    /// master serves (the node answers CLUSTERDOWN or MOVED) go to the first master.
    private static func split(_ commands: RedisCommands, _ map: RedisSlotMap) -> [Batch] {
        var groups = [[Int]](repeating: [], count: map.masters.count)
        for (index, slot) in commands.slots().enumerated() {
            let owner = slot.map { Int(map.owners[$0]) } ?? 0
            groups[owner >= 0 && owner < groups.count ? owner : 0].append(index)
        }
        return zip(map.masters, groups).compactMap { $1.isEmpty ? nil : Batch(endpoint: $0, indices: $1) }
    }

    /// Sends every batch in parallel and puts the replies in place; returns how many nodes
    /// could not be reached (their commands get an error reply).
    private func send(_ batches: [Batch], _ commands: RedisCommands, into replies: inout [RedisValue]) async -> Int {
        let results: [Result<[RedisValue], RedisError>?] = await withTaskGroup(
            of: (Int, Result<[RedisValue], RedisError>).self) { group in
            for (position, batch) in batches.enumerated() {
                let client = node(batch.endpoint)
                let part: RedisCommands
                if batch.asking {
                    var asking = RedisCommands()
                    for index in batch.indices {
                        asking.append(["ASKING"], keyless: true)
                        asking.append(commandAt: index, of: commands)
                    }
                    part = asking
                } else if batch.indices.count == commands.count {
                    part = commands  // the whole pipeline goes to one node: no copy
                } else {
                    part = commands.subset(batch.indices)
                }
                // Not a `do throws(RedisError)` in this closure: Swift 6.3 -O loses the tuple's
                // first element there (every task reported position 0).
                group.addTask { (position, await Self.outcome(client, part)) }
            }
            var results = [Result<[RedisValue], RedisError>?](repeating: nil, count: batches.count)
            for await (position, result) in group where results.indices.contains(position) { results[position] = result }
            return results
        }
        var failures = 0
        for (batch, result) in zip(batches, results) {
            switch result {
            case .success(let values):
                let stride = batch.asking ? 2 : 1
                for (offset, index) in batch.indices.enumerated() {
                    let at = offset * stride + stride - 1
                    replies[index] = at < values.count ? values[at] : .error("ERR missing reply from \(batch.endpoint)")
                }
            case .failure(let error):
                failures += 1
                let reply = RedisValue.error("ERR node \(batch.endpoint) unreachable: \(redactor.redact(error.message))")
                for index in batch.indices { replies[index] = reply }
            case nil:
                failures += 1
                for index in batch.indices { replies[index] = .error("ERR no reply from node \(batch.endpoint)") }
            }
        }
        if failures > 0 { state.withLock { $0.stale = true } }
        return failures
    }

    private static func outcome(_ client: any RedisQuerying, _ commands: RedisCommands) async -> Result<[RedisValue], RedisError> {
        do {
            return .success(try await client.pipeline(commands))
        } catch {
            return .failure(error)
        }
    }

    /// The commands of `batches` answered with MOVED or ASK, grouped by where to send them.
    private func redirects(_ batches: [Batch], _ replies: [RedisValue]) -> (moved: [Batch], asked: [Batch]) {
        var moved: [String: Batch] = [:], asked: [String: Batch] = [:]
        for batch in batches {
            for index in batch.indices {
                guard case .error(let message) = replies[index], message.hasPrefix("MOVED ") || message.hasPrefix("ASK "),
                      let redirect = RedisRedirect(message, from: batch.endpoint) else { continue }
                let name = redirect.target.description
                if redirect.ask {
                    asked[name, default: Batch(endpoint: redirect.target, asking: true)].indices.append(index)
                } else {
                    moved[name, default: Batch(endpoint: redirect.target)].indices.append(index)
                }
            }
        }
        // Each node's commands in their original order.
        func sorted(_ batches: [String: Batch]) -> [Batch] {
            batches.keys.sorted().compactMap { batches[$0] }.map { batch in
                var batch = batch
                batch.indices.sort()
                return batch
            }
        }
        return (sorted(moved), sorted(asked))
    }

    /// The client of one node, made on first use with the cluster's credentials, TLS and
    /// timeouts, database 0.
    private func node(_ endpoint: RedisEndpoint) -> any RedisQuerying {
        state.withLock { state in
            if let client = state.nodes[endpoint.description] { return client }
            var node = settings
            node.endpoint = endpoint
            node.topology = .standalone
            node.database = 0
            let client = makeNode(node)
            state.nodes[endpoint.description] = client
            return client
        }
    }

    /// The slot map; read again when there is none, or when it is stale (a node failed) and
    /// was not read within `refreshPause` (a stale map still routes: MOVED corrects it).
    private func currentMap() async throws(RedisError) -> RedisSlotMap {
        let (map, due) = state.withLock { state in
            (state.map, state.map == nil || (state.stale && state.lastRefresh.map { .now >= $0 + Self.refreshPause } ?? true))
        }
        if let map, !due { return map }
        do {
            return try await refresh()
        } catch {
            if let map { return map }
            throw error
        }
    }

    /// Reads the slot map from the known masters, then the seeds, the first that answers.
    private func refresh() async throws(RedisError) -> RedisSlotMap {
        await refreshGate.acquire()
        defer { refreshGate.release() }
        let known = state.withLock { state in
            state.lastRefresh = .now
            return state.map?.masters ?? []
        }
        var lastError = RedisError(kind: .connect, message: "no cluster address configured")
        for endpoint in known + seeds.filter({ !known.contains($0) }) {
            let replies: [RedisValue]
            do {
                replies = try await node(endpoint).pipeline(RedisCommands([["CLUSTER", "SHARDS"], ["CLUSTER", "SLOTS"]]))
            } catch {
                lastError = RedisError(kind: error.kind, message: "cluster node \(endpoint): \(error.message)")
                continue
            }
            let tls = settings.tls != nil
            if let map = replies.first.flatMap({ RedisSlotMap.parse(shards: $0, asked: endpoint, tls: tls) })
                ?? replies.dropFirst().first.flatMap({ RedisSlotMap.parse(slots: $0, asked: endpoint) }) {
                install(map)
                return map
            }
            lastError = mapProblem(replies, endpoint)
        }
        throw lastError
    }

    private func mapProblem(_ replies: [RedisValue], _ endpoint: RedisEndpoint) -> RedisError {
        guard case .error(let message) = replies.last else {
            return RedisError(kind: .connection, message: "cluster node \(endpoint): no slot map in CLUSTER SHARDS or CLUSTER SLOTS")
        }
        var text = RedisReplyError.describe(message, redacting: redactor)
        if message.contains("cluster support disabled") {
            text += " (not a cluster node: use redis.url or redis.host for a standalone server)"
        }
        return RedisError(kind: .redisError, message: "cluster node \(endpoint): CLUSTER SLOTS: \(text)")
    }

    /// Installs a fresh map and drops the clients of nodes that are neither masters nor seeds.
    private func install(_ map: RedisSlotMap) {
        let keep = Set((map.masters + seeds).map(\.description))
        state.withLock { state in
            state.map = map
            state.stale = false
            for (name, client) in state.nodes where !keep.contains(name) {
                state.retiredRoundTrips &+= client.roundTripCount
                state.nodes[name] = nil
            }
        }
    }

    /// `host:port` (or `[v6]:port`) as an endpoint.
    package static func endpoint(_ text: String) -> RedisEndpoint? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : .tcp(host: host, port: port)
    }
}
