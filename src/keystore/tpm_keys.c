/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TPM-held keys in the container's vTPM (docs/KEYSTORE.md "TPM-held keys").
 *
 * The keys live under a storage key made with TPM2_CreatePrimary in the vTPM's owner hierarchy
 * (a fixed ECC P-256 template, so it is the same key at every start of this vTPM and no other
 * TPM's). The service keeps the primary and the last key it used loaded: the vTPM has only three
 * transient object slots, shared with the container's own processes. The swtpm TCTI connects
 * anew for every command; the vTPM's proxy flushes what this process left loaded when it exits. */
#include "tpm_keys.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include "keystore.pb-c.h"

#define E(x) TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_##x
#define NO ESYS_TR_NONE

struct ks_tpm {
    char *conf; /* the TCTI's configuration; NULL: no vTPM */
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR primary;
    ESYS_TR key; /* the last key used, still loaded */
    uint8_t key_id[32]; /* SHA-256 of its TPM2B_PRIVATE */
};

struct ks_tpm *ks_tpm_new(const char *sock)
{
    struct ks_tpm *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->primary = t->key = NO;
    if (sock && asprintf(&t->conf, "swtpm:path=%s", sock) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

/* Drop the connection and what it holds loaded (best effort: after a vTPM restart the handles
 * are gone anyway). */
static void disconnect(struct ks_tpm *t)
{
    if (t->esys) {
        if (t->key != NO)
            Esys_FlushContext(t->esys, t->key);
        if (t->primary != NO)
            Esys_FlushContext(t->esys, t->primary);
        Esys_Finalize(&t->esys);
    }
    if (t->tcti)
        Tss2_TctiLdr_Finalize(&t->tcti);
    t->primary = t->key = NO;
}

void ks_tpm_free(struct ks_tpm *t)
{
    if (!t)
        return;
    disconnect(t);
    free(t->conf);
    free(t);
}

/* The TPM's own response code without the handle/session/parameter number; ESAPI's and the
 * TCTI's codes (another layer) as they are. */
static TSS2_RC base_rc(TSS2_RC rc)
{
    if (rc & 0xFFFF0000u)
        return rc;
    if (rc & TPM2_RC_FMT1)
        return TPM2_RC_FMT1 | (rc & 0x3F);
    return rc & 0xFFF;
}

static int tpm_error(TSS2_RC rc, const char *what, tm_err *err)
{
    TSS2_RC b = base_rc(rc);
    if (b == TPM2_RC_AUTH_FAIL || b == TPM2_RC_BAD_AUTH)
        return tm_err_set(err, E(AUTH_FAILED), "%s: the vTPM refused the key's authorisation (wrong passphrase)", what);
    if (b == TPM2_RC_LOCKOUT)
        return tm_err_set(err, E(AUTH_FAILED),
                          "%s: the vTPM is in dictionary-attack lockout (too many wrong passphrases)", what);
    if (b == TPM2_RC_INTEGRITY || b == TPM2_RC_SIZE || b == TPM2_RC_BINDING || b == TPM2_RC_KEY)
        return tm_err_set(err, E(INVALID_KEY_BLOB), "%s: the vTPM does not load the key (not its own): 0x%x", what, rc);
    if (b == TPM2_RC_SCHEME || b == TPM2_RC_HASH)
        return tm_err_set(err, E(INCOMPATIBLE_DIGEST), "%s: the vTPM refused the signature scheme: 0x%x", what, rc);
    if (b == TPM2_RC_ATTRIBUTES || b == TPM2_RC_TYPE)
        return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "%s: the vTPM refused the use of the key: 0x%x", what, rc);
    if (b == TPM2_RC_CURVE || b == TPM2_RC_ECC_POINT)
        return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "%s: the vTPM does not have this curve: 0x%x", what, rc);
    if (b == TPM2_RC_OBJECT_MEMORY)
        return tm_err_set(err, E(TPM_UNAVAILABLE), "%s: the vTPM's object slots are taken (by the container?)", what);
    if ((rc & 0xFFFF0000u) == TSS2_TCTI_RC_LAYER || (rc & 0xFFFF0000u) == TSS2_ESAPI_RC_LAYER)
        return tm_err_set(err, E(TPM_UNAVAILABLE), "%s: the container's vTPM does not answer: 0x%x", what, rc);
    return tm_err_set(err, E(INTERNAL), "%s: the vTPM failed: 0x%x", what, rc);
}

/* A failure that a new connection may cure (the vTPM was restarted: handles gone, socket new). */
static bool retryable(TSS2_RC rc)
{
    TSS2_RC b = base_rc(rc);
    return (rc & 0xFFFF0000u) == TSS2_TCTI_RC_LAYER || b == TPM2_RC_HANDLE || b == TPM2_RC_REFERENCE_H0 ||
           b == TPM2_RC_INITIALIZE;
}

/* The key's authorisation out of this process's memory and off its ESYS handle, after a use. */
static void forget_auth(struct ks_tpm *t, TPM2B_AUTH *a)
{
    explicit_bzero(a, sizeof(*a));
    if (t->esys && t->key != NO) {
        TPM2B_AUTH none = {0};
        Esys_TR_SetAuth(t->esys, t->key, &none);
    }
}

static TSS2_RC connect_primary(struct ks_tpm *t)
{
    if (t->primary != NO)
        return TSS2_RC_SUCCESS;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    if (!t->esys) {
        if ((rc = Tss2_TctiLdr_Initialize(t->conf, &t->tcti)) != TSS2_RC_SUCCESS)
            return rc;
        if ((rc = Esys_Initialize(&t->esys, t->tcti, NULL)) != TSS2_RC_SUCCESS) {
            Tss2_TctiLdr_Finalize(&t->tcti);
            return rc;
        }
    }
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_PUBLIC tmpl = {.publicArea = {
                             .type = TPM2_ALG_ECC,
                             .nameAlg = TPM2_ALG_SHA256,
                             .objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                                                 TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                                 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA,
                             .parameters.eccDetail = {.symmetric = {.algorithm = TPM2_ALG_AES,
                                                                    .keyBits.aes = 128,
                                                                    .mode.aes = TPM2_ALG_CFB},
                                                      .scheme.scheme = TPM2_ALG_NULL,
                                                      .curveID = TPM2_ECC_NIST_P256,
                                                      .kdf.scheme = TPM2_ALG_NULL},
                         }};
    /* The unique field names the keystore, so this is not the container's own SRK. */
    static const char unique[] = "trustme keystore v1";
    memcpy(tmpl.publicArea.unique.ecc.x.buffer, unique, sizeof(unique) - 1);
    tmpl.publicArea.unique.ecc.x.size = sizeof(unique) - 1;
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION pcrs = {0};
    rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, NO, NO, &sens, &tmpl, &outside, &pcrs,
                            &t->primary, NULL, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        t->primary = NO;
    return rc;
}

static int hash_alg_of(unsigned bits, TPMI_ALG_HASH *ret)
{
    switch (bits) {
    case 256: *ret = TPM2_ALG_SHA256; return 0;
    case 384: *ret = TPM2_ALG_SHA384; return 0;
    case 512: *ret = TPM2_ALG_SHA512; return 0;
    default: return -1;
    }
}

static int spki_of(const TPMS_ECC_POINT *q, unsigned bits, tm_buf *ret, tm_err *err)
{
    size_t n = bits / 8;
    if (q->x.size > n || q->y.size > n)
        return tm_err_set(err, E(INTERNAL), "the vTPM returned a malformed EC point");
    uint8_t point[1 + 2 * 48] = {0x04};
    memcpy(point + 1 + n - q->x.size, q->x.buffer, q->x.size);
    memcpy(point + 1 + 2 * n - q->y.size, q->y.buffer, q->y.size);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    uint8_t *der = NULL;
    int len = -1;
    if (bld && ctx &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, bits == 256 ? "P-256" : "P-384", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * n) == 1 &&
        (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1)
        len = i2d_PUBKEY(pkey, &der);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    int r = len > 0 && tm_buf_append(ret, der, (size_t)len) == 0
                ? 0
                : tm_err_set(err, E(INTERNAL), "cannot encode the vTPM key's public key");
    OPENSSL_free(der);
    return r;
}

int ks_tpm_create_ec(struct ks_tpm *t, unsigned bits, unsigned hash_bits, const uint8_t *auth, size_t auth_len, bool da,
                     tm_buf *ret_pub, tm_buf *ret_priv, tm_buf *ret_spki, tm_err *err)
{
    if (!t->conf)
        return tm_err_set(err, E(TPM_UNAVAILABLE),
                          "the container has no vTPM (\"vtpm\": true in its config) to hold the key");
    if (bits != 256 && bits != 384)
        return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "the vTPM holds EC keys of P-256 or P-384, not %u bits", bits);
    if (auth_len == 0 || auth_len > 32)
        return tm_err_set(err, E(INTERNAL), "bad authValue length");
    TPMI_ALG_HASH hash = TPM2_ALG_NULL;
    if (hash_bits && hash_alg_of(hash_bits, &hash) < 0)
        return tm_err_set(err, E(INCOMPATIBLE_DIGEST), "no such digest");
    TPM2B_SENSITIVE_CREATE sens = {0};
    sens.sensitive.userAuth.size = (UINT16)auth_len;
    memcpy(sens.sensitive.userAuth.buffer, auth, auth_len);
    TPM2B_PUBLIC tmpl = {.publicArea = {
                             .type = TPM2_ALG_ECC,
                             .nameAlg = TPM2_ALG_SHA256,
                             /* Signs, never decrypts (no ECDH, no import of anything under it), is not
             * duplicable, and is used with its authValue (no policy that could bypass it). */
                             .objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM |
                                                 TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                                 TPMA_OBJECT_USERWITHAUTH | (da ? 0 : TPMA_OBJECT_NODA),
                             .parameters.eccDetail = {.symmetric.algorithm = TPM2_ALG_NULL,
                                                      .scheme = {.scheme = hash_bits ? TPM2_ALG_ECDSA : TPM2_ALG_NULL,
                                                                 .details.ecdsa.hashAlg = hash},
                                                      .curveID = bits == 256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384,
                                                      .kdf.scheme = TPM2_ALG_NULL},
                         }};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION pcrs = {0};
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = connect_primary(t)) == TSS2_RC_SUCCESS)
            rc = Esys_Create(t->esys, t->primary, ESYS_TR_PASSWORD, NO, NO, &sens, &tmpl, &outside, &pcrs, &priv, &pub,
                             NULL, NULL, NULL);
        if (rc == TSS2_RC_SUCCESS || !retryable(rc))
            break;
        disconnect(t);
    }
    explicit_bzero(&sens, sizeof(sens));
    if (rc != TSS2_RC_SUCCESS)
        return tpm_error(rc, "generating the key in the vTPM", err);
    uint8_t buf[sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    size_t off = 0;
    int r;
    bool ok = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) == TSS2_RC_SUCCESS;
    size_t mid = off;
    ok = ok && Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off) == TSS2_RC_SUCCESS &&
         tm_buf_append(ret_pub, buf, mid) == 0 && tm_buf_append(ret_priv, buf + mid, off - mid) == 0;
    if (ok)
        r = spki_of(&pub->publicArea.unique.ecc, bits, ret_spki, err);
    else
        r = tm_err_set(err, E(INTERNAL), "cannot marshal the vTPM key");
    Esys_Free(priv);
    Esys_Free(pub);
    return r;
}

