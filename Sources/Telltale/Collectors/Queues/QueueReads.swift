/// One queue's answers from the counts round trip.
struct QueueCounts {
    static let commandCount = 15
    /// How many active jobs are checked for a lock; more would make the follow-up unbounded.
    static let activeSample = 1000

    let queue: QueueID
    /// In `QueueMetrics.states` order.
    let states: [Int64]
    let isPaused: Bool
    let overdueDelayed: Int64
    /// The job at the head of the line (next to be processed), if any waits.
    let headJobID: String?
    let activeJobIDs: [String]
    let hasEventStream: Bool

    static func commands(_ queue: QueueID, nowMs: Double) -> [[String]] {
        // BullMQ and Bull encode a delayed job's score as due-time-in-ms × 4096 + a counter.
        let overdueBound = "(" + String(Int64((nowMs.rounded(.down) + 1) * 4096))
        return [
            // The last two entries: the head of the line, and the one behind a legacy marker.
            ["LLEN", queue.key("wait")], ["LRANGE", queue.key("wait"), "-2", "-1"],
            ["LLEN", queue.key("paused")], ["LRANGE", queue.key("paused"), "-2", "-1"],
            ["LLEN", queue.key("active")], ["ZCARD", queue.key("prioritized")], ["ZCARD", queue.key("delayed")],
            ["ZCARD", queue.key("waiting-children")], ["ZCARD", queue.key("completed")], ["ZCARD", queue.key("failed")],
            ["HGET", queue.key("meta"), "paused"], ["EXISTS", queue.key("meta-paused")],
            ["ZCOUNT", queue.key("delayed"), "-inf", overdueBound],
            ["LRANGE", queue.key("active"), "0", String(activeSample - 1)], ["TYPE", queue.key("events")],
        ]
    }

    init(queue: QueueID, replies: ArraySlice<RedisValue>) {
        let reply = Array(replies)
        func number(_ index: Int) -> Int64 { index < reply.count ? reply[index].integer ?? 0 : 0 }
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
        hasEventStream = text(14) == "stream"
    }

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

/// The second round trip: what the counts pointed at.
struct FollowUp {
    private(set) var commands: [[String]] = []
    private var headIndex: [QueueID: Int] = [:]
    private var lockRanges: [QueueID: Range<Int>] = [:]
    private var eventIndex: [(QueueID, Int)] = []

    init(counts: [QueueCounts], cursors: [QueueID: String]) {
        for count in counts {
            let queue = count.queue
            if let head = count.headJobID {
                headIndex[queue] = commands.count
                commands.append(["HGET", queue.key(head), "timestamp"])
            }
            let start = commands.count
            commands += count.activeJobIDs.map { ["EXISTS", queue.key("\($0):lock")] }
            lockRanges[queue] = start..<commands.count
            if count.hasEventStream {
                eventIndex.append((queue, commands.count))
                if let cursor = cursors[queue] {
                    commands.append(["XRANGE", queue.key("events"), "(" + cursor, "+", "COUNT", String(QueueCollector.eventsPerRead)])
                } else {
                    commands.append(["XREVRANGE", queue.key("events"), "+", "-", "COUNT", "1"])
                }
            }
        }
    }

    func headTimestamp(_ queue: QueueID, _ replies: [RedisValue]) -> Double? {
        headIndex[queue].flatMap { $0 < replies.count ? replies[$0].string.flatMap(Double.init) : nil }
    }

    func unlockedActive(_ queue: QueueID, _ replies: [RedisValue]) -> Int {
        guard let range = lockRanges[queue], range.upperBound <= replies.count else { return 0 }
        return replies[range].filter { $0.integer == 0 }.count
    }

    func eventReads(_ replies: [RedisValue]) -> [(QueueID, entries: [StreamEntry])] {
        eventIndex.compactMap { queue, index in
            index < replies.count ? (queue, replies[index].array.compactMap(StreamEntry.init)) : nil
        }
    }
}
