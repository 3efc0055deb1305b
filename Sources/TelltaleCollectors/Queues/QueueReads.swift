import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// One queue's answers from the counts round trip.
struct QueueCounts {
    static let commandCount = 16
    /// How many active jobs are checked for a lock; more would make the follow-up unbounded.
    static let activeSample = 1000
    static let eventsPerRead = 10_000

    let queue: QueueID
    /// In `QueueMetrics.states` order.
    let states: [Int64]
    let isPaused: Bool
    let overdueDelayed: Int64
    /// The job at the head of the line (next to be processed), if any waits.
    let headJobID: String?
    let activeJobIDs: [String]
    /// The events stream's entries after the cursor, or its last entry when there was no
    /// cursor yet; none where the queue has no stream (Bull).
    let events: [StreamEntry]
    /// The first error reply to any of the queue's commands (NOPERM, WRONGTYPE, MOVED…):
    /// then none of its numbers can be trusted.
    let error: String?
    /// Whether the queue's `meta` or `id` key exists, as discovery requires: an obliterated
    /// queue has neither.
    let exists: Bool

    private static let activeEnd = String(activeSample - 1)
    private static let eventsCount = String(eventsPerRead)

    /// The ZCOUNT bound of delayed jobs already due, the same for every queue of a run: BullMQ
    /// and Bull encode a delayed job's score as due-time-in-ms × 4096 + a counter.
    static func overdueBound(nowMs: Double) -> String {
        "(" + String(Int64((nowMs.rounded(.down) + 1) * 4096))
    }

    /// Appends the queue's `commandCount` commands; `eventsCursor` is the last events-stream
    /// entry read, nil before the first read.
    static func appendCommands(_ queue: QueueID, overdueBound: String, eventsCursor: String?, to commands: inout RedisCommands) {
        let key = queue.keyPrefix
        // The last two entries: the head of the line, and the one behind a legacy marker.
        commands.append("LLEN", key: key, "wait")
        commands.append("LRANGE", key: key, "wait", "-2", "-1")
        commands.append("LLEN", key: key, "paused")
        commands.append("LRANGE", key: key, "paused", "-2", "-1")
        commands.append("LLEN", key: key, "active")
        commands.append("ZCARD", key: key, "prioritized")
        commands.append("ZCARD", key: key, "delayed")
        commands.append("ZCARD", key: key, "waiting-children")
        commands.append("ZCARD", key: key, "completed")
        commands.append("ZCARD", key: key, "failed")
        commands.append("HGET", key: key, "meta", "paused")
        commands.append("EXISTS", key: key, "meta-paused")
        commands.append("ZCOUNT", key: key, "delayed", "-inf", overdueBound)
        commands.append("LRANGE", key: key, "active", "0", activeEnd)
        // No TYPE check first: a missing stream reads as empty; a key of another type is an
        // error reply (WRONGTYPE), the queue's error as any other.
        if let eventsCursor {
            commands.append("XRANGE", key: key, "events", "(" + eventsCursor, "+", "COUNT", eventsCount)
        } else {
            commands.append("XREVRANGE", key: key, "events", "+", "-", "COUNT", "1")
        }
        // Discovery found the queue by one of these: with neither (and no job) it was obliterated.
        commands.append("EXISTS", keys: key, ["meta", "id"], keySuffix: "")
    }

    init(queue: QueueID, replies: ArraySlice<RedisValue>) {
        let reply = Array(replies)
        // Counts: a negative number from a hostile or broken server is clamped, not trusted
        // (Int64.min would overflow the arithmetic below).
        func number(_ index: Int) -> Int64 { max(0, index < reply.count ? reply[index].integer ?? 0 : 0) }
        func text(_ index: Int) -> String? { index < reply.count ? reply[index].string : nil }
        func lastTwo(_ index: Int) -> (tail: String?, beforeTail: String?) {
            let entries = index < reply.count ? reply[index].array.compactMap(\.string) : []
            return (entries.last, entries.count == 2 ? entries[0] : nil)
        }
        let waitEnd = lastTwo(1)
        let pausedEnd = lastTwo(3)
        let (waiting, waitingHead) = Self.list(length: number(0), tail: waitEnd.tail, beforeTail: waitEnd.beforeTail)
        let (paused, pausedHead) = Self.list(length: number(2), tail: pausedEnd.tail, beforeTail: pausedEnd.beforeTail)
        self.queue = queue
        states = [waiting, paused, number(4), number(5), number(6), number(7), number(8), number(9)]
        // BullMQ keeps a `paused` field in meta; Bull v3 a `meta-paused` key.
        let pausedFlag = text(10)
        isPaused = (pausedFlag != nil && pausedFlag != "0") || number(11) == 1
        overdueDelayed = number(12)
        headJobID = waitingHead ?? pausedHead
        activeJobIDs = (reply.count > 13 ? reply[13].array : []).compactMap(\.string).filter { !$0.hasPrefix("0:") }
        events = (reply.count > 14 ? reply[14].array : []).compactMap(StreamEntry.init)
        error = reply.lazy.compactMap { if case .error(let message) = $0 { message } else { nil } }.first
            ?? (reply.count < Self.commandCount ? "missing replies" : nil)
        exists = number(15) > 0
    }

    /// Whether any state counts a job.
    var hasJobs: Bool { states.contains { $0 != 0 } }

