/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "seal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "tpm_util.h"

#define BLOB_NAME "secret.blob"
#define RECOVERY_NAME "recovery-key"
#define DIGEST_LEN 32

/* The sealed data object:
 * - fixedTPM, fixedParent: it opens in this TPM under this SRK only.
 * - no userWithAuth: the recovery key (its authValue) is usable only through the policy's
 *   PolicyAuthValue branch, never as a plain password, so the PCR binding cannot be bypassed
 *   by anything but that documented branch.
 * - adminWithPolicy: admin actions (ObjectChangeAuth, Certify) need a policy with
 *   PolicyCommandCode, which this policy has none of: nobody can change the recovery key.
 * - noda: the recovery key is 256 random bits, so guessing it is hopeless with or without
 *   dictionary-attack protection, while with it a few wrong keys (an operator's typo, a test)
 *   would put the whole TPM into lockout and stop every DA-protected key, the attestation key
 *   included, for the lockout recovery time.
 * sensitiveDataOrigin stays clear: we supply the data. */
#define SEALED_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_NODA)

/* secret.blob holds the object and the PCR branch of its policy. The branch digest is needed to
 * satisfy PolicyOR (which takes every branch) and cannot be recomputed after the PCR has
 * changed, which is exactly when the recovery branch is used. It is public: a changed digest only
 * makes PolicyOR produce another digest, and the object then refuses to unseal. */
struct blob {
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TPM2B_DIGEST pcr_branch;
};

/* --- policy digests, computed in software (TPM 2.0 Part 3, the Policy* commands) --- */

/* digest = SHA-256(digest || cc || a || b) */
static void policy_update(uint8_t digest[DIGEST_LEN], TPM2_CC cc, const void *a, size_t alen, const void *b,
                          size_t blen)
{
    uint8_t ccbe[4] = {(uint8_t)(cc >> 24), (uint8_t)(cc >> 16), (uint8_t)(cc >> 8), (uint8_t)cc};
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, digest, DIGEST_LEN);
    tm_sha256_update(&c, ccbe, sizeof(ccbe));
    if (alen)
        tm_sha256_update(&c, a, alen);
    if (blen)
        tm_sha256_update(&c, b, blen);
    tm_sha256_final(&c, digest);
}

static TPML_PCR_SELECTION pcr_selection(uint32_t pcr)
{
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    sel.pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << (pcr % 8));
    return sel;
}

static void auth_branch(uint8_t out[DIGEST_LEN])
{
    memset(out, 0, DIGEST_LEN);
    policy_update(out, TPM2_CC_PolicyAuthValue, NULL, 0, NULL, 0);
}

static void or_digest(const uint8_t pcr[DIGEST_LEN], uint8_t out[DIGEST_LEN])
{
    uint8_t auth[DIGEST_LEN];
    auth_branch(auth);
    memset(out, 0, DIGEST_LEN);
    policy_update(out, TPM2_CC_PolicyOR, pcr, DIGEST_LEN, auth, DIGEST_LEN);
}

/* PolicyPCR(sha256:pcr = its current value), as a branch digest. Read and hashed here rather
 * than in a trial session: one TPM command instead of three plus a session to flush. */
static int pcr_branch_now(ESYS_CONTEXT *esys, uint32_t pcr, uint8_t out[DIGEST_LEN], tm_err *err)
{
    TPML_PCR_SELECTION sel = pcr_selection(pcr), *sel_out = NULL;
    TPML_DIGEST *values = NULL;
    TSS2_RC rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL, &sel_out, &values);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot read PCR %u", pcr);
    int r = 0;
    if (values->count != 1 || values->digests[0].size != DIGEST_LEN || sel_out->count != 1 ||
        memcmp(&sel_out->pcrSelections[0], &sel.pcrSelections[0], sizeof(sel.pcrSelections[0])))
        r = tm_err_set(err, EINVAL, "the TPM has no PCR %u in its SHA-256 bank", pcr);
    else {
        uint8_t pcr_digest[DIGEST_LEN];
        tm_sha256(values->digests[0].buffer, DIGEST_LEN, pcr_digest);
        uint8_t sel_buf[sizeof(TPML_PCR_SELECTION)];
        size_t sel_len = 0;
        rc = Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, sel_buf, sizeof(sel_buf), &sel_len);
        if (rc != TSS2_RC_SUCCESS)
            r = tpm_err(err, rc, "cannot marshal a PCR selection");
        else {
            memset(out, 0, DIGEST_LEN);
            policy_update(out, TPM2_CC_PolicyPCR, sel_buf, sel_len, pcr_digest, DIGEST_LEN);
        }
    }
    Esys_Free(sel_out);
    Esys_Free(values);
    return r;
}

