/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "sstore_crypto.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <string.h>

#include "secmem.h"

int sstore_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
                size_t info_len, uint8_t out[32], tm_err *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!c)
        return tm_err_set(err, ENOMEM, "HKDF is not available");
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(c, out, 32, p);
    EVP_KDF_CTX_free(c);
    return ok == 1 ? 0 : tm_err_set(err, EIO, "HKDF failed");
}

int sstore_hmac(const uint8_t key[32], const void *data, size_t len, uint8_t out[32], tm_err *err)
{
    unsigned int n = 32;
    if (!HMAC(EVP_sha256(), key, 32, data, len, out, &n) || n != 32)
        return tm_err_set(err, EIO, "HMAC-SHA256 failed");
    return 0;
}

static int gcm(bool enc, const uint8_t key[32], const uint8_t nonce[SSTORE_NONCE_LEN], const void *aad, size_t aad_len,
               const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[SSTORE_TAG_LEN])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
                    (aad_len == 0 || EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
                    (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) &&
                    (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SSTORE_TAG_LEN, tag) == 1) &&
                    EVP_CipherFinal_ex(c, out + (len ? n : 0), &n) == 1 &&
                    (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SSTORE_TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int sstore_seal(const uint8_t key[32], const void *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                tm_err *err)
{
    int r;
    if ((r = secure_random(out, SSTORE_NONCE_LEN, err)) < 0)
        return r;
    if (gcm(true, key, out, aad, aad_len, in, len, out + SSTORE_NONCE_LEN, out + SSTORE_NONCE_LEN + len) < 0)
        return tm_err_set(err, EIO, "AES-256-GCM encryption failed");
    return 0;
}

int sstore_open_sealed(const uint8_t key[32], const void *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out, tm_err *err)
{
    if (in_len < SSTORE_NONCE_LEN + SSTORE_TAG_LEN)
        return tm_err_set(err, EBADMSG, "sealed data too short");
    size_t len = in_len - SSTORE_NONCE_LEN - SSTORE_TAG_LEN;
    uint8_t tag[SSTORE_TAG_LEN];
    memcpy(tag, in + SSTORE_NONCE_LEN + len, sizeof(tag));
    if (gcm(false, key, in, aad, aad_len, in + SSTORE_NONCE_LEN, len, out, tag) < 0) {
        explicit_bzero(out, len);
        return tm_err_set(err, EBADMSG, "authentication failed");
    }
    return 0;
}
