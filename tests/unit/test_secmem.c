/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Locked memory for secrets (secmem.c): a freed mapping kept for reuse is wiped and still locked,
 * and a forked child never reuses its parent's kept mappings (not locked there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "secmem.h"

/* AddressSanitizer turns mlock into a no-op (gcc says so with __SANITIZE_ADDRESS__, clang 14 only
 * with __has_feature): there nothing is locked, and only the reuse and the wiping are checked. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(HAS_ASAN)
#define HAS_ASAN 1
#endif
#ifndef HAS_ASAN
#define HAS_ASAN 0
#endif

static bool locked(long kb)
{
    return HAS_ASAN || kb > 0;
}

/* The "Locked:" kB of the /proc/self/smaps mapping that holds addr. */
static long locked_kb(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool in = false;
    long kb = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (in && sscanf(line, "Locked: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_reused_mapping_is_wiped_and_locked(void **state)
{
    (void)state;
    tm_err err = {0};
    struct secret *a = NULL, *b = NULL;
    assert_int_equal(secret_new(100, &a, &err), 0);
    memset(a->data, 0xa5, a->len);
    void *where = a;
    size_t map_len = a->map_len;
    secret_free(a);
    /* Kept: still mapped and locked, and wiped (the header but its size too). */
    assert_true(locked(locked_kb(where)));
    assert_true(all_zero((const uint8_t *)where + sizeof(struct secret), map_len - sizeof(struct secret)));
    assert_int_equal(secret_new(200, &b, &err), 0);
    assert_ptr_equal(b, where); /* the kept mapping (same size in pages) */
    assert_int_equal(b->len, 200);
    assert_true(all_zero(b->data, b->map_len - sizeof(*b)));
    assert_true(locked(locked_kb(b)));
    secret_free(b);
}

static void test_child_does_not_reuse_parents_kept_mapping(void **state)
{
    (void)state;
    tm_err err = {0};
    struct secret *a = NULL;
    assert_int_equal(secret_new(64, &a, &err), 0);
    void *where = a;
    secret_free(a); /* kept */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct secret *c = NULL;
        int ok =
            secret_new(64, &c, &err) == 0 && (void *)c != where && locked(locked_kb(c)) && all_zero(c->data, c->len);
        secret_free(c);
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reused_mapping_is_wiped_and_locked),
        cmocka_unit_test(test_child_does_not_reuse_parents_kept_mapping),
    };
    return cmocka_run_group_tests_name("secmem", tests, NULL, NULL);
}
