/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-tpmd's measurement log (src/tpmd/mlog.c): line format, replay, and what a start does
 * with a log and the PCR values it finds (consistent, crashed before the extend, TPM reset,
 * inconsistent, corrupt). PCR values are computed here, so no TPM is needed. */
#include "unit.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "measurement.h"
#include "mlog.h"

#define BOOT 12
#define RUNTIME 11
#define BASE (1u << BOOT | 1u << RUNTIME)

struct fixture {
    char dir[64];
    char path[128];
    uint8_t pcrs[MLOG_PCRS][32]; /* what the "TPM" holds */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_mlog.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/measurements.log", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void hash_of(const char *s, uint8_t out[32])
{
    tm_sha256(s, strlen(s), out);
}

/* Measure as tpmd does: log, then extend the fake PCR. */
static void measure(struct fixture *f, struct mlog *log, uint32_t pcr, const char *type, const char *name,
                    const char *content)
{
    uint8_t sha[32], digest[32];
    tm_err err = {0};
    hash_of(content, sha);
    assert_int_equal(mlog_append(log, pcr, type, name, sha, &err), 0);
    tm_event_digest(pcr, type, name, sha, digest);
    tm_pcr_extend(f->pcrs[pcr], digest);
}

static void open_log(struct fixture *f, struct mlog *log)
{
    tm_err err = {0};
    if (mlog_open(log, f->dir, BASE, (const uint8_t(*)[32])f->pcrs, &err) < 0)
        fail_msg("mlog_open: %s", err.msg);
}

static size_t count_lines(const char *path)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0, n = 0;
    if (read_file(path, 1 << 20, &data, &len, NULL) < 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        n += data[i] == '\n';
    return n;
}

/* Three events over two PCRs, written by one "tpmd", loaded by the next. */
static void three_events(struct fixture *f)
{
    struct mlog log;
    open_log(f, &log);
    measure(f, &log, BOOT, "binary", "trustmed", "a");
    measure(f, &log, RUNTIME, "container-config", "c1", "b");
    measure(f, &log, BOOT, "device-config", "device.json", "c");
    mlog_close(&log);
}

static void test_line_roundtrip(void **state)
{
    struct mlog_event ev = {.seq = 7, .pcr = 11}, back;
    strcpy(ev.type, "guestos-image");
    strcpy(ev.name, "os-1/root \"quoted\" back\\slash.img");
    hash_of("x", ev.sha256);
    char line[MLOG_LINE_MAX];
    size_t n = mlog_format_line(&ev, line);
    assert_true(n > 0 && line[n - 1] == '\n');
    tm_err err = {0};
    assert_int_equal(mlog_parse_line(line, n - 1, 7, &back, &err), 0);
    assert_int_equal(back.seq, 7);
    assert_int_equal(back.pcr, 11);
    assert_string_equal(back.type, ev.type);
    assert_string_equal(back.name, ev.name);
    assert_memory_equal(back.sha256, ev.sha256, 32);
}

static void test_line_rejects(void **state)
{
    static const char *const bad[] = {
        "{\"seq\":1,\"pcr\":12,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\"" /* wrong seq */
        "0000000000000000000000000000000000000000000000000000000000000000\"}",
        "{\"seq\":0,\"pcr\":24,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\""
        "0000000000000000000000000000000000000000000000000000000000000000\"}",
        "{\"seq\":0,\"pcr\":12,\"type\":\"kernel\",\"name\":\"x\",\"sha256\":\""
        "0000000000000000000000000000000000000000000000000000000000000000\"}",
        "{\"seq\":0,\"pcr\":12,\"type\":\"binary\",\"name\":\"\",\"sha256\":\""
        "0000000000000000000000000000000000000000000000000000000000000000\"}",
        "{\"seq\":0,\"pcr\":12,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\""
        "000000000000000000000000000000000000000000000000000000000000000A\"}",
        "{\"seq\":0,\"pcr\":12,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\"00\"}",
        "{\"seq\":0,\"pcr\":12,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\""
        "0000000000000000000000000000000000000000000000000000000000000000\",\"extra\":1}",
        "{\"seq\":0,\"seq\":0,\"pcr\":12,\"type\":\"binary\",\"name\":\"x\",\"sha256\":\""
        "0000000000000000000000000000000000000000000000000000000000000000\"}",
        "[1,2]",
        "{\"seq\":0",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct mlog_event ev;
        tm_err err = {0};
        if (mlog_parse_line(bad[i], strlen(bad[i]), 0, &ev, &err) >= 0)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_replay_matches_extends(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    struct mlog log;
    open_log(f, &log);
    assert_int_equal(log.n, 3);
    uint8_t v[32];
    mlog_replay(log.ev, log.n, BOOT, v);
    assert_memory_equal(v, f->pcrs[BOOT], 32);
    mlog_replay(log.ev, log.n, RUNTIME, v);
    assert_memory_equal(v, f->pcrs[RUNTIME], 32);
    char msg[512];
    assert_int_equal(mlog_check(&log, BASE, (const uint8_t(*)[32])f->pcrs, msg, sizeof(msg)), 1);
    assert_int_equal(log.problem[0], '\0');
    /* appending goes on with the next seq */
    measure(f, &log, RUNTIME, "guestos-config", "os-1/guestos.json", "d");
    assert_int_equal(log.ev[3].seq, 3);
    mlog_close(&log);
    open_log(f, &log);
    assert_int_equal(log.n, 4);
    mlog_close(&log);
}

static void test_duplicates_and_unappend(void **state)
{
    struct fixture *f = *state;
    struct mlog log;
    open_log(f, &log);
    uint8_t sha[32];
    hash_of("a", sha);
    assert_false(mlog_contains(&log, BOOT, "binary", "trustmed", sha));
    measure(f, &log, BOOT, "binary", "trustmed", "a");
    assert_true(mlog_contains(&log, BOOT, "binary", "trustmed", sha));
    assert_false(mlog_contains(&log, RUNTIME, "binary", "trustmed", sha));
    assert_false(mlog_contains(&log, BOOT, "binary", "trustme-scd", sha));
    assert_false(mlog_contains(&log, BOOT, "device-config", "trustmed", sha));
    hash_of("b", sha);
    assert_false(mlog_contains(&log, BOOT, "binary", "trustmed", sha));
    /* an append whose extend failed is taken back, in memory and in the file */
    tm_err err = {0};
    assert_int_equal(mlog_append(&log, BOOT, "binary", "trustme-scd", sha, &err), 0);
    assert_int_equal(count_lines(f->path), 2);
    assert_int_equal(mlog_unappend(&log, &err), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(count_lines(f->path), 1);
    mlog_close(&log);
    open_log(f, &log);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.problem[0], '\0');
    mlog_close(&log);
}

static void test_drop_last_unextended(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    /* the third event reached the log but not the PCR: undo its extend */
    uint8_t before[32] = {0};
    struct mlog log;
    open_log(f, &log);
    mlog_replay(log.ev, 2, BOOT, before);
    mlog_close(&log);
    memcpy(f->pcrs[BOOT], before, 32);
    open_log(f, &log);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.problem[0], '\0');
    assert_int_equal(count_lines(f->path), 2);
    char msg[512];
    assert_int_equal(mlog_check(&log, BASE, (const uint8_t(*)[32])f->pcrs, msg, sizeof(msg)), 1);
    mlog_close(&log);
}

static void test_fresh_pcrs_archive_the_log(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    memset(f->pcrs, 0, sizeof(f->pcrs)); /* the TPM restarted */
    struct mlog log;
    open_log(f, &log);
    assert_int_equal(log.n, 0);
    assert_int_equal(log.problem[0], '\0');
    char old[160];
    snprintf(old, sizeof(old), "%s.old", f->path);
    assert_int_equal(count_lines(old), 3);
    assert_int_equal(count_lines(f->path), 0);
    mlog_close(&log);
}

static void test_inconsistent_kept_and_reported(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    uint8_t other[32];
    hash_of("someone else", other);
    tm_pcr_extend(f->pcrs[RUNTIME], other);
    struct mlog log;
    open_log(f, &log);
    assert_int_equal(log.n, 3);
    assert_int_equal(count_lines(f->path), 3);
    assert_non_null(strstr(log.problem, "PCR 11"));
    char msg[1024];
    assert_int_equal(mlog_check(&log, BASE, (const uint8_t(*)[32])f->pcrs, msg, sizeof(msg)), 0);
    assert_non_null(strstr(msg, "PCR 11"));
    mlog_close(&log);
}

static void test_verdicts(void **state)
{
    struct mlog_event ev[2] = {{.seq = 0, .pcr = BOOT}, {.seq = 1, .pcr = BOOT}};
    strcpy(ev[0].type, "binary");
    strcpy(ev[0].name, "a");
    ev[1] = ev[0];
    ev[1].seq = 1;
    strcpy(ev[1].name, "b");
    uint8_t values[MLOG_PCRS][32] = {{0}};
    int pcr;
    /* empty log, zero PCRs */
    assert_int_equal(mlog_reconcile(ev, 0, BASE, values, &pcr), MLOG_CONSISTENT);
    /* an empty log cannot explain a PCR that is not zero */
    values[RUNTIME][0] = 1;
    assert_int_equal(mlog_reconcile(ev, 0, BASE, values, &pcr), MLOG_INCONSISTENT);
    assert_int_equal(pcr, RUNTIME);
    values[RUNTIME][0] = 0;
    mlog_replay(ev, 1, BOOT, values[BOOT]);
    assert_int_equal(mlog_reconcile(ev, 2, BASE, values, &pcr), MLOG_DROP_LAST);
    mlog_replay(ev, 2, BOOT, values[BOOT]);
    assert_int_equal(mlog_reconcile(ev, 2, BASE, values, &pcr), MLOG_CONSISTENT);
    memset(values, 0, sizeof(values));
    assert_int_equal(mlog_reconcile(ev, 2, BASE, values, &pcr), MLOG_FRESH);
}

static void write_raw(const char *path, const char *text)
{
    assert_int_equal(write_file_replace(path, text, strlen(text), 0600, NULL), 0);
}

static void test_corrupt_middle_line(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    assert_int_equal(read_file(f->path, 1 << 20, &data, &len, NULL), 0);
    char *second = strchr(data, '\n') + 1;
    second[2] = '#'; /* the second line no longer parses */
    write_raw(f->path, data);
    struct mlog log;
    open_log(f, &log); /* never fails for a corrupt log */
    assert_int_equal(log.n, 1);
    assert_non_null(strstr(log.problem, "line 2"));
    char corrupt[160], msg[1024];
    snprintf(corrupt, sizeof(corrupt), "%s.corrupt", f->path);
    assert_int_equal(count_lines(corrupt), 3);
    assert_int_equal(mlog_check(&log, BASE, (const uint8_t(*)[32])f->pcrs, msg, sizeof(msg)), 0);
    mlog_close(&log);
}

static void test_partial_last_line_dropped(void **state)
{
    struct fixture *f = *state;
    three_events(f);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    assert_int_equal(read_file(f->path, 1 << 20, &data, &len, NULL), 0);
    /* half a line that never reached its PCR */
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s{\"seq\":3,\"pcr\":12,\"ty", data);
    write_raw(f->path, buf);
    struct mlog log;
    open_log(f, &log);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.problem[0], '\0');
    assert_int_equal(count_lines(f->path), 3);
    mlog_close(&log);
    /* garbage with no newline at all, and binary bytes, never crash */
    write_raw(f->path, "\x01\x02\xff garbage");
    open_log(f, &log);
    assert_int_equal(log.n, 0);
    mlog_close(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_roundtrip),
        cmocka_unit_test(test_line_rejects),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test_setup_teardown(test_replay_matches_extends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_and_unappend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_last_unextended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_pcrs_archive_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent_kept_and_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_last_line_dropped, setup, teardown),
    };
    return cmocka_run_group_tests_name("mlog", tests, NULL, NULL);
}
