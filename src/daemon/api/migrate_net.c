/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "migrate_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "acceptor.h"
#include "buf.h"
#include "cleanup.h"
#include "commands_migrate.h"
#include "conn_table.h"
#include "deadline.h"
#include "fileio.h"
#include "frame.h"
#include "hex.h"
#include "log.h"
#include "migrate_announce.h"
#include "proto.h"
#include "tcp_listen.h"

#define ACCEPT_PAUSE_MS 200
#define IN_DIR "migrate-in"
#define PREFIX_AUTH "source authentication: "

struct mconn {
    /* In srv->table (conn_table.h): its peer, and since when it waits for a request or for its
     * announcement to be checked (evictable), or 0 (busy); closed (fd -1), the record stays while
     * trustmed still works on its request. */
    struct tm_conn link;
    struct mnet *srv;
    uint64_t id; /* what the migrate code answers to (migrate_net_reply) */
    int fd; /* -1 once closed while trustmed still works on its request */
    char actor[48]; /* "tcp ADDRESS" for the audit log */
    tm_source *src, *timer;
    tm_frame_reader rd;
    tm_buf out;
    bool in_flight; /* an offer, announcement or import is being worked on: read nothing until answered */
    bool checking; /* the in-flight work is its announcement's check (MIGRATE_NET_MAX_CHECKS) */
    /* The connection's challenge (one per connection), and what its authenticated announcement
     * names: the bundle that must arrive. */
    uint8_t challenge[MIGRATE_CHALLENGE_LEN];
    bool challenged, challenge_spent;
    struct migrate_announced announced;
    /* A bundle being received: <dir>/<name>.part, then <name>.bundle */
    int part_fd;
    bool fallocated; /* the whole bundle's space is allocated (posix_fallocate) */
    char part[PATH_MAX], path[PATH_MAX];
    uint64_t size, got;
};

struct mnet {
    struct daemon *d;
    struct tm_acceptor acc;
    struct tm_conn_table table;
    uint64_t next_id;
    unsigned offers; /* offers that may be made now (MIGRATE_NET_OFFER_BURST at most) */
    int64_t offers_refilled; /* monotonic ms of the last refill */
    char dir[PATH_MAX];
    char address[80];
};

static struct mnet *server;

static struct mconn *mconn_of(struct tm_conn *link)
{
    return tm_conn_record(link, struct mconn, link);
}

static void drop_part(struct mconn *c)
{
    if (c->part_fd >= 0) {
        close(c->part_fd);
        c->part_fd = -1;
        unlink(c->part);
    }
}

/* Close the connection; with a request in flight the record stays (fd -1) for its answer, which
 * removes the received bundle and frees it. */
static void conn_close(struct mconn *c)
{
    struct mnet *s = c->srv;
    drop_part(c);
    tm_source_free(c->src);
    tm_source_free(c->timer);
    c->src = c->timer = NULL;
    tm_frame_reader_reset(&c->rd);
    tm_buf_free(&c->out);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        tm_conn_closed(&s->table, &c->link);
    }
    if (c->in_flight)
        return;
    if (c->path[0])
        unlink(c->path);
    tm_conn_remove(&s->table, &c->link);
    free(c);
}

/* The announcements being checked of peer (NULL: everyone's), also those of closed connections
 * whose answer is awaited (MIGRATE_NET_CHECKS_PER_PEER, MIGRATE_NET_MAX_CHECKS). */
static unsigned checks_held(struct mnet *s, const struct sockaddr_storage *peer)
{
    unsigned n = 0;
    for (struct tm_conn *l = s->table.head; l; l = l->next)
        if ((!peer || tm_same_peer(&l->peer, peer)) && mconn_of(l)->checking)
            n++;
    return n;
}

static void on_timeout(tm_source *src, void *userdata)
{
    struct mconn *c = userdata;
    (void)src;
    c->timer = NULL; /* freed already */
    log_debug("migration client %s timed out", c->actor);
    conn_close(c);
}

