/* SPDX-License-Identifier: GPL-2.0-or-later */
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
#include "keystore_svc.h"
#include "log.h"
#include "service.h"
#include "scd_client.h"
#include "test_hooks.h"
#include "tokens_carry.h"
#include "tokens_migrated.h"
#include "tpmd_client.h"
#include "vtpm.h"

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
    bool busy; /* a token operation is waiting for scd */
    bool key_stored; /* key.wrapped exists (made at the first start, gone at a wipe) */
    struct token_op *key_op; /* a start waits for its data key */
    bool reserve_spent; /* its PIN try reserved in advance was used ("reservations") */
    unsigned ops; /* token operations begun (a cancelled start's answer) */
};

#define KEY_FILE "key.wrapped"
#define WRAPPED_KEY_LEN 100 /* the scd's blob format (src/scd/keywrap.h) */
#define DATA_KEY_LEN 64
/* The token's state anchored in the TPM (docs/STORAGE.md, "Lockout"): "token/<uuid>" =
 * format (1), wrong PINs, wrong PUKs, SHA-256 of scd's token files; while a PIN change or PUK
 * unlock is pending (docs/STORAGE.md, "Changing a PIN"), format 2: the same, then flags (bit 0:
 * a re-wrapped key is pending), the token files' digest with the pending file in place, and the
 * SHA-256 of key.wrapped.new (zeros without). */
#define ANCHOR_FORMAT 1
#define ANCHOR_LEN 35
#define ANCHOR_FORMAT_PENDING 2
#define ANCHOR_LEN_PENDING (ANCHOR_LEN + 1 + 32 + 32)
#define ANCHOR_PENDING_KEY 0x01
/* Format 3: format 1 followed by the 8-byte session of trustmed that holds a reservation: one
 * PIN try of that trustmed process counted in advance (see "reservations" below). */
#define ANCHOR_FORMAT_RESERVED 3
#define ANCHOR_LEN_RESERVED (ANCHOR_LEN + 8)
#define SESSION_LEN 8
#define PIN_TRIES 3 /* TOKEN_PIN_TRIES (src/scd/token.h) */
#define PUK_TRIES 10 /* TOKEN_PUK_TRIES */

struct anchored {
    bool present;
    uint8_t pin, puk; /* failures */
    uint8_t files[32];
    bool pending; /* a change is anchored but maybe not in place yet */
    bool pending_key; /* ... with a re-wrapped key.wrapped.new */
    uint8_t pending_files[32], pending_key_sha256[32];
    bool reserved; /* pin includes one try reserved in advance by session reserved_by */
    uint8_t reserved_by[SESSION_LEN];
};

/* Where an operation is in settling a pending change: none; one found anchored when it began
 * (settled before anything else); or the one it made itself. */
enum op_phase { PHASE_NONE, PHASE_RESOLVE, PHASE_COMMIT };

enum op_kind { OP_REFRESH, OP_KEY, OP_PAIR, OP_CHANGE_PIN, OP_PUK_UNLOCK, OP_WIPE };

struct token_op {
    enum op_kind kind;
    char uuid[TM_UUID_STR_LEN + 1];
    uint64_t conn_id, req_id; /* the client to answer; conn_id 0: none */
    char actor[48];
    bool remove; /* OP_WIPE for `remove` */
    bool new_key; /* OP_KEY: the first start makes the key */
    bool cancelled; /* OP_KEY: the start is gone */
    bool busy; /* this operation holds the container's token_busy */
    unsigned seq; /* the container's token_ops when it began */
    token_key_fn key_done;
    /* OP_KEY of a migration's export: the PUK to check and the token's carried form to give
     * (tokens_carry.h); carry_done instead of key_done. */
    struct secret *carry_puk;
    token_carry_fn carry_done;
    /* The outcome, reported to the client after the state has been asked again. */
    int code;
    char msg[512];
    bool key_left;
    /* Kept across the round trips to tpmd (locked memory, wiped with the op). */
    struct secret *pin, *new_pin, *puk;
    bool has_puk;
    struct anchored a; /* as anchored when the operation began */
    enum op_phase phase;
    bool forward; /* the settled change went forward (the pending generation is current) */
    struct anchored counted; /* the anchored state that counts this attempt */
    bool used_reservation; /* ... counted in advance: no NV write before this try */
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
    secret_free(op->carry_puk);
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
    op->seq = ++c->token->ops;
}

/* A cancelled start (tokens_cancel_key) let go of the token at once, but its try was counted
 * and may be at scd. Its answer still settles the count (a right PIN resets it, a try scd never
 * saw is taken back), or cancelled starts with the right PIN would use up the tries (found by
 * review, docs/SECURITY.md) — but only while no other operation has begun since: that one read, and counts
 * from, the state this one left, and a write from here could undo its count. */
static bool cancelled_may_count(const struct container *c, const struct token_op *op)
{
    return op->cancelled && !c->token->busy && c->token->ops == op->seq;
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
    spec->type =
        t->kind == TOKEN_KIND_PKCS11 ? TRUSTME__SCD__TOKEN_TYPE__TOKEN_PKCS11 : TRUSTME__SCD__TOKEN_TYPE__TOKEN_SOFT;
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
    c->token->state = (struct token_state){.known = true,
                                           .paired = st->paired,
                                           .locked = st->locked,
                                           .blocked = st->blocked,
                                           .pin_tries_left = st->pin_tries_left,
                                           .puk_tries_left = st->puk_tries_left,
                                           .anchor_unknown = old.anchor_unknown};
    if (old.anchored && st->paired) {
        struct anchored a = {.present = true, .pin = old.pin_failures, .puk = old.puk_failures};
        show_anchored(c, &a);
    }
}

static void note_status(struct container *c, const struct token_op *op, const Trustme__Scd__TokenStatus *st,
                        const tm_err *err)
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
        if ((k == 2 && v < 0x80) || (k == 3 && v < 0x800) || (k == 4 && v < 0x10000) || v > 0x10ffff ||
            (v >= 0xd800 && v <= 0xdfff))
            return -1;
        if (n == max)
            return -1;
        cp[n++] = v;
        i += k;
    }
    return (int)n;
}

