/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "token_soft.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "fs_err.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "kdf_aead.h"
#include "uuid.h"
#include "x25519_seal.h"

#define SOFT_FILE_MAX 4096
#define SOFT_VERSION 3
#define SOFT_VERSION_MIN 2
/* Per slot format: a v3 file's PIN slot and its PUK slot are v3; a v2 file's slots, and the PUK
 * slot kept by a migration without the PUK (puk_key), are v2. */
#define SOFT_AAD_PREFIX_V2 "trustme soft token v2:"
#define SOFT_AAD_PREFIX_V3 "trustme soft token v3:"
#define SOFT_SLOT_INFO_V2 "trustme soft token slot v2"
#define SOFT_SLOT_INFO_V3 "trustme soft token slot v3"
#define SOFT_PUK_KEY_INFO "trustme soft token puk key v3"

_Static_assert(SOFT_CT_LEN == SOFT_KEK_LEN + AEAD_TAG_LEN, "tag length");
_Static_assert(sizeof(((struct soft_slot_data *)0)->nonce) == AEAD_NONCE_LEN, "nonce length");

static const char *slot_name(enum soft_slot s)
{
    return s == SOFT_SLOT_PIN ? "pin" : "puk";
}

/* The AAD of a part of the file: "<prefix><uuid>:<what>". */
static int part_aad(int ver, const char *uuid, const char *what, char *aad, size_t size, tm_err *err)
{
    if (!tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "not a container UUID: \"%s\"", uuid);
    return snprintf(aad, size, "%s%s:%s", ver == 2 ? SOFT_AAD_PREFIX_V2 : SOFT_AAD_PREFIX_V3, uuid, what);
}

static int slot_aad(int ver, const char *uuid, enum soft_slot slot, char *aad, size_t size, tm_err *err)
{
    return part_aad(ver, uuid, slot_name(slot), aad, size, err);
}

/* The format of a slot of tok (see SOFT_AAD_PREFIX_*). */
static int slot_version(const struct soft_token *tok, enum soft_slot slot)
{
    if (tok->version == 2 || (slot == SOFT_SLOT_PUK && tok->puk_legacy))
        return 2;
    return 3;
}

/* scrypt(secret) alone would make the file an oracle: whoever holds a copy tries PINs until the
 * GCM tag fits (docs/STORAGE.md). The slot key is therefore HKDF(scrypt(secret), salt = the TPM-sealed
 * device secret): without the TPM in its measured state a guess cannot be checked. (NULL: no
 * device secret, unit tests only; scd refuses every token request without one.) */
static int slot_ikm(const char *secret, const uint8_t salt[SOFT_SALT_LEN], uint64_t n, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_new(AEAD_KEY_LEN, &s, err);
    if (r < 0 || (r = kdf_scrypt(secret, salt, SOFT_SALT_LEN, n, SOFT_KDF_R, SOFT_KDF_P, s, err)) < 0)
        return r;
    *ret = steal_ptr(s);
    return 0;
}

static int key_of_ikm(int ver, const struct secret *ikm, const struct secret *device_secret, struct secret **ret,
                      tm_err *err)
{
    _cleanup_secret_ struct secret *k = NULL;
    int r = secret_new(AEAD_KEY_LEN, &k, err);
    if (r < 0 ||
        (r = kdf_hkdf_sha256(ikm, device_secret ? device_secret->data : NULL, device_secret ? device_secret->len : 0,
                             ver == 2 ? SOFT_SLOT_INFO_V2 : SOFT_SLOT_INFO_V3, k, err)) < 0)
        return r;
    *ret = steal_ptr(k);
    return 0;
}

static int slot_key(int ver, const char *secret, const struct soft_slot_data *sd, uint64_t n,
                    const struct secret *device_secret, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = slot_ikm(secret, sd->salt, n, &s, err);
    return r < 0 ? r : key_of_ikm(ver, s, device_secret, ret, err);
}

