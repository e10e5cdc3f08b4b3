/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-scd's request loop: one request at a time from the socket trustmed handed over.
 *
 * scd serves exactly one peer (trustmed) over a socketpair, so a plain blocking loop is enough:
 * a slow request (the KDF of a soft token takes ~100 ms) delays only scd, never trustmed, which
 * talks to it asynchronously. Every request is one SOCK_SEQPACKET packet (packet.h), so bad
 * input — a malformed message, a packet that is not one frame, an oversized one — gets an Error
 * and the loop reads the next packet; only trustmed closing its end stops scd. */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "idle_memory.h"
#include "packet.h"
#include "log.h"
#include "proto.h"
#include "scd.pb-c.h"
#include "token.h"
#include "token_carry.h"
#include "uuid.h"
#include "verify.h"

#define SCD_FRAME_MAX (4u * 1024 * 1024) /* certificate chains and CRLs are the largest */

typedef Trustme__Scd__Request Request;
typedef Trustme__Scd__Response Response;

struct server {
    int fd;
    struct token_ctx ctx; /* the caller's, plus the device secret once it came */
    const struct token_ctx *tctx; /* &ctx */
    struct secret *device_secret;
    char secret_unavailable[512]; /* why trustmed has none to give, if it said so */
    const char *token_uuid; /* the request is about this container's token: report its state */
};

static void fill_status(Trustme__Scd__TokenStatus *ts, const struct token_status *st)
{
    trustme__scd__token_status__init(ts);
    ts->has_paired = ts->has_type = ts->has_locked = ts->has_blocked = true;
    ts->has_pin_tries_left = ts->has_puk_tries_left = true;
    ts->paired = st->paired;
    ts->type = (Trustme__Scd__TokenType)st->type;
    ts->locked = st->locked;
    ts->blocked = st->blocked;
    ts->pin_tries_left = st->pin_tries_left;
    ts->puk_tries_left = st->puk_tries_left;
    if (st->paired) {
        ts->has_files_sha256 = true;
        ts->files_sha256 = (ProtobufCBinaryData){.len = 32, .data = (uint8_t *)st->files_sha256};
    }
}

static int send_response(struct server *s, uint64_t id, Response *resp)
{
    resp->has_version = true;
    resp->version = TM_PROTOCOL_VERSION;
    resp->has_id = true;
    resp->id = id;
    Trustme__Scd__TokenStatus ts;
    struct token_status st;
    tm_err ignore;
    if (s->token_uuid && tm_uuid_valid(s->token_uuid) && token_status(s->tctx, s->token_uuid, &st, &ignore) == 0) {
        fill_status(&ts, &st);
        resp->token = &ts;
    }
    /* A response may hold a raw key: it is packed into locked memory and wiped (packet.h). */
    tm_err err;
    return tm_packet_send_msg(s->fd, &resp->base, SCD_FRAME_MAX, &err);
}

static int send_error(struct server *s, uint64_t id, int code, const char *msg)
{
    Trustme__Scd__Error e = TRUSTME__SCD__ERROR__INIT;
    e.has_code = true;
    e.code = code;
    e.message = (char *)msg;
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_ERROR;
    resp.error = &e;
    return send_response(s, id, &resp);
}

static int send_ok(struct server *s, uint64_t id, bool key_left)
{
    Trustme__Scd__Ok ok = TRUSTME__SCD__OK__INIT;
    ok.has_key_left_on_token = key_left;
    ok.key_left_on_token = key_left;
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_OK;
    resp.ok = &ok;
    return send_response(s, id, &resp);
}

/* PINs arrive with a length: refuse NUL bytes and overlong ones, then copy into a secret
 * (NUL-terminated, as the token API takes C strings). */
static int take_pin(const ProtobufCBinaryData *b, bool present, const char *what, struct secret **ret, tm_err *err)
{
    if (!present)
        return tm_err_set(err, EINVAL, "%s is missing", what);
    int r = token_check_secret_bytes(b->data, b->len, err);
    if (r < 0)
        return tm_err_prefix(err, "%s", what);
    if ((r = secret_new(b->len + 1, ret, err)) < 0)
        return r;
    if (b->len > 0) /* an empty field has data NULL */
        memcpy((*ret)->data, b->data, b->len);
    return 0;
}

