/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "csr.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "crypto.h"
#include "enrollment.h"
#include "keyattest.h"
#include "ossl_cleanup.h"
#include "secmem.h"
#include "tpm_x509.h"

/* OpenSSL's reason for the last failure, appended to what failed; the queue is cleared so that a
 * later failure does not report a stale reason. */
int ossl_err(tm_err *err, int code, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return tm_err_set(err, code, "%s%s%s", what, e ? ": " : "", reason);
}

/* An OpenSSL P-256 public key from the ECC point of a TPMT_PUBLIC. */
int point_pkey(const TPMS_ECC_POINT *pt, const char *what, EVP_PKEY **ret, tm_err *err)
{
    if (pt->x.size > 32 || pt->y.size > 32)
        return tm_err_set(err, EINVAL, "the %s's point is not a P-256 point", what);
    uint8_t point[65] = {0x04}; /* uncompressed: 04 || x || y, each left-padded to 32 bytes */
    memcpy(point + 1 + 32 - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(point + 33 + 32 - pt->y.size, pt->y.buffer, pt->y.size);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
                           OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
                           OSSL_PARAM_construct_end()};
    _cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        return ossl_err(err, EINVAL, what);
    *ret = pkey;
    return 0;
}

/* The AK as an OpenSSL public key, from the ECC point of its TPMT_PUBLIC. */
static int ak_pkey(const struct tpm *t, EVP_PKEY **ret, tm_err *err)
{
    return point_pkey(&t->ak_public.publicArea.unique.ecc, "attestation key", ret, err);
}

static int ek_pkey(const struct tpm *t, EVP_PKEY **ret, tm_err *err)
{
    if (t->ek_public.size == 0)
        return tm_err_set(err, ENOENT, "the TPM gave no endorsement key (see tpmd's log)");
    return point_pkey(&t->ek_public.publicArea.unique.ecc, "endorsement key", ret, err);
}

int bio_take(BIO *bio, char **ret, size_t *ret_len, tm_err *err)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    char *copy = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(copy, p, (size_t)n);
    copy[n] = '\0';
    *ret = copy;
    *ret_len = (size_t)n;
    return 0;
}

/* The key get gives (ak_pkey, ek_pkey) as a PEM SubjectPublicKeyInfo. */
static int public_pem(const struct tpm *t, int (*get)(const struct tpm *, EVP_PKEY **, tm_err *), const char *failed,
                      char **ret_pem, size_t *ret_len, tm_err *err)
{
    _cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
    int r = get(t, &pkey, err);
    if (r < 0)
        return r;
    _cleanup_(bio_freep) BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1)
        return ossl_err(err, ENOMEM, failed);
    return bio_take(bio, ret_pem, ret_len, err);
}

int ak_public_pem(const struct tpm *t, char **ret_pem, size_t *ret_len, tm_err *err)
{
    return public_pem(t, ak_pkey, "cannot encode the attestation key", ret_pem, ret_len, err);
}

int ek_public_pem(const struct tpm *t, char **ret_pem, size_t *ret_len, tm_err *err)
{
    return public_pem(t, ek_pkey, "cannot encode the endorsement key", ret_pem, ret_len, err);
}

bool cert_is_for_ek(const struct tpm *t, const uint8_t *pem, size_t len)
{
    _cleanup_(bio_freep) BIO *in = BIO_new_mem_buf(pem, (int)len);
    _cleanup_(pkey_freep) EVP_PKEY *ek = NULL;
    tm_err e;
    if (!in || ek_pkey(t, &ek, &e) < 0)
        return false;
    X509 *c = PEM_read_bio_X509(in, NULL, NULL, NULL);
    ERR_clear_error();
    bool is = c && X509_get0_pubkey(c) && EVP_PKEY_eq(X509_get0_pubkey(c), ek) == 1;
    X509_free(c);
    return is;
}

