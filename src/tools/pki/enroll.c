/* SPDX-License-Identifier: GPL-2.0-or-later */
/* AK enrollment on the Device CA's side (docs/ATTESTATION.md "Enrollment"): read the device's
 * bundle, check that the AK is a TPM key in the TPM the EK certificate names, and encrypt the
 * AK certificate under a credential that only that TPM can activate, bound to the AK's name
 * (TPM 2.0 Part 1 §24, MakeCredential, done here in software for an ECC P-256 EK). */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "enrollment.h"
#include "pem_blocks.h"
#include "pki.h"

static inline void osslfreep(unsigned char **p)
{
    OPENSSL_free(*p);
}
static inline void pkey_ctx_freep(EVP_PKEY_CTX **c)
{
    EVP_PKEY_CTX_free(*c);
}
static inline void x509_stack_shallow_freep(STACK_OF(X509) * *s)
{
    sk_X509_free(*s);
}

void enroll_bundle_free(struct enroll_bundle *b)
{
    X509_REQ_free(b->csr);
    sk_X509_pop_free(b->ek_chain, X509_free);
    *b = (struct enroll_bundle){0};
}

int enroll_read_bundle(const char *path, struct enroll_bundle *b, tm_err *err)
{
    *b = (struct enroll_bundle){0};
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    return enroll_parse_bundle(in, path, b, err);
}

static int take_block(const char *name, unsigned char **data, long n, void *userdata, tm_err *err)
{
    struct enroll_bundle *b = userdata;
    const unsigned char *p = *data;
    if (strcmp(name, PEM_STRING_X509_REQ) == 0 && !b->csr) {
        if (!(b->csr = d2i_X509_REQ(NULL, &p, n)) || p != *data + n)
            return ossl_fail(err, EINVAL, "the certificate request does not parse");
    } else if (strcmp(name, ENROLL_PEM_AK_PUBLIC) == 0 && !b->ak_public_len) {
        size_t off = 0;
        if (n <= 0 || n > (long)sizeof(b->ak_public_raw) ||
            Tss2_MU_TPMT_PUBLIC_Unmarshal(*data, (size_t)n, &off, &b->ak_public) != TSS2_RC_SUCCESS || off != (size_t)n)
            return tm_err_set(err, EINVAL, "the AK public area is not a TPMT_PUBLIC");
        memcpy(b->ak_public_raw, *data, (size_t)n);
        b->ak_public_len = (size_t)n;
    } else if (strcmp(name, PEM_STRING_X509) == 0) {
        X509 *x = d2i_X509(NULL, &p, n);
        if (!x || p != *data + n || !sk_X509_push(b->ek_chain, x)) {
            X509_free(x);
            return ossl_fail(err, EINVAL, "a certificate does not parse");
        }
    } else {
        return tm_err_set(err, EINVAL, "unexpected PEM block \"%s\"", name);
    }
    return 0;
}

int enroll_parse_bundle(BIO *in, const char *path, struct enroll_bundle *b, tm_err *err)
{
    *b = (struct enroll_bundle){0};
    if (!(b->ek_chain = sk_X509_new_null()))
        return tm_err_set(err, ENOMEM, "out of memory");
    if (tm_pem_each_block(in, 16, take_block, b, err) < 0)
        return tm_err_prefix(err, "%s", path);
    if (!b->csr)
        return tm_err_set(err, EINVAL, "%s holds no PEM certificate request", path);
    if (!b->ak_public_len || sk_X509_num(b->ek_chain) == 0)
        return tm_err_set(err, EKEYREJECTED,
                          "%s carries no proof that its key lives in a TPM "
                          "(the AK's public area and the EK certificate that `trustme device csr` "
                          "adds): the Device CA certifies attestation keys only through credential "
                          "activation (docs/ATTESTATION.md \"Enrollment\")",
                          path);
    return 0;
}

static int point_xy(EVP_PKEY *k, uint8_t x[32], uint8_t y[32], tm_err *err)
{
    uint8_t buf[65];
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof(buf), &len) != 1 ||
        len != 65 || buf[0] != 0x04)
        return ossl_fail(err, EINVAL, "not an uncompressed P-256 point");
    memcpy(x, buf + 1, 32);
    memcpy(y, buf + 33, 32);
    return 0;
}

