/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-verify's check of a vTPM EK certificate against the attested device (vtpm_ek.h).
 * Two facts must meet: the trustme PKI says (through the Device CA and a vTPM issuer it
 * certified) "this key is the EK of container UUID", and the device's physical TPM says (its
 * quoted runtime PCR, replayed from the log) "the vTPM of container UUID with this EK runs
 * here". The log holds only the SHA-256 of the EK's TPMT_PUBLIC; the certificate holds its
 * public key. Both EKs are made from the TCG EK Credential Profile's templates (L-1, L-2), so
 * the public key fixes the TPMT_PUBLIC: it is rebuilt here and hashed. */
#include "vtpm_ek.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <string.h>

#include "crypto.h"
#include "enrollment.h"
#include "hex.h"
#include "ossl.h"
#include "verify.h"

#define CHECK_NAME "vTPM EK"
#define UUID_LEN 36
#define TPMT_PUBLIC_MAX 400

static void set(struct attest_check *c, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(struct attest_check *c, bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    c->ok = ok;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* authPolicy of the TCG EK templates: PolicySecret(TPM_RH_ENDORSEMENT). */
static const uint8_t ek_policy[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                      0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                      0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

/* The marshalled TPMT_PUBLIC of an EK made from template L-1 (modulus: 256 bytes) or L-2 (x, y:
 * 32 bytes each) with the given unique field. Returns its length. */
static size_t ek_public(bool rsa, const uint8_t *u1, const uint8_t *u2, uint8_t out[TPMT_PUBLIC_MAX])
{
    put16(out, rsa ? 0x0001 : 0x0023); /* TPM_ALG_RSA / TPM_ALG_ECC */
    put16(out + 2, 0x000b); /* nameAlg SHA-256 */
    /* fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt */
    out[4] = 0x00, out[5] = 0x03, out[6] = 0x00, out[7] = 0xb2;
    put16(out + 8, 32);
    memcpy(out + 10, ek_policy, 32);
    size_t n = 42;
    put16(out + n, 0x0006); /* AES-128-CFB, scheme NULL */
    put16(out + n + 2, 128);
    put16(out + n + 4, 0x0043);
    put16(out + n + 6, 0x0010);
    n += 8;
    if (rsa) {
        put16(out + n, 2048);
        memset(out + n + 2, 0, 4); /* exponent 0: 65537 */
        put16(out + n + 6, 256);
        memcpy(out + n + 8, u1, 256);
        return n + 8 + 256;
    }
    put16(out + n, 0x0003); /* TPM_ECC_NIST_P256, kdf NULL */
    put16(out + n + 2, 0x0010);
    put16(out + n + 4, 32);
    memcpy(out + n + 6, u1, 32);
    put16(out + n + 38, 32);
    memcpy(out + n + 40, u2, 32);
    return n + 72;
}

static int bn_param(EVP_PKEY *k, const char *name, uint8_t *out, size_t len)
{
    BIGNUM *bn = NULL;
    int r = EVP_PKEY_get_bn_param(k, name, &bn) == 1 && BN_num_bytes(bn) <= (int)len &&
                    BN_bn2binpad(bn, out, (int)len) == (int)len
                ? 0
                : -EINVAL;
    BN_free(bn);
    return r;
}

/* The EK's kind ("rsa"/"ecc") and the SHA-256 of the TPMT_PUBLIC the templates give its key;
 * NULL when the key fits neither template. */
static const char *ek_digest(X509 *leaf, uint8_t digest[32])
{
    EVP_PKEY *k = X509_get0_pubkey(leaf);
    uint8_t a[256], b[32], pub[TPMT_PUBLIC_MAX];
    const char *kind = NULL;
    size_t n = 0;
    if (k && EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) == 2048 &&
        bn_param(k, OSSL_PKEY_PARAM_RSA_N, a, 256) == 0) {
        uint8_t e[4];
        if (bn_param(k, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e)) == 0 && memcmp(e, "\x00\x01\x00\x01", 4) == 0)
            kind = "rsa", n = ek_public(true, a, NULL, pub);
    } else if (k && EVP_PKEY_is_a(k, "EC")) {
        char group[32];
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) == 1 &&
            strcmp(group, "prime256v1") == 0 && bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, a, 32) == 0 &&
            bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, b, 32) == 0)
            kind = "ecc", n = ek_public(false, a, b, pub);
    }
    ERR_clear_error();
    if (kind)
        tm_sha256(pub, n, digest);
    return kind;
}

