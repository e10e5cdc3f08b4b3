/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "control.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "commands.h"
#include "container.h"
#include "guestos_install.h"
#include "migrate_net.h"
#include "idle_memory.h"
#include "lifecycle.h"
#include "log.h"
#include "proto.h"
#include "proto_strings.h"
#include "roles.h"
#include "session.h"
#include "version.h"

#define PARTIAL_FRAME_TIMEOUT_MS 30000
/* A restricted client's frames are at most 64 KiB: over a local socket they arrive at once. */
#define PARTIAL_FRAME_TIMEOUT_RESTRICTED_MS 5000
#define STREAM_CHUNK 65536
/* Buffers above this come from mmap and go back to the kernel when freed (see control_listen);
 * an output queue that grew above it is freed once it drains. */
#define LARGE_ALLOC (256 * 1024)

/* api/'s own state in struct daemon (d->control): the control sockets and their clients. */
struct control_state {
    struct conn *conns;
    uint64_t next_conn_id;
    struct listener *listeners; /* control sockets: the host's and those in containers */
    tm_source *idle_timer; /* TM_IDLE_RELEASE_MS after the last client went */
};

static void conn_free(struct conn *c);

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

int control_init(struct daemon *d, tm_err *err)
{
    assert(!d->control);
    d->control = calloc(1, sizeof(*d->control));
    if (!d->control)
        return tm_err_set(err, ENOMEM, "out of memory");
    return 0;
}

struct conn *conn_find(struct daemon *d, uint64_t id)
{
    if (!d->control)
        return NULL; /* before control_init or after control_close_all: nobody is connected */
    for (struct conn *c = d->control->conns; c; c = c->next)
        if (c->id == id && !c->closing)
            return c;
    return NULL;
}

bool conn_congested(const struct conn *c)
{
    return tm_buf_pending(&c->out) > CONN_HIGH_WATER;
}

static void update_events(struct conn *c)
{
    /* A closing connection waits for EPOLLOUT, which frees it once its output is flushed. A
     * connection whose replies pile up unread is not read from until they drain: a client that
     * never reads cannot make trustmed buffer without bound. */
    uint32_t ev = c->closing ? EPOLLOUT : conn_congested(c) || c->input_paused ? 0 : EPOLLIN;
    if (tm_buf_pending(&c->out) > 0 || c->stream_fd >= 0)
        ev |= EPOLLOUT;
    /* A half-close is only news when we read: watched while not reading, it would wake the
     * (level-triggered) loop again and again. A full hang-up still shows as EPOLLHUP. */
    if (ev & EPOLLIN)
        ev |= EPOLLRDHUP;
    tm_source_modify(c->src, ev);
}

void conn_pause_input(struct conn *c, bool paused)
{
    if (c->input_paused == paused)
        return;
    c->input_paused = paused;
    update_events(c);
}

/* Write what the socket takes; notes whether the client reads its replies at all. */
static int flush_out(struct conn *c)
{
    size_t before = tm_buf_pending(&c->out);
    int r = tm_buf_flush(&c->out, c->fd);
    if (tm_buf_pending(&c->out) < before || tm_buf_pending(&c->out) == 0)
        c->out_progress = now_s();
    return r;
}

void conn_send(struct conn *c, uint64_t req_id, Trustme__Response *resp)
{
    resp->has_version = true;
    resp->version = TM_PROTOCOL_VERSION;
    resp->daemon_version = (char *)TRUSTME_VERSION;
    resp->has_id = true;
    resp->id = req_id;
    if (tm_proto_append(&c->out, &resp->base) < 0) {
        log_error("connection %llu: cannot queue a reply, closing", (unsigned long long)c->id);
        c->closing = true;
    }
    /* Write at once: most replies fit the socket buffer, saving a round through epoll. */
    if (flush_out(c) < 0)
        c->closing = true;
    tm_buf_shrink(&c->out, LARGE_ALLOC);
    update_events(c);
}

/* fmt is checked where conn_send_error and its PIN variant are called (control.h). */
__attribute__((format(printf, 5, 0))) static void send_error(struct conn *c, uint64_t req_id, int code,
                                                             bool pin_required, const char *fmt, va_list ap)
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

