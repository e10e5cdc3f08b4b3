/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TPM side of container migration (docs/MIGRATION.md "Migration key"). */
#include "migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tss2/tss2_mu.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"
#include "secmem.h"
#include "test_hooks.h"
#include "tpm_policy.h"
#include "tpm_util.h"

#define NO ESYS_TR_NONE
#define KEY_FILE_MAX 4096
#define SIGN_TAG "trustme-migrate-v1"

/* Decrypt only (no sign): it cannot be used to forge anything the AK's chain vouches for.
 * fixedTPM, fixedParent, sensitiveDataOrigin: made in this TPM and never outside it, which the
 * AK's TPM2_Certify shows the source. No userWithAuth: only the policy (PolicyPCR on the boot
 * PCR) authorises its use, so it decrypts only in the state the source verified. */
#define MIGRATE_KEY_ATTRIBUTES                                                                             \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_NODA | \
     TPMA_OBJECT_DECRYPT)

static void esys_freep(void *p)
{
    Esys_Free(*(void **)p);
}
#define _cleanup_esys_ _cleanup_(esys_freep)

static TPML_PCR_SELECTION pcr_selection(uint32_t pcr)
{
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    sel.pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << (pcr % 8));
    return sel;
}

static void key_paths(const char *data_dir, const char *offer_id, const char *suffix, char pub[PATH_MAX],
                      char priv[PATH_MAX])
{
    snprintf(pub, PATH_MAX, "%s/migrate/%s.pub%s", data_dir, offer_id, suffix);
    snprintf(priv, PATH_MAX, "%s/migrate/%s.priv%s", data_dir, offer_id, suffix);
}

static int check_offer_id(const char *id, tm_err *err)
{
    uint8_t raw[MIGRATE_OFFER_ID_LEN / 2];
    if (!id || strlen(id) != MIGRATE_OFFER_ID_LEN || tm_hex_decode_str(id, raw, sizeof(raw), 0, err) < 0)
        return tm_err_set(err, EINVAL, "an offer id is %d lower-case hex digits", MIGRATE_OFFER_ID_LEN);
    return 0;
}

static int load_key(struct tpm *t, const char *pub_path, const char *priv_path, ESYS_TR *ret, tm_err *err)
{
    _cleanup_free_ char *pub_buf = NULL, *priv_buf = NULL;
    size_t pub_len = 0, priv_len = 0, off = 0;
    int r;
    if ((r = read_file(pub_path, KEY_FILE_MAX, &pub_buf, &pub_len, err)) < 0 ||
        (r = read_file(priv_path, KEY_FILE_MAX, &priv_buf, &priv_len, err)) < 0)
        return r;
    TPM2B_PUBLIC pub = {0};
    TPM2B_PRIVATE priv = {0};
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal((uint8_t *)pub_buf, pub_len, &off, &pub) != TSS2_RC_SUCCESS || off != pub_len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PUBLIC", pub_path);
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal((uint8_t *)priv_buf, priv_len, &off, &priv) != TSS2_RC_SUCCESS ||
        off != priv_len)
        return tm_err_set(err, EBADMSG, "%s is not a marshalled TPM2B_PRIVATE", priv_path);
    /* Whoever can write the state dir could put in a key without the policy. */
    if (pub.publicArea.type != TPM2_ALG_RSA || pub.publicArea.objectAttributes != MIGRATE_KEY_ATTRIBUTES ||
        pub.publicArea.authPolicy.size != 32)
        return tm_err_set(err, EBADMSG, "%s is not a migration key", pub_path);
    TSS2_RC rc = Esys_Load(t->esys, t->srk, ESYS_TR_PASSWORD, NO, NO, &priv, &pub, ret);
    explicit_bzero(&priv, sizeof(priv));
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot load the migration key %s", pub_path);
    return 0;
}

