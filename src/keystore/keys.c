/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys and operations of one container's keystore: see keys.h and docs/KEYSTORE.md.
 *
 * Key material is in locked memory only: a key's blob is opened into a locked arena (store.c),
 * AES and HMAC keys are used from there, and EC and RSA private keys are parsed by OpenSSL into
 * its secure heap (CRYPTO_secure_malloc_init in main.c: locked, excluded from core dumps, wiped
 * when freed). Every check of a use against the key's authorisation list is made here, in this
 * process (KS_SECURITY_SOFTWARE), except for a TPM-held key's (tpm_keys.c): its private key is in
 * the container's vTPM, which itself refuses any use but signing and checks its passphrase. */
#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "pass_verifier.h"
#include "test_hooks.h"
#include "tpm_keys.h"

typedef Trustme__Keystore__KsRequest KsRequest;
typedef Trustme__Keystore__KsResponse KsResponse;
typedef Trustme__Keystore__KsKeyBlob KsKeyBlob;
typedef Trustme__Keystore__KsAuthorizations KsAuthorizations;
typedef Trustme__Keystore__KsKeyCharacteristics KsKeyCharacteristics;
typedef Trustme__Keystore__KsOperationParams KsOperationParams;

#define E(x) TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_##x
#define ALG(x) TRUSTME__KEYSTORE__KS_ALGORITHM__KS_ALG_##x
#define PURPOSE(x) TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_##x
#define DIGEST(x) TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_##x
#define PAD(x) TRUSTME__KEYSTORE__KS_PADDING__KS_PAD_##x
#define MODE(x) TRUSTME__KEYSTORE__KS_BLOCK_MODE__KS_MODE_##x

#define PASSPHRASE_ITER 10000
#define PASSPHRASE_MAX 256
#define LOADED_MAX 32
#define OUT_CAP (KS_IO_MAX + 4096) /* an update's output plus a final block, tag or signature */

/* A key whose blob is open. */
struct loaded {
    char alias[KS_ALIAS_MAX + 1];
    KsKeyBlob *blob; /* in mem */
    struct secret *mem;
    EVP_PKEY *pkey; /* EC, RSA */
    uint64_t stamp; /* for eviction */
    unsigned busy; /* operations using it */
    bool tpm; /* held by the vTPM: pkey is the public key */
    /* A TPM-held key with a passphrase: the authValue that last passed its verifier (a busy key
     * pays scrypt once per load), and the verifier its first right passphrase adds to a blob
     * from before the verifiers (the blob points into it). */
    struct secret *verified;
    struct ks_verifier added;
    /* A wrong passphrase whose count could not be stored (the commit refused: the TPM write
     * budget the caller can spend itself): the count holds in memory, the key stays loaded, and
     * no passphrase of it is checked until the count is stored. */
    bool count_unstored;
};

/* When a key was last used (min_seconds_between_ops), kept across evictions. */
struct last_use {
    char alias[KS_ALIAS_MAX + 1];
    struct timespec at;
};

struct op {
    uint64_t handle;
    const void *owner; /* the connection that began it */
    struct loaded *key;
    int alg, purpose;
    EVP_MD_CTX *md; /* EC/RSA sign and verify */
    EVP_CIPHER_CTX *cipher; /* AES */
    EVP_MAC_CTX *mac; /* HMAC */
    EVP_PKEY_CTX *pctx; /* RSA encrypt/decrypt, EC agree (at finish) */
    tm_buf held; /* RSA/agree input; GCM decryption: the trailing tag */
    unsigned mac_bytes; /* HMAC output, GCM tag */
    bool gcm;
    const EVP_MD *prehashed; /* sign/verify of a given hash (in held) with pctx */
    bool tpm; /* a signature by the vTPM: md hashes (or held is the hash), finish asks the vTPM */
    struct secret *auth; /* its authValue for the vTPM */
};

struct ks {
    const struct ks_store *st;
    struct loaded loaded[LOADED_MAX];
    uint64_t stamp;
    struct last_use uses[KS_MAX_KEYS];
    struct op *ops[KS_MAX_OPERATIONS];
    uint64_t next_handle;
    const void *owner;
    /* What the last answer points to. */
    struct secret *out; /* output bytes (plaintext may be among them) */
    uint8_t *heap_out; /* public output: SPKI */
    KsKeyCharacteristics chars;
    KsAuthorizations *wrapped_auths; /* an imported wrapped key's, for its answer */
    KsKeyCharacteristics *list;
    KsKeyCharacteristics **list_ptrs;
    size_t nlist;
    KsKeyBlob *list_blobs_unused;
    struct secret **list_mems;
    Trustme__Keystore__KsKeyList keylist;
    Trustme__Keystore__KsBeginResult begun;
    Trustme__Keystore__KsOutput output;
    Trustme__Keystore__KsPublicKey pub;
    uint8_t nonce[16];
    Trustme__Keystore__KsTagEnforcement enf[8]; /* a new TPM-held key's, for its answer */
    Trustme__Keystore__KsTagEnforcement *enf_ptrs[8];
};

static time_t now_real(void)
{
    return time(NULL);
}

struct ks *ks_new(const struct ks_store *st)
{
    struct ks *ks = calloc(1, sizeof(*ks));
    if (ks) {
        ks->st = st;
        ks->next_handle = 1;
    }
    return ks;
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    EVP_MD_CTX_free(op->md);
    EVP_CIPHER_CTX_free(op->cipher);
    EVP_MAC_CTX_free(op->mac);
    EVP_PKEY_CTX_free(op->pctx);
    secret_free(op->auth);
    if (op->held.data)
        explicit_bzero(op->held.data, op->held.cap);
    tm_buf_free(&op->held);
    if (op->key)
        op->key->busy--;
    free(op);
}

static void loaded_free(struct loaded *l)
{
    secret_free(l->verified);
    EVP_PKEY_free(l->pkey);
    ks_store_blob_free(l->blob, l->mem);
    memset(l, 0, sizeof(*l));
}

void ks_reset_answer(struct ks *ks)
{
    if (ks->out) { /* the answer went out: wipe what it held, keep the buffer */
        explicit_bzero(ks->out->data, ks->out->len);
        ks->out->len = 0;
    }
    OPENSSL_free(ks->heap_out);
    ks->heap_out = NULL;
    if (ks->wrapped_auths)
        trustme__keystore__ks_authorizations__free_unpacked(ks->wrapped_auths, NULL);
    ks->wrapped_auths = NULL;
    for (size_t i = 0; i < ks->nlist; i++)
        secret_free(ks->list_mems[i]);
    free(ks->list);
    free(ks->list_ptrs);
    free(ks->list_mems);
    ks->list = NULL;
    ks->list_ptrs = NULL;
    ks->list_mems = NULL;
    ks->nlist = 0;
}

void ks_free(struct ks *ks)
{
    if (!ks)
        return;
    ks_reset_answer(ks);
    secret_free(ks->out);
    for (size_t i = 0; i < KS_MAX_OPERATIONS; i++)
        op_free(ks->ops[i]);
    for (size_t i = 0; i < LOADED_MAX; i++)
        if (ks->loaded[i].blob)
            loaded_free(&ks->loaded[i]);
    free(ks);
}

void ks_set_owner(struct ks *ks, const void *owner)
{
    ks->owner = owner;
}

void ks_abort_owned(struct ks *ks, const void *owner)
{
    for (size_t i = 0; i < KS_MAX_OPERATIONS; i++)
        if (ks->ops[i] && ks->ops[i]->owner == owner) {
            op_free(ks->ops[i]);
            ks->ops[i] = NULL;
        }
}

/* ---- names ------------------------------------------------------------------------------- */

static const char *alg_name(int alg)
{
    switch (alg) {
    case ALG(EC): return "EC";
    case ALG(RSA): return "RSA";
    case ALG(AES): return "AES";
    case ALG(HMAC): return "HMAC";
    default: return "unknown algorithm";
    }
}

static const char *purpose_name(int p)
{
    static const char *const names[] = {"none", "sign", "verify", "encrypt", "decrypt", "wrap", "agree"};
    return p >= 0 && p < (int)ARRAY_SIZE(names) ? names[p] : "unknown";
}

static const char *digest_name(int d)
{
    static const char *const names[] = {"none", "SHA-256", "SHA-384", "SHA-512"};
    return d >= 0 && d < (int)ARRAY_SIZE(names) ? names[d] : "unknown";
}

static const char *padding_name(int p)
{
    static const char *const names[] = {"none", "PSS", "PKCS#1 v1.5", "OAEP", "PKCS#7"};
    return p >= 0 && p < (int)ARRAY_SIZE(names) ? names[p] : "unknown";
}

static const char *mode_name(int m)
{
    static const char *const names[] = {"none", "GCM", "CBC", "CTR"};
    return m >= 0 && m < (int)ARRAY_SIZE(names) ? names[m] : "unknown";
}

static const EVP_MD *md_of(int d)
{
    switch (d) {
    case DIGEST(SHA256): return EVP_sha256();
    case DIGEST(SHA384): return EVP_sha384();
    case DIGEST(SHA512): return EVP_sha512();
    default: return NULL;
    }
}

static bool has(const int *list, size_t n, int v)
{
    for (size_t i = 0; i < n; i++)
        if ((int)list[i] == v)
            return true;
    return false;
}

/* The purposes an algorithm has at all. */
static bool purpose_possible(int alg, int p)
{
    switch (alg) {
    case ALG(EC): return p == PURPOSE(SIGN) || p == PURPOSE(VERIFY) || p == PURPOSE(AGREE);
    case ALG(RSA):
        return p == PURPOSE(SIGN) || p == PURPOSE(VERIFY) || p == PURPOSE(ENCRYPT) || p == PURPOSE(DECRYPT) ||
               p == PURPOSE(WRAP);
    case ALG(AES): return p == PURPOSE(ENCRYPT) || p == PURPOSE(DECRYPT) || p == PURPOSE(WRAP);
    case ALG(HMAC): return p == PURPOSE(SIGN) || p == PURPOSE(VERIFY);
    default: return false;
    }
}