static int arm_timer(struct mconn *c)
{
    tm_source_free(c->timer);
    c->timer = tm_loop_timer(c->srv->d->loop, MIGRATE_NET_TIMEOUT_MS, on_timeout, c);
    return c->timer ? 0 : -ENOMEM;
}

static int queue(struct mconn *c, Trustme__MigrateNetResponse *resp)
{
    size_t size = trustme__migrate_net_response__get_packed_size(resp);
    uint8_t *p = tm_frame_reserve(&c->out, size);
    if (!p)
        return -ENOMEM;
    trustme__migrate_net_response__pack(resp, p);
    return 0;
}

static int queue_error(struct mconn *c, int code, const char *msg)
{
    Trustme__MigrateNetResponse resp = TRUSTME__MIGRATE_NET_RESPONSE__INIT;
    resp.has_code = true;
    resp.code = code;
    resp.error = (char *)msg;
    return queue(c, &resp);
}

/* Write what is queued; then wait for the next request (or chunk). */
static void write_out(struct mconn *c)
{
    int r = tm_conn_flush(&c->out, c->fd, c->src);
    if (r == 0) {
        /* Receiving a bundle is busy, not idle: it is bounded by the chunk timeout instead. */
        if (c->part_fd >= 0)
            tm_conn_busy(&c->link);
        else
            tm_conn_waiting(&c->srv->table, &c->link);
        r = arm_timer(c);
    }
    if (r < 0)
        conn_close(c);
}

/* Refuse the request, answer why and close once it is written: the stream of a connection that
 * sent something wrong is not trusted to be in step. */
static void refuse(struct mconn *c, int code, const char *msg)
{
    log_debug("migration client %s refused: %s", c->actor, msg);
    drop_part(c);
    if (queue_error(c, code, msg) < 0) {
        conn_close(c);
        return;
    }
    (void)tm_buf_flush(&c->out, c->fd);
    conn_close(c);
}

/* The uploads in progress (MIGRATE_NET_MAX_UPLOADS), whether signer_id (NULL: none) holds one, and
 * the bytes the bundles held (being received, or received and being imported) still need beyond
 * what statvfs shows taken: each import's copy, and the rest of a bundle whose space could not be
 * allocated up front. */
static unsigned uploads(struct mnet *s, const uint8_t *signer_id, bool *ret_signer_busy, uint64_t *ret_held)
{
    unsigned n = 0;
    uint64_t held = 0;
    bool busy = false;
    for (struct tm_conn *l = s->table.head; l; l = l->next) {
        struct mconn *c = mconn_of(l);
        if (c->path[0])
            held += c->size;
        if (c->part_fd < 0)
            continue;
        n++;
        if (!c->fallocated)
            held += c->size - c->got;
        if (signer_id && memcmp(c->announced.signer_id, signer_id, sizeof(c->announced.signer_id)) == 0)
            busy = true;
    }
    *ret_signer_busy = busy;
    *ret_held = held;
    return n;
}

/* Whether a bundle of size could be taken now: checked before its announcement is authenticated
 * (signer_id NULL: nothing of that is spent on what would be refused anyway) and again, for its
 * signer, when it is taken. */
static int bundle_fits(struct mnet *s, uint64_t size, const uint8_t *signer_id, tm_err *err)
{
    if (size == 0)
        return tm_err_set(err, EINVAL, "an empty bundle");
    if (size > s->d->device.migrate_max_bundle)
        return tm_err_set(err, EFBIG,
                          "the bundle has %llu bytes, more than this device takes (%llu, "
                          "migrate.max_bundle_mb)",
                          (unsigned long long)size, (unsigned long long)s->d->device.migrate_max_bundle);
    bool signer_busy;
    uint64_t held;
    unsigned n = uploads(s, signer_id, &signer_busy, &held);
    if (signer_busy)
        return tm_err_set(err, EBUSY,
                          "another bundle is being received from this source (its AK certificate): one upload "
                          "per signer, try again later");
    if (n >= MIGRATE_NET_MAX_UPLOADS)
        return tm_err_set(err, EBUSY, "another bundle is being received (%u at once): try again later",
                          MIGRATE_NET_MAX_UPLOADS);
    struct statvfs vfs;
    if (statvfs(s->dir, &vfs) < 0)
        return tm_err_sys(err, "%s", s->dir);
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    /* The bundles already taken keep their share: a second upload cannot spend what the first's
     * import will need. */
    if (avail < MIGRATE_NET_SPARE_BYTES + held || size > (avail - MIGRATE_NET_SPARE_BYTES - held) / 2)
        return tm_err_set(err, ENOSPC,
                          "the bundle has %llu bytes: this device has %llu bytes free, %llu of them held for "
                          "the bundles being received or imported, and the import needs twice the bundle and "
                          "64 MiB",
                          (unsigned long long)size, (unsigned long long)avail, (unsigned long long)held);
    return 0;
}

