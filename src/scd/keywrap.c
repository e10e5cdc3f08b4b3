/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "keywrap.h"

#include <errno.h>
#include <string.h>

#include "kdf_aead.h"

_Static_assert(KEYWRAP_CT_OFFSET == KEYWRAP_NONCE_OFFSET + KEYWRAP_NONCE_LEN, "layout");
_Static_assert(KEYWRAP_TAG_OFFSET == KEYWRAP_CT_OFFSET + KEYWRAP_KEY_LEN, "layout");
_Static_assert(KEYWRAP_BLOB_LEN == KEYWRAP_TAG_OFFSET + KEYWRAP_TAG_LEN, "layout");
_Static_assert(KEYWRAP_NONCE_LEN == AEAD_NONCE_LEN && KEYWRAP_TAG_LEN == AEAD_TAG_LEN, "GCM");

int keywrap_parse(const uint8_t *blob, size_t len, bool device_bound, struct keywrap_info *ret, tm_err *err)
{
    /* Magic and version first: a file that is not a blob at all, or a blob of a later version
     * (which may have another length), deserves that answer rather than "wrong length". */
    if (len < 4 || memcmp(blob, KEYWRAP_MAGIC, 4) != 0)
        return tm_err_set(err, EINVAL, "not a trustme key blob (magic is not \"TMWK\")");
    if (len < 5)
        return tm_err_set(err, EINVAL, "key blob truncated: %zu bytes, expected %d", len, KEYWRAP_BLOB_LEN);
    if (blob[4] != KEYWRAP_VERSION)
        return tm_err_set(err, EOPNOTSUPP, "key blob version %u is not supported (this build reads version %d)",
                          blob[4], KEYWRAP_VERSION);
    if (len < KEYWRAP_BLOB_LEN)
        return tm_err_set(err, EINVAL, "key blob truncated: %zu bytes, expected %d", len, KEYWRAP_BLOB_LEN);
    if (len > KEYWRAP_BLOB_LEN)
        return tm_err_set(err, EINVAL, "key blob too long: %zu bytes, expected %d", len, KEYWRAP_BLOB_LEN);
    uint8_t flags = blob[5], token = blob[6];
    if (blob[7] != 0)
        return tm_err_set(err, EINVAL, "key blob: reserved byte is 0x%02x, must be 0", blob[7]);
    if (flags & ~KEYWRAP_FLAG_DEVICE_BOUND)
        return tm_err_set(err, EINVAL, "key blob: unknown flags 0x%02x", flags & ~KEYWRAP_FLAG_DEVICE_BOUND);
    if ((flags & KEYWRAP_FLAG_DEVICE_BOUND) && !device_bound)
        return tm_err_set(err, EINVAL, "key blob is bound to a device secret (TPM), but none is available");
    if (!(flags & KEYWRAP_FLAG_DEVICE_BOUND) && device_bound)
        return tm_err_set(err, EINVAL,
                          "key blob is not bound to the device secret, "
                          "but this device binds its keys: refusing the unbound blob");
    if (token != KEYWRAP_TOKEN_SOFT && token != KEYWRAP_TOKEN_PKCS11)
        return tm_err_set(err, EINVAL, "key blob: unknown token type %u", token);
    ret->version = blob[4];
    ret->flags = flags;
    ret->token = (enum keywrap_token)token;
    return 0;
}

int keywrap_header_init(uint8_t blob[KEYWRAP_BLOB_LEN], enum keywrap_token token, bool device_bound, tm_err *err)
{
    memset(blob, 0, KEYWRAP_BLOB_LEN);
    memcpy(blob, KEYWRAP_MAGIC, 4);
    blob[4] = KEYWRAP_VERSION;
    blob[5] = device_bound ? KEYWRAP_FLAG_DEVICE_BOUND : 0;
    blob[6] = (uint8_t)token;
    /* Random 96-bit nonces are safe here: one token wraps a handful of keys in its life, far
     * below the 2^32 messages per key that random GCM nonces allow. */
    return secure_random(blob + KEYWRAP_NONCE_OFFSET, KEYWRAP_NONCE_LEN, err);
}

int keywrap_aad(const uint8_t blob[KEYWRAP_BLOB_LEN], const char *uuid, uint8_t aad[KEYWRAP_AAD_LEN], tm_err *err)
{
    if (!tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "not a container UUID: \"%s\"", uuid);
    memcpy(aad, blob, KEYWRAP_HEADER_LEN);
    memcpy(aad + KEYWRAP_HEADER_LEN, uuid, TM_UUID_STR_LEN);
    return 0;
}

