/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "attest_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "frame.h"
#include "hostport.h"
#include "log.h"
#include "proto.h"
#include "quote.h"
#include "acceptor.h"
#include "server.h"
#include "uuid.h"
#include "vtpm_flush.h"
#include "vtpm_relay.h"

#define ACCEPT_PAUSE_MS 200

struct conn {
    struct attest_server *srv;
    int fd;
    struct sockaddr_storage peer; /* its address: the per-peer limit counts it, port ignored */
    uint64_t waiting_since; /* when it began to wait for a request (srv->clock); 0: busy */
    tm_source *src;
    tm_source *timer;
    tm_frame_reader rd;
    tm_buf out;
    struct conn *prev, *next;
    /* The vTPM relay (docs/VTPM.md): the container this connection relays for ("" before the
     * first relay request), what its commands loaded there, and the command in flight. */
    char vtpm_uuid[TM_UUID_STR_LEN + 1];
    struct vtpm_handles vtpm_handles;
    uint64_t vtpm_id; /* the request's id, for the answer */
    int vtpm_fd; /* -1: none in flight */
    tm_source *vtpm_src;
    uint8_t vtpm_cmd[VTPM_MAX_COMMAND];
    size_t vtpm_cmd_len;
    uint8_t vtpm_rsp[VTPM_MAX_COMMAND];
    size_t vtpm_rsp_have;
};

struct attest_server {
    struct tpmd *d;
    struct tm_acceptor acc;
    struct conn *conns;
    unsigned nconns;
    uint64_t clock; /* counts up at every wait that begins: orders them, oldest first */
};

static void relay_end(struct conn *c)
{
    tm_source_free(c->vtpm_src);
    c->vtpm_src = NULL;
    if (c->vtpm_fd >= 0)
        close(c->vtpm_fd);
    c->vtpm_fd = -1;
}