static int check_uuid(const char *uuid, tm_err *err)
{
    if (!uuid || !tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "missing or malformed container UUID");
    return 0;
}

/* Container keys are bound to the device secret (docs/ATTESTATION.md): without it, refuse
 * rather than make or open an unbound key. */
static int need_device_secret(const struct server *s, tm_err *err)
{
    if (s->device_secret)
        return 0;
    /* Not EACCES: that one means a wrong PIN, which trustmed counts. */
    if (s->secret_unavailable[0])
        return tm_err_set(err, EKEYREJECTED, "%s", s->secret_unavailable);
    return tm_err_set(err, EAGAIN,
                      "the device storage secret has not arrived from the TPM service "
                      "yet; try again in a moment");
}

static int do_pair(struct server *s, uint64_t id, const Trustme__Scd__Pair *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *pin = NULL, *puk = NULL;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || !rq->spec)
        return r < 0 ? r : tm_err_set(err, EINVAL, "token spec missing");
    /* A soft token's slots are keyed with it too (token_soft.h). */
    if ((r = need_device_secret(s, err)) < 0)
        return r;
    if ((r = take_pin(&rq->pin, rq->has_pin, "PIN", &pin, err)) < 0)
        return r;
    if (rq->has_puk && (r = take_pin(&rq->puk, true, "PUK", &puk, err)) < 0)
        return r;
    struct token_spec spec = {
        .type = (enum token_type)rq->spec->type,
        .soft_kdf_n = rq->spec->soft_kdf_n,
        .pkcs11_module = rq->spec->pkcs11_module,
        .pkcs11_label = rq->spec->pkcs11_label,
        .pkcs11_serial = rq->spec->pkcs11_serial,
    };
    if ((r = token_pair(s->tctx, rq->uuid, &spec, (char *)pin->data, puk ? (char *)puk->data : NULL, err)) < 0)
        return r;
    return send_ok(s, id, false);
}

static int send_key(struct server *s, uint64_t id, const struct secret *key, const uint8_t *blob,
                    const struct token_carry *carry)
{
    Trustme__Scd__Key k = TRUSTME__SCD__KEY__INIT;
    Trustme__Scd__TokenCarry tc = TRUSTME__SCD__TOKEN_CARRY__INIT;
    k.has_key = true;
    k.key.data = key->data;
    k.key.len = key->len;
    if (blob) {
        k.has_wrapped = true;
        k.wrapped.data = (uint8_t *)blob;
        k.wrapped.len = KEYWRAP_BLOB_LEN;
    }
    if (carry && carry->pin.ikm) {
        /* Packed into locked memory and wiped with the key (packet.h). */
        tc.has_kdf_n = tc.has_pin_salt = tc.has_pin_ikm = tc.has_puk_salt = tc.has_puk_ikm = true;
        tc.kdf_n = carry->kdf_n;
        tc.pin_salt = (ProtobufCBinaryData){.len = SOFT_SALT_LEN, .data = (uint8_t *)carry->pin.salt};
        tc.pin_ikm = (ProtobufCBinaryData){.len = carry->pin.ikm->len, .data = carry->pin.ikm->data};
        tc.puk_salt = (ProtobufCBinaryData){.len = SOFT_SALT_LEN, .data = (uint8_t *)carry->puk.salt};
        tc.puk_ikm = (ProtobufCBinaryData){.len = carry->puk.ikm->len, .data = carry->puk.ikm->data};
        k.carry = &tc;
    }
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_KEY;
    resp.key = &k;
    return send_response(s, id, &resp);
}

