/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key blobs at rest: see store.h. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "blob_index.h"
#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "log.h"

typedef Trustme__Keystore__KsKeyBlob KsKeyBlob;

#define MAGIC "TMKS"
#define VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define HDR_LEN (4 + 1 + NONCE_LEN)
#define BLOB_MAX (32u * 1024) /* an RSA-4096 PKCS#8 key is about 2.4 KiB */

bool ks_alias_valid(const char *alias)
{
    size_t n = alias ? strlen(alias) : 0;
    if (n == 0 || n > KS_ALIAS_MAX || alias[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = alias[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* The associated data: what the blob belongs to. */
static int make_aad(const struct ks_store *st, const char *alias, char *aad, size_t size)
{
    return snprintf(aad, size, "trustme keystore blob v1|%s|%s", st->uuid, alias);
}

static void key_path(const struct ks_store *st, const char *alias, char *path, size_t size)
{
    snprintf(path, size, "%s/%s.key", st->dir, alias);
}

static int gcm(bool enc, const struct ks_store *st, const char *aad, const uint8_t nonce[NONCE_LEN], const uint8_t *in,
               size_t len, uint8_t *out, uint8_t tag[TAG_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, st->key->data, nonce, enc ? 1 : 0) == 1 &&
                       EVP_CipherUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
                       EVP_CipherUpdate(ctx, out, &outl, in, (int)len) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    if (ok)
        ok = EVP_CipherFinal_ex(ctx, out + outl, &outl) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int ks_store_put(const struct ks_store *st, const char *alias, const KsKeyBlob *blob, tm_err *err)
{
    size_t plen = protobuf_c_message_get_packed_size(&blob->base);
    if (plen > BLOB_MAX)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_ARGUMENT, "key blob too large");
    _cleanup_secret_ struct secret *plain = NULL;
    int r = secret_new(plen ? plen : 1, &plain, err);
    if (r < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL, "%s", err->msg);
    protobuf_c_message_pack(&blob->base, plain->data);
    size_t total = HDR_LEN + plen + TAG_LEN;
    _cleanup_free_ uint8_t *out = malloc(total);
    char aad[KS_ALIAS_MAX + 128];
    make_aad(st, alias, aad, sizeof(aad));
    if (!out)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL, "out of memory");
    memcpy(out, MAGIC, 4);
    out[4] = VERSION;
    if (secure_random(out + 5, NONCE_LEN, err) < 0 ||
        gcm(true, st, aad, out + 5, plain->data, plen, out + HDR_LEN, out + HDR_LEN + plen) < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL, "cannot seal the key blob");
    char path[PATH_MAX];
    key_path(st, alias, path, sizeof(path));
    if (!st->index) {
        if (write_file_atomic(path, out, total, 0600, err) < 0)
            return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "%s", err->msg);
        return 0;
    }
    /* Beside the old blob, then anchored, then in place (store.h). A failed index update
     * leaves <alias>.key.new: the TPM may have taken it, and then that file is the key. */
    char next[PATH_MAX + 8];
    uint8_t sha[32];
    snprintf(next, sizeof(next), "%s.new", path);
    tm_sha256(out, total, sha);
    if (write_file_atomic(next, out, total, 0600, err) < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "%s", err->msg);
    if ((r = ks_index_set(st->index, alias, sha, err)) < 0)
        return r;
    if (rename(next, path) < 0 || fsync_parent(path) < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "cannot put the blob of %s in place: %s",
                          alias, strerror(errno));
    return 0;
}

/* With an index: the file's bytes only if they are the blob the index names for alias (or the
 * <alias>.key.new a put left behind after anchoring it, which is moved into place). */
static int read_indexed(const struct ks_store *st, const char *alias, const char *path, char **ret, size_t *ret_len,
                        tm_err *err)
{
    uint8_t want[32], sha[32];
    bool found = false;
    int r = ks_index_lookup(st->index, alias, want, &found, err);
    if (r < 0)
        return r;
    bool exists = access(path, F_OK) == 0;
    if (!found && !exists)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND, "no key %s", alias);
    char next[PATH_MAX + 8];
    snprintf(next, sizeof(next), "%s.new", path);
    if (!found) {
        ks_index_report(st->index, EBADMSG, "key %s: a blob that is not in the TPM-anchored key index is refused",
                        alias);
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB,
                          "key %s: its blob is not in the TPM-anchored key index (a deleted key's blob written back, "
                          "or another container's?)",
                          alias);
    }
    const char *try[2] = {path, next};
    for (int i = 0; i < 2; i++) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        tm_err ferr;
        if (read_file(try[i], BLOB_MAX + HDR_LEN + TAG_LEN, &data, &len, &ferr) < 0)
            continue;
        tm_sha256(data, len, sha);
        if (CRYPTO_memcmp(sha, want, 32) != 0)
            continue;
        if (i == 1 && (rename(next, path) < 0 || fsync_parent(path) < 0))
            return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE,
                              "cannot put the blob of %s in place: %s", alias, strerror(errno));
        if (i == 0)
            unlink(next); /* a put whose anchor the TPM did not take */
        *ret_len = len;
        *ret = steal_ptr(data);
        return 0;
    }
    ks_index_report(st->index, ESTALE, "key %s: its blob is %s", alias,
                    exists ? "not the one the TPM-anchored key index names (an older copy written back?)" : "missing");
    return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB, "key %s: its blob is %s", alias,
                      exists ? "not the one the TPM-anchored key index names (an older copy written back?)"
                             : "missing, while the TPM-anchored key index names it");
}

