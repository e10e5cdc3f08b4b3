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
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "reply.h"
#include "fileio.h"
#include "log.h"
#include "service.h"
#include "scd_client.h"
#include "tpmd_client.h"

/* What trustme-scd last said about a container's token (tokens.c); shown by list and state. */
struct token_state {
    bool known; /* scd has answered since trustmed (or scd) started */
    bool paired, locked, blocked;
    uint32_t pin_tries_left, puk_tries_left;
    /* The counts anchored in the TPM, which decide (tokens.c); scd's own may differ. */
    bool anchored;
    bool anchor_unknown; /* tpmd could not say (the anchor table refused, or no entry) */
    uint8_t pin_failures, puk_failures;
};

/* What trustmed knows of a container's token (c->token): allocated when the container is created
 * or loaded (tokens_container_observer), freed with it. */
struct container_token {
    struct token_state state;
    bool busy;                    /* a token operation is waiting for scd */
    bool key_stored;              /* key.wrapped exists (made at the first start, gone at a wipe) */
    struct token_op *key_op;      /* a start waits for its data key */
};

#define KEY_FILE "key.wrapped"
#define WRAPPED_KEY_LEN 100 /* the scd's blob format (src/scd/keywrap.h) */
#define DATA_KEY_LEN 64
/* The token's state anchored in the TPM (docs/STORAGE.md, "Lockout"): "token/<uuid>" =
 * format (1), wrong PINs, wrong PUKs, SHA-256 of scd's token files. */
#define ANCHOR_FORMAT 1
#define ANCHOR_LEN 35
#define PIN_TRIES 3  /* TOKEN_PIN_TRIES (src/scd/token.h) */
#define PUK_TRIES 10 /* TOKEN_PUK_TRIES */

struct anchored {
    bool present;
    uint8_t pin, puk; /* failures */
    uint8_t files[32];
};

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
    /* Kept across the round trips to tpmd (locked memory, wiped with the op). */
    struct secret *pin, *new_pin, *puk;
    bool has_puk;
    struct anchored a; /* as anchored when the operation began */
    struct timespec began; /* OP_KEY: for the debug log (bench/storage.sh reads it) */
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

static struct token_op *op_new(struct container *c, enum op_kind kind, const struct reply_to *to)
{
    struct token_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    if (to) {
        op->conn_id = to->client;
        op->req_id = to->req_id;
        snprintf(op->actor, sizeof(op->actor), "%s", to->actor);
    } else {
        snprintf(op->actor, sizeof(op->actor), "%s", c->actor[0] ? c->actor : "trustmed");
    }
    return op;
}

static void op_free(struct token_op *op)
{
    if (!op)
        return;
    secret_free(op->pin);
    secret_free(op->new_pin);
    secret_free(op->puk);
    free(op);
}

/* A copy of a PIN or PUK in locked memory (an empty one keeps one zero byte, length 0). */
static int keep(const ProtobufCBinaryData *b, struct secret **ret, tm_err *err)
{
    int r = secret_new(b->len ? b->len : 1, ret, err);
    if (r < 0)
        return r;
    if (b->len)
        memcpy((*ret)->data, b->data, b->len);
    (*ret)->len = b->len;
    return 0;
}

static ProtobufCBinaryData bytes_of(const struct secret *s)
{
    return (ProtobufCBinaryData){.len = s ? s->len : 0, .data = s ? s->data : NULL};
}

/* One token operation at a time per container: scd would serialise them anyway, but a start
 * must not race a wipe, and a client should hear "busy" rather than wait. */
static void hold(struct container *c, struct token_op *op)
{
    c->token->busy = op->busy = true;
}

static void release(struct container *c, struct token_op *op)
{
    if (op->busy)
        c->token->busy = op->busy = false;
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

static void refresh_anchor(struct daemon *d, struct container *c);

void tokens_refresh_all(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        if (!container_encrypted(c))
            continue;
        struct token_op *op = op_new(c, OP_REFRESH, NULL);
        tm_err err;
        if (!op || send_status(d, op, &err) < 0)
            op_free(op);
        refresh_anchor(d, c);
    }
}

void tokens_forget_all(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        c->token->state.known = false;
}

static void show_anchored(struct container *c, const struct anchored *a);

/* scd's word on the token; the counts anchored in the TPM, once known, override scd's own
 * (its tries file is a file root can delete). */
static void store_status(struct container *c, const Trustme__Scd__TokenStatus *st)
{
    struct token_state old = c->token->state;
    c->token->state = (struct token_state){
        .known = true, .paired = st->paired, .locked = st->locked, .blocked = st->blocked,
        .pin_tries_left = st->pin_tries_left, .puk_tries_left = st->puk_tries_left,
        .anchor_unknown = old.anchor_unknown};
    if (old.anchored && st->paired) {
        struct anchored a = {.present = true, .pin = old.pin_failures, .puk = old.puk_failures};
        show_anchored(c, &a);
    }
}

