import TelltaleMetrics
import Testing
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The health, database-size and SQL-defined collectors against a scripted target.
@Suite struct PostgresCollectorTests {
    static let schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))

    /// Every health family, in the order the collector returns them.
    static let healthFamilies = ["telltale_pg_up", "telltale_pg_server", "telltale_pg_max_connections", "telltale_pg_in_recovery",
                                 "telltale_pg_replication_lag_seconds", "telltale_pg_oldest_transaction_seconds",
                                 "telltale_pg_connections", "telltale_pg_xact_commits", "telltale_pg_xact_rollbacks",
                                 "telltale_pg_deadlocks", "telltale_pg_temp_bytes", "telltale_pg_blocks_hit",
                                 "telltale_pg_blocks_read", "telltale_pg_locks", "telltale_pg_replication_slot_retained_bytes"]

    /// A primary that answers every health statement, except that `refused` views are denied.
    static func primary(refusing refused: String? = nil, error: PostgresError? = nil) -> ScriptedPostgres {
        ScriptedPostgres { sql, _ throws(PostgresError) in
            if let refused, sql.contains("FROM \(refused)") { throw error ?? .permissionDenied(refused) }
            return healthRows(sql)
        }
    }

    static func healthRows(_ sql: String) -> PGResult {
        if sql.contains("server_version") {
            return PGResult(columns: ["version", "max_connections", "in_recovery", "lag", "oldest_xact"],
                            rows: [[.text("16.2"), .int(100), .bool(false), .null, .numeric("3.5")]])
        } else if sql.contains("backend_type") {
            return PGResult(columns: ["database", "state", "count"],
                            rows: [[.text("app"), .text("active"), .int(4)], [.text("app"), .text("idle"), .int(6)]])
        } else if sql.contains("pg_stat_database") {
            return PGResult(columns: ["datname", "xact_commit", "xact_rollback", "deadlocks", "temp_bytes", "blks_hit", "blks_read"],
                            rows: [[.text("app"), .int(10), .int(1), .int(0), .int(4096), .int(900), .int(100)]])
        } else if sql.contains("pg_locks") {
            return PGResult(columns: ["mode", "count"], rows: [[.text("AccessShareLock"), .int(7)]])
        } else {
            return PGResult(columns: ["slot_name", "slot_type", "pg_wal_lsn_diff"],
                            rows: [[.text("standby_1"), .text("physical"), .numeric("2048")]])
        }
    }

    func health(_ client: ScriptedPostgres) -> PostgresHealthCollector {
        PostgresHealthCollector(client: client, schedule: Self.schedule, timeouts: ScriptedPostgres.timeouts)
    }

    @Test func everyHealthFamilyFromAServerThatAnswersAll() async throws {
        let result = try await health(Self.primary()).collect()
        #expect(result.problems.isEmpty)
        #expect(result.families.map(\.name) == Self.healthFamilies)
        #expect(result.value("telltale_pg_up", ["target": "main"]) == 1)
        #expect(result.value("telltale_pg_server", ["target": "main", "version": "16.2"]) == 1)
        #expect(result.value("telltale_pg_max_connections") == 100)
        #expect(result.value("telltale_pg_in_recovery") == 0)
        #expect(result.family("telltale_pg_replication_lag_seconds")?.series.isEmpty == true)
        #expect(result.value("telltale_pg_oldest_transaction_seconds") == 3.5)
        #expect(result.value("telltale_pg_connections", ["database": "app", "state": "idle"]) == 6)
        #expect(result.value("telltale_pg_xact_commits", ["database": "app", "target": "main"]) == 10)
        #expect(result.value("telltale_pg_blocks_read", ["database": "app"]) == 100)
        #expect(result.value("telltale_pg_locks", ["mode": "AccessShareLock"]) == 7)
        #expect(result.value("telltale_pg_replication_slot_retained_bytes", ["slot": "standby_1", "slot_type": "physical"]) == 2048)
    }

    /// Regression: one view without permission blanked every health family and read as down.
    /// (pg_stat_activity refuses no role: it hides other users' details instead.)
    @Test(arguments: [
        ("pg_stat_database", PostgresHealthCollector.databaseCounters.map(\.descriptor.name)),
        ("pg_locks", ["telltale_pg_locks"]),
        ("pg_replication_slots", ["telltale_pg_replication_slot_retained_bytes"]),
    ])
    func anUnreadableViewCostsOnlyItsOwnFamilies(view: String, lost: [String]) async throws {
        let result = try await health(Self.primary(refusing: view)).collect()
        #expect(result.families.map(\.name) == Self.healthFamilies.filter { !lost.contains($0) })
        #expect(result.value("telltale_pg_up") == 1)
        #expect(result.value("telltale_pg_max_connections") == 100)
        #expect(!result.problems.isEmpty)
        for problem in result.problems {
            #expect(problem.reason == "query")
            #expect(problem.message == "\(view): permission denied for view \(view)")
        }
    }

    @Test func aStatementTimeoutIsReportedAsATimeout() async throws {
        let timedOut = PostgresError(kind: .query, message: "canceling statement due to statement timeout", sqlState: "57014")
        let result = try await health(Self.primary(refusing: "pg_locks", error: timedOut)).collect()
        #expect(result.problems.map(\.reason) == ["timeout"])
        #expect(result.family("telltale_pg_locks") == nil)
        #expect(result.value("telltale_pg_up") == 1)
    }

    @Test func anUnreachableServerReadsDown() async throws {
        let collector = health(ScriptedPostgres { _, _ throws(PostgresError) in throw .unreachable })
        let result = try await collector.collect()
        #expect(result.families == collector.familiesWhenFailed())
        #expect(result.value("telltale_pg_up", ["target": "main"]) == 0)
        #expect(result.problems.map(\.reason) == ["connect"])
    }

    @Test func databaseSizes() async throws {
        let client = ScriptedPostgres { _, _ in
            PGResult(columns: ["datname", "pg_database_size"], rows: [[.text("app"), .int(8_000_000)], [.text("empty"), .null]])
        }
        let collector = PostgresDatabaseSizeCollector(client: client, schedule: Self.schedule, timeouts: ScriptedPostgres.timeouts)
        let result = try await collector.collect()
        #expect(result.value("telltale_pg_database_size_bytes", ["target": "main", "database": "app"]) == 8_000_000)
        #expect(result.family("telltale_pg_database_size_bytes")?.series.count == 1)
    }

    @Test func aFailedSizeQueryFailsTheRun() async throws {
        let client = ScriptedPostgres { _, _ throws(PostgresError) in throw .permissionDenied("pg_database") }
        let collector = PostgresDatabaseSizeCollector(client: client, schedule: Self.schedule, timeouts: ScriptedPostgres.timeouts)
        let problem = await #expect(throws: CollectionProblem.self) { try await collector.collect() }
        #expect(problem?.reason == "query")
    }
}

