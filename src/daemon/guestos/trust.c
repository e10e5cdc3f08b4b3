/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "log.h"
#include "scd_client.h"

#define PEM_FILE_MAX (1024 * 1024)
#define CODE_SIGNING_OID "1.3.6.1.5.5.7.3.3"

/* PEM files read for one verification; scd gets them as repeated fields. */
struct pems {
    ProtobufCBinaryData items[DEVICE_MAX_CAS + 64];
    size_t n;
};

static void pems_clear(struct pems *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].data);
    p->n = 0;
}

static int pems_add(struct pems *p, const char *path, tm_err *err)
{
    if (p->n == ARRAY_SIZE(p->items))
        return tm_err_set(err, E2BIG, "too many certificates and CRLs");
    char *data;
    size_t len;
    int r = read_file(path, PEM_FILE_MAX, &data, &len, err);
    if (r < 0)
        return r;
    p->items[p->n++] = (ProtobufCBinaryData){.data = (uint8_t *)data, .len = len};
    return 0;
}

struct verify_op {
    struct verify_op *next;
    struct daemon *d;
    trust_done_fn fn;
    void *userdata;
    /* the request, kept for a second try with the local root */
    ProtobufCBinaryData data, sig, chain;
    bool cert_only, try_local;
    enum trust_level trust; /* of the try under way */
    tm_err first; /* why the proper chain failed, when the local root is tried */
    struct pems anchors, crls, required;
};

static struct verify_op *ops;

