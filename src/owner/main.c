/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-owner: a stakeholder takes ownership of one container's vTPM over an untrusted network
 * (docs/VTPM.md "Remote take-ownership"). It checks the device (the physical quote, event log
 * and AK chain, against the stakeholder's own anchors and signed reference values), finds the
 * vTPM's EK among the device's measurements, ties a fresh attestation key to that EK
 * (MakeCredential here, ActivateCredential in the vTPM), checks the container's vTPM quote and
 * event log against the stakeholder's own reference values for the container, and only then
 * sets the vTPM's lockout, endorsement and owner authorisations, encrypted in a session salted
 * to the EK. The values go to a file of the stakeholder's; the device never sees them in clear. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <unistd.h>

#include "attest_check.h"
#include "vtpm_ek.h"
#include "attest_opts.h"
#include "cleanup.h"
#include "client.h"
#include "fileio.h"
#include "hex.h"
#include "inputs.h"
#include "makecred.h"
#include "measurement.h"
#include "owner_stmt.h"
#include "refvalues.h"
#include "relay.h"
#include "tpm_parse.h"
#include "uuid.h"
#include "verifier_args.h"
#include "version.h"
#include "vtpm_quote.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define EK_ECC_HANDLE 0x81010002u
#define AUTH_LEN 32
#define FLEET_KEY_HANDLE 0x81018000u /* tpmd relays EvictControl for this handle only */

/* PolicySecret(TPM_RH_ENDORSEMENT): the TCG EK templates' authPolicy. */
static const uint8_t ek_policy[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                      0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                      0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

struct options {
    const char *target, *container, *container_reference, *auth_out;
    const char *ek_cert; /* --ek-cert: the vTPM's EK certificate and its issuer chain */
    const char *fleet_key; /* --fleet-key: AKv made persistent for trustme-fleet, its public part here */
    struct verifier_args common; /* the options trustme-verify has too */
};

static bool json_out;

/* One line of the report: the step, ok or FAIL, and why. */
static void step(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void step(const char *name, bool ok, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (json_out)
        return;
    printf("%-28s %-4s  %s\n", name, ok ? "ok" : "FAIL", detail);
    fflush(stdout);
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-owner take HOST:PORT --container UUID TRUST --reference REFS.json\n"
                 "                     --container-reference CREFS.json --auth-out FILE\n"
                 "                     [--expect-ak NAME] [--min-version N] [--timeout S]\n"
                 "                     [--ek-cert CERTS.pem] [--fleet-key FILE]\n"
                 "  TRUST: --ak-anchor ROOT.pem --device-ca CA.pem --rim-anchor ROOT.pem --rim-ca CA.pem\n"
                 "         (--crl CRL.pem ... | --no-crl)\n"
                 "\n"
                 "Take ownership of a container's vTPM (docs/VTPM.md \"Remote take-ownership\"): check\n"
                 "the device's quote and log against REFS.json (as trustme-verify does), find the\n"
                 "container's vTPM EK among the device's measurements, tie a fresh vTPM attestation key to\n"
                 "it (credential activation), check the vTPM's quote and the container's event log against\n"
                 "CREFS.json (signed like REFS.json: its values are the container's approved events, its\n"
                 "pcrs the vTPM PCRs to quote), then set the vTPM's lockout, endorsement and owner\n"
                 "authorisations to fresh random values, encrypted to the vTPM. The values are written\n"
                 "to FILE (created, mode 0600) before they are set. With --ek-cert (the vTPM's ECC EK\n"
                 "certificate, then the device's vTPM issuer chain) the certificate must also chain to\n"
                 "--ak-anchor through a vTPM issuer a --device-ca certified, name the container and\n"
                 "certify the ECC EK the device logged (the one the take uses). With --fleet-key the\n"
                 "activated attestation key is kept in the vTPM at 0x81018000 and its public part written\n"
                 "to FILE, for trustme-fleet's vtpm-key (docs/FLEET.md \"vTPM quotes\").\n"
                 "\n"
                 "Exit status: 0 the vTPM is owned, 1 a check failed or the vTPM refused (nothing secret\n"
                 "was sent), 2 usage error, 3 the device could not be reached.\n");
}

#define usage_error(...) verifier_usage_error("trustme-owner", __VA_ARGS__)

enum { OPT_TAKE_CONTAINER = VERIFIER_OPT_OWN, OPT_CREF, OPT_AUTH_OUT, OPT_EK_CERT, OPT_FLEET_KEY };

static int take_option(void *userdata, int c, char *value)
{
    struct options *o = userdata;
    switch (c) {
    case OPT_TAKE_CONTAINER: o->container = value; break;
    case OPT_CREF: o->container_reference = value; break;
    case OPT_AUTH_OUT: o->auth_out = value; break;
    case OPT_EK_CERT: o->ek_cert = value; break;
    case OPT_FLEET_KEY: o->fleet_key = value; break;
    }
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option own[] = {{"container", required_argument, NULL, OPT_TAKE_CONTAINER},
                                        {"container-reference", required_argument, NULL, OPT_CREF},
                                        {"auth-out", required_argument, NULL, OPT_AUTH_OUT},
                                        {"ek-cert", required_argument, NULL, OPT_EK_CERT},
                                        {"fleet-key", required_argument, NULL, OPT_FLEET_KEY},
                                        {NULL, 0, NULL, 0}};
    static const struct verifier_program prog = {"trustme-owner", usage, own, take_option};
    int r = verifier_args_parse(&prog, argc, argv, &o->common, o);
    if (r != 0)
        return r;
    if (o->common.shared.npcrs)
        return usage_error("--pcr: the reference values name the PCRs");
    if (optind + 2 != argc || strcmp(argv[optind], "take") != 0)
        return usage_error("expected: take HOST:PORT");
    o->target = argv[optind + 1];
    if (!o->container || !tm_uuid_valid(o->container))
        return usage_error("--container UUID is required");
    if (!o->container_reference)
        return usage_error("--container-reference CREFS.json is required");
    if (!o->auth_out)
        return usage_error("--auth-out FILE is required");
    if (o->common.shared.json)
        return usage_error("--json is not supported");
    return 0;
}

static int cmp_value(const void *a, const void *b)
{
    const struct refvalue *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : memcmp(x->sha256, y->sha256, 32);
}

/* The device's log names every vTPM it hosts (vtpm-ek events) and their recorded owners
 * (vtpm-owner); which vTPMs run beside the stakeholder's container, and whose they are, is not
 * the stakeholder's policy, so they are accepted as values. What
 * matters, this container's EK, is checked against the vTPM itself. */
static int accept_vtpm_eks(struct refvalues *refs, const Trustme__Attest__AttestResponse *resp)
{
    if (!refs || resp->body_case != TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE)
        return 0;
    const Trustme__Attest__Quote *q = resp->quote;
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        if (!e->type || (strcmp(e->type, "vtpm-ek") != 0 && strcmp(e->type, "vtpm-owner") != 0) || !e->name ||
            e->sha256.len != 32 || strlen(e->name) > TM_EVENT_NAME_MAX ||
            refvalues_contains(refs, e->type, e->sha256.data))
            continue;
        struct refvalue *v = realloc(refs->v, (refs->n + 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        refs->v = v;
        struct refvalue *nv = &v[refs->n++];
        memset(nv, 0, sizeof(*nv));
        snprintf(nv->type, sizeof(nv->type), "%s", e->type);
        snprintf(nv->name, sizeof(nv->name), "%s", e->name);
        memcpy(nv->sha256, e->sha256.data, 32);
        qsort(refs->v, refs->n, sizeof(*refs->v), cmp_value);
    }
    return 0;
}

/* Step 1: the device. On success *ret_d is the digest of this container's ECC EK as measured. */
static int check_device(const struct options *o, struct attest_inputs *in, uint8_t ret_d[32])
{
    tm_err err = {0};
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = attest_inputs_pcrs(in, NULL, 0, pcrs);
    uint8_t nonce[ATTEST_NONCE_LEN];
    uint64_t id;
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce) || getrandom(&id, sizeof(id), 0) != sizeof(id))
        return EXIT_UNREACHABLE;
    id &= UINT64_MAX >> 1;
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    if (attest_fetch(o->target, o->common.timeout_s * 1000, id, nonce, sizeof(nonce), pcrs, npcrs, &buf, &len, &err) <
        0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        return EXIT_UNREACHABLE;
    }
    Trustme__Attest__AttestResponse *resp = NULL;
    if (attest_response_decode(buf, len, &resp, &err) < 0) {
        step("device", false, "%s", err.msg);
        return EXIT_REFUSED;
    }
    if (!resp->has_id || resp->id != id) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        step("device", false, "the response's id is not the request's");
        return EXIT_REFUSED;
    }
    if (accept_vtpm_eks(in->refs, resp) < 0) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return EXIT_UNREACHABLE;
    }
    struct attest_policy pol = attest_inputs_policy(in, nonce, sizeof(nonce), pcrs, npcrs, false);
    if (o->common.has_expect_ak) {
        pol.expect_ak_name = o->common.expect_ak;
        pol.expect_ak_name_len = sizeof(o->common.expect_ak);
    }
    struct attest_report rep;
    attest_check_quote(resp->quote, &pol, &rep);
    if (!rep.trusted) {
        for (size_t i = 0; i < ATTEST_CHECK_COUNT; i++)
            if (!rep.checks[i].ok) {
                step("device", false, "%s: %s", rep.checks[i].name, rep.checks[i].detail);
                break;
            }
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return EXIT_REFUSED;
    }
    step("device", true, "trusted (%zu events, %s)", rep.events, rep.checks[ATTEST_CHECK_CHAIN].detail);
    char want[TM_EVENT_NAME_MAX + 1];
    snprintf(want, sizeof(want), "%s/ek-ecc", o->container);
    bool found = false;
    const Trustme__Attest__Quote *q = resp->quote;
    for (size_t i = 0; i < q->n_events; i++) {
        const Trustme__Attest__Event *e = q->events[i];
        if (e->type && strcmp(e->type, "vtpm-ek") == 0 && e->name && strcmp(e->name, want) == 0 &&
            e->sha256.len == 32) {
            /* A later event of the same name (a reset vTPM's new EK) wins. */
            memcpy(ret_d, e->sha256.data, 32);
            found = true;
        }
    }
    if (!found) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        step("vTPM on this device", false, "the device's log names no vTPM EK of container %s", o->container);
        return EXIT_REFUSED;
    }
    char hex[65];
    tm_hex(ret_d, 32, hex);
    step("vTPM on this device", true, "vtpm-ek %s = %s", want, hex);
    /* The PKI's word besides the device's: the EK certificate the device's vTPM issuer signed. */
    if (o->ek_cert) {
        _cleanup_free_ char *pem = NULL;
        size_t pem_len = 0;
        struct attest_check c;
        if (read_file(o->ek_cert, VERIFY_PEM_MAX, &pem, &pem_len, &err) < 0)
            c = (struct attest_check){.ok = false};
        else
            vtpm_ek_check(pem, pem_len, o->ek_cert, q, &pol, &rep, o->container, "ecc", &c);
        step("vTPM EK certificate", c.ok, "%s", pem ? c.detail : err.msg);
        if (!c.ok) {
            trustme__attest__attest_response__free_unpacked(resp, NULL);
            return EXIT_REFUSED;
        }
    }
    trustme__attest__attest_response__free_unpacked(resp, NULL);
    return 0;
}

