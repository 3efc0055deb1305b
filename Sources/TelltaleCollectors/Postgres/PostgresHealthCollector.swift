import TelltaleClients
import TelltaleCore
import TelltaleMetrics

extension CollectionProblem {
    /// Maps a PostgreSQL failure to a `reason` label: connect, timeout, query or connection.
    /// `subject` (the view a statement reads, say) leads the message.
    init(_ error: PostgresError, subject: String? = nil) {
        let reason = error.isTimeout ? "timeout" : error.kind.rawValue
        self.init(reason: reason, subject.map { "\($0): \(error.message)" } ?? error.message)
    }
}

/// Server health for one target, from cheap catalog views in a single round trip.
///
/// Each statement runs on its own (`PostgresQuerying.pipeline`), so a view the role may not
/// read (REVOKEd from PUBLIC, say) costs only the families it feeds: the run reports it as a
/// problem, which `telltale_collector_errors` counts, and the other families are published.
public struct PostgresHealthCollector: Collector {
    static let up = MetricDescriptor("telltale_pg_up", .gauge, help: "Whether the target answered the health queries (1) or not (0).")
    static let server = MetricDescriptor("telltale_pg_server", .info, help: "PostgreSQL server version.")
    static let inRecovery = MetricDescriptor("telltale_pg_in_recovery", .gauge, help: "1 on a replica (in recovery), 0 on a primary.")
    static let maxConnections = MetricDescriptor("telltale_pg_max_connections", .gauge, help: "The max_connections setting.")
    static let connections = MetricDescriptor(
        "telltale_pg_connections", .gauge, help: "Client connections by database and state (pg_stat_activity).")
    static let oldestTransaction = MetricDescriptor(
        "telltale_pg_oldest_transaction_seconds", .gauge, help: "Age of the oldest open transaction of another session.",
        unit: "seconds")
    static let replicationLag = MetricDescriptor(
        "telltale_pg_replication_lag_seconds", .gauge, help: "On a replica: time since the last replayed transaction.",
        unit: "seconds")
    static let slotRetained = MetricDescriptor(
        "telltale_pg_replication_slot_retained_bytes", .gauge, help: "WAL retained by each replication slot.", unit: "bytes")
    static let locks = MetricDescriptor("telltale_pg_locks", .gauge, help: "Locks held or awaited, by mode (pg_locks).")
    /// pg_stat_database columns exposed as counters, by family.
    static let databaseCounters: [(column: Int, descriptor: MetricDescriptor)] = [
        (1, MetricDescriptor("telltale_pg_xact_commits", .counter, help: "Transactions committed, by database.")),
        (2, MetricDescriptor("telltale_pg_xact_rollbacks", .counter, help: "Transactions rolled back, by database.")),
        (3, MetricDescriptor("telltale_pg_deadlocks", .counter, help: "Deadlocks detected, by database.")),
        (4, MetricDescriptor("telltale_pg_temp_bytes", .counter, help: "Bytes written to temporary files, by database.", unit: "bytes")),
        (5, MetricDescriptor("telltale_pg_blocks_hit", .counter, help: "Block reads served from shared buffers, by database.")),
        (6, MetricDescriptor("telltale_pg_blocks_read", .counter, help: "Blocks read from disk or the OS cache, by database.")),
    ]

    /// The health statements, each on its own so that a view the role may not read costs
    /// only the families it feeds.
    static let statements: [HealthStatement] = [
        // The oldest transaction comes with the settings: pg_stat_activity refuses no role
        // (it hides other users' details instead), and a statement less is a round of
        // parse, plan and commit less on the server at every run.
        HealthStatement("settings", columns: 5, """
            SELECT current_setting('server_version') AS version, current_setting('max_connections')::int AS max_connections, \
            pg_is_in_recovery() AS in_recovery, \
            CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END AS lag, \
            (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) FROM pg_stat_activity \
             WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()) AS oldest_xact
            """) { rows in
            guard let settings = rows.first else { return [] }
            return [(server, [(["version": settings[0].text], 1)]), (maxConnections, [(.none, settings[1].number)]),
                    (inRecovery, [(.none, settings[2].number)]), (replicationLag, [(.none, settings[3].number)]),
                    (oldestTransaction, [(.none, settings[4].number)])]
        },
        HealthStatement("pg_stat_activity", columns: 3, """
            SELECT coalesce(datname, '') AS database, coalesce(state, 'unknown') AS state, count(*) \
            FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2
            """) { rows in
            [(connections, rows.map { (["database": $0[0].text, "state": $0[1].text], $0[2].number) })]
        },
        HealthStatement("pg_stat_database", columns: 7, """
            SELECT datname, xact_commit, xact_rollback, deadlocks, temp_bytes, blks_hit, blks_read \
            FROM pg_stat_database WHERE datname IS NOT NULL
            """) { rows in
            databaseCounters.map { column, descriptor in (descriptor, rows.map { (["database": $0[0].text], $0[column].number) }) }
        },
        HealthStatement("pg_locks", columns: 2, "SELECT mode, count(*) FROM pg_locks GROUP BY mode") { rows in
            [(locks, rows.map { (["mode": $0[0].text], $0[1].number) })]
        },
        HealthStatement("pg_replication_slots", columns: 3, """
            SELECT slot_name, slot_type, pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
            ELSE pg_current_wal_lsn() END, restart_lsn) FROM pg_replication_slots WHERE restart_lsn IS NOT NULL
            """) { rows in
            [(slotRetained, rows.map { (["slot": $0[0].text, "slot_type": $0[1].text], $0[2].number) })]
        },
    ]

