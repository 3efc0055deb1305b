import Synchronization
import TelltaleCore
import TelltaleMetrics

/// What the queue collector asks of Redis, so that a scripted fake can stand in for a
/// server in unit tests.
package protocol RedisQuerying: Sendable {
    /// Network round trips made so far.
    var roundTripCount: UInt64 { get }
    /// Sends the commands and returns one reply per command, in order. On a cluster each
    /// command goes to the node that owns its key's slot (nodes in parallel, one round trip
    /// each); keyless commands go to the first server.
    func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue]
    /// The servers to run per-server commands on (SCAN, INFO, CLIENT LIST): the one server,
    /// or every master of a cluster. Names are `host:port` (or the socket path).
    func servers() async throws(RedisError) -> [String]
    /// Sends the commands to one of `servers()`.
    func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue]
}

extension RedisClient: RedisQuerying {
    /// With Sentinel: the server the Sentinels name now (resolved, or checked again, first),
    /// so that the run's `node` labels name the server that answers.
    package func servers() async throws(RedisError) -> [String] {
        guard case .sentinel(let sentinel) = settings.topology else { return [settings.endpoint.description] }
        await gate.acquire()
        defer { gate.release() }
        _ = try await connected()
        return [resolvedServer?.description ?? sentinel.master]
    }

    package func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue] {
        try await pipeline(commands)
    }
}