static void note_status(struct container *c, const struct token_op *op,
                        const Trustme__Scd__TokenStatus *st, const tm_err *err)
{
    store_status(c, st);
}

/* ---- PIN policy ------------------------------------------------------------------------------ */

/* The code points of a UTF-8 string (strict: no overlongs, surrogates or beyond U+10FFFF), or -1. */
static int utf8_decode(const uint8_t *s, size_t len, uint32_t *cp, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = s[i];
        uint32_t v;
        size_t k;
        if (b < 0x80)
            v = b, k = 1;
        else if ((b & 0xe0) == 0xc0)
            v = b & 0x1f, k = 2;
        else if ((b & 0xf0) == 0xe0)
            v = b & 0x0f, k = 3;
        else if ((b & 0xf8) == 0xf0)
            v = b & 0x07, k = 4;
        else
            return -1;
        if (i + k > len)
            return -1;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return -1;
            v = v << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && v < 0x80) || (k == 3 && v < 0x800) || (k == 4 && v < 0x10000) ||
            v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return -1;
        if (n == max)
            return -1;
        cp[n++] = v;
        i += k;
    }
    return (int)n;
}

int tokens_check_pin_policy(const struct daemon *d, const ProtobufCBinaryData *pin,
                            const char *what, tm_err *err)
{
    uint32_t cp[64];
    const uint8_t *s = pin->data;
    size_t len = pin->len;
    if (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        return tm_err_set(err, EINVAL, "the %s ends in a line break (\\r or \\n): the client "
                          "should have stripped it (a PIN file with CRLF line endings?)", what);
    int n = len ? utf8_decode(s, len, cp, 64) : 0;
    if (n < 0)
        return tm_err_set(err, EINVAL, "the %s is not valid UTF-8 (or longer than 64 characters)",
                          what);
    for (int i = 0; i < n; i++)
        if (cp[i] < 0x20 || cp[i] == 0x7f)
            return tm_err_set(err, EINVAL, "the %s contains a control character", what);
    unsigned min = d->device.pin_min_length ? d->device.pin_min_length : 4;
    if ((unsigned)n < min)
        return tm_err_set(err, EINVAL, "the %s is too short: at least %u characters (device.json "
                          "pin.min_length)", what, min);
    bool blank = true, same = true, up = true, down = true;
    for (int i = 0; i < n; i++) {
        blank = blank && (cp[i] == ' ' || cp[i] == 0xa0 || cp[i] == 0x3000);
        if (i > 0) {
            same = same && cp[i] == cp[0];
            up = up && cp[i] == cp[i - 1] + 1;
            down = down && cp[i] + 1 == cp[i - 1];
        }
    }
    if (blank)
        return tm_err_set(err, EINVAL, "the %s is only whitespace", what);
    if (!d->device.pin_allow_trivial && (same || up || down))
        return tm_err_set(err, EINVAL, "the %s is trivial (%s): choose another (device.json "
                          "pin.allow_trivial permits such PINs)", what,
                          same ? "one character repeated" : "a run like 1234 or 4321");
    return 0;
}

/* device.json tpm.require_hardware on an emulated TPM: no encrypted container at all. */
static int check_hardware(const struct container *c, tm_err *err)
{
    if (!c->d->device.tpm_require_hardware || !tpmd_emulated(c->d))
        return 0;
    return tm_err_set(err, EPERM, "%s: its data is encrypted, and device.json sets "
                      "tpm.require_hardware, but the TPM is an emulator (%s): refused",
                      c->cfg->name, c->d->device.tpm_tcti);
}

int tokens_check_start(const struct container *c, bool have_pin, bool *pin_required, tm_err *err)
{
    *pin_required = false;
    if (!container_encrypted(c))
        return 0;
    const char *name = c->cfg->name;
    int r = check_hardware(c, err);
    if (r < 0)
        return r;
    if (c->token->busy)
        return tm_err_set(err, EBUSY, "%s: another operation on its token is under way; try again", name);
    if (c->token->state.known && !c->token->state.paired)
        return tm_err_set(err, ENOKEY, "%s has no PIN yet: set one with 'trustme change-pin %s' "
                          "(this pairs its %s token)", name, name, token_kind_name(c->cfg->token.kind));
    if (c->token->state.blocked)
        return tm_err_set(err, EKEYREVOKED, "%s: its token is blocked after too many wrong PUKs; "
                          "only 'trustme wipe %s' helps (its data is lost)", name, name);
    if (c->token->state.locked)
        return tm_err_set(err, EPERM, "%s: its token is locked after too many wrong PINs; unlock "
                          "it with 'trustme token unlock %s'", name, name);
    if (!have_pin) {
        *pin_required = true;
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it", name);
    }
    return 0;
}

/* ---- the data key ------------------------------------------------------------------------------ */

static int begin(struct daemon *d, struct token_op *op, struct container *c, tm_err *err);

int tokens_get_key(struct container *c, const ProtobufCBinaryData *pin, token_key_fn done, tm_err *err)
{
    if (!pin)
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it",
                          c->cfg->name);
    int r = check_hardware(c, err);
    if (r < 0)
        return r;
    struct token_op *op = op_new(c, OP_KEY, NULL);
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->key_done = done;
    clock_gettime(CLOCK_MONOTONIC, &op->began);
    r = keep(pin, &op->pin, err);
    if (r < 0 || (r = begin(c->d, op, c, err)) < 0) {
        op_free(op);
        return r;
    }
    hold(c, op);
    c->token->key_op = op;
    return 0;
}