static bool is_p256(EVP_PKEY *k)
{
    char group[64] = "";
    size_t len;
    return EVP_PKEY_get_base_id(k) == EVP_PKEY_EC && EVP_PKEY_get_group_name(k, group, sizeof(group), &len) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

int enroll_check(struct enroll_bundle *b, STACK_OF(X509) * anchors, STACK_OF(X509_CRL) * crls, tm_err *err)
{
    /* The EK certificate: to a manufacturer anchor, for an ECC P-256 key (the EK template L-2
     * whose symmetric and name algorithms MakeCredential below assumes). */
    X509 *ek_cert = sk_X509_value(b->ek_chain, 0);
    _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
    _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    _cleanup_(x509_stack_shallow_freep) STACK_OF(X509) *untrusted = sk_X509_new_null();
    if (!store || !ctx || !untrusted)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(anchors, i)) != 1)
            return ossl_fail(err, EINVAL, "cannot use an --ek-anchor");
    for (int i = 1; i < sk_X509_num(b->ek_chain); i++)
        if (!sk_X509_push(untrusted, sk_X509_value(b->ek_chain, i)))
            return tm_err_set(err, ENOMEM, "out of memory");
    if (X509_STORE_CTX_init(ctx, store, ek_cert, untrusted) != 1)
        return ossl_fail(err, ENOMEM, "cannot check the EK certificate");
    for (int i = 0; crls && i < sk_X509_CRL_num(crls); i++)
        if (X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i)) != 1)
            return ossl_fail(err, EINVAL, "cannot use an --ek-crl");
    X509_STORE_CTX_set_flags(ctx,
                             X509_V_FLAG_X509_STRICT | (crls ? X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL : 0));
    if (X509_verify_cert(ctx) != 1)
        return tm_err_set(err, EKEYREJECTED,
                          "the EK certificate does not chain to an "
                          "--ek-anchor: %s",
                          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    ERR_clear_error();
    /* An endorsement key certificate (TCG EK Credential Profile): an end entity whose ECC key
     * is for key agreement. Any other certificate under the anchor (a CA, a signing or TLS
     * leaf whose key its holder has in software) would let that holder activate the credential
     * and get an AK certificate for a key outside any TPM. */
    uint32_t xf = X509_get_extension_flags(ek_cert);
    if ((xf & EXFLAG_CA) || X509_check_ca(ek_cert) != 0)
        return tm_err_set(err, EKEYREJECTED,
                          "the EK certificate is a CA certificate, not an "
                          "endorsement key's");
    uint32_t ku = (xf & EXFLAG_KUSAGE) ? X509_get_key_usage(ek_cert) : 0;
    if (!(ku & KU_KEY_AGREEMENT) || (ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION | KU_KEY_CERT_SIGN | KU_CRL_SIGN)))
        return tm_err_set(err, EKEYREJECTED,
                          "the EK certificate's keyUsage is not keyAgreement "
                          "without signing: not an endorsement key's (a signing or other "
                          "certificate under the --ek-anchor)");
    b->ek = X509_get0_pubkey(ek_cert);
    if (!b->ek || !is_p256(b->ek))
        return tm_err_set(err, EOPNOTSUPP,
                          "the EK certificate is not for an ECC P-256 key (only "
                          "the TCG EK template L-2 is supported)");
    /* The AK: a restricted signing key that cannot leave its TPM, and the CSR's key. */
    const TPMT_PUBLIC *p = &b->ak_public;
    const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                             TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 ||
        p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
        return tm_err_set(err, EKEYREJECTED, "the AK is not an ECC P-256 key with nameAlg SHA-256");
    if ((p->objectAttributes & need) != need || (p->objectAttributes & TPMA_OBJECT_DECRYPT))
        return tm_err_set(err, EKEYREJECTED,
                          "the AK's attributes (0x%08x) are not those of an "
                          "attestation key: fixedTPM fixedParent sensitiveDataOrigin restricted "
                          "sign, not decrypt",
                          p->objectAttributes);
    /* No policy: ActivateCredential needs the AK's ADMIN role, which for a key loaded public
     * only (TPM2_LoadExternal of a software key dressed as fixedTPM) is available only through
     * a policy the dresser chose; without one the TPM refuses (TPM_RC_AUTH_UNAVAILABLE). */
    if (p->authPolicy.size != 0 || (p->objectAttributes & TPMA_OBJECT_ADMINWITHPOLICY))
        return tm_err_set(err, EKEYREJECTED,
                          "the AK has an authPolicy or adminWithPolicy: an "
                          "attestation key of trustme-tpmd has neither");
    EVP_PKEY *csr_key = X509_REQ_get0_pubkey(b->csr);
    if (!csr_key || X509_REQ_verify(b->csr, csr_key) != 1)
        return ossl_fail(err, EKEYREJECTED, "the request's self-signature does not verify");
    if (!is_p256(csr_key))
        return tm_err_set(err, EKEYREJECTED, "the request's key is not an ECC P-256 key");
    uint8_t x[32], y[32];
    int r = point_xy(csr_key, x, y, err);
    if (r < 0)
        return r;
    const TPMS_ECC_POINT *pt = &p->unique.ecc;
    if (pt->x.size != 32 || pt->y.size != 32 || memcmp(pt->x.buffer, x, 32) != 0 || memcmp(pt->y.buffer, y, 32) != 0)
        return tm_err_set(err, EKEYREJECTED, "the request's key is not the AK's");
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(b->csr)) == 0)
        return tm_err_set(err, EINVAL, "the request's subject is empty");
    /* The name the TPM computes: nameAlg || SHA-256(TPMT_PUBLIC). */
    b->ak_name[0] = TPM2_ALG_SHA256 >> 8;
    b->ak_name[1] = TPM2_ALG_SHA256 & 0xff;
    if (EVP_Digest(b->ak_public_raw, b->ak_public_len, b->ak_name + 2, NULL, EVP_sha256(), NULL) != 1)
        return ossl_fail(err, EIO, "SHA-256 failed");
    return 0;
}

