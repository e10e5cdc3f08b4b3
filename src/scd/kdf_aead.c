/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kdf_aead.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <string.h>

#include "ossl.h"

static int gcm_init(EVP_CIPHER_CTX **ret, bool enc, const struct secret *key, const uint8_t nonce[AEAD_NONCE_LEN],
                    const void *aad, size_t aad_len, tm_err *err)
{
    if (key->len != AEAD_KEY_LEN)
        return tm_err_set(err, EINVAL, "AES-256-GCM needs a %d-byte key, got %zu", AEAD_KEY_LEN, key->len);
    if (aad_len > INT32_MAX)
        return tm_err_set(err, EINVAL, "AAD too long");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return ossl_fail(err, ENOMEM, "EVP_CIPHER_CTX_new failed");
    int outl;
    /* 12 bytes is GCM's default IV length, so no EVP_CTRL_GCM_SET_IVLEN is needed. */
    if (EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), key->data, nonce, enc ? 1 : 0, NULL) != 1 ||
        (aad_len && EVP_CipherUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)) {
        EVP_CIPHER_CTX_free(c);
        return ossl_fail(err, EIO, "AES-256-GCM set-up failed");
    }
    *ret = c;
    return 0;
}

int aead_seal(const struct secret *key, const uint8_t nonce[AEAD_NONCE_LEN], const void *aad, size_t aad_len,
              const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[AEAD_TAG_LEN], tm_err *err)
{
    if (len > INT32_MAX)
        return tm_err_set(err, EINVAL, "plaintext too long");
    _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *c = NULL;
    int r = gcm_init(&c, true, key, nonce, aad, aad_len, err);
    if (r < 0)
        return r;
    int outl = 0, finl = 0;
    if (EVP_EncryptUpdate(c, ct, &outl, pt, (int)len) != 1 || EVP_EncryptFinal_ex(c, ct + outl, &finl) != 1 ||
        (size_t)(outl + finl) != len || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN, tag) != 1)
        return ossl_fail(err, EIO, "AES-256-GCM encryption failed");
    return 0;
}

int aead_open(const struct secret *key, const uint8_t nonce[AEAD_NONCE_LEN], const void *aad, size_t aad_len,
              const uint8_t *ct, size_t len, const uint8_t tag[AEAD_TAG_LEN], struct secret *pt, tm_err *err)
{
    if (pt->len != len)
        return tm_err_set(err, EINVAL, "AES-256-GCM: plaintext buffer of %zu bytes for %zu", pt->len, len);
    _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *c = NULL;
    int r = gcm_init(&c, false, key, nonce, aad, aad_len, err);
    if (r < 0)
        return r;
    int outl = 0, finl = 0;
    uint8_t tagcopy[AEAD_TAG_LEN];
    memcpy(tagcopy, tag, sizeof(tagcopy)); /* the ctrl takes a non-const pointer */
    if (EVP_DecryptUpdate(c, pt->data, &outl, ct, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, tagcopy) != 1)
        return ossl_fail(err, EIO, "AES-256-GCM decryption failed");
    if (EVP_DecryptFinal_ex(c, pt->data + outl, &finl) != 1) {
        /* Not a library failure: the input does not authenticate. The caller says what that
         * means (a wrong PIN, a blob of another container, a tampered file). */
        ERR_clear_error();
        explicit_bzero(pt->data, pt->len);
        return tm_err_set(err, EBADMSG, "authentication failed");
    }
    return 0;
}

int kdf_hkdf_sha256(const struct secret *ikm, const uint8_t *salt, size_t salt_len, const char *info,
                    struct secret *out, tm_err *err)
{
    _cleanup_(EVP_KDF_freep) EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!kdf)
        return ossl_fail(err, EIO, "EVP_KDF_fetch(HKDF) failed");
    _cleanup_(EVP_KDF_CTX_freep) EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    if (!kctx)
        return ossl_fail(err, ENOMEM, "EVP_KDF_CTX_new failed");
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm->data, ikm->len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)info, strlen(info));
    if (salt_len)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out->data, out->len, params) != 1)
        return ossl_fail(err, EIO, "HKDF-SHA256 failed");
    return 0;
}

int kdf_scrypt(const char *pass, const uint8_t *salt, size_t salt_len, uint64_t n, uint32_t r, uint32_t p,
               struct secret *out, tm_err *err)
{
    _cleanup_(EVP_KDF_freep) EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (!kdf)
        return ossl_fail(err, EIO, "EVP_KDF_fetch(SCRYPT) failed");
    _cleanup_(EVP_KDF_CTX_freep) EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    if (!kctx)
        return ossl_fail(err, ENOMEM, "EVP_KDF_CTX_new failed");
    /* scrypt needs about 128 * r * (N + p) bytes; OpenSSL's default cap is 32 MiB, exactly what
     * N = 2^15, r = 8 needs plus a little, so it would refuse the default. Allow twice the need. */
    uint64_t maxmem = 2 * 128 * (uint64_t)r * (n + p) + (1 << 20);
    OSSL_PARAM params[7], *pp = params;
    *pp++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (char *)pass, strlen(pass));
    *pp++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    *pp++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    *pp++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
    *pp++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
    *pp++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    *pp = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out->data, out->len, params) != 1)
        return ossl_fail(err, EIO, "scrypt failed");
    return 0;
}