void tokens_cancel_key(struct container *c)
{
    if (!c->token->key_op)
        return;
    c->token->key_op->cancelled = true;
    release(c, c->token->key_op);
    c->token->key_op = NULL;
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
        c->token->key_stored = true;
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
    c->token->key_op = NULL;
    release(c, op);
    op->key_done(c, key, err);
}

/* ---- answering ----------------------------------------------------------------------------- */

static void reply_client(struct daemon *d, const struct token_op *op, struct container *c)
{
    if (!reply_alive(d, op->conn_id))
        return;
    if (op->code) {
        reply_error(d, op->conn_id, op->req_id, op->code, "%s", op->msg);
        return;
    }
    if (op->key_left) {
        Trustme__Progress p = TRUSTME__PROGRESS__INIT;
        p.message = "note: without its PIN the key object stays on the PKCS#11 token; the data is "
                    "erased all the same, as its wrapped key is destroyed";
        Trustme__Response resp = TRUSTME__RESPONSE__INIT;
        resp.body_case = TRUSTME__RESPONSE__BODY_PROGRESS;
        resp.progress = &p;
        reply_send(d, op->conn_id, op->req_id, &resp);
    }
    if (c) {
        reply_container_info(d, op->conn_id, op->req_id, c);
        return;
    }
    /* removed */
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    Trustme__Ok ok = TRUSTME__OK__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_OK;
    resp.ok = &ok;
    reply_send(d, op->conn_id, op->req_id, &resp);
}

