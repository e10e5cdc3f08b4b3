/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The rate-limited log (src/lib/log.c): at most burst lines per interval, then one line that
 * counts the ones left out. */
#include "unit.h"

#include <stdio.h>
#include <unistd.h>

#include "log.h"

/* Run fn with stderr going to a temporary file; returns what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp);
    if (n <= 0)
        n = lseek(fileno(tmp), 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fileno(tmp), buf, (size_t)n, 0), n);
    fclose(tmp);
    return buf;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static tm_ratelimit rl = TM_RATELIMIT_INIT(1, 3);

static void flood(void)
{
    for (int i = 0; i < 1000; i++)
        log_warn_ratelimited(&rl, "refused %d", i);
}

static void after_the_interval(void)
{
    sleep(2);
    log_warn_ratelimited(&rl, "refused again");
}

static void burst_then_summary(void **state)
{
    (void)state;
    tm_log_init("test", false, TM_LOG_INFO);
    char *out = capture(flood);
    assert_int_equal(count(out, "refused"), 3);
    assert_non_null(strstr(out, "refused 0"));
    assert_non_null(strstr(out, "refused 2"));
    assert_null(strstr(out, "refused 3"));
    free(out);
    out = capture(after_the_interval);
    assert_non_null(strstr(out, "(997 similar messages left out in the last"));
    assert_non_null(strstr(out, "refused again"));
    free(out);
}

static tm_ratelimit quiet = TM_RATELIMIT_INIT(10, 5);

static void below_the_level(void)
{
    for (int i = 0; i < 100; i++)
        log_info_ratelimited(&quiet, "not shown %d", i);
}

static void filtered_lines_do_not_count(void **state)
{
    (void)state;
    tm_log_init("test", false, TM_LOG_WARN);
    char *out = capture(below_the_level);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(quiet.logged + quiet.suppressed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_summary),
        cmocka_unit_test(filtered_lines_do_not_count),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
