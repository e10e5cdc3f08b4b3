/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme migrate` (docs/MIGRATION.md): offer (target), export (source), import (target),
 * commit and abort (source). The offer's attestation is verified by the client with the
 * verifier's library, as `trustme attest` does; trustmed does what needs its keys and the TPM. */
#include "commands_migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bundle.h"
#include "carry.h"
#include "cleanup.h"
#include "config.h"
#include "container.h"
#include "crypto.h"
#include "export_worker.h"
#include "fileio.h"
#include "hex.h"
#include "keystore_migrated.h"
#include "keystore_svc.h"
#include "log.h"
#include "lock_anchor.h"
#include "migrate.h"
#include "migrate_announce.h"
#include "migrate_net.h"
#include "migrate_nonce.h"
#include "secmem.h"
#include "source_auth.h"
#include "test_hooks.h"
#include "token_carry.h"
#include "tokens.h"
#include "tokens_carry.h"
#include "tokens_migrated.h"
#include "tpmd_client.h"
#include "vtpm.h"

#define CONFIG_PART_MAX (1024 * 1024)
#define TEXT_MAX 512

struct mig_op {
    struct mig_op *next; /* exports under way: waiting for the data key, the anchors or the worker */
    struct daemon *d;
    uint64_t conn_id, req_id;
    char actor[48];
    char uuid[40]; /* the container, found again by it after every wait */
    char path[PATH_MAX];
    char offer_id[BUNDLE_ID_LEN + 1];
    char target_ak[2 * 34 + 1];
    uint8_t key_spki[MIGRATE_SPKI_MAX], ak_spki[MIGRATE_SPKI_MAX];
    size_t key_spki_len, ak_spki_len;
    /* import */
    struct bundle_in b;
    bool opened;
    char text[TEXT_MAX]; /* the receipt or refusal being signed */
    char refused[200];
    char source[512]; /* import: the subject of the source's AK certificate (source_auth.h) */
    uint8_t source_ak_id[MIGRATE_AK_ID_LEN]; /* import: the SHA-256 of its DER, which the nonce must name */
    /* export: the offer's nonce, which must name this device's AK (migrate_nonce.h), and the PIN
     * and PUK kept while that is checked; an offer of the migration endpoint: the source's nonce */
    uint8_t nonce[MIGRATE_NONCE_LEN];
    struct secret *pin, *puk;
    size_t pin_len, puk_len;
    /* export: the data key, import: the unsealed keys, while the anchors are read or written */
    struct secret *key;
    bool installed; /* the receipt: tpmd records the install on the offer before it signs */
    bool tp_read; /* export: the anchors were read again with the tamper-proof objects */
    /* export: the lock, to be anchored, marked and the bundle renamed into place */
    struct migrate_lock lock;
    /* abort: with a refusal (else: an export that never completed); whether the TPM anchors it */
    bool with_refusal, anchored;
    /* export: the token as carried; import: its anchor entry (docs/MIGRATION.md "The token") */
    struct tokens_carried *carried;
    struct tokens_import_entry token_entry;
    /* A request of the migration endpoint (migrate_net.c): conn_id is its connection there, and
     * the offer carries the quote over the nonce (evidence, packed AttestResponse). */
    bool net;
    const struct migrate_announced *announced; /* import over the endpoint: what must arrive */
    uint8_t *evidence;
    size_t evidence_len;
};

static struct mig_op *exports;
/* Imports between the decryption and the install (their token is being built): a concurrent
 * import of the same bundle must not sign a refusal meanwhile. Linked by next, as exports. */
static struct mig_op *imports;

static void drop_part(struct mig_op *op, struct container *c);
static void export_signed(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *serr,
                          void *userdata);

static void op_free(struct mig_op *op);
static void op_freep(struct mig_op **op)
{
    if (*op)
        op_free(*op);
}

static void message_freep(Trustme__MigrateMessage **m)
{
    if (*m)
        trustme__migrate_message__free_unpacked(*m, NULL);
}

static struct mig_op *op_new(struct conn *conn, uint64_t id)
{
    struct mig_op *op = calloc(1, sizeof(*op));
    if (!op) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return NULL;
    }
    op->d = conn->d;
    op->conn_id = conn->id;
    op->req_id = id;
    op->b.fd = -1;
    snprintf(op->actor, sizeof(op->actor), "%s", conn->actor);
    return op;
}

static void op_free(struct mig_op *op)
{
    for (struct mig_op **p = &imports; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    if (op->opened)
        bundle_close(&op->b);
    secret_free(op->key);
    secret_free(op->pin);
    secret_free(op->puk);
    tokens_carried_done(op->carried);
    free(op->evidence);
    free(op);
}

static void op_error(struct mig_op *op, const char *event, const struct container *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void op_error(struct mig_op *op, const char *event, const struct container *c, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    daemon_audit(op->d, event, "fail", c, op->actor, "%s", msg);
    if (op->net) {
        migrate_net_reply(op->d, op->conn_id, NULL, code > 0 ? code : EIO, msg);
        return;
    }
    struct conn *conn = conn_find(op->d, op->conn_id);
    if (conn)
        conn_send_error(conn, op->req_id, code > 0 ? code : EIO, "migrate: %s", msg);
}

static void answer(struct mig_op *op, Trustme__MigrateMessage *m)
{
    if (op->net) {
        migrate_net_reply(op->d, op->conn_id, m, 0, NULL);
        return;
    }
    struct conn *conn = conn_find(op->d, op->conn_id);
    if (!conn)
        return;
    Trustme__Response r = TRUSTME__RESPONSE__INIT;
    r.body_case = TRUSTME__RESPONSE__BODY_MIGRATE;
    r.migrate = m;
    conn_send(conn, op->req_id, &r);
}

static bool id_ok(const char *s)
{
    return s && strlen(s) == BUNDLE_ID_LEN && strspn(s, "0123456789abcdef") == BUNDLE_ID_LEN;
}

/* ---- offer (target) ---------------------------------------------------------------------------- */

static void offer_done(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    (void)d;
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_KEY) {
        op_error(op, "migrate.offer", NULL, err ? err->code : EPROTO, "offer: %s",
                 err ? err->msg : "unexpected answer from trustme-tpmd");
        return;
    }
    const Trustme__Tpmd__MigrateKeyReply *k = resp->migrate_key;
    Trustme__MigrateMessage m = TRUSTME__MIGRATE_MESSAGE__INIT;
    m.offer_id = k->offer_id;
    m.has_key_public = m.has_certify_attest = m.has_certify_sig = true;
    m.key_public = k->key_public;
    m.certify_attest = k->certify_attest;
    m.certify_sig = k->certify_sig;
    m.has_expires = k->has_expires;
    m.expires = k->expires;
    if (op->evidence) {
        /* Over the endpoint the offer is whole, as `trustme migrate offer` writes it. */
        m.has_attest_response = m.has_nonce = true;
        m.attest_response = (ProtobufCBinaryData){.len = op->evidence_len, .data = op->evidence};
        m.nonce = (ProtobufCBinaryData){.len = sizeof(op->nonce), .data = op->nonce};
    }
    daemon_audit(op->d, "migrate.offer", "ok", NULL, op->actor, "offer %s", k->offer_id ? k->offer_id : "");
    answer(op, &m);
}

/* tpmd's certified migration key for op's nonce. */
static void offer_key(struct mig_op *op, uint32_t lifetime)
{
    Trustme__Tpmd__MigrateKey mk = TRUSTME__TPMD__MIGRATE_KEY__INIT;
    mk.has_nonce = true;
    mk.nonce = (ProtobufCBinaryData){.len = sizeof(op->nonce), .data = op->nonce};
    mk.has_lifetime = lifetime != 0;
    mk.lifetime = lifetime;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MIGRATE_KEY;
    req.migrate_key = &mk;
    tm_err err = {0};
    if (tpmd_call(op->d, &req, offer_done, op, &err) < 0) {
        op_error(op, "migrate.offer", NULL, err.code, "offer: %s", err.msg);
        op_free(op);
    }
}

static void migrate_offer(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq)
{
    if (!rq->has_nonce || rq->nonce.len != MIGRATE_NONCE_LEN) {
        conn_send_error(conn, id, EINVAL, "migrate offer: the source's nonce must be 32 bytes");
        return;
    }
    struct mig_op *op = op_new(conn, id);
    if (!op)
        return;
    memcpy(op->nonce, rq->nonce.data, sizeof(op->nonce));
    offer_key(op, rq->has_lifetime ? rq->lifetime : 0);
}

/* The over-the-endpoint offer: the quote first, then the key. */
static void net_quoted(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct mig_op *op = userdata;
    (void)d;
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ATTEST) {
        op_error(op, "migrate.offer", NULL, err ? err->code : EPROTO, "offer: the quote: %s",
                 err ? err->msg : "unexpected answer from trustme-tpmd");
        op_free(op);
        return;
    }
    if (resp->attest->body_case == TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR) {
        op_error(op, "migrate.offer", NULL, EIO, "offer: the quote: %s",
                 resp->attest->error->message ? resp->attest->error->message : "refused by trustme-tpmd");
        op_free(op);
        return;
    }
    /* Relayed as tpmd sent it: the source checks it as trustme-verify would. */
    size_t len = trustme__attest__attest_response__get_packed_size(resp->attest);
    op->evidence = malloc(len ? len : 1);
    if (!op->evidence) {
        op_error(op, "migrate.offer", NULL, ENOMEM, "offer: out of memory");
        op_free(op);
        return;
    }
    op->evidence_len = trustme__attest__attest_response__pack(resp->attest, op->evidence);
    offer_key(op, MIGRATE_NET_OFFER_LIFETIME);
}

void migrate_net_offer(struct daemon *d, uint64_t net_id, const char *actor, const uint8_t nonce[32],
                       const uint32_t *pcrs, size_t npcrs)
{
    struct mig_op *op = calloc(1, sizeof(*op));
    if (!op) {
        migrate_net_reply(d, net_id, NULL, ENOMEM, "out of memory");
        return;
    }
    *op = (struct mig_op){.d = d, .conn_id = net_id, .net = true, .b.fd = -1};
    snprintf(op->actor, sizeof(op->actor), "%s", actor);
    memcpy(op->nonce, nonce, sizeof(op->nonce));
    Trustme__Attest__AttestRequest ar = TRUSTME__ATTEST__ATTEST_REQUEST__INIT;
    ar.has_version = ar.has_id = ar.has_nonce = true;
    ar.version = 1;
    ar.id = net_id;
    ar.nonce = (ProtobufCBinaryData){.len = sizeof(op->nonce), .data = op->nonce};
    ar.n_pcrs = npcrs;
    ar.pcrs = (uint32_t *)pcrs;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_ATTEST;
    req.attest = &ar;
    tm_err err = {0};
    if (tpmd_call(d, &req, net_quoted, op, &err) < 0) {
        op_error(op, "migrate.offer", NULL, err.code, "offer: %s", err.msg);
        op_free(op);
    }
}

/* ---- nonce (source) ---------------------------------------------------------------------------- */

/* A fresh nonce that names this device's AK (migrate_nonce.h): the target offers over it, and
 * its offer is then good for this device only. */
static void nonce_made(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *err, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    (void)d;
    (void)signer;
    tm_err e = {0};
    if (err) {
        op_error(op, "migrate.nonce", NULL, err->code, "nonce: %s", err->msg);
        return;
    }
    uint8_t nonce[MIGRATE_NONCE_LEN];
    if (secure_random(nonce, MIGRATE_NONCE_RANDOM_LEN, &e) < 0) {
        op_error(op, "migrate.nonce", NULL, e.code, "nonce: %s", e.msg);
        return;
    }
    migrate_nonce_bind(ak_id, nonce);
    Trustme__MigrateMessage m = TRUSTME__MIGRATE_MESSAGE__INIT;
    m.has_nonce = true;
    m.nonce = (ProtobufCBinaryData){.len = sizeof(nonce), .data = nonce};
    answer(op, &m);
}

static void migrate_nonce(struct conn *conn, uint64_t id)
{
    struct mig_op *op = op_new(conn, id);
    if (!op)
        return;
    tm_err err = {0};
    if (source_auth_ak_id(conn->d, nonce_made, op, &err) < 0) {
        op_error(op, "migrate.nonce", NULL, err.code, "nonce: %s", err.msg);
        op_free(op);
    }
}

/* ---- export (source) --------------------------------------------------------------------------- */

static struct mig_op *take_export(const struct container *c)
{
    for (struct mig_op **p = &exports; *p; p = &(*p)->next)
        if (strcmp((*p)->uuid, c->uuid) == 0) {
            struct mig_op *op = *p;
            *p = op->next;
            return op;
        }
    return NULL;
}

/* The keys the bundle seals: the data key, then (with a keystore) the keystore key and seed. */
static int bundle_secrets(struct container *c, const struct secret *key, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_new(BUNDLE_SECRETS_LEN, &s, err);
    if (r < 0)
        return r;
    if (key->len != BUNDLE_DATA_KEY_LEN)
        return tm_err_set(err, EINVAL, "a data key of %zu bytes", key->len);
    memset(s->data, 0, s->len);
    memcpy(s->data, key->data, BUNDLE_DATA_KEY_LEN);
    if (c->cfg->keystore && (r = keystore_carried_keys(c, key, s->data + BUNDLE_KS_KEYS_OFFSET, err)) < 0)
        return tm_err_prefix(err, "the keystore keys");
    *ret = steal_ptr(s);
    return 0;
}

static void export_anchored(struct container *c, const tm_err *aerr, void *userdata);

static void unlink_export(struct mig_op *op)
{
    for (struct mig_op **p = &exports; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            return;
        }
}

/* An export of the container under way (its key being unwrapped, its anchors read, or its bundle
 * written by the worker): a second export, or an abort of the lock it wrote, must wait. */
static bool export_running(const struct container *c)
{
    for (struct mig_op *o = exports; o; o = o->next)
        if (strcmp(o->uuid, c->uuid) == 0)
            return true;
    return false;
}

static void export_progress(uint64_t done, uint64_t total, void *userdata)
{
    struct mig_op *op = userdata;
    struct conn *conn = conn_find(op->d, op->conn_id);
    if (!conn)
        return;
    char msg[128];
    snprintf(msg, sizeof(msg), "bundle: %llu of %llu MiB written", (unsigned long long)(done >> 20),
             (unsigned long long)(total >> 20));
    Trustme__Progress p = TRUSTME__PROGRESS__INIT;
    p.message = msg;
    Trustme__Response r = TRUSTME__RESPONSE__INIT;
    r.body_case = TRUSTME__RESPONSE__BODY_PROGRESS;
    r.progress = &p;
    conn_send(conn, op->req_id, &r);
}

/* The export worker wrote <path>.part and synced it (or failed, or was killed): the AK signs it,
 * export_signed marks the lock exported, the TPM anchors it, export_anchored renames and answers.
 * The export stays listed until it is signed, so that an abort still waits. */
static void export_written(const struct bundle_header *h, const tm_err *werr, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    struct container *c = container_find(op->d, op->uuid);
    char part[PATH_MAX + 8];
    snprintf(part, sizeof(part), "%s.part", op->path);
    tm_err e = {0};
    if (werr || !c) {
        /* No bundle was completed: the container is free again. */
        unlink_export(op);
        drop_part(op, c);
        op_error(op, "migrate.export", c, werr ? werr->code : ENOENT, "export: %s",
                 werr ? werr->msg : "the container went away while its bundle was written");
        return;
    }
    /* The source's AK signs the head and the bundle ends with its signature (source_auth.h);
     * export_signed goes on. Killed meanwhile, the lock says exporting: no bundle. */
    memcpy(op->lock.digest, h->digest, sizeof(op->lock.digest));
    if (source_auth_sign(op->d, h, part, export_signed, op, &e) < 0) {
        unlink_export(op);
        drop_part(op, c);
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    op = NULL; /* export_signed's */
}

/* The lock file, written and synced; then the worker writes <path>.part (export_worker.h) while
 * trustmed serves others, and export_written goes on. */
static int write_bundle(struct mig_op *op, struct container *c, const struct secret *key,
                        const Trustme__Tpmd__Response *anchors, tm_err *err)
{
    uint8_t raw[BUNDLE_ID_LEN / 2];
    int r = secure_random(raw, sizeof(raw), err);
    if (r < 0)
        return r;
    struct bundle_header h = {0};
    tm_hex(raw, sizeof(raw), h.bundle_id);
    snprintf(h.offer_id, sizeof(h.offer_id), "%s", op->offer_id);
    snprintf(h.target_ak, sizeof(h.target_ak), "%s", op->target_ak);
    snprintf(h.uuid, sizeof(h.uuid), "%s", c->uuid);
    snprintf(h.name, sizeof(h.name), "%s", c->cfg->name);
    h.uid_base = c->uid_base;
    if (c->cfg->guestos[0])
        snprintf(h.guestos, sizeof(h.guestos), "%s %llu", c->cfg->guestos,
                 (unsigned long long)(c->guestos_version ? c->guestos_version : c->cfg->guestos_version));
    else
        snprintf(h.guestos, sizeof(h.guestos), "-");
    char dir[PATH_MAX], img[PATH_MAX + 16];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(h.parts[h.nparts++].name, BUNDLE_PART_NAME_MAX, "config.json");
    snprintf(img, sizeof(img), "%s/data.img", dir);
    struct stat st;
    if (stat(img, &st) == 0)
        snprintf(h.parts[h.nparts++].name, BUNDLE_PART_NAME_MAX, "data.img");
    /* The vTPM's and the keystore's state, with their anchor values (carry.h). */
    _cleanup_free_ char(*srcs)[PATH_MAX] = calloc(BUNDLE_PARTS_MAX, PATH_MAX);
    _cleanup_secret_ struct secret *secrets = NULL;
    if (!srcs)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (anchors && (r = carry_add(c, anchors, &h, srcs, BUNDLE_PARTS_MAX, err)) < 0)
        return r;
    _cleanup_close_ int token_fd = -1;
    if ((r = bundle_secrets(c, key, &secrets, err)) < 0 ||
        (r = token_carry_add(&h, c->uuid, key, op->carried, &token_fd, err)) < 0)
        return r;

    /* The lock first, durably: from here on a bundle may exist, so the container never starts
     * here again unless the target refuses or no bundle was completed. */
    struct migrate_lock l = {.exported = false};
    snprintf(l.bundle_id, sizeof(l.bundle_id), "%s", h.bundle_id);
    snprintf(l.offer_id, sizeof(l.offer_id), "%s", h.offer_id);
    memcpy(l.ak_spki, op->ak_spki, op->ak_spki_len);
    l.ak_spki_len = op->ak_spki_len;
    snprintf(l.path, sizeof(l.path), "%s", op->path);
    /* The bundle is written as <path>.part and gets its name only once the lock says exported:
     * a trustmed killed before that mark left no complete bundle under its name, and the next
     * start-up removes the .part and releases the lock (migrate_recover). */
    char part[PATH_MAX + 8];
    snprintf(part, sizeof(part), "%s.part", op->path);
    struct stat pst;
    if (lstat(op->path, &pst) == 0 || errno != ENOENT)
        return tm_err_set(err, EEXIST, "%s exists already", op->path);
    if ((r = migrate_lock_write(c, &l, err)) < 0)
        return r;
    test_crash_point(op->d->data_dir, "migrate-export-locked");
    op->lock = l;
    struct export_worker *w = NULL;
    if ((r = export_worker_start(op->d, part, dir, &h, op->key_spki, op->key_spki_len, secrets, export_progress,
                                 export_written, op, &w, err)) < 0) {
        tm_err e2 = {0};
        (void)migrate_lock_remove(c, &e2); /* no bundle was started: the container is free */
        return r;
    }
    /* Listed while the worker writes: the lock says exporting, which an abort without the
     * target's refusal would otherwise release under a bundle still being written. */
    op->next = exports;
    exports = op;
    return 0;
}

/* No complete bundle under its name: the .part goes and the container is free again. */
static void drop_part(struct mig_op *op, struct container *c)
{
    char part[PATH_MAX + 8];
    snprintf(part, sizeof(part), "%s.part", op->path);
    (void)unlink(part);
    tm_err e = {0};
    if (c)
        (void)migrate_lock_remove(c, &e);
}

/* The lock file says exported; now the TPM anchors it (lock_anchor.h): from here on the
 * container does not start here whatever happens to the file. Then the rename. */
static void export_anchored(struct container *c, const tm_err *aerr, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    struct migrate_lock *l = &op->lock;
    char part[PATH_MAX + 8];
    snprintf(part, sizeof(part), "%s.part", op->path);
    tm_err e = {0};
    if (aerr) {
        /* Not anchored (an NV write fails before it changes anything), not renamed: no
         * bundle under its name. */
        (void)unlink(part);
        (void)migrate_lock_remove(c, &e);
        op_error(op, "migrate.export", c, aerr->code, "export: %s", aerr->msg);
        return;
    }
    test_crash_point(op->d->data_dir, "migrate-export-marked");
    if (renameat2(AT_FDCWD, part, AT_FDCWD, op->path, RENAME_NOREPLACE) < 0) {
        tm_err_sys(&e, "cannot rename %s (the container stays locked: rename it by hand)", part);
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    fsync_parent(op->path);
    daemon_audit(op->d, "migrate.export", "ok", c, op->actor, "bundle %s for offer %s (target AK %s)", l->bundle_id,
                 op->offer_id, op->target_ak);
    Trustme__MigrateMessage m = TRUSTME__MIGRATE_MESSAGE__INIT;
    m.bundle_id = l->bundle_id;
    m.offer_id = op->offer_id;
    m.uuid = c->uuid;
    answer(op, &m);
}

/* Starts the bundle's worker; export_written, source_auth_sign, export_signed, then
 * export_anchored go on and answer. On success it takes *opp. */
static void finish_export(struct mig_op **opp, struct container *c, const struct secret *key,
                          const Trustme__Tpmd__Response *anchors)
{
    struct mig_op *op = *opp;
    tm_err e = {0};
    if (write_bundle(op, c, key, anchors, &e) < 0) {
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    *opp = NULL; /* the worker's, then export_written's */
}

/* The bundle is complete and signed: the lock is marked exported, then the TPM anchors it;
 * export_anchored answers. */
static void export_signed(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *serr,
                          void *userdata)
{
    (void)signer;
    (void)ak_id;
    _cleanup_(op_freep) struct mig_op *op = userdata;
    unlink_export(op);
    struct container *c = container_find(d, op->uuid);
    tm_err e = {0};
    if (serr || !c) {
        drop_part(op, c);
        op_error(op, "migrate.export", c, serr ? serr->code : ENOENT, "export: %s",
                 serr ? serr->msg : "the container went away");
        return;
    }
    test_crash_point(d->data_dir, "migrate-export-written");
    op->lock.exported = true;
    if (migrate_lock_write(c, &op->lock, &e) < 0 || migrate_anchor_set(c, &op->lock, export_anchored, op, &e) < 0) {
        drop_part(op, c);
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    op = NULL; /* export_anchored's */
}

/* The source's anchor values of the vTPM state and the keystore's stores: they go into the
 * manifest, and the target writes them into its own table. */
static void export_anchors(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    unlink_export(op);
    struct container *c = container_find(d, op->uuid);
    if (!c) {
        op_error(op, "migrate.export", NULL, ENOENT, "export: the container went away");
        return;
    }
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ANCHOR) {
        op_error(op, "migrate.export", c, err ? err->code : EPROTO,
                 "export: the TPM anchors (its migration lock, vTPM and keystore): %s",
                 err ? err->msg : "unexpected answer from trustme-tpmd");
        return;
    }
    tm_err e = {0};
    if (migrate_anchor_check_export(c, resp, &e) < 0) {
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    test_crash_point(d->data_dir, "migrate-export-anchors"); /* anchors read, nothing written */
    char tp_index[CARRY_ANCHOR_NAME_MAX];
    carry_tp_index_name(c->uuid, tp_index);
    const ProtobufCBinaryData *tpv = c->cfg->keystore ? tpmd_anchor_value(resp, tp_index) : NULL;
    if (tpv && tpv->len && !op->tp_read) {
        /* The tamper-proof objects the index lists: all the anchors again with them, in one read
         * (the keystore service is stopped: nothing changes them meanwhile). */
        char names[CARRY_ANCHORS + 2 + BUNDLE_TP_MAX][CARRY_ANCHOR_NAME_MAX];
        const char *kinds[CARRY_ANCHORS], *ptrs[CARRY_ANCHORS + 2 + BUNDLE_TP_MAX];
        size_t n = carry_anchor_names(c->uuid, names, kinds);
        migrate_anchor_name(c, names[n++]);
        snprintf(names[n++], CARRY_ANCHOR_NAME_MAX, "%s", tp_index);
        int k = carry_tp_names(c->uuid, tpv, &names[n], &e);
        if (k < 0) {
            op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
            return;
        }
        n += (size_t)k;
        for (size_t i = 0; i < n; i++)
            ptrs[i] = names[i];
        op->tp_read = true;
        op->next = exports;
        exports = op;
        if (tpmd_anchor_get(d, ptrs, n, export_anchors, op, &e) < 0) {
            unlink_export(op);
            op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
            return;
        }
        op = NULL;
        return;
    }
    finish_export(&op, c, op->key, c->cfg->vtpm || c->cfg->keystore ? resp : NULL);
}

static void export_key(struct container *c, struct secret *key, const tm_err *err);

/* The data key and the token's carried form: kept with the export until the bundle is written. */
static void export_key_carried(struct container *c, struct secret *key, struct tokens_carried *t, const tm_err *err)
{
    for (struct mig_op *o = exports; o; o = o->next)
        if (strcmp(o->uuid, c->uuid) == 0) {
            o->carried = steal_ptr(t);
            break;
        }
    tokens_carried_done(t);
    export_key(c, key, err);
}

static void export_key(struct container *c, struct secret *key, const tm_err *err)
{
    _cleanup_secret_ struct secret *k = key;
    _cleanup_(op_freep) struct mig_op *op = take_export(c);
    if (!op)
        return;
    if (!key) {
        op_error(op, "migrate.export", c, err ? err->code : EIO, "export: the data key: %s",
                 err ? err->msg : "not available");
        return;
    }
    /* The TPM's word on an earlier export (the lock file may have been removed: lock_anchor.h),
     * and the carried state's anchor values, in one read. Still listed while tpmd answers: a
     * second export of the container is refused meanwhile. */
    char names[CARRY_ANCHORS][CARRY_ANCHOR_NAME_MAX], lock[MIGRATE_ANCHOR_NAME_MAX + 1], tp[CARRY_ANCHOR_NAME_MAX];
    const char *kinds[CARRY_ANCHORS], *ptrs[CARRY_ANCHORS + 2];
    size_t n = c->cfg->vtpm || c->cfg->keystore ? carry_anchor_names(c->uuid, names, kinds) : 0;
    for (size_t i = 0; i < n; i++)
        ptrs[i] = names[i];
    migrate_anchor_name(c, lock);
    ptrs[n++] = lock;
    if (c->cfg->keystore) {
        /* The store's tamper-proof index: its objects are read next (export_anchors). */
        carry_tp_index_name(c->uuid, tp);
        ptrs[n++] = tp;
    }
    op->key = steal_ptr(k);
    op->next = exports;
    exports = op;
    tm_err e = {0};
    if (tpmd_anchor_get(op->d, ptrs, n, export_anchors, op, &e) < 0) {
        unlink_export(op);
        op_error(op, "migrate.export", c, e.code, "export: %s", e.msg);
        return;
    }
    op = NULL;
}

/* The offer was made over a nonce that names this device's AK (migrate_nonce.h): the target keeps
 * it and installs only a bundle this AK signed. Otherwise the bundle would be refused there, after
 * the container was locked here; so it is refused now, before the PIN is tried. */
static void export_nonce_checked(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *aerr,
                                 void *userdata)
{
    struct mig_op *op = userdata;
    (void)signer;
    unlink_export(op);
    struct container *c = container_find(d, op->uuid);
    tm_err err = {0};
    if (!c) {
        op_error(op, "migrate.export", NULL, ENOENT, "export: the container went away");
    } else if (aerr) {
        op_error(op, "migrate.export", c, aerr->code, "export: source binding: %s", aerr->msg);
    } else if (!migrate_nonce_names(op->nonce, ak_id)) {
        op_error(op, "migrate.export", c, EPERM,
                 "export: source binding: the nonce does not name this device's AK (make it here with `trustme "
                 "migrate nonce`, and have the target offer over it)");
    } else if (c->state != CS_STOPPED || migrate_locked(c)) {
        op_error(op, "migrate.export", c, EBUSY, "export: the container was started or locked meanwhile");
    } else {
        ProtobufCBinaryData pin = {.len = op->pin_len, .data = op->pin->data};
        ProtobufCBinaryData puk = {.len = op->puk_len, .data = op->puk->data};
        op->next = exports;
        exports = op;
        int r = tokens_get_key_carried(c, &pin, op->puk_len ? &puk : NULL, export_key_carried, &err);
        secret_free(op->pin);
        secret_free(op->puk);
        op->pin = op->puk = NULL;
        if (r == 0)
            return;
        take_export(c);
        op_error(op, "migrate.export", c, err.code, "export: %s", err.msg);
    }
    op_free(op);
}

