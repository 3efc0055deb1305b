import Synchronization
import TelltaleCore
import TelltaleMetrics

/// Server-side limits for one statement.
public struct QueryTimeouts: Sendable, Equatable {
    public var statement: Duration
    public var lock: Duration

    public init(statement: Duration, lock: Duration) {
        self.statement = statement
        self.lock = lock
    }
}

/// Telltale's access to one PostgreSQL target: at most one connection, at most one
/// statement in flight on it, reconnects with capped exponential backoff.
///
/// Statements run in read-only transactions (`default_transaction_read_only`) with
/// `statement_timeout` and `lock_timeout` set per statement, so a slow or locked database
/// costs one waiting connection, never a pile of them. Blocking libpq calls run on the
/// client's own thread, so a hung target cannot stall other targets or the HTTP server.
public actor PostgresClient {
    public nonisolated let target: String
    private let dsn: String
    private let dsnInfo: DSNInfo
    private let connectTimeout: Duration
    private let thread = BlockingThreads(count: 1)

    private var connection: PGConnection?
    private var sessionTimeouts: QueryTimeouts?
    private var backoff = ReconnectBackoff()
    private let gate = SerialGate()
    /// How long past its statement_timeout a statement may run before Telltale closes the
    /// connection itself (the server's timer should have fired already; this covers a
    /// stopped server or a dead network path, which no server-side timer can).
    package static let abortGrace = Duration.seconds(2)

    package nonisolated var connectionSettings: CollectorSettings { CollectorSettings(target, dsn, connectTimeout) }

    public init(target: String, dsn: String, connectTimeout: Duration) {
        self.target = target
        self.dsn = dsn
        self.dsnInfo = DSNInfo(dsn)
        self.connectTimeout = connectTimeout
    }

    /// Runs one statement with `$n` parameters and returns its rows.
    public func query(_ sql: String, parameters: [String?], timeouts: QueryTimeouts) async throws(PostgresError) -> PGResult {
        try await withConnection(timeouts) { connection throws(PostgresError) in
            try connection.execute(sql, parameters: parameters)
        }
    }

    /// Runs statements in one round trip, each on its own: one result or error per statement.
    /// Throws only when no statement could be answered (no connection, a broken one).
    public func pipeline(_ statements: [String], timeouts: QueryTimeouts)
        async throws(PostgresError) -> [Result<PGResult, PostgresError>]
    {
        try await withConnection(timeouts, statements: statements.count) { connection throws(PostgresError) in
            try connection.executePipeline(statements)
        }
    }

    /// Runs statements in one read-write transaction: Telltale's own writes (alert state,
    /// the notification outbox, migrations). Rolled back as a whole if any fails.
    public func transaction(_ statements: [(sql: String, parameters: [String?])], timeouts: QueryTimeouts)
        async throws(PostgresError) -> [PGResult]
    {
        // BEGIN and COMMIT are statements too.
        try await withConnection(timeouts, statements: statements.count + 2) { connection throws(PostgresError) in
            _ = try connection.execute("BEGIN READ WRITE")
            var results: [PGResult] = []
            do throws(PostgresError) {
                for statement in statements {
                    results.append(try connection.execute(statement.sql, parameters: statement.parameters))
                }
                _ = try connection.execute("COMMIT")
                return results
            } catch {
                if !connection.isBroken { _ = try? connection.execute("ROLLBACK") }
                throw error
            }
        }
    }

    /// LISTENs on `channel` (again after every reconnect) and returns whether a NOTIFY on it
    /// arrived since the last call. The first call after a (re)connect reports true, since
    /// anything may have changed while not listening.
    public func notified(on channel: String, timeouts: QueryTimeouts) async throws(PostgresError) -> Bool {
        let listening = listeningGeneration == generation
        let received = try await withConnection(timeouts) { [listening] connection throws(PostgresError) in
            if !listening { _ = try connection.execute("LISTEN \(channel)") }
            return !listening || connection.drainNotifications().contains(channel)
        }
        listeningGeneration = generation
        return received
    }

    private var listeningGeneration = -1

    /// Counts connections made: session state (an advisory lock, say) is lost when it changes.
    public private(set) var generation = 0

    private func withConnection<T: Sendable>(
        _ timeouts: QueryTimeouts, statements: Int = 1, _ work: @escaping @Sendable (PGConnection) throws(PostgresError) -> T
    ) async throws(PostgresError) -> T {
        await gate.acquire()
        defer { gate.release() }
        let connection = try await connected(timeouts)
        do {
            if sessionTimeouts != timeouts {
                _ = try await blocking(on: connection, deadline: timeouts, statements: 2) { connection throws(PostgresError) in
                    try connection.executeBatch(
                        "SET statement_timeout = \(timeouts.statement.milliseconds); SET lock_timeout = \(timeouts.lock.milliseconds)")
                }
                sessionTimeouts = timeouts
            }
            return try await blocking(on: connection, deadline: timeouts, statements: statements, work)
        } catch {
            if connection.isBroken {
                self.connection = nil
                sessionTimeouts = nil
            }
            throw error
        }
    }

    /// Runs `work` (`statements` statements) on the client's thread; closes the connection
    /// if the work outlives each statement's timeout plus `abortGrace`, so a hung server holds
    /// that thread no longer.
    private func blocking<T: Sendable>(
        on connection: PGConnection, deadline timeouts: QueryTimeouts, statements: Int,
        _ work: @escaping @Sendable (PGConnection) throws(PostgresError) -> T
    ) async throws(PostgresError) -> T {
        let limit = timeouts.statement * max(1, statements) + Self.abortGrace
        let race = WorkDeadline()
        let watchdog = Task {
            try await Task.sleep(for: limit)
            if race.expire() { connection.abort() }
        }
        defer { watchdog.cancel() }
        do {
            return try await thread.run { () throws(PostgresError) -> T in
                // Once the work is over, a watchdog firing late must not close the connection.
                defer { race.finish() }
                return try work(connection)
            }
        } catch let error as PostgresError {
            guard connection.wasAborted else { throw error }
            throw PostgresError(kind: .connection, message: "no answer within \(limit); connection closed", sqlState: nil)
        } catch {
            throw PostgresError(kind: .connection, message: "\(error)", sqlState: nil)
        }
    }

    private func connected(_ timeouts: QueryTimeouts) async throws(PostgresError) -> PGConnection {
        if let connection, !connection.isBroken { return connection }
        connection = nil
        sessionTimeouts = nil
        if backoff.isWaiting {
            throw PostgresError(kind: .connect, message: "reconnecting after: \(backoff.lastError)", sqlState: nil)
        }
        let dsn = dsn
        let seconds = max(2, Checked.int(connectTimeout.seconds.rounded(.up)) ?? 2)
        let redact: @Sendable (String) -> String = { [dsnInfo] in dsnInfo.redact($0) }
        do {
            // libpq's connect_timeout bounds the whole handshake, authentication included.
            let fresh = try await thread.run { () throws(PostgresError) -> PGConnection in
                try PGConnection(dsn: dsn, connectTimeout: seconds, redact: redact)
            }
            // ISO dates in UTC so timestamps parse the same whatever the server's defaults.
            _ = try await blocking(on: fresh, deadline: timeouts, statements: 5) { connection throws(PostgresError) in
                try connection.executeBatch(
                    "SET default_transaction_read_only = on; SET DateStyle = 'ISO'; SET TimeZone = 'UTC'; "
                        + "SET idle_in_transaction_session_timeout = 60000; SET client_min_messages = warning")
            }
            connection = fresh
            generation += 1
            backoff.succeeded()
            return fresh
        } catch is CancellationError {
            // The caller gave up (its run timed out): no attempt was made, so no backoff.
            throw PostgresError(kind: .connect, message: "cancelled before connecting", sqlState: nil)
        } catch {
            backoff.failed((error as? PostgresError)?.message ?? "\(error)")
            throw PostgresError(kind: .connect, message: backoff.lastError, sqlState: nil)
        }
    }
}

