import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The families of the job-queue collector.
enum QueueMetrics {
    static let jobs = MetricDescriptor(
        "telltale_queue_jobs", .gauge, help: "Jobs by state, as BullMQ's getJobCounts() reports them.")
    static let paused = MetricDescriptor("telltale_queue_paused", .gauge, help: "1 if the queue is paused.")
    static let up = MetricDescriptor(
        "telltale_queue_up", .gauge,
        help: "1 when the queue was read cleanly, 0 when Redis answered its commands with an error (its series are then absent).")
    static let oldestWaiting = MetricDescriptor(
        "telltale_queue_oldest_waiting_seconds", .gauge, help: "Age of the job at the head of the waiting list (0 when none waits).",
        unit: "seconds")
    static let overdue = MetricDescriptor(
        "telltale_queue_delayed_overdue", .gauge, help: "Delayed jobs whose time has come but that were not yet promoted.")
    static let unlocked = MetricDescriptor(
        "telltale_queue_active_unlocked", .gauge, help: "Active jobs without a lock: candidates for stalling.")
    static let workers = MetricDescriptor(
        "telltale_queue_workers", .gauge, help: "Worker connections named after the queue in CLIENT LIST.")
    static let completed = MetricDescriptor(
        "telltale_queue_jobs_completed", .counter, help: "Jobs completed since Telltale started (from the events stream).")
    static let failed = MetricDescriptor(
        "telltale_queue_jobs_failed", .counter, help: "Jobs failed for good since Telltale started (from the events stream).")
    static let stalled = MetricDescriptor(
        "telltale_queue_jobs_stalled", .counter,
        help: "Jobs found stalled (active without a lock) and moved back to wait since Telltale started (from the events stream).")
    static let duration = MetricDescriptor(
        "telltale_queue_job_duration_seconds", .histogram, help: "Processing time of finished jobs (finishedOn - processedOn).",
        unit: "seconds")
    static let wait = MetricDescriptor(
        "telltale_queue_job_wait_seconds", .histogram, help: "Time finished jobs waited before processing (processedOn - timestamp).",
        unit: "seconds")
    static let attempts = MetricDescriptor(
        "telltale_queue_job_attempts", .histogram, help: "Attempts made by finished jobs.")
    static let roundTrips = MetricDescriptor(
        "telltale_redis_round_trips", .counter, help: "Network round trips to Redis (a pipeline of commands counts once).")

    static let attemptBuckets: [Double] = [1, 2, 3, 5, 10]

    /// States in the order getJobCounts() names them.
    static let states = ["waiting", "paused", "active", "prioritized", "delayed", "waiting-children", "completed", "failed"]
    /// Indices of `states` sorted by name: the order of their series.
    static let statesInNameOrder = states.indices.sorted { states[$0] < states[$1] }
}
