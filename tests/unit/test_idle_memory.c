/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tm_idle_release (idle_memory.c): it drops read-only mappings, never what the process wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "idle_memory.h"

/* Written at run time: in .data and .bss, which must keep their values. */
static int counter = 41;
static char scratch[3 * 4096];
/* A pointer relocated at load time (RELRO in a PIE): its private copy must stay. */
static const char *const greeting = "hello";

static void sha256_hex(const char *in, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(in, strlen(in), d, &n, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_release_keeps_written_memory(void **state)
{
    (void)state;
    char before[65], after[65];
    sha256_hex("abc", before); /* libcrypto's pages mapped and its providers set up */
    counter++;
    memset(scratch, 0x5a, sizeof(scratch));
    char *heap = malloc(1 << 20);
    assert_non_null(heap);
    memset(heap, 0xa5, 1 << 20);

    size_t dropped = tm_idle_release();
    assert_true(dropped > 0); /* the text of this program and of libc at least */

    assert_int_equal(counter, 42);
    for (size_t i = 0; i < sizeof(scratch); i++)
        assert_int_equal((unsigned char)scratch[i], 0x5a);
    for (size_t i = 0; i < (1 << 20); i += 4093)
        assert_int_equal((unsigned char)heap[i], 0xa5);
    free(heap);
    assert_string_equal(greeting, "hello");
    /* The library works again from the page cache, with the same result. */
    sha256_hex("abc", after);
    assert_string_equal(before, after);
    assert_string_equal(after, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Twice in a row is fine too. */
    tm_idle_release();
    sha256_hex("abc", after);
    assert_string_equal(before, after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_release_keeps_written_memory)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
