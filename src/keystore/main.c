/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-keystore: one container's keystore (docs/KEYSTORE.md). trustmed starts one per
 * container with `keystore: true`, already confined (its own user, pid, mount, network, IPC and
 * UTS namespaces on a read-only root holding only this container's key directory at /state; no
 * capabilities, no_new_privs). fd 3 is the link to trustmed, which sends the container's
 * keystore key and identity once (KsInit) and whose EOF ends the service; fd 4 is the listening
 * socket that is /run/trustme/keystore.sock inside the container.
 *
 * Clients speak framed protobuf (the control protocol's framing, frame.h): KsRequest in,
 * KsResponse out, one at a time per connection. The loop never blocks on a client: a client that
 * does not read its answers is not read from until it does, and at most CONN_MAX clients are
 * served at once (a container flooding its own keystore reaches no other container's). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "acceptor.h"
#include "attest.h"
#include "blob_index.h"
#include "buf.h"
#include "cleanup.h"
#include "crypto.h"
#include "event.h"
#include "frame.h"
#include "keyattest.h"
#include "keys.h"
#include "tpm_keys.h"
#include "log.h"
#include "packet.h"
#include "secmem.h"
#include "service_args.h"
#include "storage.h"
#include "store.h"
#include "version.h"

#define CONN_MAX 16
/* Secure-storage commits carry whole objects (at most 256 KiB each). */
#define REQUEST_MAX (SSTORE_FRAME_MAX)
#define SSTORE_FRAME_MAX (320u * 1024)
#define OUT_MAX (256u * 1024) /* answers waiting for a slow reader: then it is not read from */
#define SECURE_HEAP (1u << 20)
#define IN_BUF 4096 /* a sign request is about 80 bytes: a burst of them arrives in one read */

struct conn {
    struct server *srv;
    int fd;
    tm_source *src;
    tm_frame_reader rd;
    tm_buf out;
    uint32_t events; /* what epoll watches for it now */
    /* Bytes read but not yet fed to rd (a read takes what the socket holds, frames and parts of
     * frames alike); they may hold passphrases or key material: wiped once fed and at close. */
    size_t in_start, in_len;
    uint8_t in[IN_BUF];
    struct conn *next;
};

struct server {
    tm_loop *loop;
    struct tm_acceptor acceptor;
    tm_source *link_src;
    struct conn *conns;
    unsigned nconns;
    struct ks *ks;
    struct ks_storage *storage;
    struct ks_attest *attest;
};

static void conn_close(struct conn *c)
{
    struct server *s = c->srv;
    for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    s->nconns--;
    ks_abort_owned(s->ks, c);
    tm_source_free(c->src);
    close(c->fd);
    tm_frame_reader_reset(&c->rd);
    explicit_bzero(c->in, sizeof(c->in));
    if (c->out.data)
        explicit_bzero(c->out.data, c->out.cap); /* answers may have held plaintext */
    tm_buf_free(&c->out);
    free(c);
}

static void update_events(struct conn *c)
{
    uint32_t ev = 0;
    if (tm_buf_pending(&c->out) < OUT_MAX)
        ev |= EPOLLIN;
    /* Requests already read but left for later (the per-wakeup bound) get no EPOLLIN: a
     * writable socket's EPOLLOUT brings this connection back at the next turn of the loop. */
    if (tm_buf_pending(&c->out) || c->in_len)
        ev |= EPOLLOUT;
    /* One epoll_ctl less per request when nothing changed (the common case). */
    if (ev != c->events && tm_source_modify(c->src, ev) == 0)
        c->events = ev;
}

static void answer(struct conn *c, Trustme__Keystore__KsResponse *resp)
{
    size_t len = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *p = tm_frame_reserve(&c->out, len);
    if (!p)
        return;
    protobuf_c_message_pack(&resp->base, p);
}

static void answer_error(struct conn *c, uint64_t id, int code, const char *msg)
{
    Trustme__Keystore__KsResponse resp = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    resp.has_id = true;
    resp.id = id;
    resp.has_error = true;
    resp.error = code;
    resp.message = (char *)msg;
    answer(c, &resp);
}

/* Unpacked requests may hold key material to import, passphrases and plaintext: every allocation
 * is wiped when freed. */
static void *wiping_alloc(void *ud, size_t size)
{
    size_t *p = malloc(size + 16);
    if (!p)
        return NULL;
    *p = size;
    return (uint8_t *)p + 16;
}

static void wiping_free(void *ud, void *ptr)
{
    if (!ptr)
        return;
    uint8_t *p = (uint8_t *)ptr - 16;
    explicit_bzero(ptr, *(size_t *)p);
    free(p);
}

static ProtobufCAllocator wiping = {.alloc = wiping_alloc, .free = wiping_free};

/* The vTPM's evidence for a TPM-held key (docs/KEYSTORE.md "Key attestation"): its TPM2_Certify
 * by the vTPM owner's attestation key over SHA-256 of the challenge, packed as KsTpmCertify into
 * *ret (malloc'd). Left empty when the key is not TPM-held or needs a passphrase, or the vTPM has
 * no such key: the attestation then says "tpm" as the keystore's word only, and a verifier that
 * pins the vTPM's key refuses it. */
static void tpm_certify(struct server *s, const char *alias, const uint8_t *challenge, size_t challenge_len,
                        ProtobufCBinaryData *ret)
{
    uint8_t qual[32];
    tm_sha256(challenge, challenge_len, qual);
    tm_buf pub = {0}, att = {0}, sig = {0};
    tm_err err = {0};
    int r = ks_certify_tpm_key(s->ks, alias, TM_VTPM_CERTIFIER_HANDLE, qual, &pub, &att, &sig, &err);
    if (r < 0)
        log_info("key %s: attested without a TPM2_Certify: %s", alias, err.msg);
    if (r == 0) {
        Trustme__Keystore__KsTpmCertify c = TRUSTME__KEYSTORE__KS_TPM_CERTIFY__INIT;
        c.has_key_public = c.has_attest = c.has_signature = c.has_signer_handle = true;
        c.key_public = (ProtobufCBinaryData){pub.len, pub.data};
        c.attest = (ProtobufCBinaryData){att.len, att.data};
        c.signature = (ProtobufCBinaryData){sig.len, sig.data};
        c.signer_handle = TM_VTPM_CERTIFIER_HANDLE;
        size_t n = trustme__keystore__ks_tpm_certify__get_packed_size(&c);
        if ((ret->data = malloc(n)))
            ret->len = trustme__keystore__ks_tpm_certify__pack(&c, ret->data);
    }
    tm_buf_free(&pub);
    tm_buf_free(&att);
    tm_buf_free(&sig);
}

/* Key attestation: the key's public key and characteristics through the keys' own requests
 * (so the same checks apply: a secret key has no public part), then its certificate chain. */
static void handle_attest(struct conn *c, const Trustme__Keystore__KsRequest *req)
{
    struct server *s = c->srv;
    const Trustme__Keystore__KsAttestKey *ak = req->attest_key;
    Trustme__Keystore__KsKeyRef ref = TRUSTME__KEYSTORE__KS_KEY_REF__INIT;
    ref.alias = ak->alias;
    Trustme__Keystore__KsRequest sub = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    sub.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_EXPORT_PUBLIC_KEY;
    sub.export_public_key = &ref;
    Trustme__Keystore__KsResponse r1 = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    tm_err err = {0};
    int code = ks_handle(s->ks, &sub, &r1, &err);
    if (code) {
        answer_error(c, req->id, code, err.msg);
        ks_reset_answer(s->ks);
        return;
    }
    _cleanup_free_ uint8_t *spki = malloc(r1.public_key->spki_der.len);
    size_t spki_len = r1.public_key->spki_der.len;
    if (spki)
        memcpy(spki, r1.public_key->spki_der.data, spki_len);
    ks_reset_answer(s->ks);
    sub.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_GET_CHARACTERISTICS;
    sub.get_characteristics = &ref;
    Trustme__Keystore__KsResponse r2 = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    Trustme__Keystore__KsCertChain chain = TRUSTME__KEYSTORE__KS_CERT_CHAIN__INIT;
    code = !spki ? (tm_err_set(&err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL, "out of memory"),
                    TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL)
                 : ks_handle(s->ks, &sub, &r2, &err);
    _cleanup_free_ uint8_t *certify_data = NULL;
    ProtobufCBinaryData certify = {0};
    if (!code && r2.key->security_level == TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM &&
        (!ak->has_challenge || ak->challenge.len <= TM_KEY_CHALLENGE_MAX)) {
        tpm_certify(s, ak->alias, ak->challenge.data, ak->has_challenge ? ak->challenge.len : 0, &certify);
        certify_data = certify.data;
    }
    if (!code && ks_attest_key(s->attest, spki, spki_len, r2.key, ak->challenge.data,
                               ak->has_challenge ? ak->challenge.len : 0, &certify, &chain, &err) < 0)
        code = err.code;
    ks_reset_answer(s->ks);
    if (code) {
        answer_error(c, req->id, code, err.msg);
        return;
    }
    Trustme__Keystore__KsResponse resp = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    resp.has_id = true;
    resp.id = req->id;
    resp.has_error = true;
    resp.error = TRUSTME__KEYSTORE__KS_ERROR__KS_OK;
    resp.body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_ATTESTATION;
    resp.attestation = &chain;
    answer(c, &resp);
    ks_attest_chain_free(&chain);
}

/* Field 360: the container's own secure store (never one named by the request). */
static void handle_storage(struct conn *c, const Trustme__Keystore__KsRequest *req)
{
    ProtobufCBinaryData out = {0};
    int r = ks_storage_handle(c->srv->storage, &req->sstore, &wiping, &out);
    if (r < 0) {
        answer_error(c, req->id,
                     r == -EBADMSG ? TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_MALFORMED_MESSAGE
                                   : TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL,
                     r == -EBADMSG ? "malformed secure-storage request" : "out of memory");
        return;
    }
    Trustme__Keystore__KsResponse resp = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    resp.has_id = true;
    resp.id = req->id;
    resp.has_error = true;
    resp.error = TRUSTME__KEYSTORE__KS_ERROR__KS_OK;
    resp.body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_SSTORE;
    resp.sstore = out;
    answer(c, &resp);
    explicit_bzero(out.data, out.len); /* it may hold an object's plaintext */
    free(out.data);
}

static void handle_frame(struct conn *c, uint8_t *data, uint32_t len)
{
    struct server *s = c->srv;
    Trustme__Keystore__KsRequest *req = trustme__keystore__ks_request__unpack(&wiping, len, data);
    explicit_bzero(data, len); /* it may hold key material or a passphrase */
    free(data);
    if (!req) {
        answer_error(c, 0, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_MALFORMED_MESSAGE, "malformed request");
        return;
    }
    Trustme__Keystore__KsResponse resp = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    resp.has_id = true;
    resp.id = req->id;
    tm_err err = {0};
    ks_set_owner(s->ks, c);
    if (req->version == 1 && req->body_case == TRUSTME__KEYSTORE__KS_REQUEST__BODY_ATTEST_KEY) {
        handle_attest(c, req);
        trustme__keystore__ks_request__free_unpacked(req, &wiping);
        return;
    }
    if (req->version == 1 && req->body_case == TRUSTME__KEYSTORE__KS_REQUEST__BODY_SSTORE) {
        handle_storage(c, req);
        trustme__keystore__ks_request__free_unpacked(req, &wiping);
        return;
    }
    int code = req->version != 1 ? (tm_err_set(&err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_MALFORMED_MESSAGE,
                                               "protocol version %u, expected 1", req->version),
                                    TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_MALFORMED_MESSAGE)
                                 : ks_handle(s->ks, req, &resp, &err);
    if (code) {
        answer_error(c, req->id, code, err.msg);
    } else {
        resp.has_error = true;
        resp.error = TRUSTME__KEYSTORE__KS_ERROR__KS_OK;
        answer(c, &resp);
    }
    ks_reset_answer(s->ks);
    trustme__keystore__ks_request__free_unpacked(req, &wiping);
}

/* The next complete request: 1 with it in *ret_data, 0 when the socket has nothing more now, or
 * a negative errno (-EMSGSIZE: too large; else the connection is gone). One read takes what the
 * socket holds, so a client that sends one request and waits costs one read per request; a read
 * that did not fill the buffer drained the socket, and *drained says so, which saves the read
 * that would only say EAGAIN. */
static int next_request(struct conn *c, bool *drained, uint8_t **ret_data, uint32_t *ret_len)
{
    for (;;) {
        while (c->in_len) {
            size_t used = 0;
            int r = tm_frame_feed(&c->rd, c->in + c->in_start, c->in_len, &used);
            explicit_bzero(c->in + c->in_start, used);
            c->in_start += used;
            c->in_len -= used;
            if (r < 0)
                return r;
            if (r == 1) {
                *ret_data = tm_frame_take(&c->rd, ret_len);
                return 1;
            }
        }
        c->in_start = 0;
        if (*drained)
            return 0;
        ssize_t n = read(c->fd, c->in, sizeof(c->in));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return -errno;
        if (n == 0)
            return tm_frame_partial(&c->rd) ? -EPROTO : -EPIPE;
        c->in_len = (size_t)n;
        *drained = (size_t)n < sizeof(c->in);
    }
}

static void on_conn(tm_source *src, uint32_t events, void *userdata)
{
    struct conn *c = userdata;
    if (events & EPOLLOUT || tm_buf_pending(&c->out)) {
        int r = tm_buf_flush(&c->out, c->fd);
        if (r < 0) {
            conn_close(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) || c->in_len) {
        /* A bounded number of requests per wakeup, so that one client cannot starve the others. */
        bool drained = !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)); /* only what is buffered */
        for (int i = 0; i < 64 && tm_buf_pending(&c->out) < OUT_MAX; i++) {
            uint8_t *data = NULL;
            uint32_t len = 0;
            int r = next_request(c, &drained, &data, &len);
            if (r == 0)
                break;
            if (r == -EMSGSIZE) {
                answer_error(c, 0, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_MALFORMED_MESSAGE, "request too large");
                tm_buf_flush(&c->out, c->fd);
                conn_close(c); /* the stream cannot be resynchronised */
                return;
            }
            if (r < 0) {
                conn_close(c);
                return;
            }
            handle_frame(c, data, len);
        }
        if (tm_buf_flush(&c->out, c->fd) < 0) {
            conn_close(c);
            return;
        }
    }
    update_events(c);
}

static void on_accept(int fd, void *userdata)
{
    struct server *s = userdata;
    if (s->nconns >= CONN_MAX) {
        log_warn("%u clients already: one refused", s->nconns);
        close(fd);
        return;
    }
    struct conn *c = tm_accepted_alloc(fd, sizeof(*c));
    if (!c)
        return;
    c->srv = s;
    c->fd = fd;
    c->rd.max = REQUEST_MAX;
    c->events = EPOLLIN;
    c->src = tm_loop_io(s->loop, fd, c->events, on_conn, c);
    if (!c->src) {
        close(fd);
        free(c);
        return;
    }
    c->next = s->conns;
    s->conns = c;
    s->nconns++;
}

/* Between secure-storage calls (storage.c, which waits for its own answers) nothing is expected
 * from trustmed but EOF; a late answer to a call that timed out is read and dropped here. */
static void on_link(tm_source *src, uint32_t events, void *userdata)
{
    struct server *s = userdata;
    char b;
    ssize_t n = recv(3, &b, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        log_info("trustmed closed the link: exiting");
        tm_loop_quit(s->loop, 0);
    }
}

/* The first packet on fd 3: the keystore key and who we serve. */
static int receive_init(struct secret **ret_key, uint8_t seed[32], char *uuid, size_t uuid_size, tm_err *err)
{
    struct tm_packet pkt;
    int r = tm_packet_recv(3, 4096, &pkt);
    if (r <= 0)
        return tm_err_set(err, EPROTO, "no keystore key from trustmed");
    const Trustme__Keystore__KsInit *init =
        (const Trustme__Keystore__KsInit *)tm_packet_unpack(&trustme__keystore__ks_init__descriptor, &pkt);
    if (!init || !init->has_keystore_key || init->keystore_key.len != KS_KEY_LEN || !init->uuid ||
        strlen(init->uuid) >= uuid_size || !init->has_storage_seed || init->storage_seed.len != 32) {
        tm_packet_free(&pkt);
        return tm_err_set(err, EPROTO, "malformed keystore key from trustmed");
    }
    r = secret_new(KS_KEY_LEN, ret_key, err);
    if (r == 0)
        memcpy((*ret_key)->data, init->keystore_key.data, KS_KEY_LEN);
    memcpy(seed, init->storage_seed.data, 32);
    snprintf(uuid, uuid_size, "%s", init->uuid);
    log_info("serving container %s (%s)", init->name ? init->name : "?", uuid);
    tm_packet_free(&pkt);
    return r;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-keystore --state-dir DIR [--vtpm SOCKET] [--log-level LEVEL]\n"
                 "\n"
                 "One container's keystore (docs/KEYSTORE.md). Started by trustmed, which passes its\n"
                 "link as fd 3 and the listening socket as fd 4; not meant to be run by hand.\n"
                 "--vtpm names the container's vTPM command socket, which holds its TPM-held keys.\n");
}

