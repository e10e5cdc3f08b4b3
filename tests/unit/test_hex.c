/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The hex codec (src/lib/hex.c): every byte value round trips, encoding is lower-case, and decoding
 * refuses odd lengths, wrong lengths and non-digits with a message naming which, without touching
 * the output. */
#include <errno.h>

#include "unit.h"

#include "hex.h"

static void every_byte_round_trips(void **state)
{
    (void)state;
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char hex[2 * 256 + 1];
    tm_hex(all, sizeof(all), hex);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 2 * 0xfa, "fafbfcfdfeff");
    tm_err err;
    assert_int_equal(tm_hex_decode_str(hex, back, sizeof(back), 0, &err), 0);
    assert_memory_equal(back, all, sizeof(all));
}

static void empty(void **state)
{
    (void)state;
    char hex[1] = {'x'};
    tm_hex(NULL, 0, hex);
    assert_string_equal(hex, "");
    uint8_t out[1] = {0x55};
    assert_int_equal(tm_hex_decode("", 0, out, 0, 0, NULL), 0);
    assert_int_equal(out[0], 0x55);
}

static void upper_case_only_when_asked(void **state)
{
    (void)state;
    uint8_t out[2] = {0};
    tm_err err;
    assert_int_equal(tm_hex_decode_str("aBcD", out, 2, 0, &err), -EINVAL);
    assert_err_contains(&err, "character 2 is not a lower-case hex digit");
    assert_int_equal(out[0], 0);
    assert_int_equal(tm_hex_decode_str("aBcD", out, 2, TM_HEX_ANY_CASE, &err), 0);
    assert_int_equal(out[0], 0xab);
    assert_int_equal(out[1], 0xcd);
}

static void refusals_say_why(void **state)
{
    (void)state;
    uint8_t out[4] = {1, 2, 3, 4};
    static const uint8_t untouched[4] = {1, 2, 3, 4};
    tm_err err;
    assert_int_equal(tm_hex_decode_str("abc", out, 2, 0, &err), -EINVAL);
    assert_int_equal(err.code, EINVAL);
    assert_err_contains(&err, "odd number of hex digits (3)");
    assert_int_equal(tm_hex_decode_str("abcdef", out, 2, 0, &err), -EINVAL);
    assert_err_contains(&err, "6 hex digits where 4 are expected");
    assert_int_equal(tm_hex_decode_str("ab", out, 2, 0, &err), -EINVAL);
    assert_err_contains(&err, "2 hex digits where 4 are expected");
    /* The last digit bad: nothing written even though the first bytes were fine. */
    assert_int_equal(tm_hex_decode_str("0011223g", out, 4, TM_HEX_ANY_CASE, &err), -EINVAL);
    assert_err_contains(&err, "character 8 is not a hex digit");
    assert_memory_equal(out, untouched, 4);
    static const char *const bad[] = {" 0", "0 ", "0x", "-1", "+1", "g0", "\n0", "0:", "/0", "`0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tm_hex_decode_str(bad[i], out, 1, TM_HEX_ANY_CASE, NULL), -EINVAL);
    assert_memory_equal(out, untouched, 4);
}

static void not_nul_terminated(void **state)
{
    (void)state;
    /* A line inside a larger buffer: only hex_len characters are read. */
    const char buf[] = "ff00 rest";
    uint8_t out[2];
    assert_int_equal(tm_hex_decode(buf, 4, out, 2, 0, NULL), 0);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0x00);
}

static void digits(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        int want_any = want >= 0 ? want : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        assert_int_equal(tm_hex_digit((char)c, 0), want);
        assert_int_equal(tm_hex_digit((char)c, TM_HEX_ANY_CASE), want_any);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_byte_round_trips),     cmocka_unit_test(empty),
        cmocka_unit_test(upper_case_only_when_asked), cmocka_unit_test(refusals_say_why),
        cmocka_unit_test(not_nul_terminated),         cmocka_unit_test(digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
