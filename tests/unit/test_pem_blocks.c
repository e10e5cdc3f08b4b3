/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The PEM block walk of the enrollment bundles (src/lib/pem_blocks.c): blocks in order with their
 * types and bytes, text around them ignored, a broken block or one block too many refused with
 * its number, the callback's refusal passed on, ownership of the bytes taken. */
#include <errno.h>
#include <openssl/crypto.h>

#include "unit.h"

#include "pem_blocks.h"

struct seen {
    int n;
    char names[4][32];
    long lens[4];
    unsigned char *kept;
    int refuse_at;
};

static int collect(const char *name, unsigned char **data, long len, void *userdata, tm_err *err)
{
    struct seen *s = userdata;
    if (s->n == s->refuse_at)
        return tm_err_set(err, EBADMSG, "refused block %d", s->n + 1);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
    s->lens[s->n] = len;
    if (s->n == 1) {
        s->kept = *data; /* taken: the walk must not free it */
        *data = NULL;
    }
    s->n++;
    return 0;
}

static int walk(const char *text, int max, struct seen *s, tm_err *err)
{
    BIO *in = BIO_new_mem_buf(text, -1);
    assert_non_null(in);
    int r = tm_pem_each_block(in, max, collect, s, err);
    BIO_free(in);
    return r;
}

#define BLOCK(name, b64) "-----BEGIN " name "-----\n" b64 "\n-----END " name "-----\n"

static void blocks_in_order(void **state)
{
    (void)state;
    struct seen s = {.refuse_at = -1};
    tm_err err;
    assert_int_equal(walk("some text first\n" BLOCK("CERTIFICATE", "AAEC") "between\n" BLOCK(
                              "TRUSTME AK PUBLIC", "AwQFBg==") "trailing text\n",
                          4, &s, &err),
                     0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "CERTIFICATE");
    assert_int_equal(s.lens[0], 3);
    assert_string_equal(s.names[1], "TRUSTME AK PUBLIC");
    assert_int_equal(s.lens[1], 4);
    assert_memory_equal(s.kept, "\x03\x04\x05\x06", 4);
    OPENSSL_free(s.kept);
    s = (struct seen){.refuse_at = -1};
    assert_int_equal(walk("", 4, &s, &err), 0);
    assert_int_equal(s.n, 0);
}

static void refusals(void **state)
{
    (void)state;
    tm_err err;
    struct seen s = {.refuse_at = -1};
    assert_int_equal(walk(BLOCK("A", "AA==") BLOCK("B", "AA==") BLOCK("C", "AA=="), 2, &s, &err), -EINVAL);
    assert_err_contains(&err, "more than 2 PEM blocks");
    OPENSSL_free(s.kept);
    s = (struct seen){.refuse_at = -1};
    assert_int_equal(walk(BLOCK("A", "AA==") "-----BEGIN B-----\n!!!!\n-----END B-----\n", 4, &s, &err), -EINVAL);
    assert_err_contains(&err, "PEM block 2 does not parse");
    s = (struct seen){.refuse_at = -1};
    assert_int_equal(walk("-----BEGIN A-----\nAA==\n", 4, &s, &err), -EINVAL);
    assert_err_contains(&err, "PEM block 1 does not parse");
    s = (struct seen){.refuse_at = 0};
    assert_int_equal(walk(BLOCK("A", "AA=="), 4, &s, &err), -EBADMSG);
    assert_err_contains(&err, "refused block 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_in_order),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
