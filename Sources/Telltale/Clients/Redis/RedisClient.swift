import NIOPosix
import Synchronization

/// How to reach and log in to Redis. The description never shows the password.
public struct RedisSettings: Sendable, Equatable, CustomStringConvertible {
    public var endpoint = RedisEndpoint.tcp(host: "127.0.0.1", port: 6379)
    public var username: String?
    public var password: String?
    public var database = 0
    public var connectTimeout = Duration.seconds(2)
    public var commandTimeout = Duration.seconds(2)

    public init() {}

    public var description: String {
        "\(endpoint) db \(database)" + (username.map { " as \($0)" } ?? "")
    }

    /// Reads `redis://[user[:password]@]host[:port][/db]` or `unix:///path/to/socket[?db=N]`.
    static func parse(url: String) -> RedisSettings? {
        var settings = RedisSettings()
        if url.hasPrefix("unix://") {
            let rest = url.dropFirst("unix://".count)
            let parts = rest.split(separator: "?", maxSplits: 1)
            guard let path = parts.first, !path.isEmpty else { return nil }
            settings.endpoint = .unix(path: String(path))
            if parts.count == 2, parts[1].hasPrefix("db=") {
                guard let database = Int(parts[1].dropFirst(3)) else { return nil }
                settings.database = database
            }
            return settings
        }
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let pair = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            if pair.count == 2 {
                settings.username = pair[0].isEmpty ? nil : String(pair[0])
                settings.password = String(pair[1])
            } else {
                settings.password = String(pair[0])
            }
        }
        let hostAndPath = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        if hostAndPath.count == 2, !hostAndPath[1].isEmpty {
            guard let database = Int(hostAndPath[1]) else { return nil }
            settings.database = database
        }
        let hostPort = hostAndPath[0]
        if let colon = hostPort.lastIndex(of: ":") {
            guard let port = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            settings.endpoint = .tcp(host: String(hostPort[..<colon]), port: port)
        } else {
            settings.endpoint = .tcp(host: hostPort.isEmpty ? "127.0.0.1" : String(hostPort), port: 6379)
        }
        return settings
    }
}

/// Telltale's access to one Redis: one connection, one pipeline in flight, reconnects with
/// capped backoff, blocking hiredis calls on the client's own thread.
public actor RedisClient {
    public nonisolated let settings: RedisSettings
    private let thread: NIOThreadPool
    private var connection: RedisConnection?
    private var backoff = ReconnectBackoff()
    private let gate = SerialGate()
    /// Network round trips made, for `telltale_redis_round_trips_total` and the benchmark.
    private let roundTrips = Atomic<UInt64>(0)

    public init(settings: RedisSettings) {
        self.settings = settings
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
    }

    deinit {
        thread.shutdownGracefully { _ in }
    }

    public nonisolated var roundTripCount: UInt64 { roundTrips.load(ordering: .relaxed) }

    /// Sends the commands in one round trip and returns one reply per command.
    public func pipeline(_ commands: [[String]]) async throws(RedisError) -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        await gate.acquire()
        defer { gate.release() }
        let connection = try await connected()
        roundTrips.add(1, ordering: .relaxed)
        do {
            return try await thread.runIfActive { () throws(RedisError) -> [RedisValue] in try connection.pipeline(commands) }
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
        let settings = settings
        do {
            let fresh = try await thread.runIfActive { () throws(RedisError) -> RedisConnection in
                let connection = try RedisConnection(endpoint: settings.endpoint, connectTimeout: settings.connectTimeout,
                                                     commandTimeout: settings.commandTimeout)
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

    /// AUTH and SELECT in one round trip. Redis never echoes the password in its replies.
    private static func logIn(_ connection: RedisConnection, _ settings: RedisSettings) throws(RedisError) {
        var commands: [[String]] = []
        if let password = settings.password {
            commands.append(["AUTH"] + (settings.username.map { [$0] } ?? []) + [password])
        }
        if settings.database != 0 { commands.append(["SELECT", String(settings.database)]) }
        for reply in try connection.pipeline(commands) {
            if case .error(let message) = reply {
                throw RedisError(kind: .connect, message: "login to \(settings) refused: \(message)")
            }
        }
    }
}
