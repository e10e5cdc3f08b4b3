/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control-protocol framing: the byte-level state machine (tm_frame_feed), the fd driver
 * (tm_frame_read) over real non-blocking sockets, the writer side, and protobuf payloads. */
#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "proto.h"

/* header + payload, as it travels */
static size_t make_frame(uint8_t *out, const void *payload, uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, payload, len);
    return 4 + (size_t)len;
}

static void assert_taken(tm_frame_reader *r, const char *want)
{
    uint32_t len;
    uint8_t *p = tm_frame_take(r, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
    free(p);
}

/* --- tm_frame_feed --- */

static void split_at_every_byte_boundary(void **state)
{
    (void)state;
    static const char payload[] = "0123456789";
    uint8_t frame[64];
    size_t n = make_frame(frame, payload, sizeof(payload) - 1);
    for (size_t cut = 0; cut <= n; cut++) {
        tm_frame_reader r = {0};
        size_t used = 99;
        assert_int_equal(tm_frame_feed(&r, frame, cut, &used), cut == n ? 1 : 0);
        assert_int_equal(used, cut);
        if (cut < n) {
            assert_int_equal(tm_frame_feed(&r, frame + cut, n - cut, &used), 1);
            assert_int_equal(used, n - cut);
        }
        assert_taken(&r, payload);
        tm_frame_reader_reset(&r);
    }
}

static void one_byte_at_a_time(void **state)
{
    (void)state;
    uint8_t frame[64];
    size_t n = make_frame(frame, "abc", 3);
    tm_frame_reader r = {0};
    for (size_t i = 0; i < n; i++) {
        size_t used;
        assert_int_equal(tm_frame_feed(&r, frame + i, 1, &used), i == n - 1 ? 1 : 0);
        assert_int_equal(used, 1);
    }
    assert_taken(&r, "abc");
}

static void several_frames_in_one_buffer(void **state)
{
    (void)state;
    static const char *const payloads[] = {"first", "", "third frame"};
    uint8_t buf[128];
    size_t n = 0;
    for (size_t i = 0; i < 3; i++)
        n += make_frame(buf + n, payloads[i], (uint32_t)strlen(payloads[i]));
    tm_frame_reader r = {0};
    size_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t used;
        assert_int_equal(tm_frame_feed(&r, buf + off, n - off, &used), 1);
        /* Stops exactly at the end of the frame; the rest belongs to the next one. */
        assert_int_equal(used, 4 + strlen(payloads[i]));
        off += used;
        assert_taken(&r, payloads[i]);
    }
    assert_int_equal(off, n);
    assert_false(tm_frame_partial(&r));
}

static void zero_length_payload(void **state)
{
    (void)state;
    static const uint8_t hdr[4] = {0, 0, 0, 0};
    tm_frame_reader r = {0};
    size_t used;
    assert_int_equal(tm_frame_feed(&r, hdr, 4, &used), 1);
    assert_int_equal(used, 4);
    uint32_t len = 99;
    uint8_t *p = tm_frame_take(&r, &len);
    assert_non_null(p); /* distinct from "no frame" */
    assert_int_equal(len, 0);
    free(p);
}

static void feed_header(tm_frame_reader *r, uint32_t len, int want)
{
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    size_t used;
    assert_int_equal(tm_frame_feed(r, hdr, 4, &used), want);
    assert_int_equal(used, 4);
}

static void exactly_frame_max(void **state)
{
    (void)state;
    tm_frame_reader r = {0};
    feed_header(&r, TM_FRAME_MAX, 0);
    uint8_t *body = calloc(1, TM_FRAME_MAX);
    assert_non_null(body);
    body[TM_FRAME_MAX - 1] = 0x5a;
    size_t used;
    assert_int_equal(tm_frame_feed(&r, body, TM_FRAME_MAX, &used), 1);
    assert_int_equal(used, TM_FRAME_MAX);
    uint32_t len;
    uint8_t *p = tm_frame_take(&r, &len);
    assert_int_equal(len, TM_FRAME_MAX);
    assert_int_equal(p[TM_FRAME_MAX - 1], 0x5a);
    free(p);
    free(body);
}

