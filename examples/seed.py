#!/usr/bin/env python3
"""examples/seed.py — seed data and live activity for the admin-portal demo schema.

Usage:
    python3 examples/seed.py [--dsn DSN] [--initial N] [--rate R] [--once]
                             [--seed S] [--history-hours H] [--schema FILE]

Writes into the tables of examples/admin-portal-schema.sql (load that first, or
pass --schema examples/admin-portal-schema.sql):

1. Reference data, idempotently on every start: admin users and roles, feature
   flags for production/staging/development, integrations, BullMQ queues, alert
   thresholds and environment configs.
2. An initial history spread over the last --history-hours (default 72): N
   orders (default 3000) with their payments, webhook logs, key reservations and
   e-mails, plus sync jobs, queue events, audit-log entries, approvals, flag
   history, deployments and system-health samples.  Skipped when `orders`
   already has rows (so restarting the demo does not pile up history).
3. Unless --once, live activity once a second until SIGTERM/SIGINT: about R new
   orders per second (default 1) moving pending -> confirming -> paid ->
   fulfilled (some underpaid, failed, expired, refunded), webhook logs
   (occasional duplicate / invalid_signature / failed deliveries), sync jobs
   taking 50 ms - 30 s, queue events, audit events, approvals being requested
   and approved/rejected, the odd feature-flag toggle and threshold change.
   With --once a single round of activity follows the initial batch.

Only the standard library and the `psql` client are needed (no psycopg): each
batch is one transaction, piped to a short-lived `psql -v ON_ERROR_STOP=1`.  If
the database is unreachable (or the schema is missing) the batch is retried
every --retry seconds (default 3) instead of giving up.  SIGTERM/SIGINT end the
program with exit status 0 after the batch in flight.

The DSN (libpq URL or conninfo string) defaults to $TELLTALE_SEED_DSN, then
$TELLTALE_PG_ADMIN_DSN, then $DATABASE_URL.  It needs INSERT/UPDATE rights, so
not Telltale's read-only `telltale` role.  psql is found on $PATH, in
$TELLTALE_PG_BIN or under /usr/lib/postgresql/*/bin (or pass --psql).

--seed makes the generated data reproducible: the initial batch is identical for
the same seed and schema state; live activity draws from the same seeded stream
(and seeds PostgreSQL's random() per batch), but which rows it touches also
depends on timing.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

# --------------------------------------------------------------------------- constants

ENVIRONMENTS = ["production", "staging", "development"]

ADMIN_USERS = [  # email, name, clerk id, mfa
    ("alice.martin@example.com", "Alice Martin", "user_2alice", True),
    ("bob.nguyen@example.com", "Bob Nguyen", "user_2bob", True),
    ("carla.rossi@example.com", "Carla Rossi", "user_2carla", True),
    ("dev.patel@example.com", "Dev Patel", "user_2dev", False),
    ("emma.schulz@example.com", "Emma Schulz", "user_2emma", True),
    ("farid.haddad@example.com", "Farid Haddad", "user_2farid", False),
    ("grace.kim@example.com", "Grace Kim", "user_2grace", True),
    ("ops-bot@example.com", "Ops Bot", None, False),
]
APPROVERS = ["alice.martin@example.com", "carla.rossi@example.com", "emma.schulz@example.com"]
HUMANS = [u[0] for u in ADMIN_USERS if not u[0].startswith("ops-bot")]

ROLES = [  # name, description, permissions
    ("super_admin", "Full access", ["*"]),
    ("ops", "Operations: queues, integrations, flags",
     ["queues:*", "integrations:*", "flags:write", "orders:read", "audit:read"]),
    ("support", "Customer support", ["orders:read", "orders:refund", "payments:read", "webhooks:read"]),
    ("viewer", "Read-only", ["orders:read", "payments:read", "audit:read"]),
]
ROLE_ASSIGNMENTS = [
    ("alice.martin@example.com", "super_admin"), ("bob.nguyen@example.com", "ops"),
    ("carla.rossi@example.com", "super_admin"), ("dev.patel@example.com", "support"),
    ("emma.schulz@example.com", "ops"), ("farid.haddad@example.com", "support"),
    ("grace.kim@example.com", "viewer"), ("ops-bot@example.com", "ops"),
]

FEATURE_FLAGS = [  # key, name, impact, {environment: enabled}
    ("checkout.enabled", "Checkout (payment creation)", "high",
     {"production": True, "staging": True, "development": True}),
    ("kinguin.enabled", "Kinguin fulfillment", "high",
     {"production": True, "staging": True, "development": False}),
    ("r2.delivery.enabled", "Key delivery via R2 links", "medium",
     {"production": True, "staging": True, "development": True}),
    ("otp.enabled", "OTP login", "medium",
     {"production": True, "staging": False, "development": False}),
    ("email.notifications.enabled", "E-mail notifications", "low",
     {"production": True, "staging": True, "development": False}),
    ("admin.bulk-export", "Bulk CSV export (beta)", "low",
     {"production": False, "staging": True, "development": True}),
]
# Flags that may be toggled in production through an approval.
PROD_TOGGLEABLE = ["otp.enabled", "email.notifications.enabled", "admin.bulk-export", "r2.delivery.enabled"]

# name, vendor, endpoint, median duration ms, sigma, records per second of work, failure rate
INTEGRATIONS = [
    ("kinguin-catalog", "kinguin", "https://gateway.kinguin.net/esa/api/v2/products", 9000, 0.7, 900, 0.05),
    ("kinguin-orders", "kinguin", "https://gateway.kinguin.net/esa/api/v2/order", 1800, 0.6, 120, 0.04),
    ("nowpayments-balance", "nowpayments", "https://api.nowpayments.io/v1/balance", 250, 0.5, 20, 0.03),
    ("stripe-payouts", "stripe", "https://api.stripe.com/v1/payouts", 700, 0.6, 40, 0.02),
    ("resend-email-stats", "resend", "https://api.resend.com/emails", 150, 0.6, 200, 0.02),
]
SYNC_FAIL_REASONS = ["upstream returned 502", "timeout after 30s", "rate limited (429)",
                     "invalid API key", "schema mismatch in response"]

QUEUES = [
    ("payments", "NOWPayments / Stripe payment processing"),
    ("fulfillment", "Kinguin key reservation and delivery"),
    ("emails", "Transactional e-mail"),
    ("approval-notifications", "Slack/e-mail notifications for approvals"),
    ("manual-sync", "Integration syncs triggered from the admin UI"),
    ("config-rollout", "Applies approved environment config changes"),
]
QUEUE_WEIGHTS = [5, 4, 4, 1, 1, 0.5]
QUEUE_FAIL_REASONS = ["ECONNRESET", "Kinguin API 503", "job stalled more than allowable limit",
                      "SMTP 421 try again later", "lock expired"]

ALERT_THRESHOLDS = [  # environment, cpu %, memory %, channel
    ("production", 80, 85, "slack"),
    ("staging", 90, 90, "discord"),
    ("development", 95, 95, "email"),
]

PRODUCTS = ["steam-gift-20eur", "elden-ring-pc", "cyberpunk-2077-gog", "fifa-25-origin", "windows-11-pro",
            "office-2021-pro", "xbox-gamepass-3m", "psn-card-50eur", "minecraft-java", "baldurs-gate-3"]
FIRST = ["liam", "olivia", "noah", "emma", "mateo", "sofia", "lucas", "mia", "leo", "ava", "yuki", "amir",
         "zoe", "ivan", "nina", "omar", "lea", "tom", "sara", "jonas"]
LAST = ["smith", "garcia", "muller", "rossi", "kowalski", "dubois", "tanaka", "silva", "novak", "jensen"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example"]
CRYPTO = {"btc": 62000.0, "eth": 3100.0, "ltc": 82.0, "usdttrc20": 0.93, "sol": 145.0, "xmr": 160.0}

ORDER_PROVIDERS = (["nowpayments", "stripe", "kinguin"], [0.72, 0.23, 0.05])

# Event type names per provider and payment status.
EVENT_TYPES = {
    "nowpayments": {s: "payment." + s for s in
                    ("waiting", "confirming", "finished", "partially_paid", "failed", "expired")},
    "stripe": {"waiting": "payment_intent.created", "confirming": "payment_intent.processing",
               "finished": "payment_intent.succeeded", "partially_paid": "payment_intent.partially_funded",
               "failed": "payment_intent.payment_failed", "expired": "payment_intent.canceled"},
    "kinguin": {s: "balance_payment." + s for s in
                ("waiting", "confirming", "finished", "partially_paid", "failed", "expired")},
}

AUDIT_ACTIONS = [  # action, target type, weight
    ("user_login", "admin_user", 30), ("order_view", "order", 18), ("order_export", "order", 4),
    ("queue_job_retry", "queue", 8), ("sync_trigger", "integration", 6), ("user_update", "admin_user", 4),
    ("role_assign", "admin_role", 2), ("config_propose", "environment_config", 3),
    ("audit_export", "audit_log", 2), ("api_key_rotate", "integration", 1),
    ("queue_pause", "queue", 1), ("queue_resume", "queue", 1), ("user_force_logout", "admin_user", 1),
]
APPROVAL_TYPES = [("feature_flag_toggle", 4), ("config_change", 3), ("key_rotation", 1),
                  ("queue_purge", 1), ("refund_override", 2), ("role_change", 1)]


# --------------------------------------------------------------------------- SQL helpers

def lit(v) -> str:
    """An SQL literal."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 10))
    if isinstance(v, (dict, list)):
        return lit(json.dumps(v, sort_keys=True, separators=(",", ":"))) + "::jsonb"
    return "'" + str(v).replace("'", "''") + "'"


