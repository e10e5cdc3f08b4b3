/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One verdict: a device's evidence checked with the verifier library (src/verify) against the
 * fleet's trust and the device group's reference values and policy, and its record. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest_check.h"
#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"

void fleet_target_done(struct fleet_target *t)
{
    refvalues_files_done(&t->refs);
}

void fleet_verdict_done(struct fleet_verdict *v)
{
    free(v->report_json);
    v->report_json = NULL;
    if (v->response)
        trustme__attest__attest_response__free_unpacked(v->response, NULL);
    v->response = NULL;
}

static int unhex_value(PGresult *res, int row, int col, char **ret, size_t *ret_len, tm_err *err)
{
    const char *h = PQgetvalue(res, row, col);
    size_t n = (size_t)PQgetlength(res, row, col) / 2;
    char *out = malloc(n + 1);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = tm_hex_decode(h, 2 * n, (uint8_t *)out, n, 0, err);
    if (r < 0) {
        free(out);
        return r;
    }
    out[n] = '\0';
    *ret = out;
    *ret_len = n;
    return 0;
}

int fleet_target_parse(PGresult *res, int row, int col, struct fleet_target *t, tm_err *err)
{
    snprintf(t->name, sizeof(t->name), "%s", PQgetvalue(res, row, col));
    snprintf(t->address, sizeof(t->address), "%s", PQgetvalue(res, row, col + 1));
    int r = tm_hex_decode_str(PQgetvalue(res, row, col + 2), t->ak_name, sizeof(t->ak_name), 0, err);
    if (r < 0)
        return r;
    t->pin_ak = PQgetvalue(res, row, col + 3)[0] == 't';
    t->has_last_reset = !PQgetisnull(res, row, col + 4);
    if (t->has_last_reset)
        t->last_reset = (uint32_t)strtoul(PQgetvalue(res, row, col + 4), NULL, 10);
    t->interval_s = strtoll(PQgetvalue(res, row, col + 5), NULL, 10);
    t->min_version = strtoull(PQgetvalue(res, row, col + 6), NULL, 10);
    t->npcrs = 0;
    for (const char *p = PQgetvalue(res, row, col + 7); *p && t->npcrs < REFVALUES_PCRS;) {
        char *end;
        t->pcrs[t->npcrs++] = (uint32_t)strtoul(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    snprintf(t->tls_spki, sizeof(t->tls_spki), "%s", PQgetvalue(res, row, col + 8));
    return 0;
}

int fleet_target_load(PGconn *c, int64_t device_id, struct fleet_target *ret, tm_err *err)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)device_id);
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC(c, &res, err,
                       "SELECT " FLEET_TARGET_COLS ", encode(g.refs_json, 'hex'), encode(g.refs_sig, 'hex'), "
                       "encode(g.refs_chain, 'hex') FROM devices d JOIN device_groups g ON g.id = d.group_id "
                       "WHERE d.id = $1",
                       id);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        return tm_err_set(err, ENOENT, "device %s: not enrolled", id);
    struct fleet_target t = {.device_id = device_id};
    if ((r = fleet_target_parse(res, 0, 0, &t, err)) < 0)
        return r;
    if ((r = fleet_refs_parse(res, 0, 9, &t.refs, err)) < 0)
        return r;
    *ret = t;
    return 0;
}

int fleet_refs_parse(PGresult *res, int row, int col, struct refvalues_files *ret, tm_err *err)
{
    struct refvalues_files f = {0};
    int r;
    if ((r = unhex_value(res, row, col, &f.json, &f.json_len, err)) < 0 ||
        (r = unhex_value(res, row, col + 1, &f.sig, &f.sig_len, err)) < 0 ||
        (r = unhex_value(res, row, col + 2, &f.chain_pem, &f.chain_len, err)) < 0) {
        refvalues_files_done(&f);
        return r;
    }
    *ret = f;
    return 0;
}

static int load_refs(const struct fleet_trust *trust, const struct fleet_target *t, struct refvalues **ret, char *why,
                     size_t why_size)
{
    struct refvalues_trust rt = {
        .anchors_pem = trust->rim_anchors,
        .anchors_len = trust->rim_anchors_len,
        .cas = &trust->rim_cas,
        .crls_pem = trust->crls,
        .crls_len = trust->crls_len,
        .min_version = t->min_version,
    };
    tm_err e = {0};
    int r = refvalues_load(&t->refs, &rt, ret, &e);
    if (r < 0)
        snprintf(why, why_size, "the group's reference values: %s", e.msg);
    return r;
}

