/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A stateless verifier worker (docs/FLEET.md "Workers"): everything it knows is in the
 * database, so any number of them on any number of machines share the work, and one killed
 * mid-attestation leaves only a claim that expires. */
#include <errno.h>
#include <jansson.h>
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
#include "deadline.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "log.h"
#include "pull_tls.h"

#define SWEEP_EVERY_MS 1000
#define LEASE_MIN_S 3 /* a claim lasts the group's interval, at least this */
#define HEARTBEAT_MS 5000 /* within a pass; the sweep reports a worker silent for 30 s */

/* Claim up to batch due devices. A claim is a lease (claimed_until): a worker that dies holds
 * its devices only until it runs out, and every claim counts up attempt, so a verdict can be
 * recorded only by the current holder. The claim returns what the attestations need of each
 * device and its group (but the group's reference values: group_refs), so that a verdict costs
 * no query of its own before the one that records it. */
#define CLAIM_TARGET_COL 3 /* FLEET_TARGET_COLS from here; then the group's id and row version, */
#define CLAIM_VTPM_KEYS_COL (CLAIM_TARGET_COL + 11) /* and whether a vTPM of it has a pinned key */
static int claim(PGconn *c, const struct fleet_worker_opts *o, PGresult **ret, tm_err *err)
{
    char batch[16], lease[16];
    snprintf(batch, sizeof(batch), "%d", o->batch);
    snprintf(lease, sizeof(lease), "%d", LEASE_MIN_S);
    return FLEET_EXEC_PREPARED(c, "fleet_claim", ret, err,
                               "UPDATE work w SET attempt = w.attempt + 1, claimed_by = $1, "
                               "claimed_until = now() + make_interval(secs => greatest(g.interval_s, $3::int)) "
                               "FROM devices d JOIN device_groups g ON g.id = d.group_id "
                               "WHERE w.device_id = d.id AND w.device_id IN ("
                               " SELECT w2.device_id FROM work w2 JOIN devices d2 ON d2.id = w2.device_id "
                               " WHERE d2.address IS NOT NULL AND w2.due_at <= now() "
                               " AND (w2.claimed_until IS NULL OR w2.claimed_until < now()) "
                               " ORDER BY w2.due_at LIMIT $2 FOR UPDATE OF w2 SKIP LOCKED) "
                               "RETURNING w.device_id, w.attempt, greatest(g.interval_s, $3::int), " FLEET_TARGET_COLS
                               ", g.id, g.xmin::text, EXISTS (SELECT 1 FROM vtpms v WHERE v.device_id = d.id AND "
                               "v.ak_public IS NOT NULL)",
                               o->name, batch, lease);
}

/* The reference values of the groups this worker attested recently, each with the version of
 * its row (xmin: changes with every UPDATE, so a roll-out is seen at the next claim). They are
 * still verified at every verdict (refvalues_load: an expired signer fails the devices); what is
 * kept is only their transfer from the database. */
#define GROUP_CACHE 8
struct group_refs {
    int64_t id;
    char version[24];
    struct refvalues_files refs;
};
struct worker_state {
    struct fleet_trust trust;
    char trust_version[24];
    struct group_refs groups[GROUP_CACHE];
    size_t ngroups, next_evict;
};

static void worker_state_done(struct worker_state *w)
{
    fleet_trust_done(&w->trust);
    for (size_t i = 0; i < w->ngroups; i++)
        refvalues_files_done(&w->groups[i].refs);
}

static const struct refvalues_files *group_refs(PGconn *c, struct worker_state *w, int64_t id, const char *version,
                                                tm_err *err)
{
    struct group_refs *g = NULL;
    for (size_t i = 0; i < w->ngroups; i++)
        if (w->groups[i].id == id)
            g = &w->groups[i];
    if (g && strcmp(g->version, version) == 0)
        return &g->refs;
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    _cleanup_res_ PGresult *res = NULL;
    struct refvalues_files f;
    if (FLEET_EXEC_PREPARED(c, "fleet_group_refs", &res, err,
                            "SELECT encode(refs_json, 'hex'), encode(refs_sig, 'hex'), encode(refs_chain, 'hex'), "
                            "xmin::text FROM device_groups WHERE id = $1",
                            ids) < 0)
        return NULL;
    if (PQntuples(res) != 1) {
        tm_err_set(err, ENOENT, "group %s: removed", ids);
        return NULL;
    }
    if (fleet_refs_parse(res, 0, 0, &f, err) < 0)
        return NULL;
    if (!g) {
        g = w->ngroups < GROUP_CACHE ? &w->groups[w->ngroups++] : &w->groups[w->next_evict++ % GROUP_CACHE];
        if (g->id)
            refvalues_files_done(&g->refs);
    } else {
        refvalues_files_done(&g->refs);
    }
    g->id = id;
    g->refs = f;
    snprintf(g->version, sizeof(g->version), "%s", PQgetvalue(res, 0, 3));
    return &g->refs;
}