/* ---- MakeCredential --------------------------------------------------------------------------- */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* KDFa (Part 1 §11.4.10.2) with SHA-256, for at most 256 bits: one HMAC round
 * HMAC(key, [1] || label || 0 || contextU || contextV || [bits]). */
static int kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *u, size_t u_len, unsigned bits,
                uint8_t *out, tm_err *err)
{
    uint8_t msg[4 + 32 + 1 + 64 + 4];
    size_t n = 0, l = strlen(label);
    put32(msg, 1);
    n = 4;
    memcpy(msg + n, label, l + 1); /* with its terminating 0 */
    n += l + 1;
    if (u_len) /* u may be NULL for an empty context */
        memcpy(msg + n, u, u_len);
    n += u_len;
    put32(msg + n, bits);
    n += 4;
    uint8_t mac[32];
    unsigned mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, msg, n, mac, &mac_len) || mac_len != 32)
        return ossl_fail(err, EIO, "HMAC-SHA-256 failed");
    memcpy(out, mac, bits / 8);
    return 0;
}

int enroll_make_credential(EVP_PKEY *ek, const uint8_t ak_name[34], const uint8_t cred[ENROLL_CREDENTIAL_LEN],
                           uint8_t *blob, size_t *blob_len, uint8_t *secret, size_t *secret_len, tm_err *err)
{
    /* The seed: ECDH of an ephemeral P-256 key with the EK, through KDFe (Part 1 §11.4.10.3,
     * Annex C.6.4) with the label "IDENTITY", partyUInfo the ephemeral x, partyVInfo the EK's x. */
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!eph)
        return ossl_fail(err, EIO, "cannot make an ephemeral key");
    _cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
    uint8_t z[32], ex[32], ey[32], kx[32], ky[32];
    size_t z_len = sizeof(z);
    if (!dctx || EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, ek) != 1 ||
        EVP_PKEY_derive(dctx, z, &z_len) != 1 || z_len != 32)
        return ossl_fail(err, EIO, "ECDH with the EK failed");
    int r;
    if ((r = point_xy(eph, ex, ey, err)) < 0 || (r = point_xy(ek, kx, ky, err)) < 0)
        return r;
    uint8_t msg[4 + 32 + 9 + 32 + 32], seed[32];
    put32(msg, 1);
    memcpy(msg + 4, z, 32);
    memcpy(msg + 36, "IDENTITY", 9);
    memcpy(msg + 45, ex, 32);
    memcpy(msg + 77, kx, 32);
    if (EVP_Digest(msg, sizeof(msg), seed, NULL, EVP_sha256(), NULL) != 1)
        return ossl_fail(err, EIO, "SHA-256 failed");
    OPENSSL_cleanse(z, sizeof(z));
    OPENSSL_cleanse(msg, sizeof(msg));
    /* Part 1 §24.4: symKey = KDFa(seed, "STORAGE", name, -, 128) for the EK's AES-128-CFB,
     * encIdentity = CFB(symKey, IV 0, TPM2B_DIGEST(credential)),
     * HMACkey = KDFa(seed, "INTEGRITY", -, -, 256), outerHMAC = HMAC(encIdentity || name). */
    uint8_t sym[16], hkey[32], plain[2 + ENROLL_CREDENTIAL_LEN], enc[sizeof(plain)], iv[16] = {0};
    put16(plain, ENROLL_CREDENTIAL_LEN);
    memcpy(plain + 2, cred, ENROLL_CREDENTIAL_LEN);
    int n = 0, fin = 0;
    _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if ((r = kdfa(seed, 32, "STORAGE", ak_name, 34, 128, sym, err)) < 0 ||
        (r = kdfa(seed, 32, "INTEGRITY", NULL, 0, 256, hkey, err)) < 0)
        return r;
    if (!c || EVP_EncryptInit_ex(c, EVP_aes_128_cfb128(), NULL, sym, iv) != 1 ||
        EVP_EncryptUpdate(c, enc, &n, plain, sizeof(plain)) != 1 || EVP_EncryptFinal_ex(c, enc + n, &fin) != 1 ||
        n + fin != (int)sizeof(plain))
        return ossl_fail(err, EIO, "AES-128-CFB failed");
    OPENSSL_cleanse(plain, sizeof(plain));
    uint8_t hmsg[sizeof(enc) + 34], mac[32];
    unsigned mac_len = 0;
    memcpy(hmsg, enc, sizeof(enc));
    memcpy(hmsg + sizeof(enc), ak_name, 34);
    if (!HMAC(EVP_sha256(), hkey, 32, hmsg, sizeof(hmsg), mac, &mac_len) || mac_len != 32)
        return ossl_fail(err, EIO, "HMAC-SHA-256 failed");
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(sym, sizeof(sym));
    OPENSSL_cleanse(hkey, sizeof(hkey));
    /* TPM2B_ID_OBJECT: size, then TPM2B_DIGEST(outerHMAC) || encIdentity */
    size_t inner = 2 + 32 + sizeof(enc);
    put16(blob, (unsigned)inner);
    put16(blob + 2, 32);
    memcpy(blob + 4, mac, 32);
    memcpy(blob + 36, enc, sizeof(enc));
    *blob_len = 2 + inner;
    /* TPM2B_ENCRYPTED_SECRET holding the marshalled TPMS_ECC_POINT of the ephemeral key */
    put16(secret, 68);
    put16(secret + 2, 32);
    memcpy(secret + 4, ex, 32);
    put16(secret + 36, 32);
    memcpy(secret + 38, ey, 32);
    *secret_len = 70;
    return 0;
}