    public let name: String
    public let schedule: Schedule
    let client: any PostgresQuerying
    let timeouts: QueryTimeouts

    public var settings: CollectorSettings { CollectorSettings(client.connectionSettings, schedule, timeouts) }

    package init(client: any PostgresQuerying, schedule: Schedule, timeouts: QueryTimeouts) {
        self.name = "postgres:\(client.target)"
        self.client = client
        self.schedule = schedule
        self.timeouts = timeouts
    }

    public func familiesWhenFailed() -> [MetricFamily] {
        var up = FamilyBuilder(Self.up)
        up.set(0, ["target": client.target])
        return [up.build()]
    }

    public func collect() async throws -> CollectionResult {
        let results: [Result<PGResult, PostgresError>]
        do {
            results = try await client.pipeline(Self.statements.map(\.sql), timeouts: timeouts)
        } catch {
            return CollectionResult(families: familiesWhenFailed(), problems: [CollectionProblem(error)])
        }
        guard results.count == Self.statements.count else {
            return CollectionResult(families: familiesWhenFailed(),
                                    problems: [CollectionProblem(reason: "query", "unexpected health query result shape")])
        }
        // Up once the server answered, even if it refused some statements: up is about
        // reaching the target, and a refused view is a permission to fix, reported as a
        // problem; reading 0 would hide the families that did arrive behind a false outage.
        let target: Labels = ["target": client.target]
        var up = FamilyBuilder(Self.up)
        up.set(1, target)
        var families = [up.build()]
        var problems: [CollectionProblem] = []
        for (statement, result) in zip(Self.statements, results) {
            switch statement.families(result, target) {
            case .success(let built): families += built
            case .failure(let problem): problems.append(problem)
            }
        }
        return CollectionResult(families: families, problems: problems)
    }
}

/// One health statement: what it reads (named in problems), and how its rows become
/// families, as labels and values before the `target` label is added.
struct HealthStatement: Sendable {
    typealias Samples = [(MetricDescriptor, [(Labels, Double?)])]

    let view: String
    let sql: String
    let columns: Int
    let decode: @Sendable ([[PGValue]]) -> Samples

    init(_ view: String, columns: Int, _ sql: String, decode: @escaping @Sendable ([[PGValue]]) -> Samples) {
        self.view = view
        self.columns = columns
        self.sql = sql
        self.decode = decode
    }

    /// The statement's families, or why it has none this run.
    func families(_ result: Result<PGResult, PostgresError>, _ target: Labels) -> Result<[MetricFamily], CollectionProblem> {
        switch result {
        case .failure(let error):
            return .failure(CollectionProblem(error, subject: view))
        case .success(let rows) where rows.columns.count != columns:
            return .failure(CollectionProblem(reason: "query", "\(view): unexpected health query result shape"))
        case .success(let rows):
            return .success(decode(rows.rows).map { descriptor, samples in
                var builder = FamilyBuilder(descriptor)
                for (labels, value) in samples { if let value { builder.set(value, target.merging(labels)) } }
                return builder.build()
            })
        }
    }
}

/// Database sizes, on a slower schedule of their own: `pg_database_size` walks every file
/// of a database, which is costly on servers with many or large databases.
public struct PostgresDatabaseSizeCollector: Collector {
    static let size = MetricDescriptor(
        "telltale_pg_database_size_bytes", .gauge, help: "Disk space used by each database.", unit: "bytes")
    static let sql = """
        SELECT datname, pg_database_size(datname) FROM pg_database \
        WHERE datallowconn AND has_database_privilege(datname, 'CONNECT')
        """

    public let name: String
    public let schedule: Schedule
    let client: any PostgresQuerying
    let timeouts: QueryTimeouts

    public var settings: CollectorSettings { CollectorSettings(client.connectionSettings, schedule, timeouts) }

    package init(client: any PostgresQuerying, schedule: Schedule, timeouts: QueryTimeouts) {
        self.name = "postgres_size:\(client.target)"
        self.client = client
        self.schedule = schedule
        self.timeouts = timeouts
    }

    public func collect() async throws -> CollectionResult {
        let result: PGResult
        do {
            result = try await client.query(Self.sql, timeouts: timeouts)
        } catch {
            throw CollectionProblem(error)
        }
        var size = FamilyBuilder(Self.size)
        for row in result.rows {
            if let bytes = row[1].number { size.set(bytes, ["target": client.target, "database": row[0].text]) }
        }
        return CollectionResult(families: [size.build()])
    }
}
