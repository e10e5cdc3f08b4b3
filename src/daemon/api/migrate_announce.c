/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "migrate_announce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "container.h"
#include "hex.h"
#include "migrate.h"
#include "source_auth.h"
#include "tpmd_client.h"
#include "uuid.h"

#define TEXT_MAX 400
#define SIGNER_MAX 512
#define PREFIX "source authentication: "

/* What the AK signs (after tpmd's MIGRATE_SIGN_TAG). The first line keeps it from being taken for
 * a bundle's signature, a receipt, refusal or tombstone; the challenge binds it to one connection
 * of the target (a captured announcement does not open another); the rest names the bundle that
 * must follow and what the target reserves for it. */
static int announce_text(const struct migrate_announced *a, const uint8_t challenge[MIGRATE_CHALLENGE_LEN], char *out,
                         size_t size)
{
    char ch[2 * MIGRATE_CHALLENGE_LEN + 1];
    tm_hex(challenge, MIGRATE_CHALLENGE_LEN, ch);
    int n = snprintf(out, size,
                     MIGRATE_ANNOUNCE_KIND "\nbundle %s\noffer %s\nuuid %s\ndigest %s\nsize %llu\nchallenge %s\n",
                     a->bundle_id, a->offer_id, a->uuid, a->digest, (unsigned long long)a->size, ch);
    return n > 0 && (size_t)n < size ? n : -EOVERFLOW;
}

static bool hex_id(const char *s, size_t len)
{
    return s && strlen(s) == len && strspn(s, "0123456789abcdef") == len;
}

/* ---- source ------------------------------------------------------------------------------------ */

struct sign_op {
    uint64_t conn_id, req_id;
    struct migrate_announced a;
};

static void announce_signed(struct daemon *d, const uint8_t *sig, const ProtobufCBinaryData *chain, const tm_err *err,
                            void *userdata)
{
    _cleanup_free_ struct sign_op *op = userdata;
    struct conn *conn = conn_find(d, op->conn_id);
    if (conn && err) {
        conn_send_error(conn, op->req_id, err->code ? err->code : EIO, "migrate announce: %s", err->msg);
    } else if (conn) {
        Trustme__MigrateUpload u = TRUSTME__MIGRATE_UPLOAD__INIT;
        u.offer_id = op->a.offer_id;
        u.bundle_id = op->a.bundle_id;
        u.uuid = op->a.uuid;
        u.digest = op->a.digest;
        u.has_size = u.has_signature = u.has_chain_pem = true;
        u.size = op->a.size;
        u.signature = (ProtobufCBinaryData){.len = SOURCE_AUTH_SIG_LEN, .data = (uint8_t *)sig};
        u.chain_pem = *chain;
        Trustme__MigrateMessage m = TRUSTME__MIGRATE_MESSAGE__INIT;
        m.upload = &u;
        Trustme__Response r = TRUSTME__RESPONSE__INIT;
        r.body_case = TRUSTME__RESPONSE__BODY_MIGRATE;
        r.migrate = &m;
        conn_send(conn, op->req_id, &r);
    }
}

void migrate_announce(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq)
{
    struct daemon *d = conn->d;
    struct container *c = rq->id ? container_find(d, rq->id) : NULL;
    if (!c) {
        conn_send_error(conn, id, ENOENT, "migrate announce: no container \"%s\"", rq->id ? rq->id : "");
        return;
    }
    if (!rq->has_challenge || rq->challenge.len != MIGRATE_CHALLENGE_LEN || !rq->has_size || rq->size == 0) {
        conn_send_error(conn, id, EINVAL, "migrate announce: the target's challenge (32 bytes) and the bundle's size");
        return;
    }
    /* Only the bundle this container was exported to, as its lock names it: the AK announces
     * nothing else. */
    struct migrate_lock l;
    tm_err err = {0};
    int r = migrate_lock_read(c, &l, &err);
    if (r == -ENOENT) {
        conn_send_error(conn, id, ENOENT, "migrate announce: %s is not migrating (export it first)", c->cfg->name);
        return;
    }
    if (r < 0 || !l.exported || strlen(l.digest) != 64) {
        conn_send_error(conn, id, r < 0 ? -r : EAGAIN, "migrate announce: %s",
                        r < 0 ? err.msg : "the export of its bundle did not complete");
        return;
    }
    _cleanup_free_ struct sign_op *op = calloc(1, sizeof(*op));
    if (!op) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    op->conn_id = conn->id;
    op->req_id = id;
    snprintf(op->a.offer_id, sizeof(op->a.offer_id), "%s", l.offer_id);
    snprintf(op->a.bundle_id, sizeof(op->a.bundle_id), "%s", l.bundle_id);
    snprintf(op->a.uuid, sizeof(op->a.uuid), "%s", c->uuid);
    snprintf(op->a.digest, sizeof(op->a.digest), "%s", l.digest);
    op->a.size = rq->size;
    char text[TEXT_MAX];
    if (announce_text(&op->a, rq->challenge.data, text, sizeof(text)) < 0 ||
        source_auth_sign_text(d, text, announce_signed, op, &err) < 0) {
        conn_send_error(conn, id, err.code ? err.code : EOVERFLOW, "migrate announce: %s",
                        err.code ? err.msg : "the text is too long");
        return;
    }
    op = NULL; /* announce_signed's */
}

