/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The checks of docs/ATTESTATION.md, in its order. The response's parts are parsed once
 * (struct parsed), then each check looks at the parts it needs and says "not checked: <why>"
 * when one of them is missing or malformed, so a report always has every line. */
#include "attest_check.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <string.h>
#include <tss2/tss2_tpm2_types.h>

#include "crypto.h"
#include "measurement.h"
#include "ossl.h"
#include "tpm_parse.h"
#include "verify.h"
#include "verify_cache.h"

static const char *const check_names[ATTEST_CHECK_COUNT] = {
    [ATTEST_CHECK_CHAIN] = "certificate chain",
    [ATTEST_CHECK_AK_BINDING] = "AK binding",
    [ATTEST_CHECK_QUOTE_SIGNATURE] = "quote signature",
    [ATTEST_CHECK_NONCE] = "nonce",
    [ATTEST_CHECK_PCR_DIGEST] = "PCR digest",
    [ATTEST_CHECK_EVENT_LOG] = "event log",
    [ATTEST_CHECK_REFERENCE_VALUES] = "reference values",
    [ATTEST_CHECK_CLOCK] = "TPM clock",
};

#define AK_EKU "clientAuth" /* the Device CA's profile (docs/PKI.md) */
#define MISSING_SHOWN 3 /* missing reference values named in the detail */

struct reported_pcrs {
    size_t n;
    uint32_t mask; /* bit i: PCR i reported */
    uint32_t index[ATTEST_PCRS];
    const uint8_t *value[ATTEST_PCRS];
};

/* Every part of the response, parsed once; *_rc < 0 with *_err saying why a part is unusable. */
struct parsed {
    X509 *leaf;
    int leaf_rc;
    tm_err leaf_err;
    EVP_PKEY *ak; /* set when the TPMT_PUBLIC parsed, even if its attributes are wrong */
    int ak_rc;
    tm_err ak_err;
    TPMS_ATTEST attest;
    int attest_rc;
    tm_err attest_err;
    struct reported_pcrs pcrs;
    int pcrs_rc;
    tm_err pcrs_err;
    int events_rc;
    tm_err events_err;
};

static void set(struct attest_check *c, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(struct attest_check *c, bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    c->ok = ok;
}

static void hex_prefix(const uint8_t *b, size_t len, char out[17])
{
    tm_hex(b, len < 8 ? len : 8, out);
}

static void pcr_list(uint32_t mask, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < 32 && used < size; i++)
        if (mask & (1u << i))
            used += (size_t)snprintf(out + used, size - used, "%s%d", used ? ", " : "", i);
    if (!mask)
        snprintf(out, size, "none");
}

/* --- parsing the parts --- */

static int read_leaf(const ProtobufCBinaryData *pem, X509 **ret, tm_err *err)
{
    if (pem->len == 0)
        return tm_err_set(err, ENOENT,
                          "the device has no AK certificate (not provisioned: "
                          "trustme device csr, trustme-pki issue --ca device, trustme device "
                          "cert install)");
    if (pem->len > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "the AK certificate chain has %zu bytes, at most %d", pem->len, VERIFY_PEM_MAX);
    /* The same bytes decoded before as a whole chain (check_chain): their first certificate. */
    uint8_t hash[32];
    tm_sha256(pem->data, pem->len, hash);
    if (vcache_leaf(hash, ret))
        return 0;
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->len);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long dlen = 0;
    if (!bio || !PEM_read_bio(bio, &name, &header, &der, &dlen)) {
        ERR_clear_error();
        return tm_err_set(err, EINVAL, "the AK certificate chain holds no PEM block");
    }
    const unsigned char *p = der;
    X509 *x = strcmp(name, "CERTIFICATE") == 0 ? d2i_X509(NULL, &p, dlen) : NULL;
    bool exact = x && p == der + dlen;
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    ERR_clear_error();
    if (!exact) {
        X509_free(x);
        return tm_err_set(err, EINVAL,
                          "the AK certificate (first PEM block) is not a DER "
                          "certificate");
    }
    *ret = x;
    return 0;
}

