/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM-issuing key (docs/VTPM.md "EK certificates"): its request bundle for the Device CA,
 * the installation of its certificate chain, and the EK certificates it issues for the
 * containers' vTPMs. */
#include "vtpm_issuer.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "crypto.h"
#include "csr.h"
#include "enrollment.h"
#include "hex.h"
#include "ossl_cleanup.h"
#include "secmem.h"
#include "tpm_util.h"
#include "tpm_x509.h"

/* The issuing key, loaded for one operation and flushed on every path. */
struct issuer {
    struct tpm *t;
    ESYS_TR handle;
};
static void issuer_done(struct issuer *i)
{
    if (i->t)
        tpm_flush(i->t->esys, &i->handle);
}
static int issuer_sign(void *ctx, const uint8_t *tbs, size_t tbs_len, uint8_t r[32], uint8_t s[32], tm_err *err)
{
    struct issuer *i = ctx;
    return tpm_sign_data_with(i->t, i->handle, tbs, tbs_len, r, s, err);
}

int vtpm_issuer_csr(struct tpm *t, const char *data_dir, const char *ak_chain, size_t ak_chain_len, char **ret_pem,
                    size_t *ret_len, tm_err *err)
{
    if (!ak_chain || !ak_chain_len)
        return tm_err_set(err, ENOENT,
                          "the attestation key is not enrolled yet: the Device CA checks the vTPM-issuing key "
                          "against the AK's certificate (docs/ATTESTATION.md \"Enrollment\")");
    _cleanup_(issuer_done) struct issuer iss = {.t = t, .handle = ESYS_TR_NONE};
    TPM2B_PUBLIC pub;
    int r = tpm_issuer_load(t, data_dir, true, &iss.handle, &pub, err);
    if (r < 0)
        return r;
    _cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
    if ((r = point_pkey(&pub.publicArea.unique.ecc, "vTPM-issuing key", &pkey, err)) < 0)
        return r;
    char cn[64], hex[17];
    tm_hex(t->ak_name.name + 2, 8, hex);
    snprintf(cn, sizeof(cn), "trustme vTPM issuer %s", hex);
    _cleanup_(req_freep) X509_REQ *req = NULL;
    if ((r = tpm_signed_request(pkey, cn, issuer_sign, &iss, &req, err)) < 0)
        return r;
    /* The AK vouches that this key lives in its TPM, with these attributes, for this request. */
    _cleanup_(osslfreep) unsigned char *req_der = NULL;
    int req_len = i2d_X509_REQ(req, &req_der);
    uint8_t qualifying[32];
    if (req_len <= 0)
        return ossl_err(err, ENOMEM, "cannot encode the certificate request");
    tm_sha256(req_der, (size_t)req_len, qualifying);
    _cleanup_free_ uint8_t *attest = NULL, *sig = NULL;
    size_t attest_len, sig_len;
    if ((r = tpm_certify(t, iss.handle, qualifying, sizeof(qualifying), &attest, &attest_len, &sig, &sig_len, err)) < 0)
        return r;
    struct certified_key k = {.req = req,
                              .pub = &pub.publicArea,
                              .attest = attest,
                              .attest_len = attest_len,
                              .sig = sig,
                              .sig_len = sig_len,
                              .public_label = VTPM_ISSUER_PEM_PUBLIC,
                              .attest_label = VTPM_ISSUER_PEM_ATTEST,
                              .sig_label = VTPM_ISSUER_PEM_SIGNATURE,
                              .what = "vTPM-issuing key"};
    return certified_key_pem(&k, ak_chain, ak_chain_len, ret_pem, ret_len, err);
}