int tokens_check_pin_policy(const struct daemon *d, const ProtobufCBinaryData *pin, const char *what, tm_err *err)
{
    uint32_t cp[64];
    const uint8_t *s = pin->data;
    size_t len = pin->len;
    if (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        return tm_err_set(err, EINVAL,
                          "the %s ends in a line break (\\r or \\n): the client "
                          "should have stripped it (a PIN file with CRLF line endings?)",
                          what);
    int n = len ? utf8_decode(s, len, cp, 64) : 0;
    if (n < 0)
        return tm_err_set(err, EINVAL, "the %s is not valid UTF-8 (or longer than 64 characters)", what);
    for (int i = 0; i < n; i++)
        if (cp[i] < 0x20 || cp[i] == 0x7f)
            return tm_err_set(err, EINVAL, "the %s contains a control character", what);
    unsigned min = d->device.pin_min_length ? d->device.pin_min_length : 4;
    if ((unsigned)n < min)
        return tm_err_set(err, EINVAL,
                          "the %s is too short: at least %u characters (device.json "
                          "pin.min_length)",
                          what, min);
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
        return tm_err_set(err, EINVAL,
                          "the %s is trivial (%s): choose another (device.json "
                          "pin.allow_trivial permits such PINs)",
                          what, same ? "one character repeated" : "a run like 1234 or 4321");
    return 0;
}

/* device.json tpm.require_hardware on an emulated TPM: no encrypted container at all. */
static int check_hardware(const struct container *c, tm_err *err)
{
    if (!c->d->device.tpm_require_hardware || !tpmd_emulated(c->d))
        return 0;
    return tm_err_set(err, EPERM,
                      "%s: its data is encrypted, and device.json sets "
                      "tpm.require_hardware, but the TPM is an emulator (%s): refused",
                      c->cfg->name, c->d->device.tpm_tcti);
}

int tokens_check_start(const struct container *c, bool have_pin, bool *ret_pin_required, tm_err *err)
{
    *ret_pin_required = false;
    if (!container_encrypted(c))
        return 0;
    const char *name = c->cfg->name;
    int r = check_hardware(c, err);
    if (r < 0)
        return r;
    if (c->token->busy)
        return tm_err_set(err, EBUSY, "%s: another operation on its token is under way; try again", name);
    if (c->token->state.known && !c->token->state.paired)
        return tm_err_set(err, ENOKEY,
                          "%s has no PIN yet: set one with 'trustme change-pin %s' "
                          "(this pairs its %s token)",
                          name, name, token_kind_name(c->cfg->token.kind));
    if (c->token->state.blocked)
        return tm_err_set(err, EKEYREVOKED,
                          "%s: its token is blocked after too many wrong PUKs; "
                          "only 'trustme wipe %s' helps (its data is lost)",
                          name, name);
    if (c->token->state.locked)
        return tm_err_set(err, EPERM,
                          "%s: its token is locked after too many wrong PINs; unlock "
                          "it with 'trustme token unlock %s'",
                          name, name);
    if (!have_pin) {
        *ret_pin_required = true;
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it", name);
    }
    return 0;
}

/* ---- the data key ------------------------------------------------------------------------------ */

static int begin(struct daemon *d, struct token_op *op, struct container *c, tm_err *err);

static int get_key(struct container *c, const ProtobufCBinaryData *pin, const ProtobufCBinaryData *puk,
                   token_key_fn done, token_carry_fn carry_done, tm_err *err)
{
    if (!pin)
        return tm_err_set(err, ENOKEY, "%s: its data is encrypted; its PIN is needed to start it", c->cfg->name);
    int r = check_hardware(c, err);
    if (r < 0)
        return r;
    struct token_op *op = op_new(c, OP_KEY, NULL);
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->key_done = done;
    op->carry_done = carry_done;
    clock_gettime(CLOCK_MONOTONIC, &op->began);
    r = keep(pin, &op->pin, err);
    if (r == 0 && puk)
        r = keep(puk, &op->carry_puk, err);
    if (r < 0 || (r = begin(c->d, op, c, err)) < 0) {
        op_free(op);
        return r;
    }
    hold(c, op);
    c->token->key_op = op;
    return 0;
}

int tokens_get_key(struct container *c, const ProtobufCBinaryData *pin, token_key_fn done, tm_err *err)
{
    return get_key(c, pin, NULL, done, NULL, err);
}

int tokens_get_key_carried(struct container *c, const ProtobufCBinaryData *pin, const ProtobufCBinaryData *puk,
                           token_carry_fn done, tm_err *err)
{
    if (!puk || puk->len == 0)
        return tm_err_set(err, EINVAL, "%s: the PUK is needed too: the target's token keeps the same PIN and PUK",
                          c->cfg->name);
    return get_key(c, pin, puk, NULL, done, err);
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
static int take_key(struct container *c, const struct token_op *op, const Trustme__Scd__Key *k, struct secret **ret,
                    tm_err *err)
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
        char dir[PATH_MAX];
        container_data_dir(c, dir, sizeof(dir));
        tokens_migrated_remove(dir); /* wrapped by the token now */
    }
    int r = secret_new(DATA_KEY_LEN, ret, err);
    if (r < 0)
        return r;
    memcpy((*ret)->data, k->key.data, DATA_KEY_LEN);
    return 0;
}

/* The token as scd carried it, with the counts the export's try left in the TPM. */
static int carried_of(const struct token_op *op, const Trustme__Scd__Key *k, struct tokens_carried **ret, tm_err *err)
{
    const Trustme__Scd__TokenCarry *tc = k->carry;
    if (!tc || !tc->has_kdf_n || !tc->has_pin_salt || tc->pin_salt.len != TOKENS_CARRY_SALT_LEN || !tc->has_puk_salt ||
        tc->puk_salt.len != TOKENS_CARRY_SALT_LEN || !tc->has_pin_ikm || tc->pin_ikm.len != TOKENS_CARRY_IKM_LEN ||
        !tc->has_puk_ikm || tc->puk_ikm.len != TOKENS_CARRY_IKM_LEN)
        return tm_err_set(err, EPROTO, "the token service sent a malformed carried token");
    struct tokens_carried *t = calloc(1, sizeof(*t));
    if (!t)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = secret_new(2 * TOKENS_CARRY_IKM_LEN, &t->ikm, err);
    if (r < 0) {
        free(t);
        return r;
    }
    t->pin_failures = 0; /* the export's right PIN reset it, as every right PIN does */
    t->puk_failures = op->a.puk; /* a right PUK here resets nothing (tokens_carry.h) */
    t->kdf_n = tc->kdf_n;
    memcpy(t->pin_salt, tc->pin_salt.data, TOKENS_CARRY_SALT_LEN);
    memcpy(t->puk_salt, tc->puk_salt.data, TOKENS_CARRY_SALT_LEN);
    memcpy(t->ikm->data, tc->pin_ikm.data, TOKENS_CARRY_IKM_LEN);
    memcpy(t->ikm->data + TOKENS_CARRY_IKM_LEN, tc->puk_ikm.data, TOKENS_CARRY_IKM_LEN);
    *ret = t;
    return 0;
}