/* A migration's export asked for the token as it is carried (carry_puk): after the PIN opened it. */
static int carry_out(struct server *s, const char *uuid, const struct secret *pin, const ProtobufCBinaryData *puk_b,
                     bool has_puk, struct token_carry *ret, tm_err *err)
{
    _cleanup_secret_ struct secret *puk = NULL;
    if (!has_puk)
        return 0;
    int r = take_pin(puk_b, true, "PUK", &puk, err);
    return r < 0 ? r : token_carry_out(s->tctx, uuid, (char *)pin->data, (char *)puk->data, ret, err);
}

static int take_slot(const ProtobufCBinaryData *salt, const ProtobufCBinaryData *ikm, struct soft_carried_slot *ret,
                     tm_err *err)
{
    if (salt->len != SOFT_SALT_LEN || ikm->len != 32)
        return tm_err_set(err, EINVAL, "carried token: a salt of %zu or a secret of %zu bytes", salt->len, ikm->len);
    memcpy(ret->salt, salt->data, SOFT_SALT_LEN);
    int r = secret_new(ikm->len, &ret->ikm, err);
    if (r == 0)
        memcpy(ret->ikm->data, ikm->data, ikm->len);
    return r;
}

static int do_token_import(struct server *s, uint64_t id, const Trustme__Scd__TokenImport *rq, tm_err *err)
{
    _cleanup_(token_carry_done) struct token_carry c = {0};
    const Trustme__Scd__TokenCarry *tc = rq->carry;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = need_device_secret(s, err)) < 0)
        return r;
    if (!tc || !tc->has_kdf_n || !tc->has_pin_salt || !tc->has_pin_ikm || !tc->has_puk_salt || !tc->has_puk_ikm)
        return tm_err_set(err, EINVAL, "carried token: a field is missing");
    c.kdf_n = tc->kdf_n;
    if ((r = take_slot(&tc->pin_salt, &tc->pin_ikm, &c.pin, err)) < 0 ||
        (r = take_slot(&tc->puk_salt, &tc->puk_ikm, &c.puk, err)) < 0 ||
        (r = token_import(s->tctx, rq->uuid, &c, err)) < 0)
        return r;
    return send_ok(s, id, false);
}

static int do_device_secret(struct server *s, uint64_t id, const Trustme__Scd__DeviceSecret *rq, tm_err *err)
{
    if (rq->has_secret) {
        _cleanup_secret_ struct secret *sec = NULL;
        int r;
        if (rq->secret.len != KEYWRAP_DEVICE_SECRET_LEN)
            return tm_err_set(err, EINVAL, "device secret of %zu bytes, expected %d", rq->secret.len,
                              KEYWRAP_DEVICE_SECRET_LEN);
        if ((r = secret_new(rq->secret.len, &sec, err)) < 0)
            return r;
        memcpy(sec->data, rq->secret.data, rq->secret.len);
        secret_free(s->device_secret);
        s->device_secret = steal_ptr(sec);
        s->secret_unavailable[0] = '\0';
    } else if (rq->unavailable && rq->unavailable[0]) {
        /* A secret already here stays: it was unsealed in this boot state. */
        if (!s->device_secret)
            snprintf(s->secret_unavailable, sizeof(s->secret_unavailable), "%s", rq->unavailable);
    } else {
        return tm_err_set(err, EINVAL, "device secret: give the secret or why it is unavailable");
    }
    s->ctx.device_secret = s->device_secret;
    return send_ok(s, id, false);
}

static int do_new_key(struct server *s, uint64_t id, const Trustme__Scd__NewKey *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *pin = NULL, *key = NULL;
    _cleanup_(token_carry_done) struct token_carry carry = {0};
    uint8_t blob[KEYWRAP_BLOB_LEN];
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = need_device_secret(s, err)) < 0 ||
        (r = take_pin(&rq->pin, rq->has_pin, "PIN", &pin, err)) < 0 ||
        (r = token_new_key(s->tctx, rq->uuid, (char *)pin->data, rq->has_key ? rq->key.data : NULL,
                           rq->has_key ? rq->key.len : 0, &key, blob, err)) < 0 ||
        (r = carry_out(s, rq->uuid, pin, &rq->carry_puk, rq->has_carry_puk, &carry, err)) < 0)
        return r;
    return send_key(s, id, key, blob, &carry);
}

