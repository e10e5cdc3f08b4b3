/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Certificates and CRLs of the PKI, with exactly the extensions of their profile (docs/PKI.md):
 * nothing is copied from a request, so a CSR cannot ask for CA rights or extra usages. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "enrollment.h"
#include "pki.h"
#include "verify.h"

OSSL_DEFINE_FREEP(X509_EXTENSION, X509_EXTENSION_free)
OSSL_DEFINE_FREEP(AUTHORITY_KEYID, AUTHORITY_KEYID_free)
OSSL_DEFINE_FREEP(ASN1_ENUMERATED, ASN1_ENUMERATED_free)
OSSL_DEFINE_FREEP(X509_REVOKED, X509_REVOKED_free)

int sign_ctx_new(EVP_PKEY *key, EVP_MD_CTX **ret, tm_err *err)
{
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL; /* owned by md */
    if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1)
        return ossl_fail(err, EIO, "cannot set up signing with SHA-256");
    int id = EVP_PKEY_get_base_id(key);
    if ((id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1))
        return ossl_fail(err, EIO, "cannot set up RSA-PSS (SHA-256, MGF1-SHA-256, salt 32)");
    else if (id != EVP_PKEY_RSA && id != EVP_PKEY_RSA_PSS && id != EVP_PKEY_EC)
        return tm_err_set(err, EOPNOTSUPP, "signing key of type %s: only EC P-256 and RSA", OBJ_nid2sn(id));
    *ret = steal_ptr(md);
    return 0;
}