/* ---- creating keys ----------------------------------------------------------------------- */

static int check_auths(int alg, const KsAuthorizations *a, tm_err *err)
{
    if (!a || a->n_purposes == 0)
        return tm_err_set(err, E(INVALID_ARGUMENT), "a key needs at least one purpose in its authorisations");
    for (size_t i = 0; i < a->n_purposes; i++)
        if (!purpose_possible(alg, a->purposes[i]))
            return tm_err_set(err, E(UNSUPPORTED_PURPOSE), "an %s key cannot %s", alg_name(alg),
                              purpose_name(a->purposes[i]));
    /* A wrapping key that could also decrypt would hand the container a server's transport key,
     * and with it the wrapped key, in the clear. */
    if (has((const int *)a->purposes, a->n_purposes, PURPOSE(WRAP)) && a->n_purposes != 1)
        return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "a wrapping key has the purpose wrap and no other");
    for (size_t i = 0; i < a->n_digests; i++)
        if (!md_of(a->digests[i]))
            return tm_err_set(err, E(INCOMPATIBLE_DIGEST), "digest %s is not supported", digest_name(a->digests[i]));
    if (alg == ALG(HMAC) && (a->n_digests != 1 || a->digests[0] != DIGEST(SHA256)))
        return tm_err_set(err, E(INCOMPATIBLE_DIGEST), "an HMAC key needs exactly the digest SHA-256");
    if (alg == ALG(HMAC) &&
        (!a->has_min_mac_length || a->min_mac_length < 64 || a->min_mac_length > 256 || a->min_mac_length % 8))
        return tm_err_set(err, E(INVALID_MAC_LENGTH), "an HMAC key needs min_mac_length 64..256 bits, a multiple of 8");
    if (alg == ALG(AES) && has((const int *)a->block_modes, a->n_block_modes, MODE(GCM)) &&
        (!a->has_min_mac_length || a->min_mac_length < 96 || a->min_mac_length > 128 || a->min_mac_length % 8))
        return tm_err_set(err, E(INVALID_MAC_LENGTH),
                          "an AES-GCM key needs min_mac_length 96..128 bits, a multiple of 8");
    if (a->has_not_before && a->has_not_after && a->not_after && a->not_before > a->not_after)
        return tm_err_set(err, E(INVALID_ARGUMENT), "not_after lies before not_before");
    return 0;
}

static int hash_passphrase(const ProtobufCBinaryData *pass, const uint8_t salt[16], uint8_t out[32])
{
    return PKCS5_PBKDF2_HMAC((const char *)pass->data, (int)pass->len, salt, 16, PASSPHRASE_ITER, EVP_sha256(), 32,
                             out) == 1
               ? 0
               : -1;
}

/* Encode pkey's private key as PKCS#8 DER into locked memory. */
static int pkcs8_of(EVP_PKEY *pkey, struct secret **ret, tm_err *err)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
    int len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : -1;
    int r = len > 0 ? secret_new((size_t)len, ret, err) : tm_err_set(err, E(INTERNAL), "cannot encode the key");
    if (r == 0) {
        uint8_t *p = (*ret)->data;
        i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
    } else if (len > 0) {
        r = tm_err_set(err, E(INTERNAL), "%s", err->msg);
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    return r;
}

static EVP_PKEY *parse_private(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    return d2i_AutoPrivateKey(NULL, &p, (long)len);
}

/* The key size of an EC or RSA key, checked against what the keystore supports. */
static int asym_size(EVP_PKEY *pkey, int alg, uint32_t *ret, tm_err *err)
{
    if (alg == ALG(EC)) {
        char group[64] = "";
        if (!EVP_PKEY_is_a(pkey, "EC") ||
            !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL))
            return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "not an EC key");
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            *ret = 256;
        else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            *ret = 384;
        else
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "EC curve %s: only P-256 and P-384", group);
        return 0;
    }
    if (!EVP_PKEY_is_a(pkey, "RSA"))
        return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "not an RSA key");
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < 2048 || bits > 4096)
        return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "RSA keys of 2048..4096 bits, not %d", bits);
    *ret = (uint32_t)bits;
    return 0;
}

static bool alias_taken(struct ks *ks, const char *alias)
{
    return ks_store_exists(ks->st, alias);
}

/* Store a new key: material (locked) with the characteristics the request asked for. */
/* Who enforces each tag a TPM-held key has (docs/KEYSTORE.md "TPM-held keys"). */
static void tpm_enforcement(struct ks *ks, KsKeyCharacteristics *ch)
{
    const KsAuthorizations *a = ch->auths;
    const struct {
        const char *tag;
        bool set, tpm;
    } tags[] = {
        {"key_material", true, true},
        {"purposes", true, true},
        {"digests", a->n_digests > 0, false},
        {"passphrase_required", a->passphrase_required, true},
        {"not_before", a->has_not_before && a->not_before, false},
        {"not_after", a->has_not_after && a->not_after, false},
        {"usage_count_limit", a->usage_count_limit > 0, false},
        {"min_seconds_between_ops", a->min_seconds_between_ops > 0, false},
    };
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(tags) && n < ARRAY_SIZE(ks->enf); i++) {
        if (!tags[i].set)
            continue;
        trustme__keystore__ks_tag_enforcement__init(&ks->enf[n]);
        ks->enf[n].tag = (char *)tags[i].tag;
        ks->enf[n].has_level = true;
        ks->enf[n].level = tags[i].tpm ? TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM
                                       : TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_SOFTWARE;
        ks->enf_ptrs[n] = &ks->enf[n];
        n++;
    }
    ch->n_enforcement = n;
    ch->enforcement = ks->enf_ptrs;
}

/* Store a new key: material (locked) with the characteristics the request asked for. tpm: the
 * vTPM's parts of a TPM-held key (material is then its public key), NULL for the service's. */
static int store_new(struct ks *ks, const char *alias, int alg, uint32_t size, KsAuthorizations *auths,
                     const ProtobufCBinaryData *pass, bool has_pass, bool imported, const struct secret *material,
                     const KsKeyBlob *tpm, KsResponse *resp, tm_err *err)
{
    KsKeyBlob blob = TRUSTME__KEYSTORE__KS_KEY_BLOB__INIT;
    KsKeyCharacteristics *ch = &ks->chars;
    trustme__keystore__ks_key_characteristics__init(ch);
    ch->alias = (char *)alias;
    ch->has_algorithm = true;
    ch->algorithm = alg;
    ch->has_key_size = true;
    ch->key_size = size;
    ch->auths = auths;
    ch->has_security_level = true;
    ch->security_level = TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_SOFTWARE;
    ch->has_created = true;
    ch->created = now_real();
    ch->has_uses = true;
    ch->has_imported = true;
    ch->imported = imported;
    auths->has_passphrase_required = true;
    auths->passphrase_required = has_pass && pass->len > 0;
    blob.characteristics = ch;
    blob.has_material = true;
    blob.material.data = material->data;
    blob.material.len = material->len;
    uint8_t salt[16], hash[32] = {0};
    if (tpm) {
        /* The vTPM checks the passphrase (the key's authValue): no hash of it at rest. */
        ch->security_level = TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM;
        tpm_enforcement(ks, ch);
        blob.has_tpm_public = blob.has_tpm_private = true;
        blob.tpm_public = tpm->tpm_public;
        blob.tpm_private = tpm->tpm_private;
        blob.has_tpm_auth = tpm->has_tpm_auth;
        blob.tpm_auth = tpm->tpm_auth;
        blob.has_passphrase_salt = tpm->has_passphrase_salt;
        blob.passphrase_salt = tpm->passphrase_salt;
        blob.passphrase_verifier = tpm->passphrase_verifier;
    } else if (auths->passphrase_required) {
        if (pass->len > PASSPHRASE_MAX)
            return tm_err_set(err, E(INVALID_ARGUMENT), "passphrase longer than %d bytes", PASSPHRASE_MAX);
        if (secure_random(salt, sizeof(salt), err) < 0 || hash_passphrase(pass, salt, hash) < 0)
            return tm_err_set(err, E(INTERNAL), "cannot hash the passphrase");
        blob.has_passphrase_salt = blob.has_passphrase_hash = true;
        blob.passphrase_salt = (ProtobufCBinaryData){sizeof(salt), salt};
        blob.passphrase_hash = (ProtobufCBinaryData){sizeof(hash), hash};
    }
    int r = ks_store_put(ks->st, alias, &blob, err);
    explicit_bzero(hash, sizeof(hash));
    if (r < 0)
        return r;
    resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEY;
    resp->key = ch;
    return 0;
}

static int check_new_alias(struct ks *ks, const char *alias, tm_err *err)
{
    if (!ks_alias_valid(alias))
        return tm_err_set(err, E(INVALID_ARGUMENT), "alias must be 1..%d of [A-Za-z0-9._-], not starting with '.'",
                          KS_ALIAS_MAX);
    if (alias_taken(ks, alias))
        return tm_err_set(err, E(KEY_EXISTS), "key %s exists (delete it first)", alias);
    if (ks_store_count(ks->st) >= KS_MAX_KEYS)
        return tm_err_set(err, E(TOO_MANY_KEYS), "the container has %d keys, the most it may have", KS_MAX_KEYS);
    return 0;
}

