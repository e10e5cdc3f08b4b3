/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "x25519_seal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "kdf_aead.h"
#include "ossl.h"

#define SEAL_INFO "trustme x25519 seal v1"

_Static_assert(sizeof(((struct x25519_box *)0)->nonce) == AEAD_NONCE_LEN, "nonce length");
_Static_assert(X25519_SEAL_PT_LEN == AEAD_KEY_LEN, "a box holds a key");

static int pkey_from_priv(const struct secret *priv, EVP_PKEY **ret, tm_err *err)
{
    if (priv->len != X25519_KEY_LEN)
        return tm_err_set(err, EINVAL, "X25519 private key of %zu bytes, expected %d", priv->len, X25519_KEY_LEN);
    *ret = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv->data, priv->len);
    return *ret ? 0 : ossl_fail(err, EIO, "cannot load an X25519 private key");
}

static int public_of(EVP_PKEY *k, uint8_t pub[X25519_KEY_LEN], tm_err *err)
{
    size_t len = X25519_KEY_LEN;
    if (EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != X25519_KEY_LEN)
        return ossl_fail(err, EIO, "cannot get an X25519 public key");
    return 0;
}

int x25519_keygen(struct secret **ret_priv, uint8_t pub[X25519_KEY_LEN], tm_err *err)
{
    _cleanup_secret_ struct secret *priv = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    int r = secret_random(X25519_KEY_LEN, &priv, err);
    if (r < 0 || (r = pkey_from_priv(priv, &k, err)) < 0 || (r = public_of(k, pub, err)) < 0)
        return r;
    *ret_priv = steal_ptr(priv);
    return 0;
}

/* HKDF(shared || epk || pub, salt = device secret) with shared = X25519(mine, theirs). */
static int box_key(EVP_PKEY *mine, const uint8_t theirs[X25519_KEY_LEN], const uint8_t epk[X25519_KEY_LEN],
                   const uint8_t pub[X25519_KEY_LEN], const struct secret *device_secret, struct secret **ret,
                   tm_err *err)
{
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *peer =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, theirs, X25519_KEY_LEN);
    if (!peer)
        return ossl_fail(err, EINVAL, "not an X25519 public key");
    _cleanup_secret_ struct secret *ikm = NULL, *k = NULL;
    int r = secret_new(3 * X25519_KEY_LEN, &ikm, err);
    if (r < 0 || (r = secret_new(AEAD_KEY_LEN, &k, err)) < 0)
        return r;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(mine, NULL);
    size_t len = X25519_KEY_LEN;
    bool ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, peer) == 1 &&
              EVP_PKEY_derive(c, ikm->data, &len) == 1 && len == X25519_KEY_LEN;
    EVP_PKEY_CTX_free(c);
    if (!ok)
        return ossl_fail(err, EBADMSG, "X25519 key agreement failed");
    /* A low-order public key makes the shared secret all zeros (RFC 7748 §6.1): refuse it.
     * (OpenSSL refuses it too; this does not depend on that.) */
    uint8_t acc = 0;
    for (size_t i = 0; i < X25519_KEY_LEN; i++)
        acc |= ikm->data[i];
    if (!acc)
        return tm_err_set(err, EBADMSG, "X25519: a low-order public key");
    memcpy(ikm->data + X25519_KEY_LEN, epk, X25519_KEY_LEN);
    memcpy(ikm->data + 2 * X25519_KEY_LEN, pub, X25519_KEY_LEN);
    if ((r = kdf_hkdf_sha256(ikm, device_secret ? device_secret->data : NULL, device_secret ? device_secret->len : 0,
                             SEAL_INFO, k, err)) < 0)
        return r;
    *ret = steal_ptr(k);
    return 0;
}

int x25519_seal(const uint8_t pub[X25519_KEY_LEN], const struct secret *device_secret, const char *aad,
                const struct secret *pt, struct x25519_box *box, tm_err *err)
{
    if (pt->len != X25519_SEAL_PT_LEN)
        return tm_err_set(err, EINVAL, "X25519 seal: %zu bytes, expected %d", pt->len, X25519_SEAL_PT_LEN);
    struct x25519_box b;
    _cleanup_secret_ struct secret *epriv = NULL, *k = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *e = NULL;
    int r = x25519_keygen(&epriv, b.epk, err);
    if (r < 0 || (r = pkey_from_priv(epriv, &e, err)) < 0 ||
        (r = box_key(e, pub, b.epk, pub, device_secret, &k, err)) < 0 ||
        (r = secure_random(b.nonce, sizeof(b.nonce), err)) < 0 ||
        (r = aead_seal(k, b.nonce, aad, strlen(aad), pt->data, pt->len, b.ct, b.ct + X25519_SEAL_PT_LEN, err)) < 0)
        return r;
    *box = b;
    return 0;
}

int x25519_open(const struct secret *priv, const struct secret *device_secret, const char *aad,
                const struct x25519_box *box, struct secret **ret_pt, tm_err *err)
{
    uint8_t pub[X25519_KEY_LEN];
    _cleanup_secret_ struct secret *k = NULL, *pt = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *mine = NULL;
    int r = pkey_from_priv(priv, &mine, err);
    if (r < 0 || (r = public_of(mine, pub, err)) < 0 ||
        (r = box_key(mine, box->epk, box->epk, pub, device_secret, &k, err)) < 0 ||
        (r = secret_new(X25519_SEAL_PT_LEN, &pt, err)) < 0)
        return r;
    r = aead_open(k, box->nonce, aad, strlen(aad), box->ct, X25519_SEAL_PT_LEN, box->ct + X25519_SEAL_PT_LEN, pt, err);
    if (r < 0)
        return r;
    *ret_pt = steal_ptr(pt);
    return 0;
}