int name_make(const char *cn, X509_NAME **ret, tm_err *err)
{
    _cleanup_(X509_NAME_freep) X509_NAME *n = X509_NAME_new();
    if (!n ||
        !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"trustme development PKI", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
        return ossl_fail(err, ENOMEM, "cannot make the name \"%s\"", cn);
    *ret = steal_ptr(n);
    return 0;
}

void name_string(const X509_NAME *name, char *out, size_t size)
{
    out[0] = '\0';
    _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
        return;
    int n = BIO_read(bio, out, (int)size - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* 16 random bytes, the top bit clear (positive) and the next set (always 16 bytes long). */
static int serial_random(X509 *x, tm_err *err)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return ossl_fail(err, EIO, "no random serial number");
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
    _cleanup_(BN_freep) BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        return ossl_fail(err, ENOMEM, "cannot set the serial number");
    return 0;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, tm_err *err)
{
    _cleanup_(X509_EXTENSION_freep) X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (!e || X509_add_ext(x, e, -1) != 1)
        return ossl_fail(err, EINVAL, "cannot add %s = %s", OBJ_nid2sn(nid), value);
    return 0;
}

OSSL_DEFINE_FREEP(CERTIFICATEPOLICIES, CERTIFICATEPOLICIES_free)

static int add_policy(X509 *x, const char *oid, tm_err *err)
{
    _cleanup_(CERTIFICATEPOLICIES_freep) CERTIFICATEPOLICIES *pols = sk_POLICYINFO_new_null();
    POLICYINFO *pi = POLICYINFO_new();
    if (!pols || !pi || !(pi->policyid = OBJ_txt2obj(oid, 1)) || !sk_POLICYINFO_push(pols, pi)) {
        POLICYINFO_free(pi);
        return ossl_fail(err, ENOMEM, "cannot make the certificate policy %s", oid);
    }
    if (X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0, 0) != 1)
        return ossl_fail(err, EINVAL, "cannot add the certificate policy %s", oid);
    return 0;
}

static int add_guestos_mark(X509 *x, tm_err *err)
{
    _cleanup_(CERTIFICATEPOLICIES_freep) CERTIFICATEPOLICIES *pols = sk_POLICYINFO_new_null();
    POLICYINFO *pi = POLICYINFO_new();
    if (!pols || !pi || !(pi->policyid = OBJ_txt2obj(VERIFY_GUESTOS_CA_POLICY_OID, 1)) ||
        !sk_POLICYINFO_push(pols, pi)) {
        POLICYINFO_free(pi);
        return ossl_fail(err, ENOMEM, "cannot make the GuestOS signing CA's certificate policy");
    }
    if (X509_add1_ext_i2d(x, NID_certificate_policies, pols, 0, 0) != 1)
        return ossl_fail(err, EINVAL, "cannot add the certificate policy %s", VERIFY_GUESTOS_CA_POLICY_OID);
    return 0;
}

static int add_profile(X509 *x, X509 *issuer, enum cert_profile profile, tm_err *err)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    struct {
        int nid;
        const char *value;
    } ext[5];
    size_t n = 0;
    switch (profile) {
    case PROFILE_ROOT_CA:
    case PROFILE_SUB_CA:
    case PROFILE_GUESTOS_CA:
        /* a root may have one level of sub-CAs below it, a sub-CA only end entities */
        ext[n++] = (typeof(ext[0])){NID_basic_constraints, profile == PROFILE_ROOT_CA ? "critical,CA:TRUE,pathlen:1"
                                                                                      : "critical,CA:TRUE,pathlen:0"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,keyCertSign,cRLSign"};
        break;
    case PROFILE_GENERAL_ROOT_CA:
    case PROFILE_DEVICE_CA:
        /* general root -> Device CA -> a device's vTPM issuer -> vTPM EK certificates */
        ext[n++] =
            (typeof(ext[0])){NID_basic_constraints, profile == PROFILE_GENERAL_ROOT_CA ? "critical,CA:TRUE,pathlen:2"
                                                                                       : "critical,CA:TRUE,pathlen:1"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,keyCertSign,cRLSign"};
        break;
    case PROFILE_VTPM_ISSUER:
        /* it issues EK certificates, never a CA: no CRLs either (it is revoked at the Device CA) */
        ext[n++] = (typeof(ext[0])){NID_basic_constraints, "critical,CA:TRUE,pathlen:0"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,keyCertSign"};
        break;
    case PROFILE_SIGNING:
        ext[n++] = (typeof(ext[0])){NID_basic_constraints, "critical,CA:FALSE"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,digitalSignature"};
        ext[n++] = (typeof(ext[0])){NID_ext_key_usage, "codeSigning"};
        break;
    case PROFILE_EK:
        /* a TPM's endorsement key (ECC): it only agrees on keys, for credential activation */
        ext[n++] = (typeof(ext[0])){NID_basic_constraints, "critical,CA:FALSE"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,keyAgreement"};
        break;
    case PROFILE_DEVICE:
        ext[n++] = (typeof(ext[0])){NID_basic_constraints, "critical,CA:FALSE"};
        ext[n++] = (typeof(ext[0])){NID_key_usage, "critical,digitalSignature"};
        ext[n++] = (typeof(ext[0])){NID_ext_key_usage, "clientAuth"};
        break;
    }
    ext[n++] = (typeof(ext[0])){NID_subject_key_identifier, "hash"};
    /* A root has no AKI: it would only repeat its SKI. Below it, the key id alone (no issuer
     * name and serial, which would tie the certificate to one issuer certificate). */
    if (profile != PROFILE_ROOT_CA && profile != PROFILE_GENERAL_ROOT_CA)
        ext[n++] = (typeof(ext[0])){NID_authority_key_identifier, "keyid:always"};
    for (size_t i = 0; i < n; i++) {
        int r = add_ext(x, &ctx, ext[i].nid, ext[i].value, err);
        if (r < 0)
            return r;
    }
    /* The mark a device requires of a GuestOS Signing CA (src/scd/verify.h): neither the
     * General root nor the Device CA has it, so neither can be registered as one. */
    if (profile == PROFILE_VTPM_ISSUER)
        return add_policy(x, TM_OID_VTPM_ISSUER, err);
    return profile == PROFILE_GUESTOS_CA ? add_guestos_mark(x, err) : 0;
}

int cert_make(const struct cert_spec *spec, X509 **ret, tm_err *err)
{
    if (spec->not_after <= spec->not_before)
        return tm_err_set(err, EINVAL, "the validity ends before it begins");
    _cleanup_(X509_freep) X509 *x = X509_new();
    if (!x)
        return ossl_fail(err, ENOMEM, "out of memory");
    int r = serial_random(x, err);
    if (r < 0)
        return r;
    const X509_NAME *issuer_name = spec->issuer ? X509_get_subject_name(spec->issuer) : spec->subject;
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, spec->subject) != 1 ||
        X509_set_issuer_name(x, issuer_name) != 1 || X509_set_pubkey(x, spec->pubkey) != 1 ||
        !ASN1_TIME_set(X509_getm_notBefore(x), spec->not_before) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), spec->not_after))
        return ossl_fail(err, EINVAL, "cannot fill in the certificate");
    if ((r = add_profile(x, spec->issuer, spec->profile, err)) < 0)
        return r;
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = NULL;
    if ((r = sign_ctx_new(spec->issuer_key, &md, err)) < 0)
        return r;
    if (X509_sign_ctx(x, md) <= 0)
        return ossl_fail(err, EIO, "signing the certificate failed");
    *ret = steal_ptr(x);
    return 0;
}

int crl_make(X509 *ca, EVP_PKEY *ca_key, const struct revoked_entry *revoked, size_t n, long number, time_t this_update,
             time_t next_update, X509_CRL **ret, tm_err *err)
{
    _cleanup_(X509_CRL_freep) X509_CRL *crl = X509_CRL_new();
    _cleanup_(ASN1_TIME_freep) ASN1_TIME *t1 = ASN1_TIME_set(NULL, this_update);
    _cleanup_(ASN1_TIME_freep) ASN1_TIME *t2 = ASN1_TIME_set(NULL, next_update);
    if (!crl || !t1 || !t2 || X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) != 1 || X509_CRL_set1_lastUpdate(crl, t1) != 1 ||
        X509_CRL_set1_nextUpdate(crl, t2) != 1)
        return ossl_fail(err, ENOMEM, "cannot fill in the CRL");
    for (size_t i = 0; i < n; i++) {
        _cleanup_(X509_REVOKED_freep) X509_REVOKED *rv = X509_REVOKED_new();
        _cleanup_(BN_freep) BIGNUM *bn = NULL;
        _cleanup_(ASN1_INTEGER_freep) ASN1_INTEGER *serial = NULL;
        _cleanup_(ASN1_TIME_freep) ASN1_TIME *date = ASN1_TIME_set(NULL, revoked[i].date);
        if (!rv || !date || !BN_hex2bn(&bn, revoked[i].serial_hex) || !(serial = BN_to_ASN1_INTEGER(bn, NULL)) ||
            X509_REVOKED_set_serialNumber(rv, serial) != 1 || X509_REVOKED_set_revocationDate(rv, date) != 1)
            return ossl_fail(err, EINVAL, "cannot add serial %s to the CRL", revoked[i].serial_hex);
        if (revoked[i].reason != CRL_REASON_NONE) {
            _cleanup_(ASN1_ENUMERATED_freep) ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
            if (!reason || !ASN1_ENUMERATED_set(reason, revoked[i].reason) ||
                X509_REVOKED_add1_ext_i2d(rv, NID_crl_reason, reason, 0, 0) != 1)
                return ossl_fail(err, ENOMEM, "cannot add the revocation reason");
        }
        if (X509_CRL_add0_revoked(crl, rv) != 1)
            return ossl_fail(err, ENOMEM, "out of memory");
        rv = NULL;
    }
    X509_CRL_sort(crl);
    /* AKI (the CA's key id) and the CRL number: RFC 5280 requires both in a v2 CRL */
    _cleanup_(AUTHORITY_KEYID_freep) AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    if (!akid || !ski || !(akid->keyid = ASN1_OCTET_STRING_dup(ski)) ||
        X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) != 1)
        return ossl_fail(err, EINVAL, "cannot add the authority key identifier to the CRL");
    _cleanup_(ASN1_INTEGER_freep) ASN1_INTEGER *num = ASN1_INTEGER_new();
    if (!num || !ASN1_INTEGER_set(num, number) || X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1)
        return ossl_fail(err, ENOMEM, "cannot add the CRL number");
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = NULL;
    int r = sign_ctx_new(ca_key, &md, err);
    if (r < 0)
        return r;
    if (X509_CRL_sign_ctx(crl, md) <= 0)
        return ossl_fail(err, EIO, "signing the CRL failed");
    *ret = steal_ptr(crl);
    return 0;
}

