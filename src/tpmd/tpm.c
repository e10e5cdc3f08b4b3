/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tpm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tcti.h>

#include "cleanup.h"
#include "fileio.h"
#include "log.h"
#include "tpm_util.h"

#define NO ESYS_TR_NONE
#define KEY_FILE_MAX 4096

static void esys_freep(void *p)
{
    Esys_Free(*(void **)p);
}
#define _cleanup_esys_ _cleanup_(esys_freep)

/* ---- leftovers of a killed predecessor ---------------------------------------------------- */

/* TPM2_FlushContext sent as raw bytes: ESAPI only flushes handles it knows an ESYS_TR for, and
 * it cannot make one for a session another process started. Called before ESAPI sends anything
 * of its own, so the two never interleave. */
static TSS2_RC raw_flush(TSS2_TCTI_CONTEXT *tcti, TPM2_HANDLE h)
{
    uint8_t cmd[14] = {0x80,
                       0x01,
                       0,
                       0,
                       0,
                       sizeof(cmd),
                       0,
                       0,
                       0x01,
                       0x65,
                       (uint8_t)(h >> 24),
                       (uint8_t)(h >> 16),
                       (uint8_t)(h >> 8),
                       (uint8_t)h};
    TSS2_RC rc = Tss2_Tcti_Transmit(tcti, sizeof(cmd), cmd);
    if (rc != TSS2_RC_SUCCESS)
        return rc;
    uint8_t resp[64];
    size_t len = sizeof(resp);
    rc = Tss2_Tcti_Receive(tcti, &len, resp, TSS2_TCTI_TIMEOUT_BLOCK);
    if (rc != TSS2_RC_SUCCESS)
        return rc;
    if (len < 10)
        return TSS2_TCTI_RC_MALFORMED_RESPONSE;
    return (TSS2_RC)resp[6] << 24 | (TSS2_RC)resp[7] << 16 | (TSS2_RC)resp[8] << 8 | resp[9];
}

static bool handle_is(TPM2_HANDLE h, bool sessions)
{
    unsigned type = h >> 24;
    return sessions ? type == TPM2_HT_HMAC_SESSION || type == TPM2_HT_POLICY_SESSION : type == TPM2_HT_TRANSIENT;
}

/* tss2's TPM2_TRANSIENT_FIRST shifts 0x80, promoted to int, into the sign bit: undefined behaviour
 * (UBSan stops there). The same value, computed unsigned. */
#define TRANSIENT_FIRST ((TPM2_HC)TPM2_HT_TRANSIENT << TPM2_HR_SHIFT)

/* Flush every transient object, or every session (first: TPM2_LOADED_SESSION_FIRST or
 * TPM2_ACTIVE_SESSION_FIRST). Each round asks again from the start: what was flushed is gone, and
 * the TPM reports a saved session under its HMAC or policy session handle whichever range was
 * asked for, so a handle does not tell where the next page would start. */
static int flush_all(struct tpm *t, TPM2_HANDLE first, const char *what, tm_err *err)
{
    bool sessions = first >> 24 != TPM2_HT_TRANSIENT;
    unsigned flushed = 0;
    for (int round = 0; round < 64; round++) {
        TPMI_YES_NO more;
        _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
        TSS2_RC rc =
            Esys_GetCapability(t->esys, NO, NO, NO, TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
            return tpm_err(err, rc, "cannot list %s", what);
        const TPML_HANDLE *hl = &cap->data.handles;
        unsigned in_round = 0;
        for (UINT32 i = 0; i < hl->count; i++) {
            TPM2_HANDLE h = hl->handle[i];
            if (!handle_is(h, sessions))
                continue;
            rc = raw_flush(t->tcti, h);
            if (rc != TSS2_RC_SUCCESS)
                return tpm_err(err, rc, "cannot flush %s 0x%08x", what, h);
            in_round++;
        }
        if (in_round == 0)
            break;
        flushed += in_round;
    }
    if (flushed)
        log_info("flushed %u %s left behind by a previous tpmd", flushed, what);
    return 0;
}

/* ---- keys ----------------------------------------------------------------------------------- */

/* The TCG SRK template (TPM v2.0 Provisioning Guidance, ECC NIST P-256): the same owner seed
 * always yields the same key, so it is recreated at each start instead of being persisted. */
static const TPM2B_PUBLIC srk_template = {
    .publicArea =
        {
            .type = TPM2_ALG_ECC,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                                TPMA_OBJECT_DECRYPT,
            .parameters.eccDetail =
                {
                    .symmetric = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB},
                    .scheme = {.scheme = TPM2_ALG_NULL},
                    .curveID = TPM2_ECC_NIST_P256,
                    .kdf = {.scheme = TPM2_ALG_NULL},
                },
        },
};

