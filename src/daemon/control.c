#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "commands.h"
#include "guestos_install.h"
#include "log.h"
#include "proto.h"
#include "session.h"

#define PARTIAL_FRAME_TIMEOUT_MS 30000
#define STREAM_CHUNK 65536

static void conn_free(struct conn *c);

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

struct conn *conn_find(struct daemon *d, uint64_t id)
{
    for (struct conn *c = d->conns; c; c = c->next)
        if (c->id == id && !c->closing)
            return c;
    return NULL;
}

bool conn_congested(const struct conn *c) { return tm_buf_pending(&c->out) > CONN_HIGH_WATER; }

static void update_events(struct conn *c)
{
    /* A closing connection waits for EPOLLOUT, which frees it once its output is flushed. A
     * connection whose replies pile up unread is not read from until they drain: a client that
     * never reads cannot make trustmed buffer without bound. */
    uint32_t ev = c->closing ? EPOLLOUT : conn_congested(c) ? 0 : EPOLLIN;
    if (tm_buf_pending(&c->out) > 0 || c->stream_fd >= 0)
        ev |= EPOLLOUT;
    tm_source_modify(c->src, ev | EPOLLRDHUP);
}

void conn_send(struct conn *c, uint64_t req_id, Trustme__Response *resp)
{
    resp->has_version = true;
    resp->version = TM_PROTOCOL_VERSION;
    resp->has_id = true;
    resp->id = req_id;
    if (tm_proto_append(&c->out, &resp->base) < 0) {
        log_error("connection %llu: cannot queue a reply, closing", (unsigned long long)c->id);
        c->closing = true;
    }
    /* Write at once: most replies fit the socket buffer, saving a round through epoll. */
    if (tm_buf_flush(&c->out, c->fd) < 0)
        c->closing = true;
    update_events(c);
}

static void send_error(struct conn *c, uint64_t req_id, int code, bool pin_required,
                       const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    Trustme__Error e = TRUSTME__ERROR__INIT;
    e.has_code = true;
    e.code = code;
    e.has_pin_required = e.pin_required = pin_required;
    e.message = msg;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_ERROR;
    resp.error = &e;
    conn_send(c, req_id, &resp);
}

void conn_send_error(struct conn *c, uint64_t req_id, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error(c, req_id, code, false, fmt, ap);
    va_end(ap);
}

void conn_send_pin_required(struct conn *c, uint64_t req_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error(c, req_id, ENOKEY, true, fmt, ap);
    va_end(ap);
}

void conn_stream_file(struct conn *c, uint64_t req_id, int fd, stream_done_fn done)
{
    if (c->stream_fd >= 0) {
        close(fd);
        conn_send_error(c, req_id, EBUSY, "this connection is still sending a file; wait for its end");
        return;
    }
    c->stream_fd = fd;
    c->stream_req = req_id;
    c->stream_done = done;
    update_events(c);
}

/* Queue the next chunk of a streamed file; AuditEnd follows the last one. */
static void stream_more(struct conn *c)
{
    while (c->stream_fd >= 0 && tm_buf_pending(&c->out) < CONN_HIGH_WATER) {
        uint8_t buf[STREAM_CHUNK];
        ssize_t n = read(c->stream_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close_and_reset(c->stream_fd);
            if (n < 0) {
                conn_send_error(c, c->stream_req, EIO, "cannot read the file: %s", strerror(errno));
                return;
            }
            c->stream_done(c, c->stream_req);
            return;
        }
        Trustme__AuditChunk chunk = TRUSTME__AUDIT_CHUNK__INIT;
        chunk.has_data = true;
        chunk.data.data = buf;
        chunk.data.len = (size_t)n;
        Trustme__Response resp = TRUSTME__RESPONSE__INIT;
        resp.body_case = TRUSTME__RESPONSE__BODY_AUDIT_CHUNK;
        resp.audit_chunk = &chunk;
        conn_send(c, c->stream_req, &resp);
    }
}

static void on_partial_timeout(tm_source *src, void *userdata)
{
    struct conn *c = userdata;
    c->partial_timer = NULL;
    log_warn("connection %llu (%s): incomplete message for %d s, closing",
             (unsigned long long)c->id, c->actor, PARTIAL_FRAME_TIMEOUT_MS / 1000);
    conn_free(c);
}