static int parse_pcrs(const Trustme__Attest__Quote *q, struct reported_pcrs *out, tm_err *err)
{
    if (q->n_pcrs > ATTEST_PCRS)
        return tm_err_set(err, EINVAL, "%zu PCR values reported, at most %d", q->n_pcrs, ATTEST_PCRS);
    for (size_t i = 0; i < q->n_pcrs; i++) {
        const Trustme__Attest__PcrValue *v = q->pcrs[i];
        if (!v->has_index || v->index > TM_PCR_MAX)
            return tm_err_set(err, EINVAL, "reported PCR value %zu has no index 0..%d", i + 1, TM_PCR_MAX);
        if (i > 0 && v->index <= out->index[i - 1])
            return tm_err_set(err, EINVAL,
                              "reported PCR values are not in ascending index "
                              "order (%u after %u)",
                              v->index, out->index[i - 1]);
        if (!v->has_sha256 || v->sha256.len != 32)
            return tm_err_set(err, EINVAL, "reported PCR %u has a value of %zu bytes, not 32", v->index,
                              v->has_sha256 ? v->sha256.len : 0);
        out->index[i] = v->index;
        out->value[i] = v->sha256.data;
        out->mask |= 1u << v->index;
    }
    out->n = q->n_pcrs;
    return 0;
}

static int check_events_wellformed(const Trustme__Attest__Quote *q, tm_err *err)
{
    if (q->n_events > ATTEST_EVENTS_MAX)
        return tm_err_set(err, EINVAL, "%zu events, at most %d", q->n_events, ATTEST_EVENTS_MAX);
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        if (!e->has_seq || e->seq != i)
            return tm_err_set(err, EINVAL,
                              "event %zu has seq %s%llu: the log must be numbered "
                              "0, 1, 2, ... without gaps",
                              i, e->has_seq ? "" : "(none) ", (unsigned long long)e->seq);
        if (!e->has_pcr)
            return tm_err_set(err, EINVAL, "event %zu has no PCR", i);
        tm_err e2 = {0};
        if (tm_event_check(e->pcr, e->type, e->name, e->has_sha256 ? e->sha256.len : 0, &e2) < 0)
            return tm_err_set(err, EINVAL, "event %zu: %s", i, e2.msg);
    }
    return 0;
}

static void parse_all(const Trustme__Attest__Quote *q, struct parsed *p)
{
    p->leaf_rc = q->has_cert_chain_pem ? read_leaf(&q->cert_chain_pem, &p->leaf, &p->leaf_err)
                                       : read_leaf(&(ProtobufCBinaryData){0}, &p->leaf, &p->leaf_err);
    p->ak_rc = tpm_ak_public(q->has_ak_public ? q->ak_public.data : NULL, q->has_ak_public ? q->ak_public.len : 0,
                             &p->ak, &p->ak_err);
    p->attest_rc = tpm_attest_parse(q->has_attest ? q->attest.data : NULL, q->has_attest ? q->attest.len : 0,
                                    &p->attest, &p->attest_err);
    p->pcrs_rc = parse_pcrs(q, &p->pcrs, &p->pcrs_err);
    p->events_rc = check_events_wellformed(q, &p->events_err);
}

/* --- the checks --- */