static void migrate_export(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq)
{
    struct daemon *d = conn->d;
    struct container *c = rq->id ? container_find(d, rq->id) : NULL;
    if (!c) {
        conn_send_error(conn, id, ENOENT, "migrate export: no container \"%s\"", rq->id ? rq->id : "");
        return;
    }
    _cleanup_(message_freep) Trustme__MigrateMessage *offer =
        rq->has_offer ? trustme__migrate_message__unpack(NULL, rq->offer.len, rq->offer.data) : NULL;
    const char *why = NULL;
    if (c->state != CS_STOPPED)
        why = "the container must be stopped (cold migration)";
    else if (migrate_locked(c))
        why = "the container is migrating already (commit, or abort with the target's refusal)";
    else if (c->cfg->token.kind != TOKEN_KIND_SOFT)
        why = "only a container with a soft token migrates (a PKCS#11 token stays with its card)";
    else if (c->cfg->vtpm && vtpm_busy(c))
        why = "the container's vTPM is still saving its state: try again in a moment";
    else if (c->cfg->keystore && keystore_svc_running(c))
        why = "the container's keystore service still runs: try again in a moment";
    else if (!offer || !id_ok(offer->offer_id))
        why = "the offer does not decode or has no offer id";
    else if (!rq->has_wrap_spki || rq->wrap_spki.len == 0 || rq->wrap_spki.len > MIGRATE_SPKI_MAX || !rq->has_ak_spki ||
             rq->ak_spki.len == 0 || rq->ak_spki.len > MIGRATE_SPKI_MAX || !rq->has_ak_name || rq->ak_name.len != 34)
        why = "the verified migration key, AK key and AK name are missing";
    else if (!rq->path || rq->path[0] != '/' || strlen(rq->path) >= PATH_MAX - 8 || strchr(rq->path, '\n'))
        why = "the bundle path must be absolute, on one line";
    else if (!rq->has_pin)
        why = "the container's PIN is needed to unwrap its data key";
    else if (!rq->has_nonce || rq->nonce.len != MIGRATE_NONCE_LEN)
        why = "the nonce the offer was made over (32 bytes) is missing";
    else if (!offer->has_nonce || offer->nonce.len != MIGRATE_NONCE_LEN ||
             memcmp(offer->nonce.data, rq->nonce.data, MIGRATE_NONCE_LEN) != 0)
        why = "the offer names another nonce than the one given";
    if (why) {
        daemon_audit(d, "migrate.export", "fail", c, conn->actor, "%s", why);
        conn_send_error(conn, id, EINVAL, "migrate export: %s", why);
        return;
    }
    if (export_running(c)) {
        conn_send_error(conn, id, EBUSY, "migrate export: an export of this container is under way");
        return;
    }
    struct mig_op *op = op_new(conn, id);
    if (!op)
        return;
    /* It is to start on the target: its standby trustme-vtpm goes (a start here launches one). */
    vtpm_drop_standby(c);
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    snprintf(op->path, sizeof(op->path), "%s", rq->path);
    snprintf(op->offer_id, sizeof(op->offer_id), "%s", offer->offer_id);
    tm_hex(rq->ak_name.data, rq->ak_name.len, op->target_ak);
    memcpy(op->key_spki, rq->wrap_spki.data, rq->wrap_spki.len);
    op->key_spki_len = rq->wrap_spki.len;
    memcpy(op->ak_spki, rq->ak_spki.data, rq->ak_spki.len);
    op->ak_spki_len = rq->ak_spki.len;
    memcpy(op->nonce, rq->nonce.data, MIGRATE_NONCE_LEN);
    tm_err err = {0};
    /* Kept in locked memory while this device's AK id is fetched (export_nonce_checked). */
    op->pin_len = rq->pin.len;
    op->puk_len = rq->has_puk ? rq->puk.len : 0;
    if (secret_new(op->pin_len + 1, &op->pin, &err) < 0 || secret_new(op->puk_len + 1, &op->puk, &err) < 0) {
        op_error(op, "migrate.export", c, err.code, "export: %s", err.msg);
        op_free(op);
        return;
    }
    if (op->pin_len)
        memcpy(op->pin->data, rq->pin.data, op->pin_len);
    if (op->puk_len)
        memcpy(op->puk->data, rq->puk.data, op->puk_len);
    op->next = exports;
    exports = op;
    if (source_auth_ak_id(d, export_nonce_checked, op, &err) < 0) {
        unlink_export(op);
        op_error(op, "migrate.export", c, err.code, "export: source binding: %s", err.msg);
        op_free(op);
    }
}