/* noda: the AK's authValue is empty, there is nothing to guess, and a DA-protected AK stops
 * quoting whenever the TPM is in lockout (each unclean swtpm stop after its use counts as a
 * failure). An AK made before noda was added is still accepted (AK_ATTRIBUTES_OLD). */
#define AK_ATTRIBUTES_OLD                                                                                          \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
     TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)
#define AK_ATTRIBUTES (AK_ATTRIBUTES_OLD | TPMA_OBJECT_NODA)

/* An ECDSA P-256 signing key, SHA-256 its name and signature hash, with these attributes: the AK
 * and the keys it certifies differ only there. */
#define ECDSA_P256_TEMPLATE(attributes)                                                                              \
    {                                                                                                                \
        .publicArea = {                                                                                              \
            .type = TPM2_ALG_ECC,                                                                                    \
            .nameAlg = TPM2_ALG_SHA256,                                                                              \
            .objectAttributes = (attributes),                                                                        \
            .parameters.eccDetail = {.symmetric = {.algorithm = TPM2_ALG_NULL},                                      \
                                     .scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256}, \
                                     .curveID = TPM2_ECC_NIST_P256,                                                  \
                                     .kdf = {.scheme = TPM2_ALG_NULL}},                                              \
        },                                                                                                           \
    }

/* Restricted: the TPM signs only digests it computed itself over data that is not a forged
 * TPMS_ATTEST (docs/ATTESTATION.md "Device identity"). */
static const TPM2B_PUBLIC ak_template = ECDSA_P256_TEMPLATE(AK_ATTRIBUTES);

/* The TCG EK Credential Profile's template L-2 (ECC NIST P-256, low range): the same
 * endorsement seed always yields the same EK. Usable only through PolicySecret(TPM_RH_ENDORSEMENT)
 * (adminWithPolicy, no userWithAuth), a restricted decryption key: it decrypts credentials and
 * nothing else. */
static const TPM2B_PUBLIC ek_template = {
    .publicArea =
        {
            .type = TPM2_ALG_ECC,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
            .authPolicy = {.size = 32, .buffer = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                                  0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                                  0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa}},
            .parameters.eccDetail =
                {
                    .symmetric = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB},
                    .scheme = {.scheme = TPM2_ALG_NULL},
                    .curveID = TPM2_ECC_NIST_P256,
                    .kdf = {.scheme = TPM2_ALG_NULL},
                },
            .unique.ecc = {.x = {.size = 32}, .y = {.size = 32}},
        },
};

static int create_ek(struct tpm *t, ESYS_TR *ret, TPM2B_PUBLIC *ret_public, tm_err *err)
{
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation_pcr = {0};
    _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
    TSS2_RC rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, NO, NO, &sens, &ek_template,
                                    &outside, &creation_pcr, ret, &pub, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot create the endorsement key");
    if (ret_public)
        *ret_public = *pub;
    return 0;
}

int tpm_activate_credential(struct tpm *t, const TPM2B_ID_OBJECT *blob, const TPM2B_ENCRYPTED_SECRET *secret,
                            TPM2B_DIGEST *ret, tm_err *err)
{
    ESYS_TR ek = NO, session = NO;
    int r = create_ek(t, &ek, NULL, err);
    if (r < 0)
        return r;
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    _cleanup_esys_ TPM2B_DIGEST *cred = NULL;
    TSS2_RC rc =
        Esys_StartAuthSession(t->esys, NO, NO, NO, NO, NO, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &session);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "cannot start a policy session for the endorsement key");
        goto out;
    }
    rc = Esys_PolicySecret(t->esys, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, NO, NO, NULL, NULL, NULL, 0,
                           NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "TPM2_PolicySecret(endorsement) failed");
        goto out;
    }
    /* The TPM checks the blob's HMAC over the AK's name: a credential made for another key, or
     * to another TPM's EK, does not come out. */
    rc = Esys_ActivateCredential(t->esys, t->ak, ek, ESYS_TR_PASSWORD, session, NO, blob, secret, &cred);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc,
                    "TPM2_ActivateCredential failed (was the credential made for this "
                    "TPM's endorsement key and this attestation key?)");
        goto out;
    }
    *ret = *cred;
    explicit_bzero(cred, sizeof(*cred));
    r = 0;
out:
    tpm_flush(t->esys, &session);
    tpm_flush(t->esys, &ek);
    return r;
}

static int create_srk(struct tpm *t, tm_err *err)
{
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation_pcr = {0};
    TSS2_RC rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, NO, NO, &sens, &srk_template, &outside,
                                    &creation_pcr, &t->srk, NULL, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot create the storage primary key");
    /* The AK's parent: a quote's qualifiedSigner is H(parent's name || AK's name), which a
     * verifier can only recompute with this name (docs/ATTESTATION.md "qualifiedSigner"). */
    TPM2B_NAME *name = NULL;
    rc = Esys_TR_GetName(t->esys, t->srk, &name);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot read the storage primary key's name");
    t->srk_name = *name;
    Esys_Free(name);
    return 0;
}

