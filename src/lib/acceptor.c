/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "acceptor.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static void resume(tm_source *src, void *userdata)
{
    struct tm_acceptor *a = userdata;
    a->pause_timer = NULL; /* freed already */
    tm_source_modify(a->src, EPOLLIN);
}

static void on_accept(tm_source *src, uint32_t events, void *userdata)
{
    struct tm_acceptor *a = userdata;
    for (;;) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays pending, so the socket stays readable: stop
                 * watching it for a moment rather than spin (timers need no fd). */
                if (now_s() - a->last_logged >= 10 || !a->last_logged) {
                    log_warn("%s socket: cannot accept: %m; pausing new connections until fds "
                             "are free",
                             a->what);
                    a->last_logged = now_s();
                }
                tm_source_modify(a->src, 0);
                if (!a->pause_timer)
                    a->pause_timer = tm_loop_timer(a->loop, a->pause_ms, resume, a);
            } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                log_warn("%s socket: accept: %m", a->what);
            }
            return; /* EAGAIN, or a client that went away before we accepted it */
        }
        a->fn(fd, a->userdata);
    }
}

int tm_acceptor_start(struct tm_acceptor *a, tm_loop *loop, int listen_fd, unsigned pause_ms, const char *what,
                      tm_accept_fn fn, void *userdata, tm_err *err)
{
    *a = (struct tm_acceptor){
        .loop = loop, .fd = listen_fd, .pause_ms = pause_ms, .what = what, .fn = fn, .userdata = userdata};
    a->src = tm_loop_io(loop, listen_fd, EPOLLIN, on_accept, a);
    if (!a->src) {
        close(listen_fd);
        a->fd = -1;
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

void tm_acceptor_stop(struct tm_acceptor *a)
{
    if (a->src)
        close(a->fd);
    tm_source_free(a->src);
    tm_source_free(a->pause_timer);
    a->src = a->pause_timer = NULL;
    a->fd = -1;
}

void *tm_accepted_alloc(int fd, size_t size)
{
    void *p = calloc(1, size);
    if (!p)
        close(fd);
    return p;
}