/* --- TPM response codes --- */

/* The response code without the parameter/handle/session number of a format-one code, for
 * comparing with TPM2_RC_* constants; 0 for errors of the TSS itself. */
static TSS2_RC tpm_rc_base(TSS2_RC rc)
{
    if (rc & TSS2_RC_LAYER_MASK)
        return 0;
    rc &= 0xffff;
    return (rc & TPM2_RC_FMT1) ? ((rc & 0xbf) | TPM2_RC_FMT1) : rc;
}

static int sealed_elsewhere(tm_err *err, uint32_t pcr)
{
    return tm_err_set(err, EACCES,
                      "the device storage secret is sealed to another boot state: PCR %u differs "
                      "from its value when sealed (the virtualization layer — trustmed, "
                      "trustme-scd, trustme-tpmd or device.json — measures differently); after an "
                      "authorised update run `trustme device reseal --recovery-key-file FILE` "
                      "(docs/ATTESTATION.md)",
                      pcr);
}

/* --- sessions --- */

/* A session salted with the SRK, with AES-128-CFB parameter encryption if attrs asks for it
 * (ENCRYPT for the response, DECRYPT for the command): the secret and the recovery key then
 * never cross the bus to a hardware TPM in the clear. The owner hierarchy's auth is empty (swtpm's default; a
 * device that sets an owner password would have to give it to tpmd), so the SRK's auth is
 * empty too and its HMAC protects integrity only; the salt is what keeps the session key
 * secret. */
static int start_session(ESYS_CONTEXT *esys, ESYS_TR srk, TPM2_SE type, TPMA_SESSION attrs, ESYS_TR *ret, tm_err *err)
{
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
    ESYS_TR s = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, type,
                                       &sym, TPM2_ALG_SHA256, &s);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot start a TPM session");
    /* continueSession: the session is flushed by us on every path, never implicitly, so the
     * handle is always ours to flush. */
    rc = Esys_TRSess_SetAttributes(esys, s, attrs | TPMA_SESSION_CONTINUESESSION, 0xff);
    if (rc != TSS2_RC_SUCCESS) {
        tpm_flush(esys, &s);
        return tpm_err(err, rc, "cannot set session attributes");
    }
    *ret = s;
    return 0;
}

/* --- secret.blob --- */

static int blob_read(const char *path, struct blob *b, tm_err *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = read_file(path, sizeof(struct blob), &data, &len, err);
    if (r < 0)
        return r;
    memset(b, 0, sizeof(*b));
    size_t off = 0;
    const uint8_t *p = (const uint8_t *)data;
    TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(p, len, &off, &b->pub);
    /* The unmarshaller parses the structure inside TPM2B_PUBLIC without checking that it
     * fills the size in front of it. */
    if (rc == TSS2_RC_SUCCESS && off != sizeof(uint16_t) + b->pub.size)
        return tm_err_set(err, EBADMSG, "%s is corrupt: its public area is not %u bytes", path, (unsigned)b->pub.size);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(p, len, &off, &b->priv);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_DIGEST_Unmarshal(p, len, &off, &b->pcr_branch);
    if (rc != TSS2_RC_SUCCESS)
        return tm_err_set(err, EBADMSG, "%s is corrupt: %s", path, Tss2_RC_Decode(rc));
    if (off != len)
        return tm_err_set(err, EBADMSG, "%s is corrupt: %zu bytes after its end", path, len - off);

    const TPMT_PUBLIC *pa = &b->pub.publicArea;
    if (pa->type != TPM2_ALG_KEYEDHASH || pa->nameAlg != TPM2_ALG_SHA256 || pa->objectAttributes != SEALED_ATTRS ||
        pa->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL)
        return tm_err_set(err, EBADMSG, "%s is corrupt: not a sealed data object of trustme", path);
    uint8_t expect[DIGEST_LEN];
    if (b->pcr_branch.size != DIGEST_LEN || pa->authPolicy.size != DIGEST_LEN ||
        (or_digest(b->pcr_branch.buffer, expect), memcmp(expect, pa->authPolicy.buffer, DIGEST_LEN) != 0))
        return tm_err_set(err, EBADMSG, "%s is corrupt: its policy digests do not match", path);
    return 0;
}