/* ---- import (target) --------------------------------------------------------------------------- */

static void sign_done(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    (void)d;
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SIGNATURE) {
        op_error(op, "migrate.import", NULL, err ? err->code : EPROTO, "import: signing the %s: %s",
                 op->refused[0] ? "refusal" : "receipt", err ? err->msg : "unexpected answer from trustme-tpmd");
        return;
    }
    Trustme__MigrateMessage m = TRUSTME__MIGRATE_MESSAGE__INIT;
    m.bundle_id = op->b.h.bundle_id;
    m.offer_id = op->b.h.offer_id;
    m.uuid = op->b.h.uuid;
    m.name = op->b.h.name;
    m.has_signature = true;
    m.signature = resp->migrate_signature->signature;
    if (op->refused[0])
        m.refused = op->refused;
    answer(op, &m);
}

/* Sign op->text with the AK (the receipt, or a refusal once the offer is spent). */
static void sign_text(struct mig_op *op)
{
    Trustme__Tpmd__MigrateSign ms = TRUSTME__TPMD__MIGRATE_SIGN__INIT;
    ms.has_data = true;
    ms.data = (ProtobufCBinaryData){.len = strlen(op->text), .data = (uint8_t *)op->text};
    if (op->installed)
        ms.installed_offer = op->b.h.offer_id;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MIGRATE_SIGN;
    req.migrate_sign = &ms;
    tm_err err = {0};
    if (tpmd_call(op->d, &req, sign_done, op, &err) < 0) {
        op_error(op, "migrate.import", NULL, err.code, "import: %s", err.msg);
        op_free(op);
    }
}