int check_cn(const char *cn, tm_err *err)
{
    size_t n = strlen(cn);
    if (n > CSR_CN_MAX)
        return tm_err_set(err, EINVAL, "common name has %zu bytes, at most %d", n, CSR_CN_MAX);
    for (size_t i = 0; i < n; i++)
        if (cn[i] < 0x20 || cn[i] > 0x7e)
            return tm_err_set(err, EINVAL, "common name must be printable ASCII");
    return 0;
}

/* ECDSA-Sig-Value { r, s } in DER (OPENSSL_malloc'd); its length or a negative errno. */
static int ecdsa_der(const uint8_t r[32], const uint8_t s[32], unsigned char **ret, tm_err *err)
{
    _cleanup_(ecdsa_sig_freep) ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(r, 32, NULL), *bs = BN_bin2bn(s, 32, NULL);
    if (!sig || !br || !bs || ECDSA_SIG_set0(sig, br, bs) != 1) {
        BN_free(br);
        BN_free(bs);
        return ossl_err(err, ENOMEM, "cannot build the ECDSA signature");
    }
    int len = i2d_ECDSA_SIG(sig, ret);
    if (len <= 0)
        return ossl_err(err, ENOMEM, "cannot encode the ECDSA signature");
    return len;
}

/* The signature as X.509 carries it: DER ECDSA-Sig-Value in a BIT STRING without unused bits. */
int set_signature(X509_REQ *req, const uint8_t r[32], const uint8_t s[32], tm_err *err)
{
    _cleanup_(osslfreep) unsigned char *der = NULL;
    int der_len = ecdsa_der(r, s, &der, err);
    if (der_len < 0)
        return der_len;
    ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
    if (!bits || ASN1_BIT_STRING_set(bits, der, der_len) != 1) {
        ASN1_BIT_STRING_free(bits);
        return ossl_err(err, ENOMEM, "cannot encode the signature");
    }
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    X509_ALGOR *alg = X509_ALGOR_new();
    if (!alg || X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, NULL) != 1 ||
        X509_REQ_set1_signature_algo(req, alg) != 1) {
        X509_ALGOR_free(alg);
        ASN1_BIT_STRING_free(bits);
        return ossl_err(err, ENOMEM, "cannot set the signature algorithm");
    }
    X509_ALGOR_free(alg);
    X509_REQ_set0_signature(req, bits);
    return 0;
}

/* cn checked, or the default "trustme device <first 8 bytes of the AK name, hex>" when it is NULL
 * or empty (into buf). */
static int subject_cn(const struct tpm *t, const char *cn, char buf[CSR_CN_MAX], const char **ret, tm_err *err)
{
    if (cn && *cn) {
        int r = check_cn(cn, err);
        if (r < 0)
            return r;
        *ret = cn;
        return 0;
    }
    /* The name's digest, not its 2-byte algorithm prefix, tells devices apart. */
    char hex[17];
    tm_hex(t->ak_name.name + 2, 8, hex);
    snprintf(buf, CSR_CN_MAX, "trustme device %s", hex);
    *ret = buf;
    return 0;
}

/* The AK is restricted: it signs only a digest the TPM made itself, with a ticket saying the data
 * did not start with TPM_GENERATED_VALUE. A DER request or tbs starts with 0x30. */
static int ak_sign(void *ctx, const uint8_t *tbs, size_t tbs_len, uint8_t r[32], uint8_t s[32], tm_err *err)
{
    return tpm_sign_data(ctx, tbs, tbs_len, r, s, err);
}