/* An operation is over (its outcome in op): tell the client. */
static void finish(struct daemon *d, struct token_op *op, struct container *c)
{
    if (c)
        release(c, op);
    reply_client(d, op, c);
    op_free(op);
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
    c->token->key_stored = false;
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

/* ---- the state anchored in the TPM ------------------------------------------------------------
 *
 * scd's tries file and token files are files root can delete or restore. The count of wrong
 * PINs and PUKs and the digest of the token files therefore live in tpmd's anchor table
 * ("token/<uuid>"), whose freshness the TPM vouches for (docs/ATTESTATION.md, "Anchored
 * state"). Every PIN or PUK attempt is counted there (one NV write) before scd sees the secret,
 * so no file operation and no kill of trustmed or scd at the right moment gives an uncounted
 * guess; a success resets the count (a second NV write, not waited for by a start). scd refuses
 * token files whose digest is not the anchored one. Each container has its own count: the TPM's
 * global dictionary-attack lockout is not involved (the index is owner-authorised and noda). */

static void anchor_name(const char *uuid, char out[64])
{
    snprintf(out, 64, "token/%s", uuid);
}

static void show_anchored(struct container *c, const struct anchored *a)
{
    if (!a->present)
        return;
    c->token->state.anchored = true;
    c->token->state.anchor_unknown = false;
    c->token->state.pin_failures = a->pin;
    c->token->state.puk_failures = a->puk;
    c->token->state.locked = a->pin >= PIN_TRIES;
    c->token->state.blocked = a->puk >= PUK_TRIES;
    c->token->state.pin_tries_left = a->pin >= PIN_TRIES ? 0 : PIN_TRIES - a->pin;
    c->token->state.puk_tries_left = a->puk >= PUK_TRIES ? 0 : PUK_TRIES - a->puk;
}

static int anchored_parse(const Trustme__Tpmd__Response *resp, const char *uuid,
                          struct anchored *a, tm_err *err)
{
    char name[64];
    anchor_name(uuid, name);
    const ProtobufCBinaryData *v = tpmd_anchor_value(resp, name);
    *a = (struct anchored){0};
    if (!v)
        return 0;
    if (v->len != ANCHOR_LEN || v->data[0] != ANCHOR_FORMAT)
        return tm_err_set(err, EBADMSG, "the token state anchored in the TPM is malformed "
                          "(%zu bytes)", v->len);
    a->present = true;
    a->pin = v->data[1];
    a->puk = v->data[2];
    memcpy(a->files, v->data + 3, 32);
    return 0;
}

static int anchor_read(struct daemon *d, const char *uuid, tpmd_reply_fn fn, void *userdata,
                       tm_err *err)
{
    char name[64];
    anchor_name(uuid, name);
    const char *const names[] = {name};
    return tpmd_anchor_get(d, names, 1, fn, userdata, err);
}

/* One NV write: the new state, or (!a->present) none. */
static int anchor_write(struct daemon *d, const char *uuid, const struct anchored *a,
                        tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    char name[64];
    anchor_name(uuid, name);
    uint8_t v[ANCHOR_LEN] = {ANCHOR_FORMAT, a->pin, a->puk};
    memcpy(v + 3, a->files, 32);
    struct tpmd_anchor_entry e = {.name = name, .value = v, .len = sizeof(v),
                                  .remove = !a->present};
    return tpmd_anchor_update(d, &e, 1, NULL, 0, fn, userdata, err);
}

/* A write nobody waits for (a reset after a success, a refund): a failure leaves the count
 * higher than it should be, never lower. */
static void on_background_write(struct daemon *d, const Trustme__Tpmd__Response *resp,
                                const tm_err *err, void *userdata)
{
    if (err)
        log_error("cannot update a token's state anchored in the TPM: %s", err->msg);
}

static void write_background(struct container *c, const struct anchored *a)
{
    tm_err e;
    if (anchor_write(c->d, c->uuid, a, on_background_write, NULL, &e) < 0)
        log_error("%s: cannot update its token's state anchored in the TPM: %s", c->cfg->name,
                  e.msg);
    show_anchored(c, a);
}

static struct container *op_container(struct daemon *d, struct token_op *op);

static void on_refresh_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp,
                              const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    struct anchored a;
    if (c && !err && anchored_parse(resp, op->uuid, &a, NULL) == 0 && a.present)
        show_anchored(c, &a);
    else if (c)
        c->token->state.anchor_unknown = true;
    if (c)
        op_free(op);
}

static void refresh_anchor(struct daemon *d, struct container *c)
{
    struct token_op *op = op_new(c, OP_REFRESH, NULL);
    tm_err err;
    if (op && anchor_read(d, c->uuid, on_refresh_anchor, op, &err) < 0)
        op_free(op);
}

void tokens_refresh_anchors(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (container_encrypted(c))
            refresh_anchor(d, c);
}

/* ---- the operations ----------------------------------------------------------------------- */

static const char *const op_events[] = {
    [OP_PAIR] = "token.pair", [OP_CHANGE_PIN] = "token.pin_change", [OP_PUK_UNLOCK] = "token.puk_unlock"};

static void on_reply(struct daemon *d, const ScdResponse *resp, const tm_err *err, void *userdata);

/* The op's container, or NULL when it is gone (removed, or the start was cancelled): then the
 * op is freed here. */
static struct container *op_container(struct daemon *d, struct token_op *op)
{
    struct container *c = container_find(d, op->uuid);
    if (!c || op->cancelled) {
        op_free(op);
        return NULL;
    }
    return c;
}

/* The operation failed with err (before or after scd): answer, audit, free. */
static void op_fail(struct daemon *d, struct token_op *op, struct container *c, const tm_err *err)
{
    switch (op->kind) {
    case OP_KEY:
        key_reply(c, op, NULL, err);
        op_free(op);
        return;
    case OP_WIPE:
        wipe_done(d, op, c, err);
        return;
    case OP_PAIR:
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK:
        daemon_audit(d, op_events[op->kind], "fail", c, op->actor, "%s token: %s",
                     token_kind_name(c->cfg->token.kind), err->msg);
        break;
    case OP_REFRESH:
        op_free(op);
        return;
    }
    op->code = err->code;
    snprintf(op->msg, sizeof(op->msg), "%s: %s", c->cfg->name, err->msg);
    finish(d, op, c);
}

