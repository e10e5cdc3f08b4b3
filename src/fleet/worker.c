/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A stateless verifier worker (docs/FLEET.md "Workers"): everything it knows is in the
 * database, so any number of them on any number of machines share the work, and one killed
 * mid-attestation leaves only a claim that expires. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "attest_check.h"
#include "cleanup.h"
#include "client.h"
#include "db.h"
#include "fleet.h"
#include "log.h"
#include "pull_tls.h"

#define SWEEP_EVERY_MS 1000
#define LEASE_MIN_S 3 /* a claim lasts the group's interval, at least this */
#define HEARTBEAT_MS 5000 /* within a pass; the sweep reports a worker silent for 30 s */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Claim up to batch due devices. A claim is a lease (claimed_until): a worker that dies holds
 * its devices only until it runs out, and every claim counts up attempt, so a verdict can be
 * recorded only by the current holder. */
static int claim(PGconn *c, const struct fleet_worker_opts *o, PGresult **ret, tm_err *err)
{
    char batch[16], lease[16];
    snprintf(batch, sizeof(batch), "%d", o->batch);
    snprintf(lease, sizeof(lease), "%d", LEASE_MIN_S);
    return FLEET_EXEC(c, ret, err,
                      "UPDATE work w SET attempt = w.attempt + 1, claimed_by = $1, "
                      "claimed_until = now() + make_interval(secs => greatest(g.interval_s, $3::int)) "
                      "FROM devices d JOIN device_groups g ON g.id = d.group_id "
                      "WHERE w.device_id = d.id AND w.device_id IN ("
                      " SELECT w2.device_id FROM work w2 JOIN devices d2 ON d2.id = w2.device_id "
                      " WHERE d2.address IS NOT NULL AND w2.due_at <= now() "
                      " AND (w2.claimed_until IS NULL OR w2.claimed_until < now()) "
                      " ORDER BY w2.due_at LIMIT $2 FOR UPDATE OF w2 SKIP LOCKED) "
                      "RETURNING w.device_id, w.attempt, greatest(g.interval_s, $3::int)",
                      o->name, batch, lease);
}

/* Record the verdict if this worker still holds the claim; -ESTALE if another took it over
 * (the lease ran out): then this verdict is dropped, the other's counts. */
static int finish(PGconn *c, const struct fleet_target *t, int64_t attempt, const struct fleet_verdict *v,
                  int latency_ms, const char *worker, tm_err *err)
{
    char id[24], att[24], interval[24];
    snprintf(id, sizeof(id), "%lld", (long long)t->device_id);
    snprintf(att, sizeof(att), "%lld", (long long)attempt);
    snprintf(interval, sizeof(interval), "%lld", (long long)t->interval_s);
    int r = fleet_begin(c, err);
    if (r < 0)
        return r;
    _cleanup_res_ PGresult *res = NULL;
    r = FLEET_EXEC(c, &res, err,
                   "UPDATE work SET due_at = now() + make_interval(secs => $4::int), claimed_by = NULL, "
                   "claimed_until = NULL, overdue_alerted_at = NULL "
                   "WHERE device_id = $1 AND attempt = $2 AND claimed_by = $3 RETURNING device_id",
                   id, att, worker, interval);
    if (r == 0 && PQntuples(res) != 1)
        r = tm_err_set(err, ESTALE, "%s: the claim of attempt %s was taken over", t->name, att);
    if (r == 0)
        r = fleet_record(c, t, v, "pull", attempt, NULL, latency_ms, worker, err);
    if (r == 0)
        r = fleet_commit(c, err);
    if (r < 0)
        fleet_rollback(c);
    return r;
}

/* claimed_at: when the claim was made (monotonic ms); the exchange must end before the lease
 * does, or another worker may take the device over meanwhile. */
