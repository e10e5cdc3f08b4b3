/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "lc_state.h"
#include "reply.h"
#include "fdutil.h"
#include "frame.h"
#include "log.h"
#include "reaper.h"

#define READ_CHUNK 65536
#define FINAL_DRAIN_MAX (4 * 1024 * 1024)
/* Stdin backpressure: with this much input not yet taken by the process, the client's
 * connection is not read (the client's writes block, its pipe fills) until it is down to
 * INPUT_LOW_WATER. At most one frame more than this is buffered per session. */
#define INPUT_HIGH_WATER (1024 * 1024)
#define INPUT_LOW_WATER (256 * 1024)
/* Stdin credit: at most this much of a session's input is granted and not yet taken by its
 * process (below INPUT_HIGH_WATER, so that a client within its window never has its connection
 * paused, and its signal and resize requests are always read). More is granted once it is down
 * to half, so that a fast reader is not kept waiting for the next grant. */
#define INPUT_WINDOW (256 * 1024)

static void on_output(tm_source *src, uint32_t events, void *userdata);
static void flush_input(struct session *s);

struct session *container_sessions(const struct container *c)
{
    return c->lc ? c->lc->sessions : NULL;
}

struct session *session_new(struct container *c, uint64_t conn_id, uint64_t req_id, bool attach, bool tty,
                            const char *what)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->d = c->d;
    s->c = c;
    s->conn_id = conn_id;
    s->req_id = req_id;
    static uint64_t next_number;
    s->number = ++next_number;
    s->started_at = (uint64_t)time(NULL);
    s->attach = attach;
    s->tty = tty;
    snprintf(s->what, sizeof(s->what), "%s", what);
    s->pidfd = s->helper_pidfd = s->sync_fd = -1;
    s->in_fd = s->out_fd = s->err_fd = -1;
    s->next = c->lc->sessions;
    c->lc->sessions = s;
    return s;
}

struct session *session_find(struct daemon *d, uint64_t conn_id, uint64_t req_id)
{
    for (struct container *c = d->containers; c; c = c->next)
        for (struct session *s = c->lc->sessions; s; s = s->next)
            if (s->conn_id == conn_id && s->req_id == req_id)
                return s;
    return NULL;
}

struct session *session_attached(struct container *c)
{
    for (struct session *s = c->lc->sessions; s; s = s->next)
        if (s->attach)
            return s;
    return NULL;
}

/* Pause the client's connection while this session's input is above the high water mark;
 * resume once no session of the connection is above the low one. */
static void input_pressure(struct session *s)
{
    if (!reply_alive(s->d, s->conn_id))
        return;
    if (tm_buf_pending(&s->in_buf) >= INPUT_HIGH_WATER) {
        reply_pause_input(s->d, s->conn_id, true);
        return;
    }
    if (!reply_input_paused(s->d, s->conn_id))
        return;
    for (struct container *c = s->d->containers; c; c = c->next)
        for (struct session *o = c->lc->sessions; o; o = o->next)
            if (o->conn_id == s->conn_id && tm_buf_pending(&o->in_buf) > INPUT_LOW_WATER)
                return;
    reply_pause_input(s->d, s->conn_id, false);
}

/* Grant the client more input once what it may send and what waits for the process are down
 * to half the window. Input that has nowhere to go (stdin closed) is taken at once, as before
 * credits: the client's input is drained, not held. */
static void grant_input(struct session *s)
{
    if (!s->credit || s->in_eof || !reply_alive(s->d, s->conn_id))
        return;
    uint64_t held = s->in_window + tm_buf_pending(&s->in_buf);
    if (held > INPUT_WINDOW / 2)
        return;
    Trustme__StdinCredit credit = TRUSTME__STDIN_CREDIT__INIT;
    credit.has_bytes = true;
    credit.bytes = INPUT_WINDOW - held;
    s->in_window += credit.bytes;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_STDIN_CREDIT;
    resp.stdin_credit = &credit;
    reply_send(s->d, s->conn_id, s->req_id, &resp);
}