/* The key (pub, priv) loaded, as t->key. */
static TSS2_RC load_key(struct ks_tpm *t, const uint8_t *pub, size_t pub_len, const uint8_t *priv, size_t priv_len,
                        bool *bad_blob)
{
    uint8_t id[32];
    EVP_Digest(priv, priv_len, id, NULL, EVP_sha256(), NULL);
    if (t->key != NO && memcmp(id, t->key_id, sizeof(id)) == 0)
        return TSS2_RC_SUCCESS;
    TPM2B_PUBLIC p = {0};
    TPM2B_PRIVATE s = {0};
    size_t o1 = 0, o2 = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(pub, pub_len, &o1, &p) != TSS2_RC_SUCCESS || o1 != pub_len ||
        Tss2_MU_TPM2B_PRIVATE_Unmarshal(priv, priv_len, &o2, &s) != TSS2_RC_SUCCESS || o2 != priv_len) {
        *bad_blob = true;
        return TSS2_ESYS_RC_BAD_VALUE;
    }
    TSS2_RC rc = connect_primary(t);
    if (rc != TSS2_RC_SUCCESS)
        return rc;
    if (t->key != NO) {
        Esys_FlushContext(t->esys, t->key);
        t->key = NO;
    }
    ESYS_TR h = NO;
    if ((rc = Esys_Load(t->esys, t->primary, ESYS_TR_PASSWORD, NO, NO, &s, &p, &h)) != TSS2_RC_SUCCESS)
        return rc;
    t->key = h;
    memcpy(t->key_id, id, sizeof(id));
    return TSS2_RC_SUCCESS;
}

