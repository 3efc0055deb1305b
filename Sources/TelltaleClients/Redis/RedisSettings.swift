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
    /// TLS to the server (`rediss://` or a `tls:` block); nil for plain TCP.
    public var tls: RedisTLSSettings?
    /// One server, the master named by Sentinels, or a Cluster.
    public var topology = RedisTopology.standalone

    public init() {}

    /// Every secret of these settings (the server's password and the Sentinels'), for a
    /// `Redactor`: Redis and Sentinel may echo a command's arguments in their errors.
    package var secrets: [String] {
        var secrets = password.map { [$0] } ?? []
        if case .sentinel(let sentinel) = topology, let password = sentinel.password { secrets.append(password) }
        return secrets
    }

    /// Whether the counts are read from a replica the Sentinels name.
    package var readsFromReplica: Bool {
        if case .sentinel(let sentinel) = topology { sentinel.readFromReplica } else { false }
    }

    public var description: String {
        "\(endpoint) db \(database)" + (username.map { " as \($0)" } ?? "")
    }

    /// The database numbers a URL or the `db` key may name.
    package static let databases = 0...10_000

    /// Reads `redis://[user[:password]@]host[:port][/db]`, the same with `rediss://` (TLS with
    /// the default settings: verified against the system's CAs and the host name; port 6379
    /// by default, as redis-py has it) or `unix:///path/to/socket[?db=N]`.
    package static func parse(url: String) -> RedisSettings? {
        var settings = RedisSettings()
        if url.hasPrefix("unix://") {
            let rest = url.dropFirst("unix://".count)
            let parts = rest.split(separator: "?", maxSplits: 1)
            guard let path = parts.first, !path.isEmpty else { return nil }
            settings.endpoint = .unix(path: String(path))
            if parts.count == 2, parts[1].hasPrefix("db=") {
                guard let database = Int(parts[1].dropFirst(3)), Self.databases.contains(database) else { return nil }
                settings.database = database
            }
            return settings
        }
        let scheme: String
        if url.hasPrefix("redis://") {
            scheme = "redis://"
        } else if url.hasPrefix("rediss://") {
            scheme = "rediss://"
            settings.tls = RedisTLSSettings()
        } else {
            return nil
        }
        var rest = Substring(url.dropFirst(scheme.count))
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
            guard let database = Int(hostAndPath[1]), Self.databases.contains(database) else { return nil }
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


/// TLS to a Redis server: the certificate and host name are verified unless
/// `insecureSkipVerify`; TLS 1.2 or later.
public struct RedisTLSSettings: Sendable, Hashable {
    /// PEM bundle of the CAs to trust; the system's store when nil.
    public var caFile: String?
    /// Client certificate and key (PEM), for servers that require one.
    public var certFile: String?
    public var keyFile: String?
    /// The name to verify and to send as SNI; the endpoint's host when nil.
    public var serverName: String?
    public var insecureSkipVerify = false
    /// The files as they were when read: rewritten files make other settings, so that a
    /// reload replaces the client (whose TLS context holds what it read) instead of keeping it.
    package var stamps: [FileStamp] = []

    public init() {}
}

/// Sentinels that know the master of `master`.
public struct RedisSentinelSettings: Sendable, Equatable {
    public var master = ""
    /// The Sentinels, each `host:port`.
    public var addresses: [RedisEndpoint] = []
    /// Credentials for the Sentinels themselves (the server's are `RedisSettings`').
    public var username: String?
    public var password: String?
    public var tls: RedisTLSSettings?
    /// Read the counts from a replica, sparing the master.
    public var readFromReplica = false

    public init() {}
}

/// How the server that holds the queues is found.
public enum RedisTopology: Sendable, Equatable {
    /// `RedisSettings.endpoint` itself.
    case standalone
    /// The master (or a replica) that the Sentinels name, resolved again after a failover.
    case sentinel(RedisSentinelSettings)
    /// A Redis Cluster, its slot map read from any of these seed nodes.
    case cluster(seeds: [RedisEndpoint])
}