int device_csr(struct tpm *t, const char *cn, const char *ek_chain, size_t ek_chain_len, char **ret_pem,
               size_t *ret_len, tm_err *err)
{
    char default_cn[CSR_CN_MAX];
    int r;
    if ((r = subject_cn(t, cn, default_cn, &cn, err)) < 0)
        return r;
    _cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
    if ((r = ak_pkey(t, &pkey, err)) < 0)
        return r;
    _cleanup_(req_freep) X509_REQ *req = NULL;
    if ((r = tpm_signed_request(pkey, cn, ak_sign, t, &req, err)) < 0)
        return r;
    /* The enrollment bundle (docs/ATTESTATION.md "Enrollment"): the request, the AK's public
     * area (the CA computes its name and checks its attributes) and the EK's certificate (the
     * CA makes the credential to it). */
    _cleanup_free_ uint8_t *ak_pub = NULL;
    size_t ak_pub_len;
    if ((r = tpm_ak_public_marshal(t, &ak_pub, &ak_pub_len, err)) < 0)
        return r;
    _cleanup_(bio_freep) BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_X509_REQ(bio, req) != 1 ||
        PEM_write_bio(bio, ENROLL_PEM_AK_PUBLIC, "", ak_pub, (long)ak_pub_len) <= 0 ||
        (ek_chain_len && BIO_write(bio, ek_chain, (int)ek_chain_len) != (int)ek_chain_len))
        return ossl_err(err, ENOMEM, "cannot encode the certificate request");
    return bio_take(bio, ret_pem, ret_len, err);
}

int linked_chain_pem(STACK_OF(X509) * certs, char **ret_pem, size_t *ret_len, tm_err *err)
{
    int n = sk_X509_num(certs);
    for (int i = 0; i + 1 < n; i++)
        if (X509_check_issued(sk_X509_value(certs, i + 1), sk_X509_value(certs, i)) != X509_V_OK)
            return tm_err_set(err, EINVAL,
                              "certificate %d of the chain was not issued by "
                              "certificate %d (leaf first, then its CAs)",
                              i + 1, i + 2);
    _cleanup_(bio_freep) BIO *out = BIO_new(BIO_s_mem());
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (PEM_write_bio_X509(out, sk_X509_value(certs, i)) != 1)
            return ossl_err(err, ENOMEM, "cannot encode the certificate chain");
    return bio_take(out, ret_pem, ret_len, err);
}

static int check_chain(const struct tpm *t, bool ek, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len,
                       tm_err *err)
{
    if (len == 0 || len > CERT_CHAIN_PEM_MAX)
        return tm_err_set(err, EINVAL, "certificate chain of %zu bytes (1..%d allowed)", len, CERT_CHAIN_PEM_MAX);
    _cleanup_(bio_freep) BIO *in = BIO_new_mem_buf(pem, (int)len);
    _cleanup_(certs_freep) STACK_OF(X509) *certs = sk_X509_new_null();
    if (!in || !certs)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (;;) {
        X509 *c = PEM_read_bio_X509(in, NULL, NULL, NULL);
        if (!c)
            break;
        if (sk_X509_num(certs) >= CERT_CHAIN_MAX || !sk_X509_push(certs, c)) {
            X509_free(c);
            return tm_err_set(err, EINVAL, "more than %d certificates in the chain", CERT_CHAIN_MAX);
        }
    }
    /* The loop ends at the end of the text (no start line: fine) or at a broken certificate. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        return ossl_err(err, EINVAL, "the certificate chain does not parse");
    ERR_clear_error();
    int n = sk_X509_num(certs);
    if (n == 0)
        return tm_err_set(err, EINVAL, "no PEM certificate in the chain");
    _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
    int r = ek ? ek_pkey(t, &key, err) : ak_pkey(t, &key, err);
    if (r < 0)
        return r;
    EVP_PKEY *leaf_key = X509_get0_pubkey(sk_X509_value(certs, 0));
    if (!leaf_key || EVP_PKEY_eq(leaf_key, key) != 1)
        return tm_err_set(err, EINVAL,
                          "the first certificate is not for this device's "
                          "%s key (see `trustme device info`)",
                          ek ? "endorsement" : "attestation");
    return linked_chain_pem(certs, ret_pem, ret_len, err);
}

int check_ak_chain(const struct tpm *t, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len, tm_err *err)
{
    return check_chain(t, false, pem, len, ret_pem, ret_len, err);
}

int check_ek_chain(const struct tpm *t, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len, tm_err *err)
{
    return check_chain(t, true, pem, len, ret_pem, ret_len, err);
}

/* A DER length (definite form) into out; its size. */
static size_t der_len(size_t n, uint8_t out[5])
{
    if (n < 0x80) {
        out[0] = (uint8_t)n;
        return 1;
    }
    size_t k = n > 0xffffff ? 4 : n > 0xffff ? 3 : n > 0xff ? 2 : 1;
    out[0] = (uint8_t)(0x80 | k);
    for (size_t i = 0; i < k; i++)
        out[1 + i] = (uint8_t)(n >> (8 * (k - 1 - i)));
    return 1 + k;
}

/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } with the
 * TPM's ECDSA signature: OpenSSL has no setter for an X509's signature, so the DER is put
 * together here (the tbs already names ecdsa-with-SHA256). */
