/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "audit.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"

static const char zero_hash[] = "0000000000000000000000000000000000000000000000000000000000000000";
#define HASH_SUFFIX_PREFIX ",\"hash\":\""
/* ,"hash":"<64 hex>"} */
#define HASH_SUFFIX_LEN (sizeof(HASH_SUFFIX_PREFIX) - 1 + TM_SHA256_HEX_LEN + 2)

static void set_problem(char *p, size_t size, const char *msg)
{
    if (p && size)
        snprintf(p, size, "%s", msg);
}

int tm_audit_parse_line(const char *line, size_t len, tm_audit_record *rec, char *problem, size_t problem_size)
{
    if (len <= HASH_SUFFIX_LEN || len > TM_AUDIT_MAX_LINE) {
        set_problem(problem, problem_size, "record has an impossible length");
        return -EBADMSG;
    }
    const char *suffix = line + len - HASH_SUFFIX_LEN;
    if (memcmp(suffix, HASH_SUFFIX_PREFIX, sizeof(HASH_SUFFIX_PREFIX) - 1) != 0 ||
        memcmp(line + len - 2, "\"}", 2) != 0) {
        set_problem(problem, problem_size, "record does not end with its hash");
        return -EBADMSG;
    }
    const char *hash = suffix + sizeof(HASH_SUFFIX_PREFIX) - 1;
    /* The hashed body is the record with its hash member removed. */
    size_t body_len = len - HASH_SUFFIX_LEN + 1;
    _cleanup_free_ char *body = malloc(body_len + 1);
    if (!body)
        return -ENOMEM;
    memcpy(body, line, body_len - 1);
    body[body_len - 1] = '}';
    body[body_len] = '\0';
    char computed[TM_SHA256_HEX_LEN + 1];
    if (tm_sha256_hex(body, body_len, computed) < 0)
        return -EIO;
    if (memcmp(computed, hash, TM_SHA256_HEX_LEN) != 0) {
        set_problem(problem, problem_size, "record hash does not match its content (edited?)");
        return -EBADMSG;
    }
    /* The hash matched, so these are bytes trustmed wrote; jansson still refuses anything that is
     * not strict JSON (a duplicate "seq" could otherwise mean two things). */
    _cleanup_json_ json_t *obj = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *vseq, *vprev, *vevent;
    int r = 0;
    if (!obj || !(vseq = json_object_get(obj, "seq")) || !(vprev = json_object_get(obj, "prev")) ||
        !json_is_integer(vseq) || !json_is_string(vprev) || json_string_length(vprev) != TM_SHA256_HEX_LEN) {
        set_problem(problem, problem_size, "record lacks seq or prev");
        r = -EBADMSG;
    } else {
        rec->seq = (uint64_t)json_integer_value(vseq);
        memcpy(rec->hash, computed, sizeof(rec->hash));
        memcpy(rec->prev, json_string_value(vprev), sizeof(rec->prev));
        rec->event[0] = '\0';
        if (((vevent = json_object_get(obj, "event")) != NULL) && json_is_string(vevent))
            snprintf(rec->event, sizeof(rec->event), "%s", json_string_value(vevent));
    }
    return r;
}

int tm_audit_verify(const char *data, size_t len, tm_audit_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    memcpy(rep->last_hash, zero_hash, sizeof(zero_hash));
    return tm_audit_verify_more(data, len, rep, false);
}