static void attest_one(PGconn *c, const struct fleet_trust *trust, const struct fleet_worker_opts *o, int64_t device_id,
                       int64_t attempt, int64_t lease_s, int64_t claimed_at)
{
    int64_t start = now_ms();
    int64_t timeout_ms = lease_s * 1000 - 1000 - (start - claimed_at);
    if (timeout_ms > 10000)
        timeout_ms = 10000;
    if (timeout_ms < 500) {
        /* Earlier devices of the batch took the time: leave this one to whoever claims it when
         * the lease has run out (at most one interval late), rather than attest it twice. */
        log_warn("device %lld: its claim runs out before an attestation could end; left to the next claim",
                 (long long)device_id);
        return;
    }
    _cleanup_(fleet_target_done) struct fleet_target t = {0};
    tm_err err = {0};
    if (fleet_target_load(c, device_id, &t, &err) < 0) {
        log_warn("device %lld: %s", (long long)device_id, err.msg);
        return;
    }
    uint8_t nonce[ATTEST_NONCE_LEN];
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce)) {
        log_error("getrandom failed");
        return;
    }
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = fleet_target_pcrs(&t, pcrs);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    tm_err ferr = {0};
    /* A device enrolled with a TLS key is pulled over TLS and must prove that key; the others
     * over tpmd's plain endpoint, whose answers nothing of the channel vouches for. */
    bool refused = false;
    int r = t.tls_spki[0] ? fleet_pull_tls_fetch(trust, &t, (int)timeout_ms, (uint64_t)attempt, nonce, sizeof(nonce),
                                                 pcrs, npcrs, &buf, &len, &refused, &ferr)
                          : attest_fetch(t.address, (int)timeout_ms, (uint64_t)attempt, nonce, sizeof(nonce), pcrs,
                                         npcrs, &buf, &len, &ferr);
    _cleanup_(fleet_verdict_done) struct fleet_verdict v = {0};
    fleet_verify(trust, &t, nonce, r < 0 ? NULL : buf, len, ferr.msg, &v);
    if (refused)
        snprintf(v.failed_check, sizeof(v.failed_check), "%s", FLEET_CHECK_DEVICE_TLS);
    int latency = (int)(now_ms() - start);
    if (finish(c, &t, attempt, &v, latency, o->name, &err) < 0) {
        log_warn("%s: verdict not recorded: %s", t.name, err.msg);
        return;
    }
    log_info("%s: %s%s%s (%d ms)", t.name, v.trusted ? "trusted" : "untrusted", v.trusted ? "" : ": ", v.failed_check,
             latency);
    if (!v.trusted && v.evidence) {
        char msg[256];
        snprintf(msg, sizeof(msg), "device %s failed attestation: %s", t.name, v.failed_check);
        fleet_alert(c, o->alert_command, "verdict-failed", t.name, msg);
    } else if (refused) {
        /* Someone else answers at the device's address: once a minute, like a failing push
         * (anyone on the path can provoke it). */
        char msg[256];
        snprintf(msg, sizeof(msg), "device %s: %.200s", t.name, ferr.msg);
        fleet_alert_limited(c, o->alert_command, "verdict-failed", t.name, msg, FLEET_PUSH_ALERT_S);
    }
}

static int heartbeat(PGconn *c, const char *name, tm_err *err)
{
    return FLEET_EXEC(c, NULL, err,
                      "INSERT INTO workers (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET heartbeat = now(), "
                      "missing_alerted_at = NULL",
                      name);
}

int fleet_worker_run(PGconn *c, const struct fleet_worker_opts *o, volatile int *stop, tm_err *err)
{
    int r = heartbeat(c, o->name, err);
    if (r < 0)
        return r;
    int64_t last_sweep = 0;
    while (!*stop) {
        _cleanup_(fleet_trust_done) struct fleet_trust trust = {0};
        if ((r = heartbeat(c, o->name, err)) < 0 || (r = fleet_trust_load(c, &trust, err)) < 0)
            return r;
        _cleanup_res_ PGresult *res = NULL;
        if ((r = claim(c, o, &res, err)) < 0)
            return r;
        int n = PQntuples(res);
        int64_t claimed_at = now_ms(), last_beat = claimed_at;
        for (int i = 0; i < n && !*stop; i++) {
            /* A batch of slow devices takes longer than the 30 s after which a silent worker
             * is reported missing: beat within it too. */
            if (now_ms() - last_beat >= HEARTBEAT_MS) {
                if ((r = heartbeat(c, o->name, err)) < 0)
                    return r;
                last_beat = now_ms();
            }
            attest_one(c, &trust, o, strtoll(PQgetvalue(res, i, 0), NULL, 10), strtoll(PQgetvalue(res, i, 1), NULL, 10),
                       strtoll(PQgetvalue(res, i, 2), NULL, 10), claimed_at);
        }
        if (now_ms() - last_sweep >= SWEEP_EVERY_MS) {
            tm_err serr = {0};
            if (fleet_sweep(c, o->alert_command, &serr) < 0)
                log_warn("sweep: %s", serr.msg);
            last_sweep = now_ms();
        }
        if (o->once)
            break;
        if (n == 0)
            usleep((useconds_t)o->poll_ms * 1000);
    }
    /* A clean stop gives its claims back and says it is gone (no "worker missing" alert). */
    FLEET_EXEC(c, NULL, NULL, "UPDATE work SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1", o->name);
    FLEET_EXEC(c, NULL, NULL, "DELETE FROM workers WHERE name = $1", o->name);
    return 0;
}