static int do_unwrap(struct server *s, uint64_t id, const Trustme__Scd__Unwrap *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *pin = NULL, *key = NULL;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = need_device_secret(s, err)) < 0 ||
        (r = take_pin(&rq->pin, rq->has_pin, "PIN", &pin, err)) < 0)
        return r;
    if (!rq->has_wrapped)
        return tm_err_set(err, EINVAL, "wrapped key missing");
    _cleanup_(token_carry_done) struct token_carry carry = {0};
    if ((r = token_unwrap(s->tctx, rq->uuid, (char *)pin->data, rq->wrapped.data, rq->wrapped.len, &key, err)) < 0 ||
        (r = carry_out(s, rq->uuid, pin, &rq->carry_puk, rq->has_carry_puk, &carry, err)) < 0)
        return r;
    return send_key(s, id, key, NULL, &carry);
}

/* A re-keyed soft token's answer; a PKCS#11 token's PIN change has nothing pending: Ok. */
static int send_rekeyed(struct server *s, uint64_t id, const struct token_rekeyed *rk)
{
    if (!rk->pending)
        return send_ok(s, id, false);
    Trustme__Scd__Rekeyed k = TRUSTME__SCD__REKEYED__INIT;
    k.has_pending_sha256 = true;
    k.pending_sha256 = (ProtobufCBinaryData){.len = 32, .data = (uint8_t *)rk->pending_sha256};
    if (rk->has_wrapped) {
        k.has_wrapped = true;
        k.wrapped = (ProtobufCBinaryData){.len = KEYWRAP_BLOB_LEN, .data = (uint8_t *)rk->wrapped};
    }
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_REKEYED;
    resp.rekeyed = &k;
    return send_response(s, id, &resp);
}

static int do_change_pin(struct server *s, uint64_t id, const Trustme__Scd__ChangePin *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *old_pin = NULL, *new_pin = NULL;
    struct token_rekeyed rk;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = need_device_secret(s, err)) < 0 ||
        (r = take_pin(&rq->old_pin, rq->has_old_pin, "current PIN", &old_pin, err)) < 0 ||
        (r = take_pin(&rq->new_pin, rq->has_new_pin, "new PIN", &new_pin, err)) < 0 ||
        (r = token_change_pin(s->tctx, rq->uuid, (char *)old_pin->data, (char *)new_pin->data,
                              rq->has_wrapped ? rq->wrapped.data : NULL, rq->has_wrapped ? rq->wrapped.len : 0, &rk,
                              err)) < 0)
        return r;
    return send_rekeyed(s, id, &rk);
}

static int do_unlock(struct server *s, uint64_t id, const Trustme__Scd__Unlock *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *puk = NULL, *new_pin = NULL;
    struct token_rekeyed rk;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = need_device_secret(s, err)) < 0 ||
        (r = take_pin(&rq->puk, rq->has_puk, "PUK", &puk, err)) < 0 ||
        (r = take_pin(&rq->new_pin, rq->has_new_pin, "new PIN", &new_pin, err)) < 0 ||
        (r = token_unlock(s->tctx, rq->uuid, (char *)puk->data, (char *)new_pin->data,
                          rq->has_wrapped ? rq->wrapped.data : NULL, rq->has_wrapped ? rq->wrapped.len : 0, &rk, err)) <
            0)
        return r;
    return send_rekeyed(s, id, &rk);
}

static int do_commit(struct server *s, uint64_t id, const Trustme__Scd__TokenCommit *rq, tm_err *err)
{
    int r = check_uuid(rq->uuid, err);
    if (r < 0)
        return r;
    if (!s->ctx.anchor || !rq->has_pending_sha256 || rq->pending_sha256.len != 32)
        return tm_err_set(err, EINVAL, "commit: the anchored and the pending digest are needed");
    if ((r = token_commit(s->tctx, rq->uuid, rq->pending_sha256.data, err)) < 0)
        return r;
    return send_ok(s, id, false);
}

