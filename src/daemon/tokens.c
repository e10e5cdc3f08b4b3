/* trustmed's side of the containers' tokens.
 *
 * Every token operation is a request to trustme-scd, which holds the tokens. This file builds the
 * requests, answers the client once scd has answered, keeps what scd says about each token for
 * list and state (asked again after every operation), stores and destroys the wrapped data key,
 * and writes the audit records.
 *
 * PINs only pass through: they are copied into the request packet (locked memory, packet.h) and
 * the client's copy is wiped by the caller. The raw data key comes back in locked memory and is
 * copied into a secret of its own, which the start wipes as soon as the kernel has the key
 * (fscrypt.c). Replies are matched to containers by UUID, so a container removed meanwhile is
 * simply not found. */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "control.h"
#include "fileio.h"
#include "log.h"
#include "scd_client.h"

#define KEY_FILE "key.wrapped"
#define WRAPPED_KEY_LEN 100 /* the scd's blob format (src/scd/keywrap.h) */
#define DATA_KEY_LEN 64

enum op_kind { OP_REFRESH, OP_KEY, OP_PAIR, OP_CHANGE_PIN, OP_PUK_UNLOCK, OP_WIPE };

struct token_op {
    enum op_kind kind;
    char uuid[TM_UUID_STR_LEN + 1];
    uint64_t conn_id, req_id; /* the client to answer; conn_id 0: none */
    char actor[48];
    bool remove;              /* OP_WIPE for `remove` */
    bool new_key;             /* OP_KEY: the first start makes the key */
    bool cancelled;           /* OP_KEY: the start is gone */
    bool busy;                /* this operation holds the container's token_busy */
    token_key_fn key_done;
    /* The outcome, reported to the client after the state has been asked again. */
    int code;
    char msg[512];
    bool key_left;
};

typedef Trustme__Scd__Request ScdRequest;
typedef Trustme__Scd__Response ScdResponse;

static const char *backend_name(const struct container *c)
{
    return container_encrypted(c) ? storage_backend_name(c->d->device.storage_backend) : "none";
}

void tokens_key_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" KEY_FILE, dir);
}

static struct token_op *op_new(struct container *c, enum op_kind kind, struct conn *conn, uint64_t id)
{
    struct token_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    if (conn) {
        op->conn_id = conn->id;
        op->req_id = id;
        snprintf(op->actor, sizeof(op->actor), "%s", conn->actor);
    } else {
        snprintf(op->actor, sizeof(op->actor), "%s", c->actor[0] ? c->actor : "trustmed");
    }
    return op;
}

/* One token operation at a time per container: scd would serialise them anyway, but a start
 * must not race a wipe, and a client should hear "busy" rather than wait. */
static void hold(struct container *c, struct token_op *op)
{
    c->token_busy = op->busy = true;
}

static void release(struct container *c, struct token_op *op)
{
    if (op->busy)
        c->token_busy = op->busy = false;
}

static void fill_spec(const struct container *c, Trustme__Scd__TokenSpec *spec)
{
    const struct token_config *t = &c->cfg->token;
    trustme__scd__token_spec__init(spec);
    spec->has_type = true;
    spec->type = t->kind == TOKEN_KIND_PKCS11 ? TRUSTME__SCD__TOKEN_TYPE__TOKEN_PKCS11
                                              : TRUSTME__SCD__TOKEN_TYPE__TOKEN_SOFT;
    if (t->kind == TOKEN_KIND_SOFT && t->kdf_n) {
        spec->has_soft_kdf_n = true;
        spec->soft_kdf_n = t->kdf_n;
    }
    if (t->kind == TOKEN_KIND_PKCS11) {
        spec->pkcs11_module = (char *)t->module;
        spec->pkcs11_label = t->label[0] ? (char *)t->label : NULL;
        spec->pkcs11_serial = t->serial[0] ? (char *)t->serial : NULL;
    }
}

/* ---- the state shown by list/state ------------------------------------------------------------ */

static void on_reply(struct daemon *d, const ScdResponse *resp, const tm_err *err, void *userdata);

static int send_status(struct daemon *d, struct token_op *op, tm_err *err)
{
    Trustme__Scd__Status st = TRUSTME__SCD__STATUS__INIT;
    st.uuid = op->uuid;
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_STATUS;
    req.status = &st;
    return scd_call(d, &req, on_reply, op, err);
}