static void key_reply(struct container *c, struct token_op *op, const ScdResponse *resp, const tm_err *err)
{
    tm_err kerr = {0};
    struct secret *key = NULL;
    if (err) {
        daemon_audit(c->d, "token.unlock", "fail", c, op->actor, "%s token: %s", token_kind_name(c->cfg->token.kind),
                     err->msg);
    } else {
        /* The PIN was right, whatever happens to the key now. */
        daemon_audit(c->d, "token.unlock", "ok", c, op->actor, "%s token%s", token_kind_name(c->cfg->token.kind),
                     op->new_key ? ", new data key" : "");
        if (op->cancelled)
            ; /* nobody takes the key (a new one is not stored: the next start makes one) */
        else if (resp->body_case != TRUSTME__SCD__RESPONSE__BODY_KEY)
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
    if (!op->carry_done) {
        op->key_done(c, key, err);
        return;
    }
    struct tokens_carried *t = NULL;
    if (key && !err && carried_of(op, resp->key, &t, &kerr) < 0) {
        secret_free(key);
        key = NULL;
        err = &kerr;
    }
    op->carry_done(c, key, t, err);
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
    snprintf(path + strlen(path), sizeof(path) - strlen(path), ".new");
    if ((r = destroy_file(path, err)) < 0)
        return r;
    snprintf(path, sizeof(path), "%s/" TOKENS_MIGRATED_FILE, dir); /* a carried key not yet wrapped */
    if ((r = destroy_file(path, err)) < 0)
        return r;
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
    if (!err)
        test_crash_point(d->data_dir, "trustmed-wiped"); /* keys and image erased, not removed */
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
    keystore_svc_wiped(c);
    if (!op->remove) /* a removed container's vTPM goes with it (its observer) */
        vtpm_wiped(c);
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
 * state"). Every PIN or PUK attempt is counted there before scd sees the secret (one NV write,
 * or a try reserved in advance by the last success: "reservations" below), so no file operation
 * and no kill of trustmed or scd at the right moment gives an uncounted guess; a success resets
 * the count (an NV write not waited for by a start, or none at all). scd refuses
 * token files whose digest is not the anchored one. Each container has its own count: the TPM's
 * global dictionary-attack lockout is not involved (the index is owner-authorised and noda). */

static void anchor_name(const char *uuid, char out[64])
{
    snprintf(out, 64, "token/%s", uuid);
}

void tokens_anchor_name(const char *uuid, char out[64])
{
    anchor_name(uuid, out);
}

_Static_assert(TOKENS_ANCHOR_LEN == ANCHOR_LEN, "the token anchor's length");

void tokens_anchor_value(uint8_t pin_failures, uint8_t puk_failures, const uint8_t files[32],
                         uint8_t out[TOKENS_ANCHOR_LEN])
{
    out[0] = ANCHOR_FORMAT, out[1] = pin_failures, out[2] = puk_failures;
    memcpy(out + 3, files, 32);
}

/* ---- reservations ----------------------------------------------------------------------------
 *
 * Counting a try before scd sees the PIN costs an NV write (and tpmd's file syncs) on every
 * start's awaited path. After a right PIN, trustmed therefore anchors the count as 1 and marks
 * that one try as reserved by this trustmed process (a random session id): the next PIN try of
 * this process is counted already and needs no write, and a right PIN then leaves the anchored
 * state as it was (no write at all). A reservation is used at most once
 * (c->token->reserve_spent, until a new one is anchored or a right PIN renews it); a wrong PIN
 * leaves it used, so the count it holds stands. Another process — trustmed restarted, also
 * after kill -9 in the middle of a try — cannot tell whether the reservation was used, so it
 * counts it as a failure: the count is then one too high until the next right PIN, never too
 * low. A clean shutdown gives unused reservations back (tokens_release_reservations). */

static uint8_t session_id[SESSION_LEN];
static bool session_ready;

static const uint8_t *session(void)
{
    tm_err e;
    if (!session_ready && secure_random(session_id, sizeof(session_id), &e) == 0)
        session_ready = true;
    return session_ready ? session_id : NULL;
}

static bool reservation_valid(const struct container *c, const struct anchored *a)
{
    const uint8_t *s = session();
    return a->reserved && a->pin > 0 && s && memcmp(a->reserved_by, s, SESSION_LEN) == 0 && !c->token->reserve_spent;
}

/* Wrong PINs, by the anchored count (less a reservation this process has not used). */
static unsigned pin_failures(const struct container *c, const struct anchored *a)
{
    return a->pin - (reservation_valid(c, a) ? 1 : 0);
}

/* The state after a right PIN: no failures, one try reserved for this process. */
static void reserve(struct anchored *n)
{
    const uint8_t *s = session();
    n->pin = s ? 1 : 0;
    n->reserved = s != NULL;
    if (s)
        memcpy(n->reserved_by, s, SESSION_LEN);
}

static void show_anchored(struct container *c, const struct anchored *a)
{
    if (!a->present)
        return;
    unsigned pin = pin_failures(c, a);
    c->token->state.anchored = true;
    c->token->state.anchor_unknown = false;
    c->token->state.pin_failures = (uint8_t)pin;
    c->token->state.puk_failures = a->puk;
    c->token->state.locked = pin >= PIN_TRIES;
    c->token->state.blocked = a->puk >= PUK_TRIES;
    c->token->state.pin_tries_left = pin >= PIN_TRIES ? 0 : PIN_TRIES - pin;
    c->token->state.puk_tries_left = a->puk >= PUK_TRIES ? 0 : PUK_TRIES - a->puk;
}

static int anchored_parse(const Trustme__Tpmd__Response *resp, const char *uuid, struct anchored *a, tm_err *err)
{
    char name[64];
    anchor_name(uuid, name);
    const ProtobufCBinaryData *v = tpmd_anchor_value(resp, name);
    *a = (struct anchored){0};
    if (!v)
        return 0;
    bool pending = v->len == ANCHOR_LEN_PENDING && v->data[0] == ANCHOR_FORMAT_PENDING;
    bool reserved = v->len == ANCHOR_LEN_RESERVED && v->data[0] == ANCHOR_FORMAT_RESERVED;
    if (!pending && !reserved && (v->len != ANCHOR_LEN || v->data[0] != ANCHOR_FORMAT))
        return tm_err_set(err, EBADMSG,
                          "the token state anchored in the TPM is malformed "
                          "(%zu bytes)",
                          v->len);
    a->present = true;
    a->pin = v->data[1];
    a->puk = v->data[2];
    memcpy(a->files, v->data + 3, 32);
    if (reserved) {
        if (a->pin == 0)
            return tm_err_set(err, EBADMSG,
                              "the token state anchored in the TPM reserves a try "
                              "it does not count");
        a->reserved = true;
        memcpy(a->reserved_by, v->data + ANCHOR_LEN, SESSION_LEN);
    }
    if (!pending)
        return 0;
    if (v->data[ANCHOR_LEN] & ~ANCHOR_PENDING_KEY)
        return tm_err_set(err, EBADMSG, "the token state anchored in the TPM has unknown flags");
    a->pending = true;
    a->pending_key = v->data[ANCHOR_LEN] & ANCHOR_PENDING_KEY;
    memcpy(a->pending_files, v->data + ANCHOR_LEN + 1, 32);
    memcpy(a->pending_key_sha256, v->data + ANCHOR_LEN + 1 + 32, 32);
    return 0;
}

static int anchor_read(struct daemon *d, const char *uuid, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    char name[64];
    anchor_name(uuid, name);
    const char *const names[] = {name};
    return tpmd_anchor_get(d, names, 1, fn, userdata, err);
}

static void forget_note(const char *uuid);

/* One NV write: the new state, or (!a->present) none. */
static int anchor_write(struct daemon *d, const char *uuid, const struct anchored *a, tpmd_reply_fn fn, void *userdata,
                        tm_err *err)
{
    /* Whatever reservation was noted for uuid is not the anchored state any more (a wipe, a
     * count, a change): a clean shutdown must not write it back. */
    forget_note(uuid);
    char name[64];
    anchor_name(uuid, name);
    bool reserved = !a->pending && a->reserved;
    uint8_t v[ANCHOR_LEN_PENDING] = {a->pending ? ANCHOR_FORMAT_PENDING
                                     : reserved ? ANCHOR_FORMAT_RESERVED
                                                : ANCHOR_FORMAT,
                                     a->pin, a->puk};
    memcpy(v + 3, a->files, 32);
    if (reserved)
        memcpy(v + ANCHOR_LEN, a->reserved_by, SESSION_LEN);
    if (a->pending) {
        v[ANCHOR_LEN] = a->pending_key ? ANCHOR_PENDING_KEY : 0;
        memcpy(v + ANCHOR_LEN + 1, a->pending_files, 32);
        memcpy(v + ANCHOR_LEN + 1 + 32, a->pending_key_sha256, 32);
    }
    struct tpmd_anchor_entry e = {.name = name,
                                  .value = v,
                                  .len = a->pending ? ANCHOR_LEN_PENDING
                                         : reserved ? ANCHOR_LEN_RESERVED
                                                    : ANCHOR_LEN,
                                  .remove = !a->present};
    return tpmd_anchor_update(d, &e, 1, NULL, 0, fn, userdata, err);
}

/* A write nobody waits for (a reset after a success, a refund): a failure leaves the count
 * higher than it should be, never lower. */
static void on_background_write(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                                void *userdata)
{
    if (err)
        log_error("cannot update a token's state anchored in the TPM: %s", err->msg);
}

static void write_background(struct container *c, const struct anchored *a);

static bool anchored_same(const struct anchored *x, const struct anchored *y)
{
    return x->present == y->present && x->pin == y->pin && x->puk == y->puk && memcmp(x->files, y->files, 32) == 0 &&
           !x->pending && !y->pending && x->reserved == y->reserved &&
           (!x->reserved || memcmp(x->reserved_by, y->reserved_by, SESSION_LEN) == 0);
}

/* The reservations this process holds, unused, by container: what a clean shutdown gives back. */
struct reservation_note {
    struct reservation_note *next;
    char uuid[TM_UUID_STR_LEN + 1];
    struct anchored a;
};
static struct reservation_note *notes;
static bool released; /* the shutdown's release is under way or done */

static void forget_note(const char *uuid)
{
    for (struct reservation_note **p = &notes; *p; p = &(*p)->next)
        if (strcmp((*p)->uuid, uuid) == 0) {
            struct reservation_note *r = *p;
            *p = r->next;
            free(r);
            return;
        }
}

static void note_reservation(const struct container *c, const struct anchored *a)
{
    /* Too late to give it back (the shutdown's release is written or under way): the count
     * errs high after the restart, and the release, which waits for !notes, still ends. */
    if (released)
        return;
    struct reservation_note **p = &notes;
    while (*p && strcmp((*p)->uuid, c->uuid) != 0)
        p = &(*p)->next;
    if (!*p && !(*p = calloc(1, sizeof(**p))))
        return; /* then it is not given back: the count errs high after a restart */
    snprintf((*p)->uuid, sizeof((*p)->uuid), "%s", c->uuid);
    (*p)->a = *a;
}

static void on_reserved_written(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                                void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = container_find(d, op->uuid);
    if (err)
        log_error("cannot update a token's state anchored in the TPM: %s", err->msg);
    else if (c) {
        c->token->reserve_spent = false; /* the new reservation is anchored */
        note_reservation(c, &op->a);
        show_anchored(c, &op->a); /* and no longer counts as a failure */
    }
    op_free(op);
}

/* Like write_background, for a state with a new reservation: usable once it is anchored. */
static void write_reserved(struct container *c, const struct anchored *a)
{
    tm_err e;
    struct token_op *op = op_new(c, OP_REFRESH, NULL);
    if (!op) {
        write_background(c, a);
        return;
    }
    op->a = *a;
    if (anchor_write(c->d, c->uuid, a, on_reserved_written, op, &e) < 0) {
        log_error("%s: cannot update its token's state anchored in the TPM: %s", c->cfg->name, e.msg);
        op_free(op);
    }
    show_anchored(c, a);
}

static void on_released(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    if (err)
        log_warn("cannot give back the reserved PIN tries: %s (each such token counts one wrong "
                 "PIN after the restart)",
                 err->msg);
    daemon_maybe_exit(d);
}

bool tokens_release_reservations(struct daemon *d)
{
    if (released)
        return !notes;
    released = true;
    struct tpmd_anchor_entry e[64];
    uint8_t v[64][ANCHOR_LEN];
    char names[64][64];
    size_t n = 0;
    for (struct reservation_note *r = notes; r && n < 64; r = r->next) {
        struct container *c = container_find(d, r->uuid);
        if (!c || c->token->busy || !reservation_valid(c, &r->a))
            continue;
        struct anchored a = r->a;
        a.pin--; /* unused: not a try */
        a.reserved = false;
        anchor_name(r->uuid, names[n]);
        v[n][0] = ANCHOR_FORMAT, v[n][1] = a.pin, v[n][2] = a.puk;
        memcpy(v[n] + 3, a.files, 32);
        e[n] = (struct tpmd_anchor_entry){.name = names[n], .value = v[n], .len = ANCHOR_LEN};
        n++;
    }
    while (notes) {
        struct reservation_note *r = notes;
        notes = r->next;
        free(r);
    }
    tm_err err;
    if (n == 0 || tpmd_anchor_update(d, e, n, NULL, 0, on_released, NULL, &err) < 0)
        return true;
    notes = NULL;
    return false;
}

static void write_background(struct container *c, const struct anchored *a)
{
    tm_err e;
    if (anchor_write(c->d, c->uuid, a, on_background_write, NULL, &e) < 0)
        log_error("%s: cannot update its token's state anchored in the TPM: %s", c->cfg->name, e.msg);
    show_anchored(c, a);
}

static struct container *op_container(struct daemon *d, struct token_op *op);

static void on_refresh_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
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
    case OP_WIPE: wipe_done(d, op, c, err); return;
    case OP_PAIR:
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK:
        daemon_audit(d, op_events[op->kind], "fail", c, op->actor, "%s token: %s", token_kind_name(c->cfg->token.kind),
                     err->msg);
        break;
    case OP_REFRESH: op_free(op); return;
    }
    op->code = err->code;
    snprintf(op->msg, sizeof(op->msg), "%s: %s", c->cfg->name, err->msg);
    finish(d, op, c);
}

