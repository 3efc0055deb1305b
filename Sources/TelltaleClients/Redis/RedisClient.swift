import Synchronization
import TelltaleCore
import TelltaleMetrics

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
    package static func parse(url: String) -> RedisSettings? {
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
            // Percent-encoded, as redis-py and ioredis read them (a password may hold @ : / %).
            let pair = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(percentDecoded)
            if pair.count == 2 {
                settings.username = pair[0].isEmpty ? nil : pair[0]
                settings.password = pair[1]
            } else {
                settings.password = pair[0]
            }
        }
        let hostAndPath = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        if hostAndPath.count == 2, !hostAndPath[1].isEmpty {
            guard let database = Int(hostAndPath[1]) else { return nil }
            settings.database = database
        }
        let hostPort = hostAndPath[0]
        // `[::1]:6380` or `[::1]`: an IPv6 address is bracketed; hiredis wants it bare.
        let hostEnd = hostPort.hasPrefix("[") ? hostPort.firstIndex(of: "]").map { hostPort.index(after: $0) } : nil
        let portColon = hostPort[(hostEnd ?? hostPort.startIndex)...].lastIndex(of: ":")
        var host = portColon.map { hostPort[..<$0] } ?? hostPort
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        var port = 6379
        if let portColon {
            guard let parsed = Int(hostPort[hostPort.index(after: portColon)...]), (1...65535).contains(parsed) else { return nil }
            port = parsed
        }
        settings.endpoint = .tcp(host: host.isEmpty ? "127.0.0.1" : String(host), port: port)
        return settings
    }

    /// `%40` → `@`; malformed escapes are kept as written.
    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), let high = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex),
               let low = utf8.index(index, offsetBy: 2, limitedBy: utf8.endIndex), low < utf8.endIndex,
               let value = UInt8(String(decoding: [utf8[high], utf8[low]], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index = utf8.index(after: low)
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What the queue collector asks of Redis, so that a scripted fake can stand in for a
/// server in unit tests.
package protocol RedisQuerying: Sendable {
    /// Network round trips made so far.
    var roundTripCount: UInt64 { get }
    func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue]
}

extension RedisClient: RedisQuerying {}

/// Telltale's access to one Redis: one connection, one pipeline in flight, reconnects with
/// capped backoff, blocking hiredis calls on the client's own thread.
public actor RedisClient {
    public nonisolated let settings: RedisSettings
    private let thread = BlockingThreads(count: 1)
    private var connection: RedisConnection?
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
        let settings = settings
        do {
            let fresh = try await thread.run { () throws(RedisError) -> RedisConnection in
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
