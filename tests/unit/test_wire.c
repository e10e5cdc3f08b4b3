/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The message header shared by frames, packets and parent/child messages (src/lib/wire.c): the
 * bytes of each layout spelled out, so that sharing the code cannot change what is on the wire
 * (the protocol tests and fuzz corpora hold the same bytes), and every malformed packet header
 * refused. */
#include <errno.h>

#include "unit.h"

#include "wire.h"

static void len_layout_is_big_endian(void **state)
{
    (void)state;
    uint8_t b[TM_WIRE_HDR_MAX];
    tm_wire_encode(TM_WIRE_LEN, &(struct tm_wire_hdr){.len = 0x01020304}, b);
    assert_memory_equal(b, "\x01\x02\x03\x04", 4);
    assert_int_equal(tm_wire_hdr_size(TM_WIRE_LEN), 4);
    struct tm_wire_hdr h = {.type = 99};
    assert_int_equal(tm_wire_decode(TM_WIRE_LEN, (const uint8_t *)"\xff\x00\x00\x10", &h), 0);
    assert_int_equal(h.len, 0xff000010u);
    assert_int_equal(h.type, 0);
}

static void sync_layout_is_magic_type_len_in_host_order(void **state)
{
    (void)state;
    uint8_t b[TM_WIRE_HDR_MAX];
    tm_wire_encode(TM_WIRE_SYNC, &(struct tm_wire_hdr){.type = 7, .len = 300}, b);
    const uint32_t want[3] = {0x746d7331u, 7, 300};
    assert_memory_equal(b, want, sizeof(want));
    assert_int_equal(tm_wire_hdr_size(TM_WIRE_SYNC), 12);
    struct tm_wire_hdr h;
    assert_int_equal(tm_wire_decode(TM_WIRE_SYNC, b, &h), 0);
    assert_int_equal(h.type, 7);
    assert_int_equal(h.len, 300);
    b[0] ^= 1;
    assert_int_equal(tm_wire_decode(TM_WIRE_SYNC, b, &h), -EBADMSG);
}

static void packets_must_hold_exactly_what_the_header_says(void **state)
{
    (void)state;
    uint8_t p[64] = {0};
    struct tm_wire_hdr h;
    for (int k = TM_WIRE_LEN; k <= TM_WIRE_SYNC; k++) {
        size_t hs = tm_wire_hdr_size(k);
        tm_wire_encode(k, &(struct tm_wire_hdr){.type = 3, .len = 10}, p);
        assert_int_equal(tm_wire_decode_packet(k, p, hs + 10, &h), 0);
        assert_int_equal(h.len, 10);
        assert_int_equal(tm_wire_decode_packet(k, p, hs + 9, &h), -EBADMSG);
        assert_int_equal(tm_wire_decode_packet(k, p, hs + 11, &h), -EBADMSG);
        for (size_t n = 0; n < hs; n++) /* shorter than a header */
            assert_int_equal(tm_wire_decode_packet(k, p, n, &h), -EBADMSG);
        tm_wire_encode(k, &(struct tm_wire_hdr){.len = 0}, p);
        assert_int_equal(tm_wire_decode_packet(k, p, hs, &h), 0);
        assert_int_equal(h.len, 0);
        /* a length that would wrap when added to the header size */
        tm_wire_encode(k, &(struct tm_wire_hdr){.len = UINT32_MAX}, p);
        assert_int_equal(tm_wire_decode_packet(k, p, hs + 1, &h), -EBADMSG);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(len_layout_is_big_endian),
        cmocka_unit_test(sync_layout_is_magic_type_len_in_host_order),
        cmocka_unit_test(packets_must_hold_exactly_what_the_header_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
