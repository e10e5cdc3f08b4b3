/* trustmed's side of trustme-scd: starting it, restarting it when it dies, and talking to it
 * without ever blocking the event loop.
 *
 * Requests go onto the SOCK_SEQPACKET pair at once, one packet each (packet.h; scd reads them
 * when it is ready), and are answered through callbacks matched by request id. A request the
 * socket cannot take yet waits in a queue. If scd dies, every pending request is answered with
 * an error and scd is started again, with a growing delay if it keeps dying. */
#include "scd_client.h"

#include <errno.h>
#include <fcntl.h>
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
#include "log.h"
#include "packet.h"
#include "proto.h"
#include "tokens.h"

#define RESTART_DELAY_MIN_MS 100
#define RESTART_DELAY_MAX_MS 5000
#define SCD_STOP_WAIT_MS 1000
#define SCD_REPLY_MAX (TM_PACKET_LOCKED_MAX - 4) /* replies are small and may hold keys */
#define SCD_REQUEST_MAX (4u * 1024 * 1024)        /* as scd's limit (server.c) */

struct pending {
    struct pending *next;
    uint64_t id;
    scd_reply_fn fn;
    void *userdata;
};

/* A request the socket would not take yet. */
struct queued {
    struct queued *next;
    struct tm_packet pkt;
};

struct scd {
    struct daemon *d;
    struct scd_sandbox sb;
    int fd;
    tm_source *src;
    struct queued *queue, **queue_tail;
    int pidfd;
    tm_source *pid_src;
    bool ready;
    bool stopping;
    uint64_t next_id;
    struct pending *pending;
    unsigned delay_ms;
    tm_source *restart_timer;
};

static int spawn(struct scd *s, tm_err *err);

static void fail_pending(struct scd *s, const char *why)
{
    tm_err err;
    tm_err_set(&err, ESHUTDOWN, "%s", why);
    while (s->pending) {
        struct pending *p = s->pending;
        s->pending = p->next;
        p->fn(s->d, NULL, &err, p->userdata);
        free(p);
    }
}

static void update_events(struct scd *s)
{
    if (s->src)
        tm_source_modify(s->src, EPOLLIN | (s->queue ? EPOLLOUT : 0));
}

static void disconnect(struct scd *s)
{
    tm_source_free(s->src);
    s->src = NULL;
    close_and_reset(s->fd);
    while (s->queue) {
        struct queued *q = s->queue;
        s->queue = q->next;
        tm_packet_free(&q->pkt); /* wipes the PINs in it */
        free(q);
    }
    s->queue_tail = &s->queue;
    s->ready = false;
}

/* Send what the socket takes, in order. 0 or -errno (the connection is broken). */
static int flush_queue(struct scd *s)
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

static void on_restart_timer(tm_source *src, void *userdata)
{
    struct scd *s = userdata;
    s->restart_timer = NULL;
    tm_err err;
    if (spawn(s, &err) < 0) {
        log_error("cannot restart trustme-scd: %s", err.msg);
        s->delay_ms = s->delay_ms * 2 > RESTART_DELAY_MAX_MS ? RESTART_DELAY_MAX_MS : s->delay_ms * 2;
        s->restart_timer = tm_loop_timer(s->d->loop, s->delay_ms, on_restart_timer, s);
    }
}

static void on_scd_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct scd *s = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    tm_source_free(s->pid_src);
    s->pid_src = NULL;
    close_and_reset(s->pidfd);
    disconnect(s);
    fail_pending(s, "the token service (trustme-scd) stopped; it is being restarted, try again");
    tokens_forget_all(s->d);
    if (s->stopping)
        return;
    log_warn("trustme-scd exited (%s %d); restarting it in %u ms",
             si.si_code == CLD_EXITED ? "status" : "signal", si.si_status, s->delay_ms);
    daemon_audit(s->d, "scd.exit", "fail", NULL, "trustmed", "%s %d",
                 si.si_code == CLD_EXITED ? "exited" : "killed by signal", si.si_status);
    s->restart_timer = tm_loop_timer(s->d->loop, s->delay_ms, on_restart_timer, s);
    s->delay_ms = s->delay_ms * 2 > RESTART_DELAY_MAX_MS ? RESTART_DELAY_MAX_MS : s->delay_ms * 2;
}

static void handle_response(struct scd *s, struct tm_packet *pkt)
{
    Trustme__Scd__Response *resp =
        (Trustme__Scd__Response *)tm_packet_unpack(&trustme__scd__response__descriptor, pkt);
    if (!resp) {
        log_error("malformed response from trustme-scd");
        return;
    }
    if (resp->body_case == TRUSTME__SCD__RESPONSE__BODY_READY) {
        s->ready = true;
        s->delay_ms = RESTART_DELAY_MIN_MS; /* it came up: the next failure starts afresh */
        log_info("trustme-scd ready (pid %u)", resp->ready->pid);
        tokens_refresh_all(s->d); /* a new scd: ask for the tokens' state afresh */
        return;
    }
    for (struct pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != resp->id)
            continue;
        struct pending *p = *pp;
        *pp = p->next;
        tm_err err;
        bool failed = resp->body_case == TRUSTME__SCD__RESPONSE__BODY_ERROR;
        if (failed)
            tm_err_set(&err, resp->error->has_code && resp->error->code > 0 ? resp->error->code : EIO,
                       "%s", resp->error->message ? resp->error->message : "token service error");
        p->fn(s->d, resp, failed ? &err : NULL, p->userdata);
        free(p);
        return;
    }
    log_warn("trustme-scd answered request %llu, which is not pending%s%s",
             (unsigned long long)resp->id,
             resp->body_case == TRUSTME__SCD__RESPONSE__BODY_ERROR ? ": " : "",
             resp->body_case == TRUSTME__SCD__RESPONSE__BODY_ERROR && resp->error->message
                 ? resp->error->message : "");
}