void conn_send_ok(struct conn *c, uint64_t req_id)
{
    Trustme__Ok ok = TRUSTME__OK__INIT;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_OK;
    resp.ok = &ok;
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
    c->stream_name[0] = '\0';
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
        chunk.file = c->stream_name[0] ? c->stream_name : NULL;
        Trustme__Response resp = TRUSTME__RESPONSE__INIT;
        resp.body_case = TRUSTME__RESPONSE__BODY_AUDIT_CHUNK;
        resp.audit_chunk = &chunk;
        conn_send(c, c->stream_req, &resp);
    }
}

/* Lines that any client can cause as often as it likes. */
static tm_ratelimit rl_refused = TM_RATELIMIT_INIT(10, 5);
static tm_ratelimit rl_evicted = TM_RATELIMIT_INIT(10, 5);
static tm_ratelimit rl_partial = TM_RATELIMIT_INIT(10, 5);
static tm_ratelimit rl_idle = TM_RATELIMIT_INIT(10, 5);

static int partial_timeout_ms(const struct conn *c)
{
    return c->role == ROLE_RESTRICTED ? PARTIAL_FRAME_TIMEOUT_RESTRICTED_MS : PARTIAL_FRAME_TIMEOUT_MS;
}

static void on_partial_timeout(tm_source *src, void *userdata)
{
    struct conn *c = userdata;
    c->partial_timer = NULL;
    log_warn_ratelimited(&rl_partial, "connection %llu (%s): incomplete message for %d s, closing",
                         (unsigned long long)c->id, c->actor, partial_timeout_ms(c) / 1000);
    conn_free(c);
}

static bool conn_busy(const struct conn *c)
{
    if (c->stream_fd >= 0 || tm_buf_pending(&c->out) || guestos_install_serves(c->d, c->id))
        return true;
    for (struct container *ct = c->d->containers; ct; ct = ct->next)
        if (container_serves(ct, c->id))
            return true;
    return false;
}

/* Connections that came through listener l, and (restricted) through any restricted socket. */
static void count_conns(const struct listener *l, size_t *ret_mine, size_t *ret_restricted)
{
    size_t mine = 0, restricted = 0;
    for (const struct conn *c = l->d->control->conns; c; c = c->next) {
        mine += strcmp(c->role_uuid, l->uuid) == 0;
        restricted += c->role == ROLE_RESTRICTED;
    }
    *ret_mine = mine;
    *ret_restricted = restricted;
}

static bool listener_full(const struct listener *l)
{
    size_t mine, restricted;
    count_conns(l, &mine, &restricted);
    return mine >= l->max_conns || (l->role == ROLE_RESTRICTED && restricted >= CONN_MAX_RESTRICTED_TOTAL);
}

/* At the connection limit, the hang-ups of connections closed a moment ago may still wait in the
 * same batch of events as this accept: free those first (peer gone, nothing left to read, so no
 * request of theirs is lost) rather than refuse a new client for them. */
static void reap_hung_up(struct daemon *d)
{
    for (struct conn *c = d->control->conns, *next; c; c = next) {
        next = c->next;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int unread = 0;
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) && ioctl(c->fd, FIONREAD, &unread) == 0 && unread == 0)
            conn_free(c);
    }
}

/* Still at the limit: close the oldest connection of the same socket that waits for nothing —
 * idle since its last reply, or in the middle of a frame it does not finish. Nothing it asked
 * for is lost (every reply has been written). A client holding many connections open thus only
 * ever loses its own, and a new client of the socket is served. */
static bool evict_one(struct listener *l)
{
    struct conn *victim = NULL;
    for (struct conn *c = l->d->control->conns; c; c = c->next)
        if (!c->closing && strcmp(c->role_uuid, l->uuid) == 0 && !conn_busy(c) &&
            (!victim || c->last_active < victim->last_active ||
             (c->last_active == victim->last_active && c->id < victim->id)))
            victim = c;
    if (!victim)
        return false;
    log_info_ratelimited(&rl_evicted,
                         "connection %llu (%s): closed for a new client of the "
                         "same socket (at its limit of %u, this one %s)",
                         (unsigned long long)victim->id, victim->actor, l->max_conns,
                         tm_frame_partial(&victim->rd) ? "sent half a message" : "was idle");
    conn_free(victim);
    return true;
}

