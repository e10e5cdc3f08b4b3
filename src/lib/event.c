/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "event.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

struct tm_source {
    tm_loop *loop;
    int fd; /* io sources only */
    bool is_timer;
    bool dead;
    tm_io_fn io_fn;
    tm_timer_fn timer_fn;
    void *userdata;
    uint64_t deadline; /* timers: CLOCK_MONOTONIC nanoseconds */
    tm_source *next; /* timers: the next one due; dead sources: the next to free */
};

/* All timers share one timerfd armed for the earliest deadline, so that a timer never needs an
 * fd of its own: arming one still works when the process is out of fds (EMFILE handling relies
 * on that), and a daemon with many containers does not hold an fd per pending timer. */
struct tm_loop {
    int epfd;
    int timerfd;
    bool quit;
    int code;
    tm_source *timers; /* sorted by deadline */
    tm_source *dead;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void arm_timerfd(tm_loop *loop)
{
    struct itimerspec its = {0}; /* all zero: disarmed */
    if (loop->timers) {
        uint64_t d = loop->timers->deadline;
        its.it_value.tv_sec = (time_t)(d / 1000000000u);
        its.it_value.tv_nsec = (long)(d % 1000000000u);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

tm_loop *tm_loop_new(void)
{
    _cleanup_free_ tm_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    _cleanup_close_ int epfd = epoll_create1(EPOLL_CLOEXEC);
    _cleanup_close_ int timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    /* The timerfd is told apart from sources by a NULL data pointer. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epfd < 0 || timerfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, timerfd, &ev) < 0)
        return NULL;
    loop->epfd = steal_fd(epfd);
    loop->timerfd = steal_fd(timerfd);
    return steal_ptr(loop);
}

static void reap_dead(tm_loop *loop)
{
    while (loop->dead) {
        tm_source *s = loop->dead;
        loop->dead = s->next;
        free(s);
    }
}

void tm_loop_free(tm_loop *loop)
{
    if (!loop)
        return;
    while (loop->timers)
        tm_source_free(loop->timers);
    reap_dead(loop);
    close(loop->timerfd);
    close(loop->epfd);
    free(loop);
}

tm_source *tm_loop_io(tm_loop *loop, int fd, uint32_t events, tm_io_fn fn, void *userdata)
{
    _cleanup_free_ tm_source *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    *s = (tm_source){.loop = loop, .fd = fd, .io_fn = fn, .userdata = userdata};
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return NULL;
    return steal_ptr(s);
}

int tm_source_modify(tm_source *src, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = src};
    return epoll_ctl(src->loop->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
}

tm_source *tm_loop_timer(tm_loop *loop, uint64_t msec, tm_timer_fn fn, void *userdata)
{
    tm_source *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    *s = (tm_source){.loop = loop,
                     .fd = -1,
                     .is_timer = true,
                     .timer_fn = fn,
                     .userdata = userdata,
                     .deadline = now_ns() + msec * 1000000u};
    tm_source **pp = &loop->timers;
    while (*pp && (*pp)->deadline <= s->deadline)
        pp = &(*pp)->next;
    s->next = *pp;
    *pp = s;
    if (loop->timers == s)
        arm_timerfd(loop);
    return s;
}

void tm_source_free(tm_source *src)
{
    if (!src || src->dead)
        return;
    tm_loop *loop = src->loop;
    if (src->is_timer) {
        bool was_first = loop->timers == src;
        for (tm_source **pp = &loop->timers; *pp; pp = &(*pp)->next)
            if (*pp == src) {
                *pp = src->next;
                break;
            }
        if (was_first)
            arm_timerfd(loop);
    } else {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    }
    src->dead = true;
    src->next = loop->dead;
    loop->dead = src;
}

/* Run every timer that is due. Each is freed before its callback runs (see event.h). */
static void run_timers(tm_loop *loop)
{
    uint64_t expirations;
    (void)!read(loop->timerfd, &expirations, sizeof(expirations));
    uint64_t now = now_ns();
    while (!loop->quit && loop->timers && loop->timers->deadline <= now) {
        tm_source *s = loop->timers;
        tm_timer_fn fn = s->timer_fn;
        void *ud = s->userdata;
        tm_source_free(s);
        fn(s, ud);
    }
    arm_timerfd(loop);
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
            if (!s)
                run_timers(loop);
            else if (!s->dead)
                s->io_fn(s, events[i].events, s->userdata);
        }
        reap_dead(loop);
    }
    loop->quit = false; /* it may be run again (the lifecycle unit test drives it step by step) */
    return loop->code;
}