void session_use_credit(struct session *s)
{
    s->credit = true;
    grant_input(s);
}

/* Count input against the window. A client that sends more than it was granted has its input
 * handled as a client's without credit: bounded by the connection's pause (input_pressure), which
 * only that client waits for. */
static void take_credit(struct session *s, size_t len)
{
    if (!s->credit)
        return;
    if (len <= s->in_window) {
        s->in_window -= len;
        return;
    }
    static tm_ratelimit rl = TM_RATELIMIT_INIT(10, 5);
    log_warn_ratelimited(&rl,
                         "session %s: the client sent %zu bytes of input with %llu granted; "
                         "its connection waits for the process from now on",
                         s->what, len, (unsigned long long)s->in_window);
    s->credit = false;
    s->in_window = 0;
}

static void close_in(struct session *s)
{
    tm_source_free(s->in_src);
    s->in_src = NULL;
    if (s->in_fd != s->out_fd)
        close(s->in_fd);
    s->in_fd = -1;
    tm_buf_free(&s->in_buf);
    input_pressure(s);
}

static void close_out(struct session *s, int *fd, tm_source **src)
{
    tm_source_free(*src);
    *src = NULL;
    if (*fd >= 0 && *fd == s->in_fd)
        s->in_fd = -1; /* pty: one fd for both directions */
    close_and_reset(*fd);
}

static int watch_output(struct session *s, int fd, tm_source **src)
{
    int r = fd_set_nonblock(fd, true);
    if (r < 0)
        return r;
    *src = tm_loop_io(s->d->loop, fd, EPOLLIN, on_output, s);
    return *src ? 0 : -ENOMEM;
}

int session_pipes(struct session *s, int child_fds[3], tm_err *err)
{
    _cleanup_close_pair_ int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        return tm_err_sys(err, "pipe");
    child_fds[0] = steal_fd(in[0]);
    child_fds[1] = steal_fd(out[1]);
    child_fds[2] = steal_fd(errp[1]);
    s->in_fd = steal_fd(in[1]);
    s->out_fd = steal_fd(out[0]);
    s->err_fd = steal_fd(errp[0]);
    fd_set_nonblock(s->in_fd, true);
    if (watch_output(s, s->out_fd, &s->out_src) < 0 || watch_output(s, s->err_fd, &s->err_src) < 0)
        return tm_err_set(err, ENOMEM, "cannot watch the session's output");
    return 0;
}

int session_set_pty(struct session *s, int master, unsigned rows, unsigned cols)
{
    s->in_fd = s->out_fd = master;
    s->pty_set = true;
    session_resize(s, rows ? rows : s->rows, cols ? cols : s->cols);
    int r = watch_output(s, master, &s->out_src);
    flush_input(s);
    return r;
}

static void send_output(struct session *s, int stream, const uint8_t *data, size_t len)
{
    if (!reply_alive(s->d, s->conn_id))
        return;
    Trustme__OutputData out = TRUSTME__OUTPUT_DATA__INIT;
    out.has_stream = true;
    out.stream = stream == 2 ? TRUSTME__OUTPUT_DATA__STREAM__STDERR : TRUSTME__OUTPUT_DATA__STREAM__STDOUT;
    out.has_data = true;
    out.data.data = (uint8_t *)data;
    out.data.len = len;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_OUTPUT;
    resp.output = &out;
    reply_send(s->d, s->conn_id, s->req_id, &resp);
}

/* Read what fd has; returns bytes read, 0 at EOF (or EIO from a pty whose slave is closed),
 * -EAGAIN when nothing is there. */
static ssize_t pump(struct session *s, int fd, int stream)
{
    uint8_t buf[READ_CHUNK];
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? -EAGAIN : 0;
    if (n > 0)
        send_output(s, stream, buf, (size_t)n);
    return n;
}

