/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Deadline-bounded socket I/O (src/lib/deadline.c), used by trustme-verify's client,
 * trustme-owner's relay and trustme-fleet's channels: a peer that sends part of what is expected
 * and then nothing costs the caller the deadline and no more; a close is told apart before and
 * after the first byte; connecting names the address. Real sockets on the loopback. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "deadline.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void receives_what_was_sent(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    assert_int_equal(tm_send_all(sv[0], "hello", 5, tm_now_ms() + 1000), 0);
    char buf[5];
    assert_int_equal(tm_recv_all(sv[1], buf, 5, tm_now_ms() + 1000), 0);
    assert_memory_equal(buf, "hello", 5);
    close(sv[0]);
    close(sv[1]);
}

static void a_trickle_ends_at_the_deadline(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    assert_int_equal(tm_send_all(sv[0], "ab", 2, tm_now_ms() + 1000), 0);
    char buf[4];
    int64_t t0 = tm_now_ms();
    assert_int_equal(tm_recv_all(sv[1], buf, sizeof(buf), t0 + 200), -ETIMEDOUT);
    int64_t took = tm_now_ms() - t0;
    assert_true(took >= 200);
    assert_true(took < 2000);
    /* A deadline already past returns at once, also for a wait. */
    assert_int_equal(tm_wait_fd(sv[1], POLLIN, tm_now_ms() - 1), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
}

static void a_close_is_told_apart_from_a_cut(void **state)
{
    (void)state;
    int sv[2];
    char buf[4];
    pair(sv);
    close(sv[0]);
    assert_int_equal(tm_recv_all(sv[1], buf, sizeof(buf), tm_now_ms() + 1000), -EPIPE);
    assert_int_equal(tm_send_all(sv[1], "x", 1, tm_now_ms() + 1000), -EPIPE);
    close(sv[1]);
    pair(sv);
    assert_int_equal(tm_send_all(sv[0], "a", 1, tm_now_ms() + 1000), 0);
    close(sv[0]);
    assert_int_equal(tm_recv_all(sv[1], buf, sizeof(buf), tm_now_ms() + 1000), -EPROTO);
    close(sv[1]);
}

static void dials_a_listener_and_names_a_refusal(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    char hp[32];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(a.sin_port));
    tm_err err = {0};
    int fd = tm_dial(hp, tm_now_ms() + 2000, &err);
    assert_true(fd >= 0);
    int c = accept(l, NULL, NULL);
    assert_true(c >= 0);
    assert_int_equal(tm_send_all(fd, "ok", 2, tm_now_ms() + 1000), 0);
    char buf[2];
    assert_int_equal(read(c, buf, 2), 2);
    close(c);
    close(fd);
    close(l); /* nothing listens there now */
    assert_true(tm_dial(hp, tm_now_ms() + 2000, &err) < 0);
    assert_err_contains(&err, hp);
    assert_err_contains(&err, "cannot connect");
    assert_int_equal(tm_dial("no-port", tm_now_ms() + 2000, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(receives_what_was_sent),
        cmocka_unit_test(a_trickle_ends_at_the_deadline),
        cmocka_unit_test(a_close_is_told_apart_from_a_cut),
        cmocka_unit_test(dials_a_listener_and_names_a_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
