import Logging
import TelltaleClients
import TelltaleCore

/// One statement that deletes old rows of a table: at most `$2` of those `select` names by
/// `key` (`$1` is the retention in seconds), returning how many it deleted. Bounded, so that a
/// backlog goes over several statements rather than one long-running one.
struct BoundedPrune: Sendable {
    let table: String
    let sql: String

    init(_ table: String, select: String, key: String) {
        self.table = table
        sql = """
            WITH old AS (\(select)), deleted AS (DELETE FROM \(table) WHERE \(key) IN (SELECT \(key) FROM old) RETURNING 1)
            SELECT count(*) FROM deleted
            """
    }

    /// The rows deleted, or nil when the statement failed (logged, throttled; the next prune
    /// tries again).
    func run(_ client: PostgresClient, retention: Duration, batch: Int, timeouts: QueryTimeouts,
             throttled: LogThrottle) async -> Double? {
        do throws(PostgresError) {
            let result = try await client.transaction([(sql, [String(retention.seconds), String(batch)])], timeouts: timeouts)
            return result.first?.rows.first?.first?.number ?? 0
        } catch {
            throttled.warning("could not prune old rows; will try again", ["table": "\(table)", "problem": "\(error.message)"])
            return nil
        }
    }
}
