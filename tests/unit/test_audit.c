/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The hash-chained audit log: appends verify, reopening continues the chain, and every kind of
 * tampering (edit, delete, swap, cut at the end) is caught by verify or reported at open. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "audit.h"
#include "crypto.h"
#include "fileio.h"

struct fixture {
    char dir[PATH_MAX], log[PATH_MAX], head[PATH_MAX];
    tm_audit a;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/tm-audit-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->log, sizeof(f->log), "%s/audit.log", f->dir);
    snprintf(f->head, sizeof(f->head), "%s/audit.head", f->dir);
    f->a.fd = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char tmp[PATH_MAX + 8];
    tm_audit_close(&f->a);
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->head);
    unlink(f->log);
    unlink(f->head);
    unlink(tmp);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void open_log(struct fixture *f, char *warning, size_t size)
{
    tm_err err = {0};
    int r = tm_audit_open(&f->a, f->log, f->head, warning, size, &err);
    if (r < 0)
        print_error("tm_audit_open: %s\n", err.msg);
    assert_int_equal(r, 0);
}

static void open_log_quiet(struct fixture *f)
{
    char warning[256];
    open_log(f, warning, sizeof(warning));
    assert_string_equal(warning, "");
}

static void append_detail(struct fixture *f, const char *event, const char *detail)
{
    tm_err err = {0};
    int r = tm_audit_append(&f->a, event, "ok", "demo (uuid)", "uid=0 pid=1", detail, &err);
    if (r < 0)
        print_error("tm_audit_append: %s\n", err.msg);
    assert_int_equal(r, 0);
}

static void append_n(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        char detail[32];
        snprintf(detail, sizeof(detail), "record %llu", (unsigned long long)f->a.seq + 1);
        append_detail(f, "test.event", detail);
    }
}

static char *read_log(struct fixture *f, size_t *len)
{
    char *data = NULL;
    tm_err err = {0};
    int r = read_file(f->log, 1 << 24, &data, len, &err);
    if (r < 0)
        fail_msg("%s", err.msg);
    return data;
}

static void write_log(struct fixture *f, const char *data, size_t len)
{
    FILE *fp = fopen(f->log, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static int verify_log(struct fixture *f, tm_audit_report *rep)
{
    size_t len;
    char *data = read_log(f, &len);
    int r = tm_audit_verify(data, len, rep);
    free(data);
    return r;
}

/* Start and length of line k (1-based) of data, without its newline. */
static size_t line_span(const char *data, size_t len, size_t k, size_t *ret_len)
{
    size_t start = 0;
    for (size_t i = 1; i < k; i++) {
        const char *nl = memchr(data + start, '\n', len - start);
        assert_non_null(nl);
        start = (size_t)(nl - data) + 1;
    }
    const char *nl = memchr(data + start, '\n', len - start);
    assert_non_null(nl);
    *ret_len = (size_t)(nl - data) - start;
    return start;
}

static char *get_line(struct fixture *f, size_t k)
{
    size_t len, l;
    char *data = read_log(f, &len);
    size_t start = line_span(data, len, k, &l);
    char *line = strndup(data + start, l);
    free(data);
    assert_non_null(line);
    return line;
}

static void delete_line(struct fixture *f, size_t k)
{
    size_t len, l;
    char *data = read_log(f, &len);
    size_t start = line_span(data, len, k, &l);
    memmove(data + start, data + start + l + 1, len - start - l - 1);
    write_log(f, data, len - l - 1);
    free(data);
}

static void swap_lines(struct fixture *f, size_t a, size_t b)
{
    char *la = get_line(f, a), *lb = get_line(f, b);
    size_t len, l;
    char *data = read_log(f, &len);
    char *out = malloc(len + 1);
    assert_non_null(out);
    size_t n = 0;
    for (size_t k = 1; n < len; k++) {
        size_t start = line_span(data, len, k, &l);
        const char *src = k == a ? lb : k == b ? la : data + start;
        size_t sl = k == a ? strlen(lb) : k == b ? strlen(la) : l;
        memcpy(out + n, src, sl);
        n += sl;
        out[n++] = '\n';
    }
    write_log(f, out, n);
    free(out);
    free(data);
    free(la);
    free(lb);
}

static void cut_end(struct fixture *f, size_t bytes)
{
    size_t len;
    char *data = read_log(f, &len);
    assert_true(len > bytes);
    write_log(f, data, len - bytes);
    free(data);
}

static void append_raw(struct fixture *f, const char *bytes)
{
    int fd = open(f->log, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    close(fd);
}

static tm_audit_record parse(const char *line)
{
    tm_audit_record rec;
    char problem[256] = "";
    int r = tm_audit_parse_line(line, strlen(line), &rec, problem, sizeof(problem));
    if (r < 0)
        print_error("%s: %s\n", problem, line);
    assert_int_equal(r, 0);
    return rec;
}

/* --- the chain --- */

static void append_then_verify(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 5);
    assert_int_equal(rep.last_seq, 5);
    assert_int_equal(rep.bad_line, 0);
    assert_string_equal(rep.last_hash, f->a.hash);
    assert_int_equal(f->a.seq, 5);
}

static void first_record_links_to_zero_hash(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 1);
    char *line = get_line(f, 1);
    tm_audit_record rec = parse(line);
    assert_int_equal(rec.seq, 1);
    assert_string_equal(rec.prev, "0000000000000000000000000000000000000000000000000000000000000000");
    assert_string_equal(rec.hash, f->a.hash);
    assert_string_equal(rec.event, "test.event");
    free(line);
}

static void reopen_continues_chain(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 3);
    char hash3[TM_SHA256_HEX_LEN + 1];
    memcpy(hash3, f->a.hash, sizeof(hash3));
    tm_audit_close(&f->a);

    open_log_quiet(f);
    assert_int_equal(f->a.seq, 3);
    assert_string_equal(f->a.hash, hash3);
    append_n(f, 2);
    char *line4 = get_line(f, 4);
    tm_audit_record rec = parse(line4);
    assert_int_equal(rec.seq, 4);
    assert_string_equal(rec.prev, hash3);
    free(line4);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 5);
}