/* A TPM-held key's authValue: from its passphrase (and salt), or the random one in its blob. */
static int tpm_auth_of(const KsKeyBlob *b, const ProtobufCBinaryData *pass, struct secret **ret, tm_err *err)
{
    static const char label[] = "trustme keystore tpm auth v1";
    _cleanup_secret_ struct secret *s = NULL;
    if (secret_new(32, &s, err) < 0)
        return tm_err_set(err, E(INTERNAL), "%s", err->msg);
    if (b->characteristics->auths->passphrase_required) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        bool ok = md && b->passphrase_salt.len == 16 && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(md, label, sizeof(label)) == 1 &&
                  EVP_DigestUpdate(md, b->passphrase_salt.data, b->passphrase_salt.len) == 1 &&
                  EVP_DigestUpdate(md, pass->data, pass->len) == 1 && EVP_DigestFinal_ex(md, s->data, NULL) == 1;
        EVP_MD_CTX_free(md);
        if (!ok)
            return tm_err_set(err, E(INTERNAL), "cannot derive the key's authValue");
    } else {
        if (b->tpm_auth.len != 32)
            return tm_err_set(err, E(INVALID_KEY_BLOB), "the TPM-held key has no authValue");
        memcpy(s->data, b->tpm_auth.data, 32);
    }
    *ret = s;
    s = NULL;
    return 0;
}

static unsigned digest_bits(int d)
{
    return d == DIGEST(SHA256) ? 256 : d == DIGEST(SHA384) ? 384 : d == DIGEST(SHA512) ? 512 : 0;
}

/* A key in the container's vTPM (docs/KEYSTORE.md "TPM-held keys"): an EC key that signs. What
 * the TPM cannot hold here is refused, never quietly made a service key. */
static int generate_tpm(struct ks *ks, const Trustme__Keystore__KsGenerateKey *g, KsResponse *resp, tm_err *err)
{
    if (g->algorithm != ALG(EC))
        return tm_err_set(err, E(UNSUPPORTED_ALGORITHM),
                          "the vTPM holds EC signing keys only: an %s key can only be the service's "
                          "(security level software)",
                          alg_name(g->algorithm));
    const KsAuthorizations *a = g->auths;
    bool sign = false;
    for (size_t i = 0; i < a->n_purposes; i++) {
        if (a->purposes[i] == PURPOSE(SIGN))
            sign = true;
        else if (a->purposes[i] != PURPOSE(VERIFY))
            return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "a TPM-held key signs (and verifies), it cannot %s",
                              purpose_name(a->purposes[i]));
    }
    if (!sign)
        return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "a TPM-held key is made to sign");
    uint32_t size = g->has_key_size && g->key_size ? g->key_size : 256;
    if (size != 256 && size != 384)
        return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "EC keys are P-256 or P-384, not %u bits", size);
    bool has_pass = g->has_passphrase && g->passphrase.len > 0;
    if (has_pass && g->passphrase.len > PASSPHRASE_MAX)
        return tm_err_set(err, E(INVALID_ARGUMENT), "passphrase longer than %d bytes", PASSPHRASE_MAX);
    KsKeyCharacteristics ch = TRUSTME__KEYSTORE__KS_KEY_CHARACTERISTICS__INIT;
    KsAuthorizations auths = *a;
    auths.passphrase_required = has_pass;
    ch.auths = &auths;
    KsKeyBlob parts = TRUSTME__KEYSTORE__KS_KEY_BLOB__INIT;
    parts.characteristics = &ch;
    uint8_t salt[16], random_auth[32];
    if (secure_random(has_pass ? salt : random_auth, has_pass ? sizeof(salt) : sizeof(random_auth), err) < 0)
        return tm_err_set(err, E(INTERNAL), "%s", err->msg);
    if (has_pass) {
        parts.has_passphrase_salt = true;
        parts.passphrase_salt = (ProtobufCBinaryData){sizeof(salt), salt};
    } else {
        parts.has_tpm_auth = true;
        parts.tpm_auth = (ProtobufCBinaryData){sizeof(random_auth), random_auth};
    }
    _cleanup_secret_ struct secret *auth = NULL;
    _cleanup_secret_ struct secret *material = NULL;
    tm_buf pub = {0}, priv = {0}, spki = {0};
    struct ks_verifier verifier = {0};
    int r = tpm_auth_of(&parts, &g->passphrase, &auth, err);
    /* test_flag: a blob as made before the verifiers, for the test of their path */
    if (r == 0 && has_pass && !test_flag(ks->st->dir, "test-no-passphrase-verifier") &&
        (r = ks_verifier_make(auth->data, auth->len, &verifier, err)) == 0)
        parts.passphrase_verifier = &verifier.msg;
    if (r == 0)
        r = ks_tpm_create_ec(ks->st->tpm, size, a->n_digests == 1 ? digest_bits(a->digests[0]) : 0, auth->data,
                             auth->len, has_pass, &pub, &priv, &spki, err);
    if (r == 0 && (r = secret_new(spki.len, &material, err)) < 0)
        r = tm_err_set(err, E(INTERNAL), "%s", err->msg);
    if (r == 0) {
        memcpy(material->data, spki.data, spki.len);
        parts.tpm_public = (ProtobufCBinaryData){pub.len, pub.data};
        parts.tpm_private = (ProtobufCBinaryData){priv.len, priv.data};
        r = store_new(ks, g->alias, g->algorithm, size, g->auths, &g->passphrase, g->has_passphrase, false, material,
                      &parts, resp, err);
    }
    explicit_bzero(random_auth, sizeof(random_auth));
    explicit_bzero(&verifier, sizeof(verifier));
    tm_buf_free(&pub);
    tm_buf_free(&priv);
    tm_buf_free(&spki);
    return r;
}

static int generate(struct ks *ks, const Trustme__Keystore__KsGenerateKey *g, KsResponse *resp, tm_err *err)
{
    int r = check_new_alias(ks, g->alias, err);
    if (r < 0 || (r = check_auths(g->algorithm, g->auths, err)) < 0)
        return r;
    if (g->has_security_level && g->security_level == TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM)
        return generate_tpm(ks, g, resp, err);
    if (g->has_security_level && g->security_level != TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_SOFTWARE)
        return tm_err_set(err, E(INVALID_ARGUMENT), "security level %d is none the keystore has", g->security_level);
    _cleanup_secret_ struct secret *material = NULL;
    uint32_t size = g->has_key_size ? g->key_size : 0;
    EVP_PKEY *pkey = NULL;
    switch (g->algorithm) {
    case ALG(EC):
        if (size == 0)
            size = 256;
        if (size != 256 && size != 384)
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "EC keys are P-256 or P-384, not %u bits", size);
        pkey = EVP_EC_gen(size == 256 ? "P-256" : "P-384");
        break;
    case ALG(RSA):
        if (size == 0)
            size = 2048;
        if (size < 2048 || size > 4096 || size % 8)
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "RSA keys of 2048..4096 bits (a multiple of 8), not %u",
                              size);
        if (g->has_rsa_public_exponent && g->rsa_public_exponent != 65537)
            return tm_err_set(err, E(INVALID_ARGUMENT), "the RSA public exponent is 65537");
        pkey = EVP_RSA_gen(size);
        break;
    case ALG(AES):
        if (size == 0)
            size = 256;
        if (size != 128 && size != 256)
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "AES keys of 128 or 256 bits, not %u", size);
        if ((r = secret_random(size / 8, &material, err)) < 0)
            return tm_err_set(err, E(INTERNAL), "%s", err->msg);
        break;
    case ALG(HMAC):
        if (size == 0)
            size = 256;
        if (size < 64 || size > 512 || size % 8)
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "HMAC keys of 64..512 bits (a multiple of 8), not %u",
                              size);
        if ((r = secret_random(size / 8, &material, err)) < 0)
            return tm_err_set(err, E(INTERNAL), "%s", err->msg);
        break;
    default: return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "algorithm %d is not supported", g->algorithm);
    }
    if (g->algorithm == ALG(EC) || g->algorithm == ALG(RSA)) {
        if (!pkey)
            return tm_err_set(err, E(INTERNAL), "cannot generate the %s key", alg_name(g->algorithm));
        r = pkcs8_of(pkey, &material, err);
        EVP_PKEY_free(pkey);
        if (r < 0)
            return r;
    }
    return store_new(ks, g->alias, g->algorithm, size, g->auths, &g->passphrase, g->has_passphrase, false, material,
                     NULL, resp, err);
}

static int import(struct ks *ks, const Trustme__Keystore__KsImportKey *im, KsResponse *resp, tm_err *err)
{
    int r = check_new_alias(ks, im->alias, err);
    if (r < 0 || (r = check_auths(im->algorithm, im->auths, err)) < 0)
        return r;
    /* Whoever imports a wrapping key knows its private key, and so every key wrapped for it. */
    if (has((const int *)im->auths->purposes, im->auths->n_purposes, PURPOSE(WRAP)))
        return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "a wrapping key is generated in the keystore, not imported");
    if (!im->has_key_material || im->key_material.len == 0)
        return tm_err_set(err, E(INVALID_ARGUMENT), "no key material");
    _cleanup_secret_ struct secret *material = NULL;
    uint32_t size = 0;
    const ProtobufCBinaryData *m = &im->key_material;
    switch (im->algorithm) {
    case ALG(EC):
    case ALG(RSA): {
        EVP_PKEY *pkey = parse_private(m->data, m->len);
        if (!pkey)
            return tm_err_set(err, E(INVALID_ARGUMENT), "the key material is no PKCS#8 private key");
        r = asym_size(pkey, im->algorithm, &size, err);
        if (r == 0)
            r = pkcs8_of(pkey, &material, err);
        EVP_PKEY_free(pkey);
        if (r < 0)
            return r;
        break;
    }
    case ALG(AES):
    case ALG(HMAC):
        size = (uint32_t)m->len * 8;
        if (im->algorithm == ALG(AES) ? size != 128 && size != 256 : size < 64 || size > 512)
            return tm_err_set(err, E(UNSUPPORTED_KEY_SIZE), "%s key of %u bits", alg_name(im->algorithm), size);
        if ((r = secret_new(m->len, &material, err)) < 0)
            return tm_err_set(err, E(INTERNAL), "%s", err->msg);
        memcpy(material->data, m->data, m->len);
        break;
    default: return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "algorithm %d is not supported", im->algorithm);
    }
    return store_new(ks, im->alias, im->algorithm, size, im->auths, &im->passphrase, im->has_passphrase, true, material,
                     NULL, resp, err);
}