/* The container's wrapped data key into *ret_wrapped (NULL when there is none yet: before the
 * first start since pairing or wipe). */
static int read_wrapped(const struct container *c, char **ret_wrapped, size_t *ret_len, tm_err *err)
{
    char path[PATH_MAX];
    tokens_key_path(c, path, sizeof(path));
    int r = read_file(path, 4096, ret_wrapped, ret_len, err);
    if (r < 0 && err->code != ENOENT)
        return r;
    if (r < 0)
        *ret_wrapped = NULL;
    return 0;
}

/* What ChangePin and Unlock share: the container, the new PIN and the current wrapped key. */
static void rekey_fields(struct container *c, const struct token_op *op, char *blob, size_t len, char **ret_uuid,
                         protobuf_c_boolean *ret_has_new_pin, ProtobufCBinaryData *ret_new_pin,
                         protobuf_c_boolean *ret_has_wrapped, ProtobufCBinaryData *ret_wrapped)
{
    *ret_uuid = c->uuid;
    *ret_has_new_pin = true;
    *ret_new_pin = bytes_of(op->new_pin);
    *ret_has_wrapped = blob != NULL;
    *ret_wrapped = (ProtobufCBinaryData){.data = (uint8_t *)blob, .len = len};
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
    _cleanup_secret_ struct secret *carried = NULL;
    size_t len = 0;
    if (op->a.present) {
        req.has_token_anchor = true;
        req.token_anchor = (ProtobufCBinaryData){.len = 32, .data = op->a.files};
    }
    /* A start unwraps the data key, re-keying re-wraps it: both need the current blob (none
     * before the first start). */
    if (op->kind == OP_KEY || op->kind == OP_CHANGE_PIN || op->kind == OP_PUK_UNLOCK) {
        int r = read_wrapped(c, &wrapped, &len, err);
        if (r < 0)
            return r;
    }
    switch (op->kind) {
    case OP_KEY: {
        op->new_key = !wrapped; /* the first start since pairing or wipe */
        if (op->new_key) {
            /* A migrated container's first start wraps the data key that came with it. */
            char dir[PATH_MAX];
            container_data_dir(c, dir, sizeof(dir));
            tm_err merr = {0};
            int mr = tokens_migrated_load(d, dir, c->uuid, &carried, &merr);
            if (mr < 0 && mr != -ENOENT)
                return tm_err_set(err, -mr, "%s", merr.msg);
            if (carried) {
                nk.has_key = true;
                nk.key = (ProtobufCBinaryData){.len = carried->len, .data = carried->data};
            }
            nk.uuid = c->uuid;
            nk.has_pin = true;
            nk.pin = bytes_of(op->pin);
            nk.has_carry_puk = op->carry_puk != NULL;
            nk.carry_puk = bytes_of(op->carry_puk);
            req.body_case = TRUSTME__SCD__REQUEST__BODY_NEW_KEY;
            req.new_key = &nk;
        } else {
            uw.uuid = c->uuid;
            uw.has_pin = uw.has_wrapped = true;
            uw.pin = bytes_of(op->pin);
            uw.wrapped = (ProtobufCBinaryData){.data = (uint8_t *)wrapped, .len = len};
            uw.has_carry_puk = op->carry_puk != NULL;
            uw.carry_puk = bytes_of(op->carry_puk);
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
        rekey_fields(c, op, wrapped, len, &cp.uuid, &cp.has_new_pin, &cp.new_pin, &cp.has_wrapped, &cp.wrapped);
        cp.has_old_pin = true;
        cp.old_pin = bytes_of(op->pin);
        req.body_case = TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN;
        req.change_pin = &cp;
        break;
    case OP_PUK_UNLOCK:
        rekey_fields(c, op, wrapped, len, &ul.uuid, &ul.has_new_pin, &ul.new_pin, &ul.has_wrapped, &ul.wrapped);
        ul.has_puk = true;
        ul.puk = bytes_of(op->puk);
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
    case OP_REFRESH: return send_status(d, op, err);
    }
    return scd_call(d, &req, on_reply, op, err);
}

static void count_attempt(struct daemon *d, struct token_op *op, struct container *c);

/* ---- the two-phase change -----------------------------------------------------------------
 *
 * A PIN change or PUK unlock of a soft token re-keys it: scd writes the new token file as
 * <uuid>.soft.new and answers with its digest and the data key re-wrapped; trustmed writes that
 * as key.wrapped.new, anchors both digests beside the current one (format 2: one NV write), has
 * scd rename its file (TokenCommit), renames its own, and anchors the new generation alone. At
 * the start of every later token operation an anchored pending change is settled the same way
 * (a kill -9 of scd or trustmed at any step leaves either generation usable, never neither), and
 * pending files nobody anchored are removed, never used. */

static void key_new_path(const struct container *c, char *out, size_t size)
{
    tokens_key_path(c, out, size);
    snprintf(out + strlen(out), size - strlen(out), ".new");
}

static bool file_has_digest(const char *path, const uint8_t want[32])
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    uint8_t got[32];
    tm_err e;
    return read_file(path, 4096, &data, &len, &e) == 0 && tm_sha256(data, len, got) == 0 && memcmp(got, want, 32) == 0;
}

/* key.wrapped after a settled change: forward, key.wrapped.new with the anchored digest is
 * renamed into place; any other key.wrapped.new is removed. */
static void settle_key_file(struct container *c, const struct anchored *a, bool forward)
{
    char path[PATH_MAX], newpath[PATH_MAX];
    tokens_key_path(c, path, sizeof(path));
    key_new_path(c, newpath, sizeof(newpath));
    if (forward && a->pending_key && file_has_digest(newpath, a->pending_key_sha256)) {
        if (rename(newpath, path) < 0)
            log_error("%s: cannot rename %s: %m", c->cfg->name, newpath);
        fsync_parent(path);
        c->token->key_stored = true;
        return;
    }
    if (unlink(newpath) == 0)
        fsync_parent(newpath);
    else if (errno != ENOENT)
        log_error("%s: cannot remove %s: %m", c->cfg->name, newpath);
    if (forward && a->pending_key && !file_has_digest(path, a->pending_key_sha256))
        log_error("%s: the data key re-wrapped by its last PIN change is missing (%s was "
                  "removed?): its data cannot be opened",
                  c->cfg->name, newpath);
}

static void on_reply(struct daemon *d, const ScdResponse *resp, const tm_err *err, void *userdata);

/* Ask scd to put the pending token file of op->a in place (or drop it). */
static int send_commit(struct daemon *d, struct token_op *op, tm_err *err)
{
    Trustme__Scd__TokenCommit tc = TRUSTME__SCD__TOKEN_COMMIT__INIT;
    tc.uuid = op->uuid;
    tc.has_pending_sha256 = true;
    tc.pending_sha256 = (ProtobufCBinaryData){.len = 32, .data = op->a.pending_files};
    ScdRequest req = TRUSTME__SCD__REQUEST__INIT;
    req.has_token_anchor = true;
    req.token_anchor = (ProtobufCBinaryData){.len = 32, .data = op->a.files};
    req.body_case = TRUSTME__SCD__REQUEST__BODY_TOKEN_COMMIT;
    req.token_commit = &tc;
    return scd_call(d, &req, on_reply, op, err);
}

static void on_settled(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata);

/* The settled generation is anchored alone. */
static void on_resolved(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    enum op_phase phase = op->phase;
    op->phase = PHASE_NONE;
    if (phase == PHASE_COMMIT) {
        tm_err e;
        if (!op->forward) {
            tm_err_set(&e, EIO, "the change was not made: its pending token file is gone");
            op_fail(d, op, c, &e);
            return;
        }
        if (err) {
            /* The pending digests stay anchored: the next use finishes this step. */
            tm_err_set(&e, err->code,
                       "the change is made, but its last step was not anchored "
                       "in the TPM; the token's next use completes it: %s",
                       err->msg);
            op_fail(d, op, c, &e);
            return;
        }
        on_settled(d, resp, err, op);
        return;
    }
    if (err) {
        tm_err e;
        tm_err_set(&e, err->code, "cannot anchor the token's settled change in the TPM: %s", err->msg);
        op_fail(d, op, c, &e);
        return;
    }
    show_anchored(c, &op->a);
    count_attempt(d, op, c);
}

/* scd answered TokenCommit: its files are now one of the two anchored generations. */
static void commit_reply(struct daemon *d, struct token_op *op, struct container *c, const ScdResponse *resp,
                         const tm_err *err)
{
    tm_err e = {0};
    if (err) {
        if (op->phase == PHASE_COMMIT)
            tm_err_set(&e, err->code,
                       "the change is anchored but not yet in place; the token's "
                       "next use completes it: %s",
                       err->msg);
        else
            tm_err_set(&e, err->code, "cannot complete the token's pending change: %s", err->msg);
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
        return;
    }
    if (!resp->token || !resp->token->has_files_sha256 || resp->token->files_sha256.len != 32) {
        tm_err_set(&e, EPROTO, "the token service did not say what its token files are now");
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
        return;
    }
    const uint8_t *now = resp->token->files_sha256.data;
    struct anchored n = op->a;
    op->forward = memcmp(now, op->a.pending_files, 32) == 0;
    if (op->forward)
        memcpy(n.files, now, 32);
    settle_key_file(c, &op->a, op->forward);
    test_crash_point(d->data_dir, "trustmed-committed");
    n.pending = n.pending_key = false;
    memset(n.pending_files, 0, 32);
    memset(n.pending_key_sha256, 0, 32);
    op->a = n;
    if (anchor_write(d, op->uuid, &n, on_resolved, op, &e) < 0) {
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
    }
}

/* The change's pending digests are anchored: from here on it goes forward. */
static void on_pending_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                                void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    tm_err e = {0};
    if (err && err->code == ESHUTDOWN) {
        /* tpmd died before it answered: the TPM may have written the pending digests. */
        tm_err_set(&e, err->code,
                   "the TPM service stopped before it confirmed the change: the "
                   "token's next use settles it (the new PIN if the TPM anchored it, otherwise "
                   "the old one): %s",
                   err->msg);
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
        return;
    }
    if (err) {
        tm_err_set(&e, err->code,
                   "the new PIN could not be anchored in the TPM; the old one "
                   "stays: %s",
                   err->msg);
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
        return;
    }
    test_crash_point(d->data_dir, "trustmed-pending-anchored");
    if (send_commit(d, op, &e) < 0) {
        tm_err_prefix(&e, "the change is anchored but not yet in place; the token's next use "
                          "completes it");
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
    }
}