/* The offer is spent and the import failed: the source may abort with this signed refusal. */
static void refuse(struct mig_op *op, const char *check)
{
    snprintf(op->refused, sizeof(op->refused), "%s", check);
    daemon_audit(op->d, "migrate.import", "fail", NULL, op->actor, "bundle %s: refused: %s", op->b.h.bundle_id, check);
    migrate_text("refusal", op->b.h.bundle_id, op->b.h.offer_id, op->b.h.uuid, check, NULL, op->text, sizeof(op->text));
    sign_text(op);
}

#define MIGRATED_FROM_FILE "migrated.from"
#define MIGRATED_FROM_INFO "trustme migrated from v1\n"

/* What an install keeps in migrated.from: the receipt's text, then a MAC of it under this
 * device's keystore root (from its TPM-sealed secret) and the UUID. Every field of the text is
 * in the bundle: without the MAC, root with file operations could write it for a container of
 * that UUID that was never installed (the import refused after the spend) and have the receipt
 * signed again, which lets the source erase a container no device has. */
static int migrated_from_text(struct daemon *d, const char *uuid, const char *text, char *out, size_t size, tm_err *err)
{
    const struct secret *root = tpmd_keystore_root(d);
    if (!root)
        return tm_err_set(err, EAGAIN, "the device storage secret is not unsealed (yet)");
    char info[sizeof(MIGRATED_FROM_INFO) + TEXT_MAX];
    int il = snprintf(info, sizeof(info), MIGRATED_FROM_INFO "%s", text);
    if (il < 0 || (size_t)il >= sizeof(info))
        return tm_err_set(err, EOVERFLOW, "receipt text too long");
    uint8_t mac[32];
    char hex[2 * sizeof(mac) + 1];
    tm_hkdf_sha256(root->data, root->len, uuid, strlen(uuid), info, (size_t)il, mac, sizeof(mac));
    tm_hex(mac, sizeof(mac), hex);
    int n = snprintf(out, size, "%smac %s\n", text, hex);
    return n > 0 && (size_t)n < size ? n : tm_err_set(err, EOVERFLOW, "receipt text too long");
}