static int der_of(const TPMT_SIGNATURE *sig, uint8_t *out, size_t *out_len, tm_err *err)
{
    if (sig->sigAlg != TPM2_ALG_ECDSA)
        return tm_err_set(err, E(INTERNAL), "the vTPM returned no ECDSA signature");
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig->signature.ecdsa.signatureR.buffer, sig->signature.ecdsa.signatureR.size, NULL);
    BIGNUM *s = BN_bin2bn(sig->signature.ecdsa.signatureS.buffer, sig->signature.ecdsa.signatureS.size, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return tm_err_set(err, E(INTERNAL), "out of memory");
    }
    int len = i2d_ECDSA_SIG(es, NULL);
    int ok = len > 0 && (size_t)len <= *out_len;
    if (ok) {
        uint8_t *p = out;
        i2d_ECDSA_SIG(es, &p);
        *out_len = (size_t)len;
    }
    ECDSA_SIG_free(es);
    return ok ? 0 : tm_err_set(err, E(INTERNAL), "cannot encode the signature");
}

int ks_tpm_sign(struct ks_tpm *t, const uint8_t *pub, size_t pub_len, const uint8_t *priv, size_t priv_len,
                const uint8_t *auth, size_t auth_len, const uint8_t *digest, size_t digest_len, uint8_t *sig,
                size_t *sig_len, tm_err *err)
{
    if (!t->conf)
        return tm_err_set(err, E(TPM_UNAVAILABLE), "the key is held by a vTPM, and the container has none now");
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA};
    if (hash_alg_of((unsigned)digest_len * 8, &scheme.details.ecdsa.hashAlg) < 0 || auth_len > 32)
        return tm_err_set(err, E(INVALID_INPUT_LENGTH), "a digest of %zu bytes", digest_len);
    TPM2B_DIGEST d = {.size = (UINT16)digest_len};
    memcpy(d.buffer, digest, digest_len);
    TPMT_TK_HASHCHECK ticket = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
    TPM2B_AUTH a = {.size = (UINT16)auth_len};
    memcpy(a.buffer, auth, auth_len);
    TPMT_SIGNATURE *out = NULL;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool bad_blob = false;
        rc = load_key(t, pub, pub_len, priv, priv_len, &bad_blob);
        if (bad_blob) {
            explicit_bzero(&a, sizeof(a));
            return tm_err_set(err, E(INVALID_KEY_BLOB), "the key's TPM blob does not parse");
        }
        if (rc == TSS2_RC_SUCCESS && (rc = Esys_TR_SetAuth(t->esys, t->key, &a)) == TSS2_RC_SUCCESS)
            rc = Esys_Sign(t->esys, t->key, ESYS_TR_PASSWORD, NO, NO, &d, &scheme, &ticket, &out);
        if (rc == TSS2_RC_SUCCESS || !retryable(rc))
            break;
        disconnect(t);
    }
    forget_auth(t, &a);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_error(rc, "signing in the vTPM", err);
    int r = der_of(out, sig, sig_len, err);
    Esys_Free(out);
    return r;
}

