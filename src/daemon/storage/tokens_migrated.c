/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A data key a migration carried (docs/MIGRATION.md "On the target"): kept until the first start
 * after pairing, sealed with AES-256-GCM under a key derived from this device's keystore root
 * (so from its TPM-sealed storage secret) and the container's UUID — a copy of the disk, or
 * another device, opens nothing. */
#include "tokens_migrated.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "tpmd_client.h"

#define INFO "trustme migrated data key v1"
#define FILE_LEN (12 + TOKENS_MIGRATED_KEY_LEN + 16)

static int file_key(struct daemon *d, const char *uuid, uint8_t out[32], tm_err *err)
{
    const struct secret *root = tpmd_keystore_root(d);
    if (!root)
        return tm_err_set(err, EAGAIN, "the device storage secret is not unsealed (yet)");
    tm_hkdf_sha256(root->data, root->len, uuid, strlen(uuid), INFO, strlen(INFO), out, 32);
    return 0;
}

bool tokens_migrated_gcm(bool enc, const uint8_t key[32], const uint8_t iv[12], const char *aad, const uint8_t *in,
                         size_t len, uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l = 0;
    bool ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1 &&
              EVP_CipherUpdate(ctx, NULL, &l, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
              EVP_CipherUpdate(ctx, out, &l, in, (int)len) == 1 &&
              (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1) &&
              EVP_CipherFinal_ex(ctx, out + l, &l) == 1 &&
              (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

int tokens_migrated_store(struct daemon *d, const char *dir, const char *uuid, const struct secret *key, tm_err *err)
{
    uint8_t k[32], buf[FILE_LEN];
    int r;
    if (key->len != TOKENS_MIGRATED_KEY_LEN)
        return tm_err_set(err, EINVAL, "a data key of %zu bytes", key->len);
    if ((r = file_key(d, uuid, k, err)) < 0 || (r = secure_random(buf, 12, err)) < 0)
        return r;
    bool ok = tokens_migrated_gcm(true, k, buf, uuid, key->data, TOKENS_MIGRATED_KEY_LEN, buf + 12,
                                  buf + 12 + TOKENS_MIGRATED_KEY_LEN);
    explicit_bzero(k, sizeof(k));
    if (!ok)
        return tm_err_set(err, EIO, "cannot seal the carried data key");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" TOKENS_MIGRATED_FILE, dir);
    return write_file_atomic(path, buf, sizeof(buf), 0600, err);
}

int tokens_migrated_load(struct daemon *d, const char *dir, const char *uuid, struct secret **ret, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" TOKENS_MIGRATED_FILE, dir);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = read_file(path, FILE_LEN, &data, &len, err);
    if (r < 0)
        return r;
    if (len != FILE_LEN)
        return tm_err_set(err, EBADMSG, "%s has %zu bytes", path, len);
    uint8_t k[32];
    _cleanup_secret_ struct secret *s = NULL;
    if ((r = file_key(d, uuid, k, err)) < 0 || (r = secret_new(TOKENS_MIGRATED_KEY_LEN, &s, err)) < 0)
        return r;
    uint8_t *b = (uint8_t *)data;
    bool ok = tokens_migrated_gcm(false, k, b, uuid, b + 12, TOKENS_MIGRATED_KEY_LEN, s->data,
                                  b + 12 + TOKENS_MIGRATED_KEY_LEN);
    explicit_bzero(k, sizeof(k));
    if (!ok)
        return tm_err_set(err, EBADMSG, "%s does not open on this device (altered, or another device's)", path);
    *ret = steal_ptr(s);
    return 0;
}

void tokens_migrated_remove(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" TOKENS_MIGRATED_FILE, dir);
    if (unlink(path) == 0)
        fsync_parent(path);
}