/* The fleet's trust, read again only when its row changed. */
static int trust_refresh(PGconn *c, struct worker_state *w, tm_err *err)
{
    _cleanup_res_ PGresult *res = NULL;
    int r = fleet_exec_prepared(c, "fleet_trust_version", &res, err, "SELECT xmin::text FROM trust", 0, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        return tm_err_set(err, ENOENT, "the fleet has no trust anchors yet: run `trustme-fleet trust`");
    if (w->trust_version[0] && strcmp(w->trust_version, PQgetvalue(res, 0, 0)) == 0)
        return 0;
    struct fleet_trust t = {0};
    if ((r = fleet_trust_load(c, &t, err)) < 0)
        return r;
    fleet_trust_done(&w->trust);
    w->trust = t;
    snprintf(w->trust_version, sizeof(w->trust_version), "%s", PQgetvalue(res, 0, 0));
    return 0;
}

/* Record the verdict if this worker still holds the claim, in one statement (one round trip,
 * one transaction): the work rescheduled, the verdict, the vTPMs the log vouched for and the
 * device's state, all only if the claim was still this worker's. -ESTALE if another took it
 * over (the lease ran out): then this verdict is dropped, the other's counts. */
static int finish(PGconn *c, const struct fleet_target *t, int64_t attempt, const struct fleet_verdict *v,
                  int latency_ms, const char *worker, tm_err *err)
{
    char id[24], att[24], interval[24], lat[16], reset[16];
    snprintf(id, sizeof(id), "%lld", (long long)t->device_id);
    snprintf(att, sizeof(att), "%lld", (long long)attempt);
    snprintf(interval, sizeof(interval), "%lld", (long long)t->interval_s);
    snprintf(lat, sizeof(lat), "%d", latency_ms);
    snprintf(reset, sizeof(reset), "%u", v->reset_count);
    /* Most devices host no vTPM: no JSON built for them. */
    _cleanup_json_ json_t *vt = v->nvtpms ? json_array() : NULL;
    for (size_t i = 0; vt && i < v->nvtpms; i++) {
        char dhex[65];
        tm_hex(v->vtpms[i].digest, 32, dhex);
        json_array_append_new(vt, json_pack("{s:s,s:s}", "name", v->vtpms[i].name, "digest", dhex));
    }
    _cleanup_free_ char *vtpms = vt ? json_dumps(vt, JSON_COMPACT) : v->nvtpms ? NULL : strdup("[]");
    if (!vtpms)
        return tm_err_set(err, ENOMEM, "out of memory");
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC_PREPARED(
        c, "fleet_finish", &res, err,
        "WITH w AS (UPDATE work SET due_at = now() + make_interval(secs => $4::int), claimed_by = NULL, "
        " claimed_until = NULL, overdue_alerted_at = NULL "
        " WHERE device_id = $1::bigint AND attempt = $2::bigint AND claimed_by = $3 RETURNING device_id), "
        "v AS (INSERT INTO verdicts (device_id, attempt, mode, trusted, failed_check, report, latency_ms, worker) "
        " SELECT device_id, $2::bigint, 'pull', $5::boolean, $6::text, $7::jsonb, $8::int, $3 FROM w), "
        "t AS (UPDATE vtpms SET last_attested_at = now(), last_digest = decode(x.digest, 'hex') "
        " FROM jsonb_to_recordset($11::jsonb) AS x(name text, digest text) "
        " WHERE vtpms.device_id IN (SELECT device_id FROM w) AND vtpms.name = x.name), "
        "d AS (UPDATE devices SET last_verdict_at = now(), last_trusted = $5::boolean, last_failed_check = $6::text, "
        " last_seen = CASE WHEN $9::boolean THEN now() ELSE last_seen END, "
        " missing_alerted_at = CASE WHEN $9::boolean THEN NULL ELSE missing_alerted_at END, "
        " last_reset_count = CASE WHEN $10::boolean THEN $12::bigint ELSE last_reset_count END "
        " WHERE id IN (SELECT device_id FROM w)) "
        "SELECT count(*) FROM w",
        id, att, worker, interval, v->trusted ? "true" : "false", v->failed_check[0] ? v->failed_check : NULL,
        v->report_json ? v->report_json : "{}", lat, v->evidence ? "true" : "false", v->reset_valid ? "true" : "false",
        vtpms, reset);
    if (r < 0)
        return r;
    if (strcmp(PQgetvalue(res, 0, 0), "1") != 0)
        return tm_err_set(err, ESTALE, "%s: the claim of attempt %s was taken over", t->name, att);
    return 0;
}

/* claimed_at: when the claim was made (monotonic ms); the exchange must end before the lease
 * does, or another worker may take the device over meanwhile. row: the device's row of the
 * claim. */
static void attest_one(PGconn *c, struct worker_state *ws, const struct fleet_worker_opts *o, PGresult *claimed,
                       int row, int64_t claimed_at)
{
    int64_t device_id = strtoll(PQgetvalue(claimed, row, 0), NULL, 10);
    int64_t attempt = strtoll(PQgetvalue(claimed, row, 1), NULL, 10);
    int64_t lease_s = strtoll(PQgetvalue(claimed, row, 2), NULL, 10);
    int64_t start = tm_now_ms();
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
    /* t.refs is borrowed from the worker's group cache: t is not fleet_target_done'd. */
    struct fleet_target t = {.device_id = device_id};
    tm_err err = {0};
    const struct refvalues_files *refs = NULL;
    if (fleet_target_parse(claimed, row, CLAIM_TARGET_COL, &t, &err) < 0 ||
        !(refs = group_refs(c, ws, strtoll(PQgetvalue(claimed, row, CLAIM_TARGET_COL + 9), NULL, 10),
                            PQgetvalue(claimed, row, CLAIM_TARGET_COL + 10), &err))) {
        log_warn("device %lld: %s", (long long)device_id, err.msg);
        return;
    }
    t.refs = *refs;
    const struct fleet_trust *trust = &ws->trust;
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
    int latency = (int)(tm_now_ms() - start);
    if (finish(c, &t, attempt, &v, latency, o->name, &err) < 0) {
        log_warn("%s: verdict not recorded: %s", t.name, err.msg);
        return;
    }
    log_info("%s: %s%s%s (%d ms)", t.name, v.trusted ? "trusted" : "untrusted", v.trusted ? "" : ": ", v.failed_check,
             latency);
    /* The device's vTPMs with a pinned key, on the evidence just checked: only devices that
     * have one cost this query. Within what is left of the lease: the relay's three exchanges
     * (connect and log, quote) a third of it each, so a path that trickles bytes holds the
     * worker no longer. */
    int64_t left = lease_s * 1000 - 1000 - (tm_now_ms() - claimed_at);
    if (PQgetvalue(claimed, row, CLAIM_VTPM_KEYS_COL)[0] == 't' && left >= 1500)
        fleet_vtpm_attest(c, trust, &t, &v, (int)((left > 10000 ? 10000 : left) / 3), o->alert_command);
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
    _cleanup_(worker_state_done) struct worker_state ws = {0};
    int64_t last_sweep = 0, last_beat = tm_now_ms();
    while (!*stop) {
        /* The heartbeat every HEARTBEAT_MS, not every pass: it is a write. */
        if (tm_now_ms() - last_beat >= HEARTBEAT_MS) {
            if ((r = heartbeat(c, o->name, err)) < 0)
                return r;
            last_beat = tm_now_ms();
        }
        if ((r = trust_refresh(c, &ws, err)) < 0)
            return r;
        _cleanup_res_ PGresult *res = NULL;
        if ((r = claim(c, o, &res, err)) < 0)
            return r;
        int n = PQntuples(res);
        int64_t claimed_at = tm_now_ms();
        for (int i = 0; i < n && !*stop; i++) {
            /* A batch of slow devices takes longer than the 30 s after which a silent worker
             * is reported missing: beat within it too. */
            if (tm_now_ms() - last_beat >= HEARTBEAT_MS) {
                if ((r = heartbeat(c, o->name, err)) < 0)
                    return r;
                last_beat = tm_now_ms();
            }
            attest_one(c, &ws, o, res, i, claimed_at);
        }
        if (!o->no_sweep && tm_now_ms() - last_sweep >= SWEEP_EVERY_MS) {
            tm_err serr = {0};
            if (fleet_sweep(c, o->alert_command, &serr) < 0)
                log_warn("sweep: %s", serr.msg);
            last_sweep = tm_now_ms();
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