static int do_wipe(struct server *s, uint64_t id, const Trustme__Scd__Wipe *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *pin = NULL;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (rq->has_pin && (r = take_pin(&rq->pin, true, "PIN", &pin, err)) < 0))
        return r;
    if ((r = token_wipe(s->tctx, rq->uuid, pin ? (char *)pin->data : NULL, err)) < 0)
        return r;
    return send_ok(s, id, r == TOKEN_WIPE_KEY_LEFT);
}

static int do_status(struct server *s, uint64_t id, const Trustme__Scd__Status *rq, tm_err *err)
{
    struct token_status st;
    int r;
    if ((r = check_uuid(rq->uuid, err)) < 0 || (r = token_status(s->tctx, rq->uuid, &st, err)) < 0)
        return r;
    Trustme__Scd__TokenStatus ts;
    fill_status(&ts, &st);
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_STATUS;
    resp.status = &ts;
    return send_response(s, id, &resp);
}

/* Repeated PEM blobs are concatenated into one (verify.h takes one PEM text per kind). */
static char *join_pem(ProtobufCBinaryData *parts, size_t n, size_t *ret_len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += parts[i].len + 1;
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len > 0) /* an empty element has data NULL */
            memcpy(out + off, parts[i].data, parts[i].len);
        off += parts[i].len;
        out[off++] = '\n';
    }
    out[off] = '\0';
    *ret_len = off;
    return out;
}

static int do_verify(struct server *s, uint64_t id, const Trustme__Scd__Verify *rq, tm_err *err)
{
    size_t anchors_len = 0, crls_len = 0;
    _cleanup_free_ char *anchors = join_pem(rq->anchors_pem, rq->n_anchors_pem, &anchors_len);
    _cleanup_free_ char *crls = join_pem(rq->crls_pem, rq->n_crls_pem, &crls_len);
    size_t required_len = 0;
    _cleanup_free_ char *required = join_pem(rq->require_one_of_pem, rq->n_require_one_of_pem, &required_len);
    if (!anchors || !crls || !required)
        return tm_err_set(err, ENOMEM, "out of memory");
    struct verify_request vr = {
        .data = rq->data.data,
        .data_len = rq->data.len,
        .sig = rq->signature.data,
        .sig_len = rq->signature.len,
        .chain_pem = (const char *)rq->chain_pem.data,
        .chain_len = rq->chain_pem.len,
        .anchors_pem = anchors,
        .anchors_len = anchors_len,
        .crls_pem = crls_len ? crls : NULL,
        .crls_len = crls_len,
        .eku = rq->eku_oid,
        .time = rq->has_at_time ? (time_t)rq->at_time : 0,
        .cert_only = rq->has_cert_only && rq->cert_only,
        .required_pem = rq->n_require_one_of_pem ? required : NULL,
        .required_len = required_len,
    };
    struct verify_result res;
    int r = verify_signed(&vr, &res, err);
    if (r < 0)
        return r;
    Trustme__Scd__VerifyResult v = TRUSTME__SCD__VERIFY_RESULT__INIT;
    v.signer = res.leaf_subject;
    v.anchor = res.anchor_subject;
    v.anchor_sha256 = res.anchor_sha256_hex;
    v.has_chain_length = true;
    v.chain_length = (uint32_t)res.chain_len;
    ProtobufCBinaryData hashes[VERIFY_CHAIN_MAX + 2];
    v.n_chain_sha256 = (size_t)res.chain_len;
    for (size_t i = 0; i < v.n_chain_sha256; i++)
        hashes[i] = (ProtobufCBinaryData){.len = 32, .data = res.chain_sha256[i]};
    v.chain_sha256 = hashes;
    if (vr.required_pem && res.required_index > 0 && res.required_index < res.chain_len) {
        v.has_required_sha256 = true;
        v.required_sha256 = hashes[res.required_index];
    }
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_VERIFY;
    resp.verify = &v;
    return send_response(s, id, &resp);
}

