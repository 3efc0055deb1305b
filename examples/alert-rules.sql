-- The ops roadmap's alerts (shared/seeds/level5-admin-ops-monitoring.md, 4.5) as rows that an
-- admin edits at run time, over the metrics of examples/admin-portal.yml and the queue
-- collector. Load it after `telltale migrate` (and after examples/admin-portal-schema.sql,
-- for admin_alert_thresholds):
--
--     psql -v ON_ERROR_STOP=1 -d "$DSN" -f examples/alert-rules.sql
--
-- Re-runnable: rows are upserted by name. The channel's URL is a secret, read from the
-- environment variable TELLTALE_CHANNEL_SLACK of the Telltale process.

INSERT INTO telltale_channels (name, kind, url_env, group_by, group_wait_seconds, group_interval_seconds,
                               repeat_interval_seconds)
VALUES ('slack', 'slack', 'TELLTALE_CHANNEL_SLACK', 'alertname', 30, 300, 14400)
ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, url_env = EXCLUDED.url_env, group_by = EXCLUDED.group_by,
    group_wait_seconds = EXCLUDED.group_wait_seconds, group_interval_seconds = EXCLUDED.group_interval_seconds,
    repeat_interval_seconds = EXCLUDED.repeat_interval_seconds;

INSERT INTO telltale_alert_rules (name, environment, metric, matchers, function, window_seconds, aggregate, aggregate_by,
                                  comparison, threshold, for_seconds, severity, channel, description, updated_by)
VALUES
    -- queue_failed > 0 (critical): failed BullMQ jobs, per queue.
    ('queue_failed', 'production', 'telltale_queue_jobs', 'state="failed"', 'value', NULL, 'sum', 'redis,queue',
     '>', 0, 0, 'critical', 'slack', 'A BullMQ queue holds failed jobs.', 'examples/alert-rules.sql'),
    -- ipn_invalid_total > 5 in 5 m: NOWPayments IPN calls with a bad HMAC signature.
    ('ipn_invalid_signatures', 'production', 'app_webhooks_received_total',
     'provider="nowpayments",outcome="invalid_signature"', 'increase', 300, 'sum', '',
     '>', 5, 0, 'warning', 'slack', 'More than 5 NOWPayments IPN calls with an invalid signature in 5 minutes.',
     'examples/alert-rules.sql'),
    -- webhook_invalid_total > 5 in 5 m: the other providers' webhooks, per provider.
    ('webhook_invalid_signatures', 'production', 'app_webhooks_received_total',
     'provider!="nowpayments",outcome="invalid_signature"', 'increase', 300, 'sum', 'provider',
     '>', 5, 0, 'warning', 'slack', 'More than 5 webhooks with an invalid signature in 5 minutes.',
     'examples/alert-rules.sql'),
    -- email_fail_total > 10 in 1 h (critical).
    ('email_failures', 'production', 'app_email_send_failures_total', '', 'increase', 3600, 'sum', '',
     '>', 10, 0, 'critical', 'slack', 'More than 10 e-mails failed or bounced in the last hour.', 'examples/alert-rules.sql'),
    -- underpaid spike: the underpaid orders grew by more than 5 in 15 minutes.
    ('underpaid_spike', 'production', 'app_orders_underpaid', '', 'delta', 900, NULL, '',
     '>', 5, 0, 'warning', 'slack', 'Underpaid orders are piling up: more than 5 new in 15 minutes.',
     'examples/alert-rules.sql')
ON CONFLICT (name) DO UPDATE SET environment = EXCLUDED.environment, metric = EXCLUDED.metric,
    matchers = EXCLUDED.matchers, function = EXCLUDED.function, window_seconds = EXCLUDED.window_seconds,
    aggregate = EXCLUDED.aggregate, aggregate_by = EXCLUDED.aggregate_by, comparison = EXCLUDED.comparison,
    threshold = EXCLUDED.threshold, for_seconds = EXCLUDED.for_seconds, severity = EXCLUDED.severity,
    channel = EXCLUDED.channel, description = EXCLUDED.description, updated_by = EXCLUDED.updated_by,
    updated_at = now();

-- CPU and memory: the admin portal's own thresholds screen (percent), read by Telltale as
-- the rules admin:<environment>:cpu and admin:<environment>:memory on the host collector.
DO $$
BEGIN
    IF to_regclass('admin_alert_thresholds') IS NOT NULL THEN
        INSERT INTO admin_alert_thresholds (environment, "cpuThreshold", "memoryThreshold", channel)
        VALUES ('production', 85, 90, 'slack')
        ON CONFLICT (environment) DO NOTHING;
    END IF;
END $$;