static void conn_close(struct conn *c)
{
    struct attest_server *s = c->srv;
    relay_end(c);
    /* What the stakeholder's commands left in the vTPM (its session, its attestation key) goes
     * with the connection, also when the network cut it. */
    if (c->vtpm_uuid[0] && c->srv->d->vtpm_dir)
        vtpm_flush_start(c->srv->d->loop, c->srv->d->vtpm_dir, c->vtpm_uuid, &c->vtpm_handles);
    tm_source_free(c->src);
    tm_source_free(c->timer);
    close(c->fd);
    tm_frame_reader_reset(&c->rd);
    tm_buf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

static bool same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

/* The connection that has waited longest for a request (idle, or trickling one in), among those
 * of peer (NULL: of anyone). A connection whose answer is being written is not idle. */
static struct conn *longest_waiting(struct attest_server *s, const struct sockaddr_storage *peer,
                                    unsigned *ret_from_peer)
{
    struct conn *oldest = NULL;
    unsigned n = 0;
    for (struct conn *c = s->conns; c; c = c->next) {
        if (peer && !same_peer(&c->peer, peer))
            continue;
        n++;
        if (c->waiting_since && (!oldest || c->waiting_since < oldest->waiting_since))
            oldest = c;
    }
    if (ret_from_peer)
        *ret_from_peer = n;
    return oldest;
}

/* When all slots are taken: the longest-waiting idle connection of the peer that holds most. */
static struct conn *busiest_peers_idle(struct attest_server *s)
{
    struct conn *best = NULL;
    unsigned best_n = 0;
    for (struct conn *c = s->conns; c; c = c->next) {
        if (!c->waiting_since)
            continue;
        unsigned n;
        struct conn *oldest = longest_waiting(s, &c->peer, &n);
        if (n > best_n || (n == best_n && oldest->waiting_since < best->waiting_since)) {
            best = oldest;
            best_n = n;
        }
    }
    return best;
}

static void on_timeout(tm_source *src, void *userdata)
{
    struct conn *c = userdata;
    c->timer = NULL; /* freed already */
    log_debug("attestation client timed out after %d s", ATTEST_TIMEOUT_MS / 1000);
    conn_close(c);
}

static int arm_timer(struct conn *c)
{
    tm_source_free(c->timer);
    c->timer = tm_loop_timer(c->srv->d->loop, ATTEST_TIMEOUT_MS, on_timeout, c);
    return c->timer ? 0 : -ENOMEM;
}

static void on_conn(tm_source *src, uint32_t events, void *userdata);

/* An AttestResponse with this body into c->out. */
static int pack_answer(struct conn *c, Trustme__Attest__AttestResponse *resp)
{
    size_t size = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *p = tm_frame_reserve(&c->out, size);
    if (!p)
        return -ENOMEM;
    protobuf_c_message_pack(&resp->base, p);
    return 0;
}

static int pack_relay_error(struct conn *c, uint64_t id, const tm_err *err)
{
    Trustme__Attest__AttestResponse resp = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    Trustme__Attest__Error e = TRUSTME__ATTEST__ERROR__INIT;
    resp.has_version = resp.has_id = true;
    resp.version = TM_PROTOCOL_VERSION;
    resp.id = id;
    e.has_code = true;
    e.code = err->code;
    e.message = (char *)err->msg;
    resp.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR;
    resp.error = &e;
    log_debug("vTPM relay refused: %s", err->msg);
    return pack_answer(c, &resp);
}

static void on_vtpm(tm_source *src, uint32_t events, void *userdata);

/* A relay request: the event log is answered at once into resp; a command is sent to the vTPM
 * and answered by on_vtpm (1). */
static int relay_start(struct conn *c, const Trustme__Attest__VtpmRelayRequest *rq, uint64_t id,
                       Trustme__Attest__VtpmRelayAnswer *ans, uint8_t **ret_log, tm_err *err)
{
    const char *dir = c->srv->d->vtpm_dir;
    if (!dir)
        return tm_err_set(err, EOPNOTSUPP, "this device relays to no vTPM");
    if (!rq->container || !tm_uuid_valid(rq->container))
        return tm_err_set(err, EINVAL, "the relay needs a container UUID");
    if (c->vtpm_uuid[0] && strcmp(c->vtpm_uuid, rq->container) != 0)
        return tm_err_set(err, EINVAL, "one connection relays for one container");
    if (rq->has_event_log && rq->event_log) {
        size_t len;
        int r = vtpm_relay_event_log(dir, rq->container, ret_log, &len, err);
        if (r < 0)
            return r;
        ans->has_event_log = true;
        ans->event_log.data = *ret_log;
        ans->event_log.len = len;
        return 0;
    }
    if (!rq->has_command)
        return tm_err_set(err, EINVAL, "a relay request needs a command or event_log");
    int r = vtpm_relay_check_command(rq->command.data, rq->command.len, err);
    if (r < 0)
        return r;
    int fd = vtpm_relay_connect(dir, rq->container, err);
    if (fd < 0)
        return fd;
    snprintf(c->vtpm_uuid, sizeof(c->vtpm_uuid), "%s", rq->container);
    c->vtpm_fd = fd;
    c->vtpm_id = id;
    memcpy(c->vtpm_cmd, rq->command.data, rq->command.len);
    c->vtpm_cmd_len = rq->command.len;
    c->vtpm_rsp_have = 0;
    /* A fresh socket takes 4 KiB at once; a partial send is a broken vTPM. */
    if (send(fd, c->vtpm_cmd, c->vtpm_cmd_len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)c->vtpm_cmd_len) {
        relay_end(c);
        return tm_err_set(err, EIO, "the vTPM of %s did not take the command", rq->container);
    }
    c->vtpm_src = tm_loop_io(c->srv->d->loop, fd, EPOLLIN, on_vtpm, c);
    if (!c->vtpm_src) {
        relay_end(c);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    return 1;
}

/* Answer one request frame into c->out. Fails only when no answer can be built at all; 1: a
 * relayed command is in flight (on_vtpm answers). */
static int answer(struct conn *c, const uint8_t *payload, size_t len)
{
    Trustme__Attest__AttestResponse resp = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    Trustme__Attest__Error e = TRUSTME__ATTEST__ERROR__INIT;
    struct quote_answer qa = {0};
    tm_err err = {0};
    int r = 0;
    bool relay = false;
    tpmd_busy(c->srv->d);
    resp.has_version = true;
    resp.version = TM_PROTOCOL_VERSION;
    Trustme__Attest__AttestRequest *rq = trustme__attest__attest_request__unpack(NULL, len, payload);
    if (!rq) {
        r = tm_err_set(&err, EBADMSG, "malformed request");
    } else {
        resp.has_id = rq->has_id;
        resp.id = rq->id;
        if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION)
            r = tm_err_set(&err, EPROTO, "unsupported protocol version");
        else if (rq->vtpm_relay)
            relay = true;
        else
            r = quote_answer(c->srv->d, rq, &qa, &err);
    }
    if (relay) {
        Trustme__Attest__VtpmRelayAnswer ans = TRUSTME__ATTEST__VTPM_RELAY_ANSWER__INIT;
        _cleanup_free_ uint8_t *log = NULL;
        r = relay_start(c, rq->vtpm_relay, resp.id, &ans, &log, &err);
        if (r == 0) {
            resp.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_VTPM_RELAY;
            resp.vtpm_relay = &ans;
            r = pack_answer(c, &resp);
        } else if (r < 0) {
            r = pack_relay_error(c, resp.id, &err);
        }
        trustme__attest__attest_request__free_unpacked(rq, NULL);
        return r;
    }
    if (r == 0) {
        resp.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE;
        resp.quote = &qa.quote;
        if (protobuf_c_message_get_packed_size(&resp.base) > ATTEST_RESPONSE_MAX)
            r = tm_err_set(&err, EMSGSIZE, "the answer would exceed %u bytes", ATTEST_RESPONSE_MAX);
    }
    if (r < 0) {
        log_debug("attestation request refused: %s", err.msg);
        e.has_code = true;
        e.code = err.code;
        e.message = err.msg;
        resp.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR;
        resp.error = &e;
    }
    size_t size = protobuf_c_message_get_packed_size(&resp.base);
    uint8_t *p = tm_frame_reserve(&c->out, size);
    if (p)
        protobuf_c_message_pack(&resp.base, p);
    quote_answer_free(&qa);
    if (rq)
        trustme__attest__attest_request__free_unpacked(rq, NULL);
    return p ? 0 : -ENOMEM;
}

/* Write what is answered; then wait for the next request. */
static void write_out(struct conn *c)
{
    int r = tm_buf_flush(&c->out, c->fd);
    if (r < 0) {
        conn_close(c);
        return;
    }
    if (r == 1) {
        tm_source_modify(c->src, EPOLLOUT);
        return;
    }
    c->waiting_since = ++c->srv->clock;
    if (tm_source_modify(c->src, EPOLLIN) < 0 || arm_timer(c) < 0)
        conn_close(c);
}

/* The vTPM answers a relayed command: gather the response, note what it loaded, answer. */
static void on_vtpm(tm_source *src, uint32_t events, void *userdata)
{
    (void)src;
    (void)events;
    struct conn *c = userdata;
    tm_err err = {0};
    size_t want = c->vtpm_rsp_have >= 6 ? vtpm_be32(c->vtpm_rsp + 2) : VTPM_HEADER;
    if (want < VTPM_HEADER || want > VTPM_MAX_COMMAND) {
        tm_err_set(&err, EIO, "the vTPM's response is malformed");
        goto fail;
    }
    ssize_t n = recv(c->vtpm_fd, c->vtpm_rsp + c->vtpm_rsp_have, want - c->vtpm_rsp_have, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        tm_err_set(&err, EIO, "the vTPM closed the connection (did the container stop?)");
        goto fail;
    }
    c->vtpm_rsp_have += (size_t)n;
    if (c->vtpm_rsp_have < 6 || c->vtpm_rsp_have < vtpm_be32(c->vtpm_rsp + 2))
        return;
    uint32_t created = 0, flushed = 0;
    vtpm_track(c->vtpm_cmd, c->vtpm_cmd_len, c->vtpm_rsp, c->vtpm_rsp_have, &created, &flushed);
    if (created)
        vtpm_handles_add(&c->vtpm_handles, created);
    if (flushed)
        vtpm_handles_remove(&c->vtpm_handles, flushed);
    relay_end(c);
    Trustme__Attest__AttestResponse resp = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    Trustme__Attest__VtpmRelayAnswer ans = TRUSTME__ATTEST__VTPM_RELAY_ANSWER__INIT;
    resp.has_version = resp.has_id = true;
    resp.version = TM_PROTOCOL_VERSION;
    resp.id = c->vtpm_id;
    ans.has_response = true;
    ans.response.data = c->vtpm_rsp;
    ans.response.len = c->vtpm_rsp_have;
    resp.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_VTPM_RELAY;
    resp.vtpm_relay = &ans;
    if (pack_answer(c, &resp) < 0) {
        conn_close(c);
        return;
    }
    write_out(c);
    return;
fail:
    relay_end(c);
    if (pack_relay_error(c, c->vtpm_id, &err) < 0) {
        conn_close(c);
        return;
    }
    write_out(c);
}

static void on_conn(tm_source *src, uint32_t events, void *userdata)
{
    struct conn *c = userdata;
    int r;
    if (c->vtpm_src) {
        /* A relayed command is in flight: nothing is read until it is answered. */
        if (events & (EPOLLHUP | EPOLLERR))
            conn_close(c);
        return;
    }
    if (tm_buf_pending(&c->out) == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        r = tm_frame_read(&c->rd, c->fd);
        if (r == 0)
            return;
        if (r < 0) {
            /* EOF, a truncated or oversized frame (the stream cannot be resynchronised), or a
             * socket error: this client is done. */
            if (r != -EPIPE)
                log_debug("attestation client dropped: %s", strerror(-r));
            conn_close(c);
            return;
        }
        uint32_t len;
        _cleanup_free_ uint8_t *payload = tm_frame_take(&c->rd, &len);
        c->waiting_since = 0;
        r = answer(c, payload, len);
        tpmd_check_tpm(c->srv->d);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 1) {
            /* The vTPM answers later (on_vtpm); the timer bounds it as it bounds a request. */
            if (tm_source_modify(c->src, 0) < 0 || arm_timer(c) < 0)
                conn_close(c);
            return;
        }
    }
    /* One request at a time: nothing more is read until the answer is written. */
    write_out(c);
}