static void sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static int name_of(const TPMT_PUBLIC *pub, uint8_t out[34])
{
    uint8_t buf[sizeof(TPMT_PUBLIC)];
    size_t off = 0;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
        return -EINVAL;
    out[0] = 0x00;
    out[1] = 0x0b;
    sha256(buf, off, out + 2);
    return 0;
}

/* The EK is the TCG default ECC template's key (L-2). */
static const char *ek_template_mismatch(const TPMT_PUBLIC *p)
{
    TPMA_OBJECT want = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256)
        return "not an ECC key with nameAlg SHA-256";
    if (p->objectAttributes != want)
        return "its attributes are not the EK template's";
    if (p->authPolicy.size != 32 || memcmp(p->authPolicy.buffer, ek_policy, 32) != 0)
        return "its policy is not PolicySecret(TPM_RH_ENDORSEMENT)";
    if (p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
        return "not NIST P-256";
    return NULL;
}

static const char *rc_text(TSS2_RC rc)
{
    return Tss2_RC_Decode(rc);
}

static bool rc_is_auth_failure(TSS2_RC rc)
{
    if (rc & 0xfff000) /* a layer other than the TPM's */
        return false;
    uint32_t base = (rc & 0x80) ? (rc & 0xbf) : rc;
    return base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_BAD_AUTH;
}