/* Create a migration key under PolicyPCR(policy) in the TPM, stored at pub_path and priv_path. */
static int make_key(struct tpm *t, const uint8_t policy[32], const char *pub_path, const char *priv_path, tm_err *err)
{
    TPM2B_PUBLIC tmpl = {
        .publicArea =
            {
                .type = TPM2_ALG_RSA,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = MIGRATE_KEY_ATTRIBUTES,
                .authPolicy = {.size = 32},
                .parameters.rsaDetail =
                    {
                        .symmetric = {.algorithm = TPM2_ALG_NULL},
                        .scheme = {.scheme = TPM2_ALG_OAEP, .details.oaep.hashAlg = TPM2_ALG_SHA256},
                        .keyBits = 2048,
                        .exponent = 0,
                    },
            },
    };
    memcpy(tmpl.publicArea.authPolicy.buffer, policy, 32);
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION creation_pcr = {0};
    _cleanup_esys_ TPM2B_PRIVATE *priv = NULL;
    _cleanup_esys_ TPM2B_PUBLIC *pub = NULL;
    TSS2_RC rc = Esys_Create(t->esys, t->srk, ESYS_TR_PASSWORD, NO, NO, &sens, &tmpl, &outside, &creation_pcr, &priv,
                             &pub, NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot create a migration key");
    uint8_t buf[sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    size_t off = 0;
    int r;
    if ((rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the migration key");
    if ((r = write_file_atomic(priv_path, buf, off, 0600, err)) < 0)
        return r;
    off = 0;
    if ((rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off)) != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot marshal the migration key");
    return write_file_atomic(pub_path, buf, off, 0600, err);
}

/* The policy of a migration key made now: PolicyPCR on the boot PCR's current value. */
static int current_policy(struct tpm *t, uint32_t boot_pcr, uint8_t policy[32], tm_err *err)
{
    uint8_t value[TPM_PCR_COUNT][32];
    int r = tpm_pcr_read(t, 1u << boot_pcr, value, err);
    if (r < 0)
        return r;
    tm_policy_pcr_sha256(boot_pcr, value[boot_pcr], policy);
    return 0;
}

static int make_dir(const char *data_dir, tm_err *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/migrate", data_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    return 0;
}

/* Whether the spare key's public part is a migration key under exactly this policy. */
static bool spare_fits(const char *pub_path, const uint8_t policy[32])
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, off = 0;
    tm_err e = {0};
    TPM2B_PUBLIC pub = {0};
    if (read_file(pub_path, KEY_FILE_MAX, &buf, &len, &e) < 0 ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal((uint8_t *)buf, len, &off, &pub) != TSS2_RC_SUCCESS || off != len)
        return false;
    return pub.publicArea.type == TPM2_ALG_RSA && pub.publicArea.objectAttributes == MIGRATE_KEY_ATTRIBUTES &&
           pub.publicArea.authPolicy.size == 32 && memcmp(pub.publicArea.authPolicy.buffer, policy, 32) == 0;
}

/* The spare key becomes the offer's: renamed, so no other offer can ever have it. */
static int take_spare(const char *data_dir, const uint8_t policy[32], const char *pub_path, const char *priv_path)
{
    char spub[PATH_MAX], spriv[PATH_MAX];
    key_paths(data_dir, MIGRATE_SPARE, "", spub, spriv);
    if (!spare_fits(spub, policy))
        return -ENOENT;
    if (rename(spriv, priv_path) < 0)
        return -errno;
    if (rename(spub, pub_path) < 0) {
        int r = -errno;
        (void)rename(priv_path, spriv);
        return r;
    }
    fsync_parent(pub_path);
    return 0;
}

/* The spare key's TPM context, saved once it was loaded: TPM2_Load of an RSA key computes its
 * private exponent, half of an offer's TPM time; TPM2_ContextLoad restores the loaded object.
 * Kept with the public part it was made for: the offer uses it only for exactly that key file,
 * and once (the TPM refuses a context after its reset: the blobs are loaded then). */
static struct {
    TPMS_CONTEXT *ctx;
    uint8_t pub[sizeof(TPM2B_PUBLIC)];
    size_t pub_len;
} spare_ctx;

static void spare_ctx_drop(void)
{
    Esys_Free(spare_ctx.ctx);
    spare_ctx.ctx = NULL;
    spare_ctx.pub_len = 0;
}

static void spare_ctx_save(struct tpm *t, const char *pub_path, const char *priv_path)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    tm_err e = {0};
    ESYS_TR k = NO;
    spare_ctx_drop();
    if (read_file(pub_path, KEY_FILE_MAX, &buf, &len, &e) < 0 || len > sizeof(spare_ctx.pub) ||
        load_key(t, pub_path, priv_path, &k, &e) < 0)
        return;
    if (Esys_ContextSave(t->esys, k, &spare_ctx.ctx) == TSS2_RC_SUCCESS) {
        memcpy(spare_ctx.pub, buf, len);
        spare_ctx.pub_len = len;
    } else {
        spare_ctx.ctx = NULL;
    }
    tpm_flush(t->esys, &k);
}

/* The offer's key loaded: from the spare's saved context if it is this key's, else the blobs. */
static int load_offer_key(struct tpm *t, const uint8_t *pub, size_t pub_len, const char *pub_path,
                          const char *priv_path, ESYS_TR *ret, tm_err *err)
{
    bool ours = spare_ctx.ctx && spare_ctx.pub_len == pub_len && memcmp(spare_ctx.pub, pub, pub_len) == 0;
    TSS2_RC rc = ours ? Esys_ContextLoad(t->esys, spare_ctx.ctx, ret) : TPM2_RC_FAILURE;
    spare_ctx_drop();
    if (ours && rc == TSS2_RC_SUCCESS) {
        log_debug("migration: the offer's key loaded from the spare's saved context");
        return 0;
    }
    return load_key(t, pub_path, priv_path, ret, err);
}

int migrate_spare(struct tpm *t, const char *data_dir, uint32_t boot_pcr, tm_err *err)
{
    uint8_t policy[32];
    char pub[PATH_MAX], priv[PATH_MAX];
    struct stat st;
    int r;
    key_paths(data_dir, MIGRATE_SPARE, "", pub, priv);
    if ((r = current_policy(t, boot_pcr, policy, err)) < 0 || (r = make_dir(data_dir, err)) < 0)
        return r;
    if (spare_fits(pub, policy) && stat(priv, &st) == 0) {
        if (!spare_ctx.ctx)
            spare_ctx_save(t, pub, priv);
        return 0;
    }
    /* The private part first: a public part names a spare only once both are there. */
    (void)unlink(pub);
    if ((r = make_key(t, policy, pub, priv, err)) < 0) {
        (void)unlink(pub);
        (void)unlink(priv);
        return r;
    }
    spare_ctx_save(t, pub, priv);
    log_info("migration: a spare key is ready for the next offer%s",
             spare_ctx.ctx ? " (loaded, its context saved)" : "");
    return 0;
}

int migrate_offer(struct tpm *t, const char *data_dir, uint32_t boot_pcr, const uint8_t *nonce, size_t nonce_len,
                  struct migrate_offer *ret, tm_err *err)
{
    *ret = (struct migrate_offer){0};
    uint8_t id_raw[MIGRATE_OFFER_ID_LEN / 2], policy[32];
    int r;
    if (nonce_len != 32)
        return tm_err_set(err, EINVAL, "a migration offer needs the source's 32-byte nonce");
    if ((r = secure_random(id_raw, sizeof(id_raw), err)) < 0 || (r = current_policy(t, boot_pcr, policy, err)) < 0 ||
        (r = make_dir(data_dir, err)) < 0)
        return r;
    tm_hex(id_raw, sizeof(id_raw), ret->offer_id);

    /* The spare key made after the last offer (migrate_spare) if its policy is still the one to
     * use: the key creation, most of an offer's time, is then done already. Otherwise one now. */
    char pub_path[PATH_MAX], priv_path[PATH_MAX];
    key_paths(data_dir, ret->offer_id, "", pub_path, priv_path);
    bool spare = take_spare(data_dir, policy, pub_path, priv_path) == 0;
    if (!spare && (r = make_key(t, policy, pub_path, priv_path, err)) < 0)
        return r;
    _cleanup_free_ char *pub_buf = NULL;
    size_t off = 0;
    if ((r = read_file(pub_path, KEY_FILE_MAX, &pub_buf, &off, err)) < 0)
        return r;
    test_crash_point(data_dir, "tpmd-migrate-offer-key"); /* the key stored, no offer answered */
    ret->key_public = (uint8_t *)steal_ptr(pub_buf);
    ret->key_public_len = off;

    ESYS_TR k = NO;
    if ((r = load_offer_key(t, ret->key_public, ret->key_public_len, pub_path, priv_path, &k, err)) < 0)
        return r;
    /* The nonce as qualifying data: this certification is as fresh as the quote beside it. */
    r = tpm_certify(t, k, nonce, nonce_len, &ret->certify_attest, &ret->certify_attest_len, &ret->certify_sig,
                    &ret->certify_sig_len, err);
    tpm_flush(t->esys, &k);
    if (r < 0)
        return r;
    log_info("migration offer %s: a key under PolicyPCR(%u)%s", ret->offer_id, boot_pcr,
             spare ? " (the spare made ahead)" : "");
    return 0;
}

void migrate_offer_free(struct migrate_offer *o)
{
    free(o->key_public);
    free(o->certify_attest);
    free(o->certify_sig);
    *o = (struct migrate_offer){0};
}

int migrate_decrypt(struct tpm *t, const char *data_dir, uint32_t boot_pcr, const char *offer_id,
                    const uint8_t *ciphertext, size_t len, struct secret **ret, tm_err *err)
{
    char pub_path[PATH_MAX], priv_path[PATH_MAX], used_pub[PATH_MAX], used_priv[PATH_MAX];
    int r = check_offer_id(offer_id, err);
    if (r < 0)
        return r;
    if (len == 0 || len > sizeof(((TPM2B_PUBLIC_KEY_RSA *)0)->buffer))
        return tm_err_set(err, EINVAL, "a wrapped bundle key of %zu bytes", len);
    key_paths(data_dir, offer_id, "", pub_path, priv_path);
    key_paths(data_dir, offer_id, ".used", used_pub, used_priv);
    /* Consumed before it is used, durably: a crash after this point loses the offer (the source
     * keeps its lock until a new export), never lets the same bundle be decrypted twice. */
    if (rename(priv_path, used_priv) < 0) {
        struct stat st;
        if (errno != ENOENT)
            return tm_err_sys(err, "cannot consume %s", priv_path);
        if (lstat(used_pub, &st) < 0 && lstat(used_priv, &st) < 0)
            return tm_err_set(err, ENOENT, "offer %s is unknown or was used already (a bundle imports once)", offer_id);
        /* Spent here by an import that did not install (tpmd or trustmed killed, or refused):
         * ESTALE lets trustmed sign a refusal, so the source can release its lock. The blob of
         * a spend that was killed before the decryption goes now. */
        (void)unlink(used_priv);
        if (rename(pub_path, used_pub) == 0)
            fsync_parent(used_pub);
        return tm_err_set(err, ESTALE, "offer %s is unknown or was used already (spent here, no container installed)",
                          offer_id);
    }
    if (fsync_parent(used_priv) < 0)
        log_warn("cannot sync %s/migrate", data_dir);
    test_crash_point(data_dir, "tpmd-migrate-spent"); /* spent, the TPM never saw the key */
    ESYS_TR k = NO, sess = NO;
    /* Before the first goto: a jump past a cleanup variable's declaration is an error in clang. */
    _cleanup_esys_ TPM2B_PUBLIC_KEY_RSA *out = NULL;
    if ((r = load_key(t, pub_path, used_priv, &k, err)) < 0)
        goto out;
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    TSS2_RC rc = Esys_StartAuthSession(t->esys, NO, NO, NO, NO, NO, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &sess);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "cannot start a policy session");
        goto out;
    }
    TPML_PCR_SELECTION sel = pcr_selection(boot_pcr);
    TPM2B_DIGEST current = {.size = 0};
    if ((rc = Esys_PolicyPCR(t->esys, sess, NO, NO, NO, &current, &sel)) != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc, "PolicyPCR for the migration key");
        goto out;
    }
    TPM2B_PUBLIC_KEY_RSA in = {.size = (UINT16)len};
    memcpy(in.buffer, ciphertext, len);
    TPMT_RSA_DECRYPT scheme = {.scheme = TPM2_ALG_OAEP, .details.oaep.hashAlg = TPM2_ALG_SHA256};
    TPM2B_DATA label = {0};
    rc = Esys_RSA_Decrypt(t->esys, k, sess, NO, NO, &in, &scheme, &label, &out);
    if (rc != TSS2_RC_SUCCESS) {
        r = tpm_err(err, rc,
                    "the migration key refused (its policy: boot PCR %u as when the offer was made; or a bundle "
                    "key wrapped for another key)",
                    boot_pcr);
        goto out;
    }
    if ((r = secret_new(out->size ? out->size : 1, ret, err)) < 0)
        goto out;
    memcpy((*ret)->data, out->buffer, out->size);
    (*ret)->len = out->size;
    test_crash_point(data_dir, "tpmd-migrate-decrypted"); /* decrypted, the answer never sent */
    explicit_bzero(out->buffer, sizeof(out->buffer));
    r = 0;