/* scd re-keyed the token (ChangePin, Unlock): store the re-wrapped key as pending, anchor. */
static void rekeyed_reply(struct daemon *d, struct token_op *op, struct container *c, const Trustme__Scd__Rekeyed *k,
                          struct anchored *n)
{
    tm_err e = {0};
    if (!k->has_pending_sha256 || k->pending_sha256.len != 32 ||
        (k->has_wrapped && k->wrapped.len != WRAPPED_KEY_LEN)) {
        tm_err_set(&e, EPROTO, "the token service sent a malformed answer to a re-key");
        op_fail(d, op, c, &e);
        return;
    }
    n->pending = true;
    memcpy(n->pending_files, k->pending_sha256.data, 32);
    if (k->has_wrapped) {
        char path[PATH_MAX];
        key_new_path(c, path, sizeof(path));
        if (write_file_atomic(path, k->wrapped.data, k->wrapped.len, 0600, &e) < 0) {
            tm_err_prefix(&e, "cannot store the re-wrapped data key; the old PIN stays");
            op_fail(d, op, c, &e);
            return;
        }
        n->pending_key = true;
        tm_sha256(k->wrapped.data, k->wrapped.len, n->pending_key_sha256);
    }
    test_crash_point(d->data_dir, "trustmed-pending-written");
    op->a = *n;
    op->phase = PHASE_COMMIT;
    show_anchored(c, n);
    if (anchor_write(d, op->uuid, n, on_pending_anchored, op, &e) < 0) {
        op->phase = PHASE_NONE;
        op_fail(d, op, c, &e);
    }
}