static int send_scd(struct daemon *d, struct token_op *op, struct container *c, tm_err *err)
{
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    Trustme__Scd__Pair pair = TRUSTME__SCD__PAIR__INIT;
    Trustme__Scd__NewKey nk = TRUSTME__SCD__NEW_KEY__INIT;
    Trustme__Scd__Unwrap uw = TRUSTME__SCD__UNWRAP__INIT;
    Trustme__Scd__ChangePin cp = TRUSTME__SCD__CHANGE_PIN__INIT;
    Trustme__Scd__Unlock ul = TRUSTME__SCD__UNLOCK__INIT;
    Trustme__Scd__Wipe w = TRUSTME__SCD__WIPE__INIT;
    Trustme__Scd__TokenSpec spec;
    _cleanup_free_ char *wrapped = NULL;
    size_t len = 0;
    if (op->a.present) {
        req.has_token_anchor = true;
        req.token_anchor = (ProtobufCBinaryData){.len = 32, .data = op->a.files};
    }
    switch (op->kind) {
    case OP_KEY: {
        char path[PATH_MAX];
        tokens_key_path(c, path, sizeof(path));
        int r = read_file(path, 4096, &wrapped, &len, err);
        if (r < 0 && err->code != ENOENT)
            return r;
        op->new_key = r < 0; /* the first start since pairing or wipe */
        if (op->new_key) {
            nk.uuid = c->uuid;
            nk.has_pin = true;
            nk.pin = bytes_of(op->pin);
            req.body_case = TRUSTME__SCD__REQUEST__BODY_NEW_KEY;
            req.new_key = &nk;
        } else {
            uw.uuid = c->uuid;
            uw.has_pin = uw.has_wrapped = true;
            uw.pin = bytes_of(op->pin);
            uw.wrapped = (ProtobufCBinaryData){.data = (uint8_t *)wrapped, .len = len};
            req.body_case = TRUSTME__SCD__REQUEST__BODY_UNWRAP;
            req.unwrap = &uw;
        }
        break;
    }
    case OP_PAIR:
        fill_spec(c, &spec);
        pair.uuid = c->uuid;
        pair.spec = &spec;
        pair.has_pin = true;
        pair.pin = bytes_of(op->new_pin);
        pair.has_puk = op->has_puk;
        pair.puk = bytes_of(op->puk);
        req.body_case = TRUSTME__SCD__REQUEST__BODY_PAIR;
        req.pair = &pair;
        break;
    case OP_CHANGE_PIN:
        cp.uuid = c->uuid;
        cp.has_old_pin = cp.has_new_pin = true;
        cp.old_pin = bytes_of(op->pin);
        cp.new_pin = bytes_of(op->new_pin);
        req.body_case = TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN;
        req.change_pin = &cp;
        break;
    case OP_PUK_UNLOCK:
        ul.uuid = c->uuid;
        ul.has_puk = ul.has_new_pin = true;
        ul.puk = bytes_of(op->puk);
        ul.new_pin = bytes_of(op->new_pin);
        req.body_case = TRUSTME__SCD__REQUEST__BODY_UNLOCK;
        req.unlock = &ul;
        break;
    case OP_WIPE:
        w.uuid = c->uuid;
        if (op->pin) {
            w.has_pin = true;
            w.pin = bytes_of(op->pin);
        }
        req.body_case = TRUSTME__SCD__REQUEST__BODY_WIPE;
        req.wipe = &w;
        break;
    case OP_REFRESH:
        return send_status(d, op, err);
    }
    return scd_call(d, &req, on_reply, op, err);
}

static void on_counted(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                       void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    if (err) {
        op_fail(d, op, c, err);
        return;
    }
    tm_err e = {0};
    if (send_scd(d, op, c, &e) < 0) {
        write_background(c, &op->a); /* counted, but not made: take it back */
        op_fail(d, op, c, &e);
    }
}

static void on_anchor_read(struct daemon *d, const Trustme__Tpmd__Response *resp,
                           const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    tm_err e = {0};
    if (err) {
        op_fail(d, op, c, err);
        return;
    }
    if (anchored_parse(resp, op->uuid, &op->a, &e) < 0) {
        op_fail(d, op, c, &e);
        return;
    }
    if (op->kind == OP_PAIR) {
        /* Nothing to count; the read only put this request behind the device secret on its
         * way from tpmd to scd (tpmd answers in order). A stale state is overwritten. */
        op->a.present = false;
        if (send_scd(d, op, c, &e) < 0)
            op_fail(d, op, c, &e);
        return;
    }
    if (!op->a.present) {
        tm_err_set(&e, ESTALE, "the TPM holds no state for its token: the token was wiped (are its "
                   "files restored from a copy?) or paired by an older trustme; wipe the container "
                   "('trustme wipe %s') and set a PIN again", c->cfg->name);
        op_fail(d, op, c, &e);
        return;
    }
    show_anchored(c, &op->a);
    struct anchored counted = op->a;
    if (op->a.puk >= PUK_TRIES)
        tm_err_set(&e, EKEYREVOKED, "token blocked for good after %d wrong PUKs: only a wipe "
                   "helps (trustme wipe), and the container's data is lost", PUK_TRIES);
    else if (op->kind != OP_PUK_UNLOCK && op->a.pin >= PIN_TRIES)
        tm_err_set(&e, EPERM, "locked after %d wrong PINs: unlock it with the PUK (trustme token "
                   "unlock)", PIN_TRIES);
    if (e.code) {
        op_fail(d, op, c, &e);
        return;
    }
    if (op->kind == OP_PUK_UNLOCK)
        counted.puk++;
    else
        counted.pin++;
    if (anchor_write(d, op->uuid, &counted, on_counted, op, &e) < 0)
        op_fail(d, op, c, &e);
    else
        show_anchored(c, &counted);
}