static int write_marshalled(const char *path, const uint8_t *buf, size_t len, tm_err *err)
{
    return write_file_atomic(path, buf, len, 0600, err);
}

static int create_key(struct tpm *t, const TPM2B_PUBLIC *template, const char *what, const char *pub_path,
                      const char *priv_path, tm_err *err)
{
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation_pcr = {0};
    _cleanup_esys_ TPM2B_PRIVATE *priv = NULL;
    _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
    TSS2_RC rc = Esys_Create(t->esys, t->srk, ESYS_TR_PASSWORD, NO, NO, &sens, template, &outside, &creation_pcr, &priv,
                             &pub, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot create the %s", what);
    uint8_t buf[sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    size_t off = 0;
    if ((rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the %s", what);
    /* The .pub file is what marks the key as created: it is written last. */
    int r = write_marshalled(priv_path, buf, off, err);
    if (r < 0)
        return r;
    off = 0;
    if ((rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the %s", what);
    if ((r = write_marshalled(pub_path, buf, off, err)) < 0)
        return r;
    log_info("created the %s (%s)", what, pub_path);
    return 0;
}

static int create_ak(struct tpm *t, const char *pub_path, const char *priv_path, tm_err *err)
{
    return create_key(t, &ak_template, "attestation key", pub_path, priv_path, err);
}

static int read_key_file(const char *path, uint8_t **ret, size_t *ret_len, tm_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int r = read_file(path, KEY_FILE_MAX, &data, &len, err);
    if (r < 0)
        return r;
    *ret = (uint8_t *)data;
    *ret_len = len;
    return 0;
}

static int load_ak(struct tpm *t, const char *pub_path, const char *priv_path, tm_err *err)
{
    _cleanup_free_ uint8_t *pub_buf = NULL, *priv_buf = NULL;
    size_t pub_len, priv_len, off;
    int r;
    if ((r = read_key_file(pub_path, &pub_buf, &pub_len, err)) < 0 ||
        (r = read_key_file(priv_path, &priv_buf, &priv_len, err)) < 0)
        return r;
    TPM2B_PUBLIC pub = {0};
    TPM2B_PRIVATE priv = {0};
    off = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(pub_buf, pub_len, &off, &pub) != TSS2_RC_SUCCESS || off != pub_len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PUBLIC", pub_path);
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(priv_buf, priv_len, &off, &priv) != TSS2_RC_SUCCESS || off != priv_len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PRIVATE", priv_path);
    /* Whoever can write the data dir could swap in an unrestricted key: the quote's worth rests
     * on the AK being restricted, so check what we load. */
    const TPMT_PUBLIC *p = &pub.publicArea;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 ||
        (p->objectAttributes != AK_ATTRIBUTES && p->objectAttributes != AK_ATTRIBUTES_OLD) ||
        p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p->parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
        return tm_err_set(err, EBADMSG, "%s is not a restricted ECDSA P-256 signing key", pub_path);
    TSS2_RC rc = Esys_Load(t->esys, t->srk, ESYS_TR_PASSWORD, NO, NO, &priv, &pub, &t->ak);
    explicit_bzero(&priv, sizeof(priv));
    if (rc != TSS2_RC_SUCCESS) {
        tpm_err(err, rc, "cannot load the attestation key %s", pub_path);
        return tm_err_prefix(err,
                             "this TPM did not create it (was the TPM cleared, or its state "
                             "replaced?); to make a new AK remove %s, %s and ak-chain.pem and "
                             "provision the device again",
                             pub_path, priv_path);
    }
    t->ak_public = pub;
    if (p->objectAttributes == AK_ATTRIBUTES_OLD)
        log_warn("the attestation key %s is not noda: it stops quoting while the TPM is in "
                 "dictionary-attack lockout; provision a new one to change that",
                 pub_path);
    _cleanup_esys_ TPM2B_NAME *name = NULL;
    if ((rc = Esys_TR_GetName(t->esys, t->ak, &name)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot get the attestation key's name");
    t->ak_name = *name;
    return 0;
}

static int read_manufacturer(struct tpm *t, tm_err *err)
{
    TPMI_YES_NO more;
    _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
    TSS2_RC rc = Esys_GetCapability(t->esys, NO, NO, NO, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_MANUFACTURER, 1, &more, &cap);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot read the TPM manufacturer");
    const TPML_TAGGED_TPM_PROPERTY *p = &cap->data.tpmProperties;
    if (p->count < 1 || p->tpmProperty[0].property != TPM2_PT_MANUFACTURER)
        return tm_err_set(err, EIO, "the TPM did not report its manufacturer");
    uint32_t v = p->tpmProperty[0].value;
    /* Four ASCII characters, padded with NUL or space ("IBM\0", "INTC"). */
    size_t n = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        char c = (char)(v >> shift);
        if (c < 0x20 || c > 0x7e)
            break;
        t->manufacturer[n++] = c;
    }
    while (n > 0 && t->manufacturer[n - 1] == ' ')
        n--;
    t->manufacturer[n] = '\0';
    return 0;
}

/* ---- dictionary-attack protection ----------------------------------------------------------- */

int tpm_da_read(struct tpm *t, struct tpm_da *ret, tm_err *err)
{
    *ret = (struct tpm_da){0};
    TPMI_YES_NO more;
    _cleanup_esys_ TPMS_CAPABILITY_DATA *cap = NULL;
    TSS2_RC rc = Esys_GetCapability(t->esys, NO, NO, NO, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PERMANENT,
                                    TPM2_PT_LOCKOUT_RECOVERY - TPM2_PT_PERMANENT + 1, &more, &cap);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot read the TPM's dictionary-attack state");
    const TPML_TAGGED_TPM_PROPERTY *p = &cap->data.tpmProperties;
    for (UINT32 i = 0; i < p->count; i++) {
        uint32_t v = p->tpmProperty[i].value;
        switch (p->tpmProperty[i].property) {
        case TPM2_PT_PERMANENT: ret->in_lockout = v & TPMA_PERMANENT_INLOCKOUT; break;
        case TPM2_PT_LOCKOUT_COUNTER: ret->failures = v; break;
        case TPM2_PT_MAX_AUTH_FAIL: ret->max_tries = v; break;
        case TPM2_PT_LOCKOUT_INTERVAL: ret->recovery_s = v; break;
        default: break;
        }
    }
    return 0;
}

int tpm_da_reset(struct tpm *t, tm_err *err)
{
    /* The lockout hierarchy's auth as swtpm and a cleared TPM have it: empty. */
    TPM2B_AUTH empty = {0};
    TSS2_RC rc = Esys_TR_SetAuth(t->esys, ESYS_TR_RH_LOCKOUT, &empty);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_DictionaryAttackLockReset(t->esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD, NO, NO);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc,
                       "TPM2_DictionaryAttackLockReset with an empty lockout "
                       "authorization failed");
    return 0;
}

int tpm_open(struct tpm *t, const char *tcti, const char *data_dir, tm_err *err)
{
    *t = (struct tpm){.srk = NO, .ak = NO};
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot open the TPM (TCTI \"%s\")", tcti);
    int r;
    if ((rc = Esys_Initialize(&t->esys, t->tcti, NULL)) != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "cannot initialise ESAPI");
        goto fail;
    }
    /* A TPM that is already started answers TPM2_RC_INITIALIZE, which ESAPI reports as success:
     * safe for a hardware TPM and for an swtpm that outlived our predecessor. */
    if ((rc = Esys_Startup(t->esys, TPM2_SU_CLEAR)) != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "TPM2_Startup failed");
        goto fail;
    }
    if ((r = flush_all(t, TRANSIENT_FIRST, "transient objects", err)) < 0 ||
        (r = flush_all(t, TPM2_LOADED_SESSION_FIRST, "loaded sessions", err)) < 0 ||
        (r = flush_all(t, TPM2_ACTIVE_SESSION_FIRST, "saved sessions", err)) < 0 || (r = read_manufacturer(t, err)) < 0)
        goto fail;
    /* The EK's public part, for its certificate and the credential activation's bundle. A TPM
     * whose endorsement hierarchy has a password gives none: everything but enrollment works. */
    ESYS_TR ek = NO;
    tm_err ek_err = {0};
    if (create_ek(t, &ek, &t->ek_public, &ek_err) < 0) {
        if (tpm_connection_lost()) {
            *err = ek_err;
            r = -ENOTCONN;
            goto fail;
        }
        log_warn("%s: AK enrollment through credential activation is not possible", ek_err.msg);
        t->ek_public = (TPM2B_PUBLIC){0};
    }
    tpm_flush(t->esys, &ek);
    if ((r = create_srk(t, err)) < 0)
        goto fail;
    char pub_path[PATH_MAX], priv_path[PATH_MAX];
    snprintf(pub_path, sizeof(pub_path), "%s/ak.pub", data_dir);
    snprintf(priv_path, sizeof(priv_path), "%s/ak.priv", data_dir);
    struct stat st;
    if (stat(pub_path, &st) < 0 && errno == ENOENT && (r = create_ak(t, pub_path, priv_path, err)) < 0)
        goto fail;
    if ((r = load_ak(t, pub_path, priv_path, err)) < 0)
        goto fail;
    return 0;
fail:
    tpm_close(t, false);
    return r;
}

void tpm_close(struct tpm *t, bool shutdown)
{
    if (t->esys) {
        tpm_flush(t->esys, &t->ak);
        tpm_flush(t->esys, &t->srk);
        if (shutdown) {
            /* An orderly shutdown: without it the TPM counts the next start as an attack on
             * dictionary-attack protected keys (lockout counter) and loses its clock state. */
            TSS2_RC rc = Esys_Shutdown(t->esys, NO, NO, NO, TPM2_SU_CLEAR);
            if (rc != TSS2_RC_SUCCESS)
                log_warn("TPM2_Shutdown failed: %s", Tss2_RC_Decode(rc));
        }
        Esys_Finalize(&t->esys);
    }
    if (t->tcti)
        Tss2_TctiLdr_Finalize(&t->tcti);
    t->esys = NULL;
    t->tcti = NULL;
}

/* ---- PCRs ------------------------------------------------------------------------------------ */

static void set_selection(TPML_PCR_SELECTION *sel, uint32_t mask)
{
    *sel = (TPML_PCR_SELECTION){.count = 1};
    sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel->pcrSelections[0].sizeofSelect = 3;
    for (int i = 0; i < 3; i++)
        sel->pcrSelections[0].pcrSelect[i] = (uint8_t)(mask >> (8 * i));
}

int tpm_pcr_read(struct tpm *t, uint32_t mask, uint8_t values[TPM_PCR_COUNT][32], tm_err *err)
{
    uint32_t left = mask & ((1u << TPM_PCR_COUNT) - 1);
    /* A TPML_DIGEST holds 8 digests: the TPM answers with the first 8 selected and says which. */
    while (left) {
        TPML_PCR_SELECTION sel;
        set_selection(&sel, left);
        UINT32 counter;
        _cleanup_esys_ TPML_PCR_SELECTION *got = NULL;
        _cleanup_esys_ TPML_DIGEST *digests = NULL;
        TSS2_RC rc = Esys_PCR_Read(t->esys, NO, NO, NO, &sel, &counter, &got, &digests);
        if (rc != TSS2_RC_SUCCESS)
            return tpm_err(err, rc, "cannot read PCRs");
        uint32_t got_mask = 0;
        for (UINT32 b = 0; b < got->count; b++) {
            const TPMS_PCR_SELECTION *ps = &got->pcrSelections[b];
            if (ps->hash != TPM2_ALG_SHA256)
                continue;
            for (unsigned i = 0; i < ps->sizeofSelect && i < 3; i++)
                got_mask |= (uint32_t)ps->pcrSelect[i] << (8 * i);
        }
        got_mask &= left;
        size_t k = 0;
        for (unsigned i = 0; i < TPM_PCR_COUNT; i++) {
            if (!(got_mask & (1u << i)))
                continue;
            if (k >= digests->count || digests->digests[k].size != 32)
                return tm_err_set(err, EIO, "the TPM returned a malformed PCR read answer");
            memcpy(values[i], digests->digests[k++].buffer, 32);
        }
        if (got_mask == 0)
            return tm_err_set(err, EIO, "the TPM has no SHA-256 PCR bank with the PCRs asked for");
        left &= ~got_mask;
    }
    return 0;
}

int tpm_pcr_extend(struct tpm *t, uint32_t pcr, const uint8_t digest[32], tm_err *err)
{
    if (pcr >= TPM_PCR_COUNT)
        return tm_err_set(err, EINVAL, "PCR %u does not exist", pcr);
    TPML_DIGEST_VALUES v = {.count = 1};
    v.digests[0].hashAlg = TPM2_ALG_SHA256;
    memcpy(v.digests[0].digest.sha256, digest, 32);
    TSS2_RC rc = Esys_PCR_Extend(t->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, NO, NO, &v);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot extend PCR %u", pcr);
    return 0;
}

/* ---- signing ----------------------------------------------------------------------------------- */

static const TPMT_SIG_SCHEME ecdsa_sha256 = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};

/* The attestation's bytes and its signature, marshalled, as copies the caller frees. */
static int attest_out(const TPM2B_ATTEST *attest, const TPMT_SIGNATURE *sig, const char *what, uint8_t **ret_attest,
                      size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, tm_err *err)
{
    _cleanup_free_ uint8_t *sig_buf = malloc(sizeof(TPMT_SIGNATURE));
    _cleanup_free_ uint8_t *att_buf = malloc(attest->size);
    if (!sig_buf || !att_buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t sig_len = 0;
    TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sig_buf, sizeof(TPMT_SIGNATURE), &sig_len);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the %s signature", what);
    memcpy(att_buf, attest->attestationData, attest->size);
    *ret_attest_len = attest->size;
    *ret_attest = steal_ptr(att_buf);
    *ret_sig_len = sig_len;
    *ret_sig = steal_ptr(sig_buf);
    return 0;
}

int tpm_quote(struct tpm *t, uint32_t mask, const uint8_t *nonce, size_t nonce_len, uint8_t **ret_attest,
              size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, uint8_t pcr_digest[32], tm_err *err)
{
    TPM2B_DATA qualifying = {0};
    if (nonce_len > sizeof(qualifying.buffer))
        return tm_err_set(err, EINVAL, "nonce of %zu bytes is too long", nonce_len);
    qualifying.size = (UINT16)nonce_len;
    memcpy(qualifying.buffer, nonce, nonce_len);
    TPML_PCR_SELECTION sel;
    set_selection(&sel, mask);
    _cleanup_esys_ TPM2B_ATTEST *quoted = NULL;
    _cleanup_esys_ TPMT_SIGNATURE *sig = NULL;
    TSS2_RC rc = Esys_Quote(t->esys, t->ak, ESYS_TR_PASSWORD, NO, NO, &qualifying, &ecdsa_sha256, &sel, &quoted, &sig);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "TPM2_Quote failed");
    TPMS_ATTEST attest;
    size_t off = 0;
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(quoted->attestationData, quoted->size, &off, &attest) != TSS2_RC_SUCCESS ||
        attest.type != TPM2_ST_ATTEST_QUOTE || attest.attested.quote.pcrDigest.size != 32)
        return tm_err_set(err, EIO, "the TPM returned a malformed quote");
    memcpy(pcr_digest, attest.attested.quote.pcrDigest.buffer, 32);
    return attest_out(quoted, sig, "quote", ret_attest, ret_attest_len, ret_sig, ret_sig_len, err);
}

/* The digest and ticket of data hashed by the TPM: one TPM2_Hash for up to 1024 bytes, a hash
 * sequence beyond (TPM2B_MAX_BUFFER's size). */
static int tpm_hash(struct tpm *t, const uint8_t *data, size_t len, TPM2B_DIGEST **ret_digest,
                    TPMT_TK_HASHCHECK **ret_ticket, tm_err *err)
{
    TPM2B_MAX_BUFFER chunk;
    TSS2_RC rc;
    if (len <= sizeof(chunk.buffer)) {
        chunk.size = (UINT16)len;
        memcpy(chunk.buffer, data, len);
        rc = Esys_Hash(t->esys, NO, NO, NO, &chunk, TPM2_ALG_SHA256, ESYS_TR_RH_OWNER, ret_digest, ret_ticket);
        return rc == TSS2_RC_SUCCESS ? 0 : tpm_err(err, rc, "TPM2_Hash failed");
    }
    TPM2B_AUTH auth = {0};
    ESYS_TR seq = NO;
    if ((rc = Esys_HashSequenceStart(t->esys, NO, NO, NO, &auth, TPM2_ALG_SHA256, &seq)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "TPM2_HashSequenceStart failed");
    while (len > sizeof(chunk.buffer)) {
        chunk.size = sizeof(chunk.buffer);
        memcpy(chunk.buffer, data, chunk.size);
        if ((rc = Esys_SequenceUpdate(t->esys, seq, ESYS_TR_PASSWORD, NO, NO, &chunk)) != TSS2_RC_SUCCESS) {
            tpm_flush(t->esys, &seq);
            return tpm_err(err, rc, "TPM2_SequenceUpdate failed");
        }
        data += chunk.size;
        len -= chunk.size;
    }
    chunk.size = (UINT16)len;
    memcpy(chunk.buffer, data, len);
    rc =
        Esys_SequenceComplete(t->esys, seq, ESYS_TR_PASSWORD, NO, NO, &chunk, ESYS_TR_RH_OWNER, ret_digest, ret_ticket);
    if (rc != TSS2_RC_SUCCESS) {
        tpm_flush(t->esys, &seq); /* SequenceComplete flushes it only when it succeeds */
        return tpm_err(err, rc, "TPM2_SequenceComplete failed");
    }
    return 0;
}

static int put32(uint8_t out[32], const TPM2B_ECC_PARAMETER *p, tm_err *err)
{
    if (p->size > 32)
        return tm_err_set(err, EIO, "the TPM returned an ECDSA value of %u bytes", p->size);
    memset(out, 0, 32);
    memcpy(out + 32 - p->size, p->buffer, p->size);
    return 0;
}

/* The TPM's ECDSA signature as r and s, each big-endian and left-padded to 32 bytes. */
static int ecdsa_rs(const TPMT_SIGNATURE *sig, uint8_t r[32], uint8_t s[32], tm_err *err)
{
    if (sig->sigAlg != TPM2_ALG_ECDSA)
        return tm_err_set(err, EIO, "the TPM returned a signature of algorithm 0x%x", sig->sigAlg);
    int ret;
    if ((ret = put32(r, &sig->signature.ecdsa.signatureR, err)) < 0 ||
        (ret = put32(s, &sig->signature.ecdsa.signatureS, err)) < 0)
        return ret;
    return 0;
}

int tpm_sign_data(struct tpm *t, const uint8_t *data, size_t len, uint8_t r[32], uint8_t s[32], tm_err *err)
{
    return tpm_sign_data_with(t, t->ak, data, len, r, s, err);
}

int tpm_sign_data_with(struct tpm *t, ESYS_TR key, const uint8_t *data, size_t len, uint8_t r[32], uint8_t s[32],
                       tm_err *err)
{
    _cleanup_esys_ TPM2B_DIGEST *digest = NULL;
    _cleanup_esys_ TPMT_TK_HASHCHECK *ticket = NULL;
    _cleanup_esys_ TPMT_SIGNATURE *sig = NULL;
    int ret = tpm_hash(t, data, len, &digest, &ticket, err);
    if (ret < 0)
        return ret;
    TSS2_RC rc = Esys_Sign(t->esys, key, ESYS_TR_PASSWORD, NO, NO, digest, &ecdsa_sha256, ticket, &sig);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "TPM2_Sign with the %s failed", key == t->ak ? "attestation key" : "vTPM-issuing key");
    return ecdsa_rs(sig, r, s, err);
}

int tpm_ak_public_marshal(const struct tpm *t, uint8_t **ret, size_t *ret_len, tm_err *err)
{
    _cleanup_free_ uint8_t *buf = malloc(sizeof(TPMT_PUBLIC));
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t off = 0;
    TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Marshal(&t->ak_public.publicArea, buf, sizeof(TPMT_PUBLIC), &off);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the attestation key");
    *ret = steal_ptr(buf);
    *ret_len = off;
    return 0;
}

/* ---- TPM-held signing keys: the TLS client key and the vTPM-issuing key ---------------------- */

/* Not restricted: the TLS key signs whatever digest a handshake needs, the vTPM-issuing key the
 * TBS of vTPM EK certificates (docs/VTPM.md "EK certificates"), neither of them digests the TPM
 * made; signing only (no decrypt). fixedTPM, fixedParent and sensitiveDataOrigin: made in this
 * TPM and never outside it, which the AK certifies (TPM2_Certify) for the Device CA. noda as the
 * AK: its authValue is empty. */
#define SIGNING_KEY_ATTRIBUTES                                                                                     \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
     TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT)