static void check_chain(const Trustme__Attest__Quote *q, const struct attest_policy *pol, const struct parsed *p,
                        struct attest_check *c)
{
    if (p->leaf_rc == -ENOENT) {
        set(c, false, "%s", p->leaf_err.msg);
        return;
    }
    if (!pol->device_cas || pol->device_cas->n == 0) {
        set(c, false,
            "not checked: the verifier names no CA that issues AK certificates "
            "(--device-ca)");
        return;
    }
    struct verify_request rq = {
        .chain_pem = (const char *)q->cert_chain_pem.data,
        .chain_len = q->cert_chain_pem.len,
        .anchors_pem = pol->ak_anchors_pem,
        .anchors_len = pol->ak_anchors_len,
        .crls_pem = pol->crls_pem,
        .crls_len = pol->crls_len,
        .leaf_only = true,
        .eku = AK_EKU,
        .cache = true, /* a verifier sees the same device's chain, anchors and CRLs again */
        .time = pol->time,
    };
    struct verify_result res;
    tm_err err = {0};
    if (verify_signed(&rq, &res, &err) < 0)
        set(c, false, "%s", err.msg);
    else if (p->leaf && (X509_get_extension_flags(p->leaf) & EXFLAG_CA))
        set(c, false,
            "the AK certificate (%s) is a CA certificate (CA:TRUE): it could issue "
            "others, it is no device's",
            res.leaf_subject);
    else if (!ca_pins_issued(pol->device_cas, &res))
        set(c, false,
            "the AK certificate (%s) was not issued by a Device CA (--device-ca): "
            "another CA under %s issued it",
            res.leaf_subject, res.anchor_subject);
    else
        set(c, true, "%s, issued by the Device CA under %s%s", res.leaf_subject, res.anchor_subject,
            pol->crls_pem && pol->crls_len ? ", not revoked" : ", revocation not checked");
}

/* The AK's TPM name: nameAlg (SHA-256) || SHA-256 of its marshalled TPMT_PUBLIC. */
static bool ak_name_is(const Trustme__Attest__Quote *q, const uint8_t *want, size_t want_len)
{
    uint8_t name[2 + 32] = {0x00, 0x0b};
    if (want_len != sizeof(name))
        return false;
    tm_sha256(q->ak_public.data, q->ak_public.len, name + 2);
    return memcmp(name, want, sizeof(name)) == 0;
}

/* The AK's qualified name: what TPM2_Quote writes as qualifiedSigner. For a key whose parent
 * is a primary key of the owner hierarchy (the SRK): QN(SRK) = nameAlg || H(TPM_RH_OWNER ||
 * Name(SRK)), QN(AK) = nameAlg || H(QN(SRK) || Name(AK)) (TPM 2.0 Part 1, "Qualified Name"). */
static void ak_qualified_name(const uint8_t ak_name[34], const uint8_t parent_name[34], uint8_t out[34])
{
    uint8_t buf[4 + 34] = {0x40, 0x00, 0x00, 0x01}, qn_parent[34] = {0x00, 0x0b};
    memcpy(buf + 4, parent_name, 34);
    tm_sha256(buf, sizeof(buf), qn_parent + 2);
    uint8_t both[68];
    memcpy(both, qn_parent, 34);
    memcpy(both + 34, ak_name, 34);
    out[0] = 0x00;
    out[1] = 0x0b;
    tm_sha256(both, sizeof(both), out + 2);
}

/* The quote's qualifiedSigner against the AK's TPMT_PUBLIC: -1 not the same key, 0 not
 * comparable (no parent name; why in *why), 1 the same. A TPM that signs with a key writes that
 * key's qualified name, which covers its TPMT_PUBLIC (attributes included): a TPMT_PUBLIC that
 * claims fixedTPM restricted for a key the TPM knows otherwise, or a software key's "quote"
 * with a made-up qualifiedSigner, does not match. */
static int qualified_signer_matches(const Trustme__Attest__Quote *q, const struct parsed *p, const char **why)
{
    const TPM2B_NAME *qs = &p->attest.qualifiedSigner;
    /* Without the parent's name the quote cannot be tied to the AK: fail closed. */
    if (!q->has_ak_parent_name || q->ak_parent_name.len == 0) {
        *why = "the device does not send its AK's parent name (field 140), so qualifiedSigner "
               "cannot be compared";
        return -1;
    }
    uint8_t ak_name[34] = {0x00, 0x0b}, qn[34];
    tm_sha256(q->ak_public.data, q->ak_public.len, ak_name + 2);
    if (q->ak_parent_name.len != 34 || q->ak_parent_name.data[0] != 0x00 || q->ak_parent_name.data[1] != 0x0b ||
        qs->size != 34)
        return -1;
    ak_qualified_name(ak_name, q->ak_parent_name.data, qn);
    return memcmp(qn, qs->name, 34) == 0 ? 1 : -1;
}