static void head_file_names_last_record(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 3);
    char head[128], want[128];
    assert_int_equal(read_string_file(f->head, head, sizeof(head)), 0);
    snprintf(want, sizeof(want), "3 %s", f->a.hash);
    assert_string_equal(head, want);
}

/* --- tampering --- */

static void edited_byte_is_detected(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    size_t len, l;
    char *data = read_log(f, &len);
    size_t start = line_span(data, len, 3, &l);
    char *digit = strstr(data + start, "record 3");
    assert_non_null(digit);
    digit[7] = '8';
    write_log(f, data, len);
    free(data);

    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 3);
    assert_non_null(strstr(rep.problem, "hash"));
}

static void deleted_middle_line_is_detected(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    delete_line(f, 3);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 3);
    assert_int_equal(rep.records, 2);
}

static void swapped_lines_are_detected(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    swap_lines(f, 2, 3);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 2);
}

static void removed_last_record_is_reported_at_open(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    tm_audit_close(&f->a);
    delete_line(f, 5);

    /* The chain itself is still intact; only the head file knows. */
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    char warning[256];
    open_log(f, warning, sizeof(warning));
    assert_non_null(strstr(warning, "records were removed"));
    assert_int_equal(f->a.seq, 4);
}

static void truncated_last_record_is_reported_as_removal(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    tm_audit_close(&f->a);
    /* Record 5 was complete and acknowledged (the head says 5): cutting its last bytes off must
     * not pass for a record torn by a crash. */
    cut_end(f, 10);
    char warning[256];
    open_log(f, warning, sizeof(warning));
    if (!strstr(warning, "records were removed"))
        print_error("warning: \"%s\"\n", warning);
    assert_non_null(strstr(warning, "records were removed"));
}

static void changed_last_record_is_reported_at_open(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 3);
    tm_audit_close(&f->a);
    /* The head remembers a different record 3 than the log now ends with. */
    FILE *fp = fopen(f->head, "w");
    assert_non_null(fp);
    fprintf(fp, "3 %s\n", "1111111111111111111111111111111111111111111111111111111111111111");
    fclose(fp);

    char warning[256];
    open_log(f, warning, sizeof(warning));
    assert_non_null(strstr(warning, "differs"));
}

static void damaged_last_record_fails_open(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 3);
    tm_audit_close(&f->a);
    size_t len;
    char *data = read_log(f, &len);
    char *digit = strstr(data, "record 3");
    assert_non_null(digit);
    digit[7] = '9';
    write_log(f, data, len);
    free(data);

    char warning[256];
    tm_err err = {0};
    assert_int_equal(tm_audit_open(&f->a, f->log, f->head, warning, sizeof(warning), &err), -EBADMSG);
    assert_err_contains(&err, "damaged");
}

static void append_notices_log_cut_behind_its_back(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 3);
    delete_line(f, 3);
    append_n(f, 1);
    assert_non_null(strstr(f->a.tamper, "shorter"));
    assert_int_equal(f->a.seq, 4); /* the record is still written */
}