static void on_unanchored(struct daemon *d, const Trustme__Tpmd__Response *resp,
                          const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    tm_err e = {0};
    if (err) {
        op_fail(d, op, c, err);
        return;
    }
    c->token->state.anchored = false;
    if (send_scd(d, op, c, &e) < 0)
        op_fail(d, op, c, &e);
}

/* Start op: read the anchored state and count the attempt (PIN and PUK uses), forget it
 * (a wipe: first, so that the token's files are refused from here on, whatever happens to
 * them), or go straight to scd (pairing). */
static int begin(struct daemon *d, struct token_op *op, struct container *c, tm_err *err)
{
    switch (op->kind) {
    case OP_KEY:
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK:
    case OP_PAIR: return anchor_read(d, op->uuid, on_anchor_read, op, err);
    case OP_WIPE: {
        struct anchored none = {0};
        return anchor_write(d, op->uuid, &none, on_unanchored, op, err);
    }
    default: return send_scd(d, op, c, err);
    }
}

static void on_settled(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                       void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    if (err) {
        tm_err e;
        tm_err_set(&e, err->code, "done, but its new token state could not be anchored in the "
                   "TPM, so the token is refused from now on: %s", err->msg);
        op_fail(d, op, c, &e);
        return;
    }
    daemon_audit(d, op_events[op->kind], "ok", c, op->actor, "%s token",
                 token_kind_name(c->cfg->token.kind));
    finish(d, op, c);
}

/* What a wrong PIN or PUK has left, by the anchored count. */
static void wrong_secret(struct container *c, const struct token_op *op, const struct anchored *n,
                         tm_err *e)
{
    bool puk = op->kind == OP_PUK_UNLOCK;
    const char *what = puk ? "PUK" : "PIN";
    int left = (puk ? PUK_TRIES - n->puk : PIN_TRIES - n->pin);
    if (left > 0)
        tm_err_set(e, EACCES, "wrong %s: %d %s left", what, left, left == 1 ? "try" : "tries");
    else if (!puk)
        tm_err_set(e, EACCES, "wrong PIN: the token is now locked after %d wrong PINs: unlock it "
                   "with the PUK (trustme token unlock)", PIN_TRIES);
    else
        tm_err_set(e, EACCES, "wrong PUK: the token is now blocked for good after %d wrong PUKs: "
                   "only a wipe helps, and the container's data is lost", PUK_TRIES);
    if (left <= 0)
        daemon_audit(c->d, "token.lockout", "fail", c, op->actor, "%s",
                     puk ? "PUK blocked; only a wipe helps"
                         : "PIN locked after too many wrong PINs; unlock with the PUK");
}

/* scd answered an operation that used a PIN or PUK, counted in the anchor before. */
static void counted_reply(struct daemon *d, struct token_op *op, struct container *c,
                          const ScdResponse *resp, const tm_err *err)
{
    struct anchored n = op->a;
    tm_err e = {0};
    if (op->kind == OP_PUK_UNLOCK)
        n.puk++;
    else
        n.pin++;
    if (err && err->code == EACCES) {
        /* Counted already. */
        wrong_secret(c, op, &n, &e);
        show_anchored(c, &n);
        op_fail(d, op, c, &e);
        return;
    }
    if (err) {
        write_background(c, &op->a); /* not the secret's fault: the attempt is taken back */
        op_fail(d, op, c, err);
        return;
    }
    n.pin = 0;
    if (op->kind == OP_PUK_UNLOCK)
        n.puk = 0;
    if (op->kind != OP_KEY) {
        if (!resp->token || !resp->token->has_files_sha256 || resp->token->files_sha256.len != 32) {
            tm_err_set(&e, EPROTO, "the token service did not say what its token files are now");
            op_fail(d, op, c, &e);
            return;
        }
        memcpy(n.files, resp->token->files_sha256.data, 32);
        show_anchored(c, &n);
        if (anchor_write(d, op->uuid, &n, on_settled, op, &e) < 0)
            op_fail(d, op, c, &e);
        return;
    }
    /* A start does not wait for the reset: if it is lost, the count stays one too high. */
    write_background(c, &n);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    log_debug("%s: data key after %.3f ms (anchored count, scd, %s)", c->cfg->name,
              (double)(now.tv_sec - op->began.tv_sec) * 1e3 +
                  (double)(now.tv_nsec - op->began.tv_nsec) / 1e6,
              op->new_key ? "new key" : "unwrap");
    key_reply(c, op, resp, NULL);
    op_free(op);
}