/* c was installed here from the bundle op opened (its receipt text, kept at the install). */
static bool installed_from(const struct container *c, struct mig_op *op)
{
    char dir[PATH_MAX], p[PATH_MAX + 32], want[TEXT_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/" MIGRATED_FROM_FILE, dir);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    tm_err e = {0};
    if (read_file(p, TEXT_MAX, &text, &len, &e) < 0 ||
        migrate_text("receipt", op->b.h.bundle_id, op->b.h.offer_id, op->b.h.uuid, NULL, op->b.h.digest, op->text,
                     sizeof(op->text)) < 0 ||
        migrated_from_text(op->d, op->b.h.uuid, op->text, want, sizeof(want), &e) < 0)
        return false;
    return strlen(text) == len && strcmp(text, want) == 0;
}

struct stage_ctx {
    struct mig_op *op;
    const struct secret *key; /* the data key */
    const uint8_t *ks_keys; /* the keystore's keys, or NULL */
};

static int stage_files(const char *dir, void *ud, tm_err *err)
{
    struct stage_ctx *s = ud;
    char p[PATH_MAX];
    for (size_t i = 1; i < s->op->b.h.nparts; i++) {
        if (token_carry_is_part(s->op->b.h.parts[i].name))
            continue; /* the token is scd's, built before the install */
        int r = bundle_extract_into(&s->op->b, i, dir, err);
        if (r < 0)
            return r;
    }
    /* The volume's files belong to the source's uids: the first start moves them to ours. */
    snprintf(p, sizeof(p), "%s/" TOKENS_MIGRATED_UID_FILE, dir);
    char text[16];
    int n = snprintf(text, sizeof(text), "%u\n", s->op->b.h.uid_base);
    int r = write_file_atomic(p, text, (size_t)n, 0600, err);
    /* Which bundle installed it: a retry after a lost receipt gets the receipt signed again. */
    char receipt[TEXT_MAX], from[TEXT_MAX];
    snprintf(p, sizeof(p), "%s/" MIGRATED_FROM_FILE, dir);
    n = migrate_text("receipt", s->op->b.h.bundle_id, s->op->b.h.offer_id, s->op->b.h.uuid, NULL, s->op->b.h.digest,
                     receipt, sizeof(receipt));
    if (r == 0 && n < 0)
        r = tm_err_set(err, EOVERFLOW, "receipt text too long");
    if (r == 0 && (n = migrated_from_text(s->op->d, s->op->b.h.uuid, receipt, from, sizeof(from), err)) < 0)
        r = n;
    if (r == 0)
        r = write_file_atomic(p, from, (size_t)n, 0600, err);
    if (r == 0)
        r = tokens_migrated_store(s->op->d, dir, s->op->b.h.uuid, s->key, err);
    if (r == 0 && s->ks_keys)
        r = keystore_migrated_store(s->op->d, dir, s->op->b.h.uuid, s->key, s->ks_keys, err);
    test_crash_point(s->op->d->data_dir, "migrate-import-staged"); /* all staged, not renamed in */
    return r;
}

static int install(struct mig_op *op, const struct secret *keys, tm_err *err)
{
    struct daemon *d = op->d;
    _cleanup_secret_ struct secret *key = NULL;
    int r0 = secret_new(BUNDLE_DATA_KEY_LEN, &key, err);
    if (r0 < 0)
        return r0;
    memcpy(key->data, keys->data, BUNDLE_DATA_KEY_LEN);
    const uint8_t *ks = keys->data + BUNDLE_KS_KEYS_OFFSET;
    bool have_ks = false;
    for (size_t i = 0; i < BUNDLE_KS_KEYS_LEN; i++)
        have_ks |= ks[i] != 0;
    const struct bundle_part *cp = &op->b.h.parts[0];
    if (cp->size == 0 || cp->size > CONFIG_PART_MAX)
        return tm_err_set(err, EINVAL, "config: %llu bytes", (unsigned long long)cp->size);
    if (d->device.signed_configs)
        return tm_err_set(err, EPERM,
                          "config: this device accepts only signed configs, and this version does "
                          "not carry the config's signature yet");
    _cleanup_free_ char *json = malloc(cp->size + 1);
    if (!json)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (pread(op->b.fd, json, cp->size, (off_t)cp->offset) != (ssize_t)cp->size)
        return tm_err_sys(err, "config: cannot read it");
    json[cp->size] = '\0';
    /* Read again from a file that may have changed since bundle_open hashed it. */
    uint8_t got[32];
    tm_sha256(json, cp->size, got);
    if (memcmp(got, cp->sha256, 32) != 0)
        return tm_err_set(err, EBADMSG, "part config.json: it changed after its digest was checked (altered)");
    struct container_config *cfg = NULL;
    int r = config_parse(json, cp->size, &cfg, err);
    if (r < 0) {
        config_free(cfg);
        return tm_err_prefix(err, "config");
    }
    if (strcmp(cfg->name, op->b.h.name) != 0 || cfg->token.kind != TOKEN_KIND_SOFT) {
        config_free(cfg);
        return tm_err_set(err, EINVAL, "config: not the manifest's container, or not a soft token");
    }
    struct stage_ctx s = {op, key, have_ks ? ks : NULL};
    struct container *c = NULL;
    if ((r = container_create_staged(d, cfg, json, cp->size, op->b.h.uuid, stage_files, &s, &c, err)) < 0) {
        config_free(cfg);
        return tm_err_prefix(err, "install");
    }
    return 0;
}

static void import_install(struct mig_op *op);
static void import_token(struct mig_op *op);
static void import_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata);

