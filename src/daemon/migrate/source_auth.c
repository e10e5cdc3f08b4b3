/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "source_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fdutil.h"
#include "fileio.h"
#include "hex.h"
#include "migrate.h"
#include "pem_blocks.h"
#include "scd_client.h"
#include "tpmd_client.h"

#define AK_EKU "clientAuth" /* the Device CA's profile for AK certificates (docs/PKI.md) */
#define PEM_FILE_MAX (1 << 20)
#define PEMS_MAX (DEVICE_MAX_CRLS + 1)
#define PREFIX "source authentication: "
#define VERIFY_SIGNER_MAX 512 /* scd's subject lines (src/scd/verify.h) */

struct auth_op {
    struct daemon *d;
    source_auth_fn fn;
    source_auth_signed_fn signed_fn; /* sign_text: instead of appending to path */
    void *userdata;
    char path[PATH_MAX]; /* sign: the bundle to append to */
    /* what the AK signs, or signed: MIGRATE_SIGN_TAG and its NUL, then the text */
    char data[sizeof(MIGRATE_SIGN_TAG) + 512];
    size_t data_len;
    /* check: the bundle's signature (DER) and chain, and this device's Device CA (SHA-256 of its DER) */
    uint8_t *sig_der;
    int sig_der_len;
    char *chain;
    size_t chain_len;
    uint8_t device_ca[32];
    uint8_t ak_id[32]; /* check: the SHA-256 of the source's AK certificate, as scd verified it */
    ProtobufCBinaryData anchors[1], crls[PEMS_MAX];
    size_t ncrls;
};

static void op_free(struct auth_op *op)
{
    OPENSSL_free(op->sig_der);
    free(op->chain);
    free(op->anchors[0].data);
    for (size_t i = 0; i < op->ncrls; i++)
        free(op->crls[i].data);
    free(op);
}

static void finish(struct auth_op *op, const char *signer, const tm_err *err)
{
    if (op->signed_fn) {
        source_auth_signed_fn sfn = op->signed_fn;
        void *ud = op->userdata;
        struct daemon *sd = op->d;
        op_free(op);
        sfn(sd, NULL, NULL, err, ud);
        return;
    }
    source_auth_fn fn = op->fn;
    void *userdata = op->userdata;
    struct daemon *d = op->d;
    char who[VERIFY_SIGNER_MAX];
    uint8_t ak_id[32];
    snprintf(who, sizeof(who), "%s", signer ? signer : "");
    memcpy(ak_id, op->ak_id, sizeof(ak_id));
    op_free(op);
    fn(d, err || !signer ? NULL : who, err || !signer ? NULL : ak_id, err, userdata);
}

/* An operation over MIGRATE_SIGN_TAG, its NUL and text. */
static int op_new_text(struct daemon *d, const char *text, source_auth_fn fn, void *userdata, struct auth_op **ret,
                       tm_err *err)
{
    size_t n = strlen(text);
    if (n > sizeof(((struct auth_op *)0)->data) - sizeof(MIGRATE_SIGN_TAG))
        return tm_err_set(err, EOVERFLOW, "the text to sign is too long");
    struct auth_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->d = d;
    op->fn = fn;
    op->userdata = userdata;
    memcpy(op->data, MIGRATE_SIGN_TAG, sizeof(MIGRATE_SIGN_TAG));
    memcpy(op->data + sizeof(MIGRATE_SIGN_TAG), text, n);
    op->data_len = sizeof(MIGRATE_SIGN_TAG) + n;
    *ret = op;
    return 0;
}

static int op_new(struct daemon *d, const struct bundle_header *h, source_auth_fn fn, void *userdata,
                  struct auth_op **ret, tm_err *err)
{
    /* The head digest names the manifest (the offer id, the target's AK name, every part's
     * digest) and the wrapped K, IV and sealed keys: the whole bundle but this signature. */
    char text[512];
    if (migrate_text(SOURCE_AUTH_KIND, h->bundle_id, h->offer_id, h->uuid, NULL, h->digest, text, sizeof(text)) < 0)
        return tm_err_set(err, EOVERFLOW, "the text to sign is too long");
    return op_new_text(d, text, fn, userdata, ret, err);
}