static void check_ak_binding(const Trustme__Attest__Quote *q, const struct attest_policy *pol, const struct parsed *p,
                             struct attest_check *c)
{
    if (p->ak_rc < 0) {
        set(c, false, "%s", p->ak_err.msg);
        return;
    }
    if (p->leaf_rc < 0) {
        set(c, false, "not checked: %s", p->leaf_rc == -ENOENT ? "no AK certificate" : p->leaf_err.msg);
        return;
    }
    EVP_PKEY *cert_key = X509_get0_pubkey(p->leaf);
    int eq = cert_key ? EVP_PKEY_eq(cert_key, p->ak) : 0;
    ERR_clear_error();
    if (eq != 1)
        set(c, false,
            "the AK certificate's public key is not the AK's (TPMT_PUBLIC): the "
            "certificate belongs to another key");
    else if (pol->expect_ak_name && !ak_name_is(q, pol->expect_ak_name, pol->expect_ak_name_len))
        set(c, false, "the AK is not the expected device's (--expect-ak): another device answered");
    else {
        const char *why = NULL;
        int qs = p->attest_rc < 0 ? 0 : qualified_signer_matches(q, p, &why);
        if (p->attest_rc < 0)
            why = "no TPMS_ATTEST";
        if (qs < 0 && why) {
            set(c, false, "%s", why);
            return;
        }
        if (qs < 0) {
            char h[17];
            hex_prefix(p->attest.qualifiedSigner.name, p->attest.qualifiedSigner.size, h);
            set(c, false,
                "the quote's qualifiedSigner (%s...) is not the qualified name of the "
                "AK's TPMT_PUBLIC under its parent: the TPM that signed does not hold this key "
                "as described (a forged TPMS_ATTEST or key attributes)",
                h);
            return;
        }
        set(c, true,
            "the certificate's key is the AK%s, a fixedTPM restricted signing key "
            "(ECC P-256, ECDSA-SHA256); qualifiedSigner %s%s",
            pol->expect_ak_name ? " of the expected device" : "",
            qs > 0 ? "is its qualified name" : "not compared: ", qs > 0 ? "" : why);
    }
}

static bool signature_verifies(EVP_PKEY *key, const uint8_t *der, size_t der_len, const ProtobufCBinaryData *data)
{
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) == 1 &&
              EVP_DigestVerify(md, der, der_len, data->data, data->len) == 1;
    ERR_clear_error();
    return ok;
}

static void check_quote_signature(const Trustme__Attest__Quote *q, const struct parsed *p, struct attest_check *c)
{
    if (p->attest_rc < 0) {
        set(c, false, "%s", p->attest_err.msg);
        return;
    }
    if (p->attest.magic != TPM2_GENERATED_VALUE) {
        set(c, false,
            "TPMS_ATTEST magic is 0x%08x, not TPM_GENERATED_VALUE: the TPM did not "
            "make it",
            p->attest.magic);
        return;
    }
    if (p->attest.type != TPM2_ST_ATTEST_QUOTE) {
        set(c, false, "TPMS_ATTEST is of type 0x%04x, not a quote (0x%04x)", p->attest.type, TPM2_ST_ATTEST_QUOTE);
        return;
    }
    uint8_t der[TPM_ECDSA_DER_MAX];
    size_t der_len = 0;
    tm_err err = {0};
    if (tpm_signature_der(q->has_signature ? q->signature.data : NULL, q->has_signature ? q->signature.len : 0, der,
                          &der_len, &err) < 0) {
        set(c, false, "%s", err.msg);
        return;
    }
    if (p->leaf_rc < 0) {
        /* Without a certificate there is no key to trust; still say what the AK says, for
         * whoever provisions the device. */
        bool with_ak = p->ak && signature_verifies(p->ak, der, der_len, &q->attest);
        set(c, false, "not checked: %s; %s", p->leaf_rc == -ENOENT ? "no AK certificate" : p->leaf_err.msg,
            with_ak ? "it verifies with the device's uncertified AK"
                    : "it does not verify with the device's AK either");
        return;
    }
    EVP_PKEY *key = X509_get0_pubkey(p->leaf);
    if (key && signature_verifies(key, der, der_len, &q->attest))
        set(c, true, "ECDSA-SHA256 by the certified key over the TPM's quote");
    else
        set(c, false,
            "the quote's signature does not verify with the AK certificate's key: "
            "another key (another TPM) signed it, or it was altered");
}