static bool conn_busy(const struct conn *c)
{
    if (c->stream_fd >= 0 || tm_buf_pending(&c->out) || guestos_install_serves(c->d, c->id))
        return true;
    for (struct container *ct = c->d->containers; ct; ct = ct->next) {
        for (struct session *s = ct->sessions; s; s = s->next)
            if (s->conn_id == c->id)
                return true;
        for (struct waiter *w = ct->waiters; w; w = w->next)
            if (w->conn_id == c->id)
                return true;
    }
    return false;
}

static void sweep_idle(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    uint64_t now = now_s();
    for (struct conn *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (!c->closing && now - c->last_active > CONN_IDLE_TIMEOUT_S && !conn_busy(c)) {
            log_info("connection %llu (%s): idle for %d s, closing", (unsigned long long)c->id,
                     c->actor, CONN_IDLE_TIMEOUT_S);
            conn_free(c);
        }
    }
    tm_loop_timer(d->loop, CONN_IDLE_TIMEOUT_S * 1000 / 4, sweep_idle, d);
}

static void handle_frame(struct conn *c, uint8_t *data, uint32_t len)
{
    c->last_active = now_s();
    Trustme__Request *req = trustme__request__unpack(NULL, len, data);
    explicit_bzero(data, len); /* requests may carry PINs (commands.c wipes the parsed copies) */
    if (!req) {
        /* The frame boundary is intact, so the stream is still in sync: answer and go on. */
        conn_send_error(c, 0, EBADMSG, "malformed request: not a trustme.Request message");
        return;
    }
    uint64_t id = req->has_id ? req->id : 0;
    if (!req->has_version || req->version != TM_PROTOCOL_VERSION)
        conn_send_error(c, id, EPROTO, "unsupported protocol version %u (this daemon speaks %u)",
                        req->has_version ? req->version : 0, TM_PROTOCOL_VERSION);
    else if (!req->has_id)
        conn_send_error(c, 0, EINVAL, "request without an id");
    else
        commands_dispatch(c, req);
    trustme__request__free_unpacked(req, NULL);
}

/* Returns false if the connection was freed. */
static bool on_readable(struct conn *c)
{
    /* A bounded number of frames per wake-up keeps one busy client from starving the rest. */
    for (int i = 0; i < 16 && !c->closing; i++) {
        int r = tm_frame_read(&c->rd, c->fd);
        if (r == 0)
            break;
        if (r < 0) {
            if (r == -EMSGSIZE) {
                conn_send_error(c, 0, EMSGSIZE, "message larger than %u bytes", TM_FRAME_MAX);
                c->closing = true; /* the stream cannot be resynchronised */
            } else {
                if (r == -EPROTO)
                    log_warn("connection %llu (%s): closed in the middle of a message",
                             (unsigned long long)c->id, c->actor);
                conn_free(c);
                return false;
            }
            break;
        }
        uint32_t len;
        _cleanup_free_ uint8_t *data = tm_frame_take(&c->rd, &len);
        handle_frame(c, data, len);
    }
    if (tm_frame_partial(&c->rd) && !c->partial_timer && !c->closing)
        c->partial_timer = tm_loop_timer(c->d->loop, PARTIAL_FRAME_TIMEOUT_MS, on_partial_timeout, c);
    else if (!tm_frame_partial(&c->rd) && c->partial_timer) {
        tm_source_free(c->partial_timer);
        c->partial_timer = NULL;
    }
    return true;
}

static void on_conn_io(tm_source *src, uint32_t events, void *userdata)
{
    struct conn *c = userdata;
    struct daemon *d = c->d;
    if ((events & EPOLLIN) && !on_readable(c))
        return;
    if (c->stream_fd >= 0)
        stream_more(c);
    bool was_congested = conn_congested(c);
    int r = tm_buf_flush(&c->out, c->fd);
    if (r < 0 || (events & (EPOLLERR | EPOLLHUP)) || (c->closing && r == 0 && c->stream_fd < 0)) {
        conn_free(c);
        return;
    }
    if (was_congested && !conn_congested(c))
        sessions_resume(d, c->id);
    update_events(c);
}

