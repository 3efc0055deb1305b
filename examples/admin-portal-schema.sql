-- examples/admin-portal-schema.sql — demo schema for Telltale's PostgreSQL queries.
--
-- A Node/Prisma storefront (orders paid in crypto via NOWPayments, keys fulfilled
-- through Kinguin) plus the `admin_*` tables of its admin portal.  Column names
-- are camelCase and quoted, as Prisma creates them; table names are snake_case
-- (@@map).  Statuses are text with CHECK constraints.
--
-- Idempotent: every statement is CREATE ... IF NOT EXISTS or otherwise safe to
-- re-run, so `psql -v ON_ERROR_STOP=1 -f admin-portal-schema.sql` can be run on
-- every demo start.  It never drops or alters existing objects: a changed table
-- definition only takes effect on a fresh database.
--
-- Load as a superuser / the owner, e.g.
--   psql "$TELLTALE_PG_ADMIN_DSN" -X -v ON_ERROR_STOP=1 -f examples/admin-portal-schema.sql
-- Telltale itself connects as the read-only role `telltale`; the DO block at the
-- end grants it SELECT on every table here (if that role exists).

SET client_min_messages = warning;   -- silence "relation already exists, skipping"

-- ============================================================== storefront

CREATE TABLE IF NOT EXISTS orders (
    id            bigserial    PRIMARY KEY,
    "userEmail"   text         NOT NULL,
    status        text         NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'confirming', 'paid', 'underpaid', 'failed', 'fulfilled', 'refunded')),
    "totalCents"  integer      NOT NULL CHECK ("totalCents" >= 0),
    currency      text         NOT NULL DEFAULT 'EUR',
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS orders_status_idx      ON orders (status);
CREATE INDEX IF NOT EXISTS orders_createdAt_idx   ON orders ("createdAt");
CREATE INDEX IF NOT EXISTS orders_userEmail_idx   ON orders ("userEmail");

CREATE TABLE IF NOT EXISTS payments (
    id            bigserial    PRIMARY KEY,
    "orderId"     bigint       NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    provider      text         NOT NULL CHECK (provider IN ('nowpayments', 'kinguin', 'stripe')),
    "externalId"  text,
    status        text         NOT NULL DEFAULT 'waiting'
                  CHECK (status IN ('waiting', 'confirming', 'finished', 'partially_paid', 'failed', 'expired')),
    "amountCents" integer      NOT NULL CHECK ("amountCents" >= 0),
    "payCurrency" text,
    "payAmount"   numeric(30, 10),
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS payments_orderId_idx    ON payments ("orderId");
CREATE INDEX IF NOT EXISTS payments_status_idx     ON payments (status, provider);
CREATE INDEX IF NOT EXISTS payments_createdAt_idx  ON payments ("createdAt");

CREATE TABLE IF NOT EXISTS webhook_logs (
    id             bigserial   PRIMARY KEY,
    provider       text        NOT NULL CHECK (provider IN ('nowpayments', 'kinguin', 'stripe')),
    "eventType"    text        NOT NULL,              -- payment.finished, order.reserved, ...
    "externalId"   text,                              -- provider's event / payment id (dedup key)
    "paymentId"    bigint      REFERENCES payments (id) ON DELETE SET NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('processed', 'duplicate', 'invalid_signature', 'failed')),
    error          text,
    "receivedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "processingMs" integer     CHECK ("processingMs" >= 0)
);
CREATE INDEX IF NOT EXISTS webhook_logs_receivedAt_idx ON webhook_logs ("receivedAt");
CREATE INDEX IF NOT EXISTS webhook_logs_outcome_idx    ON webhook_logs (provider, outcome);
CREATE INDEX IF NOT EXISTS webhook_logs_externalId_idx ON webhook_logs ("externalId");