static void check_nonce(const struct attest_policy *pol, const struct parsed *p, struct attest_check *c)
{
    if (p->attest_rc < 0) {
        set(c, false, "not checked: %s", p->attest_err.msg);
        return;
    }
    const TPM2B_DATA *x = &p->attest.extraData;
    if (pol->nonce && pol->nonce_len == x->size && memcmp(x->buffer, pol->nonce, x->size) == 0) {
        set(c, true, "the quote's qualifying data is the %zu-byte nonce sent", pol->nonce_len);
        return;
    }
    char got[17], want[17];
    hex_prefix(x->buffer, x->size, got);
    hex_prefix(pol->nonce, pol->nonce ? pol->nonce_len : 0, want);
    set(c, false,
        "the quote's qualifying data (%u bytes, %s...) is not the nonce sent (%zu "
        "bytes, %s...): a replayed or foreign quote",
        x->size, got, pol->nonce_len, want);
}

/* The quote's single SHA-256 bank selection as a PCR mask; -EINVAL naming what is wrong. */
static int quote_selection(const TPMS_ATTEST *a, uint32_t *ret_mask, tm_err *err)
{
    const TPML_PCR_SELECTION *sel = &a->attested.quote.pcrSelect;
    if (sel->count != 1 || sel->pcrSelections[0].hash != TPM2_ALG_SHA256)
        return tm_err_set(err, EINVAL,
                          "the quote selects %u banks: exactly the SHA-256 bank "
                          "expected",
                          sel->count);
    const TPMS_PCR_SELECTION *s = &sel->pcrSelections[0];
    uint32_t mask = 0;
    for (unsigned i = 0; i < s->sizeofSelect && i < sizeof(s->pcrSelect); i++)
        for (unsigned b = 0; b < 8; b++)
            if (s->pcrSelect[i] & (1u << b)) {
                if (i * 8 + b > TM_PCR_MAX)
                    return tm_err_set(err, EINVAL,
                                      "the quote selects PCR %u (only 0..%d "
                                      "exist)",
                                      i * 8 + b, TM_PCR_MAX);
                mask |= 1u << (i * 8 + b);
            }
    *ret_mask = mask;
    return 0;
}

