import Foundation
import Glibc
import Synchronization
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

/// Regressions of the hardening issue for job queues: a Redis error reply is that queue's
/// error (never a healthy zero), login problems say what is wrong, no error quotes a
/// command's arguments, and a discovered queue whose keys are gone disappears.
@Suite struct QueueErrorTests {
    // MARK: error texts

    @Test func quotedArgumentsAreCutInEveryForm() {
        let forms = [
            "ERR unknown command 'AUTH', with args beginning with: 'hunter2' ",
            "ERR unknown command `AUTH`, with args beginning with: `hunter2`, ",  // Redis 6
            "ERR unknown command 'AUTH' With Args Beginning With: 'hunter2'",
        ]
        for form in forms {
            let text = RedisReplyError.sanitized(form)
            #expect(!text.contains("hunter2"), "\(form)")
            #expect(text.hasPrefix("ERR unknown command") && !text.hasSuffix(","), "\(text)")
            #expect(!RedisReplyError.describe(form).contains("hunter2"))
        }
        #expect(RedisReplyError.sanitized("NOPERM No permissions to access a key") == "NOPERM No permissions to access a key")
    }

    @Test func thePasswordIsRedactedBeforeClipping() {
        let redactor = Redactor(["sec-ret-123"])
        // A server that quotes the password some other way still never shows it.
        #expect(RedisReplyError.describe("ERR odd 'sec-ret-123'", redacting: redactor) == "ERR odd '***'")
        // Straddling the clip: redacting after clipping would leave most of it.
        let long = "ERR " + String(repeating: "x", count: RedisReplyError.maxLength - 8) + "sec-ret-123"
        let text = RedisReplyError.describe(long, redacting: redactor)
        #expect(!text.contains("sec-ret") && text.count <= RedisReplyError.maxLength)
    }

    @Test func codesAndClearMessages() {
        #expect(RedisReplyError.code("MOVED 3999 127.0.0.1:6381") == "MOVED")
        #expect(RedisReplyError.code("CLUSTERDOWN Hash slot not served") == "CLUSTERDOWN")
        #expect(RedisReplyError.describe("NOAUTH Authentication required.").contains("NOAUTH"))
        #expect(RedisReplyError.describe("NOAUTH Authentication required.").contains("queues.redis.password"))
        #expect(RedisReplyError.describe("WRONGPASS invalid username-password pair").contains("WRONGPASS"))
        #expect(RedisReplyError.describe("ERR unknown command 'SCAN', with args beginning with: '0' ").contains("Sentinel"))
        let renamedAuth = RedisReplyError.describe("ERR unknown command 'AUTH', with args beginning with: 'pw' ")
        #expect(renamedAuth.contains("AUTH") && !renamedAuth.contains("Sentinel") && !renamedAuth.contains("pw'"))
        #expect(RedisReplyError.unknownCommand("ERR unknown command `LLEN`, with args") == "llen")
        #expect(RedisReplyError.unknownCommand("WRONGTYPE Operation against a key") == nil)
    }

    @Test func problemsNameTheQueueAndTheCodeOncePerCode() {
        var problems = QueueProblems(redactor: Redactor(["pw-1"]))
        problems.add(QueueID(prefix: "bull", name: "emails", source: "default"), "NOPERM No permissions to access a key")
        problems.add(QueueID(prefix: "bull", name: "sms", source: "default"), "NOPERM No permissions to access a key")
        problems.add(QueueID(prefix: "bull", name: "x", source: "default"), "WRONGTYPE Operation against a key holding the wrong kind of value")
        problems.add(QueueID(prefix: "bull", name: "y", source: "default"), "ERR strange pw-1")
        let list = problems.list
        #expect(list.map(\.reason) == ["redis_error", "redis_error", "redis_error"])
        #expect(list[0].message.hasPrefix("queue bull:emails: NOPERM") && list[0].message.contains("1 more"))
        #expect(list[1].message.hasPrefix("queue bull:x: WRONGTYPE"))
        #expect(list[2].message == "queue bull:y: ERR strange ***")
    }

    // MARK: replies of one queue

