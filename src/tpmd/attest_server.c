/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "attest_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "buf.h"
#include "cleanup.h"
#include "conn_table.h"
#include "frame.h"
#include "log.h"
#include "proto.h"
#include "quote.h"
#include "server.h"
#include "tcp_listen.h"
#include "uuid.h"
#include "vtpm_flush.h"
#include "vtpm_relay.h"

#define ACCEPT_PAUSE_MS 200

struct conn {
    struct tm_conn link; /* in srv->table (conn_table.h): its peer, since when it waits for a request */
    struct attest_server *srv;
    int fd;
    tm_source *src;
    tm_source *timer;
    tm_frame_reader rd;
    tm_buf out;
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
    struct tm_conn_table table;
};

static struct conn *conn_of(struct tm_conn *link)
{
    return tm_conn_record(link, struct conn, link);
}

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
    tm_conn_remove(&s->table, &c->link);
    free(c);
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
    int r = tm_conn_flush(&c->out, c->fd, c->src);
    if (r == 0) {
        tm_conn_waiting(&c->srv->table, &c->link);
        r = arm_timer(c);
    }
    if (r < 0)
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
        tm_conn_busy(&c->link);
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

/* A new client is worth more than one that has waited longest without asking anything: idle
 * connections cannot lock verifiers out (conn_table.h). */
static void evict(struct tm_conn *victim)
{
    log_debug("attestation client evicted: it waited longest without a request");
    conn_close(conn_of(victim));
}

/* A new client (tm_acceptor): admitted by address, within the limits. */
static void on_client(int fd, void *userdata)
{
    struct attest_server *s = userdata;
    struct sockaddr_storage peer;
    if (tm_conn_admit(&s->table, fd, &peer) < 0)
        return; /* refused: fd closed */
    struct conn *c = tm_accepted_alloc(fd, sizeof(*c));
    if (!c)
        return;
    *c = (struct conn){.srv = s, .fd = fd, .rd = {.max = ATTEST_REQUEST_MAX}, .vtpm_fd = -1};
    c->src = tm_loop_io(s->d->loop, fd, EPOLLIN, on_conn, c);
    tm_conn_add(&s->table, &c->link, &peer);
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
    /* port 0: any free one (trustme device info shows it) */
    _cleanup_close_ int fd = tm_tcp_listen(address, 0, ATTEST_MAX_CONNS, "attestation address", err);
    if (fd < 0)
        return fd;
    struct attest_server *s = calloc(1, sizeof(*s));
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    s->d = d;
    s->table = (struct tm_conn_table){
        .max_conns = ATTEST_MAX_CONNS, .max_per_peer = ATTEST_MAX_PER_PEER, .what = "attestation", .evict = evict};
    format_bound(fd, d->attest_address, sizeof(d->attest_address));
    int r = tm_acceptor_start(&s->acc, d->loop, steal_fd(fd), ACCEPT_PAUSE_MS, "attestation", on_client, s, err);
    if (r < 0) {
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
    while (s->table.head)
        conn_close(conn_of(s->table.head));
    /* At tpmd's end nothing waits for a vTPM: what they left stays in their vTPMs. */
    vtpm_flush_stop_all();
    tm_acceptor_stop(&s->acc);
    free(s);
}