static int write_auth_file(const char *path, const char *uuid, const uint8_t ek_name[34],
                           const uint8_t auths[3][AUTH_LEN], tm_err *err)
{
    char l[2 * AUTH_LEN + 1], e[2 * AUTH_LEN + 1], o[2 * AUTH_LEN + 1], n[69];
    tm_hex(auths[0], AUTH_LEN, l);
    tm_hex(auths[1], AUTH_LEN, e);
    tm_hex(auths[2], AUTH_LEN, o);
    tm_hex(ek_name, 34, n);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return tm_err_sys(err, "--auth-out %s", path);
    char buf[512];
    int len = snprintf(buf, sizeof(buf),
                       "{\"container\": \"%s\", \"ek_name\": \"%s\", \"lockout\": \"%s\", "
                       "\"endorsement\": \"%s\", \"owner\": \"%s\"}\n",
                       uuid, n, l, e, o);
    explicit_bzero(l, sizeof(l));
    explicit_bzero(e, sizeof(e));
    explicit_bzero(o, sizeof(o));
    bool ok = write(fd, buf, (size_t)len) == len && fsync(fd) == 0;
    explicit_bzero(buf, sizeof(buf));
    if (!ok)
        return tm_err_sys(err, "--auth-out %s", path);
    return 0;
}

