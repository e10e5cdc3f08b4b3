/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key attestation checks: see key_attest.h.
 *
 * The AK certificate is checked as for a quote (chain to an --ak-anchor, issued by a
 * --device-ca, not a CA, EKU clientAuth). The AK is no CA in X.509's sense, so the two links
 * below it are checked here one by one rather than by a path validation: the container
 * certificate is signed by the AK's key, names the AK certificate's subject as its issuer, is a
 * CA with pathlen 0 and carries the container's identity; the key certificate is signed by the
 * container certificate's key, names it as issuer, is no CA and carries the key's description,
 * whose identity must be the container certificate's. */
#include "key_attest.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "crypto.h"
#include "keyattest.h"
#include "keystore.pb-c.h"
#include "tpm_parse.h"
#include "verify.h"

#define AK_EKU "clientAuth" /* the Device CA's profile (docs/PKI.md) */
#define CERTS_MAX 10

static void fail(struct key_attest_report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct key_attest_report *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
    va_end(ap);
    rep->trusted = false;
}

static const ASN1_OCTET_STRING *ext_data(X509 *x, const char *oid_txt)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(oid_txt, 1);
    int at = oid ? X509_get_ext_by_OBJ(x, oid, -1) : -1;
    ASN1_OBJECT_free(oid);
    return at >= 0 ? X509_EXTENSION_get_data(X509_get_ext(x, at)) : NULL;
}

static const char *alg_name(int a)
{
    static const char *n[] = {"none", "EC", "RSA", "AES", "HMAC"};
    return a >= 0 && a < 5 ? n[a] : "?";
}

/* The alias as the keystore allows it ([A-Za-z0-9._-], at most 64): anything else is '?'. The key
 * description is the keystore process's word, and one its container took over signs any bytes;
 * they reach the verifier's terminal and its JSON. */
static void safe_alias(const char *in, char out[65])
{
    size_t n = 0;
    for (; in && in[n] && n < 64; n++) {
        char ch = in[n];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-';
        out[n] = ok ? ch : '?';
    }
    out[n] = '\0';
}

static void describe(struct key_attest_report *rep, const Trustme__Keystore__KsKeyDescription *kd)
{
    const Trustme__Keystore__KsContainerIdentity *id = kd->identity;
    char gsha[65] = "", csha[65] = "";
    if (id->has_guestos_sha256 && id->guestos_sha256.len == 32)
        tm_hex(id->guestos_sha256.data, 32, gsha);
    if (id->has_config_sha256 && id->config_sha256.len == 32)
        tm_hex(id->config_sha256.data, 32, csha);
    const char *gname = id->guestos_name && id->guestos_name[0] ? id->guestos_name : "";
    snprintf(rep->container, sizeof(rep->container), "%s (%s), GuestOS %s%s%llu sha256 %s, config sha256 %s",
             id->name ? id->name : "?", id->uuid ? id->uuid : "?", gname[0] ? gname : "(development rootfs)",
             gname[0] ? " version " : "", (unsigned long long)id->guestos_version, gsha[0] ? gsha : "-", csha);
    snprintf(rep->json_container, sizeof(rep->json_container),
             "{\"name\": \"%s\", \"uuid\": \"%s\", \"guestos\": \"%s\", \"guestos_version\": %llu, "
             "\"guestos_sha256\": \"%s\", \"config_sha256\": \"%s\"}",
             id->name ? id->name : "", id->uuid ? id->uuid : "", gname, (unsigned long long)id->guestos_version, gsha,
             csha);
    const Trustme__Keystore__KsKeyCharacteristics *ch = kd->characteristics;
    static const char *pn[] = {"none", "sign", "verify", "encrypt", "decrypt", "wrap", "agree"};
    char purposes[128] = "";
    for (size_t i = 0; ch->auths && i < ch->auths->n_purposes; i++) {
        unsigned p = (unsigned)ch->auths->purposes[i];
        size_t l = strlen(purposes);
        snprintf(purposes + l, sizeof(purposes) - l, "%s%s", l ? "," : "", p < 7 ? pn[p] : "?");
    }
    const char *level =
        ch->security_level == TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM ? "tpm" : "software";
    char alias[65];
    safe_alias(ch->alias ? ch->alias : "?", alias);
    snprintf(rep->key, sizeof(rep->key), "%s, %s %u, purposes %s, security level %s%s", alias, alg_name(ch->algorithm),
             ch->key_size, purposes[0] ? purposes : "-", level,
             ch->auths && ch->auths->passphrase_required ? ", passphrase required" : "");
    snprintf(rep->json_key, sizeof(rep->json_key),
             "{\"alias\": \"%s\", \"algorithm\": \"%s\", \"key_size\": %u, \"purposes\": \"%s\", "
             "\"security_level\": \"%s\", \"passphrase_required\": %s, \"uses\": %u}",
             alias, alg_name(ch->algorithm), ch->key_size, purposes, level,
             ch->auths && ch->auths->passphrase_required ? "true" : "false", ch->uses);
}

