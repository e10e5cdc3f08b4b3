/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme audit: print the audit log, or verify its hash chain (docs/AUDIT.md). The daemon only
 * serves the bytes; the chain is checked here, so a copy can also be checked offline (--file). */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "buf.h"
#include "cleanup.h"
#include "cli.h"
#include "fileio.h"

#define AUDIT_FILE_MAX (1024u * 1024 * 1024)

struct head {
    bool known;
    unsigned long long seq;
    char hash[TM_SHA256_HEX_LEN + 1];
    bool anchored; /* a record the TPM anchors (docs/AUDIT.md, "The head in the TPM") */
    unsigned long long anchored_seq;
    char anchored_hash[TM_SHA256_HEX_LEN + 1];
    char anchor_problem[256];
};

/* Where each file of a rotated log begins in the bytes read (rotated files oldest first, then
 * the log itself). */
#define AUDIT_MAX_FILES 4096
struct segments {
    size_t n;
    struct {
        char name[64];
        size_t start;
    } s[AUDIT_MAX_FILES];
};

static int begin_segment(struct segments *seg, const char *name, size_t start)
{
    if (seg->n && strcmp(seg->s[seg->n - 1].name, name) == 0)
        return 0;
    if (seg->n == AUDIT_MAX_FILES)
        return cli_fail("the audit log has more than %d files", AUDIT_MAX_FILES);
    snprintf(seg->s[seg->n].name, sizeof(seg->s[0].name), "%s", name);
    seg->s[seg->n++].start = start;
    return 0;
}

static int fetch_from_daemon(struct cli *cli, tm_buf *log, struct head *head, struct segments *seg)
{
    struct client cl;
    if (cli_connect(cli, &cl) < 0)
        return 1;
    Trustme__AuditRequest ar = TRUSTME__AUDIT_REQUEST__INIT;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_AUDIT;
    req.audit = &ar;
    tm_err err;
    if (client_send(&cl, &req, &err) < 0)
        return cli_fail("%s", err.msg);
    for (;;) {
        Trustme__Response *resp;
        if (client_recv(&cl, &resp, &err) < 0) {
            client_close(&cl);
            return cli_fail("%s", err.msg);
        }
        bool done = true;
        int r = 0;
        if (resp->body_case == TRUSTME__RESPONSE__BODY_AUDIT_CHUNK) {
            done = false;
            r = begin_segment(seg, resp->audit_chunk->file ? resp->audit_chunk->file : "audit.log",
                              tm_buf_pending(log));
            if (!r && tm_buf_append(log, resp->audit_chunk->data.data, resp->audit_chunk->data.len) < 0)
                r = cli_fail("out of memory");
        } else if (resp->body_case == TRUSTME__RESPONSE__BODY_AUDIT_END) {
            head->known = true;
            head->seq = resp->audit_end->head_seq;
            snprintf(head->hash, sizeof(head->hash), "%s",
                     resp->audit_end->head_hash ? resp->audit_end->head_hash : "");
            if (resp->audit_end->has_anchored_seq && resp->audit_end->anchored_hash) {
                head->anchored = true;
                head->anchored_seq = resp->audit_end->anchored_seq;
                snprintf(head->anchored_hash, sizeof(head->anchored_hash), "%s", resp->audit_end->anchored_hash);
            }
            if (resp->audit_end->anchor_problem)
                snprintf(head->anchor_problem, sizeof(head->anchor_problem), "%s", resp->audit_end->anchor_problem);
        } else if (resp->body_case == TRUSTME__RESPONSE__BODY_ERROR) {
            r = cli_fail("%s", resp->error->message);
        } else {
            r = cli_fail("unexpected reply from trustmed");
        }
        trustme__response__free_unpacked(resp, NULL);
        if (done || r) {
            client_close(&cl);
            return r;
        }
    }
}

static int read_offline(const char *path, tm_buf *log, struct head *head, struct segments *seg)
{
    char copy[4096], head_path[4200], line[128];
    snprintf(copy, sizeof(copy), "%s", path);
    const char *dir = dirname(copy);
    _cleanup_strv_ char **names = NULL;
    size_t count = 0;
    tm_err err;
    if (tm_audit_rotated_files(path, &names, &count, &err) < 0)
        return cli_fail("%s", err.msg);
    int r = 0;
    for (size_t i = 0; i <= count && r == 0; i++) {
        char file[4200];
        if (i < count)
            snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
        else
            snprintf(file, sizeof(file), "%s", path);
        _cleanup_free_ char *data = NULL;
        size_t len;
        if ((r = begin_segment(seg, i < count ? names[i] : "audit.log", tm_buf_pending(log))) == 0 &&
            read_file(file, AUDIT_FILE_MAX, &data, &len, &err) < 0)
            r = cli_fail("%s", err.msg);
        if (r == 0 && tm_buf_append(log, data, len) < 0)
            r = cli_fail("out of memory");
    }
    if (r)
        return r;
    snprintf(head_path, sizeof(head_path), "%s/audit.head", dir);
    if (read_string_file(head_path, line, sizeof(line)) == 0 && sscanf(line, "%llu %64s", &head->seq, head->hash) == 2)
        head->known = true;
    return 0;
}