/// SQL-defined families in both modes against a scripted target.
@Suite struct SQLMetricCollectorTests {
    func query(_ descriptor: MetricDescriptor, labels: [String], values: [String]) -> SQLMetricConfig {
        var query = SQLMetricConfig(descriptor: descriptor, sql: "SELECT …", schedule: PostgresCollectorTests.schedule,
                                    timeouts: ScriptedPostgres.timeouts)
        query.labelColumns = labels
        query.valueColumns = values
        return query
    }

    @Test func currentModeBuildsTheFamilyFromThisRunsRows() async throws {
        let client = ScriptedPostgres { _, _ in
            PGResult(columns: ["status", "orders"], rows: [[.text("paid"), .int(3)], [.text("open"), .numeric("2.5")],
                                                           [.text("void"), .null], [.text("paid"), .int(5)]])
        }
        let collector = SQLMetricCollector(client: client, query: query(MetricDescriptor("app_orders", .gauge, help: "h"),
                                                                        labels: ["status"], values: ["orders"]))
        let result = try await collector.collect()
        #expect(result.family("app_orders")?.series.map(\.labels) == [["status": "open", "target": "main"],
                                                                     ["status": "paid", "target": "main"]])
        #expect(result.value("app_orders", ["status": "paid"]) == 3)
        #expect(result.value("app_orders", ["status": "open"]) == 2.5)
        #expect(result.problems.map(\.reason) == ["bad_value", "duplicate_labels"])
        #expect(result.value("telltale_series_dropped", ["metric": "app_orders"]) == 0)
        #expect(client.parameters == [[]])
    }

    @Test func seriesBeyondTheCapAreDroppedAndCounted() async throws {
        let client = ScriptedPostgres { _, _ in
            PGResult(columns: ["status", "orders"], rows: [[.text("a"), .int(1)], [.text("b"), .int(2)], [.text("c"), .int(3)]])
        }
        var capped = query(MetricDescriptor("app_orders", .gauge, help: "h"), labels: ["status"], values: ["orders"])
        capped.maxSeries = 2
        let collector = SQLMetricCollector(client: client, query: capped)
        _ = try await collector.collect()
        let result = try await collector.collect()
        #expect(result.family("app_orders")?.series.count == 2)
        #expect(result.value("telltale_series_dropped", ["collector": "sql:main:app_orders"]) == 2)
    }

    @Test func aMissingColumnFailsTheRun() async throws {
        let client = ScriptedPostgres { _, _ in PGResult(columns: ["status"], rows: []) }
        let collector = SQLMetricCollector(client: client, query: query(MetricDescriptor("app_orders", .gauge, help: "h"),
                                                                        labels: ["status"], values: ["orders"]))
        let problem = await #expect(throws: CollectionProblem.self) { try await collector.collect() }
        #expect(problem?.reason == "missing_column")
    }

    /// Rows newer than the watermark are added, the watermark goes to `$1` of the next run.
    @Test func incrementalModeAddsNewRowsPastTheWatermark() async throws {
        let batches = Shared<[[[PGValue]]]>([
            [[.int(1), .text("card"), .int(10)], [.int(2), .text("card"), .int(5)], [.int(3), .text("iban"), .int(7)]],
            [[.int(4), .text("card"), .int(1)], [.int(5), .text("iban"), .int(-2)]],
        ])
        let client = ScriptedPostgres { _, _ in
            let rows = batches.value.first ?? []
            batches.value = Array(batches.value.dropFirst())
            return PGResult(columns: ["id", "method", "amount"], rows: rows)
        }
        var payments = query(MetricDescriptor("app_paid", .counter, help: "h"), labels: ["method"], values: ["amount"])
        payments.mode = .incremental(watermarkColumn: "id", start: "0")
        let collector = SQLMetricCollector(client: client, query: payments)
        let first = try await collector.collect()
        #expect(first.value("app_paid", ["method": "card"]) == 15)
        #expect(first.value("app_paid", ["method": "iban"]) == 7)
        let second = try await collector.collect()
        #expect(second.value("app_paid", ["method": "card"]) == 16)
        #expect(second.value("app_paid", ["method": "iban"]) == 7)
        #expect(second.problems.map(\.reason) == ["bad_value"])
        let third = try await collector.collect()
        #expect(third.value("app_paid", ["method": "card"]) == 16)
        #expect(client.parameters == [["0"], ["3"], ["5"]])
    }

    @Test func incrementalHistogramsObserveEachRow() async throws {
        let client = ScriptedPostgres { _, _ in
            PGResult(columns: ["at", "seconds"], rows: [[.timestamp(seconds: 100, text: "1970-01-01 00:01:40+00"), .double(0.2)],
                                                       [.timestamp(seconds: 160, text: "1970-01-01 00:02:40+00"), .double(3)]])
        }
        var latency = query(MetricDescriptor("app_latency_seconds", .histogram, help: "h", unit: "seconds"), labels: [],
                            values: ["seconds"])
        latency.mode = .incremental(watermarkColumn: "at", start: "1970-01-01")
        latency.buckets = [0.5, 1]
        let collector = SQLMetricCollector(client: client, query: latency)
        let histogram = try #require(try await collector.collect().histogram("app_latency_seconds", ["target": "main"]))
        #expect(histogram.cumulativeCounts == [1, 1, 2])
        #expect(isClose(histogram.sum, 3.2))
        _ = try await collector.collect()
        #expect(client.parameters.last == ["1970-01-01 00:02:40+00"])
    }
}
