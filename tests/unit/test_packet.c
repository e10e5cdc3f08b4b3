/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One framed protobuf message per SOCK_SEQPACKET packet (the trustmed <-> scd link): round trips,
 * and packets the receiver must drop one by one while the next still arrives intact. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "packet.h"
#include "scd.pb-c.h"

struct pair {
    int a, b; /* a sends, b receives */
};

static int setup(void **state)
{
    int fds[2];
    if (tm_packet_socketpair(fds) < 0)
        return -1;
    struct pair *p = malloc(sizeof(*p));
    if (!p)
        return -1;
    *p = (struct pair){.a = fds[0], .b = fds[1]};
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    if (p->a >= 0)
        close(p->a);
    close(p->b);
    free(p);
    return 0;
}

static void send_status(int fd, const char *uuid, uint64_t id)
{
    Trustme__Scd__Status st = TRUSTME__SCD__STATUS__INIT;
    st.uuid = (char *)uuid;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.has_id = true;
    req.id = id;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_STATUS;
    req.status = &st;
    tm_err err;
    assert_int_equal(tm_packet_send_msg(fd, &req.base, 4096, &err), 0);
}

/* Receive one packet and check that it is the Status request send_status made. */
static void expect_status(int fd, const char *uuid, uint64_t id)
{
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(fd, 4096, &pkt), 1);
    Trustme__Scd__Request *req = (Trustme__Scd__Request *)tm_packet_unpack(&trustme__scd__request__descriptor, &pkt);
    assert_non_null(req);
    assert_int_equal(req->id, id);
    assert_int_equal(req->body_case, TRUSTME__SCD__REQUEST__BODY_STATUS);
    assert_string_equal(req->status->uuid, uuid);
    tm_packet_free(&pkt);
}

static void send_raw(int fd, const void *data, size_t len)
{
    assert_int_equal(send(fd, data, len, 0), (ssize_t)len);
}

static void round_trip_in_locked_memory(void **state)
{
    struct pair *p = *state;
    send_status(p->a, "123e4567-e89b-42d3-a456-426614174000", 7);
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), 1);
    assert_non_null(pkt.locked); /* small: it may hold a PIN */
    assert_null(pkt.heap);
    assert_non_null(tm_packet_unpack(&trustme__scd__request__descriptor, &pkt));
    assert_non_null(pkt.arena); /* and so does the parsed message */
    tm_packet_free(&pkt);
    assert_null(pkt.data);
}

static void large_packet_uses_the_heap(void **state)
{
    struct pair *p = *state;
    int big = 1 << 20;
    assert_int_equal(setsockopt(p->a, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
    size_t n = TM_PACKET_LOCKED_MAX * 2;
    uint8_t *data = calloc(1, n);
    assert_non_null(data);
    Trustme__Scd__Verify v = TRUSTME__SCD__VERIFY__INIT;
    v.has_data = true;
    v.data = (ProtobufCBinaryData){.data = data, .len = n};
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_VERIFY;
    req.verify = &v;
    tm_err err;
    assert_int_equal(tm_packet_send_msg(p->a, &req.base, 1 << 20, &err), 0);
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 1 << 20, &pkt), 1);
    assert_null(pkt.locked);
    Trustme__Scd__Request *got = (Trustme__Scd__Request *)tm_packet_unpack(&trustme__scd__request__descriptor, &pkt);
    assert_non_null(got);
    assert_int_equal(got->verify->data.len, n);
    tm_packet_free(&pkt);
    free(data);
}

static void oversized_packet_is_dropped_alone(void **state)
{
    struct pair *p = *state;
    uint8_t junk[600] = {0, 0, 0x02, 0x54}; /* a header announcing 596 bytes: a valid frame */
    send_raw(p->a, junk, sizeof(junk));
    send_status(p->a, "after", 2);
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 512, &pkt), -EMSGSIZE);
    expect_status(p->b, "after", 2);
}

static void header_mismatch_is_dropped_alone(void **state)
{
    struct pair *p = *state;
    const uint8_t longer[] = {0, 0, 0, 9, 1, 2, 3}; /* says 9, carries 3 */
    const uint8_t shorter[] = {0, 0, 0, 1, 1, 2, 3}; /* says 1, carries 3 */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1}; /* says 4 GiB */
    const uint8_t short_hdr[] = {0, 0}; /* not even a header */
    send_raw(p->a, longer, sizeof(longer));
    send_raw(p->a, shorter, sizeof(shorter));
    send_raw(p->a, huge, sizeof(huge));
    send_raw(p->a, short_hdr, sizeof(short_hdr));
    send_status(p->a, "intact", 3);
    struct tm_packet pkt;
    for (int i = 0; i < 4; i++)
        assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), -EBADMSG);
    expect_status(p->b, "intact", 3);
}

static void garbage_payload_does_not_unpack(void **state)
{
    struct pair *p = *state;
    const uint8_t bad[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}; /* a valid frame of nonsense */
    send_raw(p->a, bad, sizeof(bad));
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), 1);
    assert_null(tm_packet_unpack(&trustme__scd__request__descriptor, &pkt));
    tm_packet_free(&pkt);
}

static void empty_packet_is_not_end_of_stream(void **state)
{
    struct pair *p = *state;
    send_raw(p->a, "", 0);
    send_status(p->a, "next", 4);
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), -EBADMSG);
    expect_status(p->b, "next", 4);
}

static void closed_peer_is_end_of_stream(void **state)
{
    struct pair *p = *state;
    send_status(p->a, "last", 5);
    close(p->a);
    p->a = -1;
    expect_status(p->b, "last", 5); /* what was sent before the close still arrives */
    struct tm_packet pkt;
    assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), 0);
}

static void nothing_to_read_is_eagain(void **state)
{
    struct pair *p = *state;
    struct tm_packet pkt;
    assert_int_equal(fcntl(p->b, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(tm_packet_recv(p->b, 4096, &pkt), -EAGAIN);
}

static void pack_refuses_above_the_limit(void **state)
{
    (void)state;
    Trustme__Scd__Status st = TRUSTME__SCD__STATUS__INIT;
    st.uuid = "0123456789";
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_STATUS;
    req.status = &st;
    struct tm_packet pkt;
    tm_err err;
    assert_int_equal(tm_packet_pack(&req.base, 4, &pkt, &err), -EMSGSIZE);
    assert_int_equal(err.code, EMSGSIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_in_locked_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(large_packet_uses_the_heap, setup, teardown),
        cmocka_unit_test_setup_teardown(oversized_packet_is_dropped_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(header_mismatch_is_dropped_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_payload_does_not_unpack, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_packet_is_not_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_peer_is_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(nothing_to_read_is_eagain, setup, teardown),
        cmocka_unit_test(pack_refuses_above_the_limit),
    };
    return cmocka_run_group_tests_name("packet", tests, NULL, NULL);
}