/* The hash of record seq in the log, or "" when there is none. */
static void find_record(const char *data, size_t len, unsigned long long seq, char out[TM_SHA256_HEX_LEN + 1])
{
    out[0] = '\0';
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (data + pos)) : len - pos;
        tm_audit_record rec;
        char problem[128];
        if (tm_audit_parse_line(data + pos, l, &rec, problem, sizeof(problem)) == 0 && rec.seq == seq) {
            memcpy(out, rec.hash, TM_SHA256_HEX_LEN + 1);
            return;
        }
        pos += l + 1;
    }
}

static int verify(const char *data, size_t len, const struct head *head, const struct segments *seg)
{
    tm_audit_report rep;
    memset(&rep, 0, sizeof(rep));
    memcpy(rep.last_hash, "0000000000000000000000000000000000000000000000000000000000000000", TM_SHA256_HEX_LEN);
    /* A log that was rotated starts where its oldest file kept starts; each later file must go on
     * exactly where the one before it ended. */
    bool rotated = seg->n > 1;
    for (size_t i = 0; i < (seg->n ? seg->n : 1); i++) {
        size_t start = seg->n ? seg->s[i].start : 0, end = i + 1 < seg->n ? seg->s[i + 1].start : len;
        if (tm_audit_verify_more(data + start, end - start, &rep, rotated && i == 0) < 0) {
            printf("audit log BROKEN at record %llu%s%s: %s\n", (unsigned long long)rep.bad_line, rotated ? " in " : "",
                   rotated ? seg->s[i].name : "", rep.problem);
            printf("%llu record(s) before it are intact\n", (unsigned long long)rep.records);
            return 1;
        }
    }
    if (head->known &&
        (rep.last_seq < head->seq || (rep.last_seq == head->seq && strcmp(rep.last_hash, head->hash) != 0))) {
        printf("audit log BROKEN: it ends at record %llu, but record %llu (%.16s...) was written: "
               "records were removed from its end\n",
               (unsigned long long)rep.last_seq, head->seq, head->hash);
        return 1;
    }
    if (head->anchor_problem[0]) {
        printf("audit log BROKEN: %s\n", head->anchor_problem);
        return 1;
    }
    if (head->anchored) {
        char found[TM_SHA256_HEX_LEN + 1];
        find_record(data, len, head->anchored_seq, found);
        if (strcmp(found, head->anchored_hash) != 0) {
            printf("audit log BROKEN: record %llu (%.16s...) is anchored in the TPM but %s: the log was "
                   "rewritten or truncated\n",
                   head->anchored_seq, head->anchored_hash, found[0] ? "differs in the log" : "is not in the log");
            return 1;
        }
    }
    printf("audit log intact: %llu record(s), chain verified%s\n", (unsigned long long)rep.records,
           head->known ? " up to the daemon's last record" : " (no head to compare the end with)");
    if (rotated)
        printf("%zu file(s); the chain starts at record %llu%s\n", seg->n, (unsigned long long)rep.first_seq,
               rep.first_seq > 1 ? " (older records were rotated away)" : "");
    if (rep.records)
        printf("last record: #%llu %s\n", (unsigned long long)rep.last_seq, rep.last_hash);
    if (head->anchored)
        printf("record #%llu is the one anchored in the TPM\n", head->anchored_seq);
    else if (head->known)
        printf("no record anchored in the TPM (none yet, or trustmed has not read it yet)\n");
    if (rep.tamper_events)
        printf("warning: %llu earlier tampering event(s) are recorded in the log (event "
               "audit.tampered)\n",
               (unsigned long long)rep.tamper_events);
    return 0;
}

static void print_records(const char *data, size_t len, bool json)
{
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (data + pos)) : len - pos;
        if (json) {
            fwrite(data + pos, 1, l, stdout);
            putchar('\n');
        } else {
            _cleanup_free_ char *line = strndup(data + pos, l);
            json_t *o = line ? json_loads(line, JSON_REJECT_DUPLICATES, NULL) : NULL;
            json_t *v;
            const char *f[6] = {"", "", "", "", "", ""};
            const char *keys[6] = {"time", "event", "result", "subject", "actor", "detail"};
            long long seq = 0;
            if (o && ((v = json_object_get(o, "seq")) != NULL))
                seq = json_integer_value(v);
            for (int k = 0; o && k < 6; k++)
                if ((v = json_object_get(o, keys[k])) && json_is_string(v))
                    f[k] = json_string_value(v);
            if (o)
                printf("%5lld %s %-18s %-6s %s%s%s [%s]\n", seq, f[0], f[1], f[2], f[3], f[3][0] && f[5][0] ? ": " : "",
                       f[5], f[4]);
            else
                printf("(unreadable record) %s\n", line ? line : "");
            json_decref(o);
        }
        pos += l + 1;
    }
}

int cmd_audit(struct cli *cli, const struct cli_args *a)
{
    bool do_verify = cli_flag(a, "verify");
    const char *file = cli_value(a, "file");
    tm_buf log = {0};
    struct head head = {0};
    _cleanup_free_ struct segments *seg = calloc(1, sizeof(*seg));
    if (!seg)
        return cli_fail("out of memory");
    int r = file ? read_offline(file, &log, &head, seg) : fetch_from_daemon(cli, &log, &head, seg);
    if (r == 0) {
        const char *data = (const char *)log.data + log.start;
        if (do_verify)
            r = verify(data, tm_buf_pending(&log), &head, seg);
        else
            print_records(data, tm_buf_pending(&log), cli->json);
    }
    tm_buf_free(&log);
    return r;
}