int vtpm_issuer_check_chain(const char *data_dir, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len,
                            tm_err *err)
{
    TPM2B_PUBLIC pub;
    tm_err e = {0};
    if (tpm_issuer_public(data_dir, &pub, &e) < 0)
        return 0; /* no issuing key: the chain is someone else's */
    _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
    int r = point_pkey(&pub.publicArea.unique.ecc, "vTPM-issuing key", &key, err);
    if (r < 0)
        return r;
    if (len == 0 || len > CERT_CHAIN_PEM_MAX)
        return 0;
    _cleanup_(bio_freep) BIO *in = BIO_new_mem_buf(pem, (int)len);
    _cleanup_(certs_freep) STACK_OF(X509) *certs = sk_X509_new_null();
    if (!in || !certs)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (X509 *c; sk_X509_num(certs) <= CERT_CHAIN_MAX && (c = PEM_read_bio_X509(in, NULL, NULL, NULL));)
        if (!sk_X509_push(certs, c)) {
            X509_free(c);
            return tm_err_set(err, ENOMEM, "out of memory");
        }
    ERR_clear_error();
    int n = sk_X509_num(certs);
    if (n == 0 || EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, 0)), key) != 1)
        return 0;
    if (n > CERT_CHAIN_MAX)
        return tm_err_set(err, EINVAL, "more than %d certificates in the chain", CERT_CHAIN_MAX);
    X509 *leaf = sk_X509_value(certs, 0);
    /* What makes it an issuer of vTPM EK certificates (trustme-pki's vtpm-issuer profile). */
    if (X509_check_ca(leaf) == 0 || !(X509_get_key_usage(leaf) & KU_KEY_CERT_SIGN))
        return tm_err_set(err, EINVAL,
                          "the vTPM-issuing key's certificate is not a CA certificate with keyCertSign "
                          "(`trustme-pki issue --profile vtpm-issuer`)");
    if ((r = linked_chain_pem(certs, ret_pem, ret_len, err)) < 0)
        return r;
    return 1;
}