/// The statements collectors run, so that a scripted fake can stand in for a server in unit tests.
package protocol PostgresQuerying: Sendable {
    /// The target's name, the `target` label of its series.
    var target: String { get }
    /// What the connection is made from: collectors on equal settings may share it.
    var connectionSettings: CollectorSettings { get }
    func query(_ sql: String, parameters: [String?], timeouts: QueryTimeouts) async throws(PostgresError) -> PGResult
    func pipeline(_ statements: [String], timeouts: QueryTimeouts) async throws(PostgresError) -> [Result<PGResult, PostgresError>]
}

extension PostgresQuerying {
    /// Runs one statement without parameters.
    package func query(_ sql: String, timeouts: QueryTimeouts) async throws(PostgresError) -> PGResult {
        try await query(sql, parameters: [], timeouts: timeouts)
    }
}

extension PostgresClient: PostgresQuerying {}

/// Decides, once, whether a statement finished or its watchdog fired first.
private final class WorkDeadline: Sendable {
    private let state = Atomic<Int>(0)  // 0 running, 1 finished, 2 expired

    /// The work ended; a watchdog firing from now on does nothing.
    func finish() {
        _ = state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing)
    }

    /// The watchdog fired: true when the work had not finished, so the connection must close.
    func expire() -> Bool {
        state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged
    }
}

extension Duration {
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
