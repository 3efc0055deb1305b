import Logging
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Writes a row into the admin portal's `admin_system_health` every interval, on the alerting
/// leader only, and prunes rows past the retention. The one write into the application's
/// tables: through its own connection (`system_health.dsn`), with bound parameters. A failed
/// write is counted, logged (throttled) and simply followed by the next interval's row.
struct SystemHealthWriter: Sendable {
    static let table = "admin_system_health"

    static let writes = MetricDescriptor(
        "telltale_system_health_writes", .counter, help: "admin_system_health rows by outcome: written, failed.")
    static let lastWrite = MetricDescriptor(
        "telltale_system_health_last_write_timestamp_seconds", .gauge,
        help: "Unix time of the last admin_system_health row written.", unit: "seconds")
    static let pruned = MetricDescriptor(
        "telltale_system_health_pruned_rows", .counter, help: "admin_system_health rows deleted past the retention.")
    static let pruneFailures = MetricDescriptor(
        "telltale_system_health_prune_failures", .counter, help: "Prunes of admin_system_health that failed (retried next interval).")
    static let unread = MetricDescriptor(
        "telltale_system_health_unread_values", .counter,
        help: "Values written as NULL because they could not be read from the metrics, by column.")

    let service: AlertingService
    let config: SystemHealthConfig
    let client: PostgresClient

    init(service: AlertingService) {
        self.service = service
        config = service.config.systemHealth
        client = PostgresClient(target: "system_health", dsn: config.dsn, connectTimeout: config.connectTimeout)
    }

    /// What the writer has counted, published as its families.
    private struct Counts {
        var writes = FamilyBuilder(SystemHealthWriter.writes)
        var lastWrite = FamilyBuilder(SystemHealthWriter.lastWrite)
        var pruned = FamilyBuilder(SystemHealthWriter.pruned)
        var pruneFailures = FamilyBuilder(SystemHealthWriter.pruneFailures)
        var unread = FamilyBuilder(SystemHealthWriter.unread)

        init() {
            for outcome in ["written", "failed"] { writes.add(0, ["outcome": outcome]) }
            pruned.add(0)
            pruneFailures.add(0)
        }

        var families: [MetricFamily] { [writes, lastWrite, pruned, pruneFailures, unread].map { $0.build() } }
    }

    func run() async {
        var counts = Counts()
        var previous: ProbeTotals?
        await service.store.publish(["system_health": counts.families])
        while (try? await Task.sleep(for: config.interval)) != nil {
            // Read on every replica, so a new leader's first latency covers one interval too.
            let (leader, alerts) = firingAlerts()
            let reading = SystemHealthRow.read(service.store.snapshot, probe: config.probe, previous: previous, alerts: alerts)
            previous = reading.totals
            guard leader else { continue }
            await write(reading.row, &counts)
            await prune(&counts)
            await service.store.publish(["system_health": counts.families])
        }
    }

    /// Whether this replica leads, and the alerts firing now.
    private func firingAlerts() -> (leader: Bool, alerts: [FiringAlert]) {
        service.state.withLock { state in
            var alerts: [FiringAlert] = []
            for (name, series) in state.evaluator.states {
                guard let rule = state.catalog.rules[name] else { continue }
                for one in series.values where one.phase == .firing {
                    alerts.append(FiringAlert(rule: name, severity: rule.severity, environment: rule.environment,
                                              labels: AlertEvent.clippedLabels(one.labels), value: one.value,
                                              startsAt: UnixTime(seconds: one.since).iso8601))
                }
            }
            return (state.leader, alerts)
        }
    }

    private func write(_ row: SystemHealthRow, _ counts: inout Counts) async {
        for column in row.unreadColumns { counts.unread.add(1, ["column": column]) }
        let quoted = SystemHealthRow.columns.map { "\"\($0)\"" }.joined(separator: ", ")
        // Numbers go in as double precision, which PostgreSQL also assigns to an integer
        // column; `alerts` takes the column's own type (json or jsonb).
        let sql = """
            INSERT INTO \(Self.table) (\(quoted), alerts, "createdAt")
            VALUES ($1::double precision, $2::double precision, $3::double precision, $4::double precision, $5, now())
            """
        do throws(PostgresError) {
            _ = try await client.transaction([(sql, row.parameters)], timeouts: config.timeouts)
            counts.writes.add(1, ["outcome": "written"])
            counts.lastWrite.set(service.now().seconds)
        } catch {
            counts.writes.add(1, ["outcome": "failed"])
            service.throttled.warning("could not write the system health row; will write the next one",
                                      ["table": "\(Self.table)", "problem": "\(error.message)"])
        }
    }

    /// Deletes at most `pruneBatch` rows older than the retention: one bounded statement per
    /// interval, however large the backlog.
    private static let pruning = BoundedPrune(table, select: """
        SELECT ctid FROM \(table) WHERE "createdAt" < now() - make_interval(secs => $1::double precision) LIMIT $2
        """, key: "ctid")

    private func prune(_ counts: inout Counts) async {
        if let deleted = await Self.pruning.run(client, retention: config.retention, batch: SystemHealthConfig.pruneBatch,
                                                timeouts: config.timeouts, throttled: service.throttled) {
            counts.pruned.add(deleted)
        } else {
            counts.pruneFailures.add(1)
        }
    }
}
