import Glibc
import NIOCore
import Synchronization
import TelltaleMetrics
import Testing
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

// Scripted stand-ins for the clients' query surfaces, so that a collector's `collect()` runs
// in-process, and helpers to read what it returned.

/// A PostgreSQL target answering from `script`: each statement's rows, or its error. An error
/// other than `.query` is a server not answering: it fails the whole round trip, as the real
/// client's does.
final class ScriptedPostgres: PostgresQuerying {
    var connectionSettings: CollectorSettings { CollectorSettings(target) }
    let target = "main"
    private let script: @Sendable (_ sql: String, _ parameters: [String?]) throws(PostgresError) -> PGResult
    private let log = Mutex<[[String?]]>([])

    init(_ script: @escaping @Sendable (_ sql: String, _ parameters: [String?]) throws(PostgresError) -> PGResult) {
        self.script = script
    }

    /// The parameters of every `query` so far, in order.
    var parameters: [[String?]] { log.withLock { $0 } }

    func query(_ sql: String, parameters: [String?], timeouts: QueryTimeouts) async throws(PostgresError) -> PGResult {
        log.withLock { $0.append(parameters) }
        return try script(sql, parameters)
    }

    func pipeline(_ statements: [String], timeouts: QueryTimeouts) async throws(PostgresError) -> [Result<PGResult, PostgresError>] {
        var results: [Result<PGResult, PostgresError>] = []
        for sql in statements {
            let result = Result { () throws(PostgresError) in try script(sql, []) }
            if case .failure(let error) = result, error.kind != .query { throw error }
            results.append(result)
        }
        return results
    }

    static let timeouts = QueryTimeouts(statement: .seconds(1), lock: .seconds(1))
}

extension PostgresError {
    /// What the server answers a role that may not read a view.
    static func permissionDenied(_ view: String) -> PostgresError {
        PostgresError(kind: .query, message: "permission denied for view \(view)", sqlState: "42501")
    }

    static let unreachable = PostgresError(kind: .connect, message: "connection refused", sqlState: nil)
}

/// A Redis answering pipelines in-process: `script` first (raw RESP, as `FakeRedis` takes
/// it), then `FakeRedis`'s defaults, where every queue holds two waiting jobs (head `2`) and
/// one completed job.
final class ScriptedRedis: RedisQuerying {
    private let script: @Sendable ([String]) -> String?
    private let trips = Atomic<UInt64>(0)
    private let scanKeys = Shared<[String]>([])
    /// While true, every pipeline fails as a whole, as when Redis cannot be reached.
    let isDown = Shared(false)

    init(_ script: @escaping @Sendable ([String]) -> String? = { _ in nil }) {
        self.script = script
    }

    var roundTripCount: UInt64 { trips.load(ordering: .relaxed) }

    func pipeline(_ commands: RedisCommands) async throws(RedisError) -> [RedisValue] {
        // As the real client: an empty pipeline makes no round trip.
        guard !commands.isEmpty else { return [] }
        if isDown.value { throw RedisError(kind: .connection, message: "Connection reset by peer") }
        trips.add(1, ordering: .relaxed)
        var bytes = Array(commands.bytes.readableBytesView)[...]
        var replies: [RedisValue] = []
        while let (command, size) = RESP.decode(bytes) {
            bytes = bytes.dropFirst(size)
            let arguments = command.array.compactMap(\.string)
            let reply = script(arguments) ?? FakeRedis.answer(arguments, scanKeys)
            replies.append(RESP.decode(Array(reply.utf8)[...])?.value ?? .error("ERR unreadable scripted reply"))
        }
        return replies
    }

    func servers() async throws(RedisError) -> [String] { ["fake:6379"] }

    func pipeline(_ commands: RedisCommands, on server: String) async throws(RedisError) -> [RedisValue] {
        try await pipeline(commands)
    }
}

extension QueueCollectorConfig {
    /// Listed queues of prefix `bull`, without discovery.
    static func listing(_ queues: [String]) -> QueueCollectorConfig {
        var config = QueueCollectorConfig()
        config.queues = queues.map { QueueID(prefix: "bull", name: $0, source: "default") }
        config.discoveryEnabled = false
        return config
    }
}