static int device_secret_check(const struct secret *device_secret, tm_err *err)
{
    if (device_secret && device_secret->len != KEYWRAP_DEVICE_SECRET_LEN)
        return tm_err_set(err, EINVAL, "device secret of %zu bytes, expected %d", device_secret->len,
                          KEYWRAP_DEVICE_SECRET_LEN);
    return 0;
}

int keywrap_p11_bind(const struct secret *inner, const struct secret *device_secret, struct secret **ret_key,
                     tm_err *err)
{
    int r = device_secret_check(device_secret, err);
    if (r < 0)
        return r;
    if (!device_secret || inner->len != KEYWRAP_KEY_LEN)
        return tm_err_set(err, EINVAL,
                          "binding a PKCS#11-wrapped key needs the device secret and "
                          "a %d-byte inner key",
                          KEYWRAP_KEY_LEN);
    _cleanup_secret_ struct secret *k = NULL;
    if ((r = secret_new(KEYWRAP_KEY_LEN, &k, err)) < 0 ||
        (r = kdf_hkdf_sha256(inner, device_secret->data, device_secret->len, KEYWRAP_P11_BIND_INFO, k, err)) < 0)
        return r;
    *ret_key = steal_ptr(k);
    return 0;
}

static int soft_gcm_key(const struct secret *kek, const struct secret *device_secret, struct secret **ret, tm_err *err)
{
    if (kek->len != AEAD_KEY_LEN)
        return tm_err_set(err, EINVAL, "token KEK of %zu bytes, expected %d", kek->len, AEAD_KEY_LEN);
    _cleanup_secret_ struct secret *k = NULL;
    int r = secret_new(AEAD_KEY_LEN, &k, err);
    if (r < 0)
        return r;
    r = kdf_hkdf_sha256(kek, device_secret ? device_secret->data : NULL, device_secret ? device_secret->len : 0,
                        KEYWRAP_HKDF_INFO, k, err);
    if (r < 0)
        return r;
    *ret = steal_ptr(k);
    return 0;
}

int keywrap_seal_soft(const struct secret *kek, const struct secret *device_secret, const char *uuid,
                      const struct secret *key, uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err)
{
    int r = device_secret_check(device_secret, err);
    if (r < 0)
        return r;
    if (key->len != KEYWRAP_KEY_LEN)
        return tm_err_set(err, EINVAL, "container key of %zu bytes, expected %d", key->len, KEYWRAP_KEY_LEN);
    uint8_t out[KEYWRAP_BLOB_LEN], aad[KEYWRAP_AAD_LEN];
    _cleanup_secret_ struct secret *gcm_key = NULL;
    if ((r = keywrap_header_init(out, KEYWRAP_TOKEN_SOFT, device_secret != NULL, err)) < 0 ||
        (r = keywrap_aad(out, uuid, aad, err)) < 0 || (r = soft_gcm_key(kek, device_secret, &gcm_key, err)) < 0)
        return r;
    r = aead_seal(gcm_key, out + KEYWRAP_NONCE_OFFSET, aad, sizeof(aad), key->data, KEYWRAP_KEY_LEN,
                  out + KEYWRAP_CT_OFFSET, out + KEYWRAP_TAG_OFFSET, err);
    if (r < 0)
        return r;
    memcpy(blob, out, KEYWRAP_BLOB_LEN);
    return 0;
}

int keywrap_open_soft(const struct secret *kek, const struct secret *device_secret, const char *uuid,
                      const uint8_t *blob, size_t len, struct secret **ret_key, tm_err *err)
{
    struct keywrap_info info;
    uint8_t aad[KEYWRAP_AAD_LEN];
    int r = device_secret_check(device_secret, err);
    if (r < 0 || (r = keywrap_parse(blob, len, device_secret != NULL, &info, err)) < 0 ||
        (r = keywrap_aad(blob, uuid, aad, err)) < 0)
        return r;
    if (info.token != KEYWRAP_TOKEN_SOFT)
        return tm_err_set(err, EINVAL, "key blob was wrapped by a PKCS#11 token, not a soft token");
    _cleanup_secret_ struct secret *gcm_key = NULL, *key = NULL;
    if ((r = soft_gcm_key(kek, device_secret, &gcm_key, err)) < 0 || (r = secret_new(KEYWRAP_KEY_LEN, &key, err)) < 0)
        return r;
    r = aead_open(gcm_key, blob + KEYWRAP_NONCE_OFFSET, aad, sizeof(aad), blob + KEYWRAP_CT_OFFSET, KEYWRAP_KEY_LEN,
                  blob + KEYWRAP_TAG_OFFSET, key, err);
    if (r == -EBADMSG)
        return tm_err_set(err, EBADMSG,
                          "key blob does not authenticate: it belongs to another "
                          "token or container, or it was altered");
    if (r < 0)
        return r;
    *ret_key = steal_ptr(key);
    return 0;
}