    /// BullMQ 4 left `0:<timestamp>` marker entries at the tail of wait/paused; getJobCounts
    /// does not count them, and they are not jobs.
    private static func list(length: Int64, tail: String?, beforeTail: String?) -> (count: Int64, head: String?) {
        guard let tail else { return (0, nil) }
        if tail.hasPrefix("0:") { return (max(0, length - 1), beforeTail) }
        return (length, tail)
    }
}

/// An events-stream entry: `event`, `jobId` and the rest of its fields.
struct StreamEntry {
    let id: String
    let ms: Double
    let event: String
    let jobId: String
    let fields: [String: String]

    init?(_ value: RedisValue) {
        let parts = value.array
        guard parts.count == 2, let id = parts[0].string,
              let ms = id.split(separator: "-").first.flatMap({ Double($0) }) else { return nil }
        var fields: [String: String] = [:]
        let flat = parts[1].array.compactMap(\.string)
        for index in stride(from: 0, to: flat.count - 1, by: 2) { fields[flat[index]] = flat[index + 1] }
        self.id = id
        self.ms = ms
        self.event = fields["event"] ?? ""
        self.jobId = fields["jobId"] ?? ""
        self.fields = fields
    }
}

/// A job whose completed or failed event was read this run.
struct FinishedJob {
    let queue: QueueID
    /// The queue's position among the run's cleanly read queues.
    let position: Int
    let id: String
    let failed: Bool
    let eventMs: Double
    let activeMs: Double?
    let added: (ms: Double, name: String)?
    /// `attemptsMade` of its `retries-exhausted` event, for a failed job whose hash is gone.
    var attemptsFromEvent: Double?
}

/// The second round trip: what the counts pointed at (the head job, active jobs' locks) and
/// the hashes of jobs that finished since the last run.
struct FollowUp {
    private(set) var commands = RedisCommands()
    /// By position in the counts: where the head job's timestamp is.
    private var headIndex: [Int?] = []
    /// By position in the counts: where the number of existing locks is, and of how many.
    private var lockChecks: [(index: Int, checked: Int)?] = []
    private var finishedRange = 0..<0
    /// By position in the counts: the HMGETs of the queue's finished jobs (contiguous, as
    /// finished jobs come queue by queue).
    private var finishedByQueue: [Range<Int>] = []
    private var unnamedRange = 0..<0

    init(counts: [QueueCounts], finished: [FinishedJob], unnamed: [(queue: QueueID, id: String)]) {
        headIndex.reserveCapacity(counts.count)
        lockChecks.reserveCapacity(counts.count)
        for count in counts {
            let key = count.queue.keyPrefix
            headIndex.append(count.headJobID.map { head in
                commands.append("HGET", key: key, head, "timestamp")
                return commands.count - 1
            })
            // One EXISTS for all of a queue's locks: it answers how many of them exist.
            lockChecks.append(count.activeJobIDs.isEmpty ? nil : {
                commands.append("EXISTS", keys: key, count.activeJobIDs, keySuffix: ":lock")
                return (commands.count - 1, count.activeJobIDs.count)
            }())
        }
        let start = commands.count
        finishedByQueue = Array(repeating: start..<start, count: counts.count)
        for job in finished {
            let index = commands.count
            commands.append("HMGET", key: job.queue.keyPrefix, job.id, "processedOn", "finishedOn", "timestamp", "atm", "attemptsMade", "name")
            let range = finishedByQueue[job.position]
            finishedByQueue[job.position] = range.isEmpty ? index..<index + 1 : range.lowerBound..<index + 1
        }
        finishedRange = start..<commands.count
        for job in unnamed { commands.append("HMGET", key: job.queue.keyPrefix, job.id, "name", "timestamp") }
        unnamedRange = finishedRange.upperBound..<commands.count
    }

    /// The first error reply among each queue's follow-up commands (its head job, its locks,
    /// its finished jobs' hashes), by position in the counts; nil for a queue read cleanly.
    func errors(_ replies: [RedisValue]) -> [String?] {
        func error(_ index: Int?) -> String? {
            guard let index else { return nil }
            guard index < replies.count else { return "missing replies" }
            if case .error(let message) = replies[index] { return message }
            return nil
        }
        return headIndex.indices.map { position in
            error(headIndex[position]) ?? error(lockChecks[position]?.index)
                ?? finishedByQueue[position].lazy.compactMap { error($0) }.first
        }
    }

    func headTimestamp(at position: Int, _ replies: [RedisValue]) -> Double? {
        headIndex[position].flatMap { $0 < replies.count ? replies[$0].string.flatMap(Double.init).flatMap { $0.isFinite ? $0 : nil } : nil }
    }

    func unlockedActive(at position: Int, _ replies: [RedisValue]) -> Int {
        guard let check = lockChecks[position], check.index < replies.count,
              let locked = replies[check.index].integer else { return 0 }
        return check.checked - min(max(0, Int(locked)), check.checked)
    }

    /// One HMGET reply per finished job, in their order.
    func finishedJobReplies(_ replies: [RedisValue]) -> ArraySlice<RedisValue> {
        finishedRange.upperBound <= replies.count ? replies[finishedRange] : []
    }

    /// One HMGET (name, timestamp) reply per unnamed job, in their order. An error reply
    /// there only leaves the name unknown: it is not the queue's error.
    func unnamedJobReplies(_ replies: [RedisValue]) -> ArraySlice<RedisValue> {
        unnamedRange.upperBound <= replies.count ? replies[unnamedRange] : []
    }
}