/* Encrypt a 32-byte payload (the KEK; in a v3 PUK slot, the PUK key pair's private key) under
 * the key derived from ikm (scrypt of the secret with sd's salt, which is set). Slots made here are
 * always version 3. */
static int slot_seal_ikm(struct soft_slot_data *sd, const char *uuid, enum soft_slot slot, const struct secret *ikm,
                         const struct secret *device_secret, const struct secret *kek, tm_err *err)
{
    char aad[128];
    _cleanup_secret_ struct secret *k = NULL;
    int r = slot_aad(3, uuid, slot, aad, sizeof(aad), err);
    if (r < 0 || (r = secure_random(sd->nonce, sizeof(sd->nonce), err)) < 0 ||
        (r = key_of_ikm(3, ikm, device_secret, &k, err)) < 0)
        return r;
    return aead_seal(k, sd->nonce, aad, strlen(aad), kek->data, SOFT_KEK_LEN, sd->ct, sd->ct + SOFT_KEK_LEN, err);
}

/* The same under secret, with a new salt. */
static int slot_seal(struct soft_slot_data *sd, const char *uuid, enum soft_slot slot, const char *secret, uint64_t n,
                     const struct secret *device_secret, const struct secret *kek, tm_err *err)
{
    _cleanup_secret_ struct secret *ikm = NULL;
    int r = secure_random(sd->salt, sizeof(sd->salt), err);
    if (r < 0 || (r = slot_ikm(secret, sd->salt, n, &ikm, err)) < 0)
        return r;
    return slot_seal_ikm(sd, uuid, slot, ikm, device_secret, kek, err);
}

/* --- the file --- */

static int get_b64(json_t *obj, const char *path, const char *key, uint8_t *out, size_t len, tm_err *err)
{
    char fpath[TM_JSON_PATH_MAX];
    const char *v;
    int r = tm_json_get_string(obj, path, key, true, 128, &v, err);
    if (r < 0)
        return r;
    tm_json_path_key(fpath, path, key);
    return b64_decode_exact(fpath, v, out, len, err);
}

static int parse_slot(json_t *root, enum soft_slot slot, struct soft_slot_data *sd, tm_err *err)
{
    static const char *const keys[] = {"salt", "nonce", "ct", NULL};
    char path[TM_JSON_PATH_MAX];
    json_t *obj;
    tm_json_path_key(path, "$", slot_name(slot));
    int r = tm_json_get_object(root, "$", slot_name(slot), true, 8, &obj, err);
    if (r < 0 || (r = tm_json_check_keys(obj, path, keys, err)) < 0 ||
        (r = get_b64(obj, path, "salt", sd->salt, sizeof(sd->salt), err)) < 0 ||
        (r = get_b64(obj, path, "nonce", sd->nonce, sizeof(sd->nonce), err)) < 0)
        return r;
    return get_b64(obj, path, "ct", sd->ct, sizeof(sd->ct), err);
}

static int parse_sealed(json_t *root, struct x25519_box *b, tm_err *err)
{
    static const char *const keys[] = {"epk", "nonce", "ct", NULL};
    json_t *obj;
    int r = tm_json_get_object(root, "$", "sealed", true, 8, &obj, err);
    if (r < 0 || (r = tm_json_check_keys(obj, "$.sealed", keys, err)) < 0 ||
        (r = get_b64(obj, "$.sealed", "epk", b->epk, sizeof(b->epk), err)) < 0 ||
        (r = get_b64(obj, "$.sealed", "nonce", b->nonce, sizeof(b->nonce), err)) < 0)
        return r;
    return get_b64(obj, "$.sealed", "ct", b->ct, sizeof(b->ct), err);
}

static int parse_puk_key(json_t *root, struct soft_box *b, tm_err *err)
{
    static const char *const keys[] = {"nonce", "ct", NULL};
    json_t *obj;
    int r = tm_json_get_object(root, "$", "puk_key", true, 8, &obj, err);
    if (r < 0 || (r = tm_json_check_keys(obj, "$.puk_key", keys, err)) < 0 ||
        (r = get_b64(obj, "$.puk_key", "nonce", b->nonce, sizeof(b->nonce), err)) < 0)
        return r;
    return get_b64(obj, "$.puk_key", "ct", b->ct, sizeof(b->ct), err);
}