/* A new client (tm_acceptor): admitted by address, within the limits. */
static void on_client(int fd, void *userdata)
{
    struct attest_server *s = userdata;
    struct sockaddr_storage peer = {0};
    socklen_t peer_len = sizeof(peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) < 0) {
        close(fd);
        return;
    }
    /* A new client is worth more than one that has waited longest without asking anything:
     * idle connections cannot lock verifiers out. A peer at its own limit makes room among
     * its own connections first, so one address cannot evict everybody else's. */
    unsigned from_peer;
    struct conn *victim = longest_waiting(s, &peer, &from_peer);
    if (from_peer < ATTEST_MAX_PER_PEER)
        victim = s->nconns >= ATTEST_MAX_CONNS ? busiest_peers_idle(s) : NULL;
    if (victim) {
        log_debug("attestation client evicted: it waited longest without a request");
        conn_close(victim);
    }
    if (s->nconns >= ATTEST_MAX_CONNS || (from_peer >= ATTEST_MAX_PER_PEER && !victim)) {
        log_debug("attestation client refused: no idle connection to make room");
        close(fd);
        return;
    }
    struct conn *c = tm_accepted_alloc(fd, sizeof(*c));
    if (!c)
        return;
    *c = (struct conn){.srv = s,
                       .fd = fd,
                       .peer = peer,
                       .waiting_since = ++s->clock,
                       .rd = {.max = ATTEST_REQUEST_MAX},
                       .vtpm_fd = -1,
                       .next = s->conns};
    c->src = tm_loop_io(s->d->loop, fd, EPOLLIN, on_conn, c);
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (!c->src || arm_timer(c) < 0)
        conn_close(c);
}