/* protobuf-c allocations of an unpacked blob go into locked memory. */
struct arena {
    struct secret *mem;
    size_t used;
};

static void *arena_alloc(void *ud, size_t size)
{
    struct arena *a = ud;
    size = (size + 15) & ~(size_t)15;
    if (a->used + size > a->mem->len)
        return NULL;
    void *p = a->mem->data + a->used;
    a->used += size;
    return p;
}

static void arena_free(void *ud, void *p)
{
}

int ks_store_get(const struct ks_store *st, const char *alias, KsKeyBlob **ret, struct secret **ret_mem, tm_err *err)
{
    char path[PATH_MAX];
    key_path(st, alias, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err ferr;
    int r = st->index ? read_indexed(st, alias, path, &data, &len, err)
                      : read_file(path, BLOB_MAX + HDR_LEN + TAG_LEN, &data, &len, &ferr);
    if (st->index && r < 0)
        return r;
    if (r == -ENOENT)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND, "no key %s", alias);
    if (r < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "%s", ferr.msg);
    const uint8_t *b = (const uint8_t *)data;
    if (len < HDR_LEN + TAG_LEN || memcmp(b, MAGIC, 4) != 0 || b[4] != VERSION)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB, "key %s: not a keystore blob",
                          alias);
    size_t clen = len - HDR_LEN - TAG_LEN;
    _cleanup_secret_ struct secret *plain = NULL;
    _cleanup_secret_ struct secret *mem = NULL;
    if (secret_new(clen ? clen : 1, &plain, err) < 0 || secret_new(clen * 4 + 4096, &mem, err) < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INTERNAL, "%s", err->msg);
    char aad[KS_ALIAS_MAX + 128];
    make_aad(st, alias, aad, sizeof(aad));
    uint8_t tag[TAG_LEN];
    memcpy(tag, b + HDR_LEN + clen, TAG_LEN);
    if (gcm(false, st, aad, b + 5, b + HDR_LEN, clen, plain->data, tag) < 0)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB,
                          "key %s: the blob does not open under this container's keystore key (made for another "
                          "container, alias or device, or tampered with)",
                          alias);
    struct arena a = {.mem = mem};
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = &a};
    KsKeyBlob *blob = trustme__keystore__ks_key_blob__unpack(&alloc, clen, plain->data);
    if (!blob || !blob->characteristics)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB, "key %s: malformed blob", alias);
    *ret = blob;
    *ret_mem = steal_ptr(mem);
    return 0;
}

void ks_store_blob_free(KsKeyBlob *blob, struct secret *mem)
{
    secret_free(mem); /* the blob lives in it */
}

bool ks_store_exists(const struct ks_store *st, const char *alias)
{
    char path[PATH_MAX];
    key_path(st, alias, path, sizeof(path));
    if (!st->index)
        return access(path, F_OK) == 0;
    uint8_t sha[32];
    bool found = false;
    tm_err err;
    /* An index that does not open refuses the new key later, at its put. */
    return ks_index_lookup(st->index, alias, sha, &found, &err) == 0 && found;
}

int ks_store_delete(const struct ks_store *st, const char *alias, tm_err *err)
{
    char path[PATH_MAX];
    key_path(st, alias, path, sizeof(path));
    if (st->index) {
        /* Out of the index first: from then on no copy of its blob opens. */
        bool indexed = ks_store_exists(st, alias);
        int r = ks_index_set(st->index, alias, NULL, err);
        if (r < 0)
            return r;
        char next[PATH_MAX + 8];
        snprintf(next, sizeof(next), "%s.new", path);
        unlink(next);
        if (unlink(path) < 0 && errno != ENOENT)
            log_warn("cannot remove the blob of deleted key %s: %s", alias, strerror(errno));
        return indexed ? 0 : tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND, "no key %s", alias);
    }
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND, "no key %s", alias);
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "cannot delete %s: %s", alias,
                          strerror(errno));
    }
    return 0;
}

int ks_store_each(const struct ks_store *st, void (*fn)(const char *alias, void *ud), void *ud, tm_err *err)
{
    if (st->index)
        return ks_index_each(st->index, fn, ud, err);
    _cleanup_(closedirp) DIR *dir = opendir(st->dir);
    if (!dir)
        return tm_err_set(err, TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_STORAGE, "cannot list keys: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || strcmp(e->d_name + n - 4, ".key") != 0)
            continue;
        char alias[KS_ALIAS_MAX + 1];
        if (n - 4 > KS_ALIAS_MAX)
            continue;
        memcpy(alias, e->d_name, n - 4);
        alias[n - 4] = '\0';
        if (ks_alias_valid(alias) && fn)
            fn(alias, ud);
    }
    return 0;
}

static void count_one(const char *alias, void *ud)
{
    (*(size_t *)ud)++;
}

size_t ks_store_count(const struct ks_store *st)
{
    size_t n = 0;
    ks_store_each(st, count_one, &n, NULL);
    return n;
}