static void append_notices_log_extended_behind_its_back(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 2);
    append_raw(f, "{\"seq\":3}\n");
    append_n(f, 1);
    assert_non_null(strstr(f->a.tamper, "longer"));
}

static void append_to_untouched_log_reports_nothing(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 2);
    tm_audit_close(&f->a);
    open_log_quiet(f);
    append_n(f, 2);
    assert_string_equal(f->a.tamper, "");
}

/* --- crashes --- */

static void torn_record_is_cut_and_chain_continues(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 5);
    tm_audit_close(&f->a);
    append_raw(f, "{\"seq\":6,\"time\":\"2024-01-0");

    char warning[256];
    open_log(f, warning, sizeof(warning));
    assert_non_null(strstr(warning, "torn"));
    assert_int_equal(f->a.seq, 5);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 5);

    append_n(f, 1);
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 6);
}

static void torn_first_record_leaves_empty_log(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    tm_audit_close(&f->a);
    append_raw(f, "{\"seq\":1,\"ti");

    char warning[256];
    open_log(f, warning, sizeof(warning));
    assert_non_null(strstr(warning, "torn"));
    assert_int_equal(f->a.seq, 0);
    append_n(f, 1);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 1);
}

/* --- content --- */

static void special_characters_in_detail_verify(void **state)
{
    struct fixture *f = *state;
    static const char *const details[] = {
        "quote \" backslash \\ slash / braces {}",
        "newline \n carriage return \r tab \t",
        "non-ASCII: \xc3\xa4 \xe2\x82\xac \xf0\x9f\x98\x80",
        "control \x01\x1f\x7f",
        "\",\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}",
        "",
    };
    size_t n = sizeof(details) / sizeof(details[0]);
    open_log_quiet(f);
    for (size_t i = 0; i < n; i++)
        append_detail(f, "test.event", details[i]);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, n);

    size_t len, newlines = 0;
    char *data = read_log(f, &len);
    for (size_t i = 0; i < len; i++)
        newlines += data[i] == '\n';
    assert_int_equal(newlines, n); /* one line per record, whatever the detail holds */
    free(data);
}

/* The form of a record is json-c's PLAIN | NOSLASHESCAPE, written by jansson with JSON_COMPACT:
 * no spaces, "/" as is, the usual short escapes. */
static void record_form_is_compact(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_detail(f, "test.event", "a/b \"q\" \\ \n\t");
    size_t len;
    char *data = read_log(f, &len);
    assert_non_null(strstr(data, "{\"seq\":1,\"time\":\""));
    assert_non_null(strstr(data, "\",\"event\":\"test.event\",\"result\":\"ok\","
                                 "\"subject\":\"demo (uuid)\",\"actor\":\"uid=0 pid=1\","
                                 "\"detail\":\"a/b \\\"q\\\" \\\\ \\n\\t\",\"prev\":\"0000"));
    free(data);
}

/* jansson makes no string of bytes that are not UTF-8: such bytes in what a client sent, or a
 * multi-byte character cut at the detail's limit, become '?' rather than losing the member. */
static void invalid_utf8_is_recorded_as_question_marks(void **state)
{
    struct fixture *f = *state;
    char cut[2100];
    memset(cut, 'd', sizeof(cut));
    memcpy(cut + 2045, "\xe2\x82\xac", 3); /* the euro sign across the 2047-byte cut */
    cut[sizeof(cut) - 1] = '\0';
    open_log_quiet(f);
    tm_err err = {0};
    assert_int_equal(
        tm_audit_append(&f->a, "test.event", "ok", "name \xff", "actor \xc0\xaf", "detail \xed\xa0\x80", &err), 0);
    append_detail(f, "test.event", cut);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 2);
    size_t len;
    char *data = read_log(f, &len);
    assert_non_null(strstr(data, "\"subject\":\"name ?\",\"actor\":\"actor ??\","
                                 "\"detail\":\"detail ???\""));
    assert_non_null(strstr(data, "dd??\",\"prev\":"));
    free(data);
}

static void long_detail_is_cut_not_refused(void **state)
{
    struct fixture *f = *state;
    char detail[5000];
    memset(detail, 'd', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    open_log_quiet(f);
    append_detail(f, "test.event", detail);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 1);
}

static void oversized_record_is_refused_and_chain_stays(void **state)
{
    struct fixture *f = *state;
    char subject[TM_AUDIT_MAX_LINE + 100];
    memset(subject, 's', sizeof(subject) - 1);
    subject[sizeof(subject) - 1] = '\0';
    open_log_quiet(f);
    append_n(f, 1);
    tm_err err = {0};
    assert_int_equal(tm_audit_append(&f->a, "test.event", "ok", subject, "", "", &err), -EMSGSIZE);
    assert_int_equal(f->a.seq, 1);
    append_n(f, 1);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.records, 2);
}