static void on_pair_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp,
                             const tm_err *err, void *userdata)
{
    on_settled(d, resp, err, userdata);
}

static void on_reply(struct daemon *d, const ScdResponse *resp, const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = container_find(d, op->uuid);
    if (!c) {
        op_free(op); /* removed meanwhile; a key in resp is wiped with its packet */
        return;
    }
    if (resp && resp->token)
        note_status(c, op, resp->token, err);
    tm_err e = {0};
    switch (op->kind) {
    case OP_REFRESH:
        if (!err && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_STATUS)
            note_status(c, op, resp->status, NULL);
        op_free(op);
        return;
    case OP_KEY:
        if (op->cancelled) {
            op_free(op);
            return;
        }
        counted_reply(d, op, c, resp, err);
        return;
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK:
        counted_reply(d, op, c, resp, err);
        return;
    case OP_WIPE:
        op->key_left = !err && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_OK && resp->ok->key_left_on_token;
        wipe_done(d, op, c, err);
        return;
    case OP_PAIR: {
        if (err) {
            op_fail(d, op, c, err);
            return;
        }
        struct anchored n = {.present = true};
        if (!resp->token || !resp->token->has_files_sha256 || resp->token->files_sha256.len != 32) {
            tm_err_set(&e, EPROTO, "the token service did not say what its token files are");
            op_fail(d, op, c, &e);
            return;
        }
        memcpy(n.files, resp->token->files_sha256.data, 32);
        show_anchored(c, &n);
        if (anchor_write(d, op->uuid, &n, on_pair_anchored, op, &e) < 0)
            op_fail(d, op, c, &e);
        return;
    }
    }
}

/* ---- control requests ---------------------------------------------------------------------- */

/* The common checks of a token request; sends the error itself. */
static bool may_use_token(const struct reply_to *to, struct container *c, bool need_token)
{
    if (need_token && !container_encrypted(c)) {
        reply_error(c->d, to->client, to->req_id, EINVAL, "%s has no token (its config says \"token\": \"none\"): its "
                        "data is not encrypted", c->cfg->name);
        return false;
    }
    if (c->token->busy) {
        reply_error(c->d, to->client, to->req_id, EBUSY, "%s: another operation on its token is under way; try again",
                        c->cfg->name);
        return false;
    }
    return true;
}

