#!/usr/bin/env bash
# Run by the postgres image on first start (an empty data volume), before
# 20-admin-portal-schema.sql, whose last statement grants SELECT on the demo tables to
# the role created here. Telltale connects as `telltale`: read-only but for its own alerting
# tables, member of pg_monitor
# so that it sees every backend in pg_stat_activity and can read pg_replication_slots.
set -e

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v telltale_password="${TELLTALE_DB_PASSWORD:-telltale}" <<'SQL'
SELECT format('CREATE ROLE telltale LOGIN PASSWORD %L', :'telltale_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telltale') \gexec
GRANT pg_monitor TO telltale;
-- Alerting's tables are Telltale's own: `telltale migrate` creates them as this role (its
-- writes are READ WRITE transactions; everything else stays read-only by default).
GRANT CREATE ON SCHEMA public TO telltale;
ALTER ROLE telltale SET default_transaction_read_only = on;
SQL