enum { OPT_VTPM = TM_SERVICE_OPT_OWN };

static int on_option(int opt, const char *arg, void *userdata)
{
    if (opt != OPT_VTPM || !arg || arg[0] != '/')
        return -EINVAL;
    *(const char **)userdata = arg;
    return 0;
}

int main(int argc, char **argv)
{
    struct tm_service_args args;
    bool done;
    static const struct option own[] = {{"vtpm", required_argument, NULL, OPT_VTPM}, {0}};
    const char *vtpm = NULL;
    int rc = tm_service_args(argc, argv, "trustme-keystore", usage, own, on_option, &vtpm, &args, &done);
    if (rc || done)
        return rc;
    const char *state_dir = args.state_dir;
    tm_service_init("trustme-keystore", args.level);
    /* EC and RSA private keys parsed by OpenSSL live in its secure heap: locked, not dumped. */
    if (CRYPTO_secure_malloc_init(SECURE_HEAP, 32) != 1) {
        log_error("cannot set up OpenSSL's secure heap (locked memory)");
        return 1;
    }
    if (fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0) {
        log_error("no link on fd 3 or no listening socket on fd 4 (the keystore is started by trustmed)");
        return 2;
    }
    tm_err err = {0};
    struct secret *key = NULL;
    struct ks_store st = {.dir = state_dir};
    struct secret *seed = NULL;
    if (secret_new(32, &seed, &err) < 0 || receive_init(&key, seed->data, st.uuid, sizeof(st.uuid), &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    st.key = key;
    struct server s = {.loop = tm_loop_new()};
    char sstore_dir[PATH_MAX];
    snprintf(sstore_dir, sizeof(sstore_dir), "%s/sstore", state_dir);
    if (ks_storage_new(seed->data, st.uuid, sstore_dir, 3, &s.storage, &err) < 0 ||
        ks_attest_new(3, &s.attest, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    secret_free(seed);
    char index_dir[PATH_MAX];
    snprintf(index_dir, sizeof(index_dir), "%s/index", state_dir);
    if (ks_index_new(key, st.uuid, index_dir, ks_storage_anchor(s.storage), ks_storage_on_key_refused, s.storage,
                     &st.index, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    if (!(st.tpm = ks_tpm_new(vtpm))) {
        log_error("out of memory");
        return 1;
    }
    s.ks = s.loop ? ks_new(&st) : NULL;
    fcntl(4, F_SETFL, O_NONBLOCK);
    if (!s.ks || tm_acceptor_start(&s.acceptor, s.loop, 4, 1000, "keystore", on_accept, &s, &err) < 0 ||
        !(s.link_src = tm_loop_io(s.loop, 3, EPOLLIN, on_link, &s))) {
        log_error("cannot serve: %s", err.msg[0] ? err.msg : "out of memory");
        return 1;
    }
    log_info("trustme-keystore %s ready, pid %d", TRUSTME_VERSION, getpid());
    int r = tm_loop_run(s.loop);
    while (s.conns)
        conn_close(s.conns);
    tm_acceptor_stop(&s.acceptor);
    tm_source_free(s.link_src);
    ks_free(s.ks);
    ks_index_free(st.index);
    ks_tpm_free(st.tpm);
    ks_storage_free(s.storage);
    ks_attest_free(s.attest);
    secret_free(key);
    tm_loop_free(s.loop);
    return r;
}