void tokens_refresh_all(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        if (!container_encrypted(c))
            continue;
        struct token_op *op = op_new(c, OP_REFRESH, NULL, 0);
        tm_err err;
        if (!op || send_status(d, op, &err) < 0)
            free(op);
    }
}

void tokens_forget_all(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        c->token.known = false;
}

static void store_status(struct container *c, const Trustme__Scd__TokenStatus *st)
{
    c->token = (struct token_state){
        .known = true, .paired = st->paired, .locked = st->locked, .blocked = st->blocked,
        .pin_tries_left = st->pin_tries_left, .puk_tries_left = st->puk_tries_left};
}

int tokens_check_start(const struct container *c, bool have_pin, bool *pin_required, tm_err *err)
{
    *pin_required = false;
    if (!container_encrypted(c))
        return 0;
    const char *name = c->cfg->name;
    if (c->token_busy)
        return tm_err_set(err, EBUSY, "%s: another operation on its token is under way; try again", name);
    if (c->token.known && !c->token.paired)
        return tm_err_set(err, ENOKEY, "%s has no PIN yet: set one with 'trustme change-pin %s' "
                          "(this pairs its %s token)", name, name, token_kind_name(c->cfg->token.kind));
    if (c->token.blocked)
        return tm_err_set(err, EKEYREVOKED, "%s: its token is blocked after too many wrong PUKs; "
                          "only 'trustme wipe %s' helps (its data is lost)", name, name);
    if (c->token.locked)
        return tm_err_set(err, EPERM, "%s: its token is locked after too many wrong PINs; unlock "
                          "it with 'trustme token unlock %s'", name, name);
    if (!have_pin) {
        *pin_required = true;
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it", name);
    }
    return 0;
}

/* ---- the data key ------------------------------------------------------------------------------ */

int tokens_get_key(struct container *c, const ProtobufCBinaryData *pin, token_key_fn done, tm_err *err)
{
    if (!pin)
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it",
                          c->cfg->name);
    char path[PATH_MAX];
    tokens_key_path(c, path, sizeof(path));
    _cleanup_free_ char *wrapped = NULL;
    size_t len = 0;
    int r = read_file(path, 4096, &wrapped, &len, err);
    if (r < 0 && err->code != ENOENT)
        return r;
    struct token_op *op = op_new(c, OP_KEY, NULL, 0);
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->key_done = done;
    op->new_key = r < 0; /* the first start since pairing or wipe */
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    Trustme__Scd__NewKey nk = TRUSTME__SCD__NEW_KEY__INIT;
    Trustme__Scd__Unwrap uw = TRUSTME__SCD__UNWRAP__INIT;
    if (op->new_key) {
        nk.uuid = c->uuid;
        nk.has_pin = true;
        nk.pin = *pin;
        req.body_case = TRUSTME__SCD__REQUEST__BODY_NEW_KEY;
        req.new_key = &nk;
    } else {
        uw.uuid = c->uuid;
        uw.has_pin = true;
        uw.pin = *pin;
        uw.has_wrapped = true;
        uw.wrapped = (ProtobufCBinaryData){.data = (uint8_t *)wrapped, .len = len};
        req.body_case = TRUSTME__SCD__REQUEST__BODY_UNWRAP;
        req.unwrap = &uw;
    }
    if ((r = scd_call(c->d, &req, on_reply, op, err)) < 0) {
        free(op);
        return r;
    }
    hold(c, op);
    c->key_op = op;
    return 0;
}

void tokens_cancel_key(struct container *c)
{
    if (!c->key_op)
        return;
    c->key_op->cancelled = true;
    release(c, c->key_op);
    c->key_op = NULL;
}

/* Keep the key scd sent (in the packet's locked memory) in a secret of its own; for a new key,
 * store its wrapped form first: a key that could be lost must never encrypt anything. */
static int take_key(struct container *c, const struct token_op *op, const Trustme__Scd__Key *k,
                    struct secret **ret, tm_err *err)
{
    if (!k->has_key || k->key.len != DATA_KEY_LEN)
        return tm_err_set(err, EPROTO, "the token service sent a malformed key");
    if (op->new_key) {
        if (!k->has_wrapped || k->wrapped.len != WRAPPED_KEY_LEN)
            return tm_err_set(err, EPROTO, "the token service sent a malformed wrapped key");
        char path[PATH_MAX];
        tokens_key_path(c, path, sizeof(path));
        int r = write_file_atomic(path, k->wrapped.data, k->wrapped.len, 0600, err);
        if (r < 0)
            return tm_err_prefix(err, "cannot store the new data key");
        c->key_stored = true;
    }
    int r = secret_new(DATA_KEY_LEN, ret, err);
    if (r < 0)
        return r;
    memcpy((*ret)->data, k->key.data, DATA_KEY_LEN);
    return 0;
}