static void on_counted(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = container_find(d, op->uuid);
    if (c && !err && cancelled_may_count(c, op))
        write_background(c, &op->a); /* the start is gone before scd saw the PIN */
    if (!(c = op_container(d, op)))
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

static void on_anchor_read(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
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
        tm_err_set(&e, ESTALE,
                   "the TPM holds no state for its token: the token was wiped (are its "
                   "files restored from a copy?) or paired by an older trustme; wipe the container "
                   "('trustme wipe %s') and set a PIN again",
                   c->cfg->name);
        op_fail(d, op, c, &e);
        return;
    }
    show_anchored(c, &op->a);
    if (op->a.pending) {
        /* A change anchored but perhaps not in place (trustmed or scd died during it): settle
         * it first; the anchor says which generation is current. */
        op->phase = PHASE_RESOLVE;
        if (send_commit(d, op, &e) < 0)
            op_fail(d, op, c, &e);
        return;
    }
    settle_key_file(c, &op->a, false); /* a key.wrapped.new nobody anchored */
    count_attempt(d, op, c);
}

/* The anchored state is in op->a, with nothing pending: check the limits and count the attempt
 * (one NV write) before scd sees the secret. */
static void count_attempt(struct daemon *d, struct token_op *op, struct container *c)
{
    tm_err e = {0};
    struct anchored counted = op->a;
    if (op->a.puk >= PUK_TRIES)
        tm_err_set(&e, EKEYREVOKED,
                   "token blocked for good after %d wrong PUKs: only a wipe "
                   "helps (trustme wipe), and the container's data is lost",
                   PUK_TRIES);
    else if (op->kind != OP_PUK_UNLOCK && pin_failures(c, &op->a) >= PIN_TRIES)
        tm_err_set(&e, EPERM,
                   "locked after %d wrong PINs: unlock it with the PUK (trustme token "
                   "unlock)",
                   PIN_TRIES);
    if (e.code) {
        op_fail(d, op, c, &e);
        return;
    }
    if (op->kind != OP_PUK_UNLOCK && !op->carry_puk && reservation_valid(c, &op->a)) {
        /* Counted in advance: the try goes to scd at once. */
        c->token->reserve_spent = true;
        op->used_reservation = true;
        op->counted = counted;
        show_anchored(c, &counted);
        if (send_scd(d, op, c, &e) < 0)
            op_fail(d, op, c, &e); /* the reservation stays used: the count errs high */
        else
            test_crash_point(d->data_dir, "trustmed-reserved-try-sent");
        return;
    }
    if (op->kind == OP_PUK_UNLOCK) {
        counted.puk++;
        /* A PUK try is no PIN try: an unused reservation of this process goes back in the same
         * write (as at a clean shutdown), or a mistyped PUK would cost a PIN try. */
        if (reservation_valid(c, &op->a)) {
            counted.pin--;
            c->token->reserve_spent = true;
        }
    } else if (op->carry_puk) {
        /* An export that checks the PUK: one PIN try and one PUK try, in one write (a reservation
         * of this process counts the PIN's). */
        counted.puk++;
        if (reservation_valid(c, &op->a))
            c->token->reserve_spent = op->used_reservation = true;
        else
            counted.pin++;
    } else {
        counted.pin++;
    }
    counted.reserved = false; /* a reservation of another process, or used: it counts */
    op->counted = counted;
    if (anchor_write(d, op->uuid, &counted, on_counted, op, &e) < 0)
        op_fail(d, op, c, &e);
    else
        show_anchored(c, &counted);
}