static void check_pcr_digest(const struct attest_policy *pol, const struct parsed *p, struct attest_check *c)
{
    if (p->attest_rc < 0) {
        set(c, false, "not checked: %s", p->attest_err.msg);
        return;
    }
    if (p->pcrs_rc < 0) {
        set(c, false, "%s", p->pcrs_err.msg);
        return;
    }
    uint32_t sel = 0, requested = 0;
    tm_err err = {0};
    if (quote_selection(&p->attest, &sel, &err) < 0) {
        set(c, false, "%s", err.msg);
        return;
    }
    for (size_t i = 0; i < pol->npcrs; i++)
        requested |= pol->pcrs[i] <= TM_PCR_MAX ? 1u << pol->pcrs[i] : 0;
    char a[128], b[128];
    pcr_list(sel, a, sizeof(a));
    if (!requested) {
        set(c, false,
            "not checked: the verifier's policy names no PCRs (the reference values' "
            "\"pcrs\" or --pcr)");
        return;
    }
    /* What is quoted is the verifier's choice: a device (or a proxy rewriting the request) that
     * quotes other PCRs hides what it does not quote. */
    if (sel != requested) {
        pcr_list(requested, b, sizeof(b));
        set(c, false, "the quote selects PCRs %s, but %s were requested (%s)", a, b,
            pol->pcrs_explicit ? "--pcr" : "the reference values' policy");
        return;
    }
    if (!sel) {
        set(c, false, "the quote selects no PCR");
        return;
    }
    if (sel != p->pcrs.mask) {
        pcr_list(p->pcrs.mask, b, sizeof(b));
        set(c, false, "the quote selects PCRs %s, but the device reported values of %s", a, b);
        return;
    }
    /* The TPM hashes the selected PCRs' values in ascending index order, as they are reported. */
    struct tm_sha256_ctx h;
    uint8_t digest[32];
    tm_sha256_init(&h);
    for (size_t i = 0; i < p->pcrs.n; i++)
        tm_sha256_update(&h, p->pcrs.value[i], 32);
    tm_sha256_final(&h, digest);
    const TPM2B_DIGEST *d = &p->attest.attested.quote.pcrDigest;
    if (d->size != 32 || memcmp(d->buffer, digest, 32) != 0) {
        set(c, false,
            "SHA-256 over the reported values of PCRs %s is not the quote's pcrDigest: "
            "the reported values are not the quoted ones",
            a);
        return;
    }
    set(c, true, "PCRs %s (SHA-256 bank): the reported values are the quoted ones", a);
}

static void check_event_log(const Trustme__Attest__Quote *q, const struct attest_policy *pol, const struct parsed *p,
                            struct attest_check *c)
{
    if (p->events_rc < 0) {
        set(c, false, "%s", p->events_err.msg);
        return;
    }
    if (p->pcrs_rc < 0) {
        set(c, false, "not checked: %s", p->pcrs_err.msg);
        return;
    }
    if (p->pcrs.n == 0) {
        set(c, false, "not checked: the device reported no PCR values");
        return;
    }
    uint8_t pcr[ATTEST_PCRS][32];
    memset(pcr, 0, sizeof(pcr));
    uint32_t uncovered = 0;
    size_t n_uncovered = 0;
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        uint8_t digest[32];
        tm_event_digest(e->pcr, e->type, e->name, e->sha256.data, digest);
        tm_pcr_extend(pcr[e->pcr], digest);
        if (!(p->pcrs.mask & (1u << e->pcr))) {
            uncovered |= 1u << e->pcr;
            n_uncovered++;
        }
    }
    for (size_t i = 0; i < p->pcrs.n; i++) {
        uint32_t idx = p->pcrs.index[i];
        if (memcmp(pcr[idx], p->pcrs.value[i], 32) != 0) {
            char got[17], want[17];
            hex_prefix(pcr[idx], 32, got);
            hex_prefix(p->pcrs.value[i], 32, want);
            set(c, false,
                "PCR %u: the log replays to %s..., the device reports %s...: the log "
                "was edited, shortened or reordered, or does not describe this PCR",
                idx, got, want);
            return;
        }
    }
    char a[128], b[128];
    pcr_list(p->pcrs.mask, a, sizeof(a));
    if (uncovered) {
        pcr_list(uncovered, b, sizeof(b));
        /* With the device's own selection the quote must cover the whole log; a verifier that
         * asked for fewer PCRs chose not to look at the rest. */
        if (!pol->pcrs_explicit) {
            set(c, false, "%zu events are on PCRs %s, which the quote does not cover", n_uncovered, b);
            return;
        }
        set(c, true,
            "%zu events replay to the reported values of PCRs %s (%zu events on PCRs "
            "%s not requested, not covered)",
            q->n_events - n_uncovered, a, n_uncovered, b);
        return;
    }
    set(c, true, "%zu events replay to the reported values of PCRs %s", q->n_events, a);
}

