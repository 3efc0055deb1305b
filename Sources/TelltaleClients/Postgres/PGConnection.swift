import CLibPQ
import Glibc
import Synchronization
import TelltaleCore
import TelltaleMetrics

/// A failure talking to PostgreSQL. Messages come from libpq with the password removed.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Could not connect, or waiting out the reconnect backoff.
        case connect
        /// The server rejected or cancelled the statement (syntax, permissions, timeouts).
        case query
        /// The connection broke during the statement.
        case connection
    }

    public let kind: Kind
    public let message: String
    /// SQLSTATE, when the server sent one (57014 = query_canceled, 55P03 = lock_not_available).
    public let sqlState: String?

    public var description: String { message }

    /// Statement or lock timeout fired on the server.
    public var isTimeout: Bool { sqlState == "57014" || sqlState == "55P03" }
}

/// Owns one `PGconn` and frees it exactly once, in `deinit`.
///
/// libpq calls block, so they run on the client's own thread pool, one at a time: the
/// `PostgresClient` holds its lock around every use. That serialisation is what makes
/// the unchecked `Sendable` sound. `abort()` is the exception: it only shuts the socket
/// down, which is safe from any thread and wakes a libpq call blocked on it.
package final class PGConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    /// A duplicate of the connection's socket, ours until `deinit`: libpq closes its own
    /// descriptor on errors, and its number may then be reused by any other connection, so
    /// `abort()` must never shut down a descriptor number it does not own.
    private let socket: Int32
    private let aborted = Atomic<Bool>(false)
    /// Set when a pipeline's results came out of step: libpq cannot be trusted to pair the
    /// next statement with its own results, so the connection is not used again.
    private var abandoned = false
    private let redact: @Sendable (String) -> String

    /// Connects, blocking up to the DSN's or the given `connect_timeout`.
    /// Keywords come in precedence order: the DSN may override `connect_timeout`, but
    /// `application_name` is always `telltale` so DBAs can find its sessions.
    package init(dsn: String, connectTimeout: Int, redact: @escaping @Sendable (String) -> String) throws(PostgresError) {
        let keywords = ["connect_timeout", "dbname", "application_name"]
        let values = ["\(connectTimeout)", dsn, "telltale"]
        let connection = withCStrings(keywords) { keywordPointers in
            withCStrings(values) { valuePointers in PQconnectdbParams(keywordPointers, valuePointers, 1) }
        }
        guard let connection else {
            throw PostgresError(kind: .connect, message: "libpq could not allocate a connection", sqlState: nil)
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = redact(Self.trimmed(PQerrorMessage(connection)))
            PQfinish(connection)
            throw PostgresError(kind: .connect, message: message, sqlState: nil)
        }
        handle = connection
        socket = fcntl(PQsocket(connection), F_DUPFD_CLOEXEC, 0)
        self.redact = redact
    }

    deinit {
        PQfinish(handle)
        if socket >= 0 { close(socket) }
    }

    package var isBroken: Bool { aborted.load(ordering: .acquiring) || abandoned || PQstatus(handle) != CONNECTION_OK }

    /// Whether `abort()` ended the connection.
    package var wasAborted: Bool { aborted.load(ordering: .acquiring) }

    /// Ends the connection from any thread, without blocking: a call waiting on a server
    /// that stopped answering (SIGSTOPped, a dead network path) returns with an error.
    /// `PQcancel` is no use there: it connects to the same stopped server and waits too.
    package func abort() {
        aborted.store(true, ordering: .releasing)
        if socket >= 0 { _ = Glibc.shutdown(socket, Int32(SHUT_RDWR)) }
    }

    /// Runs one statement with `$1…` parameters (text format); nil parameters are SQL NULL.
    package func execute(_ sql: String, parameters: [String?] = []) throws(PostgresError) -> PGResult {
        let result = withOptionalCStrings(parameters) { pointers in
            PQexecParams(handle, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
        }
        return try consume(result)
    }

    /// Runs several `;`-separated statements in one round trip (simple query protocol) and
    /// returns every statement's result. Used for session settings.
    package func executeBatch(_ sql: String) throws(PostgresError) -> [PGResult] {
        guard PQsendQuery(handle, sql) == 1 else {
            throw PostgresError(kind: .connection, message: redact(Self.trimmed(PQerrorMessage(handle))), sqlState: nil)
        }
        var results: [PGResult] = []
        var firstError: PostgresError?
        // Every result must be read, even after an error, to leave the connection usable.
        while let result = PQgetResult(handle) {
            do {
                results.append(try consume(result))
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
        return results
    }

    /// Runs statements in one round trip (libpq's pipeline mode) with a sync after each, so
    /// each is a transaction of its own: one the server refuses (a view the role may not
    /// read, a statement timeout) costs only its own result, where the server skips every
    /// statement of an `executeBatch` after the first error. Throws only when the connection
    /// fails, since then no result can be trusted.
    package func executePipeline(_ statements: [String]) throws(PostgresError) -> [Result<PGResult, PostgresError>] {
        guard PQenterPipelineMode(handle) == 1 else { throw abandon() }
        // All statements are sent before any result is read. In blocking mode that could
        // deadlock against a server blocked writing results, but a few short statements fit
        // in the socket's buffer, so sending never waits for the server to read.
        for sql in statements {
            guard PQsendQueryParams(handle, sql, 0, nil, nil, nil, nil, 0) == 1, PQpipelineSync(handle) == 1 else { throw abandon() }
        }
        var results: [Result<PGResult, PostgresError>] = []
        for _ in statements {
            // A statement's results end with NULL, then comes its sync point.
            var first: Result<PGResult, PostgresError>?
            while let result = PQgetResult(handle) {
                let outcome = Result { () throws(PostgresError) in try consume(result) }
                first = first ?? outcome
            }
            let sync = PQgetResult(handle)
            let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
            PQclear(sync)
            guard let first, synced else { throw abandon() }
            if case .failure(let error) = first, error.kind == .connection { throw abandon(error) }
            results.append(first)
        }
        guard PQexitPipelineMode(handle) == 1 else { throw abandon() }
        return results
    }

    /// Marks the connection unusable and returns the error to throw: `error`, or libpq's own.
    private func abandon(_ error: PostgresError? = nil) -> PostgresError {
        abandoned = true
        return error ?? PostgresError(kind: .connection, message: redact(Self.trimmed(PQerrorMessage(handle))), sqlState: nil)
    }

    /// Channels of the NOTIFY messages received since the last call (after LISTEN).
    package func drainNotifications() -> [String] {
        guard PQconsumeInput(handle) == 1 else { return [] }
        var channels: [String] = []
        while let notification = PQnotifies(handle) {
            channels.append(String(cString: notification.pointee.relname))
            PQfreemem(notification)
        }
        return channels
    }

    private func consume(_ result: OpaquePointer?) throws(PostgresError) -> PGResult {
        guard let result else {
            throw PostgresError(kind: .connection, message: redact(Self.trimmed(PQerrorMessage(handle))), sqlState: nil)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return Self.read(result)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            // The primary message alone: the full text spans lines (LINE 1: …, a caret) that
            // make poor log lines and status-page cells.
            let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { UnsafePointer($0) }
            let message = redact(Self.trimmed(primary ?? PQresultErrorMessage(result).map { UnsafePointer($0) }))
            throw PostgresError(kind: isBroken || Self.meansConnectionLost(state) ? .connection : .query,
                                message: message, sqlState: state)
        }
    }

    private static func read(_ result: OpaquePointer) -> PGResult {
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        let types = (0..<columnCount).map { UInt32(PQftype(result, Int32($0))) }
        let rows = (0..<Int(PQntuples(result))).map { row in
            (0..<columnCount).map { column -> PGValue in
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 { return .null }
                let text = String(cString: PQgetvalue(result, Int32(row), Int32(column)))
                return PGValue.parse(text, typeOID: types[column])
            }
        }
        return PGResult(columns: columns, rows: rows)
    }

    /// Class 08 (connection exception) and the shutdown codes 57P01-57P03 arrive as a result
    /// before libpq has noticed the socket closing: they are connection failures, not bad SQL.
    private static func meansConnectionLost(_ sqlState: String?) -> Bool {
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    /// The first line of a libpq message: the rest ("This probably means…") makes poor log lines.
    private static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown libpq error" }
        let text = String(cString: message).trimming(" \n\t")
        return text.split(separator: "\n").first.map { $0.trimming(" \t") } ?? text
    }
}

/// A DSN's password (to scrub from libpq's messages) and whether libpq can parse it.
package struct DSNInfo: Sendable {
    package let password: String?
    /// Whether libpq can parse the DSN at all (checked when the configuration is read).
    package let isValid: Bool

    package init(_ dsn: String) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(dsn, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            // libpq quotes the whole string in some of its parse errors: find the password
            // by hand so that it can still be removed from them.
            password = Self.uriPassword(dsn)
            isValid = false
            return
        }
        isValid = true
        defer { PQconninfoFree(options) }
        var password: String?
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val {
                password = String(cString: value)
            }
            option += 1
        }
        self.password = password
    }

    /// The password of `scheme://user:password@host…`, found without libpq.
    private static func uriPassword(_ dsn: String) -> String? {
        guard let schemeEnd = dsn.firstRange(of: "://"),
              let at = dsn[schemeEnd.upperBound...].lastIndex(of: "@") else { return nil }
        let userInfo = dsn[schemeEnd.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return nil }
        return String(userInfo[userInfo.index(after: colon)...])
    }

    /// Removes the password from a message, however it got there.
    package func redact(_ message: String) -> String {
        Redactor(password.map { [$0] } ?? []).redact(message)
    }
}

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    withOptionalCStrings(strings) { pointers in body(pointers + [nil]) }
}

/// Keeps C copies of the strings alive for the duration of `body`.
private func withOptionalCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = strings.map { $0.map { strdup($0) } ?? nil }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