static void decrypt_done(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct mig_op *op = userdata;
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SECRET) {
        /* Refused before the key was used (an unknown or spent offer: another target's bundle, a
         * second import) or by the key's policy (the device is not in the state the source
         * verified; the offer is spent then: a signed refusal lets the source abort). */
        /* Not spent (no refusal): unknown offer, bad request, another target, installed here from
         * it already (EALREADY, anchored: a container of it may have been removed and restored),
         * the anchor table failed (ENOLCK: the offer's state is unknown), or the offer is another
         * source's (EPERM: its nonce names another AK). */
        bool spent = err && err->code != ENOENT && err->code != EINVAL && err->code != EXDEV && err->code != EALREADY &&
                     err->code != ENOLCK && err->code != EPERM;
        /* ESTALE: spent here before, by an import that did not install (killed, or refused). A
         * refusal is signed only while the container is not here: a concurrent import of the same
         * bundle may have installed it meanwhile. */
        bool importing = false;
        for (struct mig_op *o = imports; o; o = o->next)
            importing |= strcmp(o->b.h.uuid, op->b.h.uuid) == 0;
        if (spent && err->code == ESTALE &&
            (importing || container_find(d, op->b.h.uuid) || container_find(d, op->b.h.name))) {
            op_error(op, "migrate.import", NULL, EEXIST, "import: container %s (%s) exists here already", op->b.h.name,
                     op->b.h.uuid);
            op_free(op);
            return;
        }
        if (spent) {
            refuse(op, err->msg);
            return;
        }
        op_error(op, "migrate.import", NULL, err ? err->code : EPROTO, "import: offer: %s",
                 err ? err->msg : "unexpected answer from trustme-tpmd");
        op_free(op);
        return;
    }
    const ProtobufCBinaryData *k = &resp->migrate_secret->secret;
    tm_err e = {0};
    if (bundle_unseal(&op->b, k->data, k->len, &op->key, &e) < 0) {
        refuse(op, e.msg);
        return;
    }
    import_token(op);
}

/* scd built the token; its entry and the carried anchor values go into this device's table (one
 * NV write) before the container is installed: killed in between, no container is there (the
 * retry is refused as for every import that spent its offer) and the entries name nothing; the
 * other way round, an installed container would have no token state, vTPM or keystore anchor. */
static void import_token_built(struct daemon *d, const struct tpmd_anchor_entry *entry, const tm_err *err,
                               void *userdata)
{
    struct mig_op *op = userdata;
    tm_err e = {0};
    if (err) {
        char why[400];
        snprintf(why, sizeof(why), "part " TOKEN_CARRY_PART ": the token service: %s", err->msg);
        refuse(op, why);
        return;
    }
    test_crash_point(d->data_dir, "migrate-import-token-built"); /* token files, nothing anchored */
    char names[CARRY_ENTRIES_MAX][CARRY_ANCHOR_NAME_MAX];
    struct tpmd_anchor_entry set[CARRY_ENTRIES_MAX + 1];
    int n = carry_anchor_entries(&op->b.h, names, set, &e);
    if (n < 0) {
        refuse(op, e.msg);
        return;
    }
    set[n++] = *entry;
    if (tpmd_anchor_update(d, set, (size_t)n, NULL, 0, import_anchored, op, &e) < 0)
        refuse(op, e.msg);
}

/* The carried token: scd builds it under this device's secret (tokens_carry.h). */
static void import_token(struct mig_op *op)
{
    tm_err e = {0};
    _cleanup_secret_ struct secret *key = NULL;
    struct tokens_carried *t = NULL;
    if (!tm_uuid_valid(op->b.h.uuid)) {
        refuse(op, "bundle format: the manifest's uuid is not a UUID");
        return;
    }
    /* Never over the token of a container that is here (a second import of the same UUID). */
    if (container_find(op->d, op->b.h.uuid) || container_find(op->d, op->b.h.name)) {
        char why[300];
        snprintf(why, sizeof(why), "container %s (%s) exists here already", op->b.h.name, op->b.h.uuid);
        refuse(op, why);
        return;
    }
    if (secret_new(BUNDLE_DATA_KEY_LEN, &key, &e) < 0 || (memcpy(key->data, op->key->data, BUNDLE_DATA_KEY_LEN), 0) ||
        token_carry_read(&op->b, key, &t, &e) < 0) {
        refuse(op, e.msg);
        return;
    }
    op->carried = t;
    op->next = imports;
    imports = op;
    if (tokens_import(op->d, op->b.h.uuid, t, &op->token_entry, import_token_built, op, &e) < 0)
        refuse(op, e.msg);
}

static void import_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct mig_op *op = userdata;
    (void)resp;
    if (err && err->code) {
        char why[300];
        snprintf(why, sizeof(why), "the carried TPM anchors: %s", err->msg);
        refuse(op, why);
        return;
    }
    test_crash_point(d->data_dir, "migrate-import-anchored"); /* anchors written, not installed */
    import_install(op);
}

static void import_install(struct mig_op *op)
{
    struct daemon *d = op->d;
    tm_err e = {0};
    if (install(op, op->key, &e) < 0) {
        refuse(op, e.msg);
        return;
    }
    struct container *c = container_find(d, op->b.h.uuid);
    if (c)
        tokens_imported(c);
    test_crash_point(d->data_dir, "migrate-import-installed"); /* installed, no receipt yet */
    daemon_audit(op->d, "migrate.import", "ok", container_find(op->d, op->b.h.uuid), op->actor,
                 "bundle %s of offer %s from the source AK %s", op->b.h.bundle_id, op->b.h.offer_id, op->source);
    migrate_text("receipt", op->b.h.bundle_id, op->b.h.offer_id, op->b.h.uuid, NULL, op->b.h.digest, op->text,
                 sizeof(op->text));
    op->installed = true;
    sign_text(op);
}

static void import_authenticated(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *aerr,
                                 void *userdata);

static void import_begin(struct mig_op *op, const char *path, bool again);

static void migrate_import(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq, bool again)
{
    if (!rq->path || rq->path[0] != '/') {
        conn_send_error(conn, id, EINVAL, "migrate import: the bundle path must be absolute");
        return;
    }
    struct mig_op *op = op_new(conn, id);
    if (op)
        import_begin(op, rq->path, again);
}

void migrate_net_import(struct daemon *d, uint64_t net_id, const char *actor, const char *path,
                        const struct migrate_announced *a)
{
    struct mig_op *op = calloc(1, sizeof(*op));
    if (!op) {
        migrate_net_reply(d, net_id, NULL, ENOMEM, "out of memory");
        return;
    }
    *op = (struct mig_op){.d = d, .conn_id = net_id, .net = true, .b.fd = -1, .announced = a};
    snprintf(op->actor, sizeof(op->actor), "%s", actor);
    import_begin(op, path, false);
}