static void tamper_events_are_counted(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 2);
    append_detail(f, "audit.tampered", "the log ends at record 1");
    append_n(f, 1);
    tm_audit_report rep;
    assert_int_equal(verify_log(f, &rep), 0);
    assert_int_equal(rep.tamper_events, 1);
}

/* --- tm_audit_verify and tm_audit_parse_line directly --- */

static void verify_empty_log(void **state)
{
    (void)state;
    tm_audit_report rep;
    assert_int_equal(tm_audit_verify("", 0, &rep), 0);
    assert_int_equal(rep.records, 0);
    assert_int_equal(rep.last_seq, 0);
}

static void verify_unterminated_last_line(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 2);
    size_t len;
    char *data = read_log(f, &len);
    tm_audit_report rep;
    assert_int_equal(tm_audit_verify(data, len - 1, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 2);
    assert_int_equal(rep.records, 1);
    free(data);
}

static int parse_raw(const char *line, size_t len, char *problem)
{
    tm_audit_record rec;
    return tm_audit_parse_line(line, len, &rec, problem, 256);
}

static void parse_line_rejects_uppercase_hex(void **state)
{
    struct fixture *f = *state;
    open_log_quiet(f);
    append_n(f, 1);
    char *line = get_line(f, 1);
    char *hash = strstr(line, "\"hash\":\"") + 8;
    bool changed = false;
    for (char *c = hash; *c != '"'; c++)
        if (*c >= 'a' && *c <= 'f') {
            *c = (char)(*c - 'a' + 'A');
            changed = true;
        }
    assert_true(changed);
    char problem[256];
    assert_int_equal(parse_raw(line, strlen(line), problem), -EBADMSG);
    free(line);
}

static void parse_line_rejects_short_lines(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "",
        "{}",
        ",\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char problem[256] = "";
        assert_int_equal(parse_raw(lines[i], strlen(lines[i]), problem), -EBADMSG);
        assert_non_null(strstr(problem, "impossible length"));
    }
}

static void parse_line_rejects_too_long(void **state)
{
    (void)state;
    char *line = malloc(TM_AUDIT_MAX_LINE + 1);
    assert_non_null(line);
    memset(line, ' ', TM_AUDIT_MAX_LINE + 1);
    char problem[256] = "";
    assert_int_equal(parse_raw(line, TM_AUDIT_MAX_LINE + 1, problem), -EBADMSG);
    assert_non_null(strstr(problem, "impossible length"));
    free(line);
}

static void parse_line_rejects_missing_hash(void **state)
{
    (void)state;
    static const char line[] =
        "{\"seq\":1,\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"}";
    char problem[256] = "";
    assert_int_equal(parse_raw(line, strlen(line), problem), -EBADMSG);
    assert_non_null(strstr(problem, "does not end with its hash"));
}

/* A line whose hash matches its body: the hash alone does not make it a record. */
static char *self_hashed_line(const char *body)
{
    char hash[TM_SHA256_HEX_LEN + 1], *line;
    assert_int_equal(tm_sha256_hex(body, strlen(body), hash), 0);
    assert_true(asprintf(&line, "%.*s,\"hash\":\"%s\"}", (int)strlen(body) - 1, body, hash) > 0);
    return line;
}

static void parse_line_requires_seq_and_prev(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"event\":\"x\",\"padding\":\"..........................................\"}",
        ("{\"seq\":\"1\",\"prev\":"
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}"),
        "{\"seq\":1,\"prev\":\"000000000000000000000000000000000000000000000000000000000000000\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *line = self_hashed_line(bodies[i]);
        char problem[256] = "";
        assert_int_equal(parse_raw(line, strlen(line), problem), -EBADMSG);
        assert_non_null(strstr(problem, "lacks seq or prev"));
        free(line);
    }
}

static void parse_line_accepts_self_hashed_record(void **state)
{
    (void)state;
    char *line = self_hashed_line("{\"seq\":7,\"event\":\"x.y\",\"prev\":"
                                  "\"abababababababababababababababababababababababababababababababab\"}");
    tm_audit_record rec = parse(line);
    assert_int_equal(rec.seq, 7);
    assert_string_equal(rec.event, "x.y");
    assert_string_equal(rec.prev, "abababababababababababababababababababababababababababababababab");
    free(line);
}

/* Records json-c wrote ("\/" escaped where NOSLASHESCAPE was not given, lower-case \u00xx) are
 * bytes under their hash like any other: they verify after the change of library. */