static void put32(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

/* This device's AK certificate chain, as installed (`trustme device cert install`). */
static int ask_chain(struct auth_op *op, tpmd_reply_fn fn, tm_err *err)
{
    Trustme__Tpmd__GetDeviceInfo gi = TRUSTME__TPMD__GET_DEVICE_INFO__INIT;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_DEVICE_INFO;
    req.device_info = &gi;
    return tpmd_call(op->d, &req, fn, op, err);
}

static const ProtobufCBinaryData *chain_of(const Trustme__Tpmd__Response *resp, const tm_err *err, tm_err *out)
{
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_DEVICE_INFO) {
        tm_err_set(out, err ? err->code : EPROTO, "this device's AK certificate chain: %s",
                   err ? err->msg : "unexpected answer from trustme-tpmd");
        return NULL;
    }
    const Trustme__Tpmd__DeviceInfo *in = resp->device_info;
    if (!in->has_cert_chain_pem || in->cert_chain_pem.len == 0 || in->cert_chain_pem.len > SOURCE_AUTH_CHAIN_MAX) {
        tm_err_set(out, ENOKEY,
                   "this device's AK has no certificate chain (trustme device cert install): the other device "
                   "cannot be authenticated by it, nor it by the other");
        return NULL;
    }
    return &in->cert_chain_pem;
}

/* ---- source: sign and append ------------------------------------------------------------------- */

static int append(const char *path, const uint8_t sig[SOURCE_AUTH_SIG_LEN], const ProtobufCBinaryData *chain,
                  tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    uint8_t siglen[4], chainlen[4];
    put32(siglen, SOURCE_AUTH_SIG_LEN);
    put32(chainlen, (uint32_t)chain->len);
    int r = write_all(fd, SOURCE_AUTH_MAGIC, 8);
    if (r == 0)
        r = write_all(fd, siglen, 4);
    if (r == 0)
        r = write_all(fd, sig, SOURCE_AUTH_SIG_LEN);
    if (r == 0)
        r = write_all(fd, chainlen, 4);
    if (r == 0)
        r = write_all(fd, chain->data, chain->len);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot write the source's signature to %s", path);
    }
    if (fsync(fd) < 0)
        return tm_err_sys(err, "cannot sync %s", path);
    return 0;
}

static void signed_done(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct auth_op *op = userdata;
    (void)d;
    tm_err e = {0};
    if (err || !resp || resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SIGNATURE ||
        resp->migrate_signature->signature.len != SOURCE_AUTH_SIG_LEN) {
        tm_err_set(&e, err ? err->code : EPROTO, "the AK's signature of the bundle: %s",
                   err ? err->msg : "unexpected answer from trustme-tpmd");
        finish(op, NULL, &e);
        return;
    }
    ProtobufCBinaryData chain = {.data = (uint8_t *)op->chain, .len = op->chain_len};
    if (op->signed_fn) {
        op->signed_fn(op->d, resp->migrate_signature->signature.data, &chain, NULL, op->userdata);
        op_free(op);
        return;
    }
    if (append(op->path, resp->migrate_signature->signature.data, &chain, &e) < 0) {
        finish(op, NULL, &e);
        return;
    }
    finish(op, NULL, NULL);
}

static void sign_chain(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct auth_op *op = userdata;
    tm_err e = {0};
    const ProtobufCBinaryData *chain = chain_of(resp, err, &e);
    if (!chain) {
        finish(op, NULL, &e);
        return;
    }
    if (!(op->chain = malloc(chain->len))) {
        tm_err_set(&e, ENOMEM, "out of memory");
        finish(op, NULL, &e);
        return;
    }
    memcpy(op->chain, chain->data, chain->len);
    op->chain_len = chain->len;
    /* tpmd puts MIGRATE_SIGN_TAG before what it is given. */
    Trustme__Tpmd__MigrateSign ms = TRUSTME__TPMD__MIGRATE_SIGN__INIT;
    ms.has_data = true;
    ms.data = (ProtobufCBinaryData){.len = op->data_len - sizeof(MIGRATE_SIGN_TAG),
                                    .data = (uint8_t *)op->data + sizeof(MIGRATE_SIGN_TAG)};
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MIGRATE_SIGN;
    req.migrate_sign = &ms;
    if (tpmd_call(d, &req, signed_done, op, &e) < 0)
        finish(op, NULL, &e);
}