/* Reserve the announced bundle's space and take an upload slot: only for an authenticated source
 * (migrate_announce.h), one per signer (c->announced.signer_id). */
static int bundle_begin(struct mconn *c, uint64_t size, tm_err *err)
{
    struct mnet *s = c->srv;
    int r = bundle_fits(s, size, c->announced.signer_id, err);
    if (r < 0)
        return r;
    uint8_t rnd[16];
    char name[33];
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
        return tm_err_sys(err, "getrandom");
    tm_hex(rnd, sizeof(rnd), name);
    snprintf(c->part, sizeof(c->part), "%s/%s.part", s->dir, name);
    snprintf(c->path, sizeof(c->path), "%s/%s.bundle", s->dir, name);
    int fd = open(c->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        c->path[0] = 0;
        return tm_err_sys(err, "cannot create %s", c->part);
    }
    /* Reserve the space now: a full disk refuses the bundle before it is sent, not at its end. */
    int fr = posix_fallocate(fd, 0, (off_t)size);
    if (fr != 0 && fr != EOPNOTSUPP && fr != EINVAL) {
        close(fd);
        unlink(c->part);
        c->path[0] = 0;
        return tm_err_set(err, fr, "cannot reserve %llu bytes for the bundle: %s", (unsigned long long)size,
                          strerror(fr));
    }
    c->part_fd = fd;
    c->fallocated = fr == 0;
    c->size = size;
    c->got = 0;
    return 0;
}

/* The bundle is whole: synced and renamed into place, then imported as `migrate import` would. */
static int bundle_end(struct mconn *c, tm_err *err)
{
    if (fsync(c->part_fd) < 0) {
        int r = tm_err_sys(err, "cannot sync %s", c->part);
        drop_part(c);
        return r;
    }
    close(c->part_fd);
    c->part_fd = -1;
    if (rename(c->part, c->path) < 0) {
        int r = tm_err_sys(err, "cannot rename %s", c->part);
        unlink(c->part);
        c->path[0] = 0;
        return r;
    }
    fsync_parent(c->path);
    log_info("migration client %s: bundle of %llu bytes received", c->actor, (unsigned long long)c->size);
    c->in_flight = true;
    migrate_net_import(c->srv->d, c->id, c->actor, c->path, &c->announced);
    return 0;
}