int ks_tpm_certify(struct ks_tpm *t, const uint8_t *pub, size_t pub_len, const uint8_t *priv, size_t priv_len,
                   const uint8_t *auth, size_t auth_len, uint32_t signer, const uint8_t qual[32], tm_buf *ret_attest,
                   tm_buf *ret_sig, tm_err *err)
{
    if (!t->conf)
        return tm_err_set(err, E(TPM_UNAVAILABLE), "the key is held by a vTPM, and the container has none now");
    if (auth_len > 32)
        return tm_err_set(err, E(INTERNAL), "bad authValue length");
    TPM2B_AUTH a = {.size = (UINT16)auth_len};
    memcpy(a.buffer, auth, auth_len);
    TPM2B_DATA q = {.size = 32};
    memcpy(q.buffer, qual, 32);
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL}; /* the certifying key's own */
    TPM2B_ATTEST *info = NULL;
    TPMT_SIGNATURE *sig = NULL;
    ESYS_TR h = NO;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    bool no_signer = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool bad_blob = false;
        rc = load_key(t, pub, pub_len, priv, priv_len, &bad_blob);
        if (bad_blob) {
            explicit_bzero(&a, sizeof(a));
            return tm_err_set(err, E(INVALID_KEY_BLOB), "the key's TPM blob does not parse");
        }
        if (rc == TSS2_RC_SUCCESS) {
            rc = Esys_TR_FromTPMPublic(t->esys, signer, NO, NO, NO, &h);
            no_signer = rc != TSS2_RC_SUCCESS && !retryable(rc);
        }
        if (rc == TSS2_RC_SUCCESS && (rc = Esys_TR_SetAuth(t->esys, t->key, &a)) == TSS2_RC_SUCCESS)
            rc = Esys_Certify(t->esys, t->key, h, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, NO, &q, &scheme, &info, &sig);
        if (h != NO) {
            Esys_TR_Close(t->esys, &h);
            h = NO;
        }
        if (rc == TSS2_RC_SUCCESS || !retryable(rc))
            break;
        disconnect(t);
    }
    forget_auth(t, &a);
    if (no_signer)
        return tm_err_set(err, E(ATTESTATION_UNAVAILABLE),
                          "the vTPM has no certifying key at 0x%x (its owner's attestation key: trustme-owner "
                          "--fleet-key)",
                          signer);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_error(rc, "certifying the key in the vTPM", err);
    uint8_t buf[sizeof(TPMT_SIGNATURE)];
    size_t off = 0;
    int r = tm_buf_append(ret_attest, info->attestationData, info->size) == 0 &&
                    Tss2_MU_TPMT_SIGNATURE_Marshal(sig, buf, sizeof(buf), &off) == TSS2_RC_SUCCESS &&
                    tm_buf_append(ret_sig, buf, off) == 0
                ? 0
                : tm_err_set(err, E(INTERNAL), "cannot marshal the vTPM's certification");
    Esys_Free(info);
    Esys_Free(sig);
    return r;
}