void migrate_net_used(struct daemon *d, uint64_t net_id, const char *actor, const struct migrate_announced *a,
                      bool installed)
{
    struct mig_op *op = calloc(1, sizeof(*op));
    if (!op) {
        migrate_net_reply(d, net_id, NULL, ENOMEM, "out of memory");
        return;
    }
    *op = (struct mig_op){.d = d, .conn_id = net_id, .net = true, .b.fd = -1};
    snprintf(op->actor, sizeof(op->actor), "%s", actor);
    /* The answers name only what the source's AK signed in the announcement. */
    snprintf(op->b.h.bundle_id, sizeof(op->b.h.bundle_id), "%s", a->bundle_id);
    snprintf(op->b.h.offer_id, sizeof(op->b.h.offer_id), "%s", a->offer_id);
    snprintf(op->b.h.uuid, sizeof(op->b.h.uuid), "%s", a->uuid);
    snprintf(op->b.h.digest, sizeof(op->b.h.digest), "%s", a->digest);
    struct container *have = container_find(d, a->uuid);
    if (have)
        snprintf(op->b.h.name, sizeof(op->b.h.name), "%s", have->cfg->name);
    if (installed) {
        /* The check of `migrate import --receipt-again`: migrated.from names this bundle, offer,
         * UUID and digest under this device's MAC. */
        if (!have || !installed_from(have, op)) {
            op_error(op, "migrate.import", NULL, EALREADY,
                     "import: offer %s was used already: a container was installed from it, not from bundle %s",
                     a->offer_id, a->bundle_id);
            op_free(op);
            return;
        }
        daemon_audit(d, "migrate.import", "ok", have, op->actor, "bundle %s of offer %s: its receipt again",
                     a->bundle_id, a->offer_id);
        op->installed = true;
        sign_text(op);
        return;
    }
    /* Spent by an import that did not install (killed, or refused after the spend): the refusal,
     * unless a container of that UUID is here or being installed (as decrypt_done decides). */
    bool importing = false;
    for (struct mig_op *o = imports; o; o = o->next)
        importing |= strcmp(o->b.h.uuid, a->uuid) == 0;
    if (importing || have) {
        op_error(op, "migrate.import", NULL, EEXIST, "import: container %s exists here already", a->uuid);
        op_free(op);
        return;
    }
    char why[200];
    snprintf(why, sizeof(why), "offer %s was spent here by an import that installed nothing", a->offer_id);
    refuse(op, why);
}

static void import_begin(struct mig_op *op, const char *path, bool again)
{
    struct daemon *d = op->d;
    tm_err err = {0};
    op->opened = true;
    /* Every part's digest is checked before the offer is spent: an altered part is refused and
     * the genuine bundle still imports. */
    if (bundle_open(path, &op->b, &err) < 0) {
        op_error(op, "migrate.import", NULL, err.code, "import: %s", err.msg);
        op_free(op);
        return;
    }
    /* Over the endpoint: exactly the bundle the source's AK announced (bundle_open computed its
     * head digest), not other bytes sent on the authenticated connection. */
    const struct migrate_announced *a = op->announced;
    if (a && (strcmp(a->bundle_id, op->b.h.bundle_id) || strcmp(a->offer_id, op->b.h.offer_id) ||
              strcmp(a->uuid, op->b.h.uuid) || strcmp(a->digest, op->b.h.digest))) {
        op_error(op, "migrate.import", NULL, EBADMSG,
                 "import: source authentication: the bundle received is not the one its source announced");
        op_free(op);
        return;
    }
    op->announced = NULL; /* the connection's: it may go while tpmd and scd work */
    struct container *have = container_find(d, op->b.h.uuid);
    /* Over the endpoint a bundle sent again after its receipt was lost gets that receipt again:
     * the same check as `migrate import --receipt-again`. */
    if (op->net && have && installed_from(have, op))
        again = true;
    if (again) {
        /* Installed from this very bundle, and its receipt was lost (trustmed killed before it
         * answered): the receipt again, which states only what is true. */
        if (!have || !installed_from(have, op)) {
            op_error(op, "migrate.import", NULL, ENOENT,
                     "receipt: container %s (%s) was not installed here from bundle %s", op->b.h.name, op->b.h.uuid,
                     op->b.h.bundle_id);
            op_free(op);
            return;
        }
        daemon_audit(d, "migrate.import", "ok", have, op->actor, "bundle %s of offer %s: its receipt again",
                     op->b.h.bundle_id, op->b.h.offer_id);
        op->installed = true;
        sign_text(op);
        return;
    }
    if (have || container_find(d, op->b.h.name)) {
        op_error(op, "migrate.import", NULL, EEXIST, "import: container %s (%s) exists here already", op->b.h.name,
                 op->b.h.uuid);
        op_free(op);
        return;
    }
    /* The source's AK signature and certificate chain, before the offer is spent: a bundle that
     * someone else made from the public offer is refused, and the genuine one still imports. */
    if (source_auth_check(d, &op->b, import_authenticated, op, &err) < 0) {
        op_error(op, "migrate.import", NULL, err.code, "import: %s", err.msg);
        op_free(op);
    }
}

/* The source is authenticated: tpmd spends the offer and unwraps K. */
static void import_authenticated(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *aerr,
                                 void *userdata)
{
    struct mig_op *op = userdata;
    tm_err err = {0};
    if (aerr) {
        op_error(op, "migrate.import", NULL, aerr->code, "import: %s", aerr->msg);
        op_free(op);
        return;
    }
    snprintf(op->source, sizeof(op->source), "%s", signer);
    memcpy(op->source_ak_id, ak_id, sizeof(op->source_ak_id));
    Trustme__Tpmd__MigrateDecrypt md = TRUSTME__TPMD__MIGRATE_DECRYPT__INIT;
    /* tpmd checks that the offer's nonce names this AK before it spends the offer. */
    md.has_source_ak_id = true;
    md.source_ak_id = (ProtobufCBinaryData){.len = sizeof(op->source_ak_id), .data = op->source_ak_id};
    md.offer_id = op->b.h.offer_id;
    md.has_ciphertext = true;
    md.ciphertext = (ProtobufCBinaryData){.len = op->b.wrapped_len, .data = op->b.wrapped};
    uint8_t ak[34];
    if (tm_hex_decode_str(op->b.h.target_ak, ak, sizeof(ak), 0, &err) == 0) {
        md.has_target_ak = true;
        md.target_ak = (ProtobufCBinaryData){.len = sizeof(ak), .data = ak};
    }
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MIGRATE_DECRYPT;
    req.migrate_decrypt = &md;
    if (tpmd_call(d, &req, decrypt_done, op, &err) < 0) {
        op_error(op, "migrate.import", NULL, err.code, "import: %s", err.msg);
        op_free(op);
    }
}

/* ---- commit and abort (source) ----------------------------------------------------------------- */

/* The receipt (or refusal) in rq, checked against the lock: ids, container and the target AK's
 * signature. */
static int check_answer(const struct container *c, const Trustme__MigrateRequest *rq, bool refusal,
                        struct migrate_lock *l, tm_err *err)
{
    int r = migrate_lock_read(c, l, err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOENT, "the container is not migrating");
    if (r < 0)
        return r;
    if (!rq->has_receipt)
        return tm_err_set(err, EINVAL, "receipt: none given");
    _cleanup_(message_freep) Trustme__MigrateMessage *m =
        trustme__migrate_message__unpack(NULL, rq->receipt.len, rq->receipt.data);
    if (!m || !m->bundle_id || !m->offer_id || !m->uuid || !m->has_signature)
        return tm_err_set(err, EINVAL, "receipt: it does not decode");
    if (refusal != (m->refused && m->refused[0]))
        return tm_err_set(err, EINVAL,
                          refusal ? "receipt: not a refusal (the target imported the container)"
                                  : "receipt: it is a refusal (the target did not import)");
    if (strcmp(m->bundle_id, l->bundle_id) || strcmp(m->offer_id, l->offer_id) || strcmp(m->uuid, c->uuid))
        return tm_err_set(err, EINVAL, "receipt: for another bundle, offer or container");
    /* A receipt is for the very bundle written here (its head digest, in the lock): the ids
     * alone are in the public offer and the bundle, so a bundle made by someone else with
     * them would get a receipt that looked like this one's. */
    if (!refusal && !l->digest[0])
        return tm_err_set(err, EINVAL, "receipt: the lock names no bundle digest (an export that never finished)");
    char text[TEXT_MAX];
    if (migrate_text(refusal ? "refusal" : "receipt", m->bundle_id, m->offer_id, m->uuid, refusal ? m->refused : NULL,
                     refusal ? NULL : l->digest, text, sizeof(text)) < 0)
        return tm_err_set(err, EINVAL, "receipt: too long");
    return migrate_verify(l->ak_spki, l->ak_spki_len, text, m->signature.data, m->signature.len, err);
}