static bool has_oid(X509 *x, int nid, const char *oid)
{
    bool found = false;
    char text[128];
    if (nid == NID_certificate_policies) {
        CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(x, nid, NULL, NULL);
        for (int i = 0; pols && i < sk_POLICYINFO_num(pols) && !found; i++) {
            OBJ_obj2txt(text, sizeof(text), sk_POLICYINFO_value(pols, i)->policyid, 1);
            found = strcmp(text, oid) == 0;
        }
        CERTIFICATEPOLICIES_free(pols);
    } else {
        EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, nid, NULL, NULL);
        for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku) && !found; i++) {
            OBJ_obj2txt(text, sizeof(text), sk_ASN1_OBJECT_value(eku, i), 1);
            found = strcmp(text, oid) == 0;
        }
        EXTENDED_KEY_USAGE_free(eku);
    }
    ERR_clear_error();
    return found;
}

/* Every CERTIFICATE block of pem, in order; anything else in it is an error. */
static int read_certs(const char *pem, size_t len, STACK_OF(X509) * out, tm_err *err)
{
    if (len > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "%zu bytes, at most %d", len, VERIFY_PEM_MAX);
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
    for (X509 *x; bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL));)
        if (sk_X509_num(out) >= VERIFY_CHAIN_MAX || !sk_X509_push(out, x)) {
            X509_free(x);
            return tm_err_set(err, EINVAL, "more than %d certificates", VERIFY_CHAIN_MAX);
        }
    ERR_clear_error();
    return sk_X509_num(out) > 0 ? 0 : tm_err_set(err, EINVAL, "no PEM certificate");
}

static int add_crls(X509_STORE *store, const char *pem, size_t len)
{
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
    int n = 0;
    for (X509_CRL *crl; bio && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)); n++) {
        int ok = X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        if (ok != 1)
            return -EINVAL;
    }
    ERR_clear_error();
    return n;
}

/* The chain of the bundle's first certificate to pol's AK anchors; 0 with *ret_chain (the
 * verified chain, leaf first, owned by the caller) or -errno with err. */
static int chain_to_anchors(STACK_OF(X509) * certs, const struct attest_policy *pol, STACK_OF(X509) * *ret_chain,
                            tm_err *err)
{
    _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
    _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    _cleanup_(x509_stack_freep) STACK_OF(X509) *anchors = sk_X509_new_null();
    _cleanup_(x509_stack_freep) STACK_OF(X509) *untrusted = sk_X509_new_null();
    if (!store || !ctx || !anchors || !untrusted)
        return tm_err_set(err, ENOMEM, "out of memory");
    tm_err e2 = {0};
    if (!pol->ak_anchors_pem || read_certs(pol->ak_anchors_pem, pol->ak_anchors_len, anchors, &e2) < 0)
        return tm_err_set(err, EINVAL, "not checked: no AK anchors (--ak-anchor)");
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(anchors, i)) != 1)
            return ossl_fail(err, EINVAL, "cannot use an anchor");
    for (int i = 1; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_up_ref(x) || !sk_X509_push(untrusted, x))
            return tm_err_set(err, ENOMEM, "out of memory");
    }
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    if (pol->crls_pem && pol->crls_len) {
        if (add_crls(store, pol->crls_pem, pol->crls_len) < 0)
            return ossl_fail(err, EINVAL, "cannot use the CRLs");
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    }
    X509_STORE_set_flags(store, flags);
    if (X509_STORE_CTX_init(ctx, store, sk_X509_value(certs, 0), untrusted) != 1)
        return ossl_fail(err, ENOMEM, "cannot set up the verification");
    if (pol->time)
        X509_STORE_CTX_set_time(ctx, 0, pol->time);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED, "the EK certificate does not chain to the AK anchors: %s (depth %d)",
                          X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx));
    }
    *ret_chain = X509_STORE_CTX_get1_chain(ctx);
    return *ret_chain ? 0 : tm_err_set(err, ENOMEM, "out of memory");
}

static bool pinned(const struct ca_pins *pins, X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    if (len <= 0 || !pins)
        return OPENSSL_free(der), false;
    uint8_t h[32];
    tm_sha256(der, (size_t)len, h);
    OPENSSL_free(der);
    for (size_t i = 0; i < pins->n; i++)
        if (memcmp(pins->sha256[i], h, 32) == 0)
            return true;
    return false;
}