static int blob_write(const char *path, const struct blob *b, tm_err *err)
{
    uint8_t buf[sizeof(struct blob)];
    size_t off = 0;
    TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Marshal(&b->pub, buf, sizeof(buf), &off);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_PRIVATE_Marshal(&b->priv, buf, sizeof(buf), &off);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_DIGEST_Marshal(&b->pcr_branch, buf, sizeof(buf), &off);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal %s", path);
    /* Everything in it is public or TPM-encrypted; 0600 anyway, like the rest of tpmd's data. */
    return write_file_atomic(path, buf, off, 0600, err);
}

/* --- the TPM operations --- */

/* TPM2_GetRandom XOR getrandom(): the secret is as good as the better of the two sources. */
static int make_secret(ESYS_CONTEXT *esys, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_random(SEALED_SECRET_LEN, &s, err);
    if (r < 0)
        return r;
    for (size_t done = 0; done < SEALED_SECRET_LEN;) {
        TPM2B_DIGEST *rnd = NULL;
        TSS2_RC rc =
            Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, (UINT16)(SEALED_SECRET_LEN - done), &rnd);
        if (rc != TSS2_RC_SUCCESS)
            return tpm_err(err, rc, "TPM2_GetRandom failed");
        /* A TPM may return fewer bytes than asked (at most one digest's worth). */
        size_t n = rnd->size;
        if (n > SEALED_SECRET_LEN - done)
            n = SEALED_SECRET_LEN - done;
        for (size_t i = 0; i < n; i++)
            s->data[done + i] ^= rnd->buffer[i];
        explicit_bzero(rnd, sizeof(*rnd));
        Esys_Free(rnd);
        if (n == 0)
            return tm_err_set(err, EIO, "TPM2_GetRandom returned no bytes");
        done += n;
    }
    *ret = steal_ptr(s);
    return 0;
}

/* Seal secret with authValue recovery_key under srk, to boot PCR's current value. */
static int seal(ESYS_CONTEXT *esys, ESYS_TR srk, uint32_t pcr, const struct secret *secret,
                const struct secret *recovery_key, struct blob *ret, tm_err *err)
{
    struct blob b = {0};
    int r = pcr_branch_now(esys, pcr, b.pcr_branch.buffer, err);
    if (r < 0)
        return r;
    b.pcr_branch.size = DIGEST_LEN;

    TPM2B_PUBLIC tmpl = {
        .publicArea =
            {
                .type = TPM2_ALG_KEYEDHASH,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = SEALED_ATTRS,
                .authPolicy = {.size = DIGEST_LEN},
                .parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL,
            },
    };
    or_digest(b.pcr_branch.buffer, tmpl.publicArea.authPolicy.buffer);

    ESYS_TR sess = ESYS_TR_NONE;
    r = start_session(esys, srk, TPM2_SE_HMAC, TPMA_SESSION_DECRYPT, &sess, err);
    if (r < 0)
        return r;

    TPM2B_SENSITIVE_CREATE sens = {0};
    sens.sensitive.userAuth.size = RECOVERY_KEY_LEN;
    memcpy(sens.sensitive.userAuth.buffer, recovery_key->data, RECOVERY_KEY_LEN);
    sens.sensitive.data.size = SEALED_SECRET_LEN;
    memcpy(sens.sensitive.data.buffer, secret->data, SEALED_SECRET_LEN);
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation_pcr = {0};
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_CREATION_DATA *cdata = NULL;
    TPM2B_DIGEST *chash = NULL;
    TPMT_TK_CREATION *ticket = NULL;
    TSS2_RC rc = Esys_Create(esys, srk, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside, &creation_pcr, &priv,
                             &pub, &cdata, &chash, &ticket);
    explicit_bzero(&sens, sizeof(sens));
    tpm_flush(esys, &sess);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot seal the device storage secret");
    b.pub = *pub;
    b.priv = *priv;
    Esys_Free(priv);
    Esys_Free(pub);
    Esys_Free(cdata);
    Esys_Free(chash);
    Esys_Free(ticket);
    *ret = b;
    return 0;
}