struct take {
    ESYS_CONTEXT *esys;
    ESYS_TR ek, session, policy, akv;
};

static void take_done(struct take *t)
{
    /* What this run loaded goes (tpmd flushes it too when the connection ends). */
    if (t->akv != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, t->akv);
    if (t->policy != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, t->policy);
    if (t->session != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, t->session);
    Esys_Finalize(&t->esys);
}

static int tpm_failed(struct relay *rl, const char *what, TSS2_RC rc)
{
    if (*relay_error(rl)) {
        step(what, false, "%s", relay_error(rl));
        return EXIT_UNREACHABLE;
    }
    step(what, false, "the vTPM or the relay answered %s (0x%x)", rc_text(rc), rc);
    return EXIT_REFUSED;
}

static int set_attrs(struct take *t, TPMA_SESSION attrs)
{
    return Esys_TRSess_SetAttributes(t->esys, t->session, attrs | TPMA_SESSION_CONTINUESESSION, 0xff) == TSS2_RC_SUCCESS
               ? 0
               : -EIO;
}

/* EvictControl(owner, AKv, VTPM_FLEET_KEY_HANDLE), after evicting whatever is there (a key of an
 * earlier run, or one the network put there while the vTPM had no owner); then the file. */
static int keep_fleet_key(const struct options *o, struct relay *rl, struct take *t, const TPMT_PUBLIC *akv,
                          const uint8_t akv_name[34])
{
    tm_err err = {0};
    if (set_attrs(t, 0) < 0)
        return EXIT_REFUSED;
    ESYS_TR old = ESYS_TR_NONE, kept = ESYS_TR_NONE;
    if (Esys_TR_FromTPMPublic(t->esys, FLEET_KEY_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &old) ==
        TSS2_RC_SUCCESS) {
        TSS2_RC rc = Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, old, t->session, ESYS_TR_NONE, ESYS_TR_NONE,
                                       FLEET_KEY_HANDLE, &kept);
        if (rc != TSS2_RC_SUCCESS)
            return tpm_failed(rl, "fleet key", rc);
    }
    TSS2_RC rc = Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, t->akv, t->session, ESYS_TR_NONE, ESYS_TR_NONE,
                                   FLEET_KEY_HANDLE, &kept);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_failed(rl, "fleet key", rc);
    uint8_t pub[sizeof(TPMT_PUBLIC)];
    size_t publen = 0;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(akv, pub, sizeof(pub), &publen) != TSS2_RC_SUCCESS)
        return EXIT_REFUSED;
    _cleanup_free_ char *pubhex = malloc(2 * publen + 1);
    char namehex[69];
    if (!pubhex)
        return EXIT_UNREACHABLE;
    tm_hex(pub, publen, pubhex);
    tm_hex(akv_name, 34, namehex);
    char text[2048];
    int n =
        snprintf(text, sizeof(text), "{\"container\": \"%s\", \"handle\": %u, \"name\": \"%s\", \"public\": \"%s\"}\n",
                 o->container, FLEET_KEY_HANDLE, namehex, pubhex);
    if (n < 0 || (size_t)n >= sizeof(text) || write_file_atomic(o->fleet_key, text, (size_t)n, 0644, &err) < 0) {
        fprintf(stderr, "trustme-owner: --fleet-key %s: %s\n", o->fleet_key, err.msg);
        return EXIT_USAGE;
    }
    step("fleet key", true, "AKv kept at 0x%x for trustme-fleet, written to %s", FLEET_KEY_HANDLE, o->fleet_key);
    return 0;
}