static bool make_room(struct listener *l)
{
    if (!listener_full(l))
        return true;
    reap_hung_up(l->d);
    if (!listener_full(l))
        return true;
    return evict_one(l) && !listener_full(l);
}

static void sweep_idle(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    uint64_t now = now_s();
    for (struct conn *c = d->control->conns, *next; c; c = next) {
        next = c->next;
        if (!c->closing && now - c->last_active > CONN_IDLE_TIMEOUT_S && !conn_busy(c)) {
            log_info_ratelimited(&rl_idle, "connection %llu (%s): idle for %d s, closing", (unsigned long long)c->id,
                                 c->actor, CONN_IDLE_TIMEOUT_S);
            conn_free(c);
        } else if (c->role == ROLE_RESTRICTED && tm_buf_pending(&c->out) > 0 &&
                   now - c->out_progress > CONN_IDLE_TIMEOUT_S) {
            /* Replies it does not read count as busy above, so such a connection would stay
             * forever, holding up to CONN_HIGH_WATER of trustmed's memory and a slot. A
             * restricted client has no session or stream that may rightly wait that long
             * (an admin's `run` may: a terminal stopped with Ctrl-S). */
            log_info_ratelimited(&rl_idle,
                                 "connection %llu (%s): has read none of its replies "
                                 "for %d s, closing",
                                 (unsigned long long)c->id, c->actor, CONN_IDLE_TIMEOUT_S);
            conn_free(c);
        }
    }
    tm_loop_timer(d->loop, CONN_IDLE_TIMEOUT_S * 1000 / 4, sweep_idle, d);
}

static void handle_frame(struct conn *c, uint8_t *data, uint32_t len)
{
    c->last_active = now_s();
    Trustme__Request *req = trustme__request__unpack(NULL, len, data);
    /* Every string of every request, in one place (protobuf-c would cut "a\0b" to "a"). */
    tm_err serr = {0};
    int strings = req ? tm_proto_check_strings(&trustme__request__descriptor, data, len, &serr) : 0;
    explicit_bzero(data, len); /* requests may carry PINs (commands.c wipes the parsed copies) */
    if (!req) {
        /* The frame boundary is intact, so the stream is still in sync: answer and go on. */
        conn_send_error(c, 0, EBADMSG, "malformed request: not a trustme.Request message");
        return;
    }
    uint64_t id = req->has_id ? req->id : 0;
    if (strings < 0)
        conn_send_error(c, id, serr.code, "malformed request: %s", serr.msg);
    else if (!req->has_version || req->version != TM_PROTOCOL_VERSION)
        conn_send_error(c, id, EPROTO, "unsupported protocol version %u (this daemon speaks %u)",
                        req->has_version ? req->version : 0, TM_PROTOCOL_VERSION);
    else if (!req->has_id)
        conn_send_error(c, 0, EINVAL, "request without an id");
    else
        commands_dispatch(c, req);
    commands_wipe_secrets(req); /* refused before dispatch too */
    trustme__request__free_unpacked(req, NULL);
}