/* Unseal through the PCR branch (recovery_key NULL) or the recovery branch. */
static int unseal(ESYS_CONTEXT *esys, ESYS_TR srk, const char *path, const struct blob *b, uint32_t pcr,
                  const struct secret *recovery_key, struct secret **ret, tm_err *err)
{
    ESYS_TR obj = ESYS_TR_NONE, sess = ESYS_TR_NONE, enc = ESYS_TR_NONE;
    TPM2B_SENSITIVE_DATA *data = NULL;
    _cleanup_secret_ struct secret *s = NULL;
    int r = 0;

    TSS2_RC rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &b->priv, &b->pub, &obj);
    if (rc != TSS2_RC_SUCCESS) {
        /* Format-one codes (integrity, size, value, ...) are about the blob: it was damaged
         * or was sealed by another TPM or SRK. Warnings (out of memory) are not. */
        if (tpm_rc_base(rc) & TPM2_RC_FMT1)
            r = tm_err_set(err, EBADMSG,
                           "%s does not load under this TPM's storage key (%s): it is corrupt or "
                           "was sealed by another TPM",
                           path, Tss2_RC_Decode(rc));
        else
            r = tpm_err(err, rc, "cannot load %s", path);
        goto out;
    }

    /* The unsealed secret is encrypted by a session of its own. Were the policy session to
     * encrypt it, the TPM would mix the object's authValue (the recovery key) into the
     * encryption key even on the PCR branch, where we do not know it. */
    if ((r = start_session(esys, srk, TPM2_SE_POLICY, 0, &sess, err)) < 0 ||
        (r = start_session(esys, srk, TPM2_SE_HMAC, TPMA_SESSION_ENCRYPT, &enc, err)) < 0)
        goto out;

    if (recovery_key) {
        rc = Esys_PolicyAuthValue(esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE);
    } else {
        /* An empty pcrDigest: the TPM extends the policy with the PCR's current value. */
        TPML_PCR_SELECTION sel = pcr_selection(pcr);
        TPM2B_DIGEST current = {.size = 0};
        rc = Esys_PolicyPCR(esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &current, &sel);
    }
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "policy of %s", path);
        goto out;
    }

    TPML_DIGEST branches = {.count = 2};
    branches.digests[0] = b->pcr_branch;
    branches.digests[1].size = DIGEST_LEN;
    auth_branch(branches.digests[1].buffer);
    rc = Esys_PolicyOR(esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &branches);
    if (rc != TSS2_RC_SUCCESS) {
        /* TPM_RC_VALUE: the session's digest is none of the branches, i.e. the PCR's value
         * is not the one the secret was sealed to. */
        if (!recovery_key && tpm_rc_base(rc) == TPM2_RC_VALUE)
            r = sealed_elsewhere(err, pcr);
        else
            r = tpm_err(err, rc, "policy of %s", path);
        goto out;
    }

    if (recovery_key) {
        TPM2B_AUTH auth = {.size = RECOVERY_KEY_LEN};
        memcpy(auth.buffer, recovery_key->data, RECOVERY_KEY_LEN);
        rc = Esys_TR_SetAuth(esys, obj, &auth);
        explicit_bzero(&auth, sizeof(auth));
        if (rc != TSS2_RC_SUCCESS) {
            r = tpm_err(err, rc, "cannot set the recovery key");
            goto out;
        }
    }

    rc = Esys_Unseal(esys, obj, sess, enc, ESYS_TR_NONE, &data);
    if (rc != TSS2_RC_SUCCESS) {
        TSS2_RC base = tpm_rc_base(rc);
        if (recovery_key && (base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_BAD_AUTH))
            r = tm_err_set(err, EACCES, "wrong recovery key");
        else if (!recovery_key && (base == TPM2_RC_POLICY_FAIL || base == TPM2_RC_PCR_CHANGED))
            r = sealed_elsewhere(err, pcr); /* the PCR was extended since PolicyPCR */
        else
            r = tpm_err(err, rc, "cannot unseal %s", path);
        goto out;
    }
    if (data->size != SEALED_SECRET_LEN) {
        r = tm_err_set(err, EBADMSG, "%s holds %u bytes, not a %d-byte secret", path, (unsigned)data->size,
                       SEALED_SECRET_LEN);
        goto out;
    }
    r = secret_new(SEALED_SECRET_LEN, &s, err);
    if (r < 0)
        goto out;
    memcpy(s->data, data->buffer, SEALED_SECRET_LEN);
    *ret = steal_ptr(s);

out:
    if (data) {
        explicit_bzero(data, sizeof(*data));
        Esys_Free(data);
    }
    if (obj != ESYS_TR_NONE && recovery_key) {
        /* ESYS keeps the authValue in the handle's heap memory and frees it unwiped. */
        TPM2B_AUTH none = {0};
        (void)Esys_TR_SetAuth(esys, obj, &none);
    }
    tpm_flush(esys, &enc);
    tpm_flush(esys, &sess);
    tpm_flush(esys, &obj);
    return r;
}

