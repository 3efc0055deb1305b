import TelltaleCore
import TelltaleMetrics

/// Finding the server through Redis Sentinel: ask the Sentinels in order which server is the
/// master (or which replicas are healthy), connect to it, log in and check its `ROLE` in the
/// same round trip. The connection to the Sentinel that answered is kept, to ask it again
/// now and then (`check`) whether the server is still the one it names. Blocking: runs on
/// the client's own thread.
package enum RedisSentinel {
    /// Resolutions tried when the server named turns out to have another role (a failover
    /// under way) or cannot be reached, before the attempt fails with `.connect`.
    package static let maxAttempts = 3
    /// The pause between two such resolutions, on the client's own thread.
    static let retryPause = Duration.milliseconds(200)
    /// How often, at most, a call first asks the Sentinel whether the server is still the
    /// one it names: during a failover the old master may keep answering as a master for a
    /// while, and only the Sentinels know better.
    package static let checkInterval = Duration.milliseconds(500)
    /// After a check that reached no Sentinel, the next is not tried before this long: a
    /// Sentinel that does not answer must not slow every call down.
    package static let checkRetry = Duration.seconds(60)

    /// The role a server reports in `ROLE`: `master`, or `slave` for a replica.
    package enum Role: String, Sendable {
        case master
        case replica = "slave"

        var name: String { self == .master ? "master" : "replica" }
    }

    /// A server found, connected, logged in and checked.
    package struct Resolved: Sendable {
        package let connection: RedisConnection
        package let server: RedisEndpoint
        /// The role it had when checked: what it must keep (see `RedisSentinelReplies.stale`).
        package let role: Role
        /// The Sentinel that named it, logged in, kept for `check`.
        package let sentinel: RedisConnection
        /// Its position in the order the Sentinels were asked.
        package let sentinelIndex: Int
    }

    /// What a Sentinel says of the master: where it is and which replicas are healthy (only
    /// asked for with `read_from: replica`).
    package struct View: Sendable, Equatable {
        package let master: RedisEndpoint
        package let healthyReplicas: [RedisEndpoint]

        package init(master: RedisEndpoint, healthyReplicas: [RedisEndpoint] = []) {
            self.master = master
            self.healthyReplicas = healthyReplicas
        }

        /// The server to read: the `pick`-th healthy replica (modulo their number) when
        /// asked for one, else the master.
        package func choose(replica: Bool, pick: Int) -> (RedisEndpoint, Role) {
            if replica, !healthyReplicas.isEmpty { return (healthyReplicas[pick % healthyReplicas.count], .replica) }
            return (master, .master)
        }

        /// Whether `server`, chosen for `role`, is still what `choose` would allow: the master,
        /// or a healthy replica; the master chosen for want of a healthy replica only while
        /// there is still none.
        package func confirms(_ server: RedisEndpoint, as role: Role, replica: Bool) -> Bool {
            switch role {
            case .master: server == master && (!replica || healthyReplicas.isEmpty)
            case .replica: healthyReplicas.contains(server)
            }
        }
    }

    /// Asks the Sentinels (in `order`, first answer wins), connects to the server they name and
    /// checks its role; again with the next Sentinel first when the role is not the one
    /// expected, at most `maxAttempts` times.
    package static func connect(_ settings: RedisSettings, _ sentinel: RedisSentinelSettings,
                                order: [RedisEndpoint], tlsContexts: RedisTLSContexts) throws(RedisError) -> Resolved {
        let redactor = Redactor(settings.secrets)
        var problems: [String] = []
        for attempt in 0..<maxAttempts {
            if attempt > 0 { BlockingThreads.pause(retryPause) }
            let answer = try ask(order, settings, sentinel, startingAt: attempt, tlsContexts: tlsContexts, redactor: redactor)
            let (server, expected) = answer.view.choose(replica: sentinel.readFromReplica, pick: attempt)
            do {
                let connection = try open(server, tls: tlsContexts.context(for: settings.tls), settings)
                let roleReply = try RedisClient.logIn(connection, settings, at: server, probe: ["ROLE"])
                // No answer to ROLE (an ACL without +role, a renamed command): the Sentinel's word is taken.
                guard let role = RedisSentinelReplies.role(roleReply), role != expected.rawValue else {
                    return Resolved(connection: connection, server: server, role: expected,
                                    sentinel: answer.connection, sentinelIndex: answer.sentinelIndex)
                }
                append("\(server), named by sentinel \(order[answer.sentinelIndex]), reports role \(role.clipped(20)), "
                           + "not \(expected.name)", to: &problems)
            } catch {
                append(redactor.redact(error.message), to: &problems)
            }
        }
        throw RedisError(kind: .connect, message: "no usable \(sentinel.readFromReplica ? "replica or master" : "master") "
                             + "'\(sentinel.master)' after \(maxAttempts) resolutions: " + problems.joined(separator: "; "))
    }

    /// What `check` found.
    package struct Check: Sendable {
        /// Whether the Sentinel still names the server; nil when no Sentinel answered.
        package let confirmed: Bool?
        /// The Sentinel connection to keep (nil when none answered).
        package let sentinel: RedisConnection?
        /// The position of a Sentinel newly connected to, in `order`.
        package let sentinelIndex: Int?
    }

    /// Asks the kept Sentinel connection, or else the Sentinels in order, whether `server`
    /// (chosen for `role`) is still the one to read: one round trip to a Sentinel.
    package static func check(_ kept: RedisConnection?, _ settings: RedisSettings, _ sentinel: RedisSentinelSettings,
                              order: [RedisEndpoint], server: RedisEndpoint, role: Role, tlsContexts: RedisTLSContexts) -> Check {
        let redactor = Redactor(settings.secrets)
        if let kept, let view = try? readView(kept, at: nil, sentinel, logIn: false, redactor: redactor) {
            return Check(confirmed: view.confirms(server, as: role, replica: sentinel.readFromReplica), sentinel: kept,
                         sentinelIndex: nil)
        }
        // One Sentinel besides the kept one: the check must stay well within a run's timeout
        // when the Sentinels do not answer.
        guard let answer = try? ask(order, settings, sentinel, startingAt: 0, limit: 1, tlsContexts: tlsContexts,
                                    redactor: redactor) else {
            return Check(confirmed: nil, sentinel: nil, sentinelIndex: nil)
        }
        return Check(confirmed: answer.view.confirms(server, as: role, replica: sentinel.readFromReplica),
                     sentinel: answer.connection, sentinelIndex: answer.sentinelIndex)
    }

    /// What one Sentinel answered, and the connection to it.
    struct Answer {
        let view: View
        let connection: RedisConnection
        let sentinelIndex: Int
    }

    /// Asks each Sentinel in turn, from `start`; the first answer wins. Fails with every
    /// Sentinel's problem when none answers.
    static func ask(_ order: [RedisEndpoint], _ settings: RedisSettings, _ sentinel: RedisSentinelSettings,
                    startingAt start: Int, limit: Int = .max, tlsContexts: RedisTLSContexts,
                    redactor: Redactor) throws(RedisError) -> Answer {
        guard !order.isEmpty else { throw RedisError(kind: .connect, message: "no Sentinel addresses") }
        var problems: [String] = []
        for offset in 0..<min(order.count, limit) {
            let index = (start + offset) % order.count
            let address = order[index]
            do throws(RedisError) {
                let connection = try openSentinel(address, settings, sentinel, tlsContexts)
                let view = try readView(connection, at: address, sentinel, logIn: true, redactor: redactor)
                return Answer(view: view, connection: connection, sentinelIndex: index)
            } catch {
                problems.append(redactor.redact(error.message))
            }
        }
        throw RedisError(kind: .connect, message: problems.joined(separator: "; "))
    }

    private static func openSentinel(_ address: RedisEndpoint, _ settings: RedisSettings,
                                     _ sentinel: RedisSentinelSettings, _ tlsContexts: RedisTLSContexts) throws(RedisError) -> RedisConnection {
        do {
            return try open(address, tls: tlsContexts.context(for: sentinel.tls), settings)
        } catch {
            throw RedisError(kind: .connect, message: "sentinel \(address): \(error.message)")
        }
    }

    /// One round trip to one Sentinel: AUTH (when `logIn`), then `SENTINEL REPLICAS` (for
    /// `read_from: replica`) and `SENTINEL GET-MASTER-ADDR-BY-NAME`.
    static func readView(_ connection: RedisConnection, at address: RedisEndpoint?, _ sentinel: RedisSentinelSettings,
                     logIn: Bool, redactor: Redactor) throws(RedisError) -> View {
        let name = address.map { "sentinel \($0)" } ?? "sentinel"
        var commands = RedisCommands()
        if logIn, let password = sentinel.password {
            commands.append(["AUTH"] + (sentinel.username.map { [$0] } ?? []) + [password])
        }
        if sentinel.readFromReplica { commands.append(["SENTINEL", "REPLICAS", sentinel.master]) }
        commands.append(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.master])
        let replies: [RedisValue]
        do {
            replies = try connection.pipeline(commands)
        } catch {
            throw RedisError(kind: .connect, message: "\(name): \(error.message)")
        }
        if logIn, sentinel.password != nil, case .error(let message) = replies.first {
            throw RedisError(kind: .connect, message: "\(name) refused the login: " + describeSentinelError(message, redactor: redactor))
        }
        let masterReply = replies.last ?? .null
        if case .error(let message) = masterReply {
            throw RedisError(kind: .connect, message: "\(name): " + describeSentinelError(message, redactor: redactor))
        }
        let master: RedisEndpoint
        switch RedisSentinelReplies.masterAddress(masterReply) {
        case .known(let endpoint): master = endpoint
        case .unknown: throw RedisError(kind: .connect, message: "\(name) does not know master '\(sentinel.master)'")
        case .malformed: throw RedisError(kind: .connect, message: "\(name): unexpected reply to SENTINEL GET-MASTER-ADDR-BY-NAME")
        }
        // An error to REPLICAS (a Sentinel older than 5.0 knows only SENTINEL SLAVES) leaves the master.
        let healthy = sentinel.readFromReplica && replies.count >= 2
            ? RedisSentinelReplies.healthyReplicas(replies[replies.count - 2]) : []
        return View(master: master, healthyReplicas: healthy)
    }

    /// A Sentinel's error reply for the log and `/`: never a command's argument, never a password.
    static func describeSentinelError(_ message: String, redactor: Redactor) -> String {
        switch RedisReplyError.code(message) {
        case "NOAUTH":
            return "the Sentinel requires authentication (NOAUTH): set queues.redis.sentinel.password"
        case "WRONGPASS":
            return "the Sentinel refused the username or password (WRONGPASS)"
        default:
            let text = RedisReplyError.sanitized(message, redacting: redactor)
            if RedisReplyError.unknownCommand(text) == "sentinel" {
                return text + " (not a Redis Sentinel: list the Sentinels' ports in sentinel.addresses)"
            }
            return text
        }
    }

    /// Opens a connection to a Sentinel or a server.
    ///
    /// A connection to a Sentinel or to the server it names, over TLS when `tls` is set.
    static func open(_ endpoint: RedisEndpoint, tls: RedisTLSContext?, _ settings: RedisSettings) throws(RedisError) -> RedisConnection {
        try RedisConnection(endpoint: endpoint, connectTimeout: settings.connectTimeout,
                            commandTimeout: settings.commandTimeout, tls: tls)
    }

    private static func append(_ problem: String, to problems: inout [String]) {
        if !problems.contains(problem) { problems.append(problem) }
    }
}