/* The events a pty's single source must watch: output unless paused, input space if pending. */
static uint32_t pty_events(const struct session *s)
{
    return (s->paused ? 0 : EPOLLIN) | (tm_buf_pending(&s->in_buf) ? EPOLLOUT : 0);
}

static void on_output(tm_source *src, uint32_t events, void *userdata)
{
    struct session *s = userdata;
    if (s->tty && (events & EPOLLOUT))
        flush_input(s);
    if (s->tty && !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    bool is_err = src == s->err_src;
    int *fd = is_err ? &s->err_fd : &s->out_fd;
    tm_source **srcp = is_err ? &s->err_src : &s->out_src;
    ssize_t n = pump(s, *fd, is_err ? 2 : 1);
    if (n == 0) {
        close_out(s, fd, srcp);
        return;
    }
    if (reply_congested(s->d, s->conn_id)) {
        /* Stop reading until the client catches up: the pipe fills and the writer blocks. */
        s->paused = true;
        if (s->out_src)
            tm_source_modify(s->out_src, s->tty ? pty_events(s) : 0);
        if (s->err_src)
            tm_source_modify(s->err_src, 0);
    }
}

void sessions_resume(struct daemon *d, uint64_t conn_id)
{
    for (struct container *c = d->containers; c; c = c->next)
        for (struct session *s = c->lc->sessions; s; s = s->next)
            if (s->conn_id == conn_id && s->paused) {
                s->paused = false;
                if (s->out_src)
                    tm_source_modify(s->out_src, s->tty ? pty_events(s) : EPOLLIN);
                if (s->err_src)
                    tm_source_modify(s->err_src, EPOLLIN);
            }
}

static void on_input_writable(tm_source *src, uint32_t events, void *userdata)
{
    flush_input(userdata);
}

/* Move input into the process's stdin as far as it takes it. */
static void move_input(struct session *s)
{
    if (s->in_fd < 0)
        return;
    int r = tm_buf_flush(&s->in_buf, s->in_fd);
    if (r == 0)
        tm_buf_shrink(&s->in_buf, INPUT_LOW_WATER);
    if (s->tty) {
        /* A pty is one fd with one source (out_src): wait for room through its events. */
        if (r < 0)
            tm_buf_free(&s->in_buf);
        if (s->out_src)
            tm_source_modify(s->out_src, pty_events(s));
        input_pressure(s);
        return;
    }
    if (r < 0) { /* the process closed its stdin */
        close_in(s);
        return;
    }
    if (r > 0) {
        if (!s->in_src)
            s->in_src = tm_loop_io(s->d->loop, s->in_fd, EPOLLOUT, on_input_writable, s);
        input_pressure(s);
        return;
    }
    tm_source_free(s->in_src);
    s->in_src = NULL;
    input_pressure(s);
    if (s->in_eof)
        close_in(s);
}

static void flush_input(struct session *s)
{
    move_input(s);
    grant_input(s);
}

void session_input(struct session *s, const uint8_t *data, size_t len, bool eof)
{
    /* Before the pty arrives from the container, input is kept for it; after stdin was closed
     * it has nowhere to go. */
    take_credit(s, len);
    bool pty_pending = s->tty && !s->pty_set;
    if (s->in_fd < 0 && !pty_pending) {
        s->in_eof |= eof;
        grant_input(s);
        return;
    }
    /* No limit here: a client with credit sends no more than its window; without (or beyond
     * it), the connection stops being read while the input is above its high water mark
     * (input_pressure), so at most one frame more than that waits. */
    if (len && tm_buf_append(&s->in_buf, data, len) < 0) {
        log_warn("session %s: out of memory for its input", s->what);
        reply_error(s->d, s->conn_id, s->req_id, ENOMEM,
                    "trustmed is out of memory: the input of "
                    "%s is lost from here on, its stdin is closed",
                    s->what);
        close_in(s);
        return;
    }
    if (eof && !s->in_eof) {
        s->in_eof = true;
        if (s->tty) /* a terminal has no EOF of its own: send the EOF character */
            tm_buf_append(&s->in_buf, "\x04", 1);
    }
    flush_input(s);
    input_pressure(s); /* also for a pty that has not arrived yet */
}

void session_resize(struct session *s, unsigned rows, unsigned cols)
{
    if (!s->tty || rows == 0 || cols == 0 || rows > 10000 || cols > 10000)
        return;
    s->rows = rows; /* remembered for a pty that has not arrived yet */
    s->cols = cols;
    if (s->out_fd < 0)
        return;
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    ioctl(s->out_fd, TIOCSWINSZ, &ws);
}

void describe_wait_status(int status, char *out, size_t size, int *ret_code, int *ret_signal)
{
    int code, sig = 0;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
        snprintf(out, size, "exited %d", code);
    } else if (WIFSIGNALED(status)) {
        sig = WTERMSIG(status);
        code = 128 + sig;
        snprintf(out, size, "killed by SIG%s", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    } else {
        code = 255;
        snprintf(out, size, "ended with status 0x%x", status);
    }
    if (ret_code)
        *ret_code = code;
    if (ret_signal)
        *ret_signal = sig;
}

void session_free(struct session *s)
{
    if (!s)
        return;
    for (struct session **pp = &s->c->lc->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    s->credit = false; /* nothing more to grant: the exit status was the last reply */
    close_in(s);
    close_out(s, &s->out_fd, &s->out_src);
    close_out(s, &s->err_fd, &s->err_src);
    tm_source_free(s->pidfd_src);
    tm_source_free(s->helper_src);
    tm_source_free(s->sync_src);
    /* Either may still be running (the helper exits just after the command starts): reap later. */
    reaper_take_pidfd(s->d, steal_fd(s->pidfd));
    reaper_take_pidfd(s->d, steal_fd(s->helper_pidfd));
    close_and_reset(s->sync_fd);
    free(s);
}

void session_finish(struct session *s, int wait_status)
{
    /* Output the process wrote before it ended is still in the pipe: send it first. */
    size_t budget = FINAL_DRAIN_MAX;
    int *fds[] = {&s->out_fd, &s->err_fd};
    for (int i = 0; i < 2; i++) {
        while (*fds[i] >= 0 && budget > 0) {
            ssize_t n = pump(s, *fds[i], i + 1);
            if (n <= 0)
                break;
            budget -= (size_t)n < budget ? (size_t)n : budget;
        }
    }
    if (reply_alive(s->d, s->conn_id)) {
        Trustme__ExitStatus ex = TRUSTME__EXIT_STATUS__INIT;
        char text[64];
        describe_wait_status(wait_status, text, sizeof(text), &ex.code, &ex.signal);
        ex.has_code = ex.has_signal = true;
        Trustme__Response resp = TRUSTME__RESPONSE__INIT;
        resp.body_case = TRUSTME__RESPONSE__BODY_EXIT;
        resp.exit = &ex;
        reply_send(s->d, s->conn_id, s->req_id, &resp);
    }
    session_free(s);
}

void session_fail(struct session *s, int code, const char *msg)
{
    reply_error(s->d, s->conn_id, s->req_id, code, "%s", msg);
    session_free(s);
}

void sessions_conn_closed(struct daemon *d, uint64_t conn_id)
{
    /* The client is gone: its process sees EOF on stdin and EPIPE (or a hangup) on output, as
     * after a dropped ssh connection. An exec session lives on until its process exits. */
    for (struct container *c = d->containers; c; c = c->next) {
        for (struct session *s = c->lc->sessions, *next; s; s = next) {
            next = s->next;
            if (s->conn_id != conn_id)
                continue;
            s->conn_id = 0;
            close_in(s);
            close_out(s, &s->out_fd, &s->out_src);
            close_out(s, &s->err_fd, &s->err_src);
            if (s->attach)
                session_free(s);
        }
    }
}