static int write_recovery_key(const char *path, const struct secret *key, tm_err *err)
{
    char hex[2 * RECOVERY_KEY_LEN + 2];
    tm_hex(key->data, RECOVERY_KEY_LEN, hex);
    hex[2 * RECOVERY_KEY_LEN] = '\n';
    /* 0400: nobody, tpmd included, has a reason to change it; the operator moves it away. */
    int r = write_file_atomic(path, hex, 2 * RECOVERY_KEY_LEN + 1, 0400, err);
    explicit_bzero(hex, sizeof(hex));
    return r;
}

static int check_pcr(uint32_t pcr, tm_err *err)
{
    if (pcr >= 24)
        return tm_err_set(err, EINVAL, "PCR %u does not exist (0 … 23)", pcr);
    return 0;
}

int sealed_secret_get(ESYS_CONTEXT *esys, ESYS_TR srk, const char *dir, uint32_t boot_pcr, struct secret **ret_secret,
                      bool *ret_created, char *ret_recovery_path, size_t pathlen, tm_err *err)
{
    int r = check_pcr(boot_pcr, err);
    if (r < 0)
        return r;
    char blob_path[PATH_MAX], key_path[PATH_MAX];
    snprintf(blob_path, sizeof(blob_path), "%s/" BLOB_NAME, dir);
    snprintf(key_path, sizeof(key_path), "%s/" RECOVERY_NAME, dir);

    struct blob b;
    _cleanup_secret_ struct secret *s = NULL;
    r = blob_read(blob_path, &b, err);
    if (r == 0) {
        r = unseal(esys, srk, blob_path, &b, boot_pcr, NULL, &s, err);
        if (r < 0)
            return r;
        *ret_secret = steal_ptr(s);
        if (ret_created)
            *ret_created = false;
        if (ret_recovery_path && pathlen)
            ret_recovery_path[0] = '\0';
        return 0;
    }
    if (r != -ENOENT)
        return r;

    /* First use. A recovery-key file without a blob is left from a crash between the two
     * writes: it opens nothing, and is replaced. */
    _cleanup_secret_ struct secret *rkey = NULL;
    if ((r = make_secret(esys, &s, err)) < 0 || (r = secret_random(RECOVERY_KEY_LEN, &rkey, err)) < 0 ||
        (r = seal(esys, srk, boot_pcr, s, rkey, &b, err)) < 0)
        return r;
    if ((r = write_recovery_key(key_path, rkey, err)) < 0 || (r = blob_write(blob_path, &b, err)) < 0)
        return r;
    *ret_secret = steal_ptr(s);
    if (ret_created)
        *ret_created = true;
    if (ret_recovery_path && pathlen)
        snprintf(ret_recovery_path, pathlen, "%s", key_path);
    return 0;
}

int sealed_secret_reseal(ESYS_CONTEXT *esys, ESYS_TR srk, const char *dir, uint32_t boot_pcr,
                         const struct secret *recovery_key, struct secret **ret_secret, tm_err *err)
{
    int r = check_pcr(boot_pcr, err);
    if (r < 0)
        return r;
    if (!recovery_key || recovery_key->len != RECOVERY_KEY_LEN)
        return tm_err_set(err, EINVAL, "a recovery key is %d bytes (%d hex digits)", RECOVERY_KEY_LEN,
                          2 * RECOVERY_KEY_LEN);
    char blob_path[PATH_MAX];
    snprintf(blob_path, sizeof(blob_path), "%s/" BLOB_NAME, dir);

    struct blob b;
    r = blob_read(blob_path, &b, err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOENT, "there is no sealed device storage secret (%s)", blob_path);
    if (r < 0)
        return r;
    _cleanup_secret_ struct secret *s = NULL;
    if ((r = unseal(esys, srk, blob_path, &b, boot_pcr, recovery_key, &s, err)) < 0 ||
        (r = seal(esys, srk, boot_pcr, s, recovery_key, &b, err)) < 0 || (r = blob_write(blob_path, &b, err)) < 0)
        return r;
    *ret_secret = steal_ptr(s);
    return 0;
}

bool sealed_secret_exists(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" BLOB_NAME, dir);
    struct stat st;
    return stat(path, &st) == 0;
}
