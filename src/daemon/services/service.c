/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "packet.h"
#include <assert.h>

#define RESTART_DELAY_MIN_MS 100
#define RESTART_DELAY_MAX_MS 5000

struct pending {
    struct pending *next;
    uint64_t id;
    service_fn fn; /* NULL: the caller is gone, drop the reply */
    void *userdata;
};

/* A request the socket would not take yet. */
struct queued {
    struct queued *next;
    struct tm_packet pkt;
};

struct service {
    struct daemon *d;
    const struct service_ops *ops;
    char binary[PATH_MAX];
    void *ctx;
    int fd;
    tm_source *src;
    struct queued *queue, **queue_tail;
    int pidfd;
    tm_source *pid_src;
    bool stopping;
    uint64_t next_id;
    struct pending *pending;
    unsigned delay_ms;
    tm_source *restart_timer;
};

static int spawn(struct service *s, tm_err *err);

static void fail_pending(struct service *s, const char *why)
{
    tm_err err;
    tm_err_set(&err, ESHUTDOWN, "%s", why);
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        if (p->fn)
            s->ops->deliver(p->fn, s->d, NULL, &err, p->userdata);
        free(p);
    }
}

static void update_events(struct service *s)
{
    if (s->src)
        tm_source_modify(s->src, EPOLLIN | (s->queue ? EPOLLOUT : 0));
}

static void disconnect(struct service *s)
{
    tm_source_free(s->src);
    s->src = NULL;
    close_and_reset(s->fd);
    while (s->queue) {
        struct queued *q = s->queue;
        s->queue = q->next;
        tm_packet_free(&q->pkt); /* wipes the secrets in it */
        free(q);
    }
    s->queue_tail = &s->queue;
}

/* Send what the socket takes, in order. 0 or -errno (the connection is broken). */
static int flush_queue(struct service *s)
{
    while (s->queue) {
        int r = tm_packet_send(s->fd, &s->queue->pkt);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return r;
        struct queued *q = s->queue;
        if (!(s->queue = q->next))
            s->queue_tail = &s->queue;
        tm_packet_free(&q->pkt);
        free(q);
    }
    return 0;
}

static unsigned next_delay(unsigned ms)
{
    return ms * 2 > RESTART_DELAY_MAX_MS ? RESTART_DELAY_MAX_MS : ms * 2;
}

static void on_restart_timer(tm_source *src, void *userdata)
{
    struct service *s = userdata;
    s->restart_timer = NULL;
    tm_err err;
    if (spawn(s, &err) < 0) {
        log_error("cannot restart %s: %s", s->ops->name, err.msg);
        s->delay_ms = next_delay(s->delay_ms);
        s->restart_timer = tm_loop_timer(s->d->loop, s->delay_ms, on_restart_timer, s);
    }
}

static void on_exit_event(tm_source *src, uint32_t events, void *userdata)
{
    struct service *s = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    tm_source_free(s->pid_src);
    s->pid_src = NULL;
    close_and_reset(s->pidfd);
    disconnect(s);
    char why[256];
    snprintf(why, sizeof(why), "%s stopped; it is being restarted, try again", s->ops->what);
    fail_pending(s, why);
    if (s->ops->on_exit)
        s->ops->on_exit(s);
    if (s->stopping)
        return;
    const char *how = si.si_code == CLD_EXITED ? "status" : "signal";
    log_warn("%s exited (%s %d); restarting it in %u ms", s->ops->name, how, si.si_status, s->delay_ms);
    char event[64];
    snprintf(event, sizeof(event), "%s.exit", s->ops->audit_name);
    daemon_audit(s->d, event, "fail", NULL, "trustmed", "%s %d",
                 si.si_code == CLD_EXITED ? "exited" : "killed by signal", si.si_status);
    s->restart_timer = tm_loop_timer(s->d->loop, s->delay_ms, on_restart_timer, s);
    s->delay_ms = next_delay(s->delay_ms);
}

static void handle_response(struct service *s, struct tm_packet *pkt)
{
    const ProtobufCMessage *resp = tm_packet_unpack(s->ops->response, pkt);
    if (!resp) {
        log_error("malformed response from %s", s->ops->name);
        return;
    }
    if (s->ops->is_ready(resp)) {
        s->delay_ms = RESTART_DELAY_MIN_MS; /* it came up: the next failure starts afresh */
        if (s->ops->on_ready)
            s->ops->on_ready(s);
        return;
    }
    uint64_t id = s->ops->response_id(resp);
    tm_err err;
    bool failed = s->ops->is_error(resp, &err);
    for (struct pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != id)
            continue;
        struct pending *p = *pp;
        *pp = p->next;
        if (p->fn)
            s->ops->deliver(p->fn, s->d, resp, failed ? &err : NULL, p->userdata);
        free(p);
        return;
    }
    log_warn("%s answered request %llu, which is not pending%s%s", s->ops->name, (unsigned long long)id,
             failed ? ": " : "", failed ? err.msg : "");
}

static void on_io(tm_source *src, uint32_t events, void *userdata)
{
    struct service *s = userdata;
    while (events & EPOLLIN) {
        struct tm_packet pkt;
        int r = tm_packet_recv(s->fd, s->ops->reply_max, &pkt);
        if (r == -EAGAIN)
            break;
        if (r == -EMSGSIZE || r == -EBADMSG) {
            log_error("%s sent a bad packet (%s); dropped", s->ops->name, strerror(-r));
            continue;
        }
        if (r <= 0) {
            /* The child closed its end (it is dying): its exit brings the restart. */
            log_warn("connection to %s lost: %s", s->ops->name, r == 0 ? "closed" : strerror(-r));
            disconnect(s);
            if (s->pidfd >= 0)
                syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
            return;
        }
        handle_response(s, &pkt); /* replies may hold raw keys: */
        tm_packet_free(&pkt); /* wiped here */
        if (s->fd < 0)
            return;
    }
    if (flush_queue(s) < 0) {
        disconnect(s);
        return;
    }
    update_events(s);
}