/* The credential is the key of the certificate's encryption: wiped however enroll_write ends. */
static void cleanse_credp(uint8_t (*cred)[ENROLL_CREDENTIAL_LEN])
{
    OPENSSL_cleanse(*cred, sizeof(*cred));
}

int enroll_write(BIO *out, EVP_PKEY *ek, const uint8_t ak_name[34], X509 *cert, tm_err *err)
{
    _cleanup_(cleanse_credp) uint8_t cred[ENROLL_CREDENTIAL_LEN];
    uint8_t blob[128], secret[128], iv[ENROLL_IV_LEN], tag[ENROLL_TAG_LEN];
    size_t blob_len, secret_len;
    _cleanup_(osslfreep) unsigned char *der = NULL;
    _cleanup_free_ uint8_t *enc = NULL;
    _cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int der_len = i2d_X509(cert, &der), n = 0, fin = 0, r;
    if (!c || der_len <= 0 || !(enc = malloc((size_t)der_len + sizeof(iv) + sizeof(tag))))
        return tm_err_set(err, ENOMEM, "out of memory");
    if (RAND_bytes(cred, sizeof(cred)) != 1 || RAND_bytes(iv, sizeof(iv)) != 1)
        return ossl_fail(err, EIO, "no random bytes");
    if ((r = enroll_make_credential(ek, ak_name, cred, blob, &blob_len, secret, &secret_len, err)) < 0)
        return r;
    memcpy(enc, iv, sizeof(iv));
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, sizeof(iv), NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, cred, iv) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)ENROLL_AAD, (int)strlen(ENROLL_AAD)) != 1 ||
        EVP_EncryptUpdate(c, enc + sizeof(iv), &n, der, der_len) != 1 ||
        EVP_EncryptFinal_ex(c, enc + sizeof(iv) + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag) != 1)
        return ossl_fail(err, EIO, "AES-256-GCM failed");
    memcpy(enc + sizeof(iv) + n + fin, tag, sizeof(tag));
    long enc_len = (long)(sizeof(iv) + (size_t)(n + fin) + sizeof(tag));
    if (PEM_write_bio(out, ENROLL_PEM_CREDENTIAL, "", blob, (long)blob_len) <= 0 ||
        PEM_write_bio(out, ENROLL_PEM_SECRET, "", secret, (long)secret_len) <= 0 ||
        PEM_write_bio(out, ENROLL_PEM_CERT, "", enc, enc_len) <= 0)
        return ossl_fail(err, ENOMEM, "cannot encode the encrypted certificate");
    return 0;
}