    @Test func aFollowUpErrorIsTheQueuesOfThatPosition() {
        let queues = ["a", "b", "c"].map { QueueID(prefix: "bull", name: $0, source: "default") }
        let counts = queues.map { queue in
            QueueCounts(queue: queue, replies: ArraySlice(FakeRedis.countsReplies(wait: 1, head: "1")))
        }
        let finished = [FinishedJob(queue: queues[2], position: 2, id: "9", failed: false, eventMs: 1, activeMs: nil, added: nil)]
        let followUp = FollowUp(counts: counts, finished: finished, unnamed: [])
        #expect(followUp.commands.count == 4)  // three heads, one finished job
        let clean: [RedisValue] = [.string("1"), .string("2"), .string("3"), .array([])]
        #expect(followUp.errors(clean).allSatisfy { $0 == nil })
        var headError = clean
        headError[1] = .error("WRONGTYPE Operation against a key holding the wrong kind of value")
        #expect(followUp.errors(headError).map { $0 != nil } == [false, true, false])
        var hashError = clean
        hashError[3] = .error("NOPERM No permissions to access a key")
        #expect(followUp.errors(hashError).map { $0 != nil } == [false, false, true])
    }

    @Test func aQueueWithoutKeysOrJobsHasNothingLeft() {
        var none = FakeRedis.countsReplies(wait: 0, head: nil)
        none[8] = .integer(0)  // no completed job either
        none[15] = .integer(0)
        let gone = QueueCounts(queue: QueueID(prefix: "bull", name: "q", source: "default"), replies: ArraySlice(none))
        #expect(!gone.exists && !gone.hasJobs && gone.error == nil)
        // Jobs left without meta and id (keys deleted by hand): still a queue.
        var jobsLeft = FakeRedis.countsReplies(wait: 3, head: "3")
        jobsLeft[15] = .integer(0)
        #expect(QueueCounts(queue: QueueID(prefix: "bull", name: "q", source: "default"), replies: ArraySlice(jobsLeft)).hasJobs)
    }

    // MARK: the collector against a scripted server

    /// NOPERM on one queue's keys: that queue has no series but `telltale_queue_up` 0, the
    /// run reports `redis_error` naming it; the other queue reads as usual.
    @Test func anErrorReplyMakesOnlyThatQueueDown() async throws {
        let server = try FakeRedis { command in
            command.dropFirst().contains { $0.hasPrefix("bull:denied:") } ? "-NOPERM No permissions to access a key\r\n" : nil
        }
        defer { server.stop() }
        let collector = QueueCollector(config: server.config(queues: ["fine", "denied"]))
        let result = try await collector.collect()
        #expect(result.problems.count == 1)
        #expect(result.problems.first?.reason == "redis_error")
        #expect(result.problems.first?.message.hasPrefix("queue bull:denied: NOPERM") == true)
        #expect(Self.value(result, "telltale_queue_up", "fine") == 1)
        #expect(Self.value(result, "telltale_queue_up", "denied") == 0)
        #expect(Self.value(result, "telltale_queue_jobs", "fine", state: "waiting") == 2)
        for family in result.families where family.name.hasPrefix("telltale_queue_") && family.name != "telltale_queue_up" {
            #expect(!family.series.contains { $0.labels["queue"] == "denied" }, "\(family.name)")
        }
        #expect(result.families.first { $0.name == "telltale_queue_jobs_completed" }?.series.map { $0.labels["queue"] } == ["fine"])
    }

    /// An error reply to the follow-up (the head job's hash of the wrong type) is the queue's too.
    @Test func aFollowUpErrorMakesTheQueueDown() async throws {
        let server = try FakeRedis { command in
            command == ["HGET", "bull:odd:2", "timestamp"] ? "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n" : nil
        }
        defer { server.stop() }
        let collector = QueueCollector(config: server.config(queues: ["fine", "odd"]))
        let result = try await collector.collect()
        #expect(result.problems.map(\.message) == ["queue bull:odd: WRONGTYPE Operation against a key holding the wrong kind of value"])
        #expect(Self.value(result, "telltale_queue_up", "odd") == 0)
        #expect(Self.value(result, "telltale_queue_up", "fine") == 1)
        for family in result.families where family.name.hasPrefix("telltale_queue_") && family.name != "telltale_queue_up" {
            #expect(!family.series.contains { $0.labels["queue"] == "odd" }, "\(family.name)")
        }
        #expect(Self.value(result, "telltale_queue_oldest_waiting_seconds", "fine") != nil)
    }