/* The vTPM's evidence for a key of security level tpm (docs/KEYSTORE.md "Key attestation"): the
 * TPM2_Certify in the key certificate's extension certifies the name of a TPMT_PUBLIC that is
 * this certificate's public key, made in a TPM and never leaving it (fixedTPM, fixedParent,
 * sensitiveDataOrigin), signing only; over SHA-256 of the key description's challenge; signed by
 * the vTPM key the verifier pinned (--vtpm-key), for this container. NULL when it holds (or there
 * is nothing to check: no --vtpm-key), else why not; rep->tpm_evidence says which. */
static const char *tpm_evidence(X509 *cert, const Trustme__Keystore__KsKeyDescription *kd,
                                const struct key_attest_policy *pol, struct key_attest_report *rep, char *why,
                                size_t why_len)
{
    const ASN1_OCTET_STRING *os = ext_data(cert, TM_OID_TPM_CERTIFY);
    if (!os) {
        snprintf(rep->tpm_evidence, sizeof(rep->tpm_evidence), "none (the keystore's word)");
        return pol->vtpm_key_public ? "the key is described as held by the vTPM (security level tpm), but the "
                                      "attestation carries no TPM2_Certify of it"
                                    : NULL;
    }
    Trustme__Keystore__KsTpmCertify *c = trustme__keystore__ks_tpm_certify__unpack(NULL, (size_t)os->length, os->data);
    const char *bad = NULL;
    TPMT_PUBLIC kp;
    TPMS_ATTEST at;
    size_t off = 0;
    uint8_t name[34] = {0x00, 0x0b}, qual[32], point[1 + 2 * 48], tpm_point[1 + 2 * 48] = {0x04},
            sig[TPM_ECDSA_DER_MAX];
    size_t plen = 0, slen = 0;
    tm_err err = {0};
    memset(&kp, 0, sizeof(kp));
    if (!c || !c->has_key_public || !c->has_attest || !c->has_signature) {
        bad = "its TPM2_Certify extension does not parse";
        goto out;
    }
    if (Tss2_MU_TPMT_PUBLIC_Unmarshal(c->key_public.data, c->key_public.len, &off, &kp) != TSS2_RC_SUCCESS ||
        off != c->key_public.len || kp.type != TPM2_ALG_ECC || kp.nameAlg != TPM2_ALG_SHA256) {
        bad = "the certified public area is not an ECC key's TPMT_PUBLIC with a SHA-256 name";
        goto out;
    }
    TPMA_OBJECT must =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_SIGN_ENCRYPT;
    if ((kp.objectAttributes & must) != must ||
        (kp.objectAttributes & (TPMA_OBJECT_DECRYPT | TPMA_OBJECT_RESTRICTED))) {
        bad = "the certified key is not one made in the TPM that never leaves it and only signs";
        goto out;
    }
    size_t n = kp.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256   ? 32
               : kp.parameters.eccDetail.curveID == TPM2_ECC_NIST_P384 ? 48
                                                                       : 0;
    const TPMS_ECC_POINT *q = &kp.unique.ecc;
    if (!n || q->x.size > n || q->y.size > n) {
        bad = "the certified key is not on P-256 or P-384";
        goto out;
    }
    memcpy(tpm_point + 1 + n - q->x.size, q->x.buffer, q->x.size);
    memcpy(tpm_point + 1 + 2 * n - q->y.size, q->y.buffer, q->y.size);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    if (!pub ||
        EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof(point), &plen) != 1 ||
        plen != 1 + 2 * n || memcmp(point, tpm_point, plen) != 0) {
        ERR_clear_error();
        bad = "the vTPM certified another key than the attested one";
        goto out;
    }
    tm_sha256(c->key_public.data, c->key_public.len, name + 2);
    tm_sha256(kd->challenge.data, kd->challenge.len, qual);
    if (tpm_attest_parse(c->attest.data, c->attest.len, &at, &err) < 0 || at.magic != TPM2_GENERATED_VALUE ||
        at.type != TPM2_ST_ATTEST_CERTIFY) {
        bad = "its TPMS_ATTEST is no TPM-made certification";
        goto out;
    }
    if (at.extraData.size != 32 || memcmp(at.extraData.buffer, qual, 32) != 0) {
        bad = "the TPM2_Certify is not over this attestation's challenge";
        goto out;
    }
    if (at.attested.certify.name.size != sizeof(name) || memcmp(at.attested.certify.name.name, name, sizeof(name))) {
        bad = "the TPM2_Certify names another key than the attested one";
        goto out;
    }
    if (!pol->vtpm_key_public) {
        snprintf(rep->tpm_evidence, sizeof(rep->tpm_evidence),
                 "a TPM2_Certify of this key, its signer not checked (no --vtpm-key)");
        goto out;
    }
    if (!kd->identity->uuid || strcmp(kd->identity->uuid, pol->vtpm_key_container) != 0) {
        bad = "--vtpm-key is another container's key";
        goto out;
    }
    EVP_PKEY *signer = NULL;
    if (tpm_ak_public(pol->vtpm_key_public, pol->vtpm_key_public_len, &signer, &err) < 0) {
        EVP_PKEY_free(signer);
        snprintf(why, why_len, "--vtpm-key: %s", err.msg);
        bad = why;
        goto out;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = tpm_signature_der(c->signature.data, c->signature.len, sig, &slen, &err) == 0 && md &&
              EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, signer) == 1 &&
              EVP_DigestVerify(md, sig, slen, c->attest.data, c->attest.len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(signer);
    ERR_clear_error();
    if (!ok) {
        bad = "the TPM2_Certify is not signed by the vTPM key (--vtpm-key)";
        goto out;
    }
    rep->tpm_certified = true;
    snprintf(rep->tpm_evidence, sizeof(rep->tpm_evidence), "certified by the vTPM's key (--vtpm-key) at 0x%08x",
             c->has_signer_handle ? c->signer_handle : 0);
out:
    if (c)
        trustme__keystore__ks_tpm_certify__free_unpacked(c, NULL);
    if (bad && !rep->tpm_evidence[0])
        snprintf(rep->tpm_evidence, sizeof(rep->tpm_evidence), "refused");
    return bad;
}