int source_auth_sign(struct daemon *d, const struct bundle_header *h, const char *path, source_auth_fn fn,
                     void *userdata, tm_err *err)
{
    struct auth_op *op;
    int r = op_new(d, h, fn, userdata, &op, err);
    if (r < 0)
        return r;
    snprintf(op->path, sizeof(op->path), "%s", path);
    if ((r = ask_chain(op, sign_chain, err)) < 0)
        op_free(op);
    return r;
}

int source_auth_sign_text(struct daemon *d, const char *text, source_auth_signed_fn fn, void *userdata, tm_err *err)
{
    struct auth_op *op;
    int r = op_new_text(d, text, NULL, userdata, &op, err);
    if (r < 0)
        return r;
    op->signed_fn = fn;
    if ((r = ask_chain(op, sign_chain, err)) < 0)
        op_free(op);
    return r;
}

struct nth_cert {
    size_t want, seen;
    uint8_t sha256[32];
    bool found;
};

static int cert_block(const char *name, unsigned char **data, long len, void *userdata, tm_err *err)
{
    struct nth_cert *n = userdata;
    (void)err;
    if (strcmp(name, "CERTIFICATE") != 0)
        return 0;
    if (n->seen++ == n->want) {
        tm_sha256(*data, (size_t)len, n->sha256);
        n->found = true;
    }
    return 0;
}

/* ---- source: this device's AK id --------------------------------------------------------------- */

static void own_chain(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct auth_op *op = userdata;
    (void)d;
    tm_err e = {0};
    const ProtobufCBinaryData *chain = chain_of(resp, err, &e);
    if (!chain) {
        finish(op, NULL, &e);
        return;
    }
    /* The AK's certificate is the chain's first. */
    struct nth_cert n = {.want = 0};
    BIO *bio = BIO_new_mem_buf(chain->data, (int)chain->len);
    int r = bio ? tm_pem_each_block(bio, 8, cert_block, &n, &e) : tm_err_set(&e, ENOMEM, "out of memory");
    BIO_free(bio);
    if (r == 0 && !n.found)
        r = tm_err_set(&e, ENOKEY, "this device's AK certificate chain has no certificate");
    if (r < 0) {
        finish(op, NULL, &e);
        return;
    }
    memcpy(op->ak_id, n.sha256, sizeof(op->ak_id));
    finish(op, "", NULL);
}

int source_auth_ak_id(struct daemon *d, source_auth_fn fn, void *userdata, tm_err *err)
{
    struct auth_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->d = d;
    op->fn = fn;
    op->userdata = userdata;
    int r = ask_chain(op, own_chain, err);
    if (r < 0)
        op_free(op);
    return r;
}

/* ---- target: check ----------------------------------------------------------------------------- */

static int read_at(int fd, void *buf, size_t len, uint64_t off, tm_err *err)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n < 0)
        return tm_err_sys(err, "cannot read the bundle");
    if ((size_t)n != len)
        return tm_err_set(err, EBADMSG, PREFIX "the bundle ends inside its source signature (truncated)");
    return 0;
}

static uint32_t get32(const uint8_t in[4])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

