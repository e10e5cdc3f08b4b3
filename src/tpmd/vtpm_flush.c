/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtpm_flush.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "vtpm_relay.h"

struct flush {
    int fd;
    tm_source *io, *deadline;
    struct vtpm_handles hs;
    size_t at; /* the handle whose FlushContext is in flight */
    uint8_t cmd[VTPM_HEADER + 4];
    size_t cmd_len, sent;
    uint8_t rsp[VTPM_HEADER];
    size_t have;
    struct flush *prev, *next;
};

/* Oldest first: the one given up when VTPM_FLUSH_MAX are running. */
static struct flush *oldest, *newest;
static unsigned running;

static void flush_end(struct flush *f)
{
    tm_source_free(f->io);
    tm_source_free(f->deadline);
    close(f->fd);
    if (f->prev)
        f->prev->next = f->next;
    else
        oldest = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        newest = f->prev;
    running--;
    free(f);
}

static void next_command(struct flush *f)
{
    f->cmd_len = vtpm_cmd_flush(f->cmd, f->hs.h[f->at]);
    f->sent = f->have = 0;
}

/* 1: the command is out, 0: the socket is full (wait for EPOLLOUT), -1: broken. */
static int send_some(struct flush *f)
{
    while (f->sent < f->cmd_len) {
        ssize_t n = send(f->fd, f->cmd + f->sent, f->cmd_len - f->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return -1;
        f->sent += (size_t)n;
    }
    return 1;
}

static void on_io(tm_source *src, uint32_t events, void *userdata)
{
    (void)src;
    (void)events;
    struct flush *f = userdata;
    for (;;) {
        if (f->sent < f->cmd_len) {
            int r = send_some(f);
            if (r < 0 || (r == 0 && tm_source_modify(f->io, EPOLLOUT) < 0))
                break;
            if (r == 0)
                return;
            if (tm_source_modify(f->io, EPOLLIN) < 0)
                break;
        }
        ssize_t n = recv(f->fd, f->rsp + f->have, sizeof(f->rsp) - f->have, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0)
            break;
        f->have += (size_t)n;
        if (f->have < sizeof(f->rsp))
            return;
        /* FlushContext answers with a bare header, success or not; anything else is a vTPM
         * out of step with this connection. */
        if (vtpm_be32(f->rsp + 2) != VTPM_HEADER || ++f->at == f->hs.n)
            break;
        next_command(f);
    }
    flush_end(f);
}

static void on_deadline(tm_source *src, void *userdata)
{
    (void)src;
    struct flush *f = userdata;
    f->deadline = NULL; /* already freed by the loop */
    log_info("vTPM relay: gave up flushing %zu handle(s) after %d ms", f->hs.n - f->at, VTPM_FLUSH_DEADLINE_MS);
    flush_end(f);
}

void vtpm_flush_start(tm_loop *loop, const char *vtpm_dir, const char *uuid, const struct vtpm_handles *hs)
{
    tm_err err = {0};
    if (hs->n == 0)
        return;
    if (running >= VTPM_FLUSH_MAX) {
        log_info("vTPM relay: %u flushes running, the oldest given up", running);
        flush_end(oldest);
    }
    int fd = vtpm_relay_connect(vtpm_dir, uuid, &err);
    if (fd < 0) {
        log_debug("vTPM relay: no flush: %s", err.msg);
        return;
    }
    struct flush *f = calloc(1, sizeof(*f));
    if (!f) {
        close(fd);
        return;
    }
    f->fd = fd;
    f->hs = *hs;
    next_command(f);
    f->prev = newest;
    if (newest)
        newest->next = f;
    else
        oldest = f;
    newest = f;
    running++;
    f->io = tm_loop_io(loop, fd, EPOLLOUT, on_io, f);
    f->deadline = tm_loop_timer(loop, VTPM_FLUSH_DEADLINE_MS, on_deadline, f);
    if (!f->io || !f->deadline)
        flush_end(f);
}

void vtpm_flush_stop_all(void)
{
    while (oldest)
        flush_end(oldest);
}

unsigned vtpm_flush_running(void)
{
    return running;
}
