/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "reaper.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"

struct reap {
    int pidfd;
    tm_source *src;
    struct reap *prev, *next;
};

/* Every reap still waiting, for reaper_free_all at exit (trustmed has one daemon and one thread). */
static struct reap *pending;

static void reap_free(struct reap *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    tm_source_free(r->src);
    close(r->pidfd);
    free(r);
}

static void on_child_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct reap *r = userdata;
    siginfo_t si = {0};
    /* ECHILD: not our child after all (a pid we were handed that belongs to someone else). */
    if (waitid(P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOHANG) < 0 ? errno != ECHILD : si.si_pid == 0)
        return;
    reap_free(r);
}

void reaper_free_all(void)
{
    /* trustmed exits: whoever is still a child is reparented and reaped by init. */
    while (pending)
        reap_free(pending);
}

void reaper_take_pidfd(struct daemon *d, int pidfd)
{
    if (pidfd < 0)
        return;
    struct reap *r = malloc(sizeof(*r));
    if (r) {
        r->pidfd = pidfd;
        r->src = tm_loop_io(d->loop, pidfd, EPOLLIN, on_child_exit, r);
        if (r->src) {
            r->prev = NULL;
            r->next = pending;
            if (pending)
                pending->prev = r;
            pending = r;
            return;
        }
        free(r);
    }
    close(pidfd); /* out of memory: the zombie stays, nothing worse */
}

void reaper_take_pid(struct daemon *d, pid_t pid)
{
    /* A pidfd works for a child that is already a zombie too: it is readable at once. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0)
        reaper_take_pidfd(d, pidfd);
}
