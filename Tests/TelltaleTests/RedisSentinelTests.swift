import Testing
@testable import Telltale
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The `sentinel:` block of a queues source and the Sentinel replies, as pure functions.
@Suite struct RedisSentinelTests {
    // MARK: configuration

    /// The Redis settings of a configuration whose queues source has this `redis:` block.
    /// (The one place that knows how a queues source is reached in a parsed configuration.)
    private func redis(_ block: String) throws(ConfigErrors) -> RedisSettings {
        let indented = block.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let config = try TelltaleConfig.parse("queues:\n  redis:\n" + indented + "\n")
        return config.source(QueueSources.self)!.sources[0].redis
    }

    private func problems(_ block: String) -> [String] {
        do {
            _ = try redis(block)
            return []
        } catch {
            return error.problems
        }
    }

    private func sentinel(_ settings: RedisSettings) -> RedisSentinelSettings? {
        if case .sentinel(let sentinel) = settings.topology { sentinel } else { nil }
    }

    @Test func fullBlockIsRead() throws {
        let settings = try redis("""
            sentinel:
              master: mymaster
              addresses: ["10.0.0.5:26379", "sentinel-b", "[::1]:26380"]
              username: watcher
              password: sentinel-secret
              read_from: replica
            username: app
            password: server-secret
            db: 3
            """)
        let block = try #require(sentinel(settings))
        #expect(block.master == "mymaster")
        #expect(block.addresses == [.tcp(host: "10.0.0.5", port: 26379), .tcp(host: "sentinel-b", port: 26379),
                                    .tcp(host: "::1", port: 26380)])
        #expect(block.username == "watcher" && block.password == "sentinel-secret")
        #expect(block.readFromReplica && block.tls == nil)
        #expect(settings.username == "app" && settings.password == "server-secret" && settings.database == 3)
        #expect(Set(settings.secrets) == ["sentinel-secret", "server-secret"])
    }

    @Test func defaultsAreTheMasterWithoutCredentials() throws {
        let block = try #require(sentinel(try redis("sentinel: {master: m, addresses: [\"127.0.0.1:26379\"]}")))
        #expect(!block.readFromReplica && block.username == nil && block.password == nil && block.tls == nil)
        #expect(try redis("url: redis://127.0.0.1:6379/0").topology == .standalone)
    }

    @Test func aTLSBlockIsNoted() throws {
        let block = try #require(sentinel(try redis("sentinel: {master: m, addresses: [\"h:1\"], tls: {}}")))
        #expect(block.tls != nil)
    }

    @Test func everyProblemNamesItsKey() {
        let cases: [(String, String)] = [
            ("sentinel: {addresses: [\"h:26379\"]}", "sentinel.master: is required"),
            ("sentinel: {master: \"\", addresses: [\"h:26379\"]}", "sentinel.master: expected"),
            ("sentinel: {master: m}", "sentinel.addresses: is required"),
            ("sentinel: {master: m, addresses: []}", "sentinel.addresses: needs at least one"),
            ("sentinel: {master: m, addresses: [\"h:0\"]}", "sentinel.addresses[0]: expected host:port"),
            ("sentinel: {master: m, addresses: [\"h:1\", \"::1:26379\"]}", "sentinel.addresses[1]: expected host:port"),
            ("sentinel: {master: m, addresses: [\"[::1\"]}", "sentinel.addresses[0]: expected host:port"),
            ("sentinel: {master: m, addresses: [\"h:1\", \"h:1\"]}", "sentinel.addresses[1]: h:1 is listed twice"),
            ("sentinel: {master: m, addresses: [[1]]}", "sentinel.addresses[0]: expected host:port"),
            ("sentinel: {master: m, addresses: [\"h:1\"], read_from: primary}", "sentinel.read_from: expected master or replica"),
            ("sentinel: {master: m, addresses: [\"h:1\"], colour: red}", "sentinel.colour: unknown key"),
            ("sentinel: {master: m, addresses: [\"h:1\"], username: u}", "sentinel.username: needs password"),
            ("sentinel: {master: m, addresses: [\"h:1\"]}\nhost: 10.0.0.1", "redis.host: not with sentinel"),
            ("sentinel: {master: m, addresses: [\"h:1\"]}\nurl: redis://h/0", "redis.url: not with sentinel"),
            ("sentinel: [m]", "redis.sentinel: expected a mapping"),
        ]
        for (block, expected) in cases {
            let found = problems(block)
            #expect(found.contains { $0.contains(expected) }, "\(block) → \(found)")
        }
        let tooMany = (0...RedisSentinelSettings.maxAddresses).map { "\"h\($0):1\"" }.joined(separator: ", ")
        #expect(problems("sentinel: {master: m, addresses: [\(tooMany)]}").contains { $0.contains("at most") })
    }

    @Test func aSentinelPasswordNeverAppearsInAProblem() {
        let found = problems("sentinel: {master: m, addresses: [\"h:1\"], password: hunter2, password_file: /x}")
        #expect(!found.isEmpty && !found.joined().contains("hunter2"))
    }

    @Test func addressesParse() {
        func parsed(_ text: String) -> RedisEndpoint? { try? RedisSentinelSettings.parseAddress(text).get() }
        #expect(parsed("10.0.0.5:26379") == .tcp(host: "10.0.0.5", port: 26379))
        #expect(parsed("sentinel.local") == .tcp(host: "sentinel.local", port: 26379))
        #expect(parsed("[fe80::1]:5000") == .tcp(host: "fe80::1", port: 5000))
        #expect(parsed("[::1]") == .tcp(host: "::1", port: 26379))
        for bad in ["", ":26379", "h:", "h:x", "h:65536", "h:-1", "::1", "[::1]x", "[::1]:", "[]:1", "a b:1", "h:1:2"] {
            #expect(parsed(bad) == nil, "\(bad)")
        }
    }

    // MARK: Sentinel replies

    @Test func masterAddressReplies() {
        #expect(RedisSentinelReplies.masterAddress(.array([.string("10.0.0.7"), .string("6380")]))
                == .known(.tcp(host: "10.0.0.7", port: 6380)))
        #expect(RedisSentinelReplies.masterAddress(.array([.string("::1"), .string("6379")])) == .known(.tcp(host: "::1", port: 6379)))
        #expect(RedisSentinelReplies.masterAddress(.null) == .unknown)
        for odd: RedisValue in [.array([]), .array([.string("h")]), .array([.string("h"), .string("0")]),
                                .array([.string(""), .string("1")]), .array([.string("h"), .string("99999")]),
                                .array([.string("h"), .string("1"), .string("x")]), .string("h:1"), .integer(1)] {
            #expect(RedisSentinelReplies.masterAddress(odd) == .malformed, "\(odd)")
        }
    }

    private func replica(_ ip: String, _ port: String, flags: String = "slave", link: String = "ok") -> RedisValue {
        .array(["name", "\(ip):\(port)", "ip", ip, "port", port, "runid", "abc", "flags", flags,
                "link-pending-commands", "0", "master-link-status", link, "slave-repl-offset", "12"].map { .string($0) })
    }

    @Test func replicasAreHealthyOnlyWhenUpAndLinked() {
        let reply = RedisValue.array([
            replica("10.0.0.1", "6379"),
            replica("10.0.0.2", "6379", flags: "s_down,slave"),
            replica("10.0.0.3", "6379", flags: "slave,o_down"),
            replica("10.0.0.4", "6379", flags: "slave,disconnected"),
            replica("10.0.0.5", "6379", link: "err"),
            replica("10.0.0.6", "bad"),
            .string("not an entry"),
            .array([.string("ip")]),  // odd number of fields
            replica("::1", "6381", flags: "slave,promoted"),
        ])
        let all = RedisSentinelReplies.replicas(reply)
        #expect(all.map(\.endpoint) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"].map { .tcp(host: $0, port: 6379) }
                + [.tcp(host: "::1", port: 6381)])
        #expect(RedisSentinelReplies.healthyReplicas(reply) == [.tcp(host: "10.0.0.1", port: 6379), .tcp(host: "::1", port: 6381)])
        #expect(RedisSentinelReplies.healthyReplicas(.array([])) == [])
        #expect(RedisSentinelReplies.healthyReplicas(.error("ERR Unknown sentinel subcommand 'REPLICAS'")) == [])
    }

    @Test func roles() {
        #expect(RedisSentinelReplies.role(.array([.string("master"), .integer(3129659), .array([])])) == "master")
        #expect(RedisSentinelReplies.role(.array([.string("slave"), .string("127.0.0.1"), .integer(9753)])) == "slave")
        #expect(RedisSentinelReplies.role(.array([.string("sentinel"), .array([.string("mymaster")])])) == "sentinel")
        #expect(RedisSentinelReplies.role(.error("NOPERM this user has no permissions to run the 'role' command")) == nil)
        #expect(RedisSentinelReplies.role(.array([])) == nil)
        #expect(RedisSentinelReplies.infoRole("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\n") == "slave")
        #expect(RedisSentinelReplies.infoRole("# Server\r\nredis_version:7.0.15\r\n") == nil)
    }

    @Test func staleServersAreRecognised() {
        let fine: [RedisValue] = [.integer(3), .string("job"), .error("WRONGTYPE Operation against a key"), .null,
                                  .string("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n")]
        #expect(!RedisSentinelReplies.stale(fine, role: .master))
        #expect(RedisSentinelReplies.stale(fine, role: .replica))
        for error in ["READONLY You can't write against a read only replica.",
                      "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                      "LOADING Redis is loading the dataset in memory"] {
            #expect(RedisSentinelReplies.stale([.integer(1), .error(error)], role: .master), "\(error)")
        }
        // Only INFO's text (it starts with a section header) is looked into, not job data.
        #expect(!RedisSentinelReplies.stale([.string("role:slave\r\n")], role: .master))
        #expect(RedisSentinelReplies.stale([.string("# Replication\r\nrole:slave\r\n")], role: .master))
        #expect(!RedisSentinelReplies.stale([.string("# Replication\r\nrole:slave\r\n")], role: .replica))
    }

    @Test func theServerChosenAndWhetherItStillIs() {
        let (m, r1, r2) = (RedisEndpoint.tcp(host: "m", port: 1), RedisEndpoint.tcp(host: "r1", port: 1),
                           RedisEndpoint.tcp(host: "r2", port: 1))
        let view = RedisSentinel.View(master: m, healthyReplicas: [r1, r2])
        #expect(view.choose(replica: false, pick: 1) == (m, .master))
        #expect(view.choose(replica: true, pick: 0) == (r1, .replica))
        #expect(view.choose(replica: true, pick: 3) == (r2, .replica))
        #expect(RedisSentinel.View(master: m).choose(replica: true, pick: 0) == (m, .master))
        // Master mode: only the master is confirmed.
        #expect(view.confirms(m, as: .master, replica: false))
        #expect(!RedisSentinel.View(master: r1).confirms(m, as: .master, replica: false))
        // Replica mode: a replica while healthy; the master while no replica is.
        #expect(view.confirms(r2, as: .replica, replica: true))
        #expect(!RedisSentinel.View(master: m, healthyReplicas: [r2]).confirms(r1, as: .replica, replica: true))
        #expect(!RedisSentinel.View(master: r1, healthyReplicas: [m]).confirms(r1, as: .replica, replica: true))
        #expect(RedisSentinel.View(master: m).confirms(m, as: .master, replica: true))
        #expect(!view.confirms(m, as: .master, replica: true))
    }

    @Test func sentinelErrorsNameTheFixAndNeverAPassword() {
        let redactor = Redactor(["s3cret"])
        #expect(RedisSentinel.describeSentinelError("NOAUTH Authentication required.", redactor: redactor)
                    .contains("sentinel.password"))
        #expect(RedisSentinel.describeSentinelError("WRONGPASS invalid username-password pair", redactor: redactor)
                    .contains("WRONGPASS"))
        let unknown = RedisSentinel.describeSentinelError(
            "ERR unknown command 'SENTINEL', with args beginning with: 'get-master-addr-by-name' 's3cret'", redactor: redactor)
        #expect(unknown.contains("not a Redis Sentinel") && !unknown.contains("s3cret") && !unknown.contains("get-master"))
        #expect(RedisSentinel.describeSentinelError("ERR s3cret", redactor: redactor) == "ERR ***")
    }
}