CREATE TABLE IF NOT EXISTS key_reservations (
    id            bigserial    PRIMARY KEY,
    "orderId"     bigint       NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    "productSku"  text         NOT NULL,
    status        text         NOT NULL DEFAULT 'reserved'
                  CHECK (status IN ('reserved', 'delivered', 'released')),
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS key_reservations_orderId_idx   ON key_reservations ("orderId");
CREATE INDEX IF NOT EXISTS key_reservations_status_idx    ON key_reservations (status);
CREATE INDEX IF NOT EXISTS key_reservations_createdAt_idx ON key_reservations ("createdAt");

CREATE TABLE IF NOT EXISTS email_sends (
    id            bigserial    PRIMARY KEY,
    "orderId"     bigint       REFERENCES orders (id) ON DELETE SET NULL,
    template      text         NOT NULL,              -- order_confirmation, key_delivery, ...
    recipient     text         NOT NULL,
    status        text         NOT NULL CHECK (status IN ('sent', 'failed', 'bounced')),
    error         text,
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS email_sends_status_idx    ON email_sends (status, id);
CREATE INDEX IF NOT EXISTS email_sends_createdAt_idx ON email_sends ("createdAt");

-- ============================================================== admin: users & roles

CREATE TABLE IF NOT EXISTS admin_users (
    id            bigserial    PRIMARY KEY,
    "clerkId"     text         UNIQUE,
    email         text         NOT NULL UNIQUE,
    name          text         NOT NULL,
    "mfaEnabled"  boolean      NOT NULL DEFAULT false,
    "isActive"    boolean      NOT NULL DEFAULT true,
    "lastLoginAt" timestamptz(3),
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS admin_roles (
    id            bigserial    PRIMARY KEY,
    name          text         NOT NULL UNIQUE,       -- super_admin, ops, support, viewer
    description   text,
    permissions   text[]       NOT NULL DEFAULT '{}',
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS admin_role_assignments (
    id            bigserial    PRIMARY KEY,
    "userId"      bigint       NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    "roleId"      bigint       NOT NULL REFERENCES admin_roles (id) ON DELETE CASCADE,
    "assignedBy"  bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    "revokedAt"   timestamptz(3),
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_role_assignments_userId_idx ON admin_role_assignments ("userId");
CREATE INDEX IF NOT EXISTS admin_role_assignments_roleId_idx ON admin_role_assignments ("roleId");

-- ============================================================== admin: feature flags

-- One row per (flag, environment).
CREATE TABLE IF NOT EXISTS admin_feature_flags (
    id            bigserial    PRIMARY KEY,
    key           text         NOT NULL,              -- checkout.enabled, kinguin.enabled, ...
    name          text,
    description   text,
    environment   text         NOT NULL,              -- production, staging, development
    enabled       boolean      NOT NULL DEFAULT false,
    impact        text,                               -- low, medium, high
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (key, environment)
);

CREATE TABLE IF NOT EXISTS admin_flag_history (
    id            bigserial    PRIMARY KEY,
    "flagId"      bigint       NOT NULL REFERENCES admin_feature_flags (id) ON DELETE CASCADE,
    environment   text         NOT NULL,
    enabled       boolean      NOT NULL,
    "actorId"     bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    metadata      jsonb        NOT NULL DEFAULT '{}',
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_flag_history_flagId_idx    ON admin_flag_history ("flagId", "createdAt");
CREATE INDEX IF NOT EXISTS admin_flag_history_createdAt_idx ON admin_flag_history ("createdAt");

-- ============================================================== admin: integrations & sync jobs

CREATE TABLE IF NOT EXISTS admin_integrations (
    id            bigserial    PRIMARY KEY,
    name          text         NOT NULL UNIQUE,       -- kinguin-catalog, nowpayments, ...
    vendor        text         NOT NULL,
    status        text         NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'degraded', 'disabled')),
    endpoint      text,
    "maskedKey"   text,
    "lastSyncAt"  timestamptz(3),
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS admin_sync_jobs (
    id                 bigserial    PRIMARY KEY,
    "integrationId"    bigint       NOT NULL REFERENCES admin_integrations (id) ON DELETE CASCADE,
    status             text         NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    trigger            text         NOT NULL DEFAULT 'scheduled' CHECK (trigger IN ('scheduled', 'manual')),
    "startedAt"        timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt"       timestamptz(3),
    "durationMs"       integer      CHECK ("durationMs" >= 0),
    "recordsProcessed" integer      NOT NULL DEFAULT 0 CHECK ("recordsProcessed" >= 0),
    error              text,
    metadata           jsonb        NOT NULL DEFAULT '{}',
    "createdAt"        timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_sync_jobs_status_idx      ON admin_sync_jobs (status);
CREATE INDEX IF NOT EXISTS admin_sync_jobs_integration_idx ON admin_sync_jobs ("integrationId", "startedAt");
-- Telltale's incremental queries walk finished jobs by "finishedAt".
CREATE INDEX IF NOT EXISTS admin_sync_jobs_finishedAt_idx  ON admin_sync_jobs ("finishedAt") WHERE "finishedAt" IS NOT NULL;

-- ============================================================== admin: queues

CREATE TABLE IF NOT EXISTS admin_queues (
    id                 bigserial    PRIMARY KEY,
    name               text         NOT NULL UNIQUE,  -- BullMQ queue name
    description        text,
    status             text         NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    "lastFailedReason" text,
    "createdAt"        timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"        timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS admin_queue_events (
    id            bigserial    PRIMARY KEY,
    "queueId"     bigint       NOT NULL REFERENCES admin_queues (id) ON DELETE CASCADE,
    "eventType"   text         NOT NULL,              -- completed, failed, retried, stalled, paused, resumed
    "jobId"       text,
    payload       jsonb        NOT NULL DEFAULT '{}',
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_queue_events_queue_idx     ON admin_queue_events ("queueId", "createdAt");
CREATE INDEX IF NOT EXISTS admin_queue_events_createdAt_idx ON admin_queue_events ("createdAt");

-- ============================================================== admin: audit log

-- Append-only; each row is chained to the previous one by hash.
CREATE TABLE IF NOT EXISTS admin_audit_logs (
    id              bigserial    PRIMARY KEY,
    action          text         NOT NULL,            -- flag_toggle, job_retry, sync_products, ...
    "actorId"       bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    "targetType"    text,                             -- feature_flag, queue, integration, ...
    "targetId"      text,
    environment     text,
    metadata        jsonb        NOT NULL DEFAULT '{}',
    "hashSignature" text,
    "prevHash"      text,
    "createdAt"     timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_audit_logs_createdAt_idx ON admin_audit_logs ("createdAt");
CREATE INDEX IF NOT EXISTS admin_audit_logs_action_idx    ON admin_audit_logs (action, "createdAt");
CREATE INDEX IF NOT EXISTS admin_audit_logs_actorId_idx   ON admin_audit_logs ("actorId");

-- ============================================================== admin: system health & alerting

CREATE TABLE IF NOT EXISTS admin_system_health (
    id             bigserial    PRIMARY KEY,
    environment    text         NOT NULL,
    "cpuUsage"     numeric(5, 2) CHECK ("cpuUsage" BETWEEN 0 AND 100),      -- percent
    "memoryUsage"  numeric(5, 2) CHECK ("memoryUsage" BETWEEN 0 AND 100),   -- percent
    "apiLatencyMs" integer,
    "apiErrorRate" numeric(6, 5) CHECK ("apiErrorRate" BETWEEN 0 AND 1),    -- ratio
    alerts         jsonb        NOT NULL DEFAULT '[]',
    "createdAt"    timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_system_health_env_idx ON admin_system_health (environment, "createdAt");

-- One row per environment.  Thresholds are percentages (0-100).
CREATE TABLE IF NOT EXISTS admin_alert_thresholds (
    id                bigserial    PRIMARY KEY,
    environment       text         NOT NULL UNIQUE,
    "cpuThreshold"    numeric(5, 2) NOT NULL CHECK ("cpuThreshold" BETWEEN 0 AND 100),
    "memoryThreshold" numeric(5, 2) NOT NULL CHECK ("memoryThreshold" BETWEEN 0 AND 100),
    channel           text         NOT NULL DEFAULT 'slack' CHECK (channel IN ('slack', 'discord', 'email', 'pagerduty', 'webhook')),
    "updatedAt"       timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedBy"       bigint       REFERENCES admin_users (id) ON DELETE SET NULL
);

-- ============================================================== admin: environments & deployments

CREATE TABLE IF NOT EXISTS admin_environment_configs (
    id            bigserial    PRIMARY KEY,
    environment   text         NOT NULL UNIQUE,
    runtime       jsonb        NOT NULL DEFAULT '{}',
    secrets       jsonb        NOT NULL DEFAULT '{}',  -- masked values only
    version       integer      NOT NULL DEFAULT 1,
    "updatedAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedBy"   bigint       REFERENCES admin_users (id) ON DELETE SET NULL
);

CREATE TABLE IF NOT EXISTS admin_deployments (
    id            bigserial    PRIMARY KEY,
    environment   text         NOT NULL,
    summary       text         NOT NULL,
    "actorId"     bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    status        text         NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'in_progress', 'succeeded', 'failed', 'rolled_back')),
    metadata      jsonb        NOT NULL DEFAULT '{}',
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt"  timestamptz(3)
);
CREATE INDEX IF NOT EXISTS admin_deployments_env_idx ON admin_deployments (environment, "createdAt");

-- ============================================================== admin: approvals

CREATE TABLE IF NOT EXISTS admin_approvals (
    id             bigserial    PRIMARY KEY,
    "requestType"  text         NOT NULL,             -- feature_flag_toggle, config_change, key_rotation, ...
    target         text,
    summary        text,
    details        jsonb        NOT NULL DEFAULT '{}',
    status         text         NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    "requestedBy"  bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    reviewers      jsonb        NOT NULL DEFAULT '[]',
    "resolvedBy"   bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    "resolvedAt"   timestamptz(3),
    "createdAt"    timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"    timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_approvals_status_idx    ON admin_approvals (status, "createdAt");
CREATE INDEX IF NOT EXISTS admin_approvals_createdAt_idx ON admin_approvals ("createdAt");

CREATE TABLE IF NOT EXISTS admin_approval_history (
    id            bigserial    PRIMARY KEY,
    "approvalId"  bigint       NOT NULL REFERENCES admin_approvals (id) ON DELETE CASCADE,
    "actorId"     bigint       REFERENCES admin_users (id) ON DELETE SET NULL,
    action        text         NOT NULL CHECK (action IN ('created', 'approved', 'rejected', 'commented')),
    comments      text,
    "createdAt"   timestamptz(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS admin_approval_history_approvalId_idx ON admin_approval_history ("approvalId");

-- ============================================================== read-only access for Telltale

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telltale') THEN
        GRANT USAGE ON SCHEMA public TO telltale;
        GRANT SELECT ON
            orders, payments, webhook_logs, key_reservations, email_sends,
            admin_users, admin_roles, admin_role_assignments,
            admin_feature_flags, admin_flag_history,
            admin_integrations, admin_sync_jobs,
            admin_queues, admin_queue_events,
            admin_audit_logs,
            admin_system_health, admin_alert_thresholds,
            admin_environment_configs, admin_deployments,
            admin_approvals, admin_approval_history
        TO telltale;
    ELSE
        RAISE WARNING 'role telltale does not exist; skipping GRANTs';
    END IF;
END
$$;