static void on_accept(tm_source *src, uint32_t events, void *userdata);

static void resume_accept(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    tm_source_modify(d->listen_src, EPOLLIN);
}

static void on_accept(tm_source *src, uint32_t events, void *userdata)
{
    struct daemon *d = userdata;
    for (;;) {
        int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays pending, so the socket stays readable: stop
                 * watching it for a moment rather than spin (timers need no fd). */
                static uint64_t last_logged;
                if (now_s() - last_logged >= 10) {
                    log_warn("accept: %m; pausing new connections until fds are free");
                    last_logged = now_s();
                }
                tm_source_modify(d->listen_src, 0);
                tm_loop_timer(d->loop, 100, resume_accept, d);
            } else if (errno != EAGAIN && errno != EINTR) {
                log_warn("accept: %m");
            }
            return;
        }
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            close(fd);
            continue;
        }
        /* The socket is 0600, so only root gets here; checking again costs nothing and holds if
         * someone loosens the mode. */
        if (cred.uid != 0 && cred.uid != geteuid()) {
            daemon_audit(d, "control.denied", "denied", NULL, NULL, "uid=%u pid=%d", cred.uid,
                         cred.pid);
            close(fd);
            continue;
        }
        size_t n = 0;
        for (struct conn *c = d->conns; c; c = c->next)
            n++;
        if (n >= CONN_MAX) {
            log_warn("too many control connections, refusing pid %d", cred.pid);
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->d = d;
        c->id = ++d->next_conn_id;
        c->fd = fd;
        c->peer = cred;
        c->stream_fd = -1;
        c->last_active = now_s();
        snprintf(c->actor, sizeof(c->actor), "uid=%u pid=%d", cred.uid, cred.pid);
        c->src = tm_loop_io(d->loop, fd, EPOLLIN | EPOLLRDHUP, on_conn_io, c);
        if (!c->src) {
            close(fd);
            free(c);
            continue;
        }
        c->next = d->conns;
        d->conns = c;
    }
}

static void conn_free(struct conn *c)
{
    struct daemon *d = c->d;
    for (struct conn **pp = &d->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    sessions_conn_closed(d, c->id);
    if (c->closing) {
        /* Closing a unix socket with unread input resets the connection, and the client would
         * lose the error reply that explains why: discard what it already sent (bounded). */
        char sink[4096];
        for (int i = 0; i < 256 && read(c->fd, sink, sizeof(sink)) > 0; i++)
            ;
    }
    tm_source_free(c->src);
    tm_source_free(c->partial_timer);
    close(c->fd);
    close_and_reset(c->stream_fd);
    tm_frame_reader_reset(&c->rd);
    tm_buf_free(&c->out);
    free(c);
}

int control_listen(struct daemon *d, tm_err *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/control.sock", d->run_dir) >=
        (int)sizeof(addr.sun_path))
        return tm_err_set(err, ENAMETOOLONG, "run dir path too long for a socket: %s", d->run_dir);
    /* The run dir lock (held by main) guarantees no other trustmed uses this path. */
    unlink(addr.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tm_err_sys(err, "socket");
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (r < 0 || chmod(addr.sun_path, 0600) < 0 || listen(fd, 64) < 0) {
        r = tm_err_sys(err, "cannot listen on %s", addr.sun_path);
        close(fd);
        return r;
    }
    d->listen_fd = fd;
    d->listen_src = tm_loop_io(d->loop, fd, EPOLLIN, on_accept, d);
    if (!d->listen_src)
        return tm_err_sys(err, "epoll");
    tm_loop_timer(d->loop, CONN_IDLE_TIMEOUT_S * 1000 / 4, sweep_idle, d);
    return 0;
}

void control_close_all(struct daemon *d)
{
    while (d->conns) {
        tm_buf_flush(&d->conns->out, d->conns->fd); /* best effort: last replies */
        conn_free(d->conns);
    }
    if (d->listen_fd >= 0) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/control.sock", d->run_dir);
        unlink(path);
        tm_source_free(d->listen_src);
        close_and_reset(d->listen_fd);
    }
}