static void on_unanchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
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

static void on_settled(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct token_op *op = userdata;
    struct container *c = op_container(d, op);
    if (!c)
        return;
    if (err) {
        tm_err e;
        tm_err_set(&e, err->code,
                   "done, but its new token state could not be anchored in the "
                   "TPM, so the token is refused from now on: %s",
                   err->msg);
        op_fail(d, op, c, &e);
        return;
    }
    daemon_audit(d, op_events[op->kind], "ok", c, op->actor, "%s token", token_kind_name(c->cfg->token.kind));
    finish(d, op, c);
}

/* What a wrong PIN or PUK has left, by the anchored count. */
static void wrong_secret(struct container *c, const struct token_op *op, const struct anchored *n, bool puk, tm_err *e)
{
    const char *what = puk ? "PUK" : "PIN";
    int left = (puk ? PUK_TRIES - n->puk : PIN_TRIES - n->pin);
    if (left > 0)
        tm_err_set(e, EACCES, "wrong %s: %d %s left", what, left, left == 1 ? "try" : "tries");
    else if (!puk)
        tm_err_set(e, EACCES,
                   "wrong PIN: the token is now locked after %d wrong PINs: unlock it "
                   "with the PUK (trustme token unlock)",
                   PIN_TRIES);
    else
        tm_err_set(e, EACCES,
                   "wrong PUK: the token is now blocked for good after %d wrong PUKs: "
                   "only a wipe helps, and the container's data is lost",
                   PUK_TRIES);
    if (left <= 0)
        daemon_audit(c->d, "token.lockout", "fail", c, op->actor, "%s",
                     puk ? "PUK blocked; only a wipe helps"
                         : "PIN locked after too many wrong PINs; unlock with the PUK");
}

