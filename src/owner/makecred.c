/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "makecred.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <string.h>

#include "cleanup.h"

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int makecred_kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *context_u, size_t u_len,
                  const uint8_t *context_v, size_t v_len, uint32_t bits, uint8_t *out)
{
    size_t want = bits / 8, have = 0;
    for (uint32_t i = 1; have < want; i++) {
        uint8_t ctr[4], nbits[4], block[32];
        put_be32(ctr, i);
        put_be32(nbits, bits);
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *m = mac ? EVP_MAC_CTX_new(mac) : NULL;
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                               OSSL_PARAM_construct_end()};
        size_t olen = 0;
        int ok = m && EVP_MAC_init(m, key, key_len, params) && EVP_MAC_update(m, ctr, 4) &&
                 EVP_MAC_update(m, (const uint8_t *)label, strlen(label) + 1) &&
                 (!u_len || EVP_MAC_update(m, context_u, u_len)) && (!v_len || EVP_MAC_update(m, context_v, v_len)) &&
                 EVP_MAC_update(m, nbits, 4) && EVP_MAC_final(m, block, &olen, sizeof(block));
        EVP_MAC_CTX_free(m);
        EVP_MAC_free(mac);
        if (!ok || olen != sizeof(block))
            return -EIO;
        size_t n = want - have < sizeof(block) ? want - have : sizeof(block);
        memcpy(out + have, block, n);
        have += n;
    }
    return 0;
}

int makecred_kdfe(const uint8_t *z, size_t z_len, const char *label, const uint8_t *party_u, size_t u_len,
                  const uint8_t *party_v, size_t v_len, uint32_t bits, uint8_t *out)
{
    size_t want = bits / 8, have = 0;
    for (uint32_t i = 1; have < want; i++) {
        uint8_t ctr[4], block[32];
        unsigned int olen = 0;
        put_be32(ctr, i);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, ctr, 4) &&
                 EVP_DigestUpdate(md, z, z_len) && EVP_DigestUpdate(md, label, strlen(label) + 1) &&
                 EVP_DigestUpdate(md, party_u, u_len) && EVP_DigestUpdate(md, party_v, v_len) &&
                 EVP_DigestFinal_ex(md, block, &olen);
        EVP_MD_CTX_free(md);
        if (!ok || olen != sizeof(block))
            return -EIO;
        size_t n = want - have < sizeof(block) ? want - have : sizeof(block);
        memcpy(out + have, block, n);
        have += n;
    }
    return 0;
}

static void pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}
static void pctx_freep(EVP_PKEY_CTX **p)
{
    EVP_PKEY_CTX_free(*p);
}

