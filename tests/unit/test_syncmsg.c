/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parent/child sync messages over a SOCK_SEQPACKET socketpair: round trips, fd passing, and
 * raw malformed datagrams that the receiver must refuse without leaking a passed fd. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "syncmsg.h"

/* The wire header, restated here so that the test notices a format change. */
#define WIRE_MAGIC 0x746d7331u /* "tms1" */
struct wire_hdr {
    uint32_t magic, type, len;
};

struct pair {
    int a, b; /* a sends, b receives */
};

static int setup(void **state)
{
    int fds[2];
    if (tm_sync_socketpair(fds) < 0)
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
    if (p->b >= 0)
        close(p->b);
    free(p);
    return 0;
}

static void recv_one(struct pair *p, tm_sync_msg *msg)
{
    assert_int_equal(tm_sync_recv(p->b, msg), 1);
}

/* Send header + payload as one datagram, optionally with an fd. */
static void send_raw(struct pair *p, uint32_t magic, uint32_t type, uint32_t len, const void *payload,
                     size_t payload_len, int pass_fd)
{
    size_t n = sizeof(struct wire_hdr) + payload_len;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    struct wire_hdr hdr = {.magic = magic, .type = type, .len = len};
    memcpy(buf, &hdr, sizeof(hdr));
    if (payload_len)
        memcpy(buf + sizeof(hdr), payload, payload_len);
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl = {0};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    assert_int_equal(sendmsg(p->a, &mh, 0), (ssize_t)n);
    free(buf);
}

static void send_bytes(struct pair *p, const void *data, size_t n)
{
    assert_int_equal(send(p->a, data, n, 0), (ssize_t)n);
}

static void expect_bad(struct pair *p)
{
    tm_sync_msg msg;
    assert_int_equal(tm_sync_recv(p->b, &msg), -EBADMSG);
    assert_int_equal(msg.fd, -1);
}

/* True if every write end of the pipe whose read end is rd is closed. */
static bool pipe_writers_gone(int rd)
{
    char c;
    fcntl(rd, F_SETFL, O_NONBLOCK);
    return read(rd, &c, 1) == 0;
}

/* --- round trips --- */

static void progress_round_trip(void **state)
{
    struct pair *p = *state;
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, "mounting rootfs"), 0);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.type, TM_SYNC_PROGRESS);
    assert_int_equal(msg.len, strlen("mounting rootfs"));
    assert_string_equal(msg.payload, "mounting rootfs");
    assert_int_equal(msg.fd, -1);
}

static void pid_round_trip(void **state)
{
    struct pair *p = *state;
    assert_int_equal(tm_sync_send_pid(p->a, 123456), 0);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.type, TM_SYNC_PID);
    assert_int_equal(msg.len, sizeof(int32_t));
    int32_t pid;
    memcpy(&pid, msg.payload, sizeof(pid));
    assert_int_equal(pid, 123456);
}

static void error_payload_layout(void **state)
{
    struct pair *p = *state;
    tm_err err;
    tm_err_set(&err, ENOENT, "cannot find /sbin/init");
    tm_sync_send_error(p->a, &err);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.type, TM_SYNC_ERROR);
    int32_t code;
    memcpy(&code, msg.payload, sizeof(code));
    assert_int_equal(code, ENOENT);
    assert_int_equal(msg.len, sizeof(code) + strlen("cannot find /sbin/init"));
    assert_string_equal(msg.payload + sizeof(code), "cannot find /sbin/init");
}

static void error_without_code_becomes_eio(void **state)
{
    struct pair *p = *state;
    tm_err err = {0};
    tm_sync_send_error(p->a, &err);
    tm_sync_msg msg;
    recv_one(p, &msg);
    int32_t code;
    memcpy(&code, msg.payload, sizeof(code));
    assert_int_equal(code, EIO);
    assert_int_equal(msg.len, sizeof(code));
}

static void longest_error_message_fits(void **state)
{
    struct pair *p = *state;
    tm_err err = {.code = EPERM};
    memset(err.msg, 'e', sizeof(err.msg) - 1);
    err.msg[sizeof(err.msg) - 1] = '\0';
    tm_sync_send_error(p->a, &err);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.len, sizeof(int32_t) + sizeof(err.msg) - 1);
}

static void pty_passes_a_working_fd(void **state)
{
    struct pair *p = *state;
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    assert_int_equal(tm_sync_send(p->a, TM_SYNC_PTY, NULL, 0, pipefd[1]), 0);
    close(pipefd[1]);

    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.type, TM_SYNC_PTY);
    assert_int_equal(msg.len, 0);
    assert_true(msg.fd >= 0);
    assert_true(fcntl(msg.fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(msg.fd, "ok", 2), 2);
    char buf[2];
    assert_int_equal(read(pipefd[0], buf, 2), 2);
    assert_memory_equal(buf, "ok", 2);
    close(msg.fd);
    close(pipefd[0]);
}

static void largest_payload(void **state)
{
    struct pair *p = *state;
    char payload[TM_SYNC_MAX_PAYLOAD];
    memset(payload, 'p', sizeof(payload));
    assert_int_equal(tm_sync_send(p->a, TM_SYNC_PROGRESS, payload, sizeof(payload), -1), 0);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.len, TM_SYNC_MAX_PAYLOAD);
    assert_memory_equal(msg.payload, payload, sizeof(payload));
    assert_int_equal(msg.payload[TM_SYNC_MAX_PAYLOAD], '\0');
}

