import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The durable notification outbox in Postgres. A transition's state change and its
/// notification rows are written in one transaction before anything is sent; the sender
/// marks each row delivered after the receiver accepted it, so a crash in between is
/// followed by a send after restart, and the unique idempotency key stops a second writer.
struct Outbox: Sendable {
    let client: PostgresClient
    let timeouts: QueryTimeouts

    /// Rows of one channel read per delivery pass.
    static let pageSize = 50

    struct Pending: Sendable {
        let id: Int64
        let channel: String
        /// Nil when the stored JSON cannot be read (the row is then marked failed).
        let event: AlertEvent?
        let key: String
        let attempts: Int
        let nextAttempt: Double
    }

    func record(_ events: [AlertEvent], channels: [String: String?]) async throws(PostgresError) {
        var statements: [(sql: String, parameters: [String?])] = []
        for event in events {
            switch event.status {
            case .firing:
                statements.append(("""
                    INSERT INTO telltale_alert_state (rule, series, state, since, value, updated_at)
                    VALUES ($1, $2, 'firing', to_timestamp($3::double precision), $4::double precision, now())
                    ON CONFLICT (rule, series) DO UPDATE SET state = 'firing', since = EXCLUDED.since,
                    value = EXCLUDED.value, updated_at = now()
                    """, [event.rule, event.seriesKey, String(event.startsAt), event.value.map { String($0) }]))
            case .resolved:
                statements.append(("DELETE FROM telltale_alert_state WHERE rule = $1 AND series = $2", [event.rule, event.seriesKey]))
            case .test:
                break
            }
            if let channel = channels[event.rule] ?? nil {
                statements.append(("""
                    INSERT INTO telltale_notifications (idempotency_key, channel, rule, series, status, event)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING
                    """, [event.idempotencyKey(channel: channel), channel, event.rule, event.seriesKey, event.status.rawValue,
                          event.json()]))
            }
        }
        guard !statements.isEmpty else { return }
        _ = try await client.transaction(statements, timeouts: timeouts)
    }

    /// Firing episodes recorded by whichever replica led before.
    func firing() async throws(PostgresError) -> [(rule: String, seriesKey: String, since: Double, value: Double?)] {
        try await client.query("SELECT rule, series, extract(epoch FROM since), value FROM telltale_alert_state WHERE state = 'firing'",
                               timeouts: timeouts).rows.map { ($0[0].text, $0[1].text, $0[2].number.flatMap { $0.isFinite ? $0 : nil } ?? 0, $0[3].number) }
    }

    /// Undelivered rows, oldest first, at most `perChannel` of each channel: a channel with a
    /// long backlog (disabled, or waiting out retries) must not hide the others' rows.
    func pending(perChannel: Int = pageSize) async throws(PostgresError) -> [Pending] {
        try await client.query("""
            SELECT id, channel, event, idempotency_key, attempts, extract(epoch FROM next_attempt_at) FROM (
                SELECT *, row_number() OVER (PARTITION BY channel ORDER BY id) AS position
                FROM telltale_notifications WHERE delivered_at IS NULL AND failed_at IS NULL
            ) queued WHERE position <= $1 ORDER BY id
            """, parameters: [String(perChannel)], timeouts: timeouts).rows.compactMap { row in
            guard case .int(let id) = row[0] else { return nil }
            return Pending(id: id, channel: row[1].text, event: AlertEvent.decode(row[2].text), key: row[3].text,
                           attempts: (row[4].number).flatMap(Checked.int) ?? 0, nextAttempt: row[5].number ?? 0)
        }
    }

    func queueDepths() async throws(PostgresError) -> [String: Int] {
        let rows = try await client.query("""
            SELECT channel, count(*) FROM telltale_notifications WHERE delivered_at IS NULL AND failed_at IS NULL GROUP BY channel
            """, timeouts: timeouts).rows
        return Dictionary(uniqueKeysWithValues: rows.map { ($0[0].text, ($0[1].number).flatMap(Checked.int) ?? 0) })
    }

    func markDelivered(_ id: Int64) async throws(PostgresError) {
        _ = try await client.transaction([("""
            UPDATE telltale_notifications SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1
            """, [String(id)])], timeouts: timeouts)
    }

    func retry(_ id: Int64, after delay: Duration, error: String) async throws(PostgresError) {
        _ = try await client.transaction([("""
            UPDATE telltale_notifications SET attempts = attempts + 1, last_error = $2,
            next_attempt_at = now() + make_interval(secs => $3::double precision) WHERE id = $1
            """, [String(id), error, String(delay.seconds)])], timeouts: timeouts)
    }

    func markFailed(_ id: Int64, error: String) async throws(PostgresError) {
        _ = try await client.transaction([("""
            UPDATE telltale_notifications SET failed_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1
            """, [String(id), error])], timeouts: timeouts)
    }
}