static void key_reply(struct container *c, struct token_op *op, const ScdResponse *resp, const tm_err *err)
{
    tm_err kerr = {0};
    struct secret *key = NULL;
    if (err) {
        daemon_audit(c->d, "token.unlock", "fail", c, op->actor, "%s token: %s",
                     token_kind_name(c->cfg->token.kind), err->msg);
    } else {
        /* The PIN was right, whatever happens to the key now. */
        daemon_audit(c->d, "token.unlock", "ok", c, op->actor, "%s token%s",
                     token_kind_name(c->cfg->token.kind), op->new_key ? ", new data key" : "");
        if (resp->body_case != TRUSTME__SCD__RESPONSE__BODY_KEY)
            err = &kerr, tm_err_set(&kerr, EPROTO, "unexpected answer from the token service");
        else if (take_key(c, op, resp->key, &key, &kerr) < 0)
            err = &kerr;
    }
    if (op->cancelled) {
        secret_free(key);
        return;
    }
    c->key_op = NULL;
    release(c, op);
    op->key_done(c, key, err);
}

/* ---- answering ----------------------------------------------------------------------------- */

static void reply_client(struct daemon *d, const struct token_op *op, struct container *c)
{
    struct conn *conn = op->conn_id ? conn_find(d, op->conn_id) : NULL;
    if (!conn)
        return;
    if (op->code) {
        conn_send_error(conn, op->req_id, op->code, "%s", op->msg);
        return;
    }
    if (op->key_left) {
        Trustme__Progress p = TRUSTME__PROGRESS__INIT;
        p.message = "note: without its PIN the key object stays on the PKCS#11 token; the data is "
                    "erased all the same, as its wrapped key is destroyed";
        Trustme__Response resp = TRUSTME__RESPONSE__INIT;
        resp.body_case = TRUSTME__RESPONSE__BODY_PROGRESS;
        resp.progress = &p;
        conn_send(conn, op->req_id, &resp);
    }
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    Trustme__ContainerInfo info;
    Trustme__Encryption enc;
    Trustme__Ok ok = TRUSTME__OK__INIT;
    if (c) {
        container_info(c, &info, &enc);
        resp.body_case = TRUSTME__RESPONSE__BODY_CONTAINER;
        resp.container = &info;
    } else { /* removed */
        resp.body_case = TRUSTME__RESPONSE__BODY_OK;
        resp.ok = &ok;
    }
    conn_send(conn, op->req_id, &resp);
}

/* An operation is over (its outcome in op): tell the client. */
static void finish(struct daemon *d, struct token_op *op, struct container *c)
{
    if (c)
        release(c, op);
    reply_client(d, op, c);
    free(op);
}

/* ---- crypto-erase -------------------------------------------------------------------------- */

/* Overwrite with random bytes, sync, unlink: what was in the file is not on the disk any more
 * (on a disk that overwrites in place; docs/STORAGE.md says where that ends). */
