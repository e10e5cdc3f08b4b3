/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Strings in control requests (src/lib/proto_strings.c): strict UTF-8 and no NUL, found by
 * walking the wire bytes by the descriptor, in sub-messages and repeated fields too. */
#include "unit.h"

#include <errno.h>

#include "proto.h"
#include "proto_strings.h"

static bool valid(const char *s, size_t len)
{
    return tm_utf8_valid((const uint8_t *)s, len, false, NULL);
}

static void utf8_accepts_text(void **state)
{
    (void)state;
    assert_true(valid("", 0));
    assert_true(valid("rel-w", 5));
    assert_true(valid("gr\xc3\xbc\xc3\x9f", 6)); /* U+00FC U+00DF */
    assert_true(valid("\xe2\x82\xac", 3)); /* U+20AC */
    assert_true(valid("\xed\x9f\xbf", 3)); /* U+D7FF, just below the surrogates */
    assert_true(valid("\xee\x80\x80", 3)); /* U+E000, just above */
    assert_true(valid("\xf0\x9f\x98\x80", 4)); /* U+1F600 */
    assert_true(valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
}

static void utf8_refuses_the_rest(void **state)
{
    (void)state;
    size_t bad = 99;
    assert_false(tm_utf8_valid((const uint8_t *)"rel-w\0junk", 10, false, &bad));
    assert_int_equal(bad, 5);
    assert_true(tm_utf8_valid((const uint8_t *)"a\0b", 3, true, NULL));
    assert_false(valid("\xc0\xaf", 2)); /* overlong '/' */
    assert_false(valid("\xc1\xbf", 2)); /* overlong */
    assert_false(valid("\xe0\x80\xaf", 3)); /* overlong, 3 bytes */
    assert_false(valid("\xf0\x80\x80\xaf", 4)); /* overlong, 4 bytes */
    assert_false(valid("\xed\xa0\x80", 3)); /* U+D800, a surrogate */
    assert_false(valid("\xed\xbf\xbf", 3)); /* U+DFFF */
    assert_false(valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(tm_utf8_valid((const uint8_t *)"x\xffy", 3, false, &bad));
    assert_int_equal(bad, 1);
    assert_false(valid("\xfe", 1));
    assert_false(valid("\x80", 1)); /* a lone continuation byte */
    assert_false(valid("\xc3", 1)); /* cut short */
    assert_false(valid("\xe2\x82", 2));
    assert_false(valid("\xe2\x28\xa1", 3)); /* not a continuation */
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
        v >>= 7;
        n++;
    } while (v);
    return n;
}

static size_t put_bytes(uint8_t *p, unsigned field, const void *data, size_t len)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, data, len);
    return n + len;
}

/* A Request with version 1, id 7 and body field body holding sub (len bytes). */
static size_t request(uint8_t *out, unsigned body, const void *sub, size_t len)
{
    size_t n = 0;
    out[n++] = 0x08, out[n++] = 1;
    out[n++] = 0x10, out[n++] = 7;
    return n + put_bytes(out + n, body, sub, len);
}

static int check(const uint8_t *p, size_t len, tm_err *err)
{
    Trustme__Request *req = trustme__request__unpack(NULL, len, p);
    assert_non_null(req); /* protobuf-c itself accepts all of these */
    trustme__request__free_unpacked(req, NULL);
    return tm_proto_check_strings(&trustme__request__descriptor, p, len, err);
}

static void nul_in_a_container_reference(void **state)
{
    (void)state;
    uint8_t sub[64], msg[128];
    tm_err err = {0};
    size_t n = put_bytes(sub, 1, "rel-w\0junk", 10);
    size_t len = request(msg, 11 /* state */, sub, n);
    assert_int_equal(check(msg, len, &err), -EINVAL);
    assert_err_contains(&err, "state.id: a NUL byte at byte 5");
    n = put_bytes(sub, 1, "rel-w", 5);
    len = request(msg, 11, sub, n);
    assert_int_equal(check(msg, len, &err), 0);
}

static void repeated_and_nested_strings(void **state)
{
    (void)state;
    uint8_t sub[128], msg[256];
    tm_err err = {0};
    size_t n = put_bytes(sub, 1, "c", 1);
    n += put_bytes(sub + n, 2, "/bin/sh", 7);
    n += put_bytes(sub + n, 2, "x\xffy", 3);
    size_t len = request(msg, 18 /* run */, sub, n);
    assert_int_equal(check(msg, len, &err), -EINVAL);
    assert_err_contains(&err, "run.argv[1]: invalid UTF-8 at byte 1");
    n = put_bytes(sub, 1, "c", 1);
    n += put_bytes(sub + n, 3, "A=\xed\xa0\x80", 5);
    len = request(msg, 18, sub, n);
    assert_int_equal(check(msg, len, &err), -EINVAL);
    assert_err_contains(&err, "run.env[0]: invalid UTF-8 at byte 2");
    /* the common name of a device CSR */
    n = put_bytes(sub, 1, "dev\0ice", 7);
    len = request(msg, 34, sub, n);
    assert_int_equal(check(msg, len, &err), -EINVAL);
    assert_err_contains(&err, "device_csr.common_name: a NUL byte");
}

static void bytes_stay_bytes(void **state)
{
    (void)state;
    uint8_t sub[64], msg[128];
    tm_err err = {0};
    /* stdin data and a PIN are bytes: anything goes */
    size_t n = put_bytes(sub, 1, "\0\xff\xc0\xaf", 4);
    size_t len = request(msg, 21 /* stdin */, sub, n);
    assert_int_equal(check(msg, len, &err), 0);
    n = put_bytes(sub, 1, "c", 1);
    n += put_bytes(sub + n, 3, "\0\xff", 2);
    len = request(msg, 14 /* start, pin */, sub, n);
    assert_int_equal(check(msg, len, &err), 0);
    /* an unknown field with a NUL is ignored, as protobuf-c ignores it */
    n = put_bytes(sub, 9, "a\0b", 3);
    len = request(msg, 11, sub, n);
    assert_int_equal(check(msg, len, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_accepts_text),
        cmocka_unit_test(utf8_refuses_the_rest),
        cmocka_unit_test(nul_in_a_container_reference),
        cmocka_unit_test(repeated_and_nested_strings),
        cmocka_unit_test(bytes_stay_bytes),
    };
    return cmocka_run_group_tests_name("proto_strings", tests, NULL, NULL);
}
