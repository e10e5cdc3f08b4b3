/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The passphrase verifier of a TPM-held key (pass_verifier.h). Its input is the key's authValue,
 * SHA-256 of a label, the key's salt and the passphrase: a slow hash of that is a slow hash of
 * the passphrase, and a right authValue (the one the vTPM checks) is all a use carries. */
#include "pass_verifier.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "secmem.h"

#define E(x) TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_##x

/* scrypt wants 128 * r * N bytes, plus some room. */
#define MAXMEM(log2_n, r, p) (((uint64_t)128 * (r) * ((uint64_t)1 << (log2_n))) + ((uint64_t)128 * (r) * (p)) + 65536)

static int scrypt(const uint8_t *auth, size_t auth_len, const uint8_t *salt, size_t salt_len, uint32_t log2_n,
                  uint32_t r, uint32_t p, uint8_t out[32], tm_err *err)
{
    if (EVP_PBE_scrypt((const char *)auth, auth_len, salt, salt_len, (uint64_t)1 << log2_n, r, p, MAXMEM(log2_n, r, p),
                       out, 32) != 1)
        return tm_err_set(err, E(INTERNAL), "scrypt of the passphrase failed (N 2^%u, r %u, p %u)", log2_n, r, p);
    return 0;
}

int ks_verifier_make(const uint8_t *auth, size_t auth_len, struct ks_verifier *ret, tm_err *err)
{
    int rc;
    memset(ret, 0, sizeof(*ret));
    trustme__keystore__ks_passphrase_verifier__init(&ret->msg);
    if (secure_random(ret->salt, sizeof(ret->salt), err) < 0)
        return tm_err_set(err, E(INTERNAL), "%s", err->msg);
    if ((rc = scrypt(auth, auth_len, ret->salt, sizeof(ret->salt), KS_VERIFIER_LOG2_N, KS_VERIFIER_R, KS_VERIFIER_P,
                     ret->hash, err)) < 0)
        return rc;
    ret->msg.has_salt = ret->msg.has_hash = ret->msg.has_log2_n = ret->msg.has_r = ret->msg.has_p = true;
    ret->msg.salt = (ProtobufCBinaryData){sizeof(ret->salt), ret->salt};
    ret->msg.hash = (ProtobufCBinaryData){sizeof(ret->hash), ret->hash};
    ret->msg.log2_n = KS_VERIFIER_LOG2_N;
    ret->msg.r = KS_VERIFIER_R;
    ret->msg.p = KS_VERIFIER_P;
    return 0;
}

int ks_verifier_check(const Trustme__Keystore__KsPassphraseVerifier *v, const uint8_t *auth, size_t auth_len,
                      bool *ret_ok, tm_err *err)
{
    /* Bounds on what the blob says (only the service writes it, but it is parsed as input): at
     * most 2^18 x 128 x 8 bytes (256 MiB) of scrypt memory. */
    if (!v->has_salt || v->salt.len != 16 || !v->has_hash || v->hash.len != 32 || v->log2_n < 10 || v->log2_n > 18 ||
        v->r < 1 || v->r > 8 || v->p < 1 || v->p > 4)
        return tm_err_set(err, E(INVALID_KEY_BLOB), "the passphrase verifier is malformed");
    uint8_t h[32];
    int r = scrypt(auth, auth_len, v->salt.data, v->salt.len, v->log2_n, v->r, v->p, h, err);
    if (r < 0)
        return r;
    *ret_ok = CRYPTO_memcmp(h, v->hash.data, 32) == 0;
    explicit_bzero(h, sizeof(h));
    return 0;
}
