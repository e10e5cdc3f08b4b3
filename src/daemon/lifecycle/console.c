/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "console.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "fdutil.h"
#include "log.h"

/* init's console while trustmed drains it (c->console). */
struct console {
    int fifo; /* read end of init's console, or -1 */
    tm_source *src;
    tm_source *timer; /* resumes draining a throttled console */
    uint64_t tokens; /* bytes it may still log now */
    uint64_t refilled_ns; /* when tokens was last topped up */
    uint64_t throttled; /* times it was throttled since its start */
    int log;
    off_t size;
};

static void console_path(const struct container *c, const char *name, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_run_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/%s", dir, name);
}

static int open_log(struct container *c)
{
    char path[PATH_MAX + 16];
    console_path(c, "console.log", path, sizeof(path));
    c->console->log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->console->log < 0)
        return -errno;
    struct stat st;
    c->console->size = fstat(c->console->log, &st) == 0 ? st.st_size : 0;
    return 0;
}

/* Keep the newest output: past the limit, the log becomes console.log.1 and a new one starts. */
static void rotate(struct container *c)
{
    char cur[PATH_MAX + 16], old[PATH_MAX + 16];
    console_path(c, "console.log", cur, sizeof(cur));
    console_path(c, "console.log.1", old, sizeof(old));
    close_and_reset(c->console->log);
    if (rename(cur, old) < 0)
        log_warn("%s: cannot rotate the console log: %m", container_label(c));
    if (open_log(c) < 0)
        log_warn("%s: cannot reopen the console log: %m", container_label(c));
}

