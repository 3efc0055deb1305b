import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The durable notification outbox in Postgres. A transition's state change and its rows in
/// `telltale_alert_transitions` (one per channel) are written in one transaction; a group's
/// message is written to `telltale_notifications` in the transaction that marks the
/// transitions it carries, before anything is sent; the sender marks each message delivered
/// after the receiver accepted it. So a crash in between is followed by a send after restart,
/// and unique idempotency keys stop a second writer.
struct Outbox: Sendable {
    let client: PostgresClient
    let timeouts: QueryTimeouts

    /// Rows of one channel read per delivery pass.
    static let pageSize = 50

    struct Pending: Sendable {
        let id: Int64
        let channel: String
        /// Nil when the stored JSON cannot be read (the row is then marked failed).
        let notification: AlertNotification?
        let key: String
        let attempts: Int
        let nextAttempt: Double
    }

    func record(_ events: [AlertEvent], catalog: RuleCatalog) async throws(PostgresError) {
        var statements: [(sql: String, parameters: [String?])] = []
        let routes = catalog.outboxChannels
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
            if let channel = routes[event.rule] ?? nil {
                let grouping = catalog.channels[channel]?.grouping ?? GroupSettings()
                statements.append(("""
                    INSERT INTO telltale_alert_transitions (idempotency_key, channel, group_key, event)
                    VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING
                    """, [event.idempotencyKey(channel: channel), channel, grouping.groupKey(event), event.json()]))
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
            return Pending(id: id, channel: row[1].text, notification: AlertNotification.decode(row[2].text), key: row[3].text,
                           attempts: (row[4].number).flatMap(Checked.int) ?? 0, nextAttempt: row[5].number ?? 0)
        }
    }

    /// The most transitions read per pass, and per group; the rest wait for the next.
    static let transitionPage = 20_000
    static let transitionsPerGroup = 1_000

    /// Transitions waiting for their group's message, oldest first, at most
    /// `transitionsPerGroup` of a group: a group held back (silenced, not due yet) must not
    /// hide the others'.
    func waiting() async throws(PostgresError) -> [WaitingTransition] {
        try await client.query("""
            SELECT id, channel, group_key, event FROM (
                SELECT *, row_number() OVER (PARTITION BY channel, group_key ORDER BY id) AS position
                FROM telltale_alert_transitions WHERE flush_id IS NULL
            ) waiting WHERE position <= $2 ORDER BY id LIMIT $1
            """, parameters: [String(Self.transitionPage), String(Self.transitionsPerGroup)], timeouts: timeouts).rows.compactMap { row in
            guard case .int(let id) = row[0] else { return nil }
            return WaitingTransition(id: id, channel: row[1].text, groupKey: row[2].text, event: AlertEvent.decode(row[3].text))
        }
    }

    /// When each group's last message was written, as the database's exact timestamp.
    func lastSent() async throws(PostgresError) -> [GroupPlanner.GroupID: PGValue] {
        let rows = try await client.query("SELECT channel, group_key, last_sent_at FROM telltale_alert_groups",
                                          timeouts: timeouts).rows
        return Dictionary(rows.map { (GroupPlanner.GroupID(channel: $0[0].text, key: $0[1].text), $0[2]) },
                          uniquingKeysWith: { first, _ in first })
    }

    /// Writes a group's message and marks what it carries and drops, in one statement: only if
    /// every one of those transitions is still waiting (or, for a reminder, the group's last
    /// message is still the one seen), so that two writers never write one message twice.
    func write(_ flush: GroupFlush, at time: Double) async throws(PostgresError) {
        let carried = "{" + flush.carried.map(String.init).joined(separator: ",") + "}"
        let dropped = "{" + flush.dropped.map(String.init).joined(separator: ",") + "}"
        guard let notification = flush.notification else {
            _ = try await client.transaction([
                ("UPDATE telltale_alert_transitions SET flush_id = 0 WHERE id = ANY($1::bigint[]) AND flush_id IS NULL", [dropped]),
            ], timeouts: timeouts)
            return
        }
        let rules = Set(notification.alerts.map(\.rule))
        let single = notification.alerts.count == 1 ? notification.alerts.first : nil
        let message: [String?] = [flush.channel, flush.groupKey, rules.count == 1 ? rules.first! : "",
                                  single?.seriesKey ?? flush.groupKey, notification.status.rawValue, notification.json(),
                                  String(time)]
        let statement = flush.repeatAfter.map { (Self.reminderSQL, message + [$0.text]) } ?? (Self.messageSQL, message + [carried, dropped])
        _ = try await client.transaction([statement], timeouts: timeouts)
    }

    private static let insertMessage = """
        INSERT INTO telltale_notifications (idempotency_key, channel, rule, series, status, event)
        SELECT 'group|' || $1 || '|' || $2 || '|' || messages, $1, $3, $4, $5, $6 FROM grp
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
        """

    private static let messageSQL = """
        WITH waiting AS (
            SELECT id FROM telltale_alert_transitions
            WHERE (id = ANY($8::bigint[]) OR id = ANY($9::bigint[])) AND flush_id IS NULL FOR UPDATE
        ), complete AS (
            SELECT 1 FROM (SELECT count(*) AS n FROM waiting) counted
            WHERE n = cardinality($8::bigint[]) + cardinality($9::bigint[])
        ), grp AS (
            INSERT INTO telltale_alert_groups (channel, group_key, messages, last_sent_at)
            SELECT $1, $2, 1, to_timestamp($7::double precision) FROM complete
            ON CONFLICT (channel, group_key) DO UPDATE
            SET messages = telltale_alert_groups.messages + 1, last_sent_at = EXCLUDED.last_sent_at
            RETURNING messages
        ), note AS (\(insertMessage))
        UPDATE telltale_alert_transitions SET flush_id = CASE WHEN telltale_alert_transitions.id = ANY($9::bigint[]) THEN 0 ELSE note.id END
        FROM note WHERE telltale_alert_transitions.id IN (SELECT id FROM waiting)
        """

    private static let reminderSQL = """
        WITH grp AS (
            UPDATE telltale_alert_groups SET messages = messages + 1, last_sent_at = to_timestamp($7::double precision)
            WHERE channel = $1 AND group_key = $2 AND last_sent_at = $8::timestamptz RETURNING messages
        )
        \(insertMessage)
        """

    func queueDepths() async throws(PostgresError) -> [String: Int] {
        let rows = try await client.query("""
            SELECT channel, count(*) FROM telltale_notifications WHERE delivered_at IS NULL AND failed_at IS NULL GROUP BY channel
            """, timeouts: timeouts).rows
        return Dictionary(rows.map { ($0[0].text, ($0[1].number).flatMap(Checked.int) ?? 0) }, uniquingKeysWith: +)
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