static bool uuid_ok(const char *s)
{
    if (strlen(s) != UUID_LEN)
        return false;
    for (int i = 0; i < UUID_LEN; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

static bool pcr_quoted(const struct attest_policy *pol, uint32_t pcr)
{
    for (size_t i = 0; i < pol->npcrs; i++)
        if (pol->pcrs[i] == pcr)
            return true;
    return false;
}

void vtpm_ek_check(const char *pem, size_t len, const char *what, const Trustme__Attest__Quote *q,
                   const struct attest_policy *pol, const struct attest_report *rep, const char *want_uuid,
                   const char *want_kind, struct attest_check *out)
{
    memset(out, 0, sizeof(*out));
    out->name = CHECK_NAME;
    /* The log speaks for the device only when the quote is the device's, fresh, and the log
     * replays to it. */
    for (int i = ATTEST_CHECK_CHAIN; i <= ATTEST_CHECK_EVENT_LOG; i++)
        if (!rep->checks[i].ok) {
            set(out, false, "%s: not checked: the device's log is not verified (\"%s\" failed)", what,
                rep->checks[i].name);
            return;
        }
    tm_err err = {0};
    _cleanup_(x509_stack_freep) STACK_OF(X509) *certs = sk_X509_new_null();
    _cleanup_(x509_stack_freep) STACK_OF(X509) *chain = NULL;
    if (!certs || read_certs(pem, len, certs, &err) < 0) {
        set(out, false, "%s: %s", what, certs ? err.msg : "out of memory");
        return;
    }
    if (chain_to_anchors(certs, pol, &chain, &err) < 0) {
        set(out, false, "%s: %s", what, err.msg);
        return;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    /* Root -> Device CA -> vTPM issuer -> EK: only a vTPM issuer (the Device CA checked that a
     * device's AK certified its key) issues EK certificates, and only under a Device CA the
     * verifier names (the root also certifies other CAs). */
    X509 *issuer = sk_X509_num(chain) > 2 ? sk_X509_value(chain, 1) : NULL;
    char subject[VERIFY_NAME_MAX] = "";
    if (issuer)
        X509_NAME_oneline(X509_get_subject_name(issuer), subject, sizeof(subject));
    if (!issuer || !(X509_get_extension_flags(issuer) & EXFLAG_CA) ||
        !has_oid(issuer, NID_certificate_policies, TM_OID_VTPM_ISSUER)) {
        set(out, false, "%s: not issued by a vTPM issuer (a CA with policy %s)", what, TM_OID_VTPM_ISSUER);
        return;
    }
    if (!pinned(pol->device_cas, sk_X509_value(chain, 2))) {
        set(out, false, "%s: its vTPM issuer (%s) was not certified by a Device CA (--device-ca)", what, subject);
        return;
    }
    if (X509_get_extension_flags(leaf) & EXFLAG_CA || !has_oid(leaf, NID_ext_key_usage, TM_OID_TCG_KP_EK_CERTIFICATE)) {
        set(out, false, "%s: not an EK certificate (an end entity with EKU %s)", what, TM_OID_TCG_KP_EK_CERTIFICATE);
        return;
    }
    char uuid[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, uuid, sizeof(uuid));
    ERR_clear_error();
    if (!uuid_ok(uuid)) {
        set(out, false, "%s: its subject names no container (CN is not a UUID)", what);
        return;
    }
    if (want_uuid && strcmp(uuid, want_uuid) != 0) {
        set(out, false, "%s: it is the EK certificate of container %s, not of %.64s", what, uuid, want_uuid);
        return;
    }
    uint8_t digest[32];
    const char *kind = ek_digest(leaf, digest);
    if (!kind) {
        set(out, false, "%s: its key is neither an RSA 2048 nor an ECC P-256 EK (TCG templates L-1, L-2)", what);
        return;
    }
    if (want_kind && strcmp(kind, want_kind) != 0) {
        set(out, false, "%s: it certifies the container's %s EK, not its %s EK (ek-%s)", what, kind, want_kind,
            want_kind);
        return;
    }
    char name[UUID_LEN + 8], hex[65];
    snprintf(name, sizeof(name), "%s/ek-%s", uuid, kind);
    tm_hex(digest, 32, hex);
    /* The last event of that name is the vTPM the container has now: a reset makes new EKs and
     * logs them after the old ones. */
    const Trustme__Attest__Event *last = NULL;
    bool earlier = false;
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        if (!e->type || strcmp(e->type, "vtpm-ek") != 0 || !e->name || strcmp(e->name, name) != 0 ||
            !pcr_quoted(pol, e->pcr) || e->sha256.len != 32)
            continue;
        if (last && memcmp(last->sha256.data, digest, 32) == 0)
            earlier = true;
        last = e;
    }
    if (!last) {
        set(out, false, "%s: the device's quoted log names no vTPM EK %s: no vTPM of this device", what, name);
        return;
    }
    if (memcmp(last->sha256.data, digest, 32) != 0) {
        set(out, false, "%s: the certificate's key (%.16s...) is not the EK the device logged last for %s: %s", what,
            hex, name, earlier ? "an earlier vTPM of the container (reset since)" : "not this device's vTPM");
        return;
    }
    set(out, true, "%s: the EK of container %s (%s), logged as event %llu, issued by %s", what, uuid, kind,
        (unsigned long long)last->seq, subject);
}
