import TelltaleClients
import TelltaleCore
import Yams

extension RedisSentinelSettings {
    /// At most this many Sentinel addresses (a deployment has three or five).
    static let maxAddresses = 32

    /// The `sentinel:` block of a source's `redis:` block, or nil without one:
    ///
    /// ```yaml
    /// sentinel: {master: mymaster, addresses: ["10.0.0.5:26379", "[::1]:26379"],
    ///            username: u, password: p, tls: {...}, read_from: master}
    /// ```
    ///
    /// The Sentinels name the server, so `url`, `host`, `port` and `socket` (which name one
    /// fixed server) are refused beside it; the server's own `username`, `password` and `db`
    /// stay in the `redis:` block. Every problem names its key.
    static func read(_ redis: ConfigMap) -> RedisSentinelSettings? {
        guard redis.has("sentinel") else { return nil }
        let path = redis.childPath("sentinel")
        for key in ["url", "url_file", "host", "port", "socket"] where redis.has(key) {
            redis.problems.add(redis.childPath(key), "not with sentinel: the Sentinels name the server "
                                   + "(give its username, password and db as keys of the redis block)")
        }
        if redis.has("cluster") {
            redis.problems.add(path, "choose sentinel or cluster, not both")
        }
        guard let map = redis.map("sentinel") else { return nil }
        var settings = RedisSentinelSettings()
        if let master = map.string("master") {
            if master.isEmpty || master.utf8.count > 256 || master.contains(where: { $0.isWhitespace }) {
                map.problems.add(map.childPath("master"), "expected the name Sentinel monitors the master by (no spaces, at most 256 bytes)")
            } else {
                settings.master = master
            }
        } else {
            map.problems.add(map.childPath("master"), "is required (the name in the Sentinels' `sentinel monitor NAME …`)")
        }
        if let addresses = map.list("addresses") {
            if addresses.isEmpty {
                map.problems.add(map.childPath("addresses"), "needs at least one Sentinel host:port")
            } else if addresses.count > maxAddresses {
                map.problems.add(map.childPath("addresses"), "at most \(maxAddresses) Sentinels")
            } else {
                for (itemPath, node) in addresses {
                    guard case .scalar(let scalar) = node else {
                        map.problems.add(itemPath, "expected host:port")
                        continue
                    }
                    switch parseAddress(scalar.string) {
                    case .success(let endpoint):
                        if settings.addresses.contains(endpoint) {
                            map.problems.add(itemPath, "\(endpoint) is listed twice")
                        } else {
                            settings.addresses.append(endpoint)
                        }
                    case .failure(let problem):
                        map.problems.add(itemPath, problem.message)
                    }
                }
            }
        } else {
            map.problems.add(map.childPath("addresses"), "is required: the Sentinels, each host:port")
        }
        if let username = map.string("username") { settings.username = username }
        if let password = map.secret("password") { settings.password = password }
        if settings.username != nil && settings.password == nil {
            map.problems.add(map.childPath("username"), "needs password (or password_file)")
        }
        settings.tls = readTLS(map)
        if let readFrom = map.string("read_from") {
            switch readFrom {
            case "master": settings.readFromReplica = false
            case "replica": settings.readFromReplica = true
            default: map.problems.add(map.childPath("read_from"), "expected master or replica, got \"\(readFrom.clipped(40))\"")
            }
        }
        map.finish()
        return settings
    }

    struct AddressProblem: Error {
        let message: String
    }

    /// `host:port`, `host` (port 26379, Sentinel's default) or `[v6-address]:port`.
    static func parseAddress(_ text: String) -> Result<RedisEndpoint, AddressProblem> {
        let expected = "expected host:port (an IPv6 address in brackets: [::1]:26379), got \"\(text.clipped(60))\""
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(AddressProblem(message: expected)) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return .failure(AddressProblem(message: expected)) }
                portText = rest.dropFirst()
            }
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            // More than one colon: an IPv6 address without brackets, ambiguous.
            guard parts.count <= 2 else { return .failure(AddressProblem(message: expected)) }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty, host.utf8.count <= 255, !host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            return .failure(AddressProblem(message: expected))
        }
        var port = 26379
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                return .failure(AddressProblem(message: expected))
            }
            port = parsed
        }
        return .success(.tcp(host: String(host), port: port))
    }

    /// TLS to the Sentinels.
    ///
    /// The Sentinels' own `tls:` block (the server's is the `redis:` block's).
    static func readTLS(_ map: ConfigMap) -> RedisTLSSettings? {
        RedisTLSSettings.read(map, for: RedisSettings())
    }
}
