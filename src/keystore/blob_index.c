/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The key blobs' TPM-anchored index: see blob_index.h.
 *
 *   index key = HKDF-SHA256(keystore key, info "trustme keystore blob index v1")
 *   object <alias> = SHA-256 of the current <alias>.key file (32 bytes, inline in the superblock) */
#include "blob_index.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "crypto.h"
#include "keystore.pb-c.h"

#define E(x) TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_##x

struct ks_index {
    struct secret *key;
    char id[SSTORE_STORE_ID_MAX + 1];
    char dir[PATH_MAX];
    struct sstore_anchor_ops anchor; /* the host's */
    struct sstore_anchor_ops own; /* what the store is given: anchor, without tamper-proof entries */
    sstore_report_fn report;
    void *report_ctx;
    struct sstore *store; /* NULL until it opens: tried again at every call while it does not */
};

/* The index has no tamper-proof objects: the store's lookup of their list at open is answered
 * here (none) instead of costing a tpmd round trip that trustmed would refuse anyway (it
 * forwards only the container's own "sstore-tp/<uuid>" names). */
static int own_get(void *ctx, const char *name, uint8_t value[128], size_t *len, bool *found, tm_err *err)
{
    struct ks_index *ix = ctx;
    if (strncmp(name, SSTORE_TP_PREFIX, strlen(SSTORE_TP_PREFIX)) == 0) {
        *len = 0;
        *found = false;
        return 0;
    }
    return ix->anchor.get(ix->anchor.ctx, name, value, len, found, err);
}

static int own_set(void *ctx, const struct sstore_anchor_entry *e, size_t n, tm_err *err)
{
    struct ks_index *ix = ctx;
    return ix->anchor.set(ix->anchor.ctx, e, n, err);
}

/* The store's own refusals, told apart from the container's secure store's. */
static void own_report(void *ctx, const char *store_id, int code, const char *msg)
{
    struct ks_index *ix = ctx;
    char m[320];
    snprintf(m, sizeof(m), "the keystore's key index: %s", msg);
    if (ix->report)
        ix->report(ix->report_ctx, store_id, code, m);
}

int ks_index_new(const struct secret *keystore_key, const char *uuid, const char *dir,
                 const struct sstore_anchor_ops *anchor, sstore_report_fn report, void *report_ctx,
                 struct ks_index **ret, tm_err *err)
{
    if (strlen(uuid) + strlen(KS_INDEX_SUFFIX) > SSTORE_STORE_ID_MAX || strlen(dir) >= PATH_MAX)
        return tm_err_set(err, E(INTERNAL), "bad key index id or directory");
    _cleanup_free_ struct ks_index *ix = calloc(1, sizeof(*ix));
    if (!ix)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    if (secret_new(32, &ix->key, err) < 0)
        return tm_err_set(err, E(INTERNAL), "%s", err->msg);
    tm_hkdf_sha256(keystore_key->data, keystore_key->len, NULL, 0, KS_INDEX_KEY_INFO, strlen(KS_INDEX_KEY_INFO),
                   ix->key->data, 32);
    snprintf(ix->id, sizeof(ix->id), "%s%s", uuid, KS_INDEX_SUFFIX);
    snprintf(ix->dir, sizeof(ix->dir), "%s", dir);
    ix->anchor = *anchor;
    ix->own = (struct sstore_anchor_ops){.get = own_get, .set = own_set, .ctx = ix};
    ix->report = report;
    ix->report_ctx = report_ctx;
    *ret = steal_ptr(ix);
    return 0;
}

void ks_index_free(struct ks_index *ix)
{
    if (!ix)
        return;
    sstore_close(ix->store);
    secret_free(ix->key);
    free(ix);
}

/* The index, open; or the reason it is not (the store's own: rolled back, edited, missing while
 * anchored, tpmd away), which every key request gets until it opens. */
static int ready(struct ks_index *ix, tm_err *err)
{
    if (ix->store)
        return 0;
    tm_err e2 = {0};
    int r = sstore_open(ix->dir, ix->id, ix->key->data, 32, &ix->own, own_report, ix, &ix->store, &e2);
    if (r < 0)
        return tm_err_set(err, E(STORAGE),
                          "the keystore's TPM-anchored key index does not open, so no key is "
                          "served: %s",
                          e2.msg);
    return 0;
}

/* After a failed commit the store may not know whether the TPM took it: it is opened again
 * (and asks the TPM) at the next call. */
static int commit_failed(struct ks_index *ix, const tm_err *e2, tm_err *err)
{
    sstore_close(ix->store);
    ix->store = NULL;
    return tm_err_set(err, E(STORAGE), "cannot update the key index: %s", e2->msg);
}

int ks_index_lookup(struct ks_index *ix, const char *alias, uint8_t sha[32], bool *found, tm_err *err)
{
    int r = ready(ix, err);
    if (r < 0)
        return r;
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    tm_err e2 = {0};
    r = sstore_read(ix->store, alias, &data, &len, NULL, &e2);
    if (r == -ENOENT) {
        *found = false;
        return 0;
    }
    if (r < 0)
        return tm_err_set(err, E(STORAGE), "the key index: %s", e2.msg);
    if (len != 32)
        return tm_err_set(err, E(STORAGE), "the key index's entry for %s is malformed", alias);
    memcpy(sha, data, 32);
    *found = true;
    return 0;
}

int ks_index_set(struct ks_index *ix, const char *alias, const uint8_t *sha, tm_err *err)
{
    int r = ready(ix, err);
    if (r < 0)
        return r;
    tm_err e2 = {0};
    struct sstore_txn *t = NULL;
    if (sstore_txn_new(ix->store, &t, &e2) < 0)
        return tm_err_set(err, E(STORAGE), "the key index: %s", e2.msg);
    r = sha ? sstore_txn_put(t, alias, sha, 32, false, &e2) : sstore_txn_delete(t, alias, &e2);
    if (r < 0) {
        sstore_txn_free(t);
        return tm_err_set(err, E(STORAGE), "the key index: %s", e2.msg);
    }
    if (sstore_commit(t, NULL, &e2) < 0) {
        if (e2.code == ENOENT)
            return 0; /* deleting what is not indexed */
        return commit_failed(ix, &e2, err);
    }
    return 0;
}

void ks_index_report(struct ks_index *ix, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ix->report)
        ix->report(ix->report_ctx, ix->id, code, msg);
}

int ks_index_each(struct ks_index *ix, void (*fn)(const char *alias, void *ud), void *ud, tm_err *err)
{
    int r = ready(ix, err);
    if (r < 0)
        return r;
    _cleanup_free_ struct sstore_object_info *o = NULL;
    size_t n = 0;
    tm_err e2 = {0};
    if (sstore_list(ix->store, &o, &n, &e2) < 0)
        return tm_err_set(err, E(STORAGE), "the key index: %s", e2.msg);
    for (size_t i = 0; i < n; i++)
        if (fn)
            fn(o[i].id, ud);
    return 0;
}