/// RESP2, Redis' wire format, which commands and replies share.
enum RESP {
    static func encode(_ value: RedisValue) -> String {
        switch value {
        case .string(let text): "$\(text.utf8.count)\r\n\(text)\r\n"
        case .status(let text): "+\(text)\r\n"
        case .integer(let number): ":\(number)\r\n"
        case .array(let items): "*\(items.count)\r\n" + items.map(encode).joined()
        case .null: "$-1\r\n"
        case .error(let message): "-\(message)\r\n"
        }
    }

    /// The value at the front of `bytes` and its size in bytes; nil while incomplete.
    static func decode(_ bytes: ArraySlice<UInt8>) -> (value: RedisValue, size: Int)? {
        guard let type = bytes.first, let end = bytes.firstIndex(of: UInt8(ascii: "\r")), end + 1 < bytes.endIndex else {
            return nil
        }
        let line = String(decoding: bytes[(bytes.startIndex + 1)..<end], as: UTF8.self)
        let body = end + 2
        switch type {
        case UInt8(ascii: "+"): return (.status(line), body - bytes.startIndex)
        case UInt8(ascii: "-"): return (.error(line), body - bytes.startIndex)
        case UInt8(ascii: ":"): return Int64(line).map { (.integer($0), body - bytes.startIndex) }
        case UInt8(ascii: "$"):
            guard let length = Int(line) else { return nil }
            if length < 0 { return (.null, body - bytes.startIndex) }
            guard body + length + 2 <= bytes.endIndex else { return nil }
            return (.string(String(decoding: bytes[body..<(body + length)], as: UTF8.self)), body + length + 2 - bytes.startIndex)
        case UInt8(ascii: "*"):
            guard let count = Int(line) else { return nil }
            var items: [RedisValue] = []
            var next = body
            for _ in 0..<max(0, count) {
                guard let (item, size) = decode(bytes[next...]) else { return nil }
                items.append(item)
                next += size
            }
            return (count < 0 ? .null : .array(items), next - bytes.startIndex)
        default:
            return nil
        }
    }
}

/// An HTTP server answering from a script: each request gets the next outcome, and the last
/// one is repeated once the others are used up.
final class ScriptedHTTP: HTTPSending {
    private let outcomes: Mutex<[Result<OutboundResponse, OutboundHTTPError>]>
    private let sent = Mutex(0)

    init(_ outcomes: [Result<OutboundResponse, OutboundHTTPError>]) {
        self.outcomes = Mutex(outcomes)
    }

    /// How many requests were sent.
    var requests: Int { sent.withLock { $0 } }

    func send(_ request: OutboundRequest) async throws(OutboundHTTPError) -> OutboundResponse {
        sent.withLock { $0 += 1 }
        let outcome = outcomes.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }
        return try outcome.get()
    }
}

extension OutboundResponse {
    static func with(_ status: Int, headers: [String: String] = [:], body: String = "") -> OutboundResponse {
        OutboundResponse(status: status, headers: headers, body: Array(body.utf8))
    }
}

extension CollectionResult {
    func family(_ name: String) -> MetricFamily? { families.first { $0.name == name } }

    /// The series of `family` that has all of `labels` (and maybe more).
    func series(_ family: String, _ labels: Labels = .none) -> Series? {
        self.family(family)?.series.first { $0.labels.merging(labels) == $0.labels }
    }

    /// The value of that series, when it is a number.
    func value(_ family: String, _ labels: Labels = .none) -> Double? {
        if case .number(let value) = series(family, labels)?.value { return value }
        return nil
    }

    /// The value of that series, when it is a histogram.
    func histogram(_ family: String, _ labels: Labels = .none) -> HistogramValue? {
        if case .histogram(let value) = series(family, labels)?.value { return value }
        return nil
    }
}

/// Whether `value` is `expected` but for rounding.
func isClose(_ value: Double?, _ expected: Double) -> Bool {
    value.map { abs($0 - expected) <= 1e-9 * max(1, abs(expected)) } ?? false
}

/// A fresh directory under /tmp for one test's files.
func temporaryDirectory() -> String {
    var template = Array("/tmp/telltale-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

/// Writes `files` (path relative to `root` → content) into `root`, making directories on the way.
func writeTree(_ root: String, _ files: [String: String]) {
    for (relative, content) in files {
        var directory = root
        for part in relative.split(separator: "/").dropLast() {
            directory += "/\(part)"
            mkdir(directory, 0o755)
        }
        // fwrite, not fputs: a command line's arguments end in NUL bytes.
        let file = fopen("\(root)/\(relative)", "w")
        _ = Array(content.utf8).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
}