static int take_chunk(struct mconn *c, const ProtobufCBinaryData *chunk, tm_err *err)
{
    if (chunk->len > c->size - c->got)
        return tm_err_set(err, EMSGSIZE, "the chunks exceed the bundle's announced size");
    if (chunk->len != MIGRATE_NET_CHUNK && c->got + chunk->len != c->size)
        return tm_err_set(err, EPROTO, "a chunk other than the last must have %u bytes", MIGRATE_NET_CHUNK);
    for (size_t done = 0; done < chunk->len;) {
        ssize_t n = write(c->part_fd, chunk->data + done, chunk->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tm_err_sys(err, "cannot write %s", c->part);
        done += (size_t)n;
    }
    c->got += chunk->len;
    return c->got == c->size ? bundle_end(c, err) : 0;
}

static struct mconn *conn_by_id(uint64_t id)
{
    for (struct tm_conn *l = server ? server->table.head : NULL; l; l = l->next)
        if (mconn_of(l)->id == id)
            return mconn_of(l);
    return NULL;
}

/* The announcement was checked (migrate_announce.h). An open offer: the space is reserved and the
 * slot taken, the chunks may come. A used one: no upload, trustmed answers at once (the receipt
 * again to its source, or the signed refusal). */
static void announced(struct daemon *d, const struct migrate_announced *a, uint8_t state, const char *signer,
                      const tm_err *err, void *userdata)
{
    struct mconn *c = conn_by_id((uint64_t)(uintptr_t)userdata);
    if (!c)
        return;
    c->in_flight = c->checking = false;
    if (c->fd < 0) {
        conn_close(c); /* evicted or gone while it was checked: the answer is dropped */
        return;
    }
    tm_conn_busy(&c->link);
    tm_err e = {0};
    if (err) {
        refuse(c, err->code ? err->code : EACCES, err->msg);
        return;
    }
    c->announced = *a;
    if (state != MIGRATE_OFFER_OPEN) {
        log_info("migration client %s: %s announced bundle %s of offer %s, which was used: no upload", c->actor, signer,
                 a->bundle_id, a->offer_id);
        c->in_flight = true;
        migrate_net_used(d, c->id, c->actor, a, state == MIGRATE_OFFER_INSTALLED);
        return;
    }
    if (bundle_begin(c, a->size, &e) < 0) {
        refuse(c, e.code, e.msg);
        return;
    }
    log_info("migration client %s: %s announced bundle %s (%llu bytes) of offer %s", c->actor, signer, a->bundle_id,
             (unsigned long long)a->size, a->offer_id);
    Trustme__MigrateNetResponse resp = TRUSTME__MIGRATE_NET_RESPONSE__INIT;
    resp.has_ready = resp.ready = true;
    if (queue(c, &resp) < 0) {
        conn_close(c);
        return;
    }
    write_out(c);
}

/* One request frame. 0: answered or being worked on; <0: refused, err says why. */
static int handle_request(struct mconn *c, const Trustme__MigrateNetRequest *rq, tm_err *err)
{
    if (c->part_fd >= 0) {
        if (!rq->has_chunk)
            return tm_err_set(err, EPROTO, "the bundle's next chunk was expected");
        return take_chunk(c, &rq->chunk, err);
    }
    if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION)
        return tm_err_set(err, EPROTO, "unsupported protocol version");
    if (rq->has_nonce) {
        if (rq->nonce.len != 32)
            return tm_err_set(err, EINVAL, "the nonce must be 32 bytes");
        bool seen[24] = {false};
        if (rq->n_pcrs > 24)
            return tm_err_set(err, EINVAL, "at most 24 PCRs");
        for (size_t i = 0; i < rq->n_pcrs; i++) {
            if (rq->pcrs[i] > 23 || seen[rq->pcrs[i]])
                return tm_err_set(err, EINVAL, "PCR %u: not 0..23, or given twice", rq->pcrs[i]);
            seen[rq->pcrs[i]] = true;
        }
        int64_t now = tm_now_ms();
        struct mnet *s = c->srv;
        unsigned refill = (unsigned)((now - s->offers_refilled) / MIGRATE_NET_OFFER_REFILL_MS);
        if (refill) {
            s->offers = s->offers + refill > MIGRATE_NET_OFFER_BURST ? MIGRATE_NET_OFFER_BURST : s->offers + refill;
            s->offers_refilled += (int64_t)refill * MIGRATE_NET_OFFER_REFILL_MS;
        }
        if (!s->offers)
            return tm_err_set(err, EAGAIN, "too many offers were asked for: try again in %lld s",
                              (long long)(s->offers_refilled + MIGRATE_NET_OFFER_REFILL_MS - now) / 1000 + 1);
        s->offers--;
        c->in_flight = true;
        migrate_net_offer(c->srv->d, c->id, c->actor, rq->nonce.data, rq->pcrs, rq->n_pcrs);
        return 0;
    }
    if (rq->has_challenge && rq->challenge) {
        /* One per connection: an announcement answers exactly this one. */
        if (c->challenged)
            return tm_err_set(err, EPROTO, "one challenge per connection");
        if (getrandom(c->challenge, sizeof(c->challenge), 0) != sizeof(c->challenge))
            return tm_err_sys(err, "getrandom");
        c->challenged = true;
        Trustme__MigrateNetResponse resp = TRUSTME__MIGRATE_NET_RESPONSE__INIT;
        resp.has_challenge = true;
        resp.challenge = (ProtobufCBinaryData){.len = sizeof(c->challenge), .data = c->challenge};
        return queue(c, &resp);
    }
    if (rq->upload) {
        if (!c->challenged || c->challenge_spent)
            return tm_err_set(err, EPROTO,
                              "source authentication: ask for this connection's challenge first; an announcement "
                              "answers it once");
        c->challenge_spent = true;
        /* What would be refused anyway is refused before any signature is checked. */
        int r = bundle_fits(c->srv, rq->upload->has_size ? rq->upload->size : 0, NULL, err);
        if (r < 0)
            return r;
        if (checks_held(c->srv, &c->link.peer) >= MIGRATE_NET_CHECKS_PER_PEER ||
            checks_held(c->srv, NULL) >= MIGRATE_NET_MAX_CHECKS)
            return tm_err_set(err, EAGAIN,
                              PREFIX_AUTH "too many announcements (from this address, or in all) are being checked: "
                                          "try again");
        if ((r = migrate_announce_check(c->srv->d, rq->upload, c->challenge, announced, (void *)(uintptr_t)c->id,
                                        err)) < 0)
            return r;
        c->in_flight = c->checking = true;
        return 0;
    }
    if (rq->has_bundle_size)
        return tm_err_set(err, EPERM,
                          "source authentication: a bundle is taken only with its source's signed announcement "
                          "(challenge, then upload; trustme migrate send does it)");
    return tm_err_set(err, EINVAL, "a request needs a nonce (offer), a challenge or an upload (bundle)");
}