size_t fleet_target_pcrs(const struct fleet_target *t, uint32_t out[REFVALUES_PCRS])
{
    if (t->npcrs) {
        memcpy(out, t->pcrs, t->npcrs * sizeof(*out));
        return t->npcrs;
    }
    _cleanup_(refvalues_freep) struct refvalues *refs = NULL;
    tm_err e = {0};
    if (refvalues_parse(t->refs.json, t->refs.json_len, &refs, &e) < 0)
        return 0;
    memcpy(out, refs->pcrs, refs->npcrs * sizeof(*out));
    return refs->npcrs;
}

static char *error_json(const char *why)
{
    _cleanup_json_ json_t *o = json_pack("{s:s,s:o}", "verdict", "untrusted", "error", tm_json_text(why));
    return o ? json_dumps(o, JSON_COMPACT) : NULL;
}

void fleet_verify(const struct fleet_trust *trust, const struct fleet_target *t, const uint8_t *nonce,
                  const uint8_t *buf, size_t len, const char *why, struct fleet_verdict *ret)
{
    *ret = (struct fleet_verdict){0};
    if (!buf) {
        snprintf(ret->failed_check, sizeof(ret->failed_check), "no evidence");
        ret->report_json = error_json(why ? why : "no response");
        return;
    }
    _cleanup_(refvalues_freep) struct refvalues *refs = NULL;
    char refs_error[1400] = "";
    load_refs(trust, t, &refs, refs_error, sizeof(refs_error));
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = t->npcrs ? t->npcrs : refs ? refs->npcrs : 0;
    memcpy(pcrs, t->npcrs ? t->pcrs : refs ? refs->pcrs : pcrs, npcrs * sizeof(*pcrs));
    struct attest_policy pol = {
        .nonce = nonce,
        .nonce_len = ATTEST_NONCE_LEN,
        .pcrs = pcrs,
        .npcrs = npcrs,
        .pcrs_explicit = t->npcrs > 0,
        .ak_anchors_pem = trust->ak_anchors,
        .ak_anchors_len = trust->ak_anchors_len,
        .device_cas = &trust->device_cas,
        .crls_pem = trust->crls,
        .crls_len = trust->crls_len,
        .refs = refs,
        .refs_error = refs_error,
        .expect_ak_name = t->pin_ak ? t->ak_name : NULL,
        .expect_ak_name_len = t->pin_ak ? sizeof(t->ak_name) : 0,
        .has_last_reset = t->has_last_reset,
        .last_reset = t->last_reset,
    };
    struct attest_report rep;
    tm_err e = {0};
    if (attest_check_response(buf, len, &pol, &rep, &e) < 0) {
        snprintf(ret->failed_check, sizeof(ret->failed_check), "no evidence");
        ret->report_json = error_json(e.msg);
        return;
    }
    ret->evidence = true;
    ret->trusted = rep.trusted;
    /* Every failing check, in the report's order: a forgery is named by the check responsible
     * for it, which need not be the first to fail. */
    size_t off = 0;
    for (int i = 0; i < ATTEST_CHECK_COUNT && off < sizeof(ret->failed_check); i++)
        if (!rep.checks[i].ok)
            off += (size_t)snprintf(ret->failed_check + off, sizeof(ret->failed_check) - off, "%s%s", off ? ", " : "",
                                    rep.checks[i].name);
    ret->reset_valid =
        rep.checks[ATTEST_CHECK_QUOTE_SIGNATURE].ok && rep.clock.valid && rep.checks[ATTEST_CHECK_CLOCK].ok;
    ret->reset_count = rep.clock.reset_count;
    /* The vTPMs the device vouches for: its trusted log's vtpm-ek events (docs/FLEET.md "vTPMs").
     * Only from a trusted verdict: the quote signed the runtime PCR, the log replays to it, and
     * every event was among the reference values. */
    Trustme__Attest__AttestResponse *ar = NULL;
    if (rep.trusted && attest_response_decode(buf, len, &ar, &e) == 0 &&
        ar->body_case == TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE) {
        const Trustme__Attest__Quote *q = ar->quote;
        for (size_t i = 0; i < q->n_events && ret->nvtpms < FLEET_VTPMS_MAX; i++) {
            const Trustme__Attest__Event *ev = q->events[i];
            if (ev->type && strcmp(ev->type, "vtpm-ek") == 0 && ev->name && strlen(ev->name) < FLEET_VTPM_NAME_MAX &&
                ev->has_sha256 && ev->sha256.len == 32) {
                snprintf(ret->vtpms[ret->nvtpms].name, FLEET_VTPM_NAME_MAX, "%s", ev->name);
                memcpy(ret->vtpms[ret->nvtpms++].digest, ev->sha256.data, 32);
            }
        }
    }
    if (ar && rep.trusted) {
        ret->response = ar;
        ret->report = rep;
    } else if (ar) {
        trustme__attest__attest_response__free_unpacked(ar, NULL);
    }
    /* A trusted verdict keeps its clock and event count, not the eight details: they say
     * "ok" at length, and verdicts are the table that grows (docs/FLEET.md "Schema"). Written
     * here rather than printed in full, parsed and cut: this is every verdict's cost. */
    if (rep.trusted) {
        char clock[160] = "null";
        if (rep.clock.valid)
            snprintf(clock, sizeof(clock), "{\"clock\":%llu,\"reset_count\":%u,\"restart_count\":%u,\"safe\":%s}",
                     (unsigned long long)rep.clock.clock, rep.clock.reset_count, rep.clock.restart_count,
                     rep.clock.safe ? "true" : "false");
        if (asprintf(&ret->report_json, "{\"verdict\":\"trusted\",\"events\":%zu,\"clock\":%s}", rep.events, clock) < 0)
            ret->report_json = NULL;
        return;
    }
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    if (f) {
        attest_report_print_json(f, &rep);
        fclose(f);
        if (text && tlen && text[tlen - 1] == '\n')
            text[tlen - 1] = '\0';
    }
    ret->report_json = text;
}