/* Returns false if the connection was freed. */
static bool on_readable(struct conn *c)
{
    /* A bounded number of frames per wake-up keeps one busy client from starving the rest. */
    for (int i = 0; i < 16 && !c->closing && !c->input_paused; i++) {
        int r = tm_frame_read(&c->rd, c->fd);
        if (r == 0)
            break;
        if (r < 0) {
            if (r == -EMSGSIZE) {
                conn_send_error(c, 0, EMSGSIZE, "message larger than %u bytes", c->rd.max ? c->rd.max : TM_FRAME_MAX);
                c->closing = true; /* the stream cannot be resynchronised */
            } else {
                if (r == -EPROTO)
                    log_warn_ratelimited(&rl_partial,
                                         "connection %llu (%s): closed in the "
                                         "middle of a message",
                                         (unsigned long long)c->id, c->actor);
                conn_free(c);
                return false;
            }
            break;
        }
        uint32_t len;
        uint8_t *data = tm_frame_take(&c->rd, &len);
        handle_frame(c, data, len);
        free(data);
        /* A large request leaves the heap fragmented by its decoded copies: give the memory
         * back now rather than keep an idle daemon at the size of its largest message. */
        if (len >= LARGE_ALLOC)
            malloc_trim(0);
    }
    if (tm_frame_partial(&c->rd) && !c->partial_timer && !c->closing)
        c->partial_timer = tm_loop_timer(c->d->loop, partial_timeout_ms(c), on_partial_timeout, c);
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
    int r = flush_out(c);
    if (r < 0 || (events & (EPOLLERR | EPOLLHUP)) || (c->closing && r == 0 && c->stream_fd < 0)) {
        conn_free(c);
        return;
    }
    if (was_congested && !conn_congested(c))
        sessions_resume(d, c->id);
    tm_buf_shrink(&c->out, LARGE_ALLOC);
    update_events(c);
}

static bool listener_audit_due(struct listener *l, enum control_audit_kind kind);

const char *conn_role_name(enum conn_role role)
{
    return role == ROLE_RESTRICTED ? "restricted" : "admin";
}

/* Who may connect. The host's socket is 0600 root, so only root gets here; checking again holds
 * if someone loosens the mode. A socket inside a container is reachable only through that
 * container's mount namespace; the peer must also be one of its processes (roles.c), so that
 * no other process that reached the path (through /proc/<pid>/root) gets the socket's role. */
static bool peer_allowed(struct listener *l, int fd, const struct ucred *cred, char *why, size_t size)
{
    if (!l->uuid[0]) {
        if (cred->uid == 0 || cred->uid == geteuid())
            return true;
        snprintf(why, size, "not root");
        return false;
    }
    return roles_peer_in_container(l->d, l->uuid, fd, cred, why, size);
}

/* A new client (tm_acceptor): its credentials checked against the socket's role, within the
 * socket's limits. */
static void on_client(int fd, void *userdata)
{
    struct listener *l = userdata;
    struct daemon *d = l->d;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        close(fd);
        return;
    }
    struct container *owner = l->uuid[0] ? container_find(d, l->uuid) : NULL;
    char why[128] = "";
    if (!peer_allowed(l, fd, &cred, why, sizeof(why))) {
        /* Rate-limited like refused requests: a process of the container that connects and
         * exits at once is refused too (its pid is gone), as often as it likes. */
        if (listener_audit_due(l, CONTROL_AUDIT_DENIED))
            daemon_audit(d, "control.denied", "denied", owner, NULL, "uid=%u pid=%d role=%s: %s", cred.uid, cred.pid,
                         conn_role_name(l->role), why);
        close(fd);
        return;
    }
    if (!make_room(l)) {
        log_warn_ratelimited(&rl_refused,
                             "too many busy control connections on the %s "
                             "socket%s%s, refusing pid %d",
                             conn_role_name(l->role), owner ? " of " : "", owner ? owner->cfg->name : "", cred.pid);
        close(fd);
        return;
    }
    struct conn *c = tm_accepted_alloc(fd, sizeof(*c));
    if (!c)
        return;
    c->d = d;
    c->id = ++d->control->next_conn_id;
    c->fd = fd;
    c->peer = cred;
    c->stream_fd = -1;
    c->last_active = c->out_progress = now_s();
    c->role = l->role;
    memcpy(c->role_uuid, l->uuid, sizeof(c->role_uuid));
    if (c->role == ROLE_RESTRICTED)
        c->rd.max = CONN_FRAME_MAX_RESTRICTED;
    /* The pid is the host's; the name says which container's socket it came through. */
    if (owner)
        snprintf(c->actor, sizeof(c->actor), "uid=%u pid=%d in %s", cred.uid, cred.pid, owner->cfg->name);
    else
        snprintf(c->actor, sizeof(c->actor), "uid=%u pid=%d", cred.uid, cred.pid);
    c->src = tm_loop_io(d->loop, fd, EPOLLIN | EPOLLRDHUP, on_conn_io, c);
    if (!c->src) {
        close(fd);
        free(c);
        return;
    }
    c->next = d->control->conns;
    d->control->conns = c;
    tm_source_free(d->control->idle_timer);
    d->control->idle_timer = NULL;
}