static bool same_identity(const Trustme__Keystore__KsContainerIdentity *a, const uint8_t *b, size_t blen)
{
    size_t al = trustme__keystore__ks_container_identity__get_packed_size(a);
    _cleanup_free_ uint8_t *ab = malloc(al ? al : 1);
    if (!ab)
        return false;
    trustme__keystore__ks_container_identity__pack(a, ab);
    return al == blen && memcmp(ab, b, al) == 0;
}

static void check(X509 **certs, size_t n, const char *ak_chain_pem, size_t ak_chain_len,
                  const struct key_attest_policy *pol, struct key_attest_report *rep)
{
    if (n < 3)
        return fail(rep, "%zu certificates: expected the key's, the container's and the AK's chain", n);
    X509 *key = certs[0], *cont = certs[1], *ak = certs[2];
    if (!pol->device_cas || pol->device_cas->n == 0)
        return fail(rep, "not checked: the verifier names no CA that issues AK certificates (--device-ca)");
    struct verify_request rq = {
        .chain_pem = ak_chain_pem,
        .chain_len = ak_chain_len,
        .anchors_pem = pol->ak_anchors_pem,
        .anchors_len = pol->ak_anchors_len,
        .crls_pem = pol->crls_pem,
        .crls_len = pol->crls_len,
        .leaf_only = true,
        .eku = AK_EKU,
    };
    struct verify_result res;
    tm_err err = {0};
    if (verify_signed(&rq, &res, &err) < 0)
        return fail(rep, "the AK certificate: %s", err.msg);
    if (X509_get_extension_flags(ak) & EXFLAG_CA)
        return fail(rep, "the AK certificate (%s) is a CA certificate", res.leaf_subject);
    if (!ca_pins_issued(pol->device_cas, &res))
        return fail(rep, "the AK certificate (%s) was not issued by a Device CA (--device-ca)", res.leaf_subject);
    snprintf(rep->device, sizeof(rep->device), "%s, issued by the Device CA under %s%s", res.leaf_subject,
             res.anchor_subject, pol->crls_pem && pol->crls_len ? ", not revoked" : ", revocation not checked");
    /* The container certificate: the AK's signature, issuer, profile, identity. */
    EVP_PKEY *ak_pub = X509_get0_pubkey(ak);
    if (!ak_pub || X509_verify(cont, ak_pub) != 1)
        return fail(rep, "the container attestation certificate is not signed by the device's AK");
    if (X509_NAME_cmp(X509_get_issuer_name(cont), X509_get_subject_name(ak)) != 0)
        return fail(rep, "the container attestation certificate does not name the AK certificate as its issuer");
    if (!(X509_get_extension_flags(cont) & EXFLAG_CA) || X509_get_pathlen(cont) != 0 ||
        !(X509_get_key_usage(cont) & KU_KEY_CERT_SIGN))
        return fail(rep, "the container attestation certificate has not the profile tpmd gives it (CA, pathlen 0)");
    const ASN1_OCTET_STRING *idos = ext_data(cont, TM_OID_CONTAINER_IDENTITY);
    if (!idos)
        return fail(rep, "the container attestation certificate names no container");
    if (X509_cmp_current_time(X509_get0_notBefore(cont)) > 0 || X509_cmp_current_time(X509_get0_notAfter(cont)) < 0 ||
        X509_cmp_current_time(X509_get0_notBefore(key)) > 0 || X509_cmp_current_time(X509_get0_notAfter(key)) < 0)
        return fail(rep, "a certificate is outside its validity");
    /* The key certificate: the container key's signature, issuer, not a CA, its description. */
    EVP_PKEY *cont_pub = X509_get0_pubkey(cont);
    if (!cont_pub || X509_verify(key, cont_pub) != 1)
        return fail(rep, "the key attestation is not signed by the container's attestation key");
    if (X509_NAME_cmp(X509_get_issuer_name(key), X509_get_subject_name(cont)) != 0)
        return fail(rep, "the key attestation does not name the container certificate as its issuer");
    if (X509_get_extension_flags(key) & EXFLAG_CA)
        return fail(rep, "the key attestation is a CA certificate");
    const ASN1_OCTET_STRING *kdos = ext_data(key, TM_OID_KEY_DESCRIPTION);
    Trustme__Keystore__KsKeyDescription *kd =
        kdos ? trustme__keystore__ks_key_description__unpack(NULL, (size_t)kdos->length, kdos->data) : NULL;
    if (!kd || !kd->identity || !kd->characteristics || kd->version != 1) {
        if (kd)
            trustme__keystore__ks_key_description__free_unpacked(kd, NULL);
        return fail(rep, "the key attestation carries no (readable) key description");
    }
    size_t cl = kd->challenge.len < 128 ? kd->challenge.len : 128;
    tm_hex(kd->challenge.data, cl, rep->challenge_hex);
    if (!same_identity(kd->identity, idos->data, (size_t)idos->length))
        fail(rep, "the key attestation names another container than its container certificate");
    else if (pol->challenge && (kd->challenge.len != pol->challenge_len ||
                                memcmp(kd->challenge.data, pol->challenge, pol->challenge_len) != 0))
        fail(rep, "the challenge is not the verifier's (--challenge)");
    else if (kd->security_level != TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_SOFTWARE)
        /* A TPM-held key's digests are always the service's (an ECDSA signature does not name its
         * hash), so no trustme keystore describes a key as TPM-enforced in every tag: the process
         * that signed this (one its container took over) claims what it cannot give. The key's
         * own level (held by the vTPM) is shown, as the keystore's word. */
        fail(rep, "the key description claims a security level above software, which no trustme keystore gives");
    else if (kd->characteristics->security_level == TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM) {
        char why[300];
        const char *bad = tpm_evidence(key, kd, pol, rep, why, sizeof(why));
        if (bad)
            fail(rep, "%s", bad);
        else
            rep->trusted = true;
    } else
        rep->trusted = true;
    describe(rep, kd);
    trustme__keystore__ks_key_description__free_unpacked(kd, NULL);
}