/// Telltale's access to one Redis: one connection, one pipeline in flight, reconnects with
/// capped backoff, every blocking call (socket, TLS, reply reader) on the client's own thread.
///
/// With Sentinel (`RedisTopology.sentinel`) every new connection starts by asking the
/// Sentinels for the server (`RedisSentinel.connect`). The connection is dropped, and the
/// Sentinels asked again, after an I/O error or timeout, when a reply shows that the server
/// no longer has the role it was chosen for (`RedisSentinelReplies.stale`), and when the
/// Sentinel, asked again before a call at most every `RedisSentinel.checkInterval`, names
/// another server (`RedisSentinel.check`).
public actor RedisClient {
    public nonisolated let settings: RedisSettings
    private let thread = BlockingThreads(count: 1)
    private var connection: RedisConnection?
    /// The TLS context of every connection, built at the first one, on `thread`.
    private let tlsContexts = RedisTLSContexts()
    private var backoff = ReconnectBackoff()
    private let gate = SerialGate()
    /// Network round trips made, for `telltale_redis_round_trips_total` and the benchmark.
    private let roundTrips = Atomic<UInt64>(0)
    /// With Sentinel: the Sentinels in the order to ask them (the last to answer first), the
    /// server resolved last and the role it was chosen for.
    private var sentinelOrder: [RedisEndpoint] = []
    private var resolvedServer: RedisEndpoint?
    private var resolvedRole: RedisSentinel.Role?
    /// The connection to the Sentinel that named the server, and when to ask it again.
    private var sentinelConnection: RedisConnection?
    private var nextSentinelCheck = ContinuousClock.now

    public init(settings: RedisSettings) {
        self.settings = settings
        if case .sentinel(let sentinel) = settings.topology { sentinelOrder = sentinel.addresses }
    }

    public nonisolated var roundTripCount: UInt64 { roundTrips.load(ordering: .relaxed) }

    /// Sends the commands in one round trip and returns one reply per command.
    public func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        await gate.acquire()
        defer { gate.release() }
        let connection = try await connected()
        roundTrips.add(1, ordering: .relaxed)
        do {
            let replies = try await thread.run { () throws(RedisError) in try connection.pipeline(commands) }
            if let role = resolvedRole, RedisSentinelReplies.stale(replies, role: role) {
                // Kept for this call (an error reply is the queue's error); the next asks the Sentinels.
                self.connection = nil
            }
            return replies
        } catch {
            // A run cancelled (timed out) before its commands went out leaves the connection as
            // it was; after an I/O error or timeout replies cannot be resynchronised: start afresh.
            if error is CancellationError { throw RedisError(kind: .timeout, message: "cancelled before sending") }
            self.connection = nil
            throw error as? RedisError ?? RedisError(kind: .connection, message: "\(error)")
        }
    }

    private func connected() async throws(RedisError) -> RedisConnection {
        if let connection, !connection.isBroken {
            guard case .sentinel(let sentinel) = settings.topology, let server = resolvedServer, let role = resolvedRole,
                  ContinuousClock.now >= nextSentinelCheck else { return connection }
            if await sentinelStillNames(server, as: role, sentinel) { return connection }
        }
        connection = nil
        if backoff.isWaiting {
            throw RedisError(kind: .connect, message: "reconnecting after: \(backoff.lastError)")
        }
        let (settings, tlsContexts) = (settings, tlsContexts)
        do {
            let fresh: RedisConnection
            if case .sentinel(let sentinel) = settings.topology {
                let order = sentinelOrder
                let resolved = try await thread.run { () throws(RedisError) -> RedisSentinel.Resolved in
                    try RedisSentinel.connect(settings, sentinel, order: order, tlsContexts: tlsContexts)
                }
                // As redis-py does: the Sentinel that answered is asked first next time.
                if resolved.sentinelIndex != 0 { sentinelOrder.swapAt(0, resolved.sentinelIndex) }
                resolvedServer = resolved.server
                resolvedRole = resolved.role
                sentinelConnection = resolved.sentinel
                nextSentinelCheck = .now + RedisSentinel.checkInterval
                fresh = resolved.connection
            } else {
                fresh = try await thread.run { () throws(RedisError) -> RedisConnection in
                    let connection = try RedisConnection(endpoint: settings.endpoint, connectTimeout: settings.connectTimeout,
                                                         commandTimeout: settings.commandTimeout,
                                                         tls: tlsContexts.context(for: settings.tls))
                    _ = try Self.logIn(connection, settings, at: settings.endpoint, probe: ["INFO", "server"])
                    return connection
                }
            }
            roundTrips.add(1, ordering: .relaxed)
            connection = fresh
            backoff.succeeded()
            return fresh
        } catch {
            if error is CancellationError { throw RedisError(kind: .timeout, message: "cancelled before connecting") }
            backoff.failed((error as? RedisError)?.message ?? "\(error)")
            throw RedisError(kind: .connect, message: backoff.lastError)
        }
    }

    /// Asks the Sentinel (one round trip) whether `server` is still the one to read. A
    /// Sentinel that cannot be reached leaves the connection as it is, and is asked again
    /// only after `RedisSentinel.checkRetry`.
    private func sentinelStillNames(_ server: RedisEndpoint, as role: RedisSentinel.Role,
                                    _ sentinel: RedisSentinelSettings) async -> Bool {
        let (settings, order, kept, tlsContexts) = (settings, sentinelOrder, sentinelConnection, tlsContexts)
        sentinelConnection = nil
        guard let check = await thread.run({ () -> RedisSentinel.Check in
            RedisSentinel.check(kept, settings, sentinel, order: order, server: server, role: role, tlsContexts: tlsContexts)
        }) else { return true }
        roundTrips.add(1, ordering: .relaxed)
        sentinelConnection = check.sentinel
        if let index = check.sentinelIndex, index != 0 { sentinelOrder.swapAt(0, index) }
        nextSentinelCheck = .now + (check.confirmed == nil ? RedisSentinel.checkRetry : RedisSentinel.checkInterval)
        return check.confirmed ?? true
    }

    /// AUTH, SELECT and `probe` (`INFO server`, or `ROLE` for a server named by Sentinels) in
    /// one round trip; returns the probe's reply. A server that does not know AUTH (a renamed
    /// command) quotes its arguments in the error: only the sanitised text is kept, and the
    /// password is redacted besides. The probe tells a Sentinel apart (it knows AUTH, INFO
    /// and ROLE but no SELECT and no data command), and, without a password, NOAUTH to it
    /// tells that the server wants one before any data command is sent.
    static func logIn(_ connection: RedisConnection, _ settings: RedisSettings, at endpoint: RedisEndpoint,
                      probe: [String]) throws(RedisError) -> RedisValue {
        var commands = RedisCommands()
        if let password = settings.password {
            commands.append(["AUTH"] + (settings.username.map { [$0] } ?? []) + [password])
        }
        if settings.database != 0 { commands.append(["SELECT", String(settings.database)]) }
        commands.append(probe)
        let replies = try connection.pipeline(commands)
        let probeReply = replies.last ?? .null
        // An ACL user may not be allowed INFO or ROLE: then this check is skipped.
        if probeReply.string?.contains("redis_mode:sentinel") == true || RedisSentinelReplies.role(probeReply) == "sentinel" {
            if case .sentinel = settings.topology {
                throw RedisError(kind: .connect, message: "\(endpoint), named by the Sentinels, is itself a Redis Sentinel")
            }
            throw RedisError(kind: .connect, message: "\(endpoint) is a Redis Sentinel, not a Redis server: "
                                 + "point queues.redis at the server that holds the queues, or use queues.redis.sentinel")
        }
        let redactor = Redactor(settings.secrets)
        for (index, reply) in replies.enumerated() {
            guard case .error(let message) = reply else { continue }
            // The probe itself may be refused to an ACL user; only NOAUTH there is a login problem.
            if index == replies.count - 1 && RedisReplyError.code(message) != "NOAUTH" { continue }
            let user = settings.username.map { " as \($0)" } ?? ""
            throw RedisError(kind: .connect, message: "login to \(endpoint) db \(settings.database)\(user) refused: "
                                 + RedisReplyError.describe(message, redacting: redactor))
        }
        return probeReply
    }
}