static void on_io(tm_source *src, uint32_t events, void *userdata)
{
    struct scd *s = userdata;
    while (events & EPOLLIN) {
        struct tm_packet pkt;
        int r = tm_packet_recv(s->fd, SCD_REPLY_MAX, &pkt);
        if (r == -EAGAIN)
            break;
        if (r == -EMSGSIZE || r == -EBADMSG) {
            log_error("trustme-scd sent a bad packet (%s); dropped", strerror(-r));
            continue;
        }
        if (r <= 0) {
            /* scd closed its end (it is dying): its exit brings the restart. */
            log_warn("connection to trustme-scd lost: %s", r == 0 ? "closed" : strerror(-r));
            disconnect(s);
            if (s->pidfd >= 0)
                syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
            return;
        }
        handle_response(s, &pkt); /* replies hold raw keys: */
        tm_packet_free(&pkt);     /* wiped here */
        if (s->fd < 0)
            return;
    }
    if (flush_queue(s) < 0) {
        disconnect(s);
        return;
    }
    update_events(s);
}

static int spawn(struct scd *s, tm_err *err)
{
    int sp[2];
    int r = tm_packet_socketpair(sp);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "socketpair");
    }
    /* A verification request (data, chains, CRLs) must fit one packet. */
    int sndbuf = (int)SCD_REQUEST_MAX * 2;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
    pid_t self = getpid();
    int pidfd = -1;
    struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd,
                            .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        scd_sandbox_exec(&s->sb, sp[1], self);
    }
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return tm_err_sys(err, "cannot fork trustme-scd");
    }
    s->fd = sp[0];
    s->pidfd = pidfd;
    fcntl(s->fd, F_SETFL, O_NONBLOCK);
    s->src = tm_loop_io(s->d->loop, s->fd, EPOLLIN, on_io, s);
    s->pid_src = tm_loop_io(s->d->loop, pidfd, EPOLLIN, on_scd_exit, s);
    if (!s->src || !s->pid_src)
        return tm_err_set(err, ENOMEM, "cannot watch trustme-scd");
    return 0;
}

int scd_start(struct daemon *d, const struct scd_sandbox *sb, tm_err *err)
{
    struct scd *s = calloc(1, sizeof(*s));
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    *s = (struct scd){.d = d, .sb = *sb, .fd = -1, .pidfd = -1, .next_id = 1,
                      .delay_ms = RESTART_DELAY_MIN_MS};
    s->queue_tail = &s->queue;
    d->scd = s;
    return spawn(s, err);
}

void scd_stop(struct daemon *d)
{
    struct scd *s = d->scd;
    if (!s)
        return;
    s->stopping = true;
    tm_source_free(s->restart_timer);
    disconnect(s); /* scd exits at EOF */
    fail_pending(s, "trustmed is shutting down");
    /* trustmed is exiting: scd goes at EOF at once; wait a moment for it, then make sure. */
    if (s->pidfd >= 0) {
        tm_source_free(s->pid_src);
        struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
        if (poll(&p, 1, SCD_STOP_WAIT_MS) != 1)
            syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED);
        close(s->pidfd);
    }
    free(s);
    d->scd = NULL;
}

int scd_call(struct daemon *d, Trustme__Scd__Request *req, scd_reply_fn fn, void *userdata, tm_err *err)
{
    struct scd *s = d->scd;
    if (!s || s->fd < 0)
        return tm_err_set(err, ESHUTDOWN, "the token service (trustme-scd) is not running; it is "
                          "being restarted, try again");
    req->has_version = req->has_id = true;
    req->version = TM_PROTOCOL_VERSION;
    req->id = s->next_id;
    struct pending *p = calloc(1, sizeof(*p));
    struct queued *q = calloc(1, sizeof(*q));
    int r = p && q ? tm_packet_pack(&req->base, SCD_REQUEST_MAX, &q->pkt, err)
                   : tm_err_set(err, ENOMEM, "out of memory");
    if (r < 0) {
        free(p);
        free(q);
        return r;
    }
    s->next_id++;
    *p = (struct pending){.next = s->pending, .id = req->id, .fn = fn, .userdata = userdata};
    s->pending = p;
    *s->queue_tail = q;
    s->queue_tail = &q->next;
    if (flush_queue(s) < 0) {
        disconnect(s);
        return 0; /* scd's exit answers p */
    }
    update_events(s);
    return 0;
}

void scd_forget(struct daemon *d, void *userdata)
{
    struct scd *s = d->scd;
    if (!s)
        return;
    /* The reply will still come; it must not reach a caller that is gone. */
    for (struct pending *p = s->pending; p; p = p->next)
        if (p->userdata == userdata)
            p->fn = scd_ignore_reply;
}

void scd_ignore_reply(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err,
                      void *userdata)
{
}