out:
    tpm_flush(t->esys, &sess);
    tpm_flush(t->esys, &k);
    (void)unlink(used_priv);
    /* <offer>.pub.used stays as the mark that the offer was spent here (ESTALE above). */
    if (rename(pub_path, used_pub) < 0)
        (void)unlink(pub_path);
    return r;
}

int migrate_check_target(const struct tpm *t, const uint8_t *name, size_t len, tm_err *err)
{
    if (len != t->ak_name.size || memcmp(name, t->ak_name.name, len) != 0)
        return tm_err_set(err, EXDEV, "target: the bundle was made for another device's AK, not this one's");
    return 0;
}

int migrate_sign(struct tpm *t, const uint8_t *data, size_t len, uint8_t sig[64], tm_err *err)
{
    if (len == 0 || len > 4096)
        return tm_err_set(err, EINVAL, "a migration text of %zu bytes (1..4096)", len);
    _cleanup_free_ uint8_t *buf = malloc(sizeof(SIGN_TAG) + len);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(buf, SIGN_TAG, sizeof(SIGN_TAG)); /* with its NUL */
    memcpy(buf + sizeof(SIGN_TAG), data, len);
    return tpm_sign_data(t, buf, sizeof(SIGN_TAG) + len, sig, sig + 32, err);
}