def ago(seconds: float) -> str:
    """A timestamp `seconds` before the transaction's now()."""
    return "now() - interval '%.3f seconds'" % max(0.0, seconds)


def user_id(email: str) -> str:
    return "(SELECT id FROM admin_users WHERE email = %s)" % lit(email)


def case_map(column: str, mapping: dict) -> str:
    whens = " ".join("WHEN %s THEN %s" % (lit(k), lit(v)) for k, v in mapping.items())
    return "CASE %s %s END" % (column, whens)


def event_type_sql(provider_col: str, status: str) -> str:
    return "CASE %s %s END" % (provider_col, " ".join(
        "WHEN %s THEN %s" % (lit(p), lit(m[status])) for p, m in EVENT_TYPES.items()))


def audit_sql(source: str, cte: str = "") -> str:
    """INSERT one audit row per row of `source` (columns: action, actor, tt, tid, env, meta),
    chained to the newest existing row.  Use with sources yielding at most one row so
    the chain stays linear."""
    return (
        "%sINSERT INTO admin_audit_logs (action, \"actorId\", \"targetType\", \"targetId\", environment, "
        "metadata, \"prevHash\", \"hashSignature\")\n"
        "SELECT s.action, s.actor, s.tt, s.tid, s.env, s.meta, p.prev, "
        "encode(sha256(convert_to(concat_ws('|', p.prev, s.action, s.actor::text, s.tt, s.tid, s.meta::text, "
        "now()::text), 'UTF8')), 'hex')\n"
        "FROM (%s) s LEFT JOIN LATERAL (SELECT \"hashSignature\" AS prev FROM admin_audit_logs "
        "ORDER BY id DESC LIMIT 1) p ON true;" % (cte, source))


def audit_simple(action, actor_email, target_type, target_id, env=None, meta=None) -> str:
    src = "SELECT %s::text AS action, %s AS actor, %s::text AS tt, %s::text AS tid, %s::text AS env, %s AS meta" % (
        lit(action), user_id(actor_email), lit(target_type), lit(target_id), lit(env), lit(meta or {}))
    return audit_sql(src)


def chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# --------------------------------------------------------------------------- random helpers

