/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mechanisms the module offers, as the keystore's algorithm, digest and padding; the raw
 * mechanisms' inputs (a hash, a DigestInfo) and ECDSA's signature encoding. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "p11.h"

#define EC_FLAGS (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)

static const struct p11_mech mechs[] = {
    {CKM_EC_KEY_PAIR_GEN, ALG_EC, DIGEST_NONE, PAD_NONE, CKF_GENERATE_KEY_PAIR | EC_FLAGS, 256, 384},
    {CKM_ECDSA, ALG_EC, DIGEST_NONE, PAD_NONE, CKF_SIGN | EC_FLAGS, 256, 384},
    {CKM_ECDSA_SHA256, ALG_EC, DIGEST_SHA256, PAD_NONE, CKF_SIGN | EC_FLAGS, 256, 384},
    {CKM_ECDSA_SHA384, ALG_EC, DIGEST_SHA384, PAD_NONE, CKF_SIGN | EC_FLAGS, 256, 384},
    {CKM_ECDSA_SHA512, ALG_EC, DIGEST_SHA512, PAD_NONE, CKF_SIGN | EC_FLAGS, 256, 384},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, ALG_RSA, DIGEST_NONE, PAD_NONE, CKF_GENERATE_KEY_PAIR, 2048, 4096},
    {CKM_RSA_PKCS, ALG_RSA, DIGEST_NONE, PAD_PKCS1, CKF_SIGN | CKF_DECRYPT, 2048, 4096},
    {CKM_SHA256_RSA_PKCS, ALG_RSA, DIGEST_SHA256, PAD_PKCS1, CKF_SIGN, 2048, 4096},
    {CKM_SHA384_RSA_PKCS, ALG_RSA, DIGEST_SHA384, PAD_PKCS1, CKF_SIGN, 2048, 4096},
    {CKM_SHA512_RSA_PKCS, ALG_RSA, DIGEST_SHA512, PAD_PKCS1, CKF_SIGN, 2048, 4096},
    {CKM_RSA_PKCS_PSS, ALG_RSA, DIGEST_NONE, PAD_PSS, CKF_SIGN, 2048, 4096},
    {CKM_SHA256_RSA_PKCS_PSS, ALG_RSA, DIGEST_SHA256, PAD_PSS, CKF_SIGN, 2048, 4096},
    {CKM_SHA384_RSA_PKCS_PSS, ALG_RSA, DIGEST_SHA384, PAD_PSS, CKF_SIGN, 2048, 4096},
    {CKM_SHA512_RSA_PKCS_PSS, ALG_RSA, DIGEST_SHA512, PAD_PSS, CKF_SIGN, 2048, 4096},
    {CKM_RSA_PKCS_OAEP, ALG_RSA, DIGEST_NONE, PAD_OAEP, CKF_DECRYPT, 2048, 4096},
};

const struct p11_mech *p11_mech_find(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
        if (mechs[i].type == type)
            return &mechs[i];
    return NULL;
}

size_t p11_mech_count(void)
{
    return sizeof(mechs) / sizeof(mechs[0]);
}

const struct p11_mech *p11_mech_at(size_t i)
{
    return &mechs[i];
}

/* The DER prefix of a DigestInfo (RFC 8017, 9.2 note 1) for each digest the keystore has. */
static const struct {
    int digest;
    uint8_t prefix[19];
} digestinfos[] = {
    {DIGEST_SHA256,
     {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
      0x20}},
    {DIGEST_SHA384,
     {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
      0x30}},
    {DIGEST_SHA512,
     {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04,
      0x40}},
};

size_t p11_digest_len(int digest)
{
    return digest == DIGEST_SHA256 ? 32 : digest == DIGEST_SHA384 ? 48 : digest == DIGEST_SHA512 ? 64 : 0;
}

int p11_digestinfo(const uint8_t *in, size_t len, size_t *ret_hash_off)
{
    for (size_t i = 0; i < sizeof(digestinfos) / sizeof(digestinfos[0]); i++)
        if (len == sizeof(digestinfos[i].prefix) + p11_digest_len(digestinfos[i].digest) &&
            memcmp(in, digestinfos[i].prefix, sizeof(digestinfos[i].prefix)) == 0) {
            *ret_hash_off = sizeof(digestinfos[i].prefix);
            return digestinfos[i].digest;
        }
    return DIGEST_NONE;
}

int p11_digest_of_ckm(CK_MECHANISM_TYPE hash)
{
    return hash == CKM_SHA256   ? DIGEST_SHA256
           : hash == CKM_SHA384 ? DIGEST_SHA384
           : hash == CKM_SHA512 ? DIGEST_SHA512
                                : DIGEST_NONE;
}

CK_RSA_PKCS_MGF_TYPE p11_mgf_of(int digest)
{
    return digest == DIGEST_SHA256 ? CKG_MGF1_SHA256 : digest == DIGEST_SHA384 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA512;
}

int p11_ecdsa_raw(const uint8_t *der, size_t der_len, size_t n, uint8_t *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        return -1;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, out, (int)n) == (int)n && BN_bn2binpad(s, out + n, (int)n) == (int)n;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}