static int take_ownership(const struct options *o, const struct refvalues *crefs, const uint8_t d[32])
{
    tm_err err = {0};
    struct relay *rl = NULL;
    if (relay_open(o->target, o->container, o->common.timeout_s * 1000, &rl, &err) < 0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        return EXIT_UNREACHABLE;
    }
    struct take t = {.ek = ESYS_TR_NONE, .session = ESYS_TR_NONE, .policy = ESYS_TR_NONE, .akv = ESYS_TR_NONE};
    int ret = EXIT_REFUSED;
    TSS2_RC rc = Esys_Initialize(&t.esys, relay_tcti(rl), NULL);
    if (rc != TSS2_RC_SUCCESS) {
        fprintf(stderr, "trustme-owner: ESAPI: %s\n", rc_text(rc));
        relay_close(rl);
        return EXIT_UNREACHABLE;
    }
    TPM2B_PUBLIC *ekpub = NULL, *akvpub = NULL;
    TPM2B_NAME *ekname = NULL, *esys_ekname = NULL;
    TPM2B_DIGEST *cert = NULL;
    TPM2B_ATTEST *quoted = NULL;
    TPMT_SIGNATURE *sig = NULL;
    char *log = NULL;
    uint8_t auths[3][AUTH_LEN];
    memset(auths, 0, sizeof(auths));

    /* 2. The EK: its public area must hash to D, the device's vtpm-ek event; ESAPI salts the
     * session to the key it holds for that handle, so its name is compared too. */
    rc = Esys_TR_FromTPMPublic(t.esys, EK_ECC_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &t.ek);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_ReadPublic(t.esys, t.ek, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &ekpub, &ekname, NULL);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_TR_GetName(t.esys, t.ek, &esys_ekname);
    if (rc != TSS2_RC_SUCCESS) {
        ret = tpm_failed(rl, "vTPM EK", rc);
        goto out;
    }
    uint8_t want[34] = {0x00, 0x0b}, got[34];
    memcpy(want + 2, d, 32);
    const char *bad = ek_template_mismatch(&ekpub->publicArea);
    if (name_of(&ekpub->publicArea, got) < 0 || memcmp(got, want, 34) != 0 || esys_ekname->size != 34 ||
        memcmp(esys_ekname->name, want, 34) != 0) {
        step("vTPM EK", false, "the vTPM's EK at 0x%x is not the one the device measured", EK_ECC_HANDLE);
        goto out;
    }
    if (bad) {
        step("vTPM EK", false, "%s", bad);
        goto out;
    }
    step("vTPM EK", true, "0x%x, the measured key, TCG template L-2", EK_ECC_HANDLE);

    /* 3. A session salted to the EK: only this vTPM learns the salt. */
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
    rc = Esys_StartAuthSession(t.esys, t.ek, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_HMAC,
                               &sym, TPM2_ALG_SHA256, &t.session);
    if (rc != TSS2_RC_SUCCESS) {
        ret = tpm_failed(rl, "salted session", rc);
        goto out;
    }
    step("salted session", true, "HMAC session salted to the EK, AES-128-CFB parameter encryption");

    /* 4. AKv: a fresh restricted signing key, primary in the endorsement hierarchy (its auth
     * must still be empty: a vTPM with an owner refuses here), unique = a nonce of this run. */
    uint8_t n2[32], n3[32];
    if (getrandom(n2, 32, 0) != 32 || getrandom(n3, 32, 0) != 32)
        goto out;
    TPM2B_SENSITIVE_CREATE insens = {0};
    TPM2B_PUBLIC tmpl = {
        .publicArea = {
            .type = TPM2_ALG_ECC,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT,
            .parameters.eccDetail = {.symmetric.algorithm = TPM2_ALG_NULL,
                                     .scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256},
                                     .curveID = TPM2_ECC_NIST_P256,
                                     .kdf.scheme = TPM2_ALG_NULL},
        }};
    tmpl.publicArea.unique.ecc.x.size = 32;
    memcpy(tmpl.publicArea.unique.ecc.x.buffer, n2, 32);
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION nopcr = {0};
    if (set_attrs(&t, TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT) < 0)
        goto out;
    rc = Esys_CreatePrimary(t.esys, ESYS_TR_RH_ENDORSEMENT, t.session, ESYS_TR_NONE, ESYS_TR_NONE, &insens, &tmpl,
                            &outside, &nopcr, &t.akv, &akvpub, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        if (rc_is_auth_failure(rc)) {
            step("attestation key", false, "the vTPM's endorsement authorisation is set: it has an owner already (%s)",
                 rc_text(rc));
            goto out;
        }
        ret = tpm_failed(rl, "attestation key", rc);
        goto out;
    }
    uint8_t akv_name[34];
    if (name_of(&akvpub->publicArea, akv_name) < 0 ||
        memcmp(&akvpub->publicArea.objectAttributes, &tmpl.publicArea.objectAttributes, sizeof(TPMA_OBJECT)) != 0 ||
        akvpub->publicArea.type != TPM2_ALG_ECC) {
        step("attestation key", false, "the vTPM made another key than asked");
        goto out;
    }
    char akhex[69];
    tm_hex(akv_name, 34, akhex);
    step("attestation key", true, "AKv %s (endorsement hierarchy, fresh)", akhex);

    /* 5. Credential activation: the credential, sealed to the EK and bound to AKv's name, comes
     * back only if AKv lives in the same TPM as the EK. */
    uint8_t cred[32];
    if (getrandom(cred, 32, 0) != 32)
        goto out;
    TPM2B_NAME akv_tname = {.size = 34};
    memcpy(akv_tname.name, akv_name, 34);
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET secret;
    if (makecred_ecc(&ekpub->publicArea, &akv_tname, cred, sizeof(cred), &blob, &secret, &err) < 0) {
        step("credential", false, "%s", err.msg);
        goto out;
    }
    TPMT_SYM_DEF nosym = {.algorithm = TPM2_ALG_NULL};
    rc = Esys_StartAuthSession(t.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                               TPM2_SE_POLICY, &nosym, TPM2_ALG_SHA256, &t.policy);
    if (rc == TSS2_RC_SUCCESS && set_attrs(&t, TPMA_SESSION_ENCRYPT) < 0)
        rc = TSS2_ESYS_RC_GENERAL_FAILURE;
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_PolicySecret(t.esys, ESYS_TR_RH_ENDORSEMENT, t.policy, t.session, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                               NULL, NULL, 0, NULL, NULL);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_ActivateCredential(t.esys, t.akv, t.ek, t.session, t.policy, ESYS_TR_NONE, &blob, &secret, &cert);
    t.policy = ESYS_TR_NONE; /* used up: the TPM flushed it */
    if (rc != TSS2_RC_SUCCESS) {
        ret = tpm_failed(rl, "credential", rc);
        goto out;
    }
    if (cert->size != sizeof(cred) || memcmp(cert->buffer, cred, sizeof(cred)) != 0) {
        step("credential", false, "the vTPM released another credential");
        goto out;
    }
    step("credential", true, "activated: AKv is in the vTPM that holds the EK");

    /* 6. The container: the vTPM's quote by AKv over a fresh nonce, and its event log. */
    TPM2B_DATA qdata = {.size = 32};
    memcpy(qdata.buffer, n3, 32);
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    for (size_t i = 0; i < crefs->npcrs; i++)
        sel.pcrSelections[0].pcrSelect[crefs->pcrs[i] / 8] |= (uint8_t)(1u << (crefs->pcrs[i] % 8));
    if (set_attrs(&t, TPMA_SESSION_ENCRYPT) < 0)
        goto out;
    rc = Esys_Quote(t.esys, t.akv, t.session, ESYS_TR_NONE, ESYS_TR_NONE, &qdata, &scheme, &sel, &quoted, &sig);
    if (rc != TSS2_RC_SUCCESS) {
        ret = tpm_failed(rl, "vTPM quote", rc);
        goto out;
    }
    size_t loglen = 0;
    if (relay_event_log(rl, &log, &loglen, &err) < 0) {
        step("container event log", false, "%s", err.msg);
        ret = EXIT_UNREACHABLE;
        goto out;
    }
    uint8_t pcr_values[24][32];
    size_t nev = 0;
    char why[1024] = "";
    int cr = vtpm_container_log_check(log, crefs, pcr_values, &nev, why, sizeof(why));
    if (cr < 0 && cr != -EKEYREJECTED && cr != -ENOENT) {
        step("container event log", false, "%s", why);
        goto out;
    }
    char qwhy[512] = "";
    if (vtpm_quote_check(quoted, sig, &akvpub->publicArea, akv_name, n3, &sel, pcr_values, qwhy, sizeof(qwhy)) < 0) {
        step("vTPM quote", false, "%s", qwhy);
        goto out;
    }
    step("vTPM quote", true, "signed by AKv over this run's nonce; the log replays to it");
    if (cr < 0) {
        step("container reference values", false, "%s", why);
        goto out;
    }
    step("container reference values", true, "%zu events, all approved (signer %s)", nev, crefs->signer);

    /* 6b. For trustme-fleet: AKv, proven beside the EK, kept at the fleet key's handle (owner
     * authorisation, still empty), so that a worker can have it quote without any hierarchy's
     * authorisation; its public part goes to the owner's file for `trustme-fleet vtpm-key`. */
    if (o->fleet_key && (ret = keep_fleet_key(o, rl, &t, &akvpub->publicArea, akv_name)) != 0)
        goto out;
    ret = EXIT_REFUSED;

    /* 7. Ownership: new auths, each crossing the relay only encrypted under the salted session
     * (newAuth is the command's first parameter). Lockout first: with it empty anyone could
     * TPM2_Clear the owner hierarchy. The values are saved before they are set. */
    if (getrandom(auths, sizeof(auths), 0) != sizeof(auths))
        goto out;
    if (write_auth_file(o->auth_out, o->container, want, (const uint8_t(*)[AUTH_LEN])auths, &err) < 0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        ret = EXIT_USAGE;
        goto out;
    }
    static const struct {
        ESYS_TR h;
        const char *name;
    } hier[3] = {{ESYS_TR_RH_LOCKOUT, "lockout"}, {ESYS_TR_RH_ENDORSEMENT, "endorsement"}, {ESYS_TR_RH_OWNER, "owner"}};
    if (set_attrs(&t, TPMA_SESSION_DECRYPT) < 0)
        goto out;
    for (int i = 0; i < 3; i++) {
        TPM2B_AUTH a = {.size = AUTH_LEN};
        memcpy(a.buffer, auths[i], AUTH_LEN);
        rc = Esys_HierarchyChangeAuth(t.esys, hier[i].h, t.session, ESYS_TR_NONE, ESYS_TR_NONE, &a);
        explicit_bzero(&a, sizeof(a));
        if (rc != TSS2_RC_SUCCESS) {
            char what[64];
            snprintf(what, sizeof(what), "%s authorisation", hier[i].name);
            ret = rc_is_auth_failure(rc)
                      ? (step(what, false, "the vTPM has an owner already (%s)", rc_text(rc)), EXIT_REFUSED)
                      : tpm_failed(rl, what, rc);
            goto out;
        }
    }
    step("ownership", true, "lockout, endorsement and owner authorisations set (%u TPM commands relayed)",
         relay_commands(rl));
    ret = 0;