static void above_frame_max(void **state)
{
    (void)state;
    tm_frame_reader r = {0};
    feed_header(&r, TM_FRAME_MAX + 1, -EMSGSIZE);
    tm_frame_reader_reset(&r);
}

static void all_ones_header(void **state)
{
    (void)state;
    tm_frame_reader r = {0};
    feed_header(&r, 0xffffffffu, -EMSGSIZE);
    tm_frame_reader_reset(&r);
}

static void custom_max(void **state)
{
    (void)state;
    tm_frame_reader r = {.max = 100};
    feed_header(&r, 101, -EMSGSIZE);
    tm_frame_reader_reset(&r);
    assert_int_equal(r.max, 100); /* reset keeps the limit */
    feed_header(&r, 100, 0);
    tm_frame_reader_reset(&r);
}

static void partial_semantics(void **state)
{
    (void)state;
    uint8_t frame[16];
    size_t n = make_frame(frame, "xyz", 3), used;
    tm_frame_reader r = {0};
    assert_false(tm_frame_partial(&r));
    tm_frame_feed(&r, frame, 1, &used);
    assert_true(tm_frame_partial(&r)); /* inside the header */
    tm_frame_feed(&r, frame + 1, 4, &used);
    assert_true(tm_frame_partial(&r)); /* inside the payload */
    assert_int_equal(tm_frame_feed(&r, frame + 5, n - 5, &used), 1);
    assert_taken(&r, "xyz");
    assert_false(tm_frame_partial(&r)); /* between frames */
}

static void reset_drops_a_partial_frame(void **state)
{
    (void)state;
    uint8_t frame[16];
    size_t n = make_frame(frame, "abcdef", 6), used;
    tm_frame_reader r = {0};
    tm_frame_feed(&r, frame, n - 2, &used);
    tm_frame_reader_reset(&r);
    assert_false(tm_frame_partial(&r));
    n = make_frame(frame, "new", 3);
    assert_int_equal(tm_frame_feed(&r, frame, n, &used), 1);
    assert_taken(&r, "new");
}

/* --- tm_frame_read over a socket --- */

struct pair {
    int rd, wr;
};

static int pair_setup(void **state)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
        return -1;
    struct pair *p = malloc(sizeof(*p));
    if (!p)
        return -1;
    *p = (struct pair){.rd = fds[0], .wr = fds[1]};
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    struct pair *p = *state;
    if (p->rd >= 0)
        close(p->rd);
    if (p->wr >= 0)
        close(p->wr);
    free(p);
    return 0;
}

static void send_bytes(struct pair *p, const void *data, size_t n)
{
    assert_int_equal(write(p->wr, data, n), (ssize_t)n);
}

static void close_writer(struct pair *p)
{
    close(p->wr);
    p->wr = -1;
}

static void read_would_block(void **state)
{
    struct pair *p = *state;
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 0);
    assert_false(tm_frame_partial(&r));
}

static void read_one_frame(void **state)
{
    struct pair *p = *state;
    uint8_t frame[32];
    send_bytes(p, frame, make_frame(frame, "hello", 5));
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "hello");
    assert_int_equal(tm_frame_read(&r, p->rd), 0);
}

static void read_leaves_next_frame_in_socket(void **state)
{
    struct pair *p = *state;
    uint8_t buf[64];
    size_t n = make_frame(buf, "one", 3);
    n += make_frame(buf + n, "two", 3);
    send_bytes(p, buf, n);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "one");
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "two");
}

static void read_zero_length_frame(void **state)
{
    struct pair *p = *state;
    send_bytes(p, "\0\0\0\0", 4);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "");
}

static void read_resumes_after_would_block(void **state)
{
    struct pair *p = *state;
    uint8_t frame[32];
    size_t n = make_frame(frame, "split me", 8);
    send_bytes(p, frame, 6);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 0);
    assert_true(tm_frame_partial(&r));
    send_bytes(p, frame + 6, n - 6);
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "split me");
}

static void read_clean_eof(void **state)
{
    struct pair *p = *state;
    close_writer(p);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), -EPIPE);
}

static void read_eof_after_a_frame(void **state)
{
    struct pair *p = *state;
    uint8_t frame[32];
    send_bytes(p, frame, make_frame(frame, "last", 4));
    close_writer(p);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), 1);
    assert_taken(&r, "last");
    assert_int_equal(tm_frame_read(&r, p->rd), -EPIPE);
}