    /// A discovered queue whose keys are all gone disappears at the next run; a listed one stays.
    @Test func anObliteratedDiscoveredQueueDisappears() async throws {
        let obliterated = Shared(false)
        let server = try FakeRedis { command in
            guard obliterated.value, command.dropFirst().contains(where: { $0.hasPrefix("bull:gone:") || $0.hasPrefix("bull:listed:") })
            else { return nil }
            return command[0] == "LRANGE" || command[0] == "XREVRANGE" || command[0] == "XRANGE" ? "*0\r\n"
                : command[0] == "HGET" ? "$-1\r\n" : ":0\r\n"
        }
        server.scanKeys = ["bull:gone:id", "bull:stays:meta"]
        defer { server.stop() }
        var config = server.config(queues: ["listed"])
        config.discoveryEnabled = true
        let collector = QueueCollector(config: config)
        let first = try await collector.collect()
        #expect(Set(first.families.first { $0.name == "telltale_queue_up" }?.series.compactMap { $0.labels["queue"] } ?? [])
                == ["gone", "listed", "stays"])
        obliterated.value = true
        let second = try await collector.collect()
        #expect(second.problems.isEmpty)
        #expect(second.families.first { $0.name == "telltale_queue_up" }?.series.compactMap { $0.labels["queue"] } == ["listed", "stays"])
        #expect(Self.value(second, "telltale_queue_jobs", "listed", state: "waiting") == 0)
        for family in second.families where family.name.hasPrefix("telltale_queue_") {
            #expect(!family.series.contains { $0.labels["queue"] == "gone" }, "\(family.name)")
        }
        // Redis unreachable now: the queues of the last run read 0, the gone one is not among them.
        #expect(collector.familiesWhenFailed().first?.series.compactMap { $0.labels["queue"] } == ["listed", "stays"])
    }

    /// Before any run, a failure publishes the listed queues at 0.
    @Test func listedQueuesReadDownBeforeAFirstRun() {
        var config = QueueCollectorConfig()
        config.queues = ["b", "a", "b"].map { QueueID(prefix: "bull", name: $0, source: "default") }
        let collector = QueueCollector(config: config)
        #expect(collector.familiesWhenFailed().first?.series.compactMap { $0.labels["queue"] } == ["a", "b"])
    }

    /// A renamed AUTH quotes the password in its error: it reaches no message.
    @Test func aRenamedAuthNeverShowsThePassword() async throws {
        let server = try FakeRedis { command in
            command.first == "AUTH" ? "-ERR unknown command 'AUTH', with args beginning with: '\(command.last ?? "")' \r\n" : nil
        }
        defer { server.stop() }
        var config = server.config(queues: ["fine"])
        config.redis.password = "renamed-auth-secret"
        let problem = try await Self.failure(QueueCollector(config: config))
        #expect(problem.reason == "connect")
        #expect(problem.message.contains("unknown command 'AUTH'"), "\(problem.message)")
        #expect(!problem.message.contains("renamed-auth-secret"), "\(problem.message)")
    }

    @Test func aMissingPasswordSaysNoauth() async throws {
        let server = try FakeRedis { command in
            command.first == "AUTH" ? "+OK\r\n" : "-NOAUTH Authentication required.\r\n"
        }
        defer { server.stop() }
        var config = server.config(queues: ["fine"])
        config.discoveryEnabled = true
        let problem = try await Self.failure(QueueCollector(config: config))
        #expect(problem.message.contains("NOAUTH") && problem.message.contains("queues.redis.password"), "\(problem.message)")
        #expect(!problem.message.contains("unexpected SCAN reply"))
    }

    @Test func aSentinelsPortIsNamed() async throws {
        let server = try FakeRedis { command in
            command.first == "INFO" ? FakeRedis.bulk("# Server\r\nredis_version:7.0.0\r\nredis_mode:sentinel\r\n")
                : "-ERR unknown command '\(command.first ?? "")', with args beginning with: \r\n"
        }
        defer { server.stop() }
        let problem = try await Self.failure(QueueCollector(config: server.config(queues: ["fine"])))
        #expect(problem.message.contains("Sentinel"), "\(problem.message)")
    }

    /// A SCAN refused (NOPERM) is a clear `redis_error`, not "unexpected SCAN reply".
    @Test func aRefusedScanIsARedisError() async throws {
        let server = try FakeRedis { command in
            command.first == "SCAN" ? "-NOPERM this user has no permissions to run the 'scan' command\r\n" : nil
        }
        defer { server.stop() }
        var config = server.config(queues: [])
        config.discoveryEnabled = true
        let problem = try await Self.failure(QueueCollector(config: config))
        #expect(problem.reason == "redis_error")
        #expect(problem.message.hasPrefix("SCAN for queues: NOPERM"), "\(problem.message)")
    }

    // MARK: helpers

    static func value(_ result: CollectionResult, _ family: String, _ queue: String, state: String? = nil) -> Double? {
        result.value(family, Labels([("queue", queue)] + (state.map { [("state", $0)] } ?? [])))
    }

    static func failure(_ collector: QueueCollector) async throws -> CollectionProblem {
        do {
            _ = try await collector.collect()
        } catch let problem as CollectionProblem {
            return problem
        }
        Issue.record("the run did not fail")
        return CollectionProblem(reason: "none", "")
    }
}