int key_attest_check(const char *certs_pem, size_t len, const struct key_attest_policy *pol,
                     struct key_attest_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    X509 *certs[CERTS_MAX];
    size_t n = 0;
    BIO *bio = BIO_new_mem_buf(certs_pem, (int)len);
    X509 *c;
    while (bio && n < CERTS_MAX && (c = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        certs[n++] = c;
    BIO_free(bio);
    ERR_clear_error();
    if (n == 0)
        return tm_err_set(err, EINVAL, "no PEM certificate in the key attestation");
    /* The AK's chain, as PEM, for verify_signed. */
    BIO *chain = BIO_new(BIO_s_mem());
    for (size_t i = 2; chain && i < n; i++)
        PEM_write_bio_X509(chain, certs[i]);
    char *chain_pem = NULL;
    long chain_len = chain ? BIO_get_mem_data(chain, &chain_pem) : 0;
    check(certs, n, chain_pem, (size_t)(chain_len > 0 ? chain_len : 0), pol, rep);
    BIO_free(chain);
    for (size_t i = 0; i < n; i++)
        X509_free(certs[i]);
    return 0;
}

void key_attest_print(FILE *out, const struct key_attest_report *rep, bool json)
{
    if (json) {
        /* reason and device hold certificate subjects: jansson escapes them. */
        json_t *o = json_object();
        json_object_set_new(o, "verdict", json_string(rep->trusted ? "trusted" : "untrusted"));
        json_object_set_new(o, "reason", json_string(rep->reason));
        json_object_set_new(o, "device", json_string(rep->device));
        json_object_set_new(o, "container",
                            rep->json_container[0] ? json_loads(rep->json_container, 0, NULL) : json_null());
        json_object_set_new(o, "key", rep->json_key[0] ? json_loads(rep->json_key, 0, NULL) : json_null());
        json_object_set_new(o, "challenge", json_string(rep->challenge_hex));
        json_object_set_new(o, "tpm_evidence", json_string(rep->tpm_evidence));
        json_object_set_new(o, "tpm_certified", json_boolean(rep->tpm_certified));
        json_dumpf(o, out, JSON_COMPACT);
        fputc('\n', out);
        json_decref(o);
        return;
    }
    fprintf(out, "key attestation: %s\n", rep->trusted ? "trusted" : "untrusted");
    if (!rep->trusted)
        fprintf(out, "  reason:     %s\n", rep->reason);
    if (rep->device[0])
        fprintf(out, "  device:     %s\n", rep->device);
    if (rep->container[0])
        fprintf(out, "  container:  %s\n", rep->container);
    if (rep->key[0])
        fprintf(out, "  key:        %s\n", rep->key);
    if (rep->challenge_hex[0])
        fprintf(out, "  challenge:  %s\n", rep->challenge_hex);
    if (rep->tpm_evidence[0])
        fprintf(out, "  in the vTPM: %s\n", rep->tpm_evidence);
}
