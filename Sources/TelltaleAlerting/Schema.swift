import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The tables Telltale owns, created by `telltale migrate`. Each migration runs once, in a
/// transaction, and is recorded in `telltale_schema_migrations`; running migrate again is a no-op.
enum AlertSchema {
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE IF NOT EXISTS telltale_channels (
                name        text PRIMARY KEY,
                kind        text NOT NULL,                -- slack, discord, teams, webhook
                url_env     text,                         -- environment variable holding the URL (a secret)
                url_file    text,                         -- or a file holding it
                enabled     boolean NOT NULL DEFAULT true,
                updated_at  timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS telltale_alert_rules (
                id                   bigserial PRIMARY KEY,
                name                 text NOT NULL UNIQUE,
                environment          text NOT NULL DEFAULT 'production',
                metric               text NOT NULL,        -- family name, e.g. telltale_queue_jobs
                matchers             text NOT NULL DEFAULT '',  -- e.g. queue="emails",state=~"wait.*"
                comparison           text NOT NULL,        -- >, >=, <, <=, ==, !=
                threshold            double precision NOT NULL,
                clear_threshold      double precision,     -- hysteresis: resolve only past this value
                for_seconds          double precision NOT NULL DEFAULT 0,
                keep_firing_seconds  double precision NOT NULL DEFAULT 0,
                severity             text NOT NULL DEFAULT 'warning',
                channel              text,
                description          text,
                enabled              boolean NOT NULL DEFAULT true,
                updated_at           timestamptz NOT NULL DEFAULT now(),
                updated_by           text
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS telltale_alert_state (
                rule          text NOT NULL,
                series        text NOT NULL,               -- the series' labels, canonical text
                state         text NOT NULL,               -- firing (inactive series have no row)
                since         timestamptz NOT NULL,
                value         double precision,
                updated_at    timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (rule, series)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS telltale_notifications (
                id               bigserial PRIMARY KEY,
                idempotency_key  text NOT NULL UNIQUE,     -- one row per transition and channel
                channel          text NOT NULL,
                rule             text NOT NULL,
                series           text NOT NULL,
                status           text NOT NULL,            -- firing, resolved
                event            text NOT NULL,            -- the transition as JSON, rendered per platform when sent
                created_at       timestamptz NOT NULL DEFAULT now(),
                attempts         integer NOT NULL DEFAULT 0,
                next_attempt_at  timestamptz NOT NULL DEFAULT now(),
                delivered_at     timestamptz,
                failed_at        timestamptz,
                last_error       text
            )
            """,
            """
            CREATE INDEX IF NOT EXISTS telltale_notifications_pending
                ON telltale_notifications (channel, id) WHERE delivered_at IS NULL AND failed_at IS NULL
            """,
            // Edits to rules and channels wake every Telltale through LISTEN telltale_rules.
            """
            CREATE OR REPLACE FUNCTION telltale_notify_rules() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('telltale_rules', TG_TABLE_NAME); RETURN NULL; END $$
            """,
        ] + notifyOnChange("telltale_alert_rules", trigger: "telltale_rules_changed")
          + notifyOnChange("telltale_channels", trigger: "telltale_channels_changed")),
        // Expressions in rule rows: a function over a window, then an aggregation.
        (2, [
            """
            ALTER TABLE telltale_alert_rules
                ADD COLUMN IF NOT EXISTS function text NOT NULL DEFAULT 'value',  -- value, increase, rate, delta, *_over_time, absent
                ADD COLUMN IF NOT EXISTS window_seconds double precision,        -- for the windowed functions
                ADD COLUMN IF NOT EXISTS aggregate text,                         -- sum, avg, min, max, count; NULL: none
                ADD COLUMN IF NOT EXISTS aggregate_by text NOT NULL DEFAULT ''   -- labels kept; empty: one series
            """,
        ]),
        // Grouping per channel, silences and mute times.
        (3, [
            """
            ALTER TABLE telltale_channels
                ADD COLUMN IF NOT EXISTS group_by text,               -- labels; empty: the rule name (alertname)
                ADD COLUMN IF NOT EXISTS group_wait_seconds double precision NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS group_interval_seconds double precision NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS repeat_interval_seconds double precision NOT NULL DEFAULT 0,  -- 0: no reminders
                ADD COLUMN IF NOT EXISTS mute_time text               -- a name in telltale_mute_times
            """,
            "ALTER TABLE telltale_alert_rules ADD COLUMN IF NOT EXISTS mute_time text",
            """
            CREATE TABLE IF NOT EXISTS telltale_silences (
                id          bigserial PRIMARY KEY,
                matchers    text NOT NULL,                    -- e.g. alertname="queue_failed",queue=~"mail.*"
                starts_at   timestamptz NOT NULL DEFAULT now(),
                ends_at     timestamptz NOT NULL,
                created_by  text,
                comment     text,
                created_at  timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS telltale_mute_times (
                id          bigserial PRIMARY KEY,
                name        text NOT NULL,                    -- several rows of one name: several windows
                weekdays    text NOT NULL DEFAULT '',         -- e.g. saturday,sunday or monday:friday; empty: every day
                start_time  text NOT NULL DEFAULT '00:00',    -- HH:MM, inclusive
                end_time    text NOT NULL DEFAULT '24:00',    -- HH:MM, exclusive
                time_zone   text NOT NULL DEFAULT 'UTC'       -- an IANA name, e.g. Europe/Berlin
            )
            """,
            // Transitions wait here, per channel and group, until their group's next message.
            """
            CREATE TABLE IF NOT EXISTS telltale_alert_transitions (
                id               bigserial PRIMARY KEY,
                idempotency_key  text NOT NULL UNIQUE,        -- one row per transition and channel
                channel          text NOT NULL,
                group_key        text NOT NULL,
                event            text NOT NULL,               -- the transition as JSON
                created_at       timestamptz NOT NULL DEFAULT now(),
                flush_id         bigint                       -- the message that carried it; 0: dropped; NULL: waiting
            )
            """,
            """
            CREATE INDEX IF NOT EXISTS telltale_alert_transitions_waiting
                ON telltale_alert_transitions (channel, group_key, id) WHERE flush_id IS NULL
            """,
            """
            CREATE TABLE IF NOT EXISTS telltale_alert_groups (
                channel        text NOT NULL,
                group_key      text NOT NULL,
                messages       bigint NOT NULL DEFAULT 0,     -- numbers each message's idempotency key
                last_sent_at   timestamptz NOT NULL,          -- when the last message was written (not delivered)
                PRIMARY KEY (channel, group_key)
            )
            """,
        ] + notifyOnChange("telltale_silences", trigger: "telltale_silences_changed")
          + notifyOnChange("telltale_mute_times", trigger: "telltale_mute_times_changed")),
        // Receivers: PagerDuty, email and Alertmanager take their secret from url_env/url_file
        // like the chat kinds (a routing key, an SMTP URL with credentials, Alertmanager URLs);
        // these columns hold what is not secret.
        (4, [
            """
            ALTER TABLE telltale_channels
                ADD COLUMN IF NOT EXISTS endpoint   text,  -- pagerduty: Events API URL (default https://events.pagerduty.com/v2/enqueue)
                ADD COLUMN IF NOT EXISTS email_from text,  -- email: the sender address
                ADD COLUMN IF NOT EXISTS email_to   text,  -- email: recipient addresses, comma-separated
                ADD COLUMN IF NOT EXISTS smtp_tls   text,  -- email: starttls (default) or none
                ADD COLUMN IF NOT EXISTS ca_file    text   -- PEM CA bundle below the channel directory
            """,
        ]),
    ]

    /// The statements that make edits of `table` wake every Telltale (LISTEN telltale_rules).
    private static func notifyOnChange(_ table: String, trigger: String) -> [String] {
        [
            "DROP TRIGGER IF EXISTS \(trigger) ON \(table)",
            """
            CREATE TRIGGER \(trigger) AFTER INSERT OR UPDATE OR DELETE ON \(table)
                FOR EACH STATEMENT EXECUTE FUNCTION telltale_notify_rules()
            """,
        ]
    }

    static let createVersionTable = """
        CREATE TABLE IF NOT EXISTS telltale_schema_migrations (
            version     integer PRIMARY KEY,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """

    /// Applies the migrations not applied yet; returns the versions applied now.
    static func migrate(_ client: PostgresClient, timeouts: QueryTimeouts) async throws(PostgresError) -> [Int] {
        _ = try await client.transaction([(createVersionTable, [])], timeouts: timeouts)
        var applied: [Int] = []
        for migration in migrations {
            // The lock serialises concurrent migrate runs; the check inside makes each idempotent.
            let statements: [(sql: String, parameters: [String?])] =
                [("LOCK TABLE telltale_schema_migrations IN EXCLUSIVE MODE", [])]
            let done = try await client.transaction(
                statements + [("SELECT 1 FROM telltale_schema_migrations WHERE version = $1", [String(migration.version)])],
                timeouts: timeouts)
            guard done.last?.rows.isEmpty ?? false else { continue }
            _ = try await client.transaction(
                statements + migration.statements.map { ($0, []) }
                    + [("INSERT INTO telltale_schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                        [String(migration.version)])],
                timeouts: timeouts)
            applied.append(migration.version)
        }
        return applied
    }
}