static void read_eof_inside_header(void **state)
{
    struct pair *p = *state;
    send_bytes(p, "\0\0", 2);
    close_writer(p);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), -EPROTO);
    tm_frame_reader_reset(&r);
}

static void read_eof_inside_payload(void **state)
{
    struct pair *p = *state;
    uint8_t frame[32];
    make_frame(frame, "0123456789", 10);
    send_bytes(p, frame, 4 + 3);
    close_writer(p);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), -EPROTO);
    tm_frame_reader_reset(&r);
}

static void read_garbage_length(void **state)
{
    struct pair *p = *state;
    send_bytes(p, "\xff\xff\xff\xff", 4);
    tm_frame_reader r = {0};
    assert_int_equal(tm_frame_read(&r, p->rd), -EMSGSIZE);
    tm_frame_reader_reset(&r);
}

/* --- writer side --- */

static void append_writes_header_and_payload(void **state)
{
    (void)state;
    tm_buf out = {0};
    assert_int_equal(tm_frame_append(&out, "abc", 3), 0);
    assert_int_equal(tm_buf_pending(&out), 7);
    assert_memory_equal(out.data + out.start, "\0\0\0\3abc", 7);
    tm_buf_free(&out);
}

static void append_refuses_oversized(void **state)
{
    (void)state;
    tm_buf out = {0};
    static const char dummy = 0; /* never read: the size is checked first */
    assert_int_equal(tm_frame_append(&out, &dummy, (size_t)TM_FRAME_MAX + 1), -EMSGSIZE);
    assert_int_equal(tm_buf_pending(&out), 0);
    tm_buf_free(&out);
}

/* Drive both ends until every queued byte has been read back as frames. */
static size_t pump(struct pair *p, tm_buf *out, tm_frame_reader *r, uint8_t **frames, uint32_t *lens, size_t max_frames)
{
    size_t got = 0;
    for (int rounds = 0; rounds < 100000; rounds++) {
        int w = tm_buf_flush(out, p->wr);
        assert_true(w >= 0);
        int rd = tm_frame_read(r, p->rd);
        assert_true(rd >= 0);
        if (rd == 1) {
            assert_true(got < max_frames);
            frames[got] = tm_frame_take(r, &lens[got]);
            got++;
        } else if (w == 0) {
            return got;
        }
    }
    fail_msg("no progress");
    return got;
}

static void append_flush_round_trip(void **state)
{
    struct pair *p = *state;
    /* Larger than a socket buffer, so flush has to return "more pending" on the way. */
    size_t big_len = 3 * 1024 * 1024;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    tm_buf out = {0};
    assert_int_equal(tm_frame_append(&out, "small", 5), 0);
    assert_int_equal(tm_frame_append(&out, big, big_len), 0);
    assert_int_equal(tm_frame_append(&out, "", 0), 0);
    tm_frame_reader r = {0};
    uint8_t *frames[3];
    uint32_t lens[3];
    assert_int_equal(pump(p, &out, &r, frames, lens, 3), 3);
    assert_int_equal(lens[0], 5);
    assert_memory_equal(frames[0], "small", 5);
    assert_int_equal(lens[1], big_len);
    assert_memory_equal(frames[1], big, big_len);
    assert_int_equal(lens[2], 0);
    for (size_t i = 0; i < 3; i++)
        free(frames[i]);
    free(big);
    tm_buf_free(&out);
}

static void flush_to_closed_peer(void **state)
{
    struct pair *p = *state;
    tm_buf out = {0};
    assert_int_equal(tm_frame_append(&out, "x", 1), 0);
    close(p->rd);
    p->rd = -1;
    assert_int_equal(tm_buf_flush(&out, p->wr), -EPIPE);
    tm_buf_free(&out);
}

/* --- protobuf payloads --- */

static uint8_t *frame_payload(tm_buf *out, uint32_t *len)
{
    tm_frame_reader r = {0};
    size_t used;
    assert_int_equal(tm_frame_feed(&r, out->data + out->start, tm_buf_pending(out), &used), 1);
    assert_int_equal(used, tm_buf_pending(out));
    return tm_frame_take(&r, len);
}