static const TPM2B_PUBLIC signing_key_template = ECDSA_P256_TEMPLATE(SIGNING_KEY_ATTRIBUTES);

/* A signing key the AK certifies (the TLS client key, the vTPM-issuing key): its files
 * data_dir/<file>.pub, .priv, its name in messages, and what to say when it is not made yet and
 * the caller does not make it. */
struct signing_key {
    const char *file;
    const char *what;
    const char *missing;
};
static const struct signing_key tls_key = {"tls", "TLS client key", NULL};
static const struct signing_key issuer_key = {TPM_ISSUER_FILE, "vTPM-issuing key",
                                              "there is no vTPM-issuing key yet (`trustme device csr --vtpm-issuer`)"};

/* The key's public area, read and checked without the TPM. */
static int signing_key_public(const struct signing_key *k, const char *data_dir, TPM2B_PUBLIC *ret, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.pub", data_dir, k->file);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len, off = 0;
    int r = read_key_file(path, &buf, &len, err);
    if (r < 0)
        return r;
    *ret = (TPM2B_PUBLIC){0};
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, len, &off, ret) != TSS2_RC_SUCCESS || off != len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PUBLIC", path);
    const TPMT_PUBLIC *p = &ret->publicArea;
    /* Whoever can write the data dir could swap in a key that can leave the TPM. */
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 || p->objectAttributes != SIGNING_KEY_ATTRIBUTES ||
        p->authPolicy.size != 0 || p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p->parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
        return tm_err_set(err, EBADMSG, "%s is not the %s's kind of key", path, k->what);
    return 0;
}

