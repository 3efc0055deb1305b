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
    package func servers() async throws(RedisError) -> [String] { [settings.endpoint.description] }

    package func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue] {
        try await pipeline(commands)
    }
}

/// Telltale's access to one Redis: one connection, one pipeline in flight, reconnects with
/// capped backoff, every blocking call (socket, TLS, reply reader) on the client's own thread.
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

    public init(settings: RedisSettings) {
        self.settings = settings
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
            return try await thread.run { () throws(RedisError) in try connection.pipeline(commands) }
        } catch {
            // After an I/O error or timeout hiredis cannot resynchronise replies: start afresh.
            self.connection = nil
            throw error as? RedisError ?? RedisError(kind: .connection, message: "\(error)")
        }
    }

    private func connected() async throws(RedisError) -> RedisConnection {
        if let connection, !connection.isBroken { return connection }
        connection = nil
        if backoff.isWaiting {
            throw RedisError(kind: .connect, message: "reconnecting after: \(backoff.lastError)")
        }
        let (settings, tlsContexts) = (settings, tlsContexts)
        do {
            let fresh = try await thread.run { () throws(RedisError) -> RedisConnection in
                let connection = try RedisConnection(endpoint: settings.endpoint, connectTimeout: settings.connectTimeout,
                                                     commandTimeout: settings.commandTimeout,
                                                     tls: tlsContexts.context(for: settings.tls))
                try Self.logIn(connection, settings)
                return connection
            }
            roundTrips.add(1, ordering: .relaxed)
            connection = fresh
            backoff.succeeded()
            return fresh
        } catch {
            backoff.failed((error as? RedisError)?.message ?? "\(error)")
            throw RedisError(kind: .connect, message: backoff.lastError)
        }
    }

    /// AUTH, SELECT and INFO server in one round trip. A server that does not know AUTH (a
    /// renamed command) quotes its arguments in the error: only the sanitised text is kept,
    /// and the password is redacted besides. INFO tells a Sentinel apart (it knows AUTH and
    /// INFO but no SELECT and no data command), and, without a password, NOAUTH to INFO
    /// tells that the server wants one before any data command is sent.
    private static func logIn(_ connection: RedisConnection, _ settings: RedisSettings) throws(RedisError) {
        var commands = RedisCommands()
        if let password = settings.password {
            commands.append(["AUTH"] + (settings.username.map { [$0] } ?? []) + [password])
        }
        if settings.database != 0 { commands.append(["SELECT", String(settings.database)]) }
        commands.append(["INFO", "server"])
        let replies = try connection.pipeline(commands)
        // An ACL user may not be allowed INFO: then this check is skipped.
        if replies.last?.string?.contains("redis_mode:sentinel") == true {
            throw RedisError(kind: .connect, message: "\(settings.endpoint) is a Redis Sentinel, not a Redis server: "
                                 + "point queues.redis at the server that holds the queues")
        }
        let redactor = Redactor(settings.password.map { [$0] } ?? [])
        for (index, reply) in replies.enumerated() {
            guard case .error(let message) = reply else { continue }
            // INFO itself may be refused to an ACL user; only NOAUTH there is a login problem.
            if index == replies.count - 1 && RedisReplyError.code(message) != "NOAUTH" { continue }
            throw RedisError(kind: .connect,
                             message: "login to \(settings) refused: \(RedisReplyError.describe(message, redacting: redactor))")
        }
    }
}