static void records_in_json_c_form_verify(void **state)
{
    (void)state;
    static const char zero[] = "0000000000000000000000000000000000000000000000000000000000000000";
    char body[512], hash[TM_SHA256_HEX_LEN + 1], *log;
    snprintf(body, sizeof(body),
             "{\"seq\":1,\"time\":\"2026-01-01T00:00:00Z\",\"event\":\"a.b\",\"result\":\"ok\","
             "\"subject\":\"x\\/y\",\"actor\":\"\",\"detail\":\"c\\u001bd \xc3\xa4\",\"prev\":\"%s\"}",
             zero);
    assert_int_equal(tm_sha256_hex(body, strlen(body), hash), 0);
    char *line = self_hashed_line(body);
    assert_true(asprintf(&log, "%s\n", line) > 0);
    tm_audit_report rep;
    assert_int_equal(tm_audit_verify(log, strlen(log), &rep), 0);
    assert_int_equal(rep.records, 1);
    free(log);
    free(line);
}

/* Records sealed by hand: each one's own hash is right, only the link between them is not. */
static char *sealed_record(unsigned seq, const char *prev, char hash[TM_SHA256_HEX_LEN + 1])
{
    char body[256];
    snprintf(body, sizeof(body), "{\"seq\":%u,\"event\":\"x\",\"prev\":\"%s\"}", seq, prev);
    assert_int_equal(tm_sha256_hex(body, strlen(body), hash), 0);
    return self_hashed_line(body);
}

static int verify_two(unsigned seq2, bool link_to_first, tm_audit_report *rep)
{
    static const char zero[] = "0000000000000000000000000000000000000000000000000000000000000000";
    char h1[TM_SHA256_HEX_LEN + 1], h2[TM_SHA256_HEX_LEN + 1], *log;
    char *l1 = sealed_record(1, zero, h1);
    char *l2 = sealed_record(seq2, link_to_first ? h1 : zero, h2);
    assert_true(asprintf(&log, "%s\n%s\n", l1, l2) > 0);
    int r = tm_audit_verify(log, strlen(log), rep);
    free(log);
    free(l1);
    free(l2);
    return r;
}

static void verify_accepts_hand_sealed_chain(void **state)
{
    (void)state;
    tm_audit_report rep;
    assert_int_equal(verify_two(2, true, &rep), 0);
    assert_int_equal(rep.records, 2);
}

static void verify_detects_wrong_prev(void **state)
{
    (void)state;
    tm_audit_report rep;
    assert_int_equal(verify_two(2, false, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 2);
    assert_non_null(strstr(rep.problem, "prev"));
}

static void verify_detects_wrong_seq(void **state)
{
    (void)state;
    tm_audit_report rep;
    assert_int_equal(verify_two(3, true, &rep), -EBADMSG);
    assert_int_equal(rep.bad_line, 2);
    assert_non_null(strstr(rep.problem, "sequence"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(append_then_verify),
        T(first_record_links_to_zero_hash),
        T(reopen_continues_chain),
        T(head_file_names_last_record),
        T(edited_byte_is_detected),
        T(deleted_middle_line_is_detected),
        T(swapped_lines_are_detected),
        T(removed_last_record_is_reported_at_open),
        T(truncated_last_record_is_reported_as_removal),
        T(changed_last_record_is_reported_at_open),
        T(damaged_last_record_fails_open),
        T(append_notices_log_cut_behind_its_back),
        T(append_notices_log_extended_behind_its_back),
        T(append_to_untouched_log_reports_nothing),
        T(torn_record_is_cut_and_chain_continues),
        T(torn_first_record_leaves_empty_log),
        T(special_characters_in_detail_verify),
        T(record_form_is_compact),
        T(invalid_utf8_is_recorded_as_question_marks),
        T(long_detail_is_cut_not_refused),
        T(oversized_record_is_refused_and_chain_stays),
        T(tamper_events_are_counted),
        cmocka_unit_test(verify_empty_log),
        T(verify_unterminated_last_line),
        T(parse_line_rejects_uppercase_hex),
        cmocka_unit_test(parse_line_rejects_short_lines),
        cmocka_unit_test(parse_line_rejects_too_long),
        cmocka_unit_test(parse_line_rejects_missing_hash),
        cmocka_unit_test(parse_line_requires_seq_and_prev),
        cmocka_unit_test(parse_line_accepts_self_hashed_record),
        cmocka_unit_test(records_in_json_c_form_verify),
        cmocka_unit_test(verify_accepts_hand_sealed_chain),
        cmocka_unit_test(verify_detects_wrong_prev),
        cmocka_unit_test(verify_detects_wrong_seq),
    };
    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