static int destroy_file(const char *path, tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : tm_err_sys(err, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", path);
    uint8_t noise[256];
    for (off_t off = 0; off < st.st_size; off += (off_t)sizeof(noise)) {
        size_t n = st.st_size - off < (off_t)sizeof(noise) ? (size_t)(st.st_size - off) : sizeof(noise);
        int r = secure_random(noise, n, err);
        if (r < 0)
            return r;
        if (pwrite(fd, noise, n, off) != (ssize_t)n)
            return tm_err_sys(err, "cannot overwrite %s", path);
    }
    if (fsync(fd) < 0)
        return tm_err_sys(err, "cannot sync %s", path);
    if (unlink(path) < 0)
        return tm_err_sys(err, "cannot remove %s", path);
    fsync_parent(path);
    return 0;
}

/* scd has destroyed the token: now the wrapped key (overwritten: with the token gone it is
 * useless, but it is not left lying around) and the data image (unlinked; its contents are
 * ciphertext under a key nobody has any more — for an unencrypted container, plain data). */
static int erase_files(struct container *c, tm_err *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    container_data_dir(c, dir, sizeof(dir));
    tokens_key_path(c, path, sizeof(path));
    int r = destroy_file(path, err);
    if (r < 0)
        return r;
    c->key_stored = false;
    const char *images[] = {"data.img", "data.img.new"};
    for (size_t i = 0; i < ARRAY_SIZE(images); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, images[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return tm_err_sys(err, "cannot remove %s", path);
    }
    fsync_parent(path);
    return 0;
}

static void wipe_done(struct daemon *d, struct token_op *op, struct container *c, const tm_err *err)
{
    tm_err ferr = {0};
    if (!err && erase_files(c, &ferr) < 0)
        err = &ferr;
    if (err) {
        daemon_audit(d, "container.wipe", "fail", c, op->actor, "%s", err->msg);
        op->code = err->code;
        snprintf(op->msg, sizeof(op->msg), "cannot wipe %s: %s", c->cfg->name, err->msg);
        finish(d, op, c);
        return;
    }
    daemon_audit(d, "container.wipe", "ok", c, op->actor, "%s%s",
                 container_encrypted(c) ? "token, wrapped key and data image destroyed"
                                        : "unencrypted data image deleted",
                 op->key_left ? " (the key object stays on the PKCS#11 token)" : "");
    if (op->remove) {
        char label[128];
        snprintf(label, sizeof(label), "%s", container_label(c));
        tm_err rerr;
        release(c, op);
        if (container_remove(c, &rerr) < 0) {
            daemon_audit(d, "container.remove", "fail", c, op->actor, "%s", rerr.msg);
            op->code = rerr.code;
            snprintf(op->msg, sizeof(op->msg), "%s", rerr.msg);
            finish(d, op, c);
            return;
        }
        daemon_audit(d, "container.remove", "ok", NULL, op->actor, "%s", label);
        finish(d, op, NULL);
        return;
    }
    finish(d, op, c);
}

/* ---- scd's answers ------------------------------------------------------------------------- */

static const char *const op_events[] = {
    [OP_PAIR] = "token.pair", [OP_CHANGE_PIN] = "token.pin_change", [OP_PUK_UNLOCK] = "token.puk_unlock"};

/* What scd says the token is like now; a wrong secret that used up the last try is a lockout. */
static void note_status(struct container *c, const struct token_op *op,
                        const Trustme__Scd__TokenStatus *st, const tm_err *err)
{
    bool was_locked = c->token.locked, was_blocked = c->token.blocked;
    store_status(c, st);
    if (!err || err->code != EACCES)
        return;
    if (c->token.locked && !was_locked)
        daemon_audit(c->d, "token.lockout", "fail", c, op->actor, "PIN locked after too many wrong "
                     "PINs; unlock with the PUK");
    if (c->token.blocked && !was_blocked)
        daemon_audit(c->d, "token.lockout", "fail", c, op->actor, "PUK blocked; only a wipe helps");
}

static void on_reply(struct daemon *d, const ScdResponse *resp, const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = container_find(d, op->uuid);
    if (!c) {
        free(op); /* removed meanwhile; a key in resp is wiped with its packet */
        return;
    }
    if (resp && resp->token)
        note_status(c, op, resp->token, err);
    switch (op->kind) {
    case OP_REFRESH:
        if (!err && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_STATUS)
            note_status(c, op, resp->status, NULL);
        free(op);
        return;
    case OP_KEY:
        key_reply(c, op, resp, err);
        free(op);
        return;
    case OP_WIPE:
        op->key_left = !err && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_OK && resp->ok->key_left_on_token;
        wipe_done(d, op, c, err);
        return;
    case OP_PAIR:
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK:
        daemon_audit(d, op_events[op->kind], err ? "fail" : "ok", c, op->actor, "%s token%s%s",
                     token_kind_name(c->cfg->token.kind), err ? ": " : "", err ? err->msg : "");
        if (err) {
            op->code = err->code;
            snprintf(op->msg, sizeof(op->msg), "%s: %s", c->cfg->name, err->msg);
        }
        finish(d, op, c);
        return;
    }
}

/* ---- control requests ---------------------------------------------------------------------- */

/* The common checks of a token request; sends the error itself. */
static bool may_use_token(struct conn *conn, uint64_t id, struct container *c, bool need_token)
{
    if (need_token && !container_encrypted(c)) {
        conn_send_error(conn, id, EINVAL, "%s has no token (its config says \"token\": \"none\"): its "
                        "data is not encrypted", c->cfg->name);
        return false;
    }
    if (c->token_busy) {
        conn_send_error(conn, id, EBUSY, "%s: another operation on its token is under way; try again",
                        c->cfg->name);
        return false;
    }
    return true;
}

static void send_op(struct conn *conn, uint64_t id, struct container *c, struct token_op *op,
                    ScdRequest *req)
{
    tm_err err;
    if (!op) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    if (scd_call(conn->d, req, on_reply, op, &err) < 0) {
        free(op);
        conn_send_error(conn, id, err.code, "%s", err.msg);
        return;
    }
    hold(c, op);
}

void tokens_change_pin(struct conn *conn, uint64_t id, struct container *c,
                       const Trustme__ChangePinRequest *rq)
{
    if (!may_use_token(conn, id, c, true))
        return;
    if (!rq->has_new_pin) {
        conn_send_error(conn, id, EINVAL, "change-pin: the new PIN is missing");
        return;
    }
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    Trustme__Scd__Pair pair = TRUSTME__SCD__PAIR__INIT;
    Trustme__Scd__ChangePin cp = TRUSTME__SCD__CHANGE_PIN__INIT;
    Trustme__Scd__TokenSpec spec;
    struct token_op *op;
    if (!rq->has_old_pin) { /* pairing: the token is created with this PIN */
        fill_spec(c, &spec);
        pair.uuid = c->uuid;
        pair.spec = &spec;
        pair.has_pin = true;
        pair.pin = rq->new_pin;
        pair.has_puk = rq->has_puk;
        pair.puk = rq->puk;
        req.body_case = TRUSTME__SCD__REQUEST__BODY_PAIR;
        req.pair = &pair;
        op = op_new(c, OP_PAIR, conn, id);
    } else {
        cp.uuid = c->uuid;
        cp.has_old_pin = cp.has_new_pin = true;
        cp.old_pin = rq->old_pin;
        cp.new_pin = rq->new_pin;
        req.body_case = TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN;
        req.change_pin = &cp;
        op = op_new(c, OP_CHANGE_PIN, conn, id);
    }
    send_op(conn, id, c, op, &req);
}

void tokens_puk_unlock(struct conn *conn, uint64_t id, struct container *c,
                       const Trustme__TokenUnlockRequest *rq)
{
    if (!may_use_token(conn, id, c, true))
        return;
    if (!rq->has_puk || !rq->has_new_pin) {
        conn_send_error(conn, id, EINVAL, "token unlock: the PUK and a new PIN are needed");
        return;
    }
    Trustme__Scd__Unlock ul = TRUSTME__SCD__UNLOCK__INIT;
    ul.uuid = c->uuid;
    ul.has_puk = ul.has_new_pin = true;
    ul.puk = rq->puk;
    ul.new_pin = rq->new_pin;
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_UNLOCK;
    req.unlock = &ul;
    send_op(conn, id, c, op_new(c, OP_PUK_UNLOCK, conn, id), &req);
}

void tokens_wipe(struct conn *conn, uint64_t id, struct container *c, const ProtobufCBinaryData *pin,
                 bool remove)
{
    if (!may_use_token(conn, id, c, false))
        return;
    struct token_op *op = op_new(c, OP_WIPE, conn, id);
    if (!op) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    op->remove = remove;
    if (!container_encrypted(c)) { /* nothing for scd: the image is all there is */
        hold(c, op);
        wipe_done(conn->d, op, c, NULL);
        return;
    }
    Trustme__Scd__Wipe w = TRUSTME__SCD__WIPE__INIT;
    w.uuid = c->uuid;
    if (pin) {
        w.has_pin = true;
        w.pin = *pin;
    }
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_WIPE;
    req.wipe = &w;
    send_op(conn, id, c, op, &req);
}

void tokens_fill_info(const struct container *c, Trustme__Encryption *enc)
{
    trustme__encryption__init(enc);
    enc->backend = (char *)backend_name(c);
    enc->token = (char *)token_kind_name(c->cfg->token.kind);
    if (!container_encrypted(c))
        return;
    enc->has_key_created = enc->has_status_known = true;
    enc->key_created = c->key_stored;
    enc->status_known = c->token.known;
    if (!c->token.known)
        return;
    enc->has_paired = enc->has_locked = enc->has_blocked = true;
    enc->has_pin_tries_left = enc->has_puk_tries_left = true;
    enc->paired = c->token.paired;
    enc->locked = c->token.locked;
    enc->blocked = c->token.blocked;
    enc->pin_tries_left = c->token.pin_tries_left;
    enc->puk_tries_left = c->token.puk_tries_left;
}