static void send_refuses_oversized_payload(void **state)
{
    struct pair *p = *state;
    char payload[TM_SYNC_MAX_PAYLOAD + 1] = {0};
    assert_int_equal(tm_sync_send(p->a, TM_SYNC_PROGRESS, payload, sizeof(payload), -1), -EMSGSIZE);
    tm_sync_msg msg;
    assert_int_equal(tm_sync_recv(p->b, &msg), -EAGAIN); /* nothing was sent */
}

static void long_text_is_cut_to_the_limit(void **state)
{
    struct pair *p = *state;
    char text[TM_SYNC_MAX_PAYLOAD + 500];
    memset(text, 't', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, text), 0);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_int_equal(msg.len, TM_SYNC_MAX_PAYLOAD);
}

static void messages_keep_their_boundaries(void **state)
{
    struct pair *p = *state;
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, "one"), 0);
    assert_int_equal(tm_sync_send_pid(p->a, 7), 0);
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, "three"), 0);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_string_equal(msg.payload, "one");
    recv_one(p, &msg);
    assert_int_equal(msg.type, TM_SYNC_PID);
    recv_one(p, &msg);
    assert_string_equal(msg.payload, "three");
}

/* --- malformed datagrams --- */

static void wrong_magic(void **state)
{
    struct pair *p = *state;
    send_raw(p, 0x746d7332u, TM_SYNC_PROGRESS, 2, "hi", 2, -1);
    expect_bad(p);
}

static void length_larger_than_payload(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, TM_SYNC_PROGRESS, 5, "abc", 3, -1);
    expect_bad(p);
}

static void length_smaller_than_payload(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, TM_SYNC_PROGRESS, 0, "abc", 3, -1);
    expect_bad(p);
}

static void type_zero(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, 0, 0, NULL, 0, -1);
    expect_bad(p);
}

static void type_above_last(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, TM_SYNC_LAST + 1, 0, NULL, 0, -1);
    expect_bad(p);
}

static void oversized_datagram(void **state)
{
    struct pair *p = *state;
    static char payload[TM_SYNC_MAX_PAYLOAD + 1];
    memset(payload, 'o', sizeof(payload));
    send_raw(p, WIRE_MAGIC, TM_SYNC_PROGRESS, sizeof(payload), payload, sizeof(payload), -1);
    expect_bad(p);
}

static void huge_length_field(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, TM_SYNC_PROGRESS, 0xffffffffu, "x", 1, -1);
    expect_bad(p);
}

static void short_datagram(void **state)
{
    struct pair *p = *state;
    send_bytes(p, "\x31\x73\x6d\x74\x01", 5); /* magic and one byte of type */
    expect_bad(p);
}

static void bad_message_fd_is_closed(void **state)
{
    struct pair *p = *state;
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    send_raw(p, 0xdeadbeefu, TM_SYNC_PTY, 0, NULL, 0, pipefd[1]);
    close(pipefd[1]);
    expect_bad(p);
    /* The receiver dropped its copy: no write end is left anywhere. */
    assert_true(pipe_writers_gone(pipefd[0]));
    close(pipefd[0]);
}

static void good_message_after_bad_one(void **state)
{
    struct pair *p = *state;
    send_raw(p, WIRE_MAGIC, 99, 0, NULL, 0, -1);
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, "still here"), 0);
    expect_bad(p);
    tm_sync_msg msg;
    recv_one(p, &msg);
    assert_string_equal(msg.payload, "still here");
}

/* --- end of stream --- */

static void eof_returns_zero(void **state)
{
    struct pair *p = *state;
    close(p->a);
    p->a = -1;
    tm_sync_msg msg;
    assert_int_equal(tm_sync_recv(p->b, &msg), 0);
}

static void empty_socket_would_block(void **state)
{
    struct pair *p = *state;
    tm_sync_msg msg;
    assert_int_equal(tm_sync_recv(p->b, &msg), -EAGAIN);
}

static void send_to_closed_peer_fails(void **state)
{
    struct pair *p = *state;
    close(p->b);
    p->b = -1;
    /* MSG_NOSIGNAL: an error, not SIGPIPE. */
    assert_int_equal(tm_sync_send_text(p->a, TM_SYNC_PROGRESS, "x"), -EPIPE);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(progress_round_trip),
        T(pid_round_trip),
        T(error_payload_layout),
        T(error_without_code_becomes_eio),
        T(longest_error_message_fits),
        T(pty_passes_a_working_fd),
        T(largest_payload),
        T(send_refuses_oversized_payload),
        T(long_text_is_cut_to_the_limit),
        T(messages_keep_their_boundaries),
        T(wrong_magic),
        T(length_larger_than_payload),
        T(length_smaller_than_payload),
        T(type_zero),
        T(type_above_last),
        T(oversized_datagram),
        T(huge_length_field),
        T(short_datagram),
        T(bad_message_fd_is_closed),
        T(good_message_after_bad_one),
        T(eof_returns_zero),
        T(empty_socket_would_block),
        T(send_to_closed_peer_fails),
    };
    return cmocka_run_group_tests_name("syncmsg", tests, NULL, NULL);
}