int fleet_record(PGconn *c, const struct fleet_target *t, const struct fleet_verdict *v, const char *mode,
                 int64_t attempt, const uint8_t *nonce, int latency_ms, const char *worker, tm_err *err)
{
    char id[24], att[24], lat[16], reset[16], noncehex[65];
    snprintf(id, sizeof(id), "%lld", (long long)t->device_id);
    snprintf(att, sizeof(att), "%lld", (long long)attempt);
    snprintf(lat, sizeof(lat), "%d", latency_ms);
    snprintf(reset, sizeof(reset), "%u", v->reset_count);
    if (nonce)
        tm_hex(nonce, 32, noncehex);
    int r =
        FLEET_EXEC(c, NULL, err,
                   "INSERT INTO verdicts (device_id, attempt, nonce, mode, trusted, failed_check, report, "
                   "latency_ms, worker) VALUES ($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, $9)",
                   id, attempt >= 0 ? att : NULL, nonce ? noncehex : NULL, mode, v->trusted ? "true" : "false",
                   v->failed_check[0] ? v->failed_check : NULL, v->report_json ? v->report_json : "{}", lat, worker);
    for (size_t i = 0; r == 0 && i < v->nvtpms; i++) {
        char dhex[65];
        tm_hex(v->vtpms[i].digest, 32, dhex);
        r = FLEET_EXEC(c, NULL, err,
                       "UPDATE vtpms SET last_attested_at = now(), last_digest = decode($3, 'hex') "
                       "WHERE device_id = $1 AND name = $2",
                       id, v->vtpms[i].name, dhex);
    }
    if (r < 0)
        return r;
    /* last_seen: the device answered (a failed verdict is a device that is there); the reset
     * count only from a quote whose signature and clock passed. */
    return FLEET_EXEC(c, NULL, err,
                      "UPDATE devices SET last_verdict_at = now(), last_trusted = $2, last_failed_check = $3, "
                      "last_seen = CASE WHEN $4 THEN now() ELSE last_seen END, "
                      "missing_alerted_at = CASE WHEN $4 THEN NULL ELSE missing_alerted_at END, "
                      "last_reset_count = CASE WHEN $5 THEN $6::bigint ELSE last_reset_count END WHERE id = $1",
                      id, v->trusted ? "true" : "false", v->failed_check[0] ? v->failed_check : NULL,
                      v->evidence ? "true" : "false", v->reset_valid ? "true" : "false", reset);
}