static int handle(struct mconn *c, const uint8_t *payload, size_t len, tm_err *err)
{
    Trustme__MigrateNetRequest *rq = trustme__migrate_net_request__unpack(NULL, len, payload);
    if (!rq)
        return tm_err_set(err, EBADMSG, "malformed request");
    int r = handle_request(c, rq, err);
    trustme__migrate_net_request__free_unpacked(rq, NULL);
    return r;
}

static void on_conn(tm_source *src, uint32_t events, void *userdata)
{
    struct mconn *c = userdata;
    (void)src;
    if (c->in_flight) {
        if (events & (EPOLLHUP | EPOLLERR))
            conn_close(c);
        return;
    }
    if (tm_buf_pending(&c->out) == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        int r = tm_frame_read(&c->rd, c->fd);
        if (r == 0)
            return;
        if (r == -EMSGSIZE) {
            refuse(c, EMSGSIZE, "the frame is larger than this endpoint takes");
            return;
        }
        if (r < 0) {
            /* EOF, a truncated frame or a socket error: a bundle half-sent goes with it. */
            if (r != -EPIPE)
                log_debug("migration client %s dropped: %s", c->actor, strerror(-r));
            conn_close(c);
            return;
        }
        uint32_t len;
        _cleanup_free_ uint8_t *payload = tm_frame_take(&c->rd, &len);
        tm_err err = {0};
        tm_conn_busy(&c->link);
        if (handle(c, payload, len, &err) < 0) {
            refuse(c, err.code, err.msg);
            return;
        }
        if (c->in_flight) {
            /* trustmed answers later (migrate_net_reply); until then nothing is read. A check of
             * an announcement (anyone can send one) stays evictable: it holds no slot then. */
            tm_source_free(c->timer);
            c->timer = NULL;
            if (c->checking)
                tm_conn_waiting(&c->srv->table, &c->link);
            if (tm_source_modify(c->src, 0) < 0)
                conn_close(c);
            return;
        }
    }
    write_out(c);
}

/* Room for a new client (conn_table.h): a connection whose announcement is being checked may go,
 * its record stays for the answer, which is then dropped. */
static void evict(struct tm_conn *victim)
{
    log_debug("migration client %s evicted: it waited longest (for a request or its check)", mconn_of(victim)->actor);
    conn_close(mconn_of(victim));
}

