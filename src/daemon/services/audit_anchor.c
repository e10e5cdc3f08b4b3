/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The audit log's head anchored in the TPM (docs/AUDIT.md, "The head in the TPM"): entry
 * "audit/head" of tpmd's anchor table holds the sequence number and hash of a recent record.
 * The hash chain alone cannot show that root rewrote or truncated the whole log (and its head
 * file) while trustmed was down; the anchored record must still be in the log, unchanged.
 *
 * At most one anchor update (one NV write) per AUDIT_ANCHOR_MS, and none while nothing was
 * appended: the records of the last interval before a crash are not covered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_anchor.h"
#include "cleanup.h"
#include "daemon.h"
#include "event.h"
#include "hex.h"
#include "log.h"
#include "service.h"
#include "tpmd_client.h"

#define AUDIT_ANCHOR_MS 2000
#define AUDIT_ANCHOR_NAME "audit/head"
#define AUDIT_ANCHOR_LEN 41 /* format 1, seq (8, big-endian), the record's SHA-256 */

static struct {
    bool known, checked, in_flight;
    uint64_t seq;
    char hash[TM_SHA256_HEX_LEN + 1];
    char problem[256]; /* what the check at start found, for this trustmed's life */
    tm_source *timer;
} st;

bool audit_anchor_head(uint64_t *ret_seq, char hash[TM_SHA256_HEX_LEN + 1], const char **ret_problem)
{
    *ret_problem = st.problem[0] ? st.problem : NULL;
    if (!st.known)
        return false;
    *ret_seq = st.seq;
    memcpy(hash, st.hash, sizeof(st.hash));
    return true;
}

static void arm(struct daemon *d);

static void on_set(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    uint64_t *sent = userdata;
    st.in_flight = false;
    if (err) {
        log_warn("the audit log's head could not be anchored in the TPM: %s", err->msg);
    } else {
        st.known = true;
        st.seq = sent[0];
        memcpy(st.hash, (const char *)&sent[1], sizeof(st.hash));
    }
    free(sent);
}

static void anchor_now(struct daemon *d)
{
    if (st.in_flight || !st.checked || d->audit.seq == 0 || (st.known && st.seq == d->audit.seq))
        return;
    uint8_t v[AUDIT_ANCHOR_LEN];
    v[0] = 1;
    for (int i = 0; i < 8; i++)
        v[1 + i] = (uint8_t)(d->audit.seq >> (56 - 8 * i));
    if (tm_hex_decode_str(d->audit.hash, v + 9, 32, 0, NULL) < 0)
        return;
    /* What is sent, kept until the answer: seq, then the hex hash. */
    uint64_t *sent = calloc(1, 8 + TM_SHA256_HEX_LEN + 1 + 8);
    if (!sent)
        return;
    sent[0] = d->audit.seq;
    memcpy((char *)&sent[1], d->audit.hash, TM_SHA256_HEX_LEN + 1);
    struct tpmd_anchor_entry e = {.name = AUDIT_ANCHOR_NAME, .value = v, .len = sizeof(v)};
    tm_err err;
    if (tpmd_anchor_update(d, &e, 1, NULL, 0, on_set, sent, &err) < 0) {
        free(sent);
        return;
    }
    st.in_flight = true;
}

static void on_timer(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    st.timer = NULL;
    anchor_now(d);
    arm(d);
}

static void arm(struct daemon *d)
{
    if (!st.timer)
        st.timer = tm_loop_timer(d->loop, AUDIT_ANCHOR_MS, on_timer, d);
}

/* The record with sequence number seq in one file of the log: its hash, or "" when it has none. */
static void record_hash_in(const char *path, uint64_t seq, char out[TM_SHA256_HEX_LEN + 1])
{
    out[0] = '\0';
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (f && (n = getline(&line, &cap, f)) > 0) {
        tm_audit_record rec;
        char problem[128];
        if (line[n - 1] == '\n')
            n--;
        if (tm_audit_parse_line(line, (size_t)n, &rec, problem, sizeof(problem)) == 0 && rec.seq == seq) {
            memcpy(out, rec.hash, TM_SHA256_HEX_LEN + 1);
            return;
        }
    }
}

/* The same in the log or, since the anchored record may sit in a file rotated away from the log
 * just before trustmed stopped, in its rotated files (named for their first record, so only the
 * last one starting at or before seq can hold it). */
static void record_hash(const char *path, uint64_t seq, char out[TM_SHA256_HEX_LEN + 1])
{
    record_hash_in(path, seq, out);
    char **names = NULL;
    size_t n = 0;
    tm_err err;
    if (out[0] || tm_audit_rotated_files(path, &names, &n, &err) < 0)
        return;
    _cleanup_free_ char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    for (size_t i = n; i-- > 0 && slash && !out[0];) {
        const char *dot = strrchr(names[i], '.');
        if (!dot || strtoull(dot + 1, NULL, 10) > seq)
            continue;
        _cleanup_free_ char *file = NULL;
        *slash = '\0';
        if (asprintf(&file, "%s/%s", dir, names[i]) >= 0)
            record_hash_in(file, seq, out);
        *slash = '/';
        break;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* tpmd's table is readable: read the anchored head once per trustmed and check the log holds it. */
static void on_get(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    if (err)
        return; /* tpmd's refusal is audited by tpmd_client (tpm.anchor) */
    const ProtobufCBinaryData *v = tpmd_anchor_value(resp, AUDIT_ANCHOR_NAME);
    st.checked = true;
    if (v && v->len == AUDIT_ANCHOR_LEN && v->data[0] == 1) {
        uint64_t seq = 0;
        for (int i = 0; i < 8; i++)
            seq = seq << 8 | v->data[1 + i];
        char hash[TM_SHA256_HEX_LEN + 1], found[TM_SHA256_HEX_LEN + 1];
        tm_hex(v->data + 9, 32, hash);
        record_hash(d->audit.path, seq, found);
        st.known = true;
        st.seq = seq;
        memcpy(st.hash, hash, sizeof(hash));
        if (strcmp(found, hash) != 0) {
            snprintf(st.problem, sizeof(st.problem),
                     "record %llu (%.16s...), anchored in the TPM, is %s: the log was rewritten or truncated "
                     "while trustmed was not running",
                     (unsigned long long)seq, hash, found[0] ? "different in the log" : "not in the log");
            log_error("audit log: %s", st.problem);
            daemon_audit(d, "audit.tampered", "fail", NULL, "trustmed", "%s", st.problem);
        }
    }
    anchor_now(d);
    arm(d);
}

static void on_anchors(struct daemon *d)
{
    if (st.checked) {
        anchor_now(d);
        return;
    }
    const char *names[] = {AUDIT_ANCHOR_NAME};
    tm_err err;
    if (tpmd_anchor_get(d, names, 1, on_get, NULL, &err) < 0)
        log_warn("the audit log's TPM anchor cannot be read: %s", err.msg);
}

const struct service_events audit_anchor_events = {
    .name = "audit_anchor",
    .tpmd_anchors = on_anchors,
};