int assemble_cert(const uint8_t *tbs, size_t tbs_len, const uint8_t r[32], const uint8_t s[32], uint8_t **ret,
                  size_t *ret_len, tm_err *err)
{
    static const uint8_t alg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    _cleanup_(osslfreep) unsigned char *sder = NULL;
    int sl = ecdsa_der(r, s, &sder, err);
    if (sl < 0)
        return sl;
    uint8_t bl[5], tl[5];
    size_t bll = der_len((size_t)sl + 1, bl);
    size_t body = tbs_len + sizeof(alg) + 1 + bll + 1 + (size_t)sl;
    size_t tll = der_len(body, tl);
    uint8_t *out = malloc(1 + tll + body);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t n = 0;
    out[n++] = 0x30;
    memcpy(out + n, tl, tll), n += tll;
    memcpy(out + n, tbs, tbs_len), n += tbs_len;
    memcpy(out + n, alg, sizeof(alg)), n += sizeof(alg);
    out[n++] = 0x03;
    memcpy(out + n, bl, bll), n += bll;
    out[n++] = 0x00; /* no unused bits */
    memcpy(out + n, sder, (size_t)sl), n += (size_t)sl;
    *ret = out;
    *ret_len = n;
    return 0;
}

int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

int container_cert(struct tpm *t, const char *ak_chain, size_t ak_chain_len, const uint8_t *spki, size_t spki_len,
                   const char *cn, const uint8_t *identity, size_t identity_len, uint8_t **ret_der, size_t *ret_len,
                   tm_err *err)
{
    int r;
    if (!ak_chain || !ak_chain_len)
        return tm_err_set(err, ENOENT,
                          "the attestation key is not enrolled (no Device CA certificate): no key attestation "
                          "(docs/ATTESTATION.md \"Enrollment\")");
    if ((r = check_cn(cn, err)) < 0)
        return r;
    _cleanup_(bio_freep) BIO *bio = BIO_new_mem_buf(ak_chain, (int)ak_chain_len);
    _cleanup_(x509_freep) X509 *ak_cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (!ak_cert)
        return ossl_err(err, EIO, "cannot read the installed AK certificate");
    const uint8_t *p = spki;
    _cleanup_(pkey_freep) EVP_PKEY *key = d2i_PUBKEY(NULL, &p, (long)spki_len);
    char group[32] = "";
    if (!key || p != spki + spki_len || !EVP_PKEY_is_a(key, "EC") ||
        !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) ||
        strcmp(group, "prime256v1") != 0) {
        ERR_clear_error();
        return tm_err_set(err, EINVAL, "the container attestation key must be an EC P-256 public key");
    }
    _cleanup_(pkey_freep) EVP_PKEY *ak = NULL;
    if ((r = ak_pkey(t, &ak, err)) < 0)
        return r;
    _cleanup_(x509_freep) X509 *x = X509_new();
    ASN1_INTEGER *asn = NULL;
    if ((r = random_serial(&asn, err)) < 0)
        return r;
    ASN1_OCTET_STRING *idos = ASN1_OCTET_STRING_new();
    ASN1_OBJECT *oid = OBJ_txt2obj(TM_OID_CONTAINER_IDENTITY, 1);
    X509_EXTENSION *idext = NULL;
    bool ok =
        x && idos && oid && X509_set_version(x, X509_VERSION_3) == 1 && X509_set_serialNumber(x, asn) == 1 &&
        X509_set_issuer_name(x, X509_get_subject_name(ak_cert)) == 1 &&
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) == 1 &&
        X509_gmtime_adj(X509_getm_notBefore(x), -300) && X509_set1_notAfter(x, X509_get0_notAfter(ak_cert)) == 1 &&
        X509_set_pubkey(x, key) == 1 && add_ext(x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
        add_ext(x, NID_key_usage, "critical,keyCertSign") == 0 && add_ext(x, NID_subject_key_identifier, "hash") == 0 &&
        ASN1_OCTET_STRING_set(idos, identity, (int)identity_len) == 1 &&
        (idext = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, idos)) && X509_add_ext(x, idext, -1) == 1;
    ASN1_INTEGER_free(asn);
    ASN1_OCTET_STRING_free(idos);
    ASN1_OBJECT_free(oid);
    X509_EXTENSION_free(idext);
    if (!ok)
        return ossl_err(err, ENOMEM, "cannot build the container attestation certificate");
    return tpm_signed_cert(x, ak_sign, t, ak, "container attestation certificate", ret_der, ret_len, err);
}