/* Load the key (made at its first use when create; else ENOENT with k->missing). Loaded for one
 * operation only: swtpm holds three transient objects, and SRK and AK are two of them. */
static int signing_key_load(struct tpm *t, const struct signing_key *k, const char *data_dir, bool create, ESYS_TR *ret,
                            TPM2B_PUBLIC *ret_public, tm_err *err)
{
    char pub_path[PATH_MAX], priv_path[PATH_MAX];
    snprintf(pub_path, sizeof(pub_path), "%s/%s.pub", data_dir, k->file);
    snprintf(priv_path, sizeof(priv_path), "%s/%s.priv", data_dir, k->file);
    struct stat st;
    int r;
    if (stat(pub_path, &st) < 0 && errno == ENOENT) {
        if (!create)
            return tm_err_set(err, ENOENT, "%s", k->missing);
        if ((r = create_key(t, &signing_key_template, k->what, pub_path, priv_path, err)) < 0)
            return r;
    }
    TPM2B_PUBLIC pub;
    if ((r = signing_key_public(k, data_dir, &pub, err)) < 0)
        return r;
    _cleanup_free_ uint8_t *priv_buf = NULL;
    size_t priv_len, off = 0;
    if ((r = read_key_file(priv_path, &priv_buf, &priv_len, err)) < 0)
        return r;
    TPM2B_PRIVATE priv = {0};
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(priv_buf, priv_len, &off, &priv) != TSS2_RC_SUCCESS || off != priv_len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PRIVATE", priv_path);
    TSS2_RC rc = Esys_Load(t->esys, t->srk, ESYS_TR_PASSWORD, NO, NO, &priv, &pub, ret);
    explicit_bzero(&priv, sizeof(priv));
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot load the %s %s (made by another TPM? remove %s and %s to make a new one)",
                       k->what, pub_path, pub_path, priv_path);
    *ret_public = pub;
    return 0;
}

