/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The audit log: one JSON record per line, each hash-chained to the one before.
 *
 *   {"seq":7,"time":"...","event":"container.start","result":"ok","subject":"demo (uuid)",
 *    "actor":"uid=0 pid=42","detail":"...","prev":"<hash of record 6>","hash":"<hash>"}
 *
 * hash = SHA-256 over the record's own line without its ',"hash":"…"' member (i.e. the JSON text
 * up to "prev":"…" followed by '}'). Editing a record breaks its hash; removing one breaks the
 * next record's prev and the seq sequence. Removing records at the end is caught by the head file
 * (seq and hash of the last record, rewritten after every append) and by the head the daemon
 * reports with the log. See docs/AUDIT.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"
#include "error.h"

#define TM_AUDIT_MAX_LINE 8192

/* Rotation: before a record is appended, a log of max_bytes or more, or whose first record is
 * max_age_s old, is renamed to <log>.<seq of its first record, 12 digits> and a new log begun,
 * whose first record (audit.rotate) chains on to the renamed one's last; beyond keep rotated
 * files the oldest go. 0 = no limit of that kind. */
typedef struct tm_audit_rotation {
    uint64_t max_bytes, max_age_s;
    unsigned keep;
} tm_audit_rotation;

typedef struct tm_audit {
    int fd;
    char *path;
    char *head_path;
    uint64_t seq; /* last record's sequence number, 0 if empty */
    char hash[TM_SHA256_HEX_LEN + 1]; /* last record's hash (zeros if empty) */
    off_t size; /* where the log must end; anything else is tampering */
    char tamper[256]; /* set by append when the log changed under us */
    tm_audit_rotation rot;
    uint64_t first_seq; /* the current file's first record, 0 if it is empty */
    int64_t first_time; /* and its time (s since the epoch) */
} tm_audit;

/* Open (creating) the log. If what was found is inconsistent (a torn last line from a crash, a log
 * shorter than its head file says), *warning describes it; the caller records that as an event. */
int tm_audit_open(tm_audit *a, const char *log_path, const char *head_path, char *warning, size_t warning_size,
                  tm_err *err);
/* Append one record. If the log was truncated or extended behind our back since the last
 * append, the record is still written (the chain goes on from what we wrote) and a->tamper says
 * what was found; the caller records that as an event of its own. */
int tm_audit_append(tm_audit *a, const char *event, const char *result, const char *subject, const char *actor,
                    const char *detail, tm_err *err);
void tm_audit_close(tm_audit *a);

typedef struct tm_audit_report {
    uint64_t records;
    uint64_t bad_line; /* first line that fails, 0 if the chain is intact */
    char problem[256];
    uint64_t last_seq;
    char last_hash[TM_SHA256_HEX_LEN + 1];
    uint64_t tamper_events; /* records of event "audit.tampered" in the log */
    uint64_t first_seq; /* where the chain starts (1 unless older files were rotated away) */
} tm_audit_report;

/* Check the whole chain in data. 0 if intact, -EBADMSG (with rep->bad_line/problem) otherwise. */
int tm_audit_verify(const char *data, size_t len, tm_audit_report *rep);
/* The same for the next file of a rotated log: the chain goes on from rep (from its first record
 * when rep->records is 0 and start_anywhere is set: the oldest file kept starts past record 1).
 * A file that does not continue the chain is reported as records missing before it. */
int tm_audit_verify_more(const char *data, size_t len, tm_audit_report *rep, bool start_anywhere);
/* The rotated files of the log at log_path, oldest first: names (not paths) in *ret_names, NULL
 * terminated (free it with strv_free or _cleanup_strv_, cleanup.h), their count in *ret_n. */
int tm_audit_rotated_files(const char *log_path, char ***ret_names, size_t *ret_n, tm_err *err);
/* One record as read back from a line (without its newline). */
typedef struct tm_audit_record {
    uint64_t seq;
    char hash[TM_SHA256_HEX_LEN + 1];
    char prev[TM_SHA256_HEX_LEN + 1];
    char event[64];
} tm_audit_record;

/* Check a line's own hash and read its seq, prev and event. 0, or -EBADMSG with problem set. */
int tm_audit_parse_line(const char *line, size_t len, tm_audit_record *rec, char *problem, size_t problem_size);