int tm_audit_verify_more(const char *data, size_t len, tm_audit_report *rep, bool start_anywhere)
{
    size_t pos = 0;
    bool first_of_file = true;
    while (pos < len) {
        uint64_t lineno = rep->records + 1;
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (!nl) {
            rep->bad_line = lineno;
            set_problem(rep->problem, sizeof(rep->problem), "last record is not terminated");
            return -EBADMSG;
        }
        size_t l = (size_t)(nl - (data + pos));
        tm_audit_record rec;
        if (tm_audit_parse_line(data + pos, l, &rec, rep->problem, sizeof(rep->problem)) < 0) {
            rep->bad_line = lineno;
            return -EBADMSG;
        }
        if (rep->records == 0 && start_anywhere && rec.seq > 0) {
            /* The oldest file kept: what came before it was rotated away. */
            rep->last_seq = rec.seq - 1;
            memcpy(rep->last_hash, rec.prev, sizeof(rec.prev));
        }
        if (rep->records == 0)
            rep->first_seq = rec.seq;
        if (rec.seq != rep->last_seq + 1) {
            rep->bad_line = lineno;
            if (first_of_file && rep->records && rec.seq > rep->last_seq + 1)
                snprintf(rep->problem, sizeof(rep->problem),
                         "records %llu to %llu are missing before this file (a rotated file removed?)",
                         (unsigned long long)rep->last_seq + 1, (unsigned long long)rec.seq - 1);
            else
                snprintf(rep->problem, sizeof(rep->problem), "sequence jumps from %llu to %llu (records removed?)",
                         (unsigned long long)rep->last_seq, (unsigned long long)rec.seq);
            return -EBADMSG;
        }
        if (strcmp(rec.prev, rep->last_hash) != 0) {
            rep->bad_line = lineno;
            set_problem(rep->problem, sizeof(rep->problem), "prev does not match the previous record's hash");
            return -EBADMSG;
        }
        rep->records++;
        rep->last_seq = rec.seq;
        memcpy(rep->last_hash, rec.hash, sizeof(rec.hash));
        if (strcmp(rec.event, "audit.tampered") == 0)
            rep->tamper_events++;
        pos += l + 1;
        first_of_file = false;
    }
    return 0;
}

/* <log>.<12 digits>: a rotated file of the log named base. */
static bool is_rotated_name(const char *name, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || name[n] != '.' || strlen(name + n + 1) != 12)
        return false;
    for (const char *p = name + n + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tm_audit_rotated_files(const char *log_path, char ***ret_names, size_t *ret_n, tm_err *err)
{
    *ret_names = NULL;
    *ret_n = 0;
    _cleanup_free_ char *dir_copy = strdup(log_path), *base_copy = strdup(log_path);
    if (!dir_copy || !base_copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    const char *base = basename(base_copy);
    _cleanup_(closedirp) DIR *dir = opendir(dirname(dir_copy));
    if (!dir)
        return tm_err_sys(err, "cannot list the directory of %s", log_path);
    _cleanup_strv_ char **names = calloc(1, sizeof(*names));
    if (!names)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (!is_rotated_name(e->d_name, base))
            continue;
        char **grown = realloc(names, (n + 2) * sizeof(*names));
        if (!grown)
            return tm_err_set(err, ENOMEM, "out of memory");
        names = grown;
        names[n + 1] = NULL;
        if (!(names[n] = strdup(e->d_name)))
            return tm_err_set(err, ENOMEM, "out of memory");
        n++;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_names);
    *ret_names = steal_ptr(names);
    *ret_n = n;
    return 0;
}

static void format_time(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    size_t n = strlen(out);
    snprintf(out + n, size - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static void write_head(tm_audit *a)
{
    /* Not fsync'ed on purpose: after a crash the head may lag the log (accepted at open), but it
     * can never claim more than the log held, because the log record is synced first. */
    char tmp[4096], line[128];
    snprintf(tmp, sizeof(tmp), "%s.tmp", a->head_path);
    int n = snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)a->seq, a->hash);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && write_all(fd, line, (size_t)n) == 0)
        rename(tmp, a->head_path);
}

