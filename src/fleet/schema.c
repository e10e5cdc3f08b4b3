/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fleet's schema, as an append-only list of migrations (docs/FLEET.md "Schema"). A
 * migration is never edited once released: a change is a new entry at the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "db.h"

static const char *const migrations[] = {
    /* 1: the whole first schema */
    "CREATE TABLE trust ("
    "  id int PRIMARY KEY CHECK (id = 1),"
    "  ak_anchors text NOT NULL, device_cas text NOT NULL,"
    "  rim_anchors text NOT NULL, rim_cas text NOT NULL,"
    "  crls text," /* NULL: no revocation checking, said explicitly */
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE device_groups ("
    "  id serial PRIMARY KEY,"
    "  name text NOT NULL UNIQUE,"
    "  interval_s int NOT NULL CHECK (interval_s BETWEEN 1 AND 86400),"
    "  pcrs int[]," /* NULL: the reference values' pcrs */
    "  pin_ak boolean NOT NULL DEFAULT true,"
    "  min_version bigint NOT NULL DEFAULT 0,"
    "  refs_json bytea NOT NULL, refs_sig bytea NOT NULL, refs_chain bytea NOT NULL,"
    "  rim_version bigint NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE devices ("
    "  id serial PRIMARY KEY,"
    "  name text NOT NULL UNIQUE,"
    "  group_id int NOT NULL REFERENCES device_groups(id),"
    "  address text," /* NULL: push mode (the device is not reachable) */
    "  ak_name bytea NOT NULL UNIQUE CHECK (length(ak_name) = 34),"
    "  cert_chain_pem text NOT NULL,"
    "  subject text NOT NULL,"
    "  enrolled_at timestamptz NOT NULL DEFAULT now(),"
    "  last_seen timestamptz," /* the last evidence received, whatever its verdict */
    "  last_verdict_at timestamptz,"
    "  last_trusted boolean,"
    "  last_failed_check text,"
    "  last_reset_count bigint," /* the TPM's reset count of the last good quote */
    "  missing_alerted_at timestamptz);"
    /* One row per device: when it is due, and who holds it. attempt counts claims: a verdict
     * is recorded only by the holder of the current attempt. */
    "CREATE TABLE work ("
    "  device_id int PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,"
    "  due_at timestamptz NOT NULL DEFAULT now(),"
    "  attempt bigint NOT NULL DEFAULT 0,"
    "  claimed_by text,"
    "  claimed_until timestamptz,"
    "  overdue_alerted_at timestamptz);"
    "CREATE INDEX work_due ON work (due_at);"
    "CREATE TABLE verdicts ("
    "  id bigserial PRIMARY KEY,"
    "  device_id int NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
    "  attempt bigint," /* pull: the claim that made it */
    "  nonce bytea UNIQUE," /* push: the fleet-issued nonce it answered */
    "  at timestamptz NOT NULL DEFAULT now(),"
    "  mode text NOT NULL CHECK (mode IN ('pull', 'push')),"
    "  trusted boolean NOT NULL,"
    "  failed_check text," /* the first failing check's name, or why there is no quote */
    "  report jsonb NOT NULL,"
    "  latency_ms int NOT NULL,"
    "  worker text NOT NULL,"
    "  CHECK ((mode = 'pull') = (attempt IS NOT NULL) AND (mode = 'push') = (nonce IS NOT NULL)));"
    "CREATE UNIQUE INDEX verdicts_one_per_claim ON verdicts (device_id, attempt) WHERE mode = 'pull';"
    "CREATE INDEX verdicts_device_at ON verdicts (device_id, at);"
    "CREATE TABLE push_nonces ("
    "  nonce bytea PRIMARY KEY CHECK (length(nonce) = 32),"
    "  device_id int NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
    "  issued_at timestamptz NOT NULL DEFAULT now(),"
    "  expires_at timestamptz NOT NULL,"
    "  used_at timestamptz);"
    "CREATE TABLE workers ("
    "  name text PRIMARY KEY,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  heartbeat timestamptz NOT NULL DEFAULT now(),"
    "  missing_alerted_at timestamptz);"
    "CREATE TABLE alerts ("
    "  id bigserial PRIMARY KEY,"
    "  at timestamptz NOT NULL DEFAULT now(),"
    "  kind text NOT NULL,"
    "  device text,"
    "  message text NOT NULL);",
    /* 2: a device's TLS client key (in its TPM): the SHA-256 of its certificate's
     * SubjectPublicKeyInfo, pinned at enrollment */
    "ALTER TABLE devices ADD COLUMN tls_spki bytea UNIQUE CHECK (length(tls_spki) = 32);",
    /* 3: containers' vTPMs, enrolled under their device by EK; attested by its trusted logs */
    "CREATE TABLE vtpms ("
    "  id serial PRIMARY KEY,"
    "  device_id int NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
    "  name text NOT NULL," /* <uuid>/ek-rsa, <uuid>/ek-ecc: the vtpm-ek event's name */
    "  ek_digest bytea NOT NULL CHECK (length(ek_digest) = 32),"
    "  enrolled_at timestamptz NOT NULL DEFAULT now(),"
    "  last_attested_at timestamptz," /* the last trusted log with an event of that name */
    "  last_digest bytea," /* that event's digest */
    "  UNIQUE (device_id, name));",
    /* 4: a vTPM's own quotes: the attestation key its owner pinned (docs/FLEET.md "vTPM quotes")
     * and the last verdict on it */
    "ALTER TABLE vtpms ADD COLUMN ak_public bytea CHECK (length(ak_public) <= 400),"
    "  ADD COLUMN ak_handle bigint,"
    "  ADD COLUMN ek_cert_pem text CHECK (length(ek_cert_pem) <= 65536),"
    "  ADD COLUMN quoted_at timestamptz,"
    "  ADD COLUMN quote_trusted boolean,"
    "  ADD COLUMN quote_failed text,"
    "  ADD COLUMN quote_report jsonb;",
};

int fleet_schema_latest(void)
{
    return (int)ARRAY_SIZE(migrations);
}

/* 0 when the table schema_version does not exist yet. */
static int current_version(PGconn *c, tm_err *err)
{
    _cleanup_res_ PGresult *res = NULL;
    int r = fleet_exec(c, &res, err,
                       "SELECT coalesce((SELECT max(version) FROM schema_version), 0) "
                       "WHERE to_regclass('schema_version') IS NOT NULL",
                       0, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 0)
        return 0;
    return atoi(PQgetvalue(res, 0, 0));
}

int fleet_db_check_version(PGconn *c, tm_err *err)
{
    int v = current_version(c, err);
    if (v < 0)
        return v;
    if (v != fleet_schema_latest())
        return tm_err_set(err, EPROTONOSUPPORT,
                          "the database's schema is version %d, this build's is %d: run `trustme-fleet "
                          "migrate` with the newer of the two",
                          v, fleet_schema_latest());
    return v;
}

/* Several statements: the simple query protocol (no parameters in a migration). */
static int run_script(PGconn *c, const char *sql, tm_err *err)
{
    _cleanup_res_ PGresult *res = PQexec(c, sql);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        return tm_err_set(err, EIO, "database: %s", msg);
    }
    return 0;
}