/* The signature and chain after the parts, exactly to the end of the file. */
static int read_tail(const struct bundle_in *b, struct auth_op *op, tm_err *err)
{
    uint64_t off = b->tail_offset;
    if (b->size == off)
        return tm_err_set(err, EBADMSG,
                          PREFIX "the bundle carries no signature of its source (stripped, or made by someone "
                                 "else from the public offer)");
    uint8_t head[12], sig[SOURCE_AUTH_SIG_LEN];
    int r;
    if (b->size - off < sizeof(head) + SOURCE_AUTH_SIG_LEN + 4)
        return tm_err_set(err, EBADMSG, PREFIX "the bundle ends inside its source signature (truncated)");
    if ((r = read_at(b->fd, head, sizeof(head), off, err)) < 0)
        return r;
    if (memcmp(head, SOURCE_AUTH_MAGIC, 8) != 0 || get32(head + 8) != SOURCE_AUTH_SIG_LEN)
        return tm_err_set(err, EBADMSG, PREFIX "what follows the last part is not a source signature");
    off += sizeof(head);
    if ((r = read_at(b->fd, sig, sizeof(sig), off, err)) < 0)
        return r;
    off += sizeof(sig);
    uint8_t len4[4];
    if ((r = read_at(b->fd, len4, 4, off, err)) < 0)
        return r;
    off += 4;
    op->chain_len = get32(len4);
    if (op->chain_len == 0 || op->chain_len > SOURCE_AUTH_CHAIN_MAX)
        return tm_err_set(err, EBADMSG, PREFIX "a certificate chain of %zu bytes", op->chain_len);
    if (b->size - off < op->chain_len)
        return tm_err_set(err, EBADMSG, PREFIX "the bundle ends inside the certificate chain (truncated)");
    if (b->size - off > op->chain_len)
        return tm_err_set(err, EBADMSG, "bundle format: %llu bytes after the source's certificate chain",
                          (unsigned long long)(b->size - off - op->chain_len));
    if (!(op->chain = malloc(op->chain_len)))
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = read_at(b->fd, op->chain, op->chain_len, off, err)) < 0)
        return r;
    if (memchr(op->chain, '\0', op->chain_len))
        return tm_err_set(err, EBADMSG, PREFIX "a NUL in the certificate chain");
    if ((op->sig_der_len = migrate_sig_der(sig, &op->sig_der)) <= 0)
        return tm_err_set(err, EBADMSG, PREFIX "the signature is not an ECDSA signature (r || s)");
    return 0;
}

static int pem_file(const char *path, ProtobufCBinaryData *out, tm_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int r = read_file(path, PEM_FILE_MAX, &data, &len, err);
    if (r < 0)
        return r;
    *out = (ProtobufCBinaryData){.data = (uint8_t *)data, .len = len};
    return 0;
}

/* The General root and the CRLs of device.json (read now: a replaced CRL file counts at once). */
static int trust_inputs(struct auth_op *op, tm_err *err)
{
    const struct device_config *dev = &op->d->device;
    if (!dev->general_root)
        return tm_err_set(err, ENOKEY,
                          PREFIX "the device config names no General root CA (device.json trust.general_root) to "
                                 "check the source's AK certificate against");
    int r = pem_file(dev->general_root, &op->anchors[0], err);
    for (size_t i = 0; r == 0 && i < dev->n_crls && i < PEMS_MAX; i++, op->ncrls++)
        r = pem_file(dev->crls[i], &op->crls[i], err);
    return r < 0 ? tm_err_prefix(err, "source authentication: the device's trust anchors") : 0;
}

static void checked(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata)
{
    struct auth_op *op = userdata;
    (void)d;
    tm_err e = {0};
    if (err || !resp || resp->body_case != TRUSTME__SCD__RESPONSE__BODY_VERIFY) {
        tm_err_set(&e, err ? err->code : EPROTO, PREFIX "the source's AK certificate chain or signature: %s",
                   err ? err->msg : "unexpected answer from trustme-scd");
        finish(op, NULL, &e);
        return;
    }
    /* The chain goes to the General root; its AK certificate must come from the Device CA that
     * certified this device's AK, not from another CA under that root. */
    const Trustme__Scd__VerifyResult *v = resp->verify;
    if (v->n_chain_sha256 < 2 || v->chain_sha256[0].len != 32 || v->chain_sha256[1].len != 32 ||
        memcmp(v->chain_sha256[1].data, op->device_ca, 32)) {
        tm_err_set(&e, EKEYREJECTED,
                   PREFIX "the source's AK certificate (%s) was not issued by the Device CA that issued this "
                          "device's AK certificate",
                   v->signer ? v->signer : "?");
        finish(op, NULL, &e);
        return;
    }
    memcpy(op->ak_id, v->chain_sha256[0].data, 32);
    finish(op, v->signer ? v->signer : "?", NULL);
}