class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.cpu = {e: 35.0 + 10 * i for i, e in enumerate(ENVIRONMENTS)}
        self.mem = {e: 55.0 + 5 * i for i, e in enumerate(ENVIRONMENTS)}

    def pick(self, items, weights=None):
        if weights is None:
            return self.rng.choice(items)
        return self.rng.choices(items, weights=weights)[0]

    def chance(self, p) -> bool:
        return self.rng.random() < p

    def poisson(self, lam) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, int(round(self.rng.gauss(lam, math.sqrt(lam)))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def email(self) -> str:
        r = self.rng
        return "%s.%s%d@%s" % (r.choice(FIRST), r.choice(LAST), r.randint(1, 999), r.choice(DOMAINS))

    def total_cents(self) -> int:
        return int(round(math.exp(self.rng.uniform(math.log(299), math.log(12999))) / 10)) * 10 - 1

    def ext_id(self, prefix) -> str:
        return prefix + "".join(self.rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(14))

    def payment_fields(self, provider, cents, currency):
        if provider == "nowpayments":
            coin = self.pick(list(CRYPTO), [30, 25, 8, 25, 7, 5])
            return coin, round(cents / 100.0 / CRYPTO[coin] * self.rng.uniform(1.0, 1.02), 8), self.ext_id("np_")
        if provider == "stripe":
            return currency.lower(), round(cents / 100.0, 2), self.ext_id("pi_")
        return "kinguin_balance", round(cents / 100.0, 2), self.ext_id("kgp_")

    def sync_plan(self, integration):
        _, _, _, median, sigma, rps, fail_rate = integration
        ms = int(min(30000, max(50, self.rng.lognormvariate(math.log(median), sigma))))
        fails = self.chance(fail_rate)
        records = int(ms / 1000.0 * rps * self.rng.uniform(0.6, 1.4))
        if fails:
            records = int(records * self.rng.uniform(0, 0.5))
        return ms, max(0, records), fails, (self.pick(SYNC_FAIL_REASONS) if fails else None)

    def processing_ms(self) -> int:
        return int(min(5000, self.rng.lognormvariate(math.log(45), 0.8)))


# --------------------------------------------------------------------------- reference data

def reference_sql(g: Gen) -> str:
    out = ["BEGIN;"]
    rows = ",\n  ".join("(%s, %s, %s, %s, %s)" % (lit(e), lit(n), lit(c), lit(m), ago(g.rng.uniform(1, 3) * 86400 * 30))
                        for e, n, c, m in ADMIN_USERS)
    out.append('INSERT INTO admin_users (email, name, "clerkId", "mfaEnabled", "createdAt") VALUES\n  %s\n'
               "ON CONFLICT (email) DO NOTHING;" % rows)
    rows = ",\n  ".join("(%s, %s, %s::text[])" % (lit(n), lit(d), lit("{" + ",".join('"%s"' % p for p in ps) + "}"))
                        for n, d, ps in ROLES)
    out.append("INSERT INTO admin_roles (name, description, permissions) VALUES\n  %s\n"
               "ON CONFLICT (name) DO NOTHING;" % rows)
    rows = ", ".join("(%s, %s)" % (lit(e), lit(r)) for e, r in ROLE_ASSIGNMENTS)
    out.append('INSERT INTO admin_role_assignments ("userId", "roleId", "assignedBy")\n'
               "SELECT u.id, r.id, %s FROM (VALUES %s) v(email, role)\n"
               "JOIN admin_users u ON u.email = v.email JOIN admin_roles r ON r.name = v.role\n"
               'WHERE NOT EXISTS (SELECT 1 FROM admin_role_assignments a WHERE a."userId" = u.id AND a."roleId" = r.id);'
               % (user_id("alice.martin@example.com"), rows))
    rows = ",\n  ".join("(%s, %s, %s, %s, %s)" % (lit(k), lit(n), lit(env), lit(states[env]), lit(impact))
                        for k, n, impact, states in FEATURE_FLAGS for env in ENVIRONMENTS)
    out.append("INSERT INTO admin_feature_flags (key, name, environment, enabled, impact) VALUES\n  %s\n"
               "ON CONFLICT (key, environment) DO NOTHING;" % rows)
    rows = ",\n  ".join("(%s, %s, %s, %s)" % (lit(n), lit(v), lit(ep), lit("****" + g.ext_id("")[-4:]))
                        for n, v, ep, *_ in INTEGRATIONS)
    out.append('INSERT INTO admin_integrations (name, vendor, endpoint, "maskedKey") VALUES\n  %s\n'
               "ON CONFLICT (name) DO NOTHING;" % rows)
    rows = ",\n  ".join("(%s, %s)" % (lit(n), lit(d)) for n, d in QUEUES)
    out.append("INSERT INTO admin_queues (name, description) VALUES\n  %s\nON CONFLICT (name) DO NOTHING;" % rows)
    rows = ",\n  ".join("(%s, %s, %s, %s)" % (lit(e), c, m, lit(ch)) for e, c, m, ch in ALERT_THRESHOLDS)
    out.append('INSERT INTO admin_alert_thresholds (environment, "cpuThreshold", "memoryThreshold", channel, "updatedBy")\n'
               "SELECT v.*, %s FROM (VALUES %s) v\nON CONFLICT (environment) DO NOTHING;"
               % (user_id("alice.martin@example.com"), rows))
    rows = ",\n  ".join("(%s, %s, %s)" % (
        lit(e),
        lit({"nodeEnv": e, "logLevel": "info" if e == "production" else "debug",
             "apiReplicas": {"production": 4, "staging": 2, "development": 1}[e],
             "paymentTimeoutMinutes": 20, "kinguinSandbox": e != "production"}),
        lit({"NOWPAYMENTS_API_KEY": "****", "KINGUIN_API_KEY": "****", "STRIPE_SECRET_KEY": "sk_****"}))
        for e in ENVIRONMENTS)
    out.append("INSERT INTO admin_environment_configs (environment, runtime, secrets) VALUES\n  %s\n"
               "ON CONFLICT (environment) DO NOTHING;" % rows)
    out.append("COMMIT;")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- initial history

def history_sql(g: Gen, n_orders: int, hours: float, last_hash: str | None) -> str:
    r = g.rng
    span = hours * 3600.0
    out = ["BEGIN;"]

    # ---- orders, payments, webhooks, reservations, e-mails (chronological)
    statuses = ["fulfilled", "failed", "underpaid", "refunded", "paid"]
    weights = [0.78, 0.10, 0.06, 0.05, 0.01]
    for age in sorted((r.uniform(60, span) for _ in range(n_orders)), reverse=True):
        status = g.pick(statuses, weights)
        if status == "paid":
            age = r.uniform(60, 600)          # paid but not yet fulfilled: recent only
        provider = g.pick(*ORDER_PROVIDERS)
        currency = g.pick(["EUR", "USD", "GBP"], [0.7, 0.2, 0.1])
        cents = g.total_cents()
        email = g.email()
        done = age - r.uniform(20, 900)
        refund_age = r.uniform(max(1.0, done - 86400), max(1.0, done - 60)) if status == "refunded" else None
        out.append('INSERT INTO orders ("userEmail", status, "totalCents", currency, "createdAt", "updatedAt") '
                   "VALUES (%s, %s, %d, %s, %s, %s);" % (lit(email), lit(status), cents, lit(currency), ago(age),
                                                 ago(refund_age if refund_age is not None else done)))
        out.append(email_hist(g, "order_confirmation", email, age, always_sent=True))
        if status != "failed" and g.chance(0.05):   # an earlier attempt that expired
            pc, pa, ext = g.payment_fields(provider, cents, currency)
            out.append('INSERT INTO payments ("orderId", provider, "externalId", status, "amountCents", "payCurrency", '
                       '"payAmount", "createdAt", "updatedAt") VALUES (currval(\'orders_id_seq\'), %s, %s, \'expired\', '
                       "%d, %s, %s, %s, %s);" % (lit(provider), lit(ext), cents, lit(pc), lit(pa), ago(age), ago(age - 10)))
            out.append(webhook_hist(g, provider, "expired", ext, age - 10))
        pay_status = {"fulfilled": "finished", "paid": "finished", "refunded": "finished",
                      "underpaid": "partially_paid", "failed": g.pick(["failed", "expired"], [0.35, 0.65])}[status]
        pc, pa, ext = g.payment_fields(provider, cents, currency)
        out.append('INSERT INTO payments ("orderId", provider, "externalId", status, "amountCents", "payCurrency", '
                   '"payAmount", "createdAt", "updatedAt") VALUES (currval(\'orders_id_seq\'), %s, %s, %s, %d, %s, %s, %s, %s);'
                   % (lit(provider), lit(ext), lit(pay_status), cents, lit(pc), lit(pa), ago(age - 5), ago(done)))
        out.append(webhook_hist(g, provider, "waiting", ext, age - 5))
        if pay_status != "expired":
            out.append(webhook_hist(g, provider, "confirming", ext, age - r.uniform(10, 20)))
        out.append(webhook_hist(g, provider, pay_status, ext, done))
        if status in ("fulfilled", "paid", "refunded"):
            res = "reserved" if status == "paid" else "delivered"
            out.append('INSERT INTO key_reservations ("orderId", "productSku", status, "createdAt", "updatedAt") '
                       "VALUES (currval('orders_id_seq'), %s, %s, %s, %s);" % (lit(g.pick(PRODUCTS)), lit(res), ago(done), ago(done - 3)))
            out.append(email_hist(g, "payment_received", email, done))
            if status != "paid":
                out.append("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, \"receivedAt\", "
                           "\"processingMs\") VALUES ('kinguin', 'order.delivered', %s, 'processed', %s, %d);"
                           % (lit(g.ext_id("kg_")), ago(done - 3), g.processing_ms()))
                out.append(email_hist(g, "key_delivery", email, done - 4))
            if status == "refunded":
                out.append(email_hist(g, "refund_issued", email, refund_age))
        elif status == "underpaid":
            out.append(email_hist(g, "payment_underpaid", email, done))

    # ---- stray webhook deliveries with bad signatures
    for age in sorted((r.uniform(0, span) for _ in range(max(1, n_orders // 80))), reverse=True):
        prov = g.pick(["nowpayments", "stripe", "kinguin"], [0.6, 0.3, 0.1])
        out.append("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, error, \"receivedAt\", "
                   "\"processingMs\") VALUES (%s, %s, %s, 'invalid_signature', 'HMAC signature mismatch', %s, %d);"
                   % (lit(prov), lit(EVENT_TYPES.get(prov, EVENT_TYPES["nowpayments"])["finished"]),
                      lit(g.ext_id("x_")), ago(age), r.randint(1, 4)))

    # ---- sync jobs
    jobs = []
    for age in sorted((r.uniform(120, span) for _ in range(max(5, n_orders // 2))), reverse=True):
        integ = g.pick(INTEGRATIONS, [5, 3, 4, 2, 2])
        ms, records, fails, reason = g.sync_plan(integ)
        jobs.append("(%s, %s, %s, %s, %s, %d, %d, %s, %s::jsonb)" % (
            lit(integ[0]), lit("failed" if fails else "succeeded"), lit(g.pick(["scheduled", "manual"], [0.9, 0.1])),
            ago(age), ago(age - ms / 1000.0), ms, records, lit(reason),
            lit(json.dumps({"plannedMs": ms, "plannedRecords": records, "willFail": fails}))))
    for part in chunks(jobs, 500):
        out.append('INSERT INTO admin_sync_jobs ("integrationId", status, trigger, "startedAt", "finishedAt", '
                   '"durationMs", "recordsProcessed", error, metadata, "createdAt")\n'
                   "SELECT i.id, v.status, v.trigger, v.started, v.finished, v.ms, v.records, v.error, v.meta, v.started\n"
                   "FROM (VALUES\n  %s\n) v(integration, status, trigger, started, finished, ms, records, error, meta)\n"
                   "JOIN admin_integrations i ON i.name = v.integration;" % ",\n  ".join(part))
    out.append('UPDATE admin_integrations i SET "lastSyncAt" = j.last FROM (SELECT "integrationId", max("finishedAt") '
               'AS last FROM admin_sync_jobs GROUP BY 1) j WHERE i.id = j."integrationId";')

    # ---- queue events
    evs = []
    for age in sorted((r.uniform(0, span) for _ in range(n_orders)), reverse=True):
        q = g.pick([x[0] for x in QUEUES], QUEUE_WEIGHTS)
        et = g.pick(["completed", "failed", "retried", "stalled"], [0.9, 0.05, 0.04, 0.01])
        payload = {"attemptsMade": 1 if et == "completed" else r.randint(1, 5)}
        if et == "failed":
            payload["failedReason"] = g.pick(QUEUE_FAIL_REASONS)
        evs.append("(%s, %s, %s, %s::jsonb, %s)" % (lit(q), lit(et), lit(str(r.randint(1, 10 ** 7))),
                                                   lit(json.dumps(payload, sort_keys=True)), ago(age)))
    for part in chunks(evs, 1000):
        out.append('INSERT INTO admin_queue_events ("queueId", "eventType", "jobId", payload, "createdAt")\n'
                   "SELECT q.id, v.et, v.job, v.payload, v.at FROM (VALUES\n  %s\n) v(queue, et, job, payload, at)\n"
                   "JOIN admin_queues q ON q.name = v.queue;" % ",\n  ".join(part))

    # ---- audit log (hash chain computed here)
    prev = last_hash
    rows = []
    actions, tts, ws = zip(*AUDIT_ACTIONS)
    for age in sorted((r.uniform(0, span) for _ in range(max(10, n_orders // 3))), reverse=True):
        i = r.choices(range(len(actions)), weights=ws)[0]
        actor = g.pick(HUMANS)
        tid = str(r.randint(1, max(1, n_orders)))
        env = g.pick(ENVIRONMENTS, [0.6, 0.3, 0.1])
        meta = {"ip": "10.0.%d.%d" % (r.randint(0, 9), r.randint(2, 250))}
        h = hashlib.sha256("|".join([prev or "", actions[i], actor, tts[i], tid, "%.3f" % age]).encode()).hexdigest()
        rows.append("(%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)" % (
            lit(actions[i]), lit(actor), lit(tts[i]), lit(tid), lit(env), lit(json.dumps(meta)), lit(prev), lit(h), ago(age)))
        prev = h
    for part in chunks(rows, 1000):
        out.append('INSERT INTO admin_audit_logs (action, "actorId", "targetType", "targetId", environment, metadata, '
                   '"prevHash", "hashSignature", "createdAt")\n'
                   "SELECT v.action, u.id, v.tt, v.tid, v.env, v.meta, v.prev, v.hash, v.at FROM (VALUES\n  %s\n) "
                   "v(action, email, tt, tid, env, meta, prev, hash, at)\nJOIN admin_users u ON u.email = v.email "
                   "ORDER BY v.at;" % ",\n  ".join(part))

    # ---- approvals (+ history)
    types, tw = zip(*APPROVAL_TYPES)
    for age in sorted((r.uniform(600, span) for _ in range(max(3, n_orders // 30))), reverse=True):
        rt = g.pick(types, tw)
        requester = g.pick(HUMANS)
        recent = age < 4 * 3600
        status = "pending" if recent and g.chance(0.4) else g.pick(["approved", "rejected"], [0.8, 0.2])
        target, summary, details = approval_subject(g, rt)
        resolver = g.pick([a for a in APPROVERS if a != requester])
        resolved_age = age - r.uniform(60, 3 * 3600)
        if status == "pending":
            out.append('INSERT INTO admin_approvals ("requestType", target, summary, details, status, "requestedBy", '
                       'reviewers, "createdAt", "updatedAt") VALUES (%s, %s, %s, %s, \'pending\', %s, %s, %s, %s);'
                       % (lit(rt), lit(target), lit(summary), lit(details), user_id(requester), lit(APPROVERS), ago(age), ago(age)))
        else:
            out.append('INSERT INTO admin_approvals ("requestType", target, summary, details, status, "requestedBy", '
                       'reviewers, "resolvedBy", "resolvedAt", "createdAt", "updatedAt") VALUES '
                       "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);"
                       % (lit(rt), lit(target), lit(summary), lit(details), lit(status), user_id(requester),
                          lit(APPROVERS), user_id(resolver), ago(resolved_age), ago(age), ago(resolved_age)))
        out.append('INSERT INTO admin_approval_history ("approvalId", "actorId", action, comments, "createdAt") VALUES '
                   "(currval('admin_approvals_id_seq'), %s, 'created', NULL, %s);" % (user_id(requester), ago(age)))
        if status != "pending":
            out.append('INSERT INTO admin_approval_history ("approvalId", "actorId", action, comments, "createdAt") VALUES '
                       "(currval('admin_approvals_id_seq'), %s, %s, %s, %s);"
                       % (user_id(resolver), lit(status), lit("LGTM" if status == "approved" else "needs more context"),
                          ago(resolved_age)))

    # ---- feature-flag history: a few past toggles per flag ending in the current state
    for key, _, _, states in FEATURE_FLAGS:
        for env in ENVIRONMENTS:
            n = r.randint(0, 3)
            state = states[env]
            toggles = []
            for age in sorted((r.uniform(600, span) for _ in range(n))):   # newest first
                toggles.append((age, state))
                state = not state
            for age, enabled in reversed(toggles):
                out.append('INSERT INTO admin_flag_history ("flagId", environment, enabled, "actorId", metadata, "createdAt") '
                           "SELECT f.id, f.environment, %s, %s, %s, %s FROM admin_feature_flags f "
                           "WHERE f.key = %s AND f.environment = %s;"
                           % (lit(enabled), user_id(g.pick(HUMANS)), lit({"reason": "history"}), ago(age), lit(key), lit(env)))

    # ---- deployments
    for age in sorted((r.uniform(600, span) for _ in range(max(2, int(hours / 6)))), reverse=True):
        env = g.pick(ENVIRONMENTS, [0.3, 0.5, 0.2])
        st = g.pick(["succeeded", "failed", "rolled_back"], [0.88, 0.07, 0.05])
        out.append('INSERT INTO admin_deployments (environment, summary, "actorId", status, metadata, "createdAt", "finishedAt") '
                   "VALUES (%s, %s, %s, %s, %s, %s, %s);"
                   % (lit(env), lit("Deploy api@%s" % g.ext_id("")[:7]), user_id(g.pick(HUMANS)), lit(st),
                      lit({"commit": g.ext_id("")[:10]}), ago(age), ago(age - r.uniform(60, 600))))

    # ---- system health: every 10 minutes per environment
    rows = []
    t = span
    while t > 0:
        for env in ENVIRONMENTS:
            rows.append(health_row(g, env, t))
        t -= 600
    for part in chunks(rows, 1000):
        out.append(HEALTH_INSERT % ",\n  ".join(part))

    out.append("COMMIT;")
    return "\n".join(out) + "\n"


HEALTH_INSERT = ('INSERT INTO admin_system_health (environment, "cpuUsage", "memoryUsage", "apiLatencyMs", '
                 '"apiErrorRate", alerts, "createdAt") VALUES\n  %s;')


def health_row(g: Gen, env: str, age: float) -> str:
    r = g.rng
    g.cpu[env] = min(99.0, max(3.0, g.cpu[env] + r.gauss(0, 4) + (40 - g.cpu[env]) * 0.1))
    g.mem[env] = min(99.0, max(10.0, g.mem[env] + r.gauss(0, 1.5) + (60 - g.mem[env]) * 0.05))
    alerts = []
    if g.cpu[env] > 80:
        alerts.append({"type": "cpu", "value": round(g.cpu[env], 1)})
    return "(%s, %.2f, %.2f, %d, %.5f, %s, %s)" % (
        lit(env), g.cpu[env], g.mem[env], int(r.lognormvariate(math.log(120), 0.4)),
        min(1.0, abs(r.gauss(0.004, 0.004))), lit(alerts), ago(age))


def webhook_hist(g: Gen, provider: str, status: str, ext: str, age: float) -> str:
    base = ("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", \"paymentId\", outcome, error, "
            "\"receivedAt\", \"processingMs\") VALUES (%s, %s, %s, currval('payments_id_seq'), %%s, %%s, %%s, %%d);"
            % (lit(provider), lit(EVENT_TYPES[provider][status]), lit(ext)))
    rows = []
    if g.chance(0.01):   # first delivery failed, provider retried
        rows.append(base % ("'failed'", lit("database timeout"), ago(age), g.processing_ms() + 2000))
        age -= g.rng.uniform(30, 120)
    rows.append(base % ("'processed'", "NULL", ago(age), g.processing_ms()))
    if g.chance(0.03):
        rows.append(base % ("'duplicate'", "NULL", ago(age - g.rng.uniform(1, 60)), g.rng.randint(1, 6)))
    return "\n".join(rows)


def email_hist(g: Gen, template: str, recipient: str, age: float, always_sent: bool = False) -> str:
    st = "sent" if always_sent else g.pick(["sent", "failed", "bounced"], [0.955, 0.025, 0.02])
    err = {"sent": None, "failed": "SMTP 451 temporary failure", "bounced": "550 mailbox unavailable"}[st]
    return ('INSERT INTO email_sends ("orderId", template, recipient, status, error, "createdAt") VALUES '
            "(currval('orders_id_seq'), %s, %s, %s, %s, %s);" % (lit(template), lit(recipient), lit(st), lit(err), ago(age)))


def approval_subject(g: Gen, rt: str):
    r = g.rng
    if rt == "feature_flag_toggle":
        key = g.pick(PROD_TOGGLEABLE)
        on = g.chance(0.5)
        return key, "%s %s in production" % ("Enable" if on else "Disable", key), {"environment": "production", "enabled": on}
    if rt == "config_change":
        k = g.pick(["paymentTimeoutMinutes", "apiReplicas", "logLevel"])
        env = g.pick(ENVIRONMENTS)
        return env, "Change %s in %s" % (k, env), {"environment": env, "key": k}
    if rt == "key_rotation":
        name = g.pick([i[0] for i in INTEGRATIONS])
        return name, "Rotate API key for %s" % name, {"integration": name}
    if rt == "queue_purge":
        q = g.pick([x[0] for x in QUEUES])
        return q, "Purge failed jobs in %s" % q, {"queue": q}
    if rt == "refund_override":
        oid = r.randint(1, 5000)
        return str(oid), "Refund order #%d outside the policy window" % oid, {"orderId": oid}
    role = g.pick(["ops", "support", "super_admin"])
    return role, "Grant %s to %s" % (role, g.pick(HUMANS)), {"role": role}


# --------------------------------------------------------------------------- live activity

def live_sql(g: Gen, rate: float, tick: int) -> str:
    r = g.rng
    out = ["BEGIN;", "SELECT setseed(%.6f);" % r.uniform(-1, 1)]

    # new orders, each with a payment waiting for funds
    for _ in range(g.poisson(rate)):
        provider = g.pick(*ORDER_PROVIDERS)
        currency = g.pick(["EUR", "USD", "GBP"], [0.7, 0.2, 0.1])
        cents = g.total_cents()
        email = g.email()
        pc, pa, ext = g.payment_fields(provider, cents, currency)
        out.append('INSERT INTO orders ("userEmail", status, "totalCents", currency) VALUES (%s, \'pending\', %d, %s);'
                   % (lit(email), cents, lit(currency)))
        out.append('INSERT INTO payments ("orderId", provider, "externalId", status, "amountCents", "payCurrency", '
                   '"payAmount") VALUES (currval(\'orders_id_seq\'), %s, %s, \'waiting\', %d, %s, %s);'
                   % (lit(provider), lit(ext), cents, lit(pc), lit(pa)))
        out.append('INSERT INTO webhook_logs (provider, "eventType", "externalId", "paymentId", outcome, "processingMs") '
                   "VALUES (%s, %s, %s, currval('payments_id_seq'), 'processed', %d);"
                   % (lit(provider), lit(EVENT_TYPES[provider]["waiting"]), lit(ext), g.processing_ms()))
        out.append('INSERT INTO email_sends ("orderId", template, recipient, status) VALUES '
                   "(currval('orders_id_seq'), 'order_confirmation', %s, 'sent');" % lit(email))

    # order / payment state machine: oldest first
    n_confirm = g.poisson(rate * 0.93)
    n_paid = g.poisson(rate * 0.85)
    n_under = g.poisson(rate * 0.06)
    n_fail = g.poisson(rate * 0.07)
    out.append(transition("pending", "confirming", "confirming", 2, n_confirm))
    out.append(transition("confirming", "paid", "finished", 3, n_paid, ctes=[
        'k AS (INSERT INTO key_reservations ("orderId", "productSku", status) '
        "SELECT id, (ARRAY[%s])[1 + floor(random() * %d)::int], 'reserved' FROM o RETURNING 1)"
        % (", ".join(lit(p) for p in PRODUCTS), len(PRODUCTS)),
        "kw AS (INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, \"processingMs\") "
        "SELECT 'kinguin', 'order.reserved', 'kg_' || id, 'processed', (15 + random() * 150)::int FROM o RETURNING 1)",
    ], final=email_live("payment_received")))
    out.append(transition("confirming", "underpaid", "partially_paid", 3, n_under, final=email_live("payment_underpaid")))
    out.append(transition("confirming", "failed", "failed", 3, n_fail))
    out.append(transition("pending", "failed", "expired", 45, 10))      # abandoned checkouts expire
    out.append(
        "WITH o AS (UPDATE orders SET status = 'fulfilled', \"updatedAt\" = now() WHERE id IN (\n"
        "  SELECT id FROM orders WHERE status = 'paid' AND \"updatedAt\" < now() - interval '2 seconds' "
        "ORDER BY id LIMIT %d) RETURNING id, \"userEmail\"),\n"
        "k AS (UPDATE key_reservations SET status = 'delivered', \"updatedAt\" = now() "
        "WHERE \"orderId\" IN (SELECT id FROM o) AND status = 'reserved' RETURNING 1),\n"
        "w AS (INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, \"processingMs\") "
        "SELECT 'kinguin', 'order.delivered', 'kg_' || id, 'processed', (15 + random() * 200)::int FROM o RETURNING 1)\n"
        "%s" % (max(1, g.poisson(rate)), email_live("key_delivery")))
    if g.chance(0.02):   # support refunds the oldest underpaid order
        out.append(refund("underpaid", g.pick(["dev.patel@example.com", "farid.haddad@example.com"])))
    if g.chance(0.005):
        out.append(refund("fulfilled", g.pick(["dev.patel@example.com", "farid.haddad@example.com"])))

    # webhook noise
    if g.chance(0.12):   # provider re-delivers an event we already processed
        out.append("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", \"paymentId\", outcome, \"processingMs\") "
                   "SELECT provider, \"eventType\", \"externalId\", \"paymentId\", 'duplicate', 1 + (random() * 5)::int "
                   "FROM (SELECT * FROM webhook_logs WHERE outcome = 'processed' ORDER BY id DESC LIMIT 20) w "
                   "ORDER BY random() LIMIT 1;")
    if g.chance(0.04):
        prov = g.pick(["nowpayments", "stripe", "kinguin"], [0.6, 0.3, 0.1])
        out.append("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, error, \"processingMs\") "
                   "VALUES (%s, %s, %s, 'invalid_signature', 'HMAC signature mismatch', %d);"
                   % (lit(prov), lit(EVENT_TYPES[prov]["finished"]), lit(g.ext_id("x_")), r.randint(1, 4)))
    if g.chance(0.02):
        out.append("INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", outcome, error, \"processingMs\") "
                   "VALUES ('kinguin', 'order.delivered', %s, 'failed', %s, %d);"
                   % (lit(g.ext_id("kg_")), lit(g.pick(["order not found", "Kinguin API 503", "deadlock detected"])),
                      r.randint(200, 4000)))

    # sync jobs: start some, finish those whose planned duration has elapsed
    for _ in range(g.poisson(0.5)):
        integ = g.pick(INTEGRATIONS, [5, 3, 4, 2, 2])
        ms, records, fails, reason = g.sync_plan(integ)
        trigger = g.pick(["scheduled", "manual"], [0.85, 0.15])
        out.append('INSERT INTO admin_sync_jobs ("integrationId", status, trigger, metadata) '
                   "SELECT id, 'running', %s, %s FROM admin_integrations WHERE name = %s;"
                   % (lit(trigger), lit({"plannedMs": ms, "plannedRecords": records, "willFail": fails,
                                         "failReason": reason}), lit(integ[0])))
        if trigger == "manual":
            out.append(audit_simple("sync_trigger", g.pick(HUMANS), "integration", integ[0], "production"))
    # "finishedAt" = "startedAt" + planned duration, which is always later than
    # anything finished by an earlier batch: safe for a "finishedAt" watermark.
    out.append(
        "WITH f AS (UPDATE admin_sync_jobs SET\n"
        "    status = CASE WHEN (metadata->>'willFail')::boolean THEN 'failed' ELSE 'succeeded' END,\n"
        "    \"durationMs\" = (metadata->>'plannedMs')::int,\n"
        "    \"finishedAt\" = \"startedAt\" + (metadata->>'plannedMs')::int * interval '1 millisecond',\n"
        "    \"recordsProcessed\" = (metadata->>'plannedRecords')::int,\n"
        "    error = metadata->>'failReason'\n"
        "  WHERE status = 'running' AND metadata ? 'plannedMs'\n"
        "    AND \"startedAt\" + (metadata->>'plannedMs')::int * interval '1 millisecond' <= now()\n"
        "  RETURNING \"integrationId\", \"finishedAt\")\n"
        "UPDATE admin_integrations i SET \"lastSyncAt\" = f.last, \"updatedAt\" = now()\n"
        "FROM (SELECT \"integrationId\", max(\"finishedAt\") AS last FROM f GROUP BY 1) f WHERE i.id = f.\"integrationId\";")

    # queue events
    rows = []
    for _ in range(g.poisson(rate * 2.5)):
        q = g.pick([x[0] for x in QUEUES], QUEUE_WEIGHTS)
        et = g.pick(["completed", "failed", "retried", "stalled"], [0.9, 0.05, 0.04, 0.01])
        payload = {"attemptsMade": 1 if et == "completed" else r.randint(1, 5)}
        if et == "failed":
            payload["failedReason"] = g.pick(QUEUE_FAIL_REASONS)
        rows.append("(%s, %s, %s, %s::jsonb)" % (lit(q), lit(et), lit(str(r.randint(1, 10 ** 7))),
                                                lit(json.dumps(payload, sort_keys=True))))
    if rows:
        out.append('INSERT INTO admin_queue_events ("queueId", "eventType", "jobId", payload)\n'
                   "SELECT q.id, v.et, v.job, v.payload FROM (VALUES %s) v(queue, et, job, payload) "
                   "JOIN admin_queues q ON q.name = v.queue;" % ", ".join(rows))
        out.append("UPDATE admin_queues q SET \"lastFailedReason\" = e.payload->>'failedReason', \"updatedAt\" = now() "
                   "FROM (SELECT DISTINCT ON (\"queueId\") \"queueId\", payload FROM admin_queue_events "
                   "WHERE \"eventType\" = 'failed' AND \"createdAt\" > now() - interval '5 seconds' ORDER BY \"queueId\", id DESC) e "
                   "WHERE q.id = e.\"queueId\";")

    # audit events by admins
    actions, tts, ws = zip(*AUDIT_ACTIONS)
    for _ in range(g.poisson(0.6)):
        i = r.choices(range(len(actions)), weights=ws)[0]
        out.append(audit_simple(actions[i], g.pick(HUMANS), tts[i], str(r.randint(1, 10 ** 5)),
                                g.pick(ENVIRONMENTS, [0.6, 0.3, 0.1]),
                                {"ip": "10.0.%d.%d" % (r.randint(0, 9), r.randint(2, 250))}))

    # approvals: requested now and then, resolved after 20 s or more
    if g.chance(0.08):
        types, tw = zip(*APPROVAL_TYPES)
        rt = g.pick(types, tw)
        requester = g.pick(HUMANS)
        target, summary, details = approval_subject(g, rt)
        out.append('INSERT INTO admin_approvals ("requestType", target, summary, details, status, "requestedBy", reviewers) '
                   "VALUES (%s, %s, %s, %s, 'pending', %s, %s);"
                   % (lit(rt), lit(target), lit(summary), lit(details), user_id(requester), lit(APPROVERS)))
        out.append('INSERT INTO admin_approval_history ("approvalId", "actorId", action) VALUES '
                   "(currval('admin_approvals_id_seq'), %s, 'created');" % user_id(requester))
        out.append(audit_sql("SELECT 'approval_request'::text AS action, %s AS actor, 'approval'::text AS tt, "
                             "currval('admin_approvals_id_seq')::text AS tid, NULL::text AS env, %s AS meta"
                             % (user_id(requester), lit({"requestType": rt}))))
    if g.chance(0.1):
        out.append(resolve_approval(g.pick(["approved", "rejected"], [0.8, 0.2]), g.pick(APPROVERS), r.randint(20, 60)))

    # direct flag toggles outside production
    if g.chance(0.01):
        key = g.pick([f[0] for f in FEATURE_FLAGS])
        env = g.pick(["staging", "development"])
        actor = g.pick(HUMANS)
        out.append(
            "WITH f AS (UPDATE admin_feature_flags SET enabled = NOT enabled, \"updatedAt\" = now() "
            "WHERE key = %s AND environment = %s RETURNING id, environment, enabled),\n"
            "h AS (INSERT INTO admin_flag_history (\"flagId\", environment, enabled, \"actorId\", metadata) "
            "SELECT id, environment, enabled, %s, '{\"via\":\"admin-ui\"}' FROM f RETURNING 1)\n"
            "SELECT count(*) FROM h;" % (lit(key), lit(env), user_id(actor)))
        out.append(audit_simple("flag_toggle", actor, "feature_flag", key, env))

    # alert thresholds get tuned occasionally
    if g.chance(1 / 150.0):
        env = g.pick(["production", "staging"])
        cpu = g.pick([70, 75, 80, 85]) if env == "production" else g.pick([80, 85, 90, 95])
        mem = g.pick([80, 85, 90]) if env == "production" else g.pick([85, 90, 95])
        actor = g.pick(APPROVERS)
        out.append('UPDATE admin_alert_thresholds SET "cpuThreshold" = %d, "memoryThreshold" = %d, "updatedAt" = now(), '
                   '"updatedBy" = %s WHERE environment = %s;' % (cpu, mem, user_id(actor), lit(env)))
        out.append(audit_simple("alert_threshold_update", actor, "alert_threshold", env, env,
                                {"cpuThreshold": cpu, "memoryThreshold": mem}))

    # deployments
    if g.chance(1 / 240.0):
        env = g.pick(ENVIRONMENTS, [0.3, 0.5, 0.2])
        actor = g.pick(HUMANS)
        out.append('INSERT INTO admin_deployments (environment, summary, "actorId", status, metadata) '
                   "VALUES (%s, %s, %s, 'in_progress', %s);"
                   % (lit(env), lit("Deploy api@%s" % g.ext_id("")[:7]), user_id(actor), lit({"commit": g.ext_id("")[:10]})))
        out.append(audit_simple("deployment_start", actor, "deployment", env, env))
    out.append("UPDATE admin_deployments SET status = CASE WHEN random() < 0.9 THEN 'succeeded' ELSE 'failed' END, "
               "\"finishedAt\" = now() WHERE status = 'in_progress' AND \"createdAt\" < now() - interval '30 seconds';")

    # system health samples every 10 s
    if tick % 10 == 0:
        out.append(HEALTH_INSERT % ",\n  ".join(health_row(g, env, 0) for env in ENVIRONMENTS))

    out.append("COMMIT;")
    return "\n".join(out) + "\n"


def transition(old, new, pay_new, min_age, limit, ctes=(), final=None) -> str:
    """Move up to `limit` of the oldest orders in `old` (untouched for min_age s) to `new`,
    their open payment to `pay_new`, and log the provider's webhook.  `ctes` are further
    WITH items and `final` the closing statement; all may read the moved orders as `o`."""
    if limit <= 0:
        return "-- %s -> %s: none this round" % (old, new)
    items = [
        "o AS (UPDATE orders SET status = %s, \"updatedAt\" = now() WHERE id IN (\n"
        "  SELECT id FROM orders WHERE status = %s AND \"updatedAt\" < now() - interval '%d seconds' "
        "ORDER BY id LIMIT %d) RETURNING id, \"userEmail\")" % (lit(new), lit(old), min_age, limit),
        "p AS (UPDATE payments SET status = %s, \"updatedAt\" = now() WHERE \"orderId\" IN (SELECT id FROM o) "
        "AND status IN ('waiting', 'confirming') RETURNING id, provider, \"externalId\")" % lit(pay_new),
        "w AS (INSERT INTO webhook_logs (provider, \"eventType\", \"externalId\", \"paymentId\", outcome, \"processingMs\") "
        "SELECT provider, %s, \"externalId\", id, 'processed', (10 + random() * 250)::int FROM p RETURNING 1)"
        % event_type_sql("provider", pay_new),
    ] + list(ctes)
    return "WITH " + ",\n".join(items) + "\n" + (final or "SELECT count(*) FROM w;")


def email_live(template: str) -> str:
    """Statement (the main part of a WITH o ...) sending `template` to every row of o."""
    return ('INSERT INTO email_sends ("orderId", template, recipient, status, error)\n'
            "SELECT id, %s, \"userEmail\",\n"
            "  CASE WHEN x < 0.955 THEN 'sent' WHEN x < 0.98 THEN 'failed' ELSE 'bounced' END,\n"
            "  CASE WHEN x < 0.955 THEN NULL WHEN x < 0.98 THEN 'SMTP 451 temporary failure' "
            "ELSE '550 mailbox unavailable' END\n"
            "FROM (SELECT o.*, random() AS x FROM o) o;" % lit(template))


def refund(old: str, actor: str) -> str:
    return (
        "WITH o AS (UPDATE orders SET status = 'refunded', \"updatedAt\" = now() WHERE id = (\n"
        "  SELECT id FROM orders WHERE status = %s ORDER BY id LIMIT 1) RETURNING id, \"userEmail\"),\n"
        "e AS (INSERT INTO email_sends (\"orderId\", template, recipient, status) "
        "SELECT id, 'refund_issued', \"userEmail\", 'sent' FROM o RETURNING 1)\n"
        "%s" % (lit(old), audit_sql("SELECT 'order_refund'::text AS action, %s AS actor, 'order'::text AS tt, "
                                    "id::text AS tid, 'production'::text AS env, %s AS meta FROM o"
                                    % (user_id(actor), lit({"from": old})))))


def resolve_approval(decision: str, actor: str, min_age: int) -> str:
    """Approve/reject the oldest pending approval; an approved production flag toggle is applied."""
    s = (
        "WITH a AS (UPDATE admin_approvals SET status = %(d)s, \"resolvedBy\" = %(u)s, \"resolvedAt\" = now(), "
        "\"updatedAt\" = now() WHERE id = (\n"
        "  SELECT id FROM admin_approvals WHERE status = 'pending' AND \"createdAt\" < now() - interval '%(age)d seconds' "
        "AND (\"requestedBy\" IS DISTINCT FROM %(u)s) ORDER BY id LIMIT 1)\n"
        "  RETURNING id, \"requestType\", target, details, \"resolvedBy\"),\n"
        "h AS (INSERT INTO admin_approval_history (\"approvalId\", \"actorId\", action, comments) "
        "SELECT id, \"resolvedBy\", %(d)s, %(c)s FROM a RETURNING 1),\n"
        "f AS (UPDATE admin_feature_flags ff SET enabled = (a.details->>'enabled')::boolean, \"updatedAt\" = now() "
        "FROM a WHERE %(d)s = 'approved' AND a.\"requestType\" = 'feature_flag_toggle' AND ff.key = a.target "
        "AND ff.environment = a.details->>'environment' RETURNING ff.id, ff.environment, ff.enabled, a.\"resolvedBy\" AS actor, a.id AS approval),\n"
        "fh AS (INSERT INTO admin_flag_history (\"flagId\", environment, enabled, \"actorId\", metadata) "
        "SELECT id, environment, enabled, actor, jsonb_build_object('via', 'approval', 'approvalId', approval) FROM f RETURNING 1)\n"
        % {"d": lit(decision), "u": user_id(actor), "age": min_age,
           "c": lit("LGTM" if decision == "approved" else "rejected: needs more context")})
    return audit_sql("SELECT %s::text AS action, \"resolvedBy\" AS actor, 'approval'::text AS tt, id::text AS tid, "
                     "NULL::text AS env, jsonb_build_object('requestType', \"requestType\") AS meta FROM a"
                     % lit("approval_" + ("approve" if decision == "approved" else "reject")), cte=s)


# --------------------------------------------------------------------------- psql runner

def find_psql(explicit: str | None) -> str:
    if explicit:
        return explicit
    found = shutil.which("psql")
    if found:
        return found
    candidates = []
    if os.environ.get("TELLTALE_PG_BIN"):
        candidates.append(os.path.join(os.environ["TELLTALE_PG_BIN"], "psql"))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    sys.exit("seed.py: psql not found (install postgresql-client or pass --psql)")


class Psql:
    def __init__(self, psql: str, dsn: str):
        self.cmd = [psql, "--dbname=" + dsn, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        self.env = dict(os.environ)
        self.env.setdefault("PGAPPNAME", "telltale-seed")
        self.env.setdefault("PGCONNECT_TIMEOUT", "5")
        self.env["PGOPTIONS"] = (self.env.get("PGOPTIONS", "") + " -c statement_timeout=120000").strip()

    def run(self, sql: str, timeout: float) -> tuple[bool, str, str]:
        """Run a script; (ok, stdout, error message)."""
        try:
            p = subprocess.run(self.cmd, input=sql, capture_output=True, text=True, timeout=timeout,
                               env=self.env, start_new_session=True)   # no terminal ^C mid-transaction
        except subprocess.TimeoutExpired:
            return False, "", "psql timed out after %.0fs" % timeout
        except OSError as e:
            return False, "", "cannot run psql: %s" % e
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            msg = next((ln for ln in lines if "ERROR" in ln or "FATAL" in ln or "error:" in ln), lines[0] if lines else "")
            return False, p.stdout, "psql exit %d: %s" % (p.returncode, msg.strip())
        return True, p.stdout, ""


# --------------------------------------------------------------------------- main

STOP = threading.Event()


def log(msg: str) -> None:
    print("%s seed: %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg), file=sys.stderr, flush=True)


def until_ok(what: str, fn, retry: float) -> bool:
    """Call fn() -> (ok, err) until it succeeds; False if asked to stop first."""
    last = None
    while not STOP.is_set():
        ok, err = fn()
        if ok:
            if last is not None:
                log("%s: succeeded after retrying" % what)
            return True
        if err != last:
            log("%s failed (%s); retrying every %gs" % (what, err, retry))
            last = err
        STOP.wait(retry)
    return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="libpq URL/conninfo (default $TELLTALE_SEED_DSN, $TELLTALE_PG_ADMIN_DSN, $DATABASE_URL)")
    ap.add_argument("--initial", type=int, default=3000, metavar="N",
                    help="orders in the initial history (default 3000; 0 = none); skipped if orders is not empty")
    ap.add_argument("--rate", type=float, default=1.0, metavar="R", help="new orders per second (default 1)")
    ap.add_argument("--once", action="store_true", help="initial batch plus one round of activity, then exit")
    ap.add_argument("--seed", type=int, help="random seed (default: random, logged)")
    ap.add_argument("--history-hours", type=float, default=72.0, metavar="H",
                    help="time span of the initial history (default 72)")
    ap.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between batches (default 1)")
    ap.add_argument("--retry", type=float, default=3.0, metavar="S", help="seconds between retries (default 3)")
    ap.add_argument("--schema", metavar="FILE", help="load this (idempotent) schema file first")
    ap.add_argument("--psql", metavar="PATH", help="psql binary")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every batch")
    args = ap.parse_args(argv)

    dsn = args.dsn or os.environ.get("TELLTALE_SEED_DSN") or os.environ.get("TELLTALE_PG_ADMIN_DSN") \
        or os.environ.get("DATABASE_URL")
    if not dsn:
        ap.error("no --dsn given and none of TELLTALE_SEED_DSN, TELLTALE_PG_ADMIN_DSN, DATABASE_URL is set")
    if args.initial < 0 or args.rate < 0 or args.interval <= 0 or args.retry <= 0 or args.history_hours <= 0:
        ap.error("--initial/--rate must be >= 0, --interval/--retry/--history-hours > 0")

    def on_signal(signum, _frame):
        if not STOP.is_set():
            log("received %s, stopping" % signal.Signals(signum).name)
        STOP.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    g = Gen(seed)
    db = Psql(find_psql(args.psql), dsn)
    log("seed %d, rate %g orders/s, psql %s" % (seed, args.rate, db.cmd[0]))

    def step(sql, timeout=60.0):
        return lambda: db.run(sql, timeout)[0::2]

    if args.schema:
        with open(args.schema, encoding="utf-8") as f:
            schema = f.read()
        if not until_ok("loading %s" % args.schema, step(schema), args.retry):
            return 0
    if not until_ok("reference data", step(reference_sql(g)), args.retry):
        return 0

    if args.initial > 0:
        history = {}

        def initial():
            ok, out, err = db.run("SELECT (SELECT count(*) FROM orders) || '|' || coalesce((SELECT \"hashSignature\" "
                                  "FROM admin_audit_logs ORDER BY id DESC LIMIT 1), '');", 30)
            if not ok:
                return ok, err
            count, _, last_hash = out.strip().partition("|")
            if int(count) > 0:
                log("orders already has %s rows: skipping the initial history" % count)
                return True, ""
            if "sql" not in history:      # generate once so retries insert the same data
                history["sql"] = history_sql(g, args.initial, args.history_hours, last_hash or None)
            t0 = time.monotonic()
            ok, _, err = db.run(history["sql"], 600)
            if ok:
                log("initial history: %d orders over %gh in %.1fs" % (args.initial, args.history_hours, time.monotonic() - t0))
            return ok, err
        if not until_ok("initial history", initial, args.retry):
            return 0

    tick, ok_batches, failed = 0, 0, 0
    last_report = time.monotonic()
    next_at = time.monotonic()
    while not STOP.is_set():
        tick += 1
        sql = live_sql(g, args.rate, tick)
        ok, _, err = db.run(sql, 30)
        if ok:
            ok_batches += 1
            if failed:
                log("database reachable again after %d failed batch(es)" % failed)
                failed = 0
            if args.verbose:
                log("batch %d ok" % tick)
        else:
            failed += 1
            if failed == 1 or failed % 20 == 0:
                log("batch failed (%s); retrying every %gs" % (err, args.retry))
        if args.once:
            if ok:
                break
            STOP.wait(args.retry)
            continue
        if time.monotonic() - last_report >= 60:
            log("%d batches written so far" % ok_batches)
            last_report = time.monotonic()
        next_at += args.interval if ok else args.retry
        STOP.wait(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at, time.monotonic() - args.interval)   # do not try to catch up after stalls
    log("done (%d live batches written)" % ok_batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