/* ---- loading keys ------------------------------------------------------------------------ */

static int load(struct ks *ks, const char *alias, struct loaded **ret, tm_err *err)
{
    if (!ks_alias_valid(alias))
        return tm_err_set(err, E(INVALID_ARGUMENT), "bad alias");
    struct loaded *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < LOADED_MAX; i++) {
        struct loaded *l = &ks->loaded[i];
        if (l->blob && strcmp(l->alias, alias) == 0) {
            l->stamp = ++ks->stamp;
            *ret = l;
            return 0;
        }
        if (!l->blob && !free_slot)
            free_slot = l;
        if (l->blob && !l->busy && !l->count_unstored && (!oldest || l->stamp < oldest->stamp))
            oldest = l;
    }
    if (!free_slot) {
        if (!oldest)
            return tm_err_set(err, E(TOO_MANY_OPERATIONS), "too many keys in use at once");
        loaded_free(oldest);
        free_slot = oldest;
    }
    KsKeyBlob *blob;
    struct secret *mem;
    int r = ks_store_get(ks->st, alias, &blob, &mem, err);
    if (r < 0)
        return r;
    KsKeyCharacteristics *ch = blob->characteristics;
    EVP_PKEY *pkey = NULL;
    bool tpm = blob->has_tpm_private;
    if (tpm) { /* the vTPM holds the private key; material is the public one */
        const uint8_t *p = blob->material.data;
        pkey = d2i_PUBKEY(NULL, &p, (long)blob->material.len);
        if (!pkey) {
            ks_store_blob_free(blob, mem);
            return tm_err_set(err, E(INVALID_KEY_BLOB), "key %s: its public key does not parse", alias);
        }
    } else if (ch->algorithm == ALG(EC) || ch->algorithm == ALG(RSA)) {
        pkey = parse_private(blob->material.data, blob->material.len);
        if (!pkey) {
            ks_store_blob_free(blob, mem);
            return tm_err_set(err, E(INVALID_KEY_BLOB), "key %s: its material does not parse", alias);
        }
    }
    *free_slot = (struct loaded){.blob = blob, .mem = mem, .pkey = pkey, .stamp = ++ks->stamp, .tpm = tpm};
    snprintf(free_slot->alias, sizeof(free_slot->alias), "%s", alias);
    *ret = free_slot;
    return 0;
}

static void unload(struct ks *ks, const char *alias)
{
    for (size_t i = 0; i < LOADED_MAX; i++)
        if (ks->loaded[i].blob && strcmp(ks->loaded[i].alias, alias) == 0)
            loaded_free(&ks->loaded[i]);
    for (size_t i = 0; i < KS_MAX_KEYS; i++)
        if (strcmp(ks->uses[i].alias, alias) == 0)
            ks->uses[i].alias[0] = '\0';
}

static struct last_use *last_use_of(struct ks *ks, const char *alias, bool create)
{
    struct last_use *empty = NULL;
    for (size_t i = 0; i < KS_MAX_KEYS; i++) {
        if (strcmp(ks->uses[i].alias, alias) == 0)
            return &ks->uses[i];
        if (!ks->uses[i].alias[0] && !empty)
            empty = &ks->uses[i];
    }
    if (create && empty) {
        snprintf(empty->alias, sizeof(empty->alias), "%s", alias);
        empty->at = (struct timespec){0};
    }
    return create ? empty : NULL;
}

/* ---- the authorisation checks ------------------------------------------------------------ */

static int authorize_use(struct ks *ks, struct loaded *l, const KsOperationParams *p, tm_err *err);

static int check_uses(const struct loaded *l, tm_err *err)
{
    const KsKeyCharacteristics *ch = l->blob->characteristics;
    if (ch->uses >= ch->auths->usage_count_limit)
        return tm_err_set(err, E(KEY_MAX_OPS_EXCEEDED), "key %s has been used %u times, its limit", l->alias, ch->uses);
    return 0;
}

/* Counted (and stored) before the use goes out: a crash must not give a free use. */
static int count_use(struct ks *ks, struct loaded *l, tm_err *err)
{
    int r = check_uses(l, err);
    if (r < 0)
        return r;
    KsKeyCharacteristics *wch = l->blob->characteristics;
    wch->uses++;
    wch->has_uses = true;
    if ((r = ks_store_put(ks->st, l->alias, l->blob, err)) < 0)
        wch->uses--;
    return r;
}

/* A TPM-held key's passphrase goes to the vTPM only once the try is counted and stored (the
 * anchored key index names the blob that holds the count): a kill between the try and its count
 * must not give a free guess. The vTPM's own lockout does not bound the container's root, which
 * resets it in a vTPM nobody owns. */
static int count_passphrase_try(struct ks *ks, struct loaded *l, tm_err *err)
{
    KsKeyBlob *b = l->blob;
    if (b->passphrase_failures >= KS_TPM_PASSPHRASE_TRIES)
        return tm_err_set(
            err, E(AUTH_FAILED),
            "key %s: the keystore's lockout after %u wrong passphrases in a row; delete it and make it anew", l->alias,
            b->passphrase_failures);
    b->passphrase_failures++;
    b->has_passphrase_failures = true;
    int r = ks_store_put(ks->st, l->alias, b, err);
    if (r < 0)
        b->passphrase_failures--;
    return r;
}

/* A TPM-held key's passphrase, checked against its verifier before the vTPM sees it: a right one
 * costs no commit (and scrypt only once while the key stays loaded); a wrong one is counted and
 * stored (anchored) before the answer, and goes no further. The lockout holds first: after
 * KS_TPM_PASSPHRASE_TRIES wrong ones in a row even the right one is not checked. */
static int check_passphrase(struct ks *ks, struct loaded *l, const struct secret *auth, tm_err *err)
{
    KsKeyBlob *b = l->blob;
    int r;
    if (l->count_unstored) { /* the last wrong one's count first; refused untried until it is stored */
        if ((r = ks_store_put(ks->st, l->alias, b, err)) < 0)
            return r;
        l->count_unstored = false;
    }
    if (b->passphrase_failures >= KS_TPM_PASSPHRASE_TRIES)
        return tm_err_set(
            err, E(AUTH_FAILED),
            "key %s: the keystore's lockout after %u wrong passphrases in a row; delete it and make it anew", l->alias,
            b->passphrase_failures);
    if (l->verified && l->verified->len == auth->len && CRYPTO_memcmp(l->verified->data, auth->data, auth->len) == 0)
        return 0;
    bool ok = false;
    r = ks_verifier_check(b->passphrase_verifier, auth->data, auth->len, &ok, err);
    if (r < 0)
        return r;
    if (ok) {
        secret_free(l->verified);
        l->verified = NULL;
        if (secret_new(auth->len, &l->verified, err) == 0)
            memcpy(l->verified->data, auth->data, auth->len);
        return 0; /* not cached (no locked memory left): checked again next time */
    }
    /* Not stored, the count must still hold: a right passphrase would have signed without a
     * commit, so this refusal tells the caller the guess was wrong (test_review5_keystore.py). */
    b->passphrase_failures++;
    b->has_passphrase_failures = true;
    if ((r = ks_store_put(ks->st, l->alias, b, err)) < 0) {
        l->count_unstored = true;
        return r;
    }
    return tm_err_set(err, E(AUTH_FAILED), "key %s: wrong passphrase (%u of %u in a row; the keystore checked it)",
                      l->alias, b->passphrase_failures, KS_TPM_PASSPHRASE_TRIES);
}

static int authorize(struct ks *ks, struct loaded *l, const KsOperationParams *p, tm_err *err)
{
    int alg = l->blob->characteristics->algorithm;
    int purpose = p->has_purpose ? p->purpose : PURPOSE(NONE);
    if (!purpose_possible(alg, purpose))
        return tm_err_set(err, E(UNSUPPORTED_PURPOSE), "an %s key cannot %s", alg_name(alg), purpose_name(purpose));
    if (purpose == PURPOSE(WRAP))
        return tm_err_set(err, E(UNSUPPORTED_PURPOSE), "wrapping keys serve the import of wrapped keys only");
    return authorize_use(ks, l, p, err);
}