static void start_op(const struct reply_to *to, struct container *c, struct token_op *op)
{
    tm_err err;
    if (begin(c->d, op, c, &err) < 0) {
        op_free(op);
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    hold(c, op);
}

void tokens_change_pin(struct reply_to to_, struct container *c,
                       const Trustme__ChangePinRequest *rq)
{
    const struct reply_to *to = &to_;
    if (!may_use_token(to, c, true))
        return;
    if (!rq->has_new_pin) {
        reply_error(c->d, to->client, to->req_id, EINVAL, "change-pin: the new PIN is missing");
        return;
    }
    tm_err err = {0};
    if (check_hardware(c, &err) < 0) {
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    /* A PKCS#11 token's first PIN is the one it has: the policy is for PINs chosen here. */
    bool chosen = rq->has_old_pin || c->cfg->token.kind != TOKEN_KIND_PKCS11;
    if (chosen && tokens_check_pin_policy(c->d, &rq->new_pin, "new PIN", &err) < 0) {
        reply_error(c->d, to->client, to->req_id, err.code, "%s: %s", c->cfg->name, err.msg);
        return;
    }
    /* Without the current PIN: pairing, the token is created with this PIN. */
    struct token_op *op = op_new(c, rq->has_old_pin ? OP_CHANGE_PIN : OP_PAIR, to);
    if (!op) {
        reply_error(c->d, to->client, to->req_id, ENOMEM, "out of memory");
        return;
    }
    op->has_puk = rq->has_puk;
    if (keep(&rq->new_pin, &op->new_pin, &err) < 0 ||
        (rq->has_old_pin && keep(&rq->old_pin, &op->pin, &err) < 0) ||
        (rq->has_puk && keep(&rq->puk, &op->puk, &err) < 0)) {
        op_free(op);
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    start_op(to, c, op);
}

void tokens_puk_unlock(struct reply_to to_, struct container *c,
                       const Trustme__TokenUnlockRequest *rq)
{
    const struct reply_to *to = &to_;
    if (!may_use_token(to, c, true))
        return;
    if (!rq->has_puk || !rq->has_new_pin) {
        reply_error(c->d, to->client, to->req_id, EINVAL, "token unlock: the PUK and a new PIN are needed");
        return;
    }
    tm_err err = {0};
    if (tokens_check_pin_policy(c->d, &rq->new_pin, "new PIN", &err) < 0) {
        reply_error(c->d, to->client, to->req_id, err.code, "%s: %s", c->cfg->name, err.msg);
        return;
    }
    struct token_op *op = op_new(c, OP_PUK_UNLOCK, to);
    if (!op) {
        reply_error(c->d, to->client, to->req_id, ENOMEM, "out of memory");
        return;
    }
    op->has_puk = true;
    if (keep(&rq->puk, &op->puk, &err) < 0 || keep(&rq->new_pin, &op->new_pin, &err) < 0) {
        op_free(op);
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    start_op(to, c, op);
}

void tokens_wipe(struct reply_to to_, struct container *c, const ProtobufCBinaryData *pin,
                 bool remove)
{
    const struct reply_to *to = &to_;
    if (!may_use_token(to, c, false))
        return;
    struct token_op *op = op_new(c, OP_WIPE, to);
    if (!op) {
        reply_error(c->d, to->client, to->req_id, ENOMEM, "out of memory");
        return;
    }
    op->remove = remove;
    if (!container_encrypted(c)) { /* nothing for scd: the image is all there is */
        hold(c, op);
        wipe_done(c->d, op, c, NULL);
        return;
    }
    tm_err err;
    if (pin && keep(pin, &op->pin, &err) < 0) {
        op_free(op);
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    start_op(to, c, op);
}

void tokens_fill_info(const struct container *c, Trustme__Encryption *enc)
{
    trustme__encryption__init(enc);
    enc->backend = (char *)backend_name(c);
    enc->token = (char *)token_kind_name(c->cfg->token.kind);
    if (!container_encrypted(c))
        return;
    enc->has_tpm_emulated = true;
    enc->tpm_emulated = tpmd_emulated(c->d);
    enc->has_key_created = enc->has_status_known = true;
    enc->key_created = c->token->key_stored;
    /* scd's word alone is not enough for a paired token: the counts that hold are the TPM's. */
    enc->status_known = c->token->state.known &&
                        (!c->token->state.paired || c->token->state.anchored || c->token->state.anchor_unknown);
    if (!c->token->state.known)
        return;
    enc->has_paired = enc->has_locked = enc->has_blocked = true;
    enc->has_pin_tries_left = enc->has_puk_tries_left = true;
    enc->paired = c->token->state.paired;
    enc->locked = c->token->state.locked;
    enc->blocked = c->token->state.blocked;
    enc->pin_tries_left = c->token->state.pin_tries_left;
    enc->puk_tries_left = c->token->state.puk_tries_left;
}

static int token_alloc(struct container *c, tm_err *err)
{
    c->token = calloc(1, sizeof(*c->token));
    return c->token ? 0 : tm_err_set(err, ENOMEM, "out of memory");
}

static int tokens_created(struct container *c, tm_err *err)
{
    int r = token_alloc(c, err);
    if (r == 0)
        c->token->state.known = true; /* a new UUID has no token yet: nothing to ask scd */
    return r;
}

static void tokens_freed(struct container *c)
{
    free(c->token);
    c->token = NULL;
}

/* At start-up: does its wrapped data key exist (made at the first start, gone at a wipe)? */
static int tokens_loaded(struct container *c, tm_err *err)
{
    int r = token_alloc(c, err);
    if (r < 0)
        return r;
    char path[PATH_MAX + 64];
    tokens_key_path(c, path, sizeof(path));
    c->token->key_stored = access(path, F_OK) == 0;
    return 0;
}

const struct container_observer tokens_container_observer = {
    .name = "tokens",
    .created = tokens_created,
    .loaded = tokens_loaded,
    .freed = tokens_freed,
};

const struct service_events tokens_service_events = {
    .name = "tokens",
    .scd_ready = tokens_refresh_all,
    .scd_gone = tokens_forget_all,
    .tpmd_anchors = tokens_refresh_anchors,
};
