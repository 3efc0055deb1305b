import TelltaleMetrics
import Testing
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The queue collector against an in-process scripted Redis (`QueueErrorTests` runs it
/// against a scripted server through the real client).
@Suite struct QueueCollectorTests {
    /// Job 5 of `emails`, added, started and completed, as BullMQ writes it to the events stream.
    static let jobFiveEvents = RedisValue.array([
        event("1700000000000-0", ["event", "added", "jobId", "5", "name", "send"]),
        event("1700000001000-0", ["event", "active", "jobId", "5"]),
        event("1700000003000-0", ["event", "completed", "jobId", "5"]),
    ])

    static func event(_ id: String, _ fields: [String]) -> RedisValue {
        .array([.string(id), .array(fields.map(RedisValue.string))])
    }

    /// Counts from the first run; events, and the finished job's hash, from the second.
    @Test func countsThenFinishedJobsFromTheEventsStream() async throws {
        let redis = ScriptedRedis { command in
            switch (command.first, command.dropFirst().first) {
            case ("XRANGE", "bull:emails:events"): RESP.encode(Self.jobFiveEvents)
            case ("HMGET", "bull:emails:5"):
                RESP.encode(.array(["1700000001000", "1700000003000", "1700000000000", "2"].map(RedisValue.string)
                                   + [.null, .string("send")]))
            default: nil
            }
        }
        var config = QueueCollectorConfig.listing(["emails"])
        config.jobNames = true
        let collector = QueueCollector(config: config, client: redis)

        let first = try await collector.collect()
        #expect(first.problems.isEmpty)
        #expect(first.value("telltale_queue_up", ["queue": "emails", "prefix": "bull"]) == 1)
        #expect(first.value("telltale_queue_jobs", ["queue": "emails", "state": "waiting"]) == 2)
        #expect(first.value("telltale_queue_jobs", ["queue": "emails", "state": "completed"]) == 1)
        #expect(first.value("telltale_queue_jobs", ["queue": "emails", "state": "active"]) == 0)
        #expect(first.value("telltale_queue_paused", ["queue": "emails"]) == 0)
        #expect(first.value("telltale_queue_workers", ["queue": "emails"]) == 0)
        #expect(try #require(first.value("telltale_queue_oldest_waiting_seconds", ["queue": "emails"])) > 0)
        #expect(first.family("telltale_queue_jobs_completed")?.series.isEmpty == true)
        #expect(first.value("telltale_redis_round_trips") == 2)

        let second = try await collector.collect()
        #expect(second.problems.isEmpty)
        let named: Labels = ["queue": "emails", "job_name": "send"]
        #expect(second.value("telltale_queue_jobs_completed", named) == 1)
        #expect(second.histogram("telltale_queue_job_duration_seconds", named)?.sum == 2)
        #expect(second.histogram("telltale_queue_job_wait_seconds", ["queue": "emails"])?.sum == 1)
        #expect(second.histogram("telltale_queue_job_attempts", ["queue": "emails"])?.sum == 2)
        #expect(second.value("telltale_redis_round_trips") == 4)
    }

    /// Stalled events are counted; a failed job's attempts come from `retries-exhausted` once
    /// its hash is gone; a job active before Telltale saw its queue keeps its name.
    @Test func stalledExhaustedAndJobsQueuedBeforeTelltale() async throws {
        let events = RedisValue.array([
            Self.event("1700000005000-0", ["event", "stalled", "jobId", "9"]),
            Self.event("1700000006000-0", ["event", "failed", "jobId", "8", "failedReason", "boom", "prev", "active"]),
            Self.event("1700000006000-1", ["event", "retries-exhausted", "jobId", "8", "attemptsMade", "3"]),
            Self.event("1700000007000-0", ["event", "completed", "jobId", "7", "returnvalue", "null", "prev", "active"]),
        ])
        let redis = ScriptedRedis { command in
            switch (command.first, command.dropFirst().first) {
            case ("LRANGE", "bull:emails:active"): RESP.encode(.array([.string("7")]))
            case ("XRANGE", "bull:emails:events"): RESP.encode(events)
            case ("HMGET", "bull:emails:7") where command[2] == "name":
                RESP.encode(.array([.string("report"), .string("1700000000000")]))
            default: nil
            }
        }
        var config = QueueCollectorConfig.listing(["emails"])
        config.jobNames = true
        let collector = QueueCollector(config: config, client: redis)
        let first = try await collector.collect()
        #expect(first.value("telltale_queue_jobs_stalled", ["queue": "emails"]) == 0)

        let second = try await collector.collect()
        #expect(second.problems.isEmpty)
        #expect(second.value("telltale_queue_jobs_stalled", ["queue": "emails"]) == 1)
        #expect(second.value("telltale_queue_jobs_completed", ["queue": "emails", "job_name": "report"]) == 1)
        #expect(second.value("telltale_queue_jobs_failed", ["queue": "emails", "job_name": ""]) == 1)
        #expect(second.histogram("telltale_queue_job_attempts", ["queue": "emails"])?.sum == 3)
        // Job 7 was enqueued at 1700000000000 by its hash; it has no `active` time, so no wait.
        #expect(second.histogram("telltale_queue_job_wait_seconds", ["queue": "emails"])?.count ?? 0 == 0)
    }

    /// An error reply costs its queue (up 0, no series); Redis down costs every queue.
    @Test func anErrorReplyDownsItsQueueAndAnOutageAllQueues() async throws {
        let redis = ScriptedRedis { command in
            command.dropFirst().first?.hasPrefix("bull:denied:") == true ? "-NOPERM No permissions to access a key\r\n" : nil
        }
        let collector = QueueCollector(config: .listing(["fine", "denied"]), client: redis)
        let result = try await collector.collect()
        #expect(result.value("telltale_queue_up", ["queue": "fine"]) == 1)
        #expect(result.value("telltale_queue_up", ["queue": "denied"]) == 0)
        #expect(result.series("telltale_queue_jobs", ["queue": "denied"]) == nil)
        #expect(result.problems.map(\.reason) == ["redis_error"])
        #expect(result.problems.first?.message.hasPrefix("queue bull:denied: NOPERM") == true)

        redis.isDown.value = true
        let problem = try await QueueErrorTests.failure(collector)
        #expect(problem.reason == "connection")
        let up = collector.familiesWhenFailed().first
        #expect(up?.series.map { $0.labels["queue"] } == ["denied", "fine"])
        #expect(up?.series.allSatisfy { $0.value == .number(0) } == true)
    }
}