/* The EK's public point as an EVP_PKEY. */
static EVP_PKEY *ek_pkey(const TPMS_ECC_POINT *q)
{
    uint8_t pt[65] = {0x04};
    memcpy(pt + 1 + 32 - q->x.size, q->x.buffer, q->x.size);
    memcpy(pt + 33 + 32 - q->y.size, q->y.buffer, q->y.size);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                           OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)),
                           OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int makecred_ecc(const TPMT_PUBLIC *ek, const TPM2B_NAME *name, const uint8_t *cred, size_t cred_len,
                 TPM2B_ID_OBJECT *ret_blob, TPM2B_ENCRYPTED_SECRET *ret_secret, tm_err *err)
{
    const TPMS_ECC_PARMS *p = &ek->parameters.eccDetail;
    if (ek->type != TPM2_ALG_ECC || ek->nameAlg != TPM2_ALG_SHA256 || p->curveID != TPM2_ECC_NIST_P256 ||
        p->symmetric.algorithm != TPM2_ALG_AES || p->symmetric.keyBits.aes != 128 ||
        p->symmetric.mode.aes != TPM2_ALG_CFB || ek->unique.ecc.x.size > 32 || ek->unique.ecc.y.size > 32)
        return tm_err_set(err, EINVAL, "the EK is not an ECC P-256 key with AES-128-CFB and SHA-256");
    if (cred_len > 64 || name->size > sizeof(name->name))
        return tm_err_set(err, EINVAL, "credential or name too long");
    _cleanup_(pkey_freep) EVP_PKEY *peer = ek_pkey(&ek->unique.ecc);
    _cleanup_(pkey_freep) EVP_PKEY *eph = NULL;
    if (!peer || !(eph = EVP_EC_gen("P-256")))
        return tm_err_set(err, EIO, "OpenSSL could not make the ephemeral key");
    /* Z: the x coordinate of the shared point. */
    uint8_t z[32];
    size_t zlen = sizeof(z);
    _cleanup_(pctx_freep) EVP_PKEY_CTX *dh = EVP_PKEY_CTX_new(eph, NULL);
    if (!dh || EVP_PKEY_derive_init(dh) <= 0 || EVP_PKEY_derive_set_peer(dh, peer) <= 0 ||
        EVP_PKEY_derive(dh, z, &zlen) <= 0 || zlen != sizeof(z))
        return tm_err_set(err, EIO, "ECDH with the EK failed");
    uint8_t qe[65];
    size_t qelen = 0;
    if (!EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, qe, sizeof(qe), &qelen) || qelen != 65 ||
        qe[0] != 0x04)
        return tm_err_set(err, EIO, "the ephemeral key's point");
    uint8_t ekx[32] = {0};
    memcpy(ekx + 32 - ek->unique.ecc.x.size, ek->unique.ecc.x.buffer, ek->unique.ecc.x.size);
    /* seed = KDFe(Z, "IDENTITY", QeU.x, QsV.x), as many bits as nameAlg's digest. */
    uint8_t seed[32], sym[16], hkey[32];
    if (makecred_kdfe(z, sizeof(z), "IDENTITY", qe + 1, 32, ekx, 32, 256, seed) < 0 ||
        makecred_kdfa(seed, sizeof(seed), "STORAGE", name->name, name->size, NULL, 0, 128, sym) < 0 ||
        makecred_kdfa(seed, sizeof(seed), "INTEGRITY", NULL, 0, NULL, 0, 256, hkey) < 0)
        return tm_err_set(err, EIO, "key derivation failed");
    /* encIdentity = AES-128-CFB(symKey, IV 0, TPM2B_DIGEST(credential)). */
    uint8_t plain[2 + 64], enc[2 + 64], iv[16] = {0};
    plain[0] = (uint8_t)(cred_len >> 8);
    plain[1] = (uint8_t)cred_len;
    memcpy(plain + 2, cred, cred_len);
    int outl = 0, fin = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = c && EVP_EncryptInit_ex(c, EVP_aes_128_cfb128(), NULL, sym, iv) &&
             EVP_EncryptUpdate(c, enc, &outl, plain, (int)(2 + cred_len)) && EVP_EncryptFinal_ex(c, enc + outl, &fin);
    EVP_CIPHER_CTX_free(c);
    if (!ok || (size_t)(outl + fin) != 2 + cred_len)
        return tm_err_set(err, EIO, "AES-CFB failed");
    size_t enc_len = 2 + cred_len;
    /* outerHMAC = HMAC(HMACkey, encIdentity || Name). */
    uint8_t hmac[32];
    unsigned int hlen = 0;
    uint8_t msg[2 + 64 + sizeof(name->name)];
    memcpy(msg, enc, enc_len);
    memcpy(msg + enc_len, name->name, name->size);
    if (!HMAC(EVP_sha256(), hkey, sizeof(hkey), msg, enc_len + name->size, hmac, &hlen) || hlen != 32)
        return tm_err_set(err, EIO, "HMAC failed");
    /* TPM2B_ID_OBJECT's content: TPM2B_DIGEST(outerHMAC) || encIdentity. */
    *ret_blob = (TPM2B_ID_OBJECT){.size = (UINT16)(2 + 32 + enc_len)};
    ret_blob->credential[0] = 0;
    ret_blob->credential[1] = 32;
    memcpy(ret_blob->credential + 2, hmac, 32);
    memcpy(ret_blob->credential + 34, enc, enc_len);
    /* The secret: the ephemeral public point as a TPMS_ECC_POINT. */
    *ret_secret = (TPM2B_ENCRYPTED_SECRET){.size = 2 + 32 + 2 + 32};
    ret_secret->secret[0] = 0;
    ret_secret->secret[1] = 32;
    memcpy(ret_secret->secret + 2, qe + 1, 32);
    ret_secret->secret[34] = 0;
    ret_secret->secret[35] = 32;
    memcpy(ret_secret->secret + 36, qe + 33, 32);
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(z, sizeof(z));
    OPENSSL_cleanse(sym, sizeof(sym));
    OPENSSL_cleanse(plain, sizeof(plain));
    return 0;
}