/* ---- target ------------------------------------------------------------------------------------ */

struct check_op {
    migrate_announce_fn fn;
    void *userdata;
    struct migrate_announced a;
    char signer[SIGNER_MAX];
    uint8_t ak_id[MIGRATE_AK_ID_LEN];
};

static void check_done(struct daemon *d, struct check_op *op_, uint8_t state, const tm_err *err)
{
    _cleanup_free_ struct check_op *op = op_;
    op->fn(d, &op->a, state, err ? NULL : op->signer, err, op->userdata);
}

/* The offer's record in this TPM's anchor table: whether it made the offer, for which source. */
static void offer_read(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct check_op *op = userdata;
    tm_err e = {0};
    char name[sizeof(MIGRATE_OFFER_PREFIX) + 32];
    snprintf(name, sizeof(name), MIGRATE_OFFER_PREFIX "%s", op->a.offer_id);
    const ProtobufCBinaryData *v = NULL;
    struct migrate_offer_entry o = {0};
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ANCHOR)
        tm_err_set(&e, err && err->code ? err->code : EPROTO, "the offer's record in the TPM: %s",
                   err ? err->msg : "unexpected answer from trustme-tpmd");
    else if (!(v = tpmd_anchor_value(resp, name)))
        tm_err_set(&e, ENOENT, "unknown offer %s: this device's TPM records no such offer (never made here, or swept)",
                   op->a.offer_id);
    else if (!migrate_offer_entry_decode(v->data, v->len, &o))
        tm_err_set(&e, EBADMSG, "offer %s: its record in the TPM does not parse", op->a.offer_id);
    else if (!o.has_nonce)
        tm_err_set(&e, EPERM, "source binding: offer %s keeps no source nonce (made by an older trustme)",
                   op->a.offer_id);
    else if (!migrate_nonce_names(o.nonce, op->ak_id))
        tm_err_set(&e, EPERM,
                   "source binding: offer %s was made for another source device (its nonce does not name the AK "
                   "that signed this announcement, %s)",
                   op->a.offer_id, op->signer);
    check_done(d, op, e.code ? 0 : o.state, e.code ? &e : NULL);
}

static void announce_authenticated(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *aerr,
                                   void *userdata)
{
    struct check_op *op = userdata;
    if (aerr) {
        check_done(d, op, 0, aerr);
        return;
    }
    snprintf(op->signer, sizeof(op->signer), "%s", signer);
    memcpy(op->ak_id, ak_id, sizeof(op->ak_id));
    memcpy(op->a.signer_id, ak_id, sizeof(op->a.signer_id));
    char name[sizeof(MIGRATE_OFFER_PREFIX) + 32];
    snprintf(name, sizeof(name), MIGRATE_OFFER_PREFIX "%s", op->a.offer_id);
    const char *names[] = {name};
    tm_err e = {0};
    if (tpmd_anchor_get(d, names, 1, offer_read, op, &e) < 0)
        check_done(d, op, 0, &e);
}

int migrate_announce_check(struct daemon *d, const Trustme__MigrateUpload *u,
                           const uint8_t challenge[MIGRATE_CHALLENGE_LEN], migrate_announce_fn fn, void *userdata,
                           tm_err *err)
{
    if (!hex_id(u->offer_id, 32) || !hex_id(u->bundle_id, 32) || !u->uuid || !tm_uuid_valid(u->uuid) ||
        !hex_id(u->digest, 64) || !u->has_size || u->size == 0 || !u->has_signature ||
        u->signature.len != SOURCE_AUTH_SIG_LEN || !u->has_chain_pem)
        return tm_err_set(err, EINVAL,
                          PREFIX "the announcement is malformed (offer, bundle, uuid, digest, size, signature and "
                                 "chain)");
    _cleanup_free_ struct check_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->fn = fn;
    op->userdata = userdata;
    snprintf(op->a.offer_id, sizeof(op->a.offer_id), "%s", u->offer_id);
    snprintf(op->a.bundle_id, sizeof(op->a.bundle_id), "%s", u->bundle_id);
    snprintf(op->a.uuid, sizeof(op->a.uuid), "%s", u->uuid);
    snprintf(op->a.digest, sizeof(op->a.digest), "%s", u->digest);
    op->a.size = u->size;
    char text[TEXT_MAX];
    int r = announce_text(&op->a, challenge, text, sizeof(text));
    if (r < 0)
        r = tm_err_set(err, EOVERFLOW, "the announcement's text is too long");
    /* The chain and signature, as a bundle's (scd, the General root, CRLs, this device's Device
     * CA): a failure is "source authentication: ...". */
    else
        r = source_auth_check_text(d, text, u->signature.data, u->chain_pem.data, u->chain_pem.len,
                                   announce_authenticated, op, err);
    if (r == 0)
        op = NULL; /* announce_authenticated's */
    return r;
}
