/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A vTPM owner's signed statements (src/lib/owner_stmt.c): what is signed verifies, and any
 * edit, another key, a statement of one kind given as another, trailing bytes are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "owner_stmt.h"

static char key_a[] = "/tmp/test-owner-stmt-a-XXXXXX", key_b[] = "/tmp/test-owner-stmt-b-XXXXXX";

static void make_key(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    assert_true(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    make_key(key_a);
    make_key(key_b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(key_a);
    unlink(key_b);
    return 0;
}

static struct owner_stmt base(enum owner_stmt_type t)
{
    struct owner_stmt s = {.type = t, .mandatory = true};
    strcpy(s.container, "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b");
    s.ek[1] = 0x0b;
    memset(s.ek + 2, 0x42, 32);
    return s;
}

static void round_trip_and_edits(void **state)
{
    (void)state;
    static struct owner_stmt s, got, rel;
    s = base(OWNER_STMT_OWNER);
    char *text = NULL, *rtext = NULL, *btext = NULL;
    size_t len = 0, rlen = 0, blen = 0;
    tm_err err = {0};
    assert_int_equal(owner_stmt_sign(&s, key_a, &text, &len, &err), 0);
    assert_int_equal(owner_stmt_parse(text, len, NULL, 0, &got, &err), 0);
    assert_true(got.mandatory);
    assert_string_equal(got.container, s.container);
    assert_memory_equal(got.ek, s.ek, 34);
    /* Any edit of a signed byte: refused. */
    char *edited = strdup(text);
    char *u = strstr(edited, "4a5b\n");
    u[3] = 'c'; /* another container, still a UUID */
    assert_int_equal(owner_stmt_parse(edited, len, NULL, 0, &got, &err), -EKEYREJECTED);
    free(edited);
    /* Trailing bytes: refused. */
    char *longer = malloc(len + 2);
    memcpy(longer, text, len);
    memcpy(longer + len, "x\n", 2);
    assert_int_equal(owner_stmt_parse(longer, len + 2, NULL, 0, &got, &err), -EBADMSG);
    free(longer);
    /* A release by the owner verifies with its key, not with another's; never as an owner
     * statement without a key. */
    rel = base(OWNER_STMT_RELEASE);
    assert_int_equal(owner_stmt_sign(&rel, key_a, &rtext, &rlen, &err), 0);
    assert_int_equal(owner_stmt_parse(rtext, rlen, got.key, got.key_len, &rel, &err), 0);
    assert_int_equal(rel.type, OWNER_STMT_RELEASE);
    assert_int_not_equal(owner_stmt_parse(rtext, rlen, NULL, 0, &rel, &err), 0);
    static struct owner_stmt other;
    other = base(OWNER_STMT_RELEASE);
    assert_int_equal(owner_stmt_sign(&other, key_b, &btext, &blen, &err), 0);
    assert_int_equal(owner_stmt_parse(btext, blen, got.key, got.key_len, &other, &err), -EKEYREJECTED);
    free(text);
    free(rtext);
    free(btext);
}

static void reference_values(void **state)
{
    (void)state;
    static struct owner_stmt s, owner, got;
    char *otext = NULL, *text = NULL;
    size_t olen = 0, len = 0;
    tm_err err = {0};
    owner = base(OWNER_STMT_OWNER);
    assert_int_equal(owner_stmt_sign(&owner, key_a, &otext, &olen, &err), 0);
    assert_int_equal(owner_stmt_parse(otext, olen, NULL, 0, &owner, &err), 0);
    s = base(OWNER_STMT_REFS);
    s.nrefs = 2;
    strcpy(s.refs[0].type, "container-config");
    memset(s.refs[0].sha256, 0x11, 32);
    strcpy(s.refs[1].type, "guestos-image");
    memset(s.refs[1].sha256, 0x22, 32);
    assert_int_equal(owner_stmt_sign(&s, key_a, &text, &len, &err), 0);
    assert_int_equal(owner_stmt_parse(text, len, owner.key, owner.key_len, &got, &err), 0);
    assert_int_equal(got.nrefs, 2);
    assert_string_equal(got.refs[1].type, "guestos-image");
    assert_memory_equal(got.refs[0].sha256, s.refs[0].sha256, 32);
    /* A value changed after signing: refused. */
    char *v = strstr(text, "value container-config 11");
    v[strlen("value container-config ")] = '3';
    assert_int_equal(owner_stmt_parse(text, len, owner.key, owner.key_len, &got, &err), -EKEYREJECTED);
    free(text);
    free(otext);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(round_trip_and_edits), cmocka_unit_test(reference_values)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