static int parse_kdf(json_t *root, uint64_t *ret_n, tm_err *err)
{
    static const char *const keys[] = {"alg", "N", "r", "p", NULL};
    json_t *kdf;
    const char *alg;
    int64_t n, rr, p;
    int r = tm_json_get_object(root, "$", "kdf", true, 8, &kdf, err);
    if (r < 0 || (r = tm_json_check_keys(kdf, "$.kdf", keys, err)) < 0 ||
        (r = tm_json_get_string(kdf, "$.kdf", "alg", true, 32, &alg, err)) < 0)
        return r;
    if (strcmp(alg, "scrypt") != 0)
        return tm_err_set(err, EINVAL, "$.kdf.alg: must be \"scrypt\", got \"%s\"", alg);
    /* Bounded: a tampered N must not make scd allocate gigabytes or spin for minutes. */
    if ((r = tm_json_get_int(kdf, "$.kdf", "N", true, (int64_t)SOFT_KDF_N_MIN, (int64_t)SOFT_KDF_N_MAX, &n, err)) < 0 ||
        (r = tm_json_get_int(kdf, "$.kdf", "r", true, SOFT_KDF_R, SOFT_KDF_R, &rr, err)) < 0 ||
        (r = tm_json_get_int(kdf, "$.kdf", "p", true, SOFT_KDF_P, SOFT_KDF_P, &p, err)) < 0)
        return r;
    if (n & (n - 1))
        return tm_err_set(err, EINVAL, "$.kdf.N: must be a power of two, got %lld", (long long)n);
    *ret_n = (uint64_t)n;
    return 0;
}

static int soft_parse(const char *data, size_t len, struct soft_token *f, tm_err *err)
{
    static const char *const keys_v2[] = {"version", "kdf", "pin", "puk", NULL};
    static const char *const keys_v3[] = {"version", "kdf", "pin", "puk", "puk_pub", "sealed", "puk_key", NULL};
    _cleanup_json_ json_t *root = NULL;
    int64_t version;
    int r = tm_json_parse_object(data, len, &root, err);
    if (r < 0 || (r = tm_json_get_int(root, "$", "version", true, 0, INT32_MAX, &version, err)) < 0)
        return r;
    /* Version 1 (scrypt alone, an offline PIN oracle) is refused; 2 is read and becomes 3 at
     * its next PIN change or PUK unlock. */
    if (version < SOFT_VERSION_MIN || version > SOFT_VERSION)
        return tm_err_set(err, EOPNOTSUPP,
                          "$.version: soft token version %lld is not supported "
                          "(this build reads versions %d to %d)",
                          (long long)version, SOFT_VERSION_MIN, SOFT_VERSION);
    *f = (struct soft_token){.version = (int)version};
    if ((r = tm_json_check_keys(root, "$", version == 2 ? keys_v2 : keys_v3, err)) < 0 ||
        (r = parse_kdf(root, &f->kdf_n, err)) < 0 ||
        (r = parse_slot(root, SOFT_SLOT_PIN, &f->slot[SOFT_SLOT_PIN], err)) < 0 ||
        (r = parse_slot(root, SOFT_SLOT_PUK, &f->slot[SOFT_SLOT_PUK], err)) < 0)
        return r;
    if (version == 2)
        return 0;
    if ((r = get_b64(root, "$", "puk_pub", f->puk_pub, sizeof(f->puk_pub), err)) < 0 ||
        (r = parse_sealed(root, &f->sealed, err)) < 0)
        return r;
    f->puk_legacy = json_object_get(root, "puk_key") != NULL;
    return f->puk_legacy ? parse_puk_key(root, &f->puk_key, err) : 0;
}