/// Sentinel's replies and the signs that a server is no longer the one wanted, as pure
/// functions (unit-tested).
package enum RedisSentinelReplies {
    /// What `SENTINEL GET-MASTER-ADDR-BY-NAME` answered.
    package enum MasterAddress: Sendable, Equatable {
        /// `[ip, port]`.
        case known(RedisEndpoint)
        /// A nil reply: the Sentinel monitors no master of that name.
        case unknown
        /// Anything else.
        case malformed
    }

    package static func masterAddress(_ reply: RedisValue) -> MasterAddress {
        if reply == .null { return .unknown }
        guard case .array(let items) = reply, items.count == 2, let host = items[0].string, let port = items[1].string,
              let endpoint = endpoint(host: host, port: port) else { return .malformed }
        return .known(endpoint)
    }

    /// One replica as `SENTINEL REPLICAS` lists it (a flat array of field, value, …).
    package struct Replica: Sendable, Equatable {
        package let endpoint: RedisEndpoint
        /// None of `s_down`, `o_down`, `disconnected`, and its link to the master `ok`.
        package let healthy: Bool
    }

    /// The replicas of a `SENTINEL REPLICAS` reply; entries without a valid address are left out.
    package static func replicas(_ reply: RedisValue) -> [Replica] {
        guard case .array(let entries) = reply else { return [] }
        return entries.compactMap { entry -> Replica? in
            guard case .array(let fields) = entry else { return nil }
            var values: [String: String] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let key = fields[index].string, ["ip", "port", "flags", "master-link-status"].contains(key) {
                    values[key] = fields[index + 1].string
                }
                index += 2
            }
            guard let host = values["ip"], let port = values["port"], let endpoint = endpoint(host: host, port: port) else {
                return nil
            }
            let flags = (values["flags"] ?? "").split(separator: ",")
            let down = flags.contains { ["s_down", "o_down", "disconnected"].contains($0) }
            return Replica(endpoint: endpoint, healthy: !down && values["master-link-status"] == "ok")
        }
    }

    package static func healthyReplicas(_ reply: RedisValue) -> [RedisEndpoint] {
        replicas(reply).filter(\.healthy).map(\.endpoint)
    }

    /// `ROLE`'s first element: `master`, `slave` or `sentinel`; nil for an error or anything else.
    package static func role(_ reply: RedisValue) -> String? {
        guard case .array(let items) = reply, let first = items.first, case .string(let role) = first else { return nil }
        return role
    }

    /// The `role:` line of an `INFO` reply (`master` or `slave`), nil without one.
    package static func infoRole(_ text: String) -> String? {
        for line in text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) where line.hasPrefix("role:") {
            return String(line.dropFirst("role:".count))
        }
        return nil
    }

    /// Whether a pipeline's replies show that the server is no longer the one wanted, so that
    /// the connection must be dropped and the Sentinels asked again: an error reply
    /// `READONLY` (a write to what became a replica), `MASTERDOWN` (a replica that lost its
    /// master) or `LOADING`, or an `INFO` reply whose `role:` is not `role`.
    package static func stale(_ replies: [RedisValue], role: RedisSentinel.Role) -> Bool {
        for reply in replies {
            switch reply {
            case .error(let message):
                if ["READONLY", "MASTERDOWN", "LOADING"].contains(RedisReplyError.code(message)) { return true }
            case .string(let text):
                // INFO's text starts with a section header ("# Server"); other replies are not looked into.
                guard text.utf8.starts(with: "# ".utf8), let found = infoRole(text) else { continue }
                if found != role.rawValue { return true }
            default:
                continue
            }
        }
        return false
    }

    /// `host`, `port` as Sentinel writes them (an IPv6 address bare), checked.
    static func endpoint(host: String, port: String) -> RedisEndpoint? {
        guard !host.isEmpty, host.utf8.count <= 255, let port = Int(port), (1...65535).contains(port) else { return nil }
        return .tcp(host: host, port: port)
    }
}