static void on_client(int fd, void *userdata)
{
    struct mnet *s = userdata;
    struct sockaddr_storage peer;
    if (tm_conn_admit(&s->table, fd, &peer) < 0)
        return; /* refused: fd closed */
    struct mconn *c = tm_accepted_alloc(fd, sizeof(*c));
    if (!c)
        return;
    *c = (struct mconn){.srv = s, .id = ++s->next_id, .fd = fd, .rd = {.max = MIGRATE_NET_REQUEST_MAX}, .part_fd = -1};
    char host[INET6_ADDRSTRLEN] = "?";
    if (peer.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, host, sizeof(host));
    snprintf(c->actor, sizeof(c->actor), "tcp %s", host);
    c->src = tm_loop_io(s->d->loop, fd, EPOLLIN, on_conn, c);
    tm_conn_add(&s->table, &c->link, &peer);
    if (!c->src || arm_timer(c) < 0)
        conn_close(c);
}

void migrate_net_reply(struct daemon *d, uint64_t net_id, const Trustme__MigrateMessage *m, int code, const char *msg)
{
    (void)d;
    struct mconn *c = conn_by_id(net_id);
    if (!c)
        return;
    c->in_flight = false;
    /* The bundle was imported or refused: the source keeps its own copy, this one goes. */
    if (c->path[0]) {
        unlink(c->path);
        c->path[0] = 0;
    }
    if (c->fd < 0) {
        conn_close(c);
        return;
    }
    Trustme__MigrateNetResponse resp = TRUSTME__MIGRATE_NET_RESPONSE__INIT;
    resp.message = (Trustme__MigrateMessage *)m;
    if (!m) {
        resp.has_code = true;
        resp.code = code;
        resp.error = (char *)(msg ? msg : "failed");
    }
    if (queue(c, &resp) < 0) {
        conn_close(c);
        return;
    }
    write_out(c);
}

/* Bundles a killed trustmed left half received, or received and not yet imported: the source
 * still has its own (it stays locked until an answer reaches it). */
static void clean_dir(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t n = strlen(e->d_name);
        if ((n > 5 && strcmp(e->d_name + n - 5, ".part") == 0) || (n > 7 && strcmp(e->d_name + n - 7, ".bundle") == 0))
            unlinkat(dirfd(dh), e->d_name, 0);
    }
    closedir(dh);
}

int migrate_net_start(struct daemon *d, tm_err *err)
{
    const char *address = d->device.migrate_address;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", d->data_dir, IN_DIR);
    clean_dir(dir);
    if (!address[0])
        return 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    /* port 1..: the source must know it */
    _cleanup_close_ int fd = tm_tcp_listen(address, 1, MIGRATE_NET_MAX_CONNS, "migrate.address", err);
    if (fd < 0)
        return fd;
    struct mnet *s = calloc(1, sizeof(*s));
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    s->d = d;
    s->table = (struct tm_conn_table){.max_conns = MIGRATE_NET_MAX_CONNS,
                                      .max_per_peer = MIGRATE_NET_MAX_PER_PEER,
                                      .what = "migration",
                                      .evict = evict};
    s->offers = MIGRATE_NET_OFFER_BURST;
    s->offers_refilled = tm_now_ms();
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    snprintf(s->address, sizeof(s->address), "%s", address);
    int r = tm_acceptor_start(&s->acc, d->loop, steal_fd(fd), ACCEPT_PAUSE_MS, "migration", on_client, s, err);
    if (r < 0) {
        free(s);
        return r;
    }
    server = s;
    log_info("migration endpoint listening on %s", address);
    return 0;
}

void migrate_net_stop(struct daemon *d)
{
    (void)d;
    struct mnet *s = server;
    if (!s)
        return;
    server = NULL;
    while (s->table.head) {
        struct mconn *c = mconn_of(s->table.head);
        c->in_flight = false; /* its answer, if it comes, finds no server */
        conn_close(c);
    }
    tm_acceptor_stop(&s->acc);
    free(s);
}