/* The TLS key signs a digest (it is not restricted: no ticket needed); the digest is also what
 * the AK's certification of the key is for (enrollment.h ENROLL_PEM_TLS_CERTIFY). */
struct tls_signer {
    struct tpm *t;
    const char *data_dir;
    uint8_t digest[32];
};
static int tls_sign(void *ctx, const uint8_t *tbs, size_t tbs_len, uint8_t r[32], uint8_t s[32], tm_err *err)
{
    struct tls_signer *ts = ctx;
    if (EVP_Digest(tbs, tbs_len, ts->digest, NULL, EVP_sha256(), NULL) != 1)
        return ossl_err(err, ENOMEM, "cannot encode the certificate request");
    return tpm_tls_sign(ts->t, ts->data_dir, ts->digest, r, s, err);
}

int tls_csr(struct tpm *t, const char *data_dir, const char *cn, const char *ak_chain, size_t ak_chain_len,
            char **ret_pem, size_t *ret_len, tm_err *err)
{
    int r;
    char default_cn[CSR_CN_MAX];
    if (!ak_chain || !ak_chain_len)
        return tm_err_set(err, ENOENT,
                          "the attestation key is not enrolled (no Device CA certificate): the Device CA "
                          "certifies the TLS key on the AK's word (docs/FLEET.md \"Device identity on the wire\")");
    if ((r = subject_cn(t, cn, default_cn, &cn, err)) < 0)
        return r;
    TPM2B_PUBLIC pub;
    if ((r = tpm_tls_public(t, data_dir, &pub, err)) < 0)
        return r;
    _cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
    if ((r = point_pkey(&pub.publicArea.unique.ecc, "TLS client key", &pkey, err)) < 0)
        return r;
    struct tls_signer ts = {.t = t, .data_dir = data_dir};
    _cleanup_(req_freep) X509_REQ *req = NULL;
    if ((r = tpm_signed_request(pkey, cn, tls_sign, &ts, &req, err)) < 0)
        return r;
    _cleanup_free_ uint8_t *attest = NULL, *csig = NULL;
    size_t attest_len, csig_len;
    if ((r = tpm_tls_certify(t, data_dir, ts.digest, sizeof(ts.digest), &attest, &attest_len, &csig, &csig_len, err)) <
        0)
        return r;
    struct certified_key k = {.req = req,
                              .pub = &pub.publicArea,
                              .attest = attest,
                              .attest_len = attest_len,
                              .sig = csig,
                              .sig_len = csig_len,
                              .public_label = ENROLL_PEM_TLS_PUBLIC,
                              .attest_label = ENROLL_PEM_TLS_CERTIFY,
                              .sig_label = ENROLL_PEM_TLS_CERTIFY_SIG,
                              .what = "TLS client key"};
    return certified_key_pem(&k, ak_chain, ak_chain_len, ret_pem, ret_len, err);
}