int time_parse(const char *s, time_t *ret)
{
    /* exactly YYYYMMDDHHMMSSZ: no fractions, no offsets, so there is one way to say a moment */
    if (strlen(s) != 15 || s[14] != 'Z')
        return -EINVAL;
    for (int i = 0; i < 14; i++)
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
    int v[6], len[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0, off = 0; i < 6; off += len[i], i++) {
        v[i] = 0;
        for (int j = 0; j < len[i]; j++)
            v[i] = v[i] * 10 + (s[off + j] - '0');
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (v[0] < 1950 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > mdays[v[1] - 1] || v[3] > 23 || v[4] > 59 ||
        v[5] > 59)
        return -EINVAL;
    bool leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
    if (v[1] == 2 && v[2] == 29 && !leap)
        return -EINVAL;
    struct tm tm = {
        .tm_year = v[0] - 1900, .tm_mon = v[1] - 1, .tm_mday = v[2], .tm_hour = v[3], .tm_min = v[4], .tm_sec = v[5]};
    *ret = timegm(&tm);
    return 0;
}

void time_format(time_t t, char out[16])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%SZ", &tm);
}

static const struct {
    const char *name;
    int code;
} reasons[] = {
    {"unspecified", CRL_REASON_UNSPECIFIED},
    {"keyCompromise", CRL_REASON_KEY_COMPROMISE},
    {"cACompromise", CRL_REASON_CA_COMPROMISE},
    {"affiliationChanged", CRL_REASON_AFFILIATION_CHANGED},
    {"superseded", CRL_REASON_SUPERSEDED},
    {"cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION},
    {"certificateHold", CRL_REASON_CERTIFICATE_HOLD},
    {"privilegeWithdrawn", CRL_REASON_PRIVILEGE_WITHDRAWN},
    {"aACompromise", CRL_REASON_AA_COMPROMISE},
};

int revoke_reason_parse(const char *name, int *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        if (strcmp(name, reasons[i].name) == 0) {
            *ret = reasons[i].code;
            return 0;
        }
    return -EINVAL;
}

const char *revoke_reason_name(int reason)
{
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        if (reasons[i].code == reason)
            return reasons[i].name;
    return NULL;
}