/* Find the last complete record of the log (cutting off a torn tail) and take seq/hash from it. */
static int read_tail(tm_audit *a, char *warning, size_t wsize, tm_err *err)
{
    struct stat st;
    if (fstat(a->fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", a->path);
    if (st.st_size == 0)
        return 0;
    size_t want = st.st_size < 2 * TM_AUDIT_MAX_LINE ? (size_t)st.st_size : 2 * TM_AUDIT_MAX_LINE;
    _cleanup_free_ char *buf = malloc(want);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    off_t off = st.st_size - (off_t)want;
    if (pread(a->fd, buf, want, off) != (ssize_t)want)
        return tm_err_sys(err, "cannot read %s", a->path);
    size_t end = want;
    if (buf[end - 1] != '\n') {
        /* A record torn by a crash was never acknowledged: cut it off, and say so. */
        char *nl = memrchr(buf, '\n', end);
        end = nl ? (size_t)(nl - buf) + 1 : 0;
        if (!nl && off > 0)
            return tm_err_set(err, EBADMSG, "%s: last record is longer than %d bytes", a->path, TM_AUDIT_MAX_LINE);
        if (ftruncate(a->fd, off + (off_t)end) < 0)
            return tm_err_sys(err, "cannot cut the torn last record of %s", a->path);
        snprintf(warning, wsize, "removed a torn record (%zu bytes) at the end of the log", want - end);
        if (off + (off_t)end == 0)
            return 0;
    }
    char *prev_nl = end >= 2 ? memrchr(buf, '\n', end - 1) : NULL;
    if (!prev_nl && off > 0)
        return tm_err_set(err, EBADMSG, "%s: last record is longer than %d bytes", a->path, TM_AUDIT_MAX_LINE);
    size_t start = prev_nl ? (size_t)(prev_nl - buf) + 1 : 0;
    tm_audit_record rec;
    char problem[256];
    if (tm_audit_parse_line(buf + start, end - 1 - start, &rec, problem, sizeof(problem)) < 0)
        return tm_err_set(err, EBADMSG,
                          "%s: last record is damaged: %s (run 'trustme audit "
                          "--verify', keep the damaged log for inspection and move it aside)",
                          a->path, problem);
    a->seq = rec.seq;
    memcpy(a->hash, rec.hash, sizeof(a->hash));
    return 0;
}

static void check_size(tm_audit *a)
{
    struct stat st;
    if (fstat(a->fd, &st) < 0 || st.st_size == a->size)
        return;
    snprintf(a->tamper, sizeof(a->tamper),
             "the log is %lld bytes %s than trustmed left it after "
             "record #%llu: records were %s behind its back",
             (long long)(st.st_size > a->size ? st.st_size - a->size : a->size - st.st_size),
             st.st_size > a->size ? "longer" : "shorter", (unsigned long long)a->seq,
             st.st_size > a->size ? "added" : "removed or cut");
}

/* Compare the log's tail with the head file; a log shorter than its head lost records. A torn
 * tail alone is a crash; a torn tail that also ends before the head is a cut that only looks like
 * one. Findings are added to warning. */
static void check_head(tm_audit *a, char *warning, size_t wsize)
{
    char line[128], found[256] = "";
    if (read_string_file(a->head_path, line, sizeof(line)) < 0)
        return; /* no head yet: a new log, or a crash before the first head was written */
    unsigned long long seq;
    char hash[TM_SHA256_HEX_LEN + 1];
    if (sscanf(line, "%llu %64s", &seq, hash) != 2) {
        snprintf(found, sizeof(found), "audit head file is unreadable");
    } else if (seq > a->seq) {
        snprintf(found, sizeof(found),
                 "the log ends at record %llu but record %llu was written "
                 "before: records were removed from its end",
                 (unsigned long long)a->seq, seq);
    } else if (seq == a->seq && strcmp(hash, a->hash) != 0) {
        snprintf(found, sizeof(found), "the last record (%llu) differs from the one written", seq);
    }
    if (!found[0])
        return;
    size_t used = strlen(warning);
    snprintf(warning + used, wsize - used, "%s%s", used ? "; " : "", found);
}

/* The current file's first record: its seq and time, for rotation by age. */
static void read_first(tm_audit *a)
{
    a->first_seq = 0;
    a->first_time = 0;
    char buf[TM_AUDIT_MAX_LINE + 1];
    ssize_t n = pread(a->fd, buf, sizeof(buf) - 1, 0);
    char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
    tm_audit_record rec;
    if (!nl || tm_audit_parse_line(buf, (size_t)(nl - buf), &rec, NULL, 0) < 0)
        return;
    *nl = '\0';
    a->first_seq = rec.seq;
    const char *t = strstr(buf, "\"time\":\"");
    struct tm tm = {0};
    a->first_time = t && strptime(t + 8, "%Y-%m-%dT%H:%M:%S", &tm) ? (int64_t)timegm(&tm) : (int64_t)time(NULL);
}

/* An empty log beside rotated files (a rotation, then a crash before its first record): the
 * chain goes on from the newest rotated file's last record. */
static int continue_rotated(tm_audit *a, char *warning, size_t wsize, tm_err *err)
{
    _cleanup_strv_ char **names = NULL;
    size_t count;
    int r = tm_audit_rotated_files(a->path, &names, &count, err);
    if (r < 0 || count == 0)
        return r;
    _cleanup_free_ char *dir_copy = strdup(a->path);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir_copy ? dirname(dir_copy) : ".", names[count - 1]);
    tm_audit last = {.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), .path = path};
    if (last.fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    r = read_tail(&last, warning, wsize, err);
    close(last.fd);
    if (r < 0)
        return r;
    a->seq = last.seq;
    memcpy(a->hash, last.hash, sizeof(a->hash));
    return 0;
}

int tm_audit_open(tm_audit *a, const char *log_path, const char *head_path, char *warning, size_t warning_size,
                  tm_err *err)
{
    *a = (tm_audit){.fd = -1};
    warning[0] = '\0';
    memcpy(a->hash, zero_hash, sizeof(zero_hash));
    a->path = strdup(log_path);
    a->head_path = strdup(head_path);
    if (!a->path || !a->head_path) {
        tm_audit_close(a);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    a->fd = open(log_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (a->fd < 0) {
        int r = tm_err_sys(err, "cannot open audit log %s", log_path);
        tm_audit_close(a);
        return r;
    }
    int r = read_tail(a, warning, warning_size, err);
    if (r < 0) {
        tm_audit_close(a);
        return r;
    }
    if (a->seq == 0 && (r = continue_rotated(a, warning, warning_size, err)) < 0) {
        tm_audit_close(a);
        return r;
    }
    check_head(a, warning, warning_size);
    a->size = lseek(a->fd, 0, SEEK_END);
    read_first(a);
    return 0;
}

static int append_one(tm_audit *a, const char *event, const char *result, const char *subject, const char *actor,
                      const char *detail, tm_err *err)
{
    char when[40];
    format_time(when, sizeof(when));
    _cleanup_json_ json_t *obj = json_object();
    if (!obj)
        return tm_err_set(err, ENOMEM, "out of memory");
    char detail_cut[2048];
    snprintf(detail_cut, sizeof(detail_cut), "%s", detail ? detail : "");
    json_object_set_new(obj, "seq", json_integer((int64_t)(a->seq + 1)));
    json_object_set_new(obj, "time", json_string(when));
    json_object_set_new(obj, "event", json_string(event));
    json_object_set_new(obj, "result", json_string(result));
    json_object_set_new(obj, "subject", tm_json_text(subject ? subject : ""));
    json_object_set_new(obj, "actor", tm_json_text(actor ? actor : ""));
    /* The cut may split a UTF-8 sequence, and the detail may quote what a client sent. */
    json_object_set_new(obj, "detail", tm_json_text(detail_cut));
    json_object_set_new(obj, "prev", json_string(a->hash));
    /* Compact, "/" unescaped: the bytes json-c wrote with PLAIN | NOSLASHESCAPE (the hash
     * covers the bytes as written, so older records verify whatever the writer). */
    _cleanup_free_ char *body = json_dumps(obj, JSON_FORMAT_FLAGS);
    if (!body || json_object_size(obj) != 8)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t blen = strlen(body);
    char hash[TM_SHA256_HEX_LEN + 1];
    char line[TM_AUDIT_MAX_LINE + 2];
    int r = 0;
    if (blen + HASH_SUFFIX_LEN > TM_AUDIT_MAX_LINE) {
        r = tm_err_set(err, EMSGSIZE, "audit record too long");
    } else if (tm_sha256_hex(body, blen, hash) < 0) {
        r = tm_err_set(err, EIO, "cannot hash audit record");
    } else {
        int n = snprintf(line, sizeof(line), "%.*s" HASH_SUFFIX_PREFIX "%s\"}\n", (int)blen - 1, body, hash);
        /* One write with O_APPEND, then fdatasync: a record is durable before it is counted. A
         * failed write is cut off again so that the next record still links to the last one. */
        check_size(a);
        off_t before = lseek(a->fd, 0, SEEK_END);
        r = write_all(a->fd, line, (size_t)n);
        if (r == 0 && fdatasync(a->fd) < 0)
            r = -errno;
        if (r < 0) {
            if (before >= 0 && ftruncate(a->fd, before) < 0)
                log_error("cannot cut a failed audit record: %m");
            errno = -r;
            r = tm_err_sys(err, "cannot append to audit log %s", a->path);
        }
    }
    if (r < 0)
        return r;
    a->seq++;
    memcpy(a->hash, hash, sizeof(hash));
    a->size = lseek(a->fd, 0, SEEK_END);
    write_head(a);
    if (!a->first_seq) {
        a->first_seq = a->seq;
        a->first_time = (int64_t)time(NULL);
    }
    return 0;
}

static bool rotation_due(const tm_audit *a)
{
    if (!a->first_seq || a->size == 0)
        return false;
    return (a->rot.max_bytes && (uint64_t)a->size >= a->rot.max_bytes) ||
           (a->rot.max_age_s && (int64_t)time(NULL) - a->first_time >= (int64_t)a->rot.max_age_s);
}

/* Rename the log to <log>.<first seq>, begin an empty one, drop the oldest rotated files beyond
 * rot.keep, and record all that as the new file's first record, chained to the old file's last.
 * A crash between the rename and the new file leaves no log: tm_audit_open then goes on from the
 * newest rotated file. */
static int rotate(tm_audit *a, tm_err *err)
{
    char rotated[PATH_MAX];
    snprintf(rotated, sizeof(rotated), "%s.%012llu", a->path, (unsigned long long)a->first_seq);
    if (access(rotated, F_OK) == 0)
        return tm_err_set(err, EEXIST, "cannot rotate the audit log: %s exists", rotated);
    if (rename(a->path, rotated) < 0)
        return tm_err_sys(err, "cannot rotate the audit log to %s", rotated);
    int fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int r = tm_err_sys(err, "cannot begin a new audit log %s", a->path);
        if (rename(rotated, a->path) < 0)
            log_error("cannot move %s back: %m", rotated);
        return r;
    }
    close(a->fd);
    a->fd = fd;
    a->size = 0;
    uint64_t first = a->first_seq;
    a->first_seq = 0;
    _cleanup_free_ char *dir_copy = strdup(a->path);
    _cleanup_close_ int dfd = dir_copy ? open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    char detail[1024];
    int n = snprintf(detail, sizeof(detail), "records %llu to %llu are in %s", (unsigned long long)first,
                     (unsigned long long)a->seq, strrchr(rotated, '/') ? strrchr(rotated, '/') + 1 : rotated);
    _cleanup_strv_ char **names = NULL;
    size_t count = 0;
    tm_err lerr;
    if (a->rot.keep && tm_audit_rotated_files(a->path, &names, &count, &lerr) == 0) {
        bool first_removed = true;
        for (size_t i = 0; i < count; i++) {
            if (count - i > a->rot.keep && dfd >= 0 && unlinkat(dfd, names[i], 0) == 0 && n > 0 &&
                (size_t)n < sizeof(detail)) {
                n += snprintf(detail + n, sizeof(detail) - (size_t)n, "%s%s", first_removed ? "; removed " : ", ",
                              names[i]);
                first_removed = false;
            }
        }
    }
    if (dfd >= 0)
        fsync(dfd);
    return append_one(a, "audit.rotate", "ok", NULL, "trustmed", detail, err);
}

int tm_audit_append(tm_audit *a, const char *event, const char *result, const char *subject, const char *actor,
                    const char *detail, tm_err *err)
{
    if (rotation_due(a)) {
        tm_err rerr = {0};
        if (rotate(a, &rerr) < 0) /* the record still goes to the log as it is */
            log_error("audit log: %s", rerr.msg);
    }
    return append_one(a, event, result, subject, actor, detail, err);
}

void tm_audit_close(tm_audit *a)
{
    close_and_reset(a->fd);
    free(a->path);
    free(a->head_path);
    a->path = a->head_path = NULL;
}