int soft_token_load(const char *path, struct soft_token *ret, tm_err *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = fs_err(read_file(path, SOFT_FILE_MAX, &data, &len, err), err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOKEY, "soft token file %s is missing", path);
    if (r < 0)
        return r;
    return soft_token_parse(data, len, path, ret, err);
}

int soft_token_parse(const char *data, size_t len, const char *path, struct soft_token *ret, tm_err *err)
{
    struct soft_token f;
    int r = soft_parse(data, len, &f, err);
    if (r < 0)
        return tm_err_prefix(err, "soft token file %s", path);
    *ret = f;
    return 0;
}

/* Add v under key, taking ownership of v in every case; a NULL v (a failed allocation) fails. */
static int add(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    return json_object_set_new(o, key, v) < 0 ? -1 : 0; /* takes v even when it fails */
}

static int add_b64(json_t *o, const char *key, const uint8_t *data, size_t len)
{
    char s[B64_MAX_BYTES * 2];
    b64_encode(data, len, s);
    return add(o, key, json_string(s));
}

static json_t *slot_json(const struct soft_slot_data *sd)
{
    json_t *o = json_object();
    if (!o || add_b64(o, "salt", sd->salt, sizeof(sd->salt)) < 0 ||
        add_b64(o, "nonce", sd->nonce, sizeof(sd->nonce)) < 0 || add_b64(o, "ct", sd->ct, sizeof(sd->ct)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *sealed_json(const struct x25519_box *b)
{
    json_t *o = json_object();
    if (!o || add_b64(o, "epk", b->epk, sizeof(b->epk)) < 0 || add_b64(o, "nonce", b->nonce, sizeof(b->nonce)) < 0 ||
        add_b64(o, "ct", b->ct, sizeof(b->ct)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *box_json(const struct soft_box *b)
{
    json_t *o = json_object();
    if (!o || add_b64(o, "nonce", b->nonce, sizeof(b->nonce)) < 0 || add_b64(o, "ct", b->ct, sizeof(b->ct)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int soft_token_format(const struct soft_token *f, char **ret, size_t *ret_len, tm_err *err)
{
    if (f->version != SOFT_VERSION)
        return tm_err_set(err, EINVAL, "only soft token version %d is written", SOFT_VERSION);
    _cleanup_json_ json_t *root = json_object();
    if (!root || add(root, "version", json_integer(SOFT_VERSION)) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    json_t *kdf = json_object();
    if (add(root, "kdf", kdf) < 0 || add(kdf, "alg", json_string("scrypt")) < 0 ||
        add(kdf, "N", json_integer((int64_t)f->kdf_n)) < 0 || add(kdf, "r", json_integer(SOFT_KDF_R)) < 0 ||
        add(kdf, "p", json_integer(SOFT_KDF_P)) < 0 || add(root, "pin", slot_json(&f->slot[SOFT_SLOT_PIN])) < 0 ||
        add(root, "puk", slot_json(&f->slot[SOFT_SLOT_PUK])) < 0 ||
        add_b64(root, "puk_pub", f->puk_pub, sizeof(f->puk_pub)) < 0 ||
        add(root, "sealed", sealed_json(&f->sealed)) < 0 ||
        (f->puk_legacy && add(root, "puk_key", box_json(&f->puk_key)) < 0))
        return tm_err_set(err, ENOMEM, "out of memory");
    char *s = json_dumps(root, JSON_FORMAT_FLAGS);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ret = s;
    *ret_len = strlen(s);
    return 0;
}

int soft_token_store(const char *path, const struct soft_token *f, tm_err *err)
{
    _cleanup_free_ char *s = NULL;
    size_t len;
    int r = soft_token_format(f, &s, &len, err);
    if (r < 0)
        return r;
    return fs_err(write_file_atomic(path, s, len, 0600, err), err);
}

/* --- operations --- */

/* The key that encrypts the PUK key pair's private key in a file migrated from version 2
 * without the PUK: derived from the KEK the v2 PUK slot holds. */
static int puk_key_key(const struct secret *kek0, const struct secret *device_secret, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *k = NULL;
    int r = secret_new(AEAD_KEY_LEN, &k, err);
    if (r < 0 || (r = kdf_hkdf_sha256(kek0, device_secret ? device_secret->data : NULL,
                                      device_secret ? device_secret->len : 0, SOFT_PUK_KEY_INFO, k, err)) < 0)
        return r;
    *ret = steal_ptr(k);
    return 0;
}

/* Seal kek to the file's PUK public key. */
static int seal_for_puk(struct soft_token *f, const char *uuid, const struct secret *kek,
                        const struct secret *device_secret, tm_err *err)
{
    char aad[128];
    int r = part_aad(3, uuid, "sealed", aad, sizeof(aad), err);
    if (r < 0)
        return r;
    return x25519_seal(f->puk_pub, device_secret, aad, kek, &f->sealed, err);
}

/* A new PUK side: a new key pair, its private key in the PUK slot under ikm (the slot's salt is
 * set), kek sealed to it. */
static int new_puk_side_ikm(struct soft_token *f, const char *uuid, const struct secret *ikm, const struct secret *kek,
                            const struct secret *device_secret, tm_err *err)
{
    _cleanup_secret_ struct secret *priv = NULL;
    int r = x25519_keygen(&priv, f->puk_pub, err);
    if (r < 0 || (r = slot_seal_ikm(&f->slot[SOFT_SLOT_PUK], uuid, SOFT_SLOT_PUK, ikm, device_secret, priv, err)) < 0)
        return r;
    f->puk_legacy = false;
    return seal_for_puk(f, uuid, kek, device_secret, err);
}

/* The same for puk, with a new salt. */
static int new_puk_side(struct soft_token *f, const char *uuid, const char *puk, const struct secret *kek,
                        const struct secret *device_secret, tm_err *err)
{
    _cleanup_secret_ struct secret *ikm = NULL;
    struct soft_slot_data *sd = &f->slot[SOFT_SLOT_PUK];
    int r = secure_random(sd->salt, sizeof(sd->salt), err);
    if (r < 0 || (r = slot_ikm(puk, sd->salt, f->kdf_n, &ikm, err)) < 0)
        return r;
    return new_puk_side_ikm(f, uuid, ikm, kek, device_secret, err);
}

static int check_kdf_n(uint64_t kdf_n, tm_err *err)
{
    if (kdf_n < SOFT_KDF_N_MIN || kdf_n > SOFT_KDF_N_MAX || (kdf_n & (kdf_n - 1)))
        return tm_err_set(err, EINVAL, "scrypt N must be a power of two in 2^10..2^20, got %llu",
                          (unsigned long long)kdf_n);
    return 0;
}

int soft_token_create(const char *path, const char *uuid, uint64_t kdf_n, const char *pin, const char *puk,
                      const struct secret *device_secret, tm_err *err)
{
    struct soft_token f = {.version = SOFT_VERSION, .kdf_n = kdf_n};
    _cleanup_secret_ struct secret *kek = NULL;
    int r = check_kdf_n(kdf_n, err);
    if (r < 0 || (r = secret_random(SOFT_KEK_LEN, &kek, err)) < 0 ||
        (r = slot_seal(&f.slot[SOFT_SLOT_PIN], uuid, SOFT_SLOT_PIN, pin, f.kdf_n, device_secret, kek, err)) < 0 ||
        (r = new_puk_side(&f, uuid, puk, kek, device_secret, err)) < 0)
        return r;
    return soft_token_store(path, &f, err);
}

/* Open one slot: its 32-byte payload. -EACCES: the secret is wrong. */
static int slot_open(const struct soft_token *tok, const char *uuid, enum soft_slot slot, const char *secret,
                     const struct secret *device_secret, struct secret **ret, tm_err *err)
{
    char aad[128];
    int ver = slot_version(tok, slot);
    _cleanup_secret_ struct secret *k = NULL, *out = NULL;
    const struct soft_slot_data *sd = &tok->slot[slot];
    int r = slot_aad(ver, uuid, slot, aad, sizeof(aad), err);
    if (r < 0 || (r = slot_key(ver, secret, sd, tok->kdf_n, device_secret, &k, err)) < 0 ||
        (r = secret_new(SOFT_KEK_LEN, &out, err)) < 0)
        return r;
    r = aead_open(k, sd->nonce, aad, strlen(aad), sd->ct, SOFT_KEK_LEN, sd->ct + SOFT_KEK_LEN, out, err);
    if (r == -EBADMSG)
        return tm_err_set(err, EACCES, "wrong %s", slot == SOFT_SLOT_PIN ? "PIN" : "PUK");
    if (r < 0)
        return r;
    *ret = steal_ptr(out);
    return 0;
}

/* Version 3's PUK side, once the PUK slot is open (payload): the private key, then the KEK. */
static int open_puk_side(const struct soft_token *tok, const char *uuid, const struct secret *payload,
                         const struct secret *device_secret, struct secret **ret_kek, tm_err *err)
{
    char aad[128];
    _cleanup_secret_ struct secret *priv = NULL, *k = NULL;
    int r;
    if (tok->puk_legacy) {
        /* payload is the KEK of the v2 file this one was migrated from */
        if ((r = part_aad(3, uuid, "puk-key", aad, sizeof(aad), err)) < 0 ||
            (r = puk_key_key(payload, device_secret, &k, err)) < 0 || (r = secret_new(X25519_KEY_LEN, &priv, err)) < 0)
            return r;
        r = aead_open(k, tok->puk_key.nonce, aad, strlen(aad), tok->puk_key.ct, X25519_KEY_LEN,
                      tok->puk_key.ct + X25519_KEY_LEN, priv, err);
    } else {
        r = secret_new(X25519_KEY_LEN, &priv, err);
        if (r == 0)
            memcpy(priv->data, payload->data, X25519_KEY_LEN);
    }
    if (r < 0 || (r = part_aad(3, uuid, "sealed", aad, sizeof(aad), err)) < 0)
        return r;
    r = x25519_open(priv, device_secret, aad, &tok->sealed, ret_kek, err);
    /* The PUK was right (its slot opened): a box that does not open was tampered with. Not
     * EACCES, which would count as a wrong PUK. */
    if (r == -EBADMSG)
        return tm_err_set(err, EBADMSG,
                          "soft token: its PUK side does not authenticate (the "
                          "file was altered)");
    return r;
}

int soft_token_open(const struct soft_token *tok, const char *uuid, enum soft_slot slot, const char *secret,
                    const struct secret *device_secret, struct secret **ret_kek, tm_err *err)
{
    _cleanup_secret_ struct secret *payload = NULL;
    int r = slot_open(tok, uuid, slot, secret, device_secret, &payload, err);
    if (r < 0)
        return r;
    if (slot == SOFT_SLOT_PIN || tok->version == 2) {
        *ret_kek = steal_ptr(payload);
        return 0;
    }
    return open_puk_side(tok, uuid, payload, device_secret, ret_kek, err);
}

int soft_token_rekey(const struct soft_token *tok, const char *uuid, const struct secret *kek, const char *new_pin,
                     const char *puk, const struct secret *device_secret, struct soft_token *ret,
                     struct secret **ret_kek, tm_err *err)
{
    struct soft_token f = *tok;
    _cleanup_secret_ struct secret *nkek = NULL;
    f.version = SOFT_VERSION;
    int r = secret_random(SOFT_KEK_LEN, &nkek, err);
    if (r < 0 ||
        (r = slot_seal(&f.slot[SOFT_SLOT_PIN], uuid, SOFT_SLOT_PIN, new_pin, f.kdf_n, device_secret, nkek, err)) < 0)
        return r;
    if (puk) {
        /* The PUK is here: a new PUK side altogether (this also ends a migration's legacy). */
        r = new_puk_side(&f, uuid, puk, nkek, device_secret, err);
    } else if (tok->version == 2) {
        /* Migration without the PUK: the v2 PUK slot (the PUK opens the old KEK, kek) stays,
         * and the new key pair's private key is encrypted under a key derived from kek. */
        char aad[128];
        _cleanup_secret_ struct secret *priv = NULL, *k = NULL;
        if ((r = x25519_keygen(&priv, f.puk_pub, err)) < 0 ||
            (r = part_aad(3, uuid, "puk-key", aad, sizeof(aad), err)) < 0 ||
            (r = puk_key_key(kek, device_secret, &k, err)) < 0 ||
            (r = secure_random(f.puk_key.nonce, sizeof(f.puk_key.nonce), err)) < 0 ||
            (r = aead_seal(k, f.puk_key.nonce, aad, strlen(aad), priv->data, X25519_KEY_LEN, f.puk_key.ct,
                           f.puk_key.ct + X25519_KEY_LEN, err)) < 0)
            return r;
        f.puk_legacy = true;
        r = seal_for_puk(&f, uuid, nkek, device_secret, err);
    } else {
        r = seal_for_puk(&f, uuid, nkek, device_secret, err);
    }
    if (r < 0)
        return r;
    *ret = f;
    *ret_kek = steal_ptr(nkek);
    return 0;
}

int soft_token_ikm(const struct soft_token *tok, enum soft_slot slot, const char *secret, struct secret **ret,
                   tm_err *err)
{
    return slot_ikm(secret, tok->slot[slot].salt, tok->kdf_n, ret, err);
}

int soft_token_create_carried(const char *path, const char *uuid, uint64_t kdf_n, const struct soft_carried_slot *pin,
                              const struct soft_carried_slot *puk, const struct secret *device_secret, tm_err *err)
{
    struct soft_token f = {.version = SOFT_VERSION, .kdf_n = kdf_n};
    _cleanup_secret_ struct secret *kek = NULL;
    int r = check_kdf_n(kdf_n, err);
    if (r < 0)
        return r;
    if (pin->ikm->len != AEAD_KEY_LEN || puk->ikm->len != AEAD_KEY_LEN)
        return tm_err_set(err, EINVAL, "a carried PIN or PUK of %zu/%zu bytes", pin->ikm->len, puk->ikm->len);
    memcpy(f.slot[SOFT_SLOT_PIN].salt, pin->salt, SOFT_SALT_LEN);
    memcpy(f.slot[SOFT_SLOT_PUK].salt, puk->salt, SOFT_SALT_LEN);
    if ((r = secret_random(SOFT_KEK_LEN, &kek, err)) < 0 ||
        (r = slot_seal_ikm(&f.slot[SOFT_SLOT_PIN], uuid, SOFT_SLOT_PIN, pin->ikm, device_secret, kek, err)) < 0 ||
        (r = new_puk_side_ikm(&f, uuid, puk->ikm, kek, device_secret, err)) < 0)
        return r;
    return soft_token_store(path, &f, err);
}

static int erase(const char *path, tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s to erase it", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", path);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", path);
    uint8_t noise[SOFT_FILE_MAX];
    size_t len = (size_t)st.st_size < sizeof(noise) ? (size_t)st.st_size : sizeof(noise);
    int r = secure_random(noise, len, err);
    if (r < 0)
        return r;
    if ((r = write_all(fd, noise, len)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot overwrite %s", path);
    }
    if (fsync(fd) < 0)
        return tm_err_sys(err, "cannot sync %s", path);
    if (unlink(path) < 0)
        return tm_err_sys(err, "cannot remove %s", path);
    if ((r = fsync_parent(path)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot sync the directory of %s", path);
    }
    return 0;
}

int soft_token_erase(const char *path, tm_err *err)
{
    return fs_err(erase(path, err), err);
}