/* The container whose token a request is about (not Status: that one answers with it). */
static const char *token_uuid_of(const Request *rq)
{
    switch (rq->body_case) {
    case TRUSTME__SCD__REQUEST__BODY_PAIR: return rq->pair->uuid;
    case TRUSTME__SCD__REQUEST__BODY_NEW_KEY: return rq->new_key->uuid;
    case TRUSTME__SCD__REQUEST__BODY_UNWRAP: return rq->unwrap->uuid;
    case TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN: return rq->change_pin->uuid;
    case TRUSTME__SCD__REQUEST__BODY_UNLOCK: return rq->unlock->uuid;
    case TRUSTME__SCD__REQUEST__BODY_WIPE: return rq->wipe->uuid;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_COMMIT: return rq->token_commit->uuid;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_IMPORT: return rq->token_import->uuid;
    default: return NULL;
    }
}

/* A request that uses a PIN or PUK on the token: its files must be the ones trustmed anchored
 * in the TPM, or root could restore an older .soft (an old PIN, an unwiped token). */
static int check_anchor(struct server *s, const Request *rq, tm_err *err)
{
    switch (rq->body_case) {
    case TRUSTME__SCD__REQUEST__BODY_NEW_KEY:
    case TRUSTME__SCD__REQUEST__BODY_UNWRAP:
    case TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN:
    case TRUSTME__SCD__REQUEST__BODY_UNLOCK: break;
    default: return 0;
    }
    if (!s->token_uuid || !tm_uuid_valid(s->token_uuid))
        return 0; /* the handler says what is wrong */
    uint8_t now[32];
    int r = token_files_digest(s->tctx, s->token_uuid, now, err);
    if (r < 0)
        return r;
    if (!rq->has_token_anchor || rq->token_anchor.len != 32)
        return tm_err_set(err, EINVAL, "no anchored token state given for container %s", s->token_uuid);
    if (memcmp(now, rq->token_anchor.data, 32) != 0)
        return tm_err_set(err, ESTALE,
                          "the token files of container %s are not the ones "
                          "anchored in the TPM (restored from a copy, edited, or from another "
                          "device): refusing them",
                          s->token_uuid);
    return 0;
}

