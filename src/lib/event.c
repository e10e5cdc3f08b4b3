#include "event.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "log.h"

struct tm_source {
    tm_loop *loop;
    int fd;
    bool is_timer; /* the loop owns a timer's timerfd */
    bool dead;
    tm_io_fn io_fn;
    tm_timer_fn timer_fn;
    void *userdata;
    tm_source *next_dead;
};

struct tm_loop {
    int epfd;
    bool quit;
    int code;
    tm_source *dead;
};

tm_loop *tm_loop_new(void)
{
    tm_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    return loop;
}

static void reap_dead(tm_loop *loop)
{
    while (loop->dead) {
        tm_source *s = loop->dead;
        loop->dead = s->next_dead;
        free(s);
    }
}

void tm_loop_free(tm_loop *loop)
{
    if (!loop)
        return;
    reap_dead(loop);
    close(loop->epfd);
    free(loop);
}

static tm_source *add_source(tm_loop *loop, int fd, uint32_t events)
{
    tm_source *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = loop;
    s->fd = fd;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

tm_source *tm_loop_io(tm_loop *loop, int fd, uint32_t events, tm_io_fn fn, void *userdata)
{
    tm_source *s = add_source(loop, fd, events);
    if (s) {
        s->io_fn = fn;
        s->userdata = userdata;
    }
    return s;
}

int tm_source_modify(tm_source *src, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(src->loop->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
}

tm_source *tm_loop_timer(tm_loop *loop, uint64_t msec, tm_timer_fn fn, void *userdata)
{
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tfd < 0)
        return NULL;
    if (msec == 0)
        msec = 1; /* an all-zero it_value would disarm the timer */
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(msec / 1000),
                                          .tv_nsec = (long)(msec % 1000) * 1000000L}};
    tm_source *s = NULL;
    if (timerfd_settime(tfd, 0, &its, NULL) == 0)
        s = add_source(loop, tfd, EPOLLIN);
    if (!s) {
        close(tfd);
        return NULL;
    }
    s->is_timer = true;
    s->timer_fn = fn;
    s->userdata = userdata;
    return s;
}

void tm_source_free(tm_source *src)
{
    if (!src || src->dead)
        return;
    epoll_ctl(src->loop->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    if (src->is_timer)
        close(src->fd);
    src->dead = true;
    src->next_dead = src->loop->dead;
    src->loop->dead = src;
}

void tm_loop_quit(tm_loop *loop, int code)
{
    loop->quit = true;
    loop->code = code;
}

int tm_loop_run(tm_loop *loop)
{
    struct epoll_event events[32];
    while (!loop->quit) {
        int n = epoll_wait(loop->epfd, events, (int)(sizeof(events) / sizeof(events[0])), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("epoll_wait: %m");
            return -errno;
        }
        for (int i = 0; i < n && !loop->quit; i++) {
            tm_source *s = events[i].data.ptr;
            if (s->dead)
                continue;
            if (s->is_timer) {
                /* One-shot: the source is gone before the callback runs, so the callback may
                 * arm a new timer freely and must not free this one. */
                tm_timer_fn fn = s->timer_fn;
                void *ud = s->userdata;
                tm_source_free(s);
                fn(s, ud);
            } else {
                s->io_fn(s, events[i].events, s->userdata);
            }
        }
        reap_dead(loop);
    }
    return loop->code;
}