static void check_reference_values(const Trustme__Attest__Quote *q, const struct attest_policy *pol,
                                   const struct parsed *p, struct attest_check *c)
{
    if (!pol->refs || !pol->refs->signature_verified) {
        set(c, false, "%s", pol->refs_error ? pol->refs_error : "no reference values with a verified signature");
        return;
    }
    if (p->events_rc < 0) {
        set(c, false, "not checked: the event log is malformed");
        return;
    }
    /* Only events the quote covers are evidence; with bad PCR values, all are looked at. */
    uint32_t covered = p->pcrs_rc < 0 ? ~0u : p->pcrs.mask;
    size_t checked = 0, missing = 0, used = 0;
    char list[ATTEST_DETAIL_MAX / 2] = "";
    const struct refvalues *r = pol->refs;
    /* Required events present: a bit per r->required[i] (at most REFVALUES_REQUIRED_MAX). */
    uint8_t present[(REFVALUES_REQUIRED_MAX + 7) / 8] = {0};
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        if (!(covered & (1u << e->pcr)))
            continue;
        checked++;
        for (size_t k = 0; k < r->n_required; k++)
            if (strcmp(r->required[k].type, e->type) == 0 && strcmp(r->required[k].name, e->name) == 0)
                present[k / 8] |= (uint8_t)(1u << (k % 8));
        if (refvalues_contains(pol->refs, e->type, e->sha256.data))
            continue;
        if (++missing <= MISSING_SHOWN && used < sizeof(list)) {
            char h[17];
            hex_prefix(e->sha256.data, 32, h);
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s %.64s (%s...)", used ? ", " : "", e->type,
                                     e->name, h);
        }
    }
    if (missing) {
        set(c, false, "%zu of %zu events are not reference values: %s%s", missing, checked, list,
            missing > MISSING_SHOWN ? ", ..." : "");
        return;
    }
    /* A log without an event the policy requires (a boot binary, the device config): the
     * device did not measure it, or the quote does not cover the PCR it is on. */
    size_t absent = 0;
    used = 0;
    for (size_t k = 0; k < r->n_required; k++) {
        if (present[k / 8] & (1u << (k % 8)))
            continue;
        if (++absent <= MISSING_SHOWN && used < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s %.64s", used ? ", " : "",
                                     r->required[k].type, r->required[k].name);
    }
    if (absent) {
        set(c, false, "%zu of %zu required events are not in the quoted log: %s%s", absent, r->n_required, list,
            absent > MISSING_SHOWN ? ", ..." : "");
        return;
    }
    set(c, true,
        "all %zu events are reference values, the %zu required ones present (version "
        "%llu, %zu values, signed by %s)",
        checked, r->n_required, (unsigned long long)r->rim_version, r->n, r->signer);
}

static void check_clock(const struct attest_policy *pol, const struct parsed *p, struct attest_check *c,
                        struct attest_clock *out)
{
    if (p->attest_rc < 0) {
        set(c, false, "not checked: %s", p->attest_err.msg);
        return;
    }
    const TPMS_CLOCK_INFO *ci = &p->attest.clockInfo;
    *out = (struct attest_clock){.valid = true,
                                 .clock = ci->clock,
                                 .reset_count = ci->resetCount,
                                 .restart_count = ci->restartCount,
                                 .safe = ci->safe == TPM2_YES};
    char info[160];
    snprintf(info, sizeof(info), "clock %llu ms, reset count %u, restart count %u, %s", (unsigned long long)ci->clock,
             ci->resetCount, ci->restartCount,
             ci->safe == TPM2_YES ? "safe" : "not safe (the clock may have gone back)");
    if (pol->has_last_reset && ci->resetCount < pol->last_reset)
        set(c, false,
            "%s: the reset count is lower than %u seen last (--last-reset): an old "
            "quote, or a TPM whose state was rolled back",
            info, pol->last_reset);
    else if (pol->has_last_reset && ci->resetCount > pol->last_reset)
        set(c, true,
            "%s; the TPM was reset since reset count %u (--last-reset): a reboot, or a "
            "TPM restarted under the device",
            info, pol->last_reset);
    else
        set(c, true, "%s", info);
}