static void op_free(struct verify_op *op)
{
    for (struct verify_op **p = &ops; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    pems_clear(&op->anchors);
    pems_clear(&op->crls);
    pems_clear(&op->required);
    free(op);
}

static void cas_dir(struct daemon *d, char *out, size_t size)
{
    snprintf(out, size, "%s/trust/cas", d->data_dir);
}

/* Every registered GuestOS-signing CA: device.json's and those of `trustme ca register`. */
static int add_registered_cas(struct daemon *d, struct pems *p, tm_err *err)
{
    int r;
    for (size_t i = 0; i < d->device.n_guestos_cas; i++)
        if ((r = pems_add(p, d->device.guestos_cas[i], err)) < 0)
            return r;
    char dir[PATH_MAX];
    cas_dir(d, dir, sizeof(dir));
    _cleanup_(closedirp) DIR *dd = opendir(dir);
    if (!dd)
        return errno == ENOENT ? 0 : tm_err_sys(err, "cannot read %s", dir);
    struct dirent *de;
    while ((de = readdir(dd))) {
        size_t n = strlen(de->d_name);
        if (n != 64 + 4 || strcmp(de->d_name + 64, ".pem") != 0)
            continue;
        char path[PATH_MAX + 80];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if ((r = pems_add(p, path, err)) < 0)
            return r;
    }
    return 0;
}

static int set_anchor(struct verify_op *op, const char *path, const char *key, tm_err *err)
{
    pems_clear(&op->anchors);
    if (!path)
        return tm_err_set(err, ENOKEY, "the device config names no %s (device.json trust.%s)",
                          strcmp(key, "local_root") == 0     ? "local root CA"
                          : strcmp(key, "general_root") == 0 ? "General root CA"
                                                             : "Software Signing root CA",
                          key);
    return pems_add(&op->anchors, path, err);
}

static void on_reply(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata);

static int send_op(struct verify_op *op, tm_err *err)
{
    Trustme__Scd__Verify v = TRUSTME__SCD__VERIFY__INIT;
    v.has_data = !op->cert_only;
    v.data = op->data;
    v.has_signature = !op->cert_only;
    v.signature = op->sig;
    v.has_chain_pem = true;
    v.chain_pem = op->chain;
    v.n_anchors_pem = op->anchors.n;
    v.anchors_pem = op->anchors.items;
    v.n_crls_pem = op->crls.n;
    v.crls_pem = op->crls.items;
    v.n_require_one_of_pem = op->trust == TRUST_SIGNED ? op->required.n : 0;
    v.require_one_of_pem = op->required.items;
    v.eku_oid = op->cert_only ? NULL : CODE_SIGNING_OID;
    v.has_cert_only = op->cert_only;
    v.cert_only = op->cert_only;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_VERIFY;
    req.verify = &v;
    return scd_call(op->d, &req, on_reply, op, err);
}

static void finish(struct verify_op *op, const struct trust_result *res, const tm_err *err)
{
    trust_done_fn fn = op->fn;
    void *userdata = op->userdata;
    struct daemon *d = op->d;
    op_free(op);
    fn(d, res, err, userdata);
}

static void on_reply(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata)
{
    struct verify_op *op = userdata;
    tm_err e = {0};
    if (err) {
        /* The proper chain failed: a locally signed one may still do, where allowed. */
        if (op->try_local && op->trust == TRUST_SIGNED && err->code == EKEYREJECTED) {
            op->trust = TRUST_LOCAL;
            op->first = *err;
            if (set_anchor(op, d->device.local_root, "local_root", &e) == 0 && send_op(op, &e) == 0)
                return;
            tm_err first = op->first;
            finish(op, NULL, &first);
            return;
        }
        if (op->first.code) {
            /* A revocation (or an unknown revocation status) under the local root is what the
             * caller must hear of. */
            tm_err_set(&e, err->code == EKEYREVOKED || err->code == ENODATA ? err->code : op->first.code,
                       "%s (nor is it signed by the local root: %s)", op->first.msg, err->msg);
            finish(op, NULL, &e);
            return;
        }
        finish(op, NULL, err);
        return;
    }
    if (!resp || resp->body_case != TRUSTME__SCD__RESPONSE__BODY_VERIFY || !resp->verify->signer) {
        tm_err_set(&e, EPROTO, "trustme-scd answered the verification with something else");
        finish(op, NULL, &e);
        return;
    }
    struct trust_result res = {.trust = op->trust};
    snprintf(res.signer, sizeof(res.signer), "%s", resp->verify->signer);
    if (resp->verify->n_chain_sha256 > 0 && resp->verify->chain_sha256[0].len == 32)
        tm_hex(resp->verify->chain_sha256[0].data, 32, res.sha256);
    if (resp->verify->has_required_sha256 && resp->verify->required_sha256.len == 32)
        tm_hex(resp->verify->required_sha256.data, 32, res.ca_sha256);
    finish(op, &res, NULL);
}

static int op_new(struct daemon *d, trust_done_fn fn, void *userdata, struct verify_op **ret, tm_err *err)
{
    _cleanup_free_ struct verify_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->d = d;
    op->fn = fn;
    op->userdata = userdata;
    int r = 0;
    for (size_t i = 0; i < d->device.n_crls && r == 0; i++)
        r = pems_add(&op->crls, d->device.crls[i], err);
    if (r < 0)
        return r;
    op->next = ops;
    ops = op;
    *ret = steal_ptr(op);
    return 0;
}

int trust_verify(struct daemon *d, const void *data, size_t len, const void *sig, size_t sig_len, const char *chain,
                 size_t chain_len, enum signer_chain which, bool allow_local, trust_done_fn fn, void *userdata,
                 tm_err *err)
{
    struct verify_op *op;
    int r = op_new(d, fn, userdata, &op, err);
    if (r < 0)
        return r;
    op->data = (ProtobufCBinaryData){.data = (uint8_t *)data, .len = len};
    op->sig = (ProtobufCBinaryData){.data = (uint8_t *)sig, .len = sig_len};
    op->chain = (ProtobufCBinaryData){.data = (uint8_t *)chain, .len = chain_len};
    op->trust = TRUST_SIGNED;
    op->try_local = allow_local && d->device.local_root;
    if (which == CHAIN_SOFTWARE)
        r = set_anchor(op, d->device.software_root, "software_signing_root", err);
    else if ((r = set_anchor(op, d->device.general_root, "general_root", err)) == 0 &&
             (r = add_registered_cas(d, &op->required, err)) == 0 && op->required.n == 0)
        r = tm_err_set(err, ENOKEY, "no GuestOS-signing CA is registered (trustme ca register CERT)");
    if (r < 0 && op->try_local) {
        /* No proper anchor on this device: the local root alone decides. */
        op->trust = TRUST_LOCAL;
        r = set_anchor(op, d->device.local_root, "local_root", err);
    }
    if (r == 0)
        r = send_op(op, err);
    if (r < 0)
        op_free(op);
    return r;
}

int trust_register_ca(struct daemon *d, const char *pem, size_t len, trust_done_fn fn, void *userdata, tm_err *err)
{
    struct verify_op *op;
    int r = op_new(d, fn, userdata, &op, err);
    if (r < 0)
        return r;
    op->chain = (ProtobufCBinaryData){.data = (uint8_t *)pem, .len = len};
    op->cert_only = true;
    op->trust = TRUST_SIGNED;
    if ((r = set_anchor(op, d->device.general_root, "general_root", err)) == 0)
        r = send_op(op, err);
    if (r < 0)
        op_free(op);
    return r;
}

void trust_forget(struct daemon *d, void *userdata)
{
    for (struct verify_op *op = ops, *next; op; op = next) {
        next = op->next;
        if (op->userdata == userdata) {
            scd_forget(d, op);
            op_free(op);
        }
    }
}