static int dispatch(struct server *s, const Request *rq)
{
    tm_err err = {0};
    int r;
    s->token_uuid = token_uuid_of(rq);
    if (check_anchor(s, rq, &err) < 0) {
        r = send_error(s, rq->id, err.code, err.msg);
        s->token_uuid = NULL;
        return r < 0 ? r : 0;
    }
    /* check_anchor looked at the files; the operation checks the bytes it uses again. */
    s->ctx.anchor = rq->has_token_anchor && rq->token_anchor.len == 32 ? rq->token_anchor.data : NULL;
    switch (rq->body_case) {
    case TRUSTME__SCD__REQUEST__BODY_PAIR: r = do_pair(s, rq->id, rq->pair, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_NEW_KEY: r = do_new_key(s, rq->id, rq->new_key, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_UNWRAP: r = do_unwrap(s, rq->id, rq->unwrap, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN: r = do_change_pin(s, rq->id, rq->change_pin, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_UNLOCK: r = do_unlock(s, rq->id, rq->unlock, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_WIPE: r = do_wipe(s, rq->id, rq->wipe, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_COMMIT: r = do_commit(s, rq->id, rq->token_commit, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_IMPORT: r = do_token_import(s, rq->id, rq->token_import, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_STATUS: r = do_status(s, rq->id, rq->status, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_VERIFY: r = do_verify(s, rq->id, rq->verify, &err); break;
    case TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET: r = do_device_secret(s, rq->id, rq->device_secret, &err); break;
    default: r = tm_err_set(&err, EOPNOTSUPP, "unknown request (body %d)", (int)rq->body_case);
    }
    s->ctx.anchor = NULL; /* before the status in the answer: it reports the files as they are */
    if (r < 0)
        r = send_error(s, rq->id, err.code, err.msg);
    s->token_uuid = NULL;
    return r < 0 ? r : 0;
}

static void wipe(ProtobufCBinaryData *b)
{
    if (b->data)
        explicit_bzero(b->data, b->len);
}

/* protobuf-c copied PINs and PUKs into the message: wipe them before it is freed (small
 * messages live in locked memory that is wiped anyway; large ones do not). */
static void wipe_secrets(Request *rq)
{
    switch (rq->body_case) {
    case TRUSTME__SCD__REQUEST__BODY_PAIR:
        wipe(&rq->pair->pin);
        wipe(&rq->pair->puk);
        break;
    case TRUSTME__SCD__REQUEST__BODY_NEW_KEY:
        wipe(&rq->new_key->pin);
        wipe(&rq->new_key->key);
        wipe(&rq->new_key->carry_puk);
        break;
    case TRUSTME__SCD__REQUEST__BODY_UNWRAP:
        wipe(&rq->unwrap->pin);
        wipe(&rq->unwrap->carry_puk);
        break;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_IMPORT:
        if (rq->token_import->carry) {
            wipe(&rq->token_import->carry->pin_ikm);
            wipe(&rq->token_import->carry->puk_ikm);
        }
        break;
    case TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN:
        wipe(&rq->change_pin->old_pin);
        wipe(&rq->change_pin->new_pin);
        break;
    case TRUSTME__SCD__REQUEST__BODY_UNLOCK:
        wipe(&rq->unlock->puk);
        wipe(&rq->unlock->new_pin);
        break;
    case TRUSTME__SCD__REQUEST__BODY_WIPE: wipe(&rq->wipe->pin); break;
    case TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET: wipe(&rq->device_secret->secret); break;
    default: break;
    }
}

static void bad_packet(int code, const char *msg, void *userdata)
{
    send_error(userdata, 0, code, msg);
}

int server_run(int fd, const struct token_ctx *tctx)
{
    struct server s = {.fd = fd, .ctx = *tctx};
    s.tctx = &s.ctx;
    Trustme__Scd__Ready ready = TRUSTME__SCD__READY__INIT;
    ready.has_pid = true;
    ready.pid = (uint32_t)getpid();
    Response resp = TRUSTME__SCD__RESPONSE__INIT;
    resp.body_case = TRUSTME__SCD__RESPONSE__BODY_READY;
    resp.ready = &ready;
    if (send_response(&s, 0, &resp) < 0)
        return -errno;
    bool busy = true; /* the start's work counts as a request */
    for (;;) {
        /* Idle for TM_IDLE_RELEASE_MS after work: give the memory back (idle_memory.h). */
        if (busy) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int pr = poll(&p, 1, TM_IDLE_RELEASE_MS);
            if (pr == 0) {
                size_t dropped = tm_idle_release();
                log_debug("idle: heap trimmed, %zu KiB of read-only library mappings dropped", dropped / 1024);
            }
            if (pr == 0 || (pr < 0 && errno != EINTR))
                busy = false;
            if (pr <= 0)
                continue;
        }
        busy = true;
        struct tm_packet pkt;
        int r = tm_packet_next(fd, SCD_FRAME_MAX, &pkt, bad_packet, &s);
        if (r == 0) {
            secret_free(s.device_secret);
            return 0; /* trustmed closed: done */
        }
        if (r == TM_PACKET_ANSWERED)
            continue;
        if (r < 0) {
            log_error("connection to trustmed broken: %s", strerror(-r));
            secret_free(s.device_secret);
            return r;
        }
        Request *rq = (Request *)tm_packet_unpack(&trustme__scd__request__descriptor, &pkt);
        if (!rq)
            send_error(&s, 0, EBADMSG, "malformed request");
        else if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION)
            send_error(&s, rq->has_id ? rq->id : 0, EPROTO, "unsupported protocol version");
        else if (dispatch(&s, rq) < 0)
            log_warn("cannot answer trustmed: %m");
        if (rq)
            wipe_secrets(rq); /* they may be on the heap (a large packet) */
        tm_packet_free(&pkt);
    }
}