/* Nobody connected for TM_IDLE_RELEASE_MS: the library pages requests touched go too
 * (idle_memory.h). Not at each disconnect: a CLI in a loop would refault them every time. */
static void on_idle(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    d->control->idle_timer = NULL;
    if (!d->control->conns)
        log_debug("idle: heap trimmed, %zu KiB of read-only library mappings dropped", tm_idle_release() / 1024);
}

static void conn_free(struct conn *c)
{
    struct daemon *d = c->d;
    for (struct conn **pp = &d->control->conns; *pp; pp = &(*pp)->next)
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
    /* The last client gone: give the heap's free pages back (the trim threshold above keeps
     * glibc from doing it), so that an idle trustmed holds what it uses, not its peak. */
    if (!d->control->conns) {
        malloc_trim(0);
        tm_source_free(d->control->idle_timer);
        d->control->idle_timer = tm_loop_timer(d->loop, TM_IDLE_RELEASE_MS, on_idle, d);
    }
}

static struct listener *listener_of(struct daemon *d, const char *uuid)
{
    for (struct listener *l = d->control->listeners; l; l = l->next)
        if (strcmp(l->uuid, uuid) == 0)
            return l;
    return NULL;
}

static void audit_summary(struct audit_limit *al)
{
    if (!al->suppressed)
        return;
    struct listener *l = al->l;
    struct container *owner = l->uuid[0] ? container_find(l->d, l->uuid) : NULL;
    unsigned long long s = (unsigned long long)(now_s() - al->window_start);
    if (al->kind == CONTROL_AUDIT_DENIED)
        daemon_audit(l->d, "control.denied", "denied", owner, "trustmed",
                     "role=%s: %u more refused requests or peers on this socket in %llu s, not recorded "
                     "one by one (at most %d per %d s)",
                     conn_role_name(l->role), al->suppressed, s, CONTROL_AUDIT_BURST, CONTROL_AUDIT_WINDOW_S);
    else
        daemon_audit(l->d, "guestos.install", "fail", owner, "trustmed",
                     "role=%s: %u more failed installs from this socket in %llu s, not recorded "
                     "one by one (at most %d per %d s)",
                     conn_role_name(l->role), al->suppressed, s, CONTROL_AUDIT_BURST, CONTROL_AUDIT_WINDOW_S);
    al->suppressed = 0;
}

static void on_audit_window_end(tm_source *src, void *userdata)
{
    struct audit_limit *al = userdata;
    al->timer = NULL;
    audit_summary(al);
}

static bool listener_audit_due(struct listener *l, enum control_audit_kind kind)
{
    struct audit_limit *al = &l->audit_limits[kind];
    uint64_t now = now_s();
    if (now - al->window_start >= CONTROL_AUDIT_WINDOW_S) {
        audit_summary(al);
        al->window_start = now;
        al->recorded = 0;
    }
    if (al->recorded < CONTROL_AUDIT_BURST) {
        al->recorded++;
        return true;
    }
    if (!al->suppressed++ && !al->timer) {
        uint64_t left = al->window_start + CONTROL_AUDIT_WINDOW_S - now;
        al->timer = tm_loop_timer(l->d->loop, left * 1000, on_audit_window_end, al);
    }
    return false;
}

bool control_audit_due(struct conn *c, enum control_audit_kind kind)
{
    struct listener *l = listener_of(c->d, c->role_uuid);
    return !l || listener_audit_due(l, kind);
}

static void listener_free(struct listener *l)
{
    for (size_t i = 0; i < ARRAY_SIZE(l->audit_limits); i++) {
        audit_summary(&l->audit_limits[i]);
        tm_source_free(l->audit_limits[i].timer);
    }
    tm_acceptor_stop(&l->acc);
    free(l);
}