static int tls_load(struct tpm *t, const char *data_dir, ESYS_TR *ret, tm_err *err)
{
    return signing_key_load(t, &tls_key, data_dir, true, ret, &t->tls_public, err);
}

int tpm_tls_public(struct tpm *t, const char *data_dir, TPM2B_PUBLIC *ret, tm_err *err)
{
    ESYS_TR k = NO;
    int r = tls_load(t, data_dir, &k, err);
    tpm_flush(t->esys, &k);
    if (r == 0)
        *ret = t->tls_public;
    return r;
}

int tpm_tls_sign(struct tpm *t, const char *data_dir, const uint8_t digest[32], uint8_t r[32], uint8_t s[32],
                 tm_err *err)
{
    ESYS_TR k = NO;
    int ret = tls_load(t, data_dir, &k, err);
    if (ret < 0)
        return ret;
    TPM2B_DIGEST d = {.size = 32};
    memcpy(d.buffer, digest, 32);
    /* A key that is not restricted needs no ticket: the NULL ticket. */
    TPMT_TK_HASHCHECK none = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
    _cleanup_esys_ TPMT_SIGNATURE *sig = NULL;
    TSS2_RC rc = Esys_Sign(t->esys, k, ESYS_TR_PASSWORD, NO, NO, &d, &ecdsa_sha256, &none, &sig);
    tpm_flush(t->esys, &k);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "TPM2_Sign with the TLS client key failed");
    return ecdsa_rs(sig, r, s, err);
}