/* Every check of a use of l for p->purpose (also WRAP, for unwrapping an imported key). */
static int authorize_use(struct ks *ks, struct loaded *l, const KsOperationParams *p, tm_err *err)
{
    const KsKeyCharacteristics *ch = l->blob->characteristics;
    const KsAuthorizations *a = ch->auths;
    int alg = ch->algorithm;
    int purpose = p->has_purpose ? p->purpose : PURPOSE(NONE);
    if (!has((const int *)a->purposes, a->n_purposes, purpose))
        return tm_err_set(err, E(INCOMPATIBLE_PURPOSE), "key %s is not authorised to %s", l->alias,
                          purpose_name(purpose));
    time_t now = now_real();
    if (a->has_not_before && a->not_before && now < a->not_before)
        return tm_err_set(err, E(KEY_NOT_YET_VALID), "key %s is not valid before %lld", l->alias,
                          (long long)a->not_before);
    if (a->has_not_after && a->not_after && now > a->not_after)
        return tm_err_set(err, E(KEY_EXPIRED), "key %s expired at %lld", l->alias, (long long)a->not_after);
    if (a->passphrase_required) {
        if (!p->has_passphrase || p->passphrase.len == 0)
            return tm_err_set(err, E(AUTH_REQUIRED), "key %s needs its passphrase", l->alias);
    }
    /* A TPM-held key's passphrase is its authValue: the vTPM checks it when it signs. */
    if (a->passphrase_required && !l->tpm) {
        uint8_t hash[32];
        if (!l->blob->has_passphrase_salt || l->blob->passphrase_salt.len != 16 || l->blob->passphrase_hash.len != 32 ||
            hash_passphrase(&p->passphrase, l->blob->passphrase_salt.data, hash) < 0)
            return tm_err_set(err, E(INTERNAL), "key %s: cannot check the passphrase", l->alias);
        bool ok = CRYPTO_memcmp(hash, l->blob->passphrase_hash.data, 32) == 0;
        explicit_bzero(hash, sizeof(hash));
        if (!ok)
            return tm_err_set(err, E(AUTH_FAILED), "key %s: wrong passphrase", l->alias);
    }
    int digest = p->has_digest ? p->digest : DIGEST(NONE);
    int padding = p->has_padding ? p->padding : PAD(NONE);
    int mode = p->has_block_mode ? p->block_mode : MODE(NONE);
    bool signing = purpose == PURPOSE(SIGN) || purpose == PURPOSE(VERIFY);
    if ((alg == ALG(EC) && signing) || (alg == ALG(RSA) && (signing || padding == PAD(RSA_OAEP))) || alg == ALG(HMAC)) {
        if (!md_of(digest) || !has((const int *)a->digests, a->n_digests, digest))
            return tm_err_set(err, E(INCOMPATIBLE_DIGEST), "key %s is not authorised for digest %s", l->alias,
                              digest_name(digest));
    }
    if (alg == ALG(RSA) && purpose != PURPOSE(AGREE)) {
        bool fits = signing ? padding == PAD(RSA_PSS) || padding == PAD(RSA_PKCS1)
                            : padding == PAD(RSA_OAEP) || padding == PAD(RSA_PKCS1);
        if (!fits || !has((const int *)a->paddings, a->n_paddings, padding))
            return tm_err_set(err, E(INCOMPATIBLE_PADDING), "key %s is not authorised for padding %s to %s", l->alias,
                              padding_name(padding), purpose_name(purpose));
    }
    if (alg == ALG(AES)) {
        if (!has((const int *)a->block_modes, a->n_block_modes, mode))
            return tm_err_set(err, E(INCOMPATIBLE_BLOCK_MODE), "key %s is not authorised for block mode %s", l->alias,
                              mode_name(mode));
        bool pad_ok = mode == MODE(CBC) ? (padding == PAD(NONE) || padding == PAD(PKCS7)) : padding == PAD(NONE);
        if (!pad_ok || (padding != PAD(NONE) && !has((const int *)a->paddings, a->n_paddings, padding)))
            return tm_err_set(err, E(INCOMPATIBLE_PADDING), "key %s is not authorised for padding %s with %s", l->alias,
                              padding_name(padding), mode_name(mode));
        if (mode == MODE(GCM)) {
            uint32_t bits = p->has_mac_length ? p->mac_length : 128;
            if (bits < 96 || bits > 128 || bits % 8 || bits < a->min_mac_length)
                return tm_err_set(err, E(INVALID_MAC_LENGTH), "key %s: a GCM tag of %u bits (%u..128 allowed)",
                                  l->alias, bits, a->min_mac_length);
        }
    }
    if (alg == ALG(HMAC) && purpose == PURPOSE(SIGN)) {
        uint32_t bits = p->has_mac_length ? p->mac_length : 0;
        if (bits < a->min_mac_length || bits > 256 || bits % 8)
            return tm_err_set(err, E(INVALID_MAC_LENGTH), "key %s: a MAC of %u bits (%u..256 allowed)", l->alias, bits,
                              a->min_mac_length);
    }
    /* Last: the checks that consume something. */
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    if (a->min_seconds_between_ops) {
        struct last_use *u = last_use_of(ks, l->alias, true);
        if (!u)
            return tm_err_set(err, E(INTERNAL), "too many rate-limited keys");
        if (u->at.tv_sec && mono.tv_sec - u->at.tv_sec < (time_t)a->min_seconds_between_ops)
            return tm_err_set(err, E(KEY_RATE_LIMITED), "key %s may be used once every %u s; wait %lld s", l->alias,
                              a->min_seconds_between_ops,
                              (long long)(a->min_seconds_between_ops - (mono.tv_sec - u->at.tv_sec)));
    }
    /* A TPM-held key's use is counted once the vTPM signed (it may refuse the passphrase),
     * before the signature leaves: finish_tpm. */
    if (a->usage_count_limit) {
        int r = l->tpm ? check_uses(l, err) : count_use(ks, l, err);
        if (r < 0)
            return r;
    }
    if (a->min_seconds_between_ops)
        last_use_of(ks, l->alias, true)->at = mono;
    return 0;
}

/* ---- operations -------------------------------------------------------------------------- */

static int out_reserve(struct ks *ks, size_t n, tm_err *err)
{
    /* One locked buffer for every answer (mapping and locking one per answer cost more than a
     * signature); wiped after each. */
    if (!ks->out && secret_new(OUT_CAP, &ks->out, err) < 0)
        return tm_err_set(err, E(INTERNAL), "%s", err->msg);
    if (n > OUT_CAP)
        return tm_err_set(err, E(INVALID_INPUT_LENGTH), "input too long");
    explicit_bzero(ks->out->data, ks->out->len);
    ks->out->len = 0;
    return 0;
}

static struct op **op_slot(struct ks *ks, uint64_t handle)
{
    for (size_t i = 0; i < KS_MAX_OPERATIONS; i++)
        if (ks->ops[i] && ks->ops[i]->handle == handle && ks->ops[i]->owner == ks->owner)
            return &ks->ops[i];
    return NULL;
}

static int begin_op(struct ks *ks, const char *alias, const KsOperationParams *p, struct op **ret, bool *ret_nonce,
                    tm_err *err)
{
    struct op **slot = NULL;
    for (size_t i = 0; i < KS_MAX_OPERATIONS && !slot; i++)
        if (!ks->ops[i])
            slot = &ks->ops[i];
    if (!slot)
        return tm_err_set(err, E(TOO_MANY_OPERATIONS), "%d operations are under way, the most a container may have",
                          KS_MAX_OPERATIONS);
    if (!p)
        return tm_err_set(err, E(INVALID_ARGUMENT), "no operation parameters");
    struct loaded *l;
    int r = load(ks, alias, &l, err);
    if (r < 0 || (r = authorize(ks, l, p, err)) < 0)
        return r;
    const KsKeyCharacteristics *ch = l->blob->characteristics;
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    op->key = l;
    l->busy++;
    op->alg = ch->algorithm;
    op->purpose = p->purpose;
    op->owner = ks->owner;
    op->handle = ks->next_handle++;
    bool ok = true;
    *ret_nonce = false;
    if (l->tpm && op->purpose == PURPOSE(SIGN)) {
        /* The service hashes (or takes the caller's hash), the vTPM signs at finish. */
        op->tpm = true;
        if (p->prehashed) {
            op->prehashed = md_of(p->digest);
        } else {
            op->md = EVP_MD_CTX_new();
            ok = op->md && EVP_DigestInit_ex(op->md, md_of(p->digest), NULL) == 1;
        }
        int ra = ok ? tpm_auth_of(l->blob, &p->passphrase, &op->auth, err) : 0;
        if (ra < 0) {
            op_free(op);
            return ra;
        }
    } else if ((op->alg == ALG(EC) || op->alg == ALG(RSA)) &&
               (op->purpose == PURPOSE(SIGN) || op->purpose == PURPOSE(VERIFY)) && p->prehashed) {
        /* The caller hashed (PKCS#11's raw mechanisms): the digest is still one the key is
         * authorised for (authorize() checked it), and the input must be of its length. */
        op->prehashed = md_of(p->digest);
        op->pctx = EVP_PKEY_CTX_new(l->pkey, NULL);
        ok = op->pctx &&
             (op->purpose == PURPOSE(SIGN) ? EVP_PKEY_sign_init(op->pctx) : EVP_PKEY_verify_init(op->pctx)) == 1 &&
             EVP_PKEY_CTX_set_signature_md(op->pctx, op->prehashed) == 1;
        if (ok && op->alg == ALG(RSA))
            ok = EVP_PKEY_CTX_set_rsa_padding(op->pctx, p->padding == PAD(RSA_PSS) ? RSA_PKCS1_PSS_PADDING
                                                                                   : RSA_PKCS1_PADDING) == 1 &&
                 (p->padding != PAD(RSA_PSS) ||
                  (EVP_PKEY_CTX_set_rsa_pss_saltlen(op->pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
                   EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, op->prehashed) == 1));
    } else if ((op->alg == ALG(EC) || op->alg == ALG(RSA)) &&
               (op->purpose == PURPOSE(SIGN) || op->purpose == PURPOSE(VERIFY))) {
        EVP_PKEY_CTX *pctx = NULL;
        op->md = EVP_MD_CTX_new();
        ok = op->md &&
             (op->purpose == PURPOSE(SIGN) ? EVP_DigestSignInit(op->md, &pctx, md_of(p->digest), NULL, l->pkey)
                                           : EVP_DigestVerifyInit(op->md, &pctx, md_of(p->digest), NULL, l->pkey)) == 1;
        if (ok && op->alg == ALG(RSA))
            ok = EVP_PKEY_CTX_set_rsa_padding(pctx, p->padding == PAD(RSA_PSS) ? RSA_PKCS1_PSS_PADDING
                                                                               : RSA_PKCS1_PADDING) == 1 &&
                 (p->padding != PAD(RSA_PSS) || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1);
    } else if (op->alg == ALG(RSA)) {
        op->pctx = EVP_PKEY_CTX_new(l->pkey, NULL);
        ok = op->pctx &&
             (op->purpose == PURPOSE(ENCRYPT) ? EVP_PKEY_encrypt_init(op->pctx) : EVP_PKEY_decrypt_init(op->pctx)) ==
                 1 &&
             EVP_PKEY_CTX_set_rsa_padding(op->pctx, p->padding == PAD(RSA_OAEP) ? RSA_PKCS1_OAEP_PADDING
                                                                                : RSA_PKCS1_PADDING) == 1;
        if (ok && p->padding == PAD(RSA_OAEP))
            ok = EVP_PKEY_CTX_set_rsa_oaep_md(op->pctx, md_of(p->digest)) == 1 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, md_of(p->digest)) == 1;
    } else if (op->alg == ALG(EC)) { /* agree */
        op->pctx = EVP_PKEY_CTX_new(l->pkey, NULL);
        ok = op->pctx && EVP_PKEY_derive_init(op->pctx) == 1;
    } else if (op->alg == ALG(HMAC)) {
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        op->mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
        EVP_MAC_free(mac);
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                               OSSL_PARAM_construct_end()};
        ok = op->mac && EVP_MAC_init(op->mac, l->blob->material.data, l->blob->material.len, params) == 1;
        op->mac_bytes = op->purpose == PURPOSE(SIGN) ? p->mac_length / 8 : 0;
    } else { /* AES */
        size_t klen = l->blob->material.len;
        int mode = p->block_mode;
        const EVP_CIPHER *c = mode == MODE(GCM)   ? (klen == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm())
                              : mode == MODE(CBC) ? (klen == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc())
                                                  : (klen == 16 ? EVP_aes_128_ctr() : EVP_aes_256_ctr());
        size_t nlen = mode == MODE(GCM) ? 12 : 16;
        bool enc = op->purpose == PURPOSE(ENCRYPT);
        const KsAuthorizations *a = ch->auths;
        op->gcm = mode == MODE(GCM);
        op->mac_bytes = op->gcm ? (p->has_mac_length ? p->mac_length : 128) / 8 : 0;
        if (p->has_nonce && p->nonce.len) {
            if (enc && !a->caller_nonce) {
                op_free(op);
                return tm_err_set(err, E(INVALID_NONCE), "key %s does not take the caller's nonce", alias);
            }
            if (p->nonce.len != nlen) {
                op_free(op);
                return tm_err_set(err, E(INVALID_NONCE), "%s needs a nonce of %zu bytes", mode_name(mode), nlen);
            }
            memcpy(ks->nonce, p->nonce.data, nlen);
        } else if (!enc) {
            op_free(op);
            return tm_err_set(err, E(INVALID_NONCE), "decryption needs the nonce");
        } else {
            if (secure_random(ks->nonce, nlen, err) < 0) {
                op_free(op);
                return tm_err_set(err, E(INTERNAL), "%s", err->msg);
            }
            *ret_nonce = true;
        }
        op->cipher = EVP_CIPHER_CTX_new();
        ok = op->cipher && EVP_CipherInit_ex(op->cipher, c, NULL, NULL, NULL, enc) == 1 &&
             (!op->gcm || EVP_CIPHER_CTX_ctrl(op->cipher, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1) &&
             EVP_CipherInit_ex(op->cipher, NULL, NULL, l->blob->material.data, ks->nonce, enc) == 1;
        if (ok && mode == MODE(CBC))
            EVP_CIPHER_CTX_set_padding(op->cipher, p->padding == PAD(PKCS7));
        if (ok && op->gcm && p->has_aad && p->aad.len) {
            int outl;
            ok = EVP_CipherUpdate(op->cipher, NULL, &outl, p->aad.data, (int)p->aad.len) == 1;
        }
    }
    if (!ok) {
        op_free(op);
        return tm_err_set(err, E(INTERNAL), "cannot begin the operation");
    }
    *slot = op;
    *ret = op;
    return 0;
}