static void request_round_trip(void **state)
{
    (void)state;
    static const char config[] = "{\"name\":\"demo\"}";
    Trustme__CreateRequest create = TRUSTME__CREATE_REQUEST__INIT;
    create.has_config_json = 1;
    create.config_json.len = sizeof(config) - 1;
    create.config_json.data = (uint8_t *)config;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.has_version = 1;
    req.version = TM_PROTOCOL_VERSION;
    req.has_id = 1;
    req.id = 0x1122334455667788ull;
    req.body_case = TRUSTME__REQUEST__BODY_CREATE;
    req.create = &create;

    tm_buf out = {0};
    assert_int_equal(tm_proto_append(&out, &req.base), 0);
    uint32_t len;
    uint8_t *payload = frame_payload(&out, &len);
    assert_int_equal(len, tm_buf_pending(&out) - 4);

    Trustme__Request *got = trustme__request__unpack(NULL, len, payload);
    assert_non_null(got);
    assert_true(got->has_version);
    assert_int_equal(got->version, TM_PROTOCOL_VERSION);
    assert_int_equal(got->id, 0x1122334455667788ull);
    assert_int_equal(got->body_case, TRUSTME__REQUEST__BODY_CREATE);
    assert_int_equal(got->create->config_json.len, sizeof(config) - 1);
    assert_memory_equal(got->create->config_json.data, config, sizeof(config) - 1);
    trustme__request__free_unpacked(got, NULL);
    free(payload);
    tm_buf_free(&out);
}

static void run_request_round_trip(void **state)
{
    (void)state;
    char *argv[] = {"/bin/echo", "hello world", ""};
    Trustme__RunRequest run = TRUSTME__RUN_REQUEST__INIT;
    run.id = "demo";
    run.n_argv = 3;
    run.argv = argv;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_RUN;
    req.run = &run;

    tm_buf out = {0};
    assert_int_equal(tm_proto_append(&out, &req.base), 0);
    uint32_t len;
    uint8_t *payload = frame_payload(&out, &len);
    Trustme__Request *got = trustme__request__unpack(NULL, len, payload);
    assert_non_null(got);
    assert_false(got->has_version); /* absent stays absent: the daemon answers with an error */
    assert_int_equal(got->body_case, TRUSTME__REQUEST__BODY_RUN);
    assert_string_equal(got->run->id, "demo");
    assert_int_equal(got->run->n_argv, 3);
    assert_string_equal(got->run->argv[1], "hello world");
    assert_string_equal(got->run->argv[2], "");
    trustme__request__free_unpacked(got, NULL);
    free(payload);
    tm_buf_free(&out);
}

static void malformed_requests_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[8];
        size_t len;
    } cases[] = {
        {"truncated varint", {0x08, 0xff}, 2},
        {"version sent as length-delimited", {0x0a, 0x01, 0x00}, 3},
        {"length beyond the buffer", {0x62, 0x05, 0x0a}, 3},
        {"create body that is not a message", {0x62, 0x02, 0x0a, 0x7f}, 4},
        {"field number 0", {0x00, 0x01}, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Trustme__Request *got = trustme__request__unpack(NULL, cases[i].len, cases[i].bytes);
        if (got)
            print_error("accepted: %s\n", cases[i].what);
        assert_null(got);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void random_payloads_do_not_crash_unpack(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t decoded = 0, refused = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = rng() % sizeof(buf);
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)rng();
        Trustme__Request *got = trustme__request__unpack(NULL, len, buf);
        if (got) {
            /* Whatever decodes must be consistent enough to pack again. */
            size_t n = trustme__request__get_packed_size(got);
            uint8_t *again = malloc(n ? n : 1);
            assert_non_null(again);
            assert_int_equal(trustme__request__pack(got, again), n);
            free(again);
            trustme__request__free_unpacked(got, NULL);
            decoded++;
        } else {
            refused++;
        }
    }
    /* Both outcomes happen: random bytes are mostly garbage, short ones often decode. */
    assert_true(decoded > 0);
    assert_true(refused > 0);
}