int control_add_listener(struct daemon *d, int fd, enum conn_role role, const char *uuid, tm_err *err)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    *l = (struct listener){
        .d = d, .role = role, .max_conns = role == ROLE_RESTRICTED ? CONN_MAX_RESTRICTED : CONN_MAX_ADMIN};
    snprintf(l->uuid, sizeof(l->uuid), "%s", uuid);
    for (size_t i = 0; i < ARRAY_SIZE(l->audit_limits); i++)
        l->audit_limits[i] = (struct audit_limit){.l = l, .kind = (int)i};
    /* 100 ms: long enough not to spin, short enough that fds freed meanwhile serve at once */
    int r = tm_acceptor_start(&l->acc, d->loop, fd, 100, "control", on_client, l, err);
    if (r < 0) {
        listener_free(l);
        return r;
    }
    l->next = d->control->listeners;
    d->control->listeners = l;
    return 0;
}

void control_remove_listeners(struct daemon *d, const char *uuid)
{
    if (!d->control)
        return;
    for (struct listener **pp = &d->control->listeners; *pp;) {
        struct listener *l = *pp;
        if (strcmp(l->uuid, uuid) != 0) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        listener_free(l);
    }
    /* Their clients are gone with the container's processes; anything left (a connection
     * passed on) loses the role with the container. Closed from the loop, not here: this may
     * run inside a handler of one of them. */
    for (struct conn *c = d->control->conns; c; c = c->next)
        if (strcmp(c->role_uuid, uuid) == 0 && !c->closing) {
            c->closing = true;
            update_events(c);
        }
}

static void host_socket_path(struct daemon *d, char *out, size_t size)
{
    snprintf(out, size, "%s/control.sock", d->run_dir);
}

int control_listen(struct daemon *d, tm_err *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(d->run_dir) + sizeof("/control.sock") > sizeof(addr.sun_path))
        return tm_err_set(err, ENAMETOOLONG, "run dir path too long for a socket: %s", d->run_dir);
    host_socket_path(d, addr.sun_path, sizeof(addr.sun_path));
    /* The run dir lock (held by main) guarantees no other trustmed uses this path. Without an
     * admin socket in the root namespace, one left by an earlier configuration goes too. */
    unlink(addr.sun_path);
    tm_loop_timer(d->loop, CONN_IDLE_TIMEOUT_S * 1000 / 4, sweep_idle, d);
    /* glibc raises its mmap threshold each time an mmap'ed block is freed, so after one 16 MiB
     * frame the next ones come from the heap and stay there: an idle trustmed kept 23-37 MiB.
     * A fixed threshold keeps every large buffer in its own mapping, unmapped when freed. */
    mallopt(M_MMAP_THRESHOLD, LARGE_ALLOC);
    mallopt(M_TRIM_THRESHOLD, LARGE_ALLOC);
    if (!d->device.admin_socket_in_root) {
        log_info("no admin socket in the root namespace (device.json admin_socket_in_root): "
                 "the device is managed through the core container %s",
                 d->device.core_container);
        return 0;
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tm_err_sys(err, "socket");
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (r < 0 || chmod(addr.sun_path, 0600) < 0 || listen(fd, 64) < 0)
        return tm_err_sys(err, "cannot listen on %s", addr.sun_path);
    return control_add_listener(d, steal_fd(fd), ROLE_ADMIN, "", err);
}

void control_close_all(struct daemon *d)
{
    migrate_net_stop(d); /* the migration endpoint's connections too (nothing when it is off) */
    if (!d->control)
        return;
    while (d->control->conns) {
        tm_buf_flush(&d->control->conns->out, d->control->conns->fd); /* best effort: last replies */
        conn_free(d->control->conns);
    }
    tm_source_free(d->control->idle_timer);
    d->control->idle_timer = NULL;
    for (struct listener *l = d->control->listeners; l; l = l->next)
        if (!l->uuid[0]) {
            char path[PATH_MAX + 16];
            host_socket_path(d, path, sizeof(path));
            unlink(path);
        }
    while (d->control->listeners) {
        struct listener *l = d->control->listeners;
        d->control->listeners = l->next;
        listener_free(l);
    }
    free(d->control);
    d->control = NULL;
}