static void end_op(struct ks *ks, struct op *op)
{
    struct op **slot = op_slot(ks, op->handle);
    if (slot)
        *slot = NULL;
    op_free(op);
}

/* Feed input; output (AES) goes to ks->out. */
static int update_op(struct ks *ks, struct op *op, const ProtobufCBinaryData *in, tm_err *err)
{
    if (in->len > KS_IO_MAX)
        return tm_err_set(err, E(INVALID_INPUT_LENGTH), "at most %u bytes per update", KS_IO_MAX);
    int r = out_reserve(ks, in->len + 32, err);
    if (r < 0)
        return r;
    if (!in->len)
        return 0;
    if (op->tpm && op->md)
        return EVP_DigestUpdate(op->md, in->data, in->len) == 1 ? 0 : tm_err_set(err, E(INTERNAL), "digest failed");
    if (op->md) {
        int ok = op->purpose == PURPOSE(SIGN) ? EVP_DigestSignUpdate(op->md, in->data, in->len)
                                              : EVP_DigestVerifyUpdate(op->md, in->data, in->len);
        return ok == 1 ? 0 : tm_err_set(err, E(INTERNAL), "digest update failed");
    }
    if (op->mac)
        return EVP_MAC_update(op->mac, in->data, in->len) == 1 ? 0 : tm_err_set(err, E(INTERNAL), "MAC update failed");
    if (op->pctx || op->tpm) {
        if (op->held.len + in->len > 1024)
            return tm_err_set(err, E(INVALID_INPUT_LENGTH), "input too long for this operation");
        return tm_buf_append(&op->held, in->data, in->len) < 0 ? tm_err_set(err, E(INTERNAL), "out of memory") : 0;
    }
    /* AES; GCM decryption holds back the last tag bytes, which may be the tag. */
    const uint8_t *data = in->data;
    size_t n = in->len;
    _cleanup_secret_ struct secret *joined = NULL;
    if (op->gcm && op->purpose == PURPOSE(DECRYPT)) {
        size_t total = op->held.len + n;
        if (secret_new(total, &joined, err) < 0)
            return tm_err_set(err, E(INTERNAL), "%s", err->msg);
        memcpy(joined->data, op->held.data, op->held.len);
        memcpy(joined->data + op->held.len, data, n);
        size_t keep = total < op->mac_bytes ? total : op->mac_bytes;
        explicit_bzero(op->held.data, op->held.len);
        op->held.len = 0;
        tm_buf_append(&op->held, joined->data + total - keep, keep);
        data = joined->data;
        n = total - keep;
    }
    int outl = 0;
    if (n && EVP_CipherUpdate(op->cipher, ks->out->data, &outl, data, (int)n) != 1)
        return tm_err_set(err, E(INTERNAL), "cipher update failed");
    ks->out->len = (size_t)outl;
    return 0;
}

/* A TPM-held key's signature, by the vTPM, into o (room bytes; ks->out grows by its length). */
static int finish_tpm(struct ks *ks, struct op *op, uint8_t *o, size_t room, tm_err *err)
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    if (op->md) {
        if (EVP_DigestFinal_ex(op->md, digest, &dlen) != 1)
            return tm_err_set(err, E(INTERNAL), "digest failed");
    } else {
        if (op->held.len != (size_t)EVP_MD_get_size(op->prehashed))
            return tm_err_set(err, E(INVALID_INPUT_LENGTH),
                              "a prehashed input must be a %s hash (%d bytes), not %zu bytes",
                              EVP_MD_get0_name(op->prehashed), EVP_MD_get_size(op->prehashed), op->held.len);
        memcpy(digest, op->held.data, op->held.len);
        dlen = (unsigned)op->held.len;
    }
    KsKeyBlob *b = op->key->blob;
    bool pass = b->characteristics->auths->passphrase_required;
    bool checked = pass && b->passphrase_verifier;
    int r = 0;
    if (checked)
        r = check_passphrase(ks, op->key, op->auth, err);
    else if (pass)
        r = count_passphrase_try(ks, op->key, err); /* a blob from before the verifiers */
    if (r < 0)
        return r;
    size_t len = room;
    r = ks_tpm_sign(ks->st->tpm, b->tpm_public.data, b->tpm_public.len, b->tpm_private.data, b->tpm_private.len,
                    op->auth->data, op->auth->len, digest, dlen, o, &len, err);
    if (r < 0)
        return r; /* an unchecked try stays counted, whatever the vTPM answered */
    /* The passphrase was right: the count starts again. Checked by the verifier, the count is
     * stored only if wrong ones came before (or with the use, when the key counts uses): a busy
     * key signs without a commit. Counted before the try (a blob from before the verifiers), the
     * blob gains its verifier now, stored with the count's reset: one commit, once. */
    uint32_t tries = b->passphrase_failures;
    b->passphrase_failures = 0;
    bool add = pass && !checked;
    if (add) {
        if ((r = ks_verifier_make(op->auth->data, op->auth->len, &op->key->added, err)) < 0) {
            b->passphrase_failures = tries;
            explicit_bzero(o, len);
            return r;
        }
        b->passphrase_verifier = &op->key->added.msg;
    }
    if (b->characteristics->auths->usage_count_limit)
        r = count_use(ks, op->key, err);
    else if (add || tries > 0)
        r = ks_store_put(ks->st, op->key->alias, b, err);
    if (r < 0) {
        b->passphrase_failures = tries;
        if (add)
            b->passphrase_verifier = NULL; /* as stored */
        explicit_bzero(o, len); /* not counted: it does not leave */
        return r;
    }
    ks->out->len += len;
    return 0;
}