static void every_truncation_of_a_request(void **state)
{
    (void)state;
    Trustme__StopRequest stop = TRUSTME__STOP_REQUEST__INIT;
    stop.id = "demo";
    stop.has_timeout_s = 1;
    stop.timeout_s = 300;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.has_version = 1;
    req.version = 1;
    req.has_id = 1;
    req.id = 42;
    req.body_case = TRUSTME__REQUEST__BODY_STOP;
    req.stop = &stop;
    uint8_t buf[64];
    size_t n = trustme__request__pack(&req, buf);
    size_t refused = 0;
    for (size_t cut = 0; cut < n; cut++) {
        Trustme__Request *got = trustme__request__unpack(NULL, cut, buf);
        if (got)
            trustme__request__free_unpacked(got, NULL);
        else
            refused++;
    }
    /* Cuts inside a field (not on a field boundary) must be refused. */
    assert_true(refused > 0);
    Trustme__Request *whole = trustme__request__unpack(NULL, n, buf);
    assert_non_null(whole);
    assert_int_equal(whole->stop->timeout_s, 300);
    trustme__request__free_unpacked(whole, NULL);
}

/* A header announcing 16 MiB followed by a few bytes (a half frame held open) costs what
 * arrived, not what was announced; the whole frame still arrives intact. */
static void announced_size_is_not_allocated_up_front(void **state)
{
    (void)state;
    const uint32_t len = TM_FRAME_MAX;
    tm_frame_reader r = {0};
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    size_t used;
    assert_int_equal(tm_frame_feed(&r, hdr, 4, &used), 0);
    assert_int_equal(tm_frame_feed(&r, (const uint8_t *)"abc", 3, &used), 0);
    assert_true(r.cap <= 65536 + 1);
    uint8_t *chunk = malloc(1 << 20);
    assert_non_null(chunk);
    size_t sent = 3;
    while (sent < len) {
        size_t n = len - sent < (1u << 20) ? len - sent : (1u << 20);
        memset(chunk, (int)(sent >> 20), n);
        int ret = tm_frame_feed(&r, chunk, n, &used);
        assert_int_equal(used, n);
        sent += n;
        assert_int_equal(ret, sent == len ? 1 : 0);
        assert_true(r.cap <= (size_t)len + 1);
    }
    uint32_t got;
    uint8_t *p = tm_frame_take(&r, &got);
    assert_int_equal(got, len);
    assert_memory_equal(p, "abc", 3);
    assert_int_equal(p[len - 1], (uint8_t)((len - 1) >> 20));
    assert_int_equal(p[(5 << 20) + 3], 5);
    free(p);
    free(chunk);
}

#define SOCKET_TEST(f) cmocka_unit_test_setup_teardown(f, pair_setup, pair_teardown)

int main(void)
{
    /* A vanished peer must be an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_at_every_byte_boundary),
        cmocka_unit_test(one_byte_at_a_time),
        cmocka_unit_test(several_frames_in_one_buffer),
        cmocka_unit_test(zero_length_payload),
        cmocka_unit_test(exactly_frame_max),
        cmocka_unit_test(above_frame_max),
        cmocka_unit_test(all_ones_header),
        cmocka_unit_test(custom_max),
        cmocka_unit_test(partial_semantics),
        cmocka_unit_test(reset_drops_a_partial_frame),
        cmocka_unit_test(announced_size_is_not_allocated_up_front),
        SOCKET_TEST(read_would_block),
        SOCKET_TEST(read_one_frame),
        SOCKET_TEST(read_leaves_next_frame_in_socket),
        SOCKET_TEST(read_zero_length_frame),
        SOCKET_TEST(read_resumes_after_would_block),
        SOCKET_TEST(read_clean_eof),
        SOCKET_TEST(read_eof_after_a_frame),
        SOCKET_TEST(read_eof_inside_header),
        SOCKET_TEST(read_eof_inside_payload),
        SOCKET_TEST(read_garbage_length),
        cmocka_unit_test(append_writes_header_and_payload),
        cmocka_unit_test(append_refuses_oversized),
        SOCKET_TEST(append_flush_round_trip),
        SOCKET_TEST(flush_to_closed_peer),
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(run_request_round_trip),
        cmocka_unit_test(malformed_requests_are_refused),
        cmocka_unit_test(random_payloads_do_not_crash_unpack),
        cmocka_unit_test(every_truncation_of_a_request),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