static void tombstone_done(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_(op_freep) struct mig_op *op = userdata;
    struct container *c = container_find(d, op->uuid);
    if (!c) {
        op_error(op, "migrate.commit", NULL, ENOENT, "commit: the container went away");
        return;
    }
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SIGNATURE) {
        op_error(op, "migrate.commit", c, err ? err->code : EPROTO, "commit: the tombstone: %s",
                 err ? err->msg : "unexpected answer from trustme-tpmd");
        return;
    }
    const ProtobufCBinaryData *sig = &resp->migrate_signature->signature;
    char dir[PATH_MAX], path[PATH_MAX + 64], hex[129];
    snprintf(dir, sizeof(dir), "%s/migrated", d->data_dir);
    (void)mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/%s.tombstone", dir, c->uuid);
    tm_hex(sig->data, sig->len > 64 ? 64 : sig->len, hex);
    char body[TEXT_MAX + 160];
    int n = snprintf(body, sizeof(body), "%ssignature %s\n", op->text, hex);
    tm_err e = {0};
    if (write_file_atomic(path, body, (size_t)n, 0600, &e) < 0) {
        op_error(op, "migrate.commit", c, e.code, "commit: %s", e.msg);
        return;
    }
    test_crash_point(d->data_dir, "migrate-commit-tombstone"); /* tombstone written, nothing erased */
    daemon_audit(d, "migrate.commit", "ok", c, op->actor, "receipt verified; tombstone %s; crypto-erase follows", path);
    /* The token, the wrapped key and the data image are destroyed, and the container goes. */
    struct conn *conn = conn_find(d, op->conn_id);
    if (conn)
        tokens_wipe(conn_reply_to(conn, op->req_id), c, NULL, true);
}

static void commit_checked(struct container *c, const tm_err *aerr, void *userdata);

static void migrate_commit(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq)
{
    struct container *c = rq->id ? container_find(conn->d, rq->id) : NULL;
    if (!c) {
        conn_send_error(conn, id, ENOENT, "migrate commit: no container \"%s\"", rq->id ? rq->id : "");
        return;
    }
    struct migrate_lock l;
    tm_err err = {0};
    if (check_answer(c, rq, false, &l, &err) < 0) {
        daemon_audit(conn->d, "migrate.commit", "fail", c, conn->actor, "%s", err.msg);
        conn_send_error(conn, id, err.code, "migrate commit: %s", err.msg);
        return;
    }
    struct mig_op *op = op_new(conn, id);
    if (!op)
        return;
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    op->lock = l;
    /* The lock file must be the one the TPM anchors (if it anchors one: an older trustme's lock
     * is not), before anything is erased. */
    if (migrate_anchor_check_lock(c, &op->lock, &op->anchored, commit_checked, op, &err) < 0) {
        op_error(op, "migrate.commit", c, err.code, "commit: %s", err.msg);
        op_free(op);
    }
}

static void commit_checked(struct container *c, const tm_err *aerr, void *userdata)
{
    struct mig_op *op = userdata;
    if (aerr) {
        op_error(op, "migrate.commit", c, aerr->code, "commit: %s", aerr->msg);
        op_free(op);
        return;
    }
    struct migrate_lock *l = &op->lock;
    tm_err err = {0};
    test_crash_point(op->d->data_dir, "migrate-commit-checked"); /* receipt checked, no tombstone */
    migrate_text("tombstone", l->bundle_id, l->offer_id, c->uuid, NULL, NULL, op->text, sizeof(op->text));
    Trustme__Tpmd__MigrateSign ms = TRUSTME__TPMD__MIGRATE_SIGN__INIT;
    ms.has_data = true;
    ms.data = (ProtobufCBinaryData){.len = strlen(op->text), .data = (uint8_t *)op->text};
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MIGRATE_SIGN;
    req.migrate_sign = &ms;
    if (tpmd_call(op->d, &req, tombstone_done, op, &err) < 0) {
        op_error(op, "migrate.commit", c, err.code, "commit: %s", err.msg);
        op_free(op);
    }
}

static void abort_fail(struct mig_op *op, struct container *c, const tm_err *err)
{
    op_error(op, "migrate.abort", c, err->code, "abort: %s", err->msg);
    op_free(op);
}

static void abort_dropped(struct container *c, const tm_err *aerr, void *userdata)
{
    struct mig_op *op = userdata;
    tm_err err = {0};
    if (aerr) {
        abort_fail(op, c, aerr);
        return;
    }
    if (migrate_lock_remove(c, &err) < 0) {
        abort_fail(op, c, &err);
        return;
    }
    daemon_audit(op->d, "migrate.abort", "ok", c, op->actor, "lock of bundle %s released", op->lock.bundle_id);
    struct conn *conn = conn_find(op->d, op->conn_id);
    if (conn)
        conn_send_ok(conn, op->req_id);
    op_free(op);
}

/* The lock file against the TPM's record: an anchored lock is a completed export, which only
 * the target's signed refusal releases; a lock file that is not the anchored one (restored from
 * an older migration, with that migration's refusal) releases nothing. */
static void abort_checked(struct container *c, const tm_err *aerr, void *userdata)
{
    struct mig_op *op = userdata;
    tm_err err = {0};
    if (aerr) {
        abort_fail(op, c, aerr);
        return;
    }
    if (op->anchored && !op->with_refusal) {
        tm_err_set(&err, EPERM,
                   "the TPM anchors a completed export: only the target's signed refusal releases the lock (or "
                   "commit with its receipt)");
        {
            abort_fail(op, c, &err);
            return;
        }
    }
    if (!op->anchored) {
        abort_dropped(c, NULL, op);
        return;
    }
    if (migrate_anchor_drop(c, abort_dropped, op, &err) < 0)
        abort_fail(op, c, &err);
}

static void migrate_abort(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq)
{
    struct container *c = rq->id ? container_find(conn->d, rq->id) : NULL;
    if (!c) {
        conn_send_error(conn, id, ENOENT, "migrate abort: no container \"%s\"", rq->id ? rq->id : "");
        return;
    }
    if (export_running(c)) {
        conn_send_error(conn, id, EBUSY, "migrate abort: an export of this container is under way: wait for its end");
        return;
    }
    struct migrate_lock l;
    tm_err err = {0};
    int r = migrate_lock_read(c, &l, &err);
    if (r == 0 && !l.exported && !rq->has_receipt) {
        /* The export never completed (trustmed died while writing): no bundle exists, unless the
         * TPM anchors it (checked next). */
    } else if (r == 0 && !rq->has_receipt) {
        r = tm_err_set(&err, EPERM,
                       "a bundle was exported: only the target's signed refusal releases the lock (or commit "
                       "with its receipt)");
    } else if (r == 0) {
        r = check_answer(c, rq, true, &l, &err);
    } else if (r == -ENOENT) {
        tm_err_set(&err, ENOENT, "the container is not migrating");
    }
    struct mig_op *op = r < 0 ? NULL : op_new(conn, id);
    if (r < 0 || !op) {
        if (r < 0) {
            daemon_audit(conn->d, "migrate.abort", "fail", c, conn->actor, "%s", err.msg);
            conn_send_error(conn, id, err.code, "migrate abort: %s", err.msg);
        }
        return;
    }
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    op->lock = l;
    op->with_refusal = rq->has_receipt;
    if (migrate_anchor_check_lock(c, &op->lock, &op->anchored, abort_checked, op, &err) < 0)
        abort_fail(op, c, &err);
}

void cmd_migrate(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__MigrateRequest *rq = req->migrate;
    const char *v = rq->verb ? rq->verb : "";
    if (strcmp(v, "offer") == 0)
        migrate_offer(conn, id, rq);
    else if (strcmp(v, "nonce") == 0)
        migrate_nonce(conn, id);
    else if (strcmp(v, "export") == 0)
        migrate_export(conn, id, rq);
    else if (strcmp(v, "import") == 0)
        migrate_import(conn, id, rq, false);
    else if (strcmp(v, "receipt") == 0)
        migrate_import(conn, id, rq, true);
    else if (strcmp(v, "commit") == 0)
        migrate_commit(conn, id, rq);
    else if (strcmp(v, "abort") == 0)
        migrate_abort(conn, id, rq);
    else if (strcmp(v, "announce") == 0)
        migrate_announce(conn, id, rq);
    else
        conn_send_error(conn, id, EINVAL,
                        "migrate: unknown step \"%s\" (nonce, offer, export, import, receipt, commit, abort, "
                        "announce)",
                        v);
}