static void format_bound(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
            snprintf(out, size, "[%s]:%u", host, port);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(out, size, "%s:%u", host, port);
}

int attest_server_start(struct tpmd *d, const char *address, tm_err *err)
{
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    int r = tm_split_hostport(address, 0, host, port, err);
    if (r < 0)
        return tm_err_prefix(err, "attestation address");
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return tm_err_set(err, EINVAL, "attestation address %s: %s", address, gai_strerror(gai));
    _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* A restarted tpmd must get its port back while old connections sit in TIME_WAIT. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, ATTEST_MAX_CONNS) < 0) {
        r = tm_err_sys(err, "cannot listen on %s", address);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    struct attest_server *s = calloc(1, sizeof(*s));
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    s->d = d;
    format_bound(fd, d->attest_address, sizeof(d->attest_address));
    if ((r = tm_acceptor_start(&s->acc, d->loop, steal_fd(fd), ACCEPT_PAUSE_MS, "attestation", on_client, s, err)) <
        0) {
        free(s);
        return r;
    }
    d->attest = s;
    log_info("attestation endpoint listening on %s", d->attest_address);
    return 0;
}

void attest_server_stop(struct attest_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    /* At tpmd's end nothing waits for a vTPM: what they left stays in their vTPMs. */
    vtpm_flush_stop_all();
    tm_acceptor_stop(&s->acc);
    free(s);
}