/* scd answered an operation that used a PIN or PUK, counted in the anchor before. */
static void counted_reply(struct daemon *d, struct token_op *op, struct container *c, const ScdResponse *resp,
                          const tm_err *err)
{
    struct anchored n = op->counted;
    tm_err e = {0};
    if (err && err->code == EACCES && op->carry_puk) {
        /* An export's PIN and PUK were both counted; scd tries the PUK only after a right PIN. */
        bool puk = strstr(err->msg, "wrong PUK") != NULL;
        if (puk)
            n.pin = 0;
        else
            n.puk = op->a.puk;
        write_background(c, &n);
        wrong_secret(c, op, &n, puk, &e);
        op_fail(d, op, c, &e);
        return;
    }
    if (err && err->code == EACCES) {
        /* Counted already (a reservation it used stays used: its count stands). */
        wrong_secret(c, op, &n, op->kind == OP_PUK_UNLOCK, &e);
        show_anchored(c, &n);
        op_fail(d, op, c, &e);
        return;
    }
    if (err) {
        /* Not the secret's fault: the attempt is taken back (a used reservation is not: the
         * count errs high). */
        if (!op->used_reservation || op->carry_puk)
            write_background(c, &op->a);
        op_fail(d, op, c, err);
        return;
    }
    n.pin = 0;
    n.reserved = false;
    if (op->kind == OP_PUK_UNLOCK)
        n.puk = 0;
    if (op->carry_puk)
        n.puk = op->a.puk; /* the export's right PUK: its try is given back, no count reset */
    if (op->kind != OP_KEY && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_REKEYED) {
        rekeyed_reply(d, op, c, resp->rekeyed, &n);
        return;
    }
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
    /* A start does not wait for the reset: if it is lost, the count stays one too high. It
     * reserves the next try; with the reservation used and renewed, there is nothing to write. */
    reserve(&n);
    if (op->used_reservation && anchored_same(&n, &op->a)) {
        c->token->reserve_spent = false;
        note_reservation(c, &n);
        show_anchored(c, &n);
    } else {
        write_reserved(c, &n);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    log_debug("%s: data key after %.3f ms (anchored count, scd, %s)", c->cfg->name,
              (double)(now.tv_sec - op->began.tv_sec) * 1e3 + (double)(now.tv_nsec - op->began.tv_nsec) / 1e6,
              op->new_key ? "new key" : "unwrap");
    key_reply(c, op, resp, NULL);
    op_free(op);
}

static void on_pair_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
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
    if (op->phase != PHASE_NONE) {
        if (op->cancelled)
            op_free(op); /* a start that is gone; the next use settles the change */
        else
            commit_reply(d, op, c, resp, err);
        return;
    }
    switch (op->kind) {
    case OP_REFRESH:
        if (!err && resp->body_case == TRUSTME__SCD__RESPONSE__BODY_STATUS)
            note_status(c, op, resp->status, NULL);
        op_free(op);
        return;
    case OP_KEY:
        if (op->cancelled && !cancelled_may_count(c, op)) {
            op_free(op); /* the count errs high */
            return;
        }
        counted_reply(d, op, c, resp, err);
        return;
    case OP_CHANGE_PIN:
    case OP_PUK_UNLOCK: counted_reply(d, op, c, resp, err); return;
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
        reply_error(c->d, to->client, to->req_id, EINVAL,
                    "%s has no token (its config says \"token\": \"none\"): its "
                    "data is not encrypted",
                    c->cfg->name);
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

void tokens_change_pin(struct reply_to to_, struct container *c, const Trustme__ChangePinRequest *rq)
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
    if (keep(&rq->new_pin, &op->new_pin, &err) < 0 || (rq->has_old_pin && keep(&rq->old_pin, &op->pin, &err) < 0) ||
        (rq->has_puk && keep(&rq->puk, &op->puk, &err) < 0)) {
        op_free(op);
        reply_error(c->d, to->client, to->req_id, err.code, "%s", err.msg);
        return;
    }
    start_op(to, c, op);
}

void tokens_puk_unlock(struct reply_to to_, struct container *c, const Trustme__TokenUnlockRequest *rq)
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

void tokens_wipe(struct reply_to to_, struct container *c, const ProtobufCBinaryData *pin, bool remove)
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

void tokens_imported(struct container *c)
{
    /* Installed with a token that scd has but this container's state does not know yet. */
    c->token->state.known = false;
    refresh_anchor(c->d, c);
    struct token_op *op = op_new(c, OP_REFRESH, NULL);
    tm_err err;
    if (op && send_status(c->d, op, &err) < 0)
        op_free(op);
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