/* The EK's public key from its TPMT_PUBLIC: RSA 2048 (exponent 0 meaning 65537) or ECC P-256. */
static int ek_pkey(const uint8_t *buf, size_t len, bool *ret_rsa, EVP_PKEY **ret, tm_err *err)
{
    TPMT_PUBLIC p = {0};
    size_t off = 0;
    if (Tss2_MU_TPMT_PUBLIC_Unmarshal(buf, len, &off, &p) != TSS2_RC_SUCCESS || off != len)
        return tm_err_set(err, EINVAL, "the endorsement key is not a TPMT_PUBLIC");
    if (p.type == TPM2_ALG_ECC) {
        if (p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
            return tm_err_set(err, EINVAL, "the ECC endorsement key is not on P-256");
        *ret_rsa = false;
        return point_pkey(&p.unique.ecc, "endorsement key", ret, err);
    }
    if (p.type != TPM2_ALG_RSA || p.parameters.rsaDetail.keyBits != 2048 || p.unique.rsa.size != 256)
        return tm_err_set(err, EINVAL, "the endorsement key is neither RSA 2048 nor ECC P-256");
    uint32_t exp = p.parameters.rsaDetail.exponent ? p.parameters.rsaDetail.exponent : 65537;
    _cleanup_(bn_freep) BIGNUM *n = BN_bin2bn(p.unique.rsa.buffer, p.unique.rsa.size, NULL);
    _cleanup_(bn_freep) BIGNUM *e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (n && e && bld && BN_set_word(e, exp) == 1 && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        params = OSSL_PARAM_BLD_to_param(bld);
    OSSL_PARAM_BLD_free(bld);
    _cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pkey = NULL;
    int ok = params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
             EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0;
    OSSL_PARAM_free(params);
    if (!ok)
        return ossl_err(err, EINVAL, "the RSA endorsement key");
    *ret_rsa = true;
    *ret = pkey;
    return 0;
}

static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

int vtpm_ek_cert(struct tpm *t, const char *data_dir, const char *issuer_chain, size_t issuer_chain_len,
                 const uint8_t *ek_public, size_t ek_public_len, const char *uuid, const char *guestos,
                 uint8_t **ret_der, size_t *ret_len, tm_err *err)
{
    if (!issuer_chain || !issuer_chain_len)
        return tm_err_set(err, ENOENT,
                          "the vTPM-issuing key has no certificate yet (docs/VTPM.md \"EK certificates\"): "
                          "no EK certificates");
    if (!uuid || strlen(uuid) != 36 || !printable(uuid, 36))
        return tm_err_set(err, EINVAL, "a vTPM EK certificate needs the container's UUID");
    if (!guestos)
        guestos = "";
    if (!printable(guestos, 56))
        return tm_err_set(err, EINVAL, "the GuestOS name is not printable ASCII of at most 56 bytes");
    _cleanup_(bio_freep) BIO *bio = BIO_new_mem_buf(issuer_chain, (int)issuer_chain_len);
    _cleanup_(x509_freep) X509 *issuer_cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (!issuer_cert)
        return ossl_err(err, EIO, "cannot read the installed vTPM-issuer certificate");
    bool rsa = false;
    _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
    int r = ek_pkey(ek_public, ek_public_len, &rsa, &key, err);
    if (r < 0)
        return r;
    _cleanup_(issuer_done) struct issuer iss = {.t = t, .handle = ESYS_TR_NONE};
    TPM2B_PUBLIC pub;
    if ((r = tpm_issuer_load(t, data_dir, false, &iss.handle, &pub, err)) < 0)
        return r;
    _cleanup_(pkey_freep) EVP_PKEY *issuer_key = NULL;
    if ((r = point_pkey(&pub.publicArea.unique.ecc, "vTPM-issuing key", &issuer_key, err)) < 0)
        return r;
    if (EVP_PKEY_eq(X509_get0_pubkey(issuer_cert), issuer_key) != 1)
        return tm_err_set(err, EIO, "the installed vTPM-issuer certificate is not for the vTPM-issuing key");
    _cleanup_(x509_freep) X509 *x = X509_new();
    ASN1_INTEGER *asn = NULL;
    if ((r = random_serial(&asn, err)) < 0)
        return r;
    char san[96], ou[80];
    snprintf(san, sizeof(san), "URI:urn:uuid:%s", uuid);
    snprintf(ou, sizeof(ou), "GuestOS %s", *guestos ? guestos : "none");
    X509_NAME *subject = x ? X509_get_subject_name(x) : NULL;
    X509V3_CTX ctx;
    bool ok = x && X509_set_version(x, X509_VERSION_3) == 1 && X509_set_serialNumber(x, asn) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(issuer_cert)) == 1 &&
              X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, (const unsigned char *)"trustme container", -1, -1,
                                         0) == 1 &&
              X509_NAME_add_entry_by_txt(subject, "OU", MBSTRING_ASC, (const unsigned char *)ou, -1, -1, 0) == 1 &&
              X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)uuid, -1, -1, 0) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), -300) &&
              X509_set1_notAfter(x, X509_get0_notAfter(issuer_cert)) == 1 && X509_set_pubkey(x, key) == 1;
    ASN1_INTEGER_free(asn);
    if (ok) {
        /* The TCG EK Credential Profile's shape: an end entity whose key only decrypts
         * credentials (RSA: keyEncipherment, ECC: keyAgreement), marked as an EK certificate. */
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer_cert, x, NULL, NULL, 0);
        X509_EXTENSION *aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = aki && X509_add_ext(x, aki, -1) == 1;
        X509_EXTENSION_free(aki);
        ok = ok && add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, NID_key_usage, rsa ? "critical,keyEncipherment" : "critical,keyAgreement") == 0 &&
             add_ext(x, NID_ext_key_usage, TM_OID_TCG_KP_EK_CERTIFICATE) == 0 &&
             add_ext(x, NID_subject_alt_name, san) == 0;
    }
    if (!ok)
        return ossl_err(err, ENOMEM, "cannot build the vTPM EK certificate");
    return tpm_signed_cert(x, issuer_sign, &iss, issuer_key, "vTPM EK certificate", ret_der, ret_len, err);
}