static void check_chain(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct auth_op *op = userdata;
    tm_err e = {0};
    const ProtobufCBinaryData *own = chain_of(resp, err, &e);
    if (!own) {
        tm_err_prefix(&e, "source authentication");
        finish(op, NULL, &e);
        return;
    }
    /* Its second certificate is the Device CA (the AK's first). */
    struct nth_cert n = {.want = 1};
    BIO *bio = BIO_new_mem_buf(own->data, (int)own->len);
    int r = bio ? tm_pem_each_block(bio, 8, cert_block, &n, &e) : tm_err_set(&e, ENOMEM, "out of memory");
    BIO_free(bio);
    if (r == 0 && !n.found)
        r = tm_err_set(&e, ENOKEY, "this device's AK certificate chain has no Device CA certificate");
    if (r < 0) {
        tm_err_prefix(&e, "source authentication");
        finish(op, NULL, &e);
        return;
    }
    memcpy(op->device_ca, n.sha256, 32);
    Trustme__Scd__Verify v = TRUSTME__SCD__VERIFY__INIT;
    v.has_data = v.has_signature = v.has_chain_pem = true;
    v.data = (ProtobufCBinaryData){.data = (uint8_t *)op->data, .len = op->data_len};
    v.signature = (ProtobufCBinaryData){.data = op->sig_der, .len = (size_t)op->sig_der_len};
    v.chain_pem = (ProtobufCBinaryData){.data = (uint8_t *)op->chain, .len = op->chain_len};
    v.n_anchors_pem = 1;
    v.anchors_pem = op->anchors;
    v.n_crls_pem = op->ncrls;
    v.crls_pem = op->crls;
    v.eku_oid = AK_EKU;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_VERIFY;
    req.verify = &v;
    if (scd_call(d, &req, checked, op, &e) < 0) {
        tm_err_prefix(&e, "source authentication");
        finish(op, NULL, &e);
    }
}

int source_auth_check_text(struct daemon *d, const char *text, const uint8_t sig[SOURCE_AUTH_SIG_LEN],
                           const uint8_t *chain, size_t chain_len, source_auth_fn fn, void *userdata, tm_err *err)
{
    if (chain_len == 0 || chain_len > SOURCE_AUTH_CHAIN_MAX)
        return tm_err_set(err, EBADMSG, PREFIX "a certificate chain of %zu bytes", chain_len);
    if (memchr(chain, '\0', chain_len))
        return tm_err_set(err, EBADMSG, PREFIX "a NUL in the certificate chain");
    struct auth_op *op;
    int r = op_new_text(d, text, fn, userdata, &op, err);
    if (r < 0)
        return r;
    if (!(op->chain = malloc(chain_len))) {
        op_free(op);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    memcpy(op->chain, chain, chain_len);
    op->chain_len = chain_len;
    if ((op->sig_der_len = migrate_sig_der(sig, &op->sig_der)) <= 0)
        r = tm_err_set(err, EBADMSG, PREFIX "the signature is not an ECDSA signature (r || s)");
    if (r == 0 && (r = trust_inputs(op, err)) == 0)
        r = ask_chain(op, check_chain, err);
    if (r < 0)
        op_free(op);
    return r;
}

int source_auth_check(struct daemon *d, const struct bundle_in *b, source_auth_fn fn, void *userdata, tm_err *err)
{
    struct auth_op *op;
    int r = op_new(d, &b->h, fn, userdata, &op, err);
    if (r == 0 && ((r = read_tail(b, op, err)) < 0 || (r = trust_inputs(op, err)) < 0 ||
                   (r = ask_chain(op, check_chain, err)) < 0))
        op_free(op);
    return r;
}