/* Finish: the final output (signature, MAC, ciphertext tail + tag, plaintext) in ks->out. */
static int finish_op(struct ks *ks, struct op *op, const ProtobufCBinaryData *in, const ProtobufCBinaryData *sig,
                     tm_err *err)
{
    int r = update_op(ks, op, in, err);
    if (r < 0)
        return r;
    size_t have = ks->out->len;
    uint8_t *o = ks->out->data + have;
    size_t room = OUT_CAP - have;
    if (op->tpm)
        return finish_tpm(ks, op, o, room, err);
    if (op->md) {
        /* The operation ends with this call: without the flag OpenSSL copies the whole context
         * (key and digest state) first, so that it could be finished again. */
        EVP_MD_CTX_set_flags(op->md, EVP_MD_CTX_FLAG_FINALISE);
        if (op->purpose == PURPOSE(SIGN)) {
            size_t len = room;
            if (EVP_DigestSignFinal(op->md, o, &len) != 1)
                return tm_err_set(err, E(INTERNAL), "signing failed");
            ks->out->len = have + len;
            return 0;
        }
        if (EVP_DigestVerifyFinal(op->md, sig->data, sig->len) != 1)
            return tm_err_set(err, E(VERIFICATION_FAILED), "the signature does not verify");
        return 0;
    }
    if (op->mac) {
        uint8_t mac[32];
        size_t len = 0;
        if (EVP_MAC_final(op->mac, mac, &len, sizeof(mac)) != 1)
            return tm_err_set(err, E(INTERNAL), "MAC failed");
        if (op->purpose == PURPOSE(SIGN)) {
            memcpy(o, mac, op->mac_bytes);
            ks->out->len = have + op->mac_bytes;
            return 0;
        }
        const KsAuthorizations *a = op->key->blob->characteristics->auths;
        if (sig->len * 8 < a->min_mac_length || sig->len > len)
            return tm_err_set(err, E(INVALID_MAC_LENGTH), "a MAC of %zu bits (%u..256 allowed)", sig->len * 8,
                              a->min_mac_length);
        if (CRYPTO_memcmp(mac, sig->data, sig->len) != 0)
            return tm_err_set(err, E(VERIFICATION_FAILED), "the MAC does not verify");
        return 0;
    }
    if (op->prehashed) {
        if (op->held.len != (size_t)EVP_MD_get_size(op->prehashed))
            return tm_err_set(err, E(INVALID_INPUT_LENGTH),
                              "a prehashed input must be a %s hash (%d bytes), not %zu bytes",
                              EVP_MD_get0_name(op->prehashed), EVP_MD_get_size(op->prehashed), op->held.len);
        if (op->purpose == PURPOSE(SIGN)) {
            size_t len = room;
            if (EVP_PKEY_sign(op->pctx, o, &len, op->held.data, op->held.len) != 1)
                return tm_err_set(err, E(INTERNAL), "signing failed");
            ks->out->len = have + len;
            return 0;
        }
        if (EVP_PKEY_verify(op->pctx, sig->data, sig->len, op->held.data, op->held.len) != 1)
            return tm_err_set(err, E(VERIFICATION_FAILED), "the signature does not verify");
        return 0;
    }
    if (op->pctx && op->alg == ALG(EC)) {
        const uint8_t *p = op->held.data;
        EVP_PKEY *peer = op->held.len ? d2i_PUBKEY(NULL, &p, (long)op->held.len) : NULL;
        size_t len = room;
        bool ok = peer && EVP_PKEY_derive_set_peer(op->pctx, peer) == 1 && EVP_PKEY_derive(op->pctx, o, &len) == 1;
        EVP_PKEY_free(peer);
        if (!ok)
            return tm_err_set(err, E(INVALID_ARGUMENT),
                              "the input is no EC public key (SubjectPublicKeyInfo) "
                              "on the key's curve");
        ks->out->len = have + len;
        return 0;
    }
    if (op->pctx) {
        size_t len = room;
        int ok = op->purpose == PURPOSE(ENCRYPT) ? EVP_PKEY_encrypt(op->pctx, o, &len, op->held.data, op->held.len)
                                                 : EVP_PKEY_decrypt(op->pctx, o, &len, op->held.data, op->held.len);
        if (ok != 1)
            return tm_err_set(err, op->purpose == PURPOSE(ENCRYPT) ? E(INVALID_INPUT_LENGTH) : E(INVALID_ARGUMENT),
                              "RSA %s failed", purpose_name(op->purpose));
        ks->out->len = have + len;
        return 0;
    }
    int outl = 0;
    if (op->gcm && op->purpose == PURPOSE(DECRYPT)) {
        if (op->held.len != op->mac_bytes)
            return tm_err_set(err, E(INVALID_INPUT_LENGTH), "the ciphertext is shorter than its tag");
        EVP_CIPHER_CTX_ctrl(op->cipher, EVP_CTRL_GCM_SET_TAG, (int)op->mac_bytes, op->held.data);
    }
    if (EVP_CipherFinal_ex(op->cipher, o, &outl) != 1)
        return tm_err_set(err, op->gcm ? E(INVALID_TAG) : E(INVALID_INPUT_LENGTH), "%s",
                          op->gcm ? "the GCM tag does not verify" : "bad input length or padding");
    ks->out->len = have + (size_t)outl;
    if (op->gcm && op->purpose == PURPOSE(ENCRYPT)) {
        if (EVP_CIPHER_CTX_ctrl(op->cipher, EVP_CTRL_GCM_GET_TAG, (int)op->mac_bytes, ks->out->data + ks->out->len) !=
            1)
            return tm_err_set(err, E(INTERNAL), "no GCM tag");
        ks->out->len += op->mac_bytes;
    }
    return 0;
}

static void answer_output(struct ks *ks, KsResponse *resp, bool nonce, size_t nonce_len)
{
    trustme__keystore__ks_output__init(&ks->output);
    ks->output.has_output = true;
    ks->output.output = (ProtobufCBinaryData){ks->out ? ks->out->len : 0, ks->out ? ks->out->data : NULL};
    if (nonce) {
        ks->output.has_nonce = true;
        ks->output.nonce = (ProtobufCBinaryData){nonce_len, ks->nonce};
    }
    resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_OUTPUT;
    resp->output = &ks->output;
}

static size_t nonce_len_of(const KsOperationParams *p)
{
    return p->has_block_mode && p->block_mode == MODE(GCM) ? 12 : 16;
}

/* ---- the other requests ------------------------------------------------------------------ */

static int export_public(struct ks *ks, const char *alias, KsResponse *resp, tm_err *err)
{
    struct loaded *l;
    int r = load(ks, alias, &l, err);
    if (r < 0)
        return r;
    if (!l->pkey)
        return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "key %s is a secret key: it has no public part", alias);
    int len = i2d_PUBKEY(l->pkey, &ks->heap_out);
    if (len <= 0)
        return tm_err_set(err, E(INTERNAL), "cannot encode the public key");
    trustme__keystore__ks_public_key__init(&ks->pub);
    ks->pub.has_spki_der = true;
    ks->pub.spki_der = (ProtobufCBinaryData){(size_t)len, ks->heap_out};
    resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_PUBLIC_KEY;
    resp->public_key = &ks->pub;
    return 0;
}

struct list_ctx {
    struct ks *ks;
    char (*aliases)[KS_ALIAS_MAX + 1];
    size_t n, cap;
};

static void collect(const char *alias, void *ud)
{
    struct list_ctx *lc = ud;
    if (lc->n < lc->cap)
        snprintf(lc->aliases[lc->n++], KS_ALIAS_MAX + 1, "%s", alias);
}

static int list_keys(struct ks *ks, KsResponse *resp, tm_err *err)
{
    struct list_ctx lc = {.ks = ks, .cap = KS_MAX_KEYS};
    _cleanup_free_ char(*aliases)[KS_ALIAS_MAX + 1] = calloc(KS_MAX_KEYS, KS_ALIAS_MAX + 1);
    lc.aliases = aliases;
    ks->list_ptrs = calloc(KS_MAX_KEYS, sizeof(*ks->list_ptrs));
    ks->list_mems = calloc(KS_MAX_KEYS, sizeof(*ks->list_mems));
    if (!aliases || !ks->list_ptrs || !ks->list_mems)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    int r = ks_store_each(ks->st, collect, &lc, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < lc.n; i++) {
        KsKeyBlob *blob;
        tm_err e;
        if (ks_store_get(ks->st, aliases[i], &blob, &ks->list_mems[ks->nlist], &e) < 0)
            continue; /* a blob that does not open is no key of this container */
        ks->list_ptrs[ks->nlist++] = blob->characteristics;
    }
    trustme__keystore__ks_key_list__init(&ks->keylist);
    ks->keylist.n_keys = ks->nlist;
    ks->keylist.keys = ks->list_ptrs;
    resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEYS;
    resp->keys = &ks->keylist;
    return 0;
}

int ks_certify_tpm_key(struct ks *ks, const char *alias, uint32_t signer, const uint8_t qual[32], tm_buf *ret_public,
                       tm_buf *ret_attest, tm_buf *ret_sig, tm_err *err)
{
    struct loaded *l;
    int r = load(ks, alias, &l, err);
    if (r < 0)
        return r;
    const KsKeyBlob *b = l->blob;
    if (!l->tpm || b->characteristics->auths->passphrase_required)
        return 1;
    if (b->tpm_public.len <= 2)
        return tm_err_set(err, E(INVALID_KEY_BLOB), "key %s: its TPM public area is missing", alias);
    _cleanup_secret_ struct secret *auth = NULL;
    ProtobufCBinaryData none = {0};
    if ((r = tpm_auth_of(b, &none, &auth, err)) < 0)
        return r;
    if ((r = ks_tpm_certify(ks->st->tpm, b->tpm_public.data, b->tpm_public.len, b->tpm_private.data, b->tpm_private.len,
                            auth->data, 32, signer, qual, ret_attest, ret_sig, err)) < 0)
        return r;
    /* The blob holds a TPM2B_PUBLIC: its TPMT_PUBLIC follows the 2-byte size. */
    if (tm_buf_append(ret_public, b->tpm_public.data + 2, b->tpm_public.len - 2) < 0)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    return 0;
}

static int get_characteristics(struct ks *ks, const char *alias, KsResponse *resp, tm_err *err)
{
    struct loaded *l;
    int r = load(ks, alias, &l, err);
    if (r < 0)
        return r;
    resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEY;
    resp->key = l->blob->characteristics;
    return 0;
}

