/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The accept loop every stream server of trustme uses (src/lib/acceptor.c), on a real event loop
 * and a real unix socket: every pending client is handed over non-blocking and close-on-exec;
 * out of fds it pauses instead of spinning and serves the waiting client once fds are free again;
 * stopping closes the listening socket. And tm_packet_next (packet.c), the request loop step of
 * scd's and tpmd's links: a bad packet is answered and the link read on. */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "unit.h"

#include "acceptor.h"
#include "event.h"
#include "packet.h"

struct state {
    tm_loop *loop;
    int fds[64];
    int n;
    int want; /* quit the loop once this many arrived */
    unsigned ticks; /* timer rounds while waiting */
};

static void on_client(int fd, void *userdata)
{
    struct state *s = userdata;
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    s->fds[s->n++] = fd;
    if (s->n >= s->want)
        tm_loop_quit(s->loop, 0);
}

static void on_deadline(tm_source *src, void *userdata)
{
    tm_loop_quit(userdata, -ETIMEDOUT);
}

static int listener(struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    *addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    /* abstract: nothing to clean up on the file system */
    snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, "tm-acceptor-test-%d", getpid());
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static int client(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0);
    return fd;
}

static void run_until(struct state *s, unsigned ms)
{
    tm_source *t = tm_loop_timer(s->loop, ms, on_deadline, s->loop);
    int r = tm_loop_run(s->loop);
    if (r == 0)
        tm_source_free(t);
    assert_int_equal(r, 0);
}

static void every_pending_client_is_handed_over(void **unused)
{
    (void)unused;
    struct state s = {.loop = tm_loop_new(), .want = 5};
    struct sockaddr_un addr;
    struct tm_acceptor a;
    tm_err err;
    assert_int_equal(tm_acceptor_start(&a, s.loop, listener(&addr), 50, "test", on_client, &s, &err), 0);
    int c[5];
    for (int i = 0; i < 5; i++)
        c[i] = client(&addr);
    run_until(&s, 5000);
    assert_int_equal(s.n, 5);
    /* the accepted fds are the clients' peers */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(write(c[i], "x", 1), 1);
        char b;
        assert_int_equal(read(s.fds[i], &b, 1), 1);
        close(c[i]);
        close(s.fds[i]);
    }
    int lfd = a.fd;
    tm_acceptor_stop(&a);
    assert_int_equal(fcntl(lfd, F_GETFD), -1); /* closed */
    tm_acceptor_stop(&a); /* twice is fine */
    tm_loop_free(s.loop);
}

struct hog {
    struct state *s;
    struct tm_acceptor *a;
    int fds[1024];
    int n;
    struct rlimit old;
};

/* 300 ms into the pause: nothing was accepted and the acceptor is paused (not spinning: this
 * timer got to run); now the fds are given back. */
static void release_fds(tm_source *src, void *userdata)
{
    struct hog *h = userdata;
    assert_int_equal(h->s->n, 0);
    assert_non_null(h->a->pause_timer);
    while (h->n)
        close(h->fds[--h->n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &h->old), 0);
}

static void out_of_fds_pauses_then_serves(void **unused)
{
    (void)unused;
    struct state s = {.loop = tm_loop_new(), .want = 1};
    struct sockaddr_un addr;
    struct tm_acceptor a;
    tm_err err;
    assert_int_equal(tm_acceptor_start(&a, s.loop, listener(&addr), 50, "test", on_client, &s, &err), 0);
    int c = client(&addr);
    /* The timers first (a timer needs no fd, but be sure), then every fd below a low limit is
     * used up: accept4 fails with EMFILE. */
    struct hog h = {.s = &s, .a = &a};
    tm_loop_timer(s.loop, 300, release_fds, &h);
    tm_source *deadline = tm_loop_timer(s.loop, 5000, on_deadline, s.loop);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &h.old), 0);
    struct rlimit low = {.rlim_cur = 64, .rlim_max = h.old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int fd; (fd = dup(0)) >= 0;)
        h.fds[h.n++] = fd;
    assert_int_equal(errno, EMFILE);
    assert_int_equal(tm_loop_run(s.loop), 0);
    tm_source_free(deadline);
    /* served at the end of the pause, and accepting again */
    assert_int_equal(s.n, 1);
    assert_int_equal(h.n, 0);
    assert_null(a.pause_timer);
    close(s.fds[0]);
    close(c);
    tm_acceptor_stop(&a);
    tm_loop_free(s.loop);
}

struct bad {
    int code;
    int calls;
};

static void on_bad(int code, const char *msg, void *userdata)
{
    struct bad *b = userdata;
    b->code = code;
    b->calls++;
    assert_non_null(msg);
}

static void bad_packets_are_answered_and_the_link_read_on(void **unused)
{
    (void)unused;
    int fds[2];
    assert_int_equal(tm_packet_socketpair(fds), 0);
    /* a packet whose header disagrees with its size, one too large, then a good one */
    assert_int_equal(send(fds[0],
                          "\x00\x00\x00\x09"
                          "abc",
                          7, 0),
                     7);
    uint8_t big[4 + 100] = {0, 0, 0, 100};
    assert_int_equal(send(fds[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
    assert_int_equal(send(fds[0],
                          "\x00\x00\x00\x02"
                          "ok",
                          6, 0),
                     6);
    shutdown(fds[0], SHUT_WR);
    struct bad b = {0};
    struct tm_packet pkt;
    assert_int_equal(tm_packet_next(fds[1], 64, &pkt, on_bad, &b), TM_PACKET_ANSWERED);
    assert_int_equal(b.code, EBADMSG);
    assert_int_equal(tm_packet_next(fds[1], 64, &pkt, on_bad, &b), TM_PACKET_ANSWERED);
    assert_int_equal(b.code, EMSGSIZE);
    assert_int_equal(tm_packet_next(fds[1], 64, &pkt, on_bad, &b), 1);
    assert_int_equal(pkt.len, 6);
    assert_memory_equal(pkt.data + 4, "ok", 2);
    tm_packet_free(&pkt);
    assert_int_equal(tm_packet_next(fds[1], 64, &pkt, on_bad, &b), 0);
    assert_int_equal(b.calls, 2);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_pending_client_is_handed_over),
        cmocka_unit_test(out_of_fds_pauses_then_serves),
        cmocka_unit_test(bad_packets_are_answered_and_the_link_read_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