int fleet_db_migrate(PGconn *c, int *ret_version, tm_err *err)
{
    /* Two processes migrating at once: the second waits and then finds nothing to do. */
    int r = fleet_exec(c, NULL, err, "SELECT pg_advisory_lock(7305200)", 0, NULL);
    if (r < 0)
        return r;
    r = fleet_exec(c, NULL, err,
                   "CREATE TABLE IF NOT EXISTS schema_version ("
                   " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                   0, NULL);
    int v = r < 0 ? r : current_version(c, err);
    if (v >= 0 && v > fleet_schema_latest())
        v = tm_err_set(err, EPROTONOSUPPORT, "the database's schema (version %d) is newer than this build's (%d)", v,
                       fleet_schema_latest());
    while (v >= 0 && v < fleet_schema_latest()) {
        char num[16];
        snprintf(num, sizeof(num), "%d", v + 1);
        if ((r = fleet_begin(c, err)) < 0 || (r = run_script(c, migrations[v], err)) < 0 ||
            (r = FLEET_EXEC(c, NULL, err, "INSERT INTO schema_version (version) VALUES ($1)", num)) < 0 ||
            (r = fleet_commit(c, err)) < 0) {
            fleet_rollback(c);
            tm_err_prefix(err, "migration %d", v + 1);
            v = r;
            break;
        }
        v++;
    }
    fleet_exec(c, NULL, NULL, "SELECT pg_advisory_unlock(7305200)", 0, NULL);
    if (v >= 0 && ret_version)
        *ret_version = v;
    return v < 0 ? v : 0;
}