static int spawn(struct service *s, tm_err *err)
{
    _cleanup_close_ int exe = open(s->binary, O_RDONLY | O_CLOEXEC);
    if (exe < 0)
        return tm_err_sys(err, "cannot open %s", s->binary);
    _cleanup_close_pair_ int sp[2] = {-1, -1};
    int r = tm_packet_socketpair(sp);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "socketpair");
    }
    /* The largest request must fit one packet. */
    int sndbuf = (int)s->ops->request_max * 2;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
    pid_t self = getpid();
    int pidfd = -1;
    struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        s->ops->exec_child(s->ctx, sp[1], exe, self);
        _exit(127); /* exec_child does not return */
    }
    close_and_reset(sp[1]);
    if (pid < 0)
        return tm_err_sys(err, "cannot fork %s", s->ops->name);
    s->fd = steal_fd(sp[0]);
    s->pidfd = pidfd;
    fcntl(s->fd, F_SETFL, O_NONBLOCK);
    s->src = tm_loop_io(s->d->loop, s->fd, EPOLLIN, on_io, s);
    s->pid_src = tm_loop_io(s->d->loop, pidfd, EPOLLIN, on_exit_event, s);
    if (!s->src || !s->pid_src)
        return tm_err_set(err, ENOMEM, "cannot watch %s", s->ops->name);
    if (s->ops->on_spawned)
        s->ops->on_spawned(s, exe);
    return 0;
}

int service_start(struct daemon *d, const struct service_ops *ops, const char *binary, const void *ctx, size_t ctx_size,
                  struct service **ret, tm_err *err)
{
    _cleanup_free_ struct service *s = calloc(1, sizeof(*s));
    _cleanup_free_ void *copy = malloc(ctx_size);
    if (!s || !copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(copy, ctx, ctx_size);
    *s = (struct service){.d = d,
                          .ops = ops,
                          .ctx = steal_ptr(copy),
                          .fd = -1,
                          .pidfd = -1,
                          .next_id = 1,
                          .delay_ms = RESTART_DELAY_MIN_MS};
    snprintf(s->binary, sizeof(s->binary), "%s", binary);
    s->queue_tail = &s->queue;
    *ret = s; /* before spawn: on_spawned may already call service_send; the caller owns it */
    return spawn(steal_ptr(s), err);
}

void service_stop(struct service *s)
{
    if (!s)
        return;
    s->stopping = true;
    tm_source_free(s->restart_timer);
    if (s->ops->stop_signal && s->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, s->pidfd, s->ops->stop_signal, NULL, 0);
    disconnect(s); /* the child exits at EOF */
    fail_pending(s, "trustmed is shutting down");
    if (s->pidfd >= 0) {
        tm_source_free(s->pid_src);
        struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
        if (poll(&p, 1, (int)s->ops->stop_wait_ms) != 1) {
            log_warn("%s did not exit within %u ms; killing it", s->ops->name, s->ops->stop_wait_ms);
            syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
        }
        siginfo_t si;
        waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED);
        close(s->pidfd);
    }
    free(s->ctx);
    free(s);
}

uint64_t service_next_id(struct service *s)
{
    return s->next_id++;
}

int service_send(struct service *s, const ProtobufCMessage *req, uint64_t id, service_fn fn, void *userdata,
                 tm_err *err)
{
    if (!s || s->fd < 0)
        return tm_err_set(err, ESHUTDOWN, "%s is not running; it is being restarted, try again",
                          s ? s->ops->what : "the service");
    _cleanup_free_ struct pending *p = calloc(1, sizeof(*p));
    _cleanup_free_ struct queued *q = calloc(1, sizeof(*q));
    int r = p && q ? tm_packet_pack(req, s->ops->request_max, &q->pkt, err) : tm_err_set(err, ENOMEM, "out of memory");
    if (r < 0)
        return r;
    /* Appended at the end: replies come in request order, and callers rely on the order of
     * their callbacks only through ids, but a short list stays cheap to search either way. */
    *p = (struct pending){.id = id, .fn = fn, .userdata = userdata};
    struct pending **tail = &s->pending;
    while (*tail)
        tail = &(*tail)->next;
    *tail = steal_ptr(p);
    *s->queue_tail = steal_ptr(q);
    s->queue_tail = &(*s->queue_tail)->next;
    if (flush_queue(s) < 0) {
        disconnect(s);
        return 0; /* the child's exit answers p */
    }
    update_events(s);
    return 0;
}

void service_forget(struct service *s, void *userdata)
{
    if (!s)
        return;
    /* The reply will still come; it must not reach a caller that is gone. */
    for (struct pending *p = s->pending; p; p = p->next)
        if (p->userdata == userdata)
            p->fn = NULL;
}

bool service_running(const struct service *s)
{
    return s && s->fd >= 0;
}

struct daemon *service_daemon(const struct service *s)
{
    return s->d;
}

const void *service_ctx(const struct service *s)
{
    return s->ctx;
}

void service_events_add(struct daemon *d, const struct service_events *e)
{
    assert(d->nservice_events < DAEMON_SERVICE_EVENTS_MAX);
    d->service_events[d->nservice_events++] = e;
}