int tpm_tls_certify(struct tpm *t, const char *data_dir, const uint8_t *qualifying, size_t qualifying_len,
                    uint8_t **ret_attest, size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, tm_err *err)
{
    ESYS_TR k = NO;
    int r = tls_load(t, data_dir, &k, err);
    if (r < 0)
        return r;
    r = tpm_certify(t, k, qualifying, qualifying_len, ret_attest, ret_attest_len, ret_sig, ret_sig_len, err);
    tpm_flush(t->esys, &k);
    return r;
}

int tpm_issuer_public(const char *data_dir, TPM2B_PUBLIC *ret, tm_err *err)
{
    return signing_key_public(&issuer_key, data_dir, ret, err);
}

int tpm_issuer_load(struct tpm *t, const char *data_dir, bool create, ESYS_TR *ret, TPM2B_PUBLIC *ret_public,
                    tm_err *err)
{
    return signing_key_load(t, &issuer_key, data_dir, create, ret, ret_public, err);
}

int tpm_certify(struct tpm *t, ESYS_TR object, const uint8_t *qualifying, size_t qualifying_len, uint8_t **ret_attest,
                size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, tm_err *err)
{
    TPM2B_DATA q = {0};
    if (qualifying_len > sizeof(q.buffer))
        return tm_err_set(err, EINVAL, "qualifying data of %zu bytes is too long", qualifying_len);
    q.size = (UINT16)qualifying_len;
    memcpy(q.buffer, qualifying, qualifying_len);
    _cleanup_esys_ TPM2B_ATTEST *info = NULL;
    _cleanup_esys_ TPMT_SIGNATURE *sig = NULL;
    TSS2_RC rc =
        Esys_Certify(t->esys, object, t->ak, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, NO, &q, &ecdsa_sha256, &info, &sig);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "TPM2_Certify by the attestation key failed");
    return attest_out(info, sig, "certification's", ret_attest, ret_attest_len, ret_sig, ret_sig_len, err);
}
