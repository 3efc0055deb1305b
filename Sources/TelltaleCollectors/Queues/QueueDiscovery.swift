import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Finds queues by SCAN, a little at a time: each pass may spend only its budget, then goes
/// on from its cursor at the next run. A complete pass replaces the known set, so queues that
/// vanish drop out.
struct QueueDiscovery: Sendable {
    private(set) var known: Set<QueueID> = []
    private var found: Set<QueueID> = []
    /// The prefixes still to scan this pass, each on every server (every master of a cluster).
    private var pendingPrefixes: [(prefix: String, server: String)] = []
    private var cursor = "0"
    private var nextPass: ContinuousClock.Instant?
    /// Set when one server of several (a cluster's master) could not be reached this pass:
    /// the pass then adds to the known queues instead of replacing them, so that the queues
    /// of that server stay (and read `telltale_queue_up` 0) while the others are scanned.
    private var partial = false
    private var serverCount = 0

    /// The servers the pass still has to scan (for tests).
    var pendingServers: [String] { pendingPrefixes.map(\.server) }

    var isDue: Bool { !pendingPrefixes.isEmpty || nextPass.map { ContinuousClock.now >= $0 } ?? true }

    /// Continues (or starts) a pass within `budget`.
    mutating func advance(client: any RedisQuerying, servers: [String], config: QueueCollectorConfig) async throws(RedisError) {
        // A cursor means nothing on another server (a failover, another replica): start over.
        if pendingPrefixes.contains(where: { !servers.contains($0.server) }) { pendingPrefixes = [] }
        if pendingPrefixes.isEmpty {
            pendingPrefixes = config.prefixes.flatMap { prefix in servers.map { (prefix, $0) } }
            found = []
            cursor = "0"
            partial = false
            serverCount = servers.count
        }
        let deadline = ContinuousClock.now + config.discoveryBudget
        while let (prefix, server) = pendingPrefixes.first, ContinuousClock.now < deadline {
            let pattern = Self.globEscaped(prefix) + ":*:[im][de]*"
            let reply: [RedisValue]
            do {
                reply = try await client.pipeline(RedisCommands([["SCAN", cursor, "MATCH", pattern, "COUNT", String(config.scanCount)]]),
                                                  on: server)
            } catch {
                // One server alone (a standalone Redis) fails the pass as before.
                guard serverCount > 1 else { throw error }
                pendingPrefixes.removeAll { $0.server == server }
                partial = true
                cursor = "0"
                continue
            }
            if case .error(let message) = reply.first {
                // NOAUTH, NOPERM, a Sentinel's unknown command…: a clear message, not "unexpected reply".
                let redactor = Redactor(config.redis.secrets)
                throw RedisError(kind: .redisError, message: "SCAN for queues: " + RedisReplyError.describe(message, redacting: redactor))
            }
            let parts = reply.first?.array ?? []
            guard parts.count == 2, let next = parts[0].string else {
                throw RedisError(kind: .connection, message: "unexpected SCAN reply")
            }
            for key in parts[1].array.compactMap(\.string) {
                if let queue = Self.queue(fromKey: key, prefix: prefix, source: config.name) { found.insert(queue) }
            }
            cursor = next
            if next == "0" { pendingPrefixes.removeFirst() }
        }
        if pendingPrefixes.isEmpty {
            known = partial ? known.union(found) : found
            nextPass = .now + config.discoveryInterval
        } else {
            known.formUnion(found)
        }
    }

    /// Drops queues whose keys are all gone (obliterated) until a pass finds them again.
    mutating func forget(_ queues: Set<QueueID>) {
        known.subtract(queues)
        found.subtract(queues)
    }

    /// `bull:emails:id` or `bull:emails:meta` → queue `emails` of prefix `bull`.
    static func queue(fromKey key: String, prefix: String, source: String) -> QueueID? {
        for suffix in [":id", ":meta"] where key.hasSuffix(suffix) && key.hasPrefix(prefix + ":") {
            let name = key.dropFirst(prefix.count + 1).dropLast(suffix.count)
            return name.isEmpty ? nil : QueueID(prefix: prefix, name: String(name), source: source)
        }
        return nil
    }

    /// Escapes Redis glob characters so a prefix matches literally.
    static func globEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}