/* Drain up to budget bytes (*ret_used: how many). Returns false at end of file (no writer left). */
static bool drain(struct container *c, size_t budget, size_t *ret_used)
{
    char buf[65536];
    size_t used = 0;
    if (ret_used)
        *ret_used = 0;
    while (budget > 0) {
        ssize_t n = read(c->console->fifo, buf, budget < sizeof(buf) ? budget : sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN;
        if (n == 0)
            return false;
        if (c->console->log >= 0 && write_all(c->console->log, buf, (size_t)n) == 0)
            c->console->size += n;
        if (c->console->size >= CONSOLE_LOG_MAX)
            rotate(c);
        budget -= (size_t)n;
        used += (size_t)n;
        if (ret_used)
            *ret_used = used;
    }
    return true;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void refill(struct container *c)
{
    uint64_t now = now_ns();
    uint64_t add = (now - c->console->refilled_ns) * CONSOLE_RATE / 1000000000u;
    if (add == 0)
        return; /* keep the fraction for the next call */
    c->console->tokens = c->console->tokens + add > CONSOLE_BURST ? CONSOLE_BURST : c->console->tokens + add;
    c->console->refilled_ns = now;
}

static void on_resume(tm_source *src, void *userdata)
{
    (void)src;
    struct container *c = userdata;
    c->console->timer = NULL;
    if (c->console->src)
        tm_source_modify(c->console->src, EPOLLIN);
}

static void on_console(tm_source *src, uint32_t events, void *userdata)
{
    struct container *c = userdata;
    refill(c);
    /* A bounded amount per wake-up (a chatty container must not starve everyone else), and per
     * second (CONSOLE_RATE). */
    size_t budget = c->console->tokens < 256 * 1024 ? (size_t)c->console->tokens : 256 * 1024, used;
    bool open = drain(c, budget, &used);
    c->console->tokens -= used;
    if (!open || (events & EPOLLHUP)) {
        /* All writers gone (init ended): nothing more can come until the next start. */
        tm_source_free(c->console->timer);
        c->console->timer = NULL;
        tm_source_free(c->console->src);
        c->console->src = NULL;
        return;
    }
    if (c->console->tokens >= 4096 || c->console->timer)
        return;
    /* Out of budget: stop reading until 64 KiB are due. The FIFO fills and the container's
     * writes wait; none of its output is lost. */
    if (c->console->throttled++ == 0)
        log_info("%s: console output beyond %d KiB/s is slowed down", container_label(c), CONSOLE_RATE / 1024);
    c->console->timer = tm_loop_timer(c->d->loop, 64 * 1024 * 1000 / CONSOLE_RATE, on_resume, c);
    if (c->console->timer)
        tm_source_modify(src, 0);
}

static int watch(struct container *c, tm_err *err)
{
    assert(!c->console); /* console_close ran */
    c->console = calloc(1, sizeof(*c->console));
    if (!c->console)
        return tm_err_set(err, ENOMEM, "out of memory");
    c->console->fifo = c->console->log = -1;
    char fifo[PATH_MAX + 16];
    console_path(c, "console.fifo", fifo, sizeof(fifo));
    c->console->fifo = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (c->console->fifo < 0)
        return tm_err_sys(err, "cannot open %s", fifo);
    if (open_log(c) < 0)
        log_warn("%s: cannot open the console log: %m", container_label(c));
    c->console->tokens = CONSOLE_BURST;
    c->console->refilled_ns = now_ns();
    c->console->throttled = 0;
    c->console->src = tm_loop_io(c->d->loop, c->console->fifo, EPOLLIN, on_console, c);
    if (!c->console->src)
        return tm_err_set(err, ENOMEM, "cannot watch the console");
    return 0;
}

/* The write end is init's stdout and stderr: /proc/<pid>/fd inside the container shows its path.
 * Opened through a detached clone of the run dir's mount, that path is "/console.fifo" rather
 * than the host's run dir and the container's UUID. */
static int open_for_init(struct container *c, const char *fifo)
{
    char dir[PATH_MAX + 16];
    console_path(c, ".", dir, sizeof(dir));
    _cleanup_close_ int tree = open_tree(AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) {
        log_warn("%s: cannot clone the run dir's mount (%m): the console's host path stays "
                 "visible to the container",
                 container_label(c));
        return open(fifo, O_RDWR | O_CLOEXEC);
    }
    return openat(tree, "console.fifo", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
}

int console_open(struct container *c, int *ret_write, tm_err *err)
{
    console_close(c);
    char fifo[PATH_MAX + 16], log_path[PATH_MAX + 16];
    console_path(c, "console.fifo", fifo, sizeof(fifo));
    console_path(c, "console.log", log_path, sizeof(log_path));
    unlink(fifo);
    /* Each start begins a new log; the previous run's becomes console.log.1. */
    char old[PATH_MAX + 16];
    console_path(c, "console.log.1", old, sizeof(old));
    if (rename(log_path, old) < 0 && errno != ENOENT)
        log_warn("%s: cannot keep the previous console log: %m", container_label(c));
    if (mkfifo(fifo, 0600) < 0)
        return tm_err_sys(err, "cannot create %s", fifo);
    int r = watch(c, err);
    if (r < 0) {
        console_close(c);
        return r;
    }
    /* Read-write: see console.h. Writes block once the FIFO is full and no trustmed has caught
     * up yet, rather than failing or losing output. */
    int w = open_for_init(c, fifo);
    if (w < 0) {
        r = tm_err_sys(err, "cannot open %s for writing", fifo);
        console_close(c);
        return r;
    }
    fcntl(w, F_SETPIPE_SZ, CONSOLE_LOG_MAX); /* more room while trustmed restarts */
    *ret_write = w;
    return 0;
}

int console_reopen(struct container *c, tm_err *err)
{
    console_close(c);
    return watch(c, err);
}

void console_close(struct container *c)
{
    if (!c->console)
        return;
    if (c->console->fifo >= 0)
        drain(c, CONSOLE_LOG_MAX, NULL);
    tm_source_free(c->console->timer);
    c->console->timer = NULL;
    tm_source_free(c->console->src);
    c->console->src = NULL;
    close_and_reset(c->console->fifo);
    close_and_reset(c->console->log);
    free(c->console);
    c->console = NULL;
}