/// A scripted Redis on 127.0.0.1: every queue holds two waiting jobs (head `2`) and one
/// completed job, unless `script` answers a command otherwise (with raw RESP).
final class FakeRedis: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let keys = Shared<[String]>([])

    /// What SCAN answers.
    var scanKeys: [String] {
        get { keys.value }
        set { keys.value = newValue }
    }

    init(_ script: @escaping @Sendable ([String]) -> String?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let sharedKeys = keys
        Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                Thread { Self.serve(client, script, sharedKeys) }.start()
            }
        }.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    func config(queues: [String]) -> QueueCollectorConfig {
        var config = QueueCollectorConfig.listing(queues)
        config.redis.endpoint = .tcp(host: "127.0.0.1", port: port)
        return config
    }

    static func bulk(_ text: String) -> String { RESP.encode(.string(text)) }

    /// The 16 replies of a queue's counts round trip, as `QueueCounts` reads them.
    static func countsReplies(wait: Int64, head: String?) -> [RedisValue] {
        [.integer(wait), .array(head.map { [.string($0)] } ?? []), .integer(0), .array([]), .integer(0), .integer(0),
         .integer(0), .integer(0), .integer(1), .integer(0), .null, .integer(0), .integer(0), .array([]), .array([]), .integer(2)]
    }

    private static func serve(_ client: Int32, _ script: @Sendable ([String]) -> String?, _ keys: Shared<[String]>) {
        defer { close(client) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = read(client, &chunk, chunk.count)
            if got <= 0 { return }
            buffer += chunk[..<got]
            var output = ""
            while let (command, used) = parse(buffer) {
                buffer.removeFirst(used)
                output += script(command) ?? answer(command, keys)
            }
            let bytes = Array(output.utf8)
            var sent = 0
            while sent < bytes.count {
                let offset = sent
                let wrote = bytes.withUnsafeBytes { write(client, $0.baseAddress! + offset, bytes.count - offset) }
                if wrote <= 0 { return }
                sent += wrote
            }
        }
    }

    static func answer(_ command: [String], _ keys: Shared<[String]>) -> String {
        switch command.first?.uppercased() ?? "" {
        case "INFO": bulk("# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n")
        case "AUTH", "SELECT": "+OK\r\n"
        case "CLIENT": bulk("id=1 addr=127.0.0.1:1 name= cmd=client\n")
        case "SCAN": "*2\r\n$1\r\n0\r\n*\(keys.value.count)\r\n" + keys.value.map(bulk).joined()
        case "LLEN": command[1].hasSuffix(":wait") ? ":2\r\n" : ":0\r\n"
        case "LRANGE": command[1].hasSuffix(":wait") ? "*1\r\n" + bulk("2") : "*0\r\n"
        case "ZCARD": command[1].hasSuffix(":completed") ? ":1\r\n" : ":0\r\n"
        case "ZCOUNT": ":0\r\n"
        case "HGET": command[1].hasSuffix(":meta") ? "$-1\r\n" : bulk("1700000000000")
        case "EXISTS": command[1].hasSuffix(":meta-paused") ? ":0\r\n" : ":\(command.count - 1)\r\n"
        case "XREVRANGE", "XRANGE": "*0\r\n"
        case "HMGET": "*\(command.count - 2)\r\n" + String(repeating: "$-1\r\n", count: command.count - 2)
        default: "-ERR unknown command '\(command.first ?? "")'\r\n"
        }
    }

    /// One command (`*n` of bulk strings) from the front of `buffer`, and its size.
    private static func parse(_ buffer: [UInt8]) -> ([String], Int)? {
        RESP.decode(buffer[...]).map { ($0.value.array.compactMap(\.string), $0.size) }
    }
}

/// A value shared between a test and its server's threads.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}