static int delete_key(struct ks *ks, const char *alias, tm_err *err)
{
    if (!ks_alias_valid(alias))
        return tm_err_set(err, E(INVALID_ARGUMENT), "bad alias");
    /* Deleted first: a refused delete keeps the key loaded, with a count not yet stored. */
    int r = ks_store_delete(ks->st, alias, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < KS_MAX_OPERATIONS; i++)
        if (ks->ops[i] && strcmp(ks->ops[i]->key->alias, alias) == 0) {
            op_free(ks->ops[i]);
            ks->ops[i] = NULL;
        }
    unload(ks, alias);
    return 0;
}

/* ---- wrapped keys ------------------------------------------------------------------------- */

/* A key a server wrapped for this keystore (docs/KEYSTORE.md "Wrapped keys"): the transport key
 * comes out of the wrapping key (RSA-OAEP, under that key's authorisations), the key material out
 * of AES-256-GCM under it with the server's description as associated data; the key is then
 * imported with the description's algorithm and authorisations. Plaintexts stay in locked
 * memory. */
static int import_wrapped(struct ks *ks, const Trustme__Keystore__KsImportWrappedKey *iw, KsResponse *resp, tm_err *err)
{
    int r = check_new_alias(ks, iw->alias, err);
    if (r < 0)
        return r;
    if (!iw->has_wrapped_key || !iw->wrapping_alias)
        return tm_err_set(err, E(INVALID_ARGUMENT), "a wrapped key and its wrapping key's alias are needed");
    struct loaded *l;
    if ((r = load(ks, iw->wrapping_alias, &l, err)) < 0)
        return r;
    if (l->blob->characteristics->algorithm != ALG(RSA))
        return tm_err_set(err, E(UNSUPPORTED_ALGORITHM), "wrapping keys are RSA keys (OAEP), %s is %s", l->alias,
                          alg_name(l->blob->characteristics->algorithm));
    KsOperationParams p = TRUSTME__KEYSTORE__KS_OPERATION_PARAMS__INIT;
    p.has_purpose = p.has_digest = p.has_padding = true;
    p.purpose = PURPOSE(WRAP);
    p.digest = DIGEST(SHA256);
    p.padding = PAD(RSA_OAEP);
    p.has_passphrase = iw->has_wrapping_passphrase;
    p.passphrase = iw->wrapping_passphrase;
    if ((r = authorize_use(ks, l, &p, err)) < 0)
        return r;
    Trustme__Keystore__KsWrappedKey *wk =
        trustme__keystore__ks_wrapped_key__unpack(NULL, iw->wrapped_key.len, iw->wrapped_key.data);
    Trustme__Keystore__KsWrappedKeyDescription *desc =
        wk && wk->has_key_description ? trustme__keystore__ks_wrapped_key_description__unpack(
                                            NULL, wk->key_description.len, wk->key_description.data)
                                      : NULL;
    _cleanup_secret_ struct secret *tkey = NULL, *material = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_CIPHER_CTX *cctx = NULL;
    size_t tlen = 0;
    int outl = 0, finl = 0;
    if (!wk || !desc || !wk->has_encrypted_transport_key || !wk->has_iv || wk->iv.len != 12 || !wk->has_encrypted_key ||
        wk->encrypted_key.len <= 16 || wk->encrypted_key.len > KS_IO_MAX) {
        r = tm_err_set(err, E(INVALID_ARGUMENT), "the wrapped key is malformed");
        goto out;
    }
    if ((r = secret_new(512, &tkey, err)) < 0 || (r = secret_new(wk->encrypted_key.len, &material, err)) < 0) {
        r = tm_err_set(err, E(INTERNAL), "out of memory");
        goto out;
    }
    tlen = tkey->len;
    if (!(pctx = EVP_PKEY_CTX_new(l->pkey, NULL)) || EVP_PKEY_decrypt_init(pctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_decrypt(pctx, tkey->data, &tlen, wk->encrypted_transport_key.data, wk->encrypted_transport_key.len) <=
            0 ||
        tlen != 32) {
        ERR_clear_error();
        r = tm_err_set(err, E(INVALID_KEY_BLOB), "the transport key does not open with wrapping key %s", l->alias);
        goto out;
    }
    size_t clen = wk->encrypted_key.len - 16;
    if (!(cctx = EVP_CIPHER_CTX_new()) ||
        EVP_DecryptInit_ex(cctx, EVP_aes_256_gcm(), NULL, tkey->data, wk->iv.data) != 1 ||
        EVP_DecryptUpdate(cctx, NULL, &outl, wk->key_description.data, (int)wk->key_description.len) != 1 ||
        EVP_DecryptUpdate(cctx, material->data, &outl, wk->encrypted_key.data, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_SET_TAG, 16, wk->encrypted_key.data + clen) != 1 ||
        EVP_DecryptFinal_ex(cctx, material->data + outl, &finl) != 1) {
        ERR_clear_error();
        r = tm_err_set(err, E(INVALID_TAG),
                       "the wrapped key does not authenticate (edited, another description, another transport key)");
        goto out;
    }
    if (desc->auths && desc->auths->passphrase_required && (!iw->has_passphrase || iw->passphrase.len == 0)) {
        r = tm_err_set(err, E(AUTH_REQUIRED), "the wrapped key's description requires a passphrase");
        goto out;
    }
    Trustme__Keystore__KsImportKey im = TRUSTME__KEYSTORE__KS_IMPORT_KEY__INIT;
    im.alias = iw->alias;
    im.has_algorithm = true;
    im.algorithm = desc->has_algorithm ? desc->algorithm : ALG(NONE);
    im.auths = desc->auths;
    im.has_passphrase = iw->has_passphrase;
    im.passphrase = iw->passphrase;
    im.has_key_material = true;
    im.key_material = (ProtobufCBinaryData){(size_t)(outl + finl), material->data};
    r = import(ks, &im, resp, err);
    /* resp->key points into ks->chars, whose auths are desc's: keep a copy the answer can use. */
    if (r == 0 && desc->auths) {
        size_t n = trustme__keystore__ks_authorizations__get_packed_size(desc->auths);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            trustme__keystore__ks_authorizations__pack(desc->auths, buf);
            ks->wrapped_auths = trustme__keystore__ks_authorizations__unpack(NULL, n, buf);
            free(buf);
        }
        ks->chars.auths = ks->wrapped_auths;
    }
out:
    EVP_PKEY_CTX_free(pctx);
    EVP_CIPHER_CTX_free(cctx);
    if (desc)
        trustme__keystore__ks_wrapped_key_description__free_unpacked(desc, NULL);
    if (wk)
        trustme__keystore__ks_wrapped_key__free_unpacked(wk, NULL);
    return r;
}

int ks_handle(struct ks *ks, const KsRequest *req, KsResponse *resp, tm_err *err)
{
    ks_reset_answer(ks);
    int r;
    struct op *op;
    bool nonce;
    switch (req->body_case) {
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_GENERATE_KEY: r = generate(ks, req->generate_key, resp, err); break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_IMPORT_KEY: r = import(ks, req->import_key, resp, err); break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_IMPORT_WRAPPED_KEY:
        r = import_wrapped(ks, req->import_wrapped_key, resp, err);
        break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_BEGIN:
        r = begin_op(ks, req->begin->alias, req->begin->params, &op, &nonce, err);
        if (r < 0)
            break;
        trustme__keystore__ks_begin_result__init(&ks->begun);
        ks->begun.has_handle = true;
        ks->begun.handle = op->handle;
        if (nonce) {
            ks->begun.has_nonce = true;
            ks->begun.nonce = (ProtobufCBinaryData){nonce_len_of(req->begin->params), ks->nonce};
        }
        resp->body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_BEGUN;
        resp->begun = &ks->begun;
        break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_UPDATE: {
        struct op **slot = op_slot(ks, req->update->handle);
        if (!slot) {
            r = tm_err_set(err, E(INVALID_HANDLE), "no operation %llu", (unsigned long long)req->update->handle);
            break;
        }
        r = update_op(ks, *slot, &req->update->input, err);
        if (r < 0)
            end_op(ks, *slot); /* a failed step ends the operation */
        else
            answer_output(ks, resp, false, 0);
        break;
    }
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_FINISH: {
        struct op **slot = op_slot(ks, req->finish->handle);
        if (!slot) {
            r = tm_err_set(err, E(INVALID_HANDLE), "no operation %llu", (unsigned long long)req->finish->handle);
            break;
        }
        op = *slot;
        r = finish_op(ks, op, &req->finish->input, &req->finish->signature, err);
        end_op(ks, op);
        if (r == 0)
            answer_output(ks, resp, false, 0);
        break;
    }
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_ABORT: {
        struct op **slot = op_slot(ks, req->abort->handle);
        if (!slot) {
            r = tm_err_set(err, E(INVALID_HANDLE), "no operation %llu", (unsigned long long)req->abort->handle);
            break;
        }
        end_op(ks, *slot);
        r = 0;
        break;
    }
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_ONE_SHOT: {
        const Trustme__Keystore__KsOneShot *os = req->one_shot;
        r = begin_op(ks, os->alias, os->params, &op, &nonce, err);
        if (r < 0)
            break;
        r = finish_op(ks, op, &os->input, &os->signature, err);
        end_op(ks, op);
        if (r == 0)
            answer_output(ks, resp, nonce, nonce_len_of(os->params));
        break;
    }
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_EXPORT_PUBLIC_KEY:
        r = export_public(ks, req->export_public_key->alias, resp, err);
        break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_DELETE_KEY: r = delete_key(ks, req->delete_key->alias, err); break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_LIST_KEYS: r = list_keys(ks, resp, err); break;
    case TRUSTME__KEYSTORE__KS_REQUEST__BODY_GET_CHARACTERISTICS:
        r = get_characteristics(ks, req->get_characteristics->alias, resp, err);
        break;
    default: r = tm_err_set(err, E(MALFORMED_MESSAGE), "unknown request"); break;
    }
    return r < 0 ? -r : 0;
}