void attest_check_quote(const Trustme__Attest__Quote *q, const struct attest_policy *pol, struct attest_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++)
        rep->checks[i].name = check_names[i];
    struct parsed p;
    memset(&p, 0, sizeof(p));
    parse_all(q, &p);
    check_chain(q, pol, &p, &rep->checks[ATTEST_CHECK_CHAIN]);
    check_ak_binding(q, pol, &p, &rep->checks[ATTEST_CHECK_AK_BINDING]);
    check_quote_signature(q, &p, &rep->checks[ATTEST_CHECK_QUOTE_SIGNATURE]);
    check_nonce(pol, &p, &rep->checks[ATTEST_CHECK_NONCE]);
    check_pcr_digest(pol, &p, &rep->checks[ATTEST_CHECK_PCR_DIGEST]);
    check_event_log(q, pol, &p, &rep->checks[ATTEST_CHECK_EVENT_LOG]);
    check_reference_values(q, pol, &p, &rep->checks[ATTEST_CHECK_REFERENCE_VALUES]);
    check_clock(pol, &p, &rep->checks[ATTEST_CHECK_CLOCK], &rep->clock);
    X509_free(p.leaf);
    EVP_PKEY_free(p.ak);
    rep->events = q->n_events;
    rep->trusted = true;
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++)
        rep->trusted &= rep->checks[i].ok;
}

int attest_response_decode(const uint8_t *buf, size_t len, Trustme__Attest__AttestResponse **ret, tm_err *err)
{
    if (len > ATTEST_RESPONSE_MAX)
        return tm_err_set(err, EPROTO, "response of %zu bytes, at most %u", len, ATTEST_RESPONSE_MAX);
    Trustme__Attest__AttestResponse *r = trustme__attest__attest_response__unpack(NULL, len, buf);
    if (!r)
        return tm_err_set(err, EPROTO, "the response is not an AttestResponse");
    int rc = 0;
    if (!r->has_version || r->version != ATTEST_VERSION)
        rc = tm_err_set(err, EPROTO, "response version %u, expected %u", r->has_version ? r->version : 0,
                        ATTEST_VERSION);
    else if (r->body_case == TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR) {
        /* The device's words go to a terminal: printable ASCII only, bounded. */
        char msg[256] = "(no message)";
        const char *m = r->error->message;
        for (size_t i = 0; m && m[i] && i < sizeof(msg) - 1; i++, msg[i] = '\0')
            msg[i] = m[i] >= 0x20 && m[i] < 0x7f ? m[i] : '?';
        rc = tm_err_set(err, EREMOTEIO, "the device answered with error %d: %s",
                        r->error->has_code ? r->error->code : 0, msg);
    } else if (r->body_case != TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE)
        rc = tm_err_set(err, EPROTO, "the response carries neither a quote nor an error");
    if (rc < 0) {
        trustme__attest__attest_response__free_unpacked(r, NULL);
        return rc;
    }
    *ret = r;
    return 0;
}

int attest_check_response(const uint8_t *buf, size_t len, const struct attest_policy *pol, struct attest_report *rep,
                          tm_err *err)
{
    Trustme__Attest__AttestResponse *r = NULL;
    int rc = attest_response_decode(buf, len, &r, err);
    if (rc < 0)
        return rc;
    attest_check_quote(r->quote, pol, rep);
    trustme__attest__attest_response__free_unpacked(r, NULL);
    return 0;
}