out:
    explicit_bzero(auths, sizeof(auths));
    take_done(&t);
    Esys_Free(ekpub);
    Esys_Free(akvpub);
    Esys_Free(ekname);
    Esys_Free(esys_ekname);
    Esys_Free(cert);
    Esys_Free(quoted);
    Esys_Free(sig);
    free(log);
    relay_close(rl);
    return ret;
}

/* trustme-owner statement|release: sign one of the owner's statements. */
static int sign_statement(int argc, char **argv)
{
    enum { OPT_KEY = 256, OPT_CONTAINER, OPT_EK, OPT_KIND, OPT_OUT, OPT_VALUE };
    static const struct option opts[] = {{"owner-key", required_argument, NULL, OPT_KEY},
                                         {"container", required_argument, NULL, OPT_CONTAINER},
                                         {"ek", required_argument, NULL, OPT_EK},
                                         {"kind", required_argument, NULL, OPT_KIND},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"value", required_argument, NULL, OPT_VALUE},
                                         {NULL, 0, NULL, 0}};
    bool owner = strcmp(argv[1], "statement") == 0, refs = strcmp(argv[1], "refs") == 0;
    const char *key = NULL, *out = NULL, *kind = NULL;
    static struct owner_stmt s;
    s.type = owner ? OWNER_STMT_OWNER : refs ? OWNER_STMT_REFS : OWNER_STMT_RELEASE;
    bool have_ek = false;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_KEY: key = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_KIND: kind = optarg; break;
        case OPT_VALUE: {
            /* TYPE=SHA256-HEX */
            const char *eq = strchr(optarg, '=');
            struct owner_ref *v = &s.refs[s.nrefs];
            if (!refs || s.nrefs == OWNER_REFS_MAX || !eq || eq == optarg ||
                (size_t)(eq - optarg) > TM_EVENT_TYPE_MAX ||
                tm_hex_decode_str(eq + 1, v->sha256, 32, TM_HEX_ANY_CASE, NULL) < 0)
                return usage_error("--value: expected TYPE=SHA256 (64 hex digits), with refs, at most %d",
                                   OWNER_REFS_MAX);
            memcpy(v->type, optarg, (size_t)(eq - optarg));
            v->type[eq - optarg] = '\0';
            s.nrefs++;
            break;
        }
        case OPT_CONTAINER:
            if (!tm_uuid_valid(optarg))
                return usage_error("--container: expected a UUID");
            snprintf(s.container, sizeof(s.container), "%s", optarg);
            break;
        case OPT_EK:
            if (tm_hex_decode_str(optarg, s.ek, sizeof(s.ek), TM_HEX_ANY_CASE, NULL) < 0 || s.ek[0] || s.ek[1] != 0x0b)
                return usage_error("--ek: expected the EK's TPM name, 68 hex digits (000b...)");
            have_ek = true;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc || !key || !out || !s.container[0] || !have_ek)
        return usage_error("%s needs --owner-key, --container, --ek and --out", argv[1]);
    if (owner) {
        if (!kind || (strcmp(kind, "mandatory") != 0 && strcmp(kind, "discretionary") != 0))
            return usage_error("--kind mandatory|discretionary is required");
        s.mandatory = strcmp(kind, "mandatory") == 0;
    } else if (kind) {
        return usage_error("only a statement has a --kind");
    }
    if (refs && s.nrefs == 0)
        return usage_error("refs needs at least one --value TYPE=SHA256");
    tm_err err = {0};
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (owner_stmt_sign(&s, key, &text, &len, &err) < 0 || write_file_atomic(out, text, len, 0644, &err) < 0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        return EXIT_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 &&
        (strcmp(argv[1], "statement") == 0 || strcmp(argv[1], "release") == 0 || strcmp(argv[1], "refs") == 0))
        return sign_statement(argc, argv);
    struct options o = {0};
    int r = parse_options(argc, argv, &o);
    if (r)
        return r;
    signal(SIGPIPE, SIG_IGN);
    /* tss2 would log each refusal of the vTPM to stderr; the report says what failed. */
    setenv("TSS2_LOG", "all+NONE", 0);
    tm_err err = {0};
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = attest_opts_files(&o.common.shared);
    if (attest_inputs_load(&files, &in, &err) < 0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (!in.refs) {
        step("device reference values", false, "%s", in.refs_error);
        return EXIT_REFUSED;
    }
    /* The container's reference values: the stakeholder's own, signed under the same roles. */
    struct refvalues_files cf = {0};
    _cleanup_(refvalues_freep) struct refvalues *crefs = NULL;
    if (refvalues_read_files(o.container_reference, &cf, &err) < 0) {
        fprintf(stderr, "trustme-owner: %s\n", err.msg);
        return EXIT_USAGE;
    }
    struct refvalues_trust trust = {.anchors_pem = in.rim_anchors,
                                    .anchors_len = in.rim_anchors_len,
                                    .cas = &in.rim_cas,
                                    .crls_pem = in.crls,
                                    .crls_len = in.crls_len,
                                    .min_version = o.common.shared.min_version};
    r = refvalues_load(&cf, &trust, &crefs, &err);
    refvalues_files_done(&cf);
    if (r < 0) {
        step("container reference values", false, "%s", err.msg);
        return EXIT_REFUSED;
    }
    uint8_t d[32];
    if ((r = check_device(&o, &in, d)) != 0)
        return r;
    return take_ownership(&o, crefs, d);
}
