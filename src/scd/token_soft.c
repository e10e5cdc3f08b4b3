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

#define SOFT_FILE_MAX 4096
#define SOFT_VERSION 2
#define SOFT_AAD_PREFIX "trustme soft token v2:"
#define SOFT_SLOT_INFO "trustme soft token slot v2"

_Static_assert(SOFT_CT_LEN == SOFT_KEK_LEN + AEAD_TAG_LEN, "tag length");
_Static_assert(sizeof(((struct soft_slot_data *)0)->nonce) == AEAD_NONCE_LEN, "nonce length");

static const char *slot_name(enum soft_slot s) { return s == SOFT_SLOT_PIN ? "pin" : "puk"; }

static int slot_aad(const char *uuid, enum soft_slot slot, char *aad, size_t size, tm_err *err)
{
    if (!tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "not a container UUID: \"%s\"", uuid);
    return snprintf(aad, size, SOFT_AAD_PREFIX "%s:%s", uuid, slot_name(slot));
}

/* scrypt(secret) alone would make the file an oracle: whoever holds a copy tries PINs until the
 * GCM tag fits (docs/STORAGE.md). The slot key is therefore HKDF(scrypt(secret), salt = the TPM-sealed
 * device secret): without the TPM in its measured state a guess cannot be checked. (NULL: no
 * device secret, unit tests only; scd refuses every token request without one.) */
static int slot_key(const char *secret, const struct soft_slot_data *sd, uint64_t n,
                    const struct secret *device_secret, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL, *k = NULL;
    int r = secret_new(AEAD_KEY_LEN, &s, err);
    if (r < 0 || (r = secret_new(AEAD_KEY_LEN, &k, err)) < 0 ||
        (r = kdf_scrypt(secret, sd->salt, sizeof(sd->salt), n, SOFT_KDF_R, SOFT_KDF_P, s,
                        err)) < 0 ||
        (r = kdf_hkdf_sha256(s, device_secret ? device_secret->data : NULL,
                             device_secret ? device_secret->len : 0, SOFT_SLOT_INFO, k, err)) < 0)
        return r;
    *ret = steal_ptr(k);
    return 0;
}

static int slot_seal(struct soft_slot_data *sd, const char *uuid, enum soft_slot slot,
                     const char *secret, uint64_t n, const struct secret *device_secret,
                     const struct secret *kek, tm_err *err)
{
    char aad[128];
    _cleanup_secret_ struct secret *k = NULL;
    int r = slot_aad(uuid, slot, aad, sizeof(aad), err);
    if (r < 0 || (r = secure_random(sd->salt, sizeof(sd->salt), err)) < 0 ||
        (r = secure_random(sd->nonce, sizeof(sd->nonce), err)) < 0 ||
        (r = slot_key(secret, sd, n, device_secret, &k, err)) < 0)
        return r;
    return aead_seal(k, sd->nonce, aad, strlen(aad), kek->data, SOFT_KEK_LEN, sd->ct,
                     sd->ct + SOFT_KEK_LEN, err);
}

/* --- the file --- */

static int parse_slot(json_t *root, enum soft_slot slot, struct soft_slot_data *sd,
                      tm_err *err)
{
    static const char *const keys[] = {"salt", "nonce", "ct", NULL};
    char path[TM_JSON_PATH_MAX], fpath[TM_JSON_PATH_MAX];
    json_t *obj;
    const char *salt, *nonce, *ct;
    tm_json_path_key(path, "$", slot_name(slot));
    int r = tm_json_get_object(root, "$", slot_name(slot), true, 8, &obj, err);
    if (r < 0 || (r = tm_json_check_keys(obj, path, keys, err)) < 0 ||
        (r = tm_json_get_string(obj, path, "salt", true, 128, &salt, err)) < 0 ||
        (r = tm_json_get_string(obj, path, "nonce", true, 128, &nonce, err)) < 0 ||
        (r = tm_json_get_string(obj, path, "ct", true, 128, &ct, err)) < 0)
        return r;
    tm_json_path_key(fpath, path, "salt");
    if ((r = b64_decode_exact(fpath, salt, sd->salt, sizeof(sd->salt), err)) < 0)
        return r;
    tm_json_path_key(fpath, path, "nonce");
    if ((r = b64_decode_exact(fpath, nonce, sd->nonce, sizeof(sd->nonce), err)) < 0)
        return r;
    tm_json_path_key(fpath, path, "ct");
    return b64_decode_exact(fpath, ct, sd->ct, sizeof(sd->ct), err);
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
    if ((r = tm_json_get_int(kdf, "$.kdf", "N", true, (int64_t)SOFT_KDF_N_MIN,
                             (int64_t)SOFT_KDF_N_MAX, &n, err)) < 0 ||
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
    static const char *const keys[] = {"version", "kdf", "pin", "puk", NULL};
    _cleanup_json_ json_t *root = NULL;
    int64_t version;
    int r = tm_json_parse_object(data, len, &root, err);
    if (r < 0 || (r = tm_json_check_keys(root, "$", keys, err)) < 0 ||
        (r = tm_json_get_int(root, "$", "version", true, 0, INT32_MAX, &version, err)) < 0)
        return r;
    if (version != SOFT_VERSION)
        return tm_err_set(err, EOPNOTSUPP, "$.version: soft token version %lld is not supported "
                          "(this build reads version %d)", (long long)version, SOFT_VERSION);
    if ((r = parse_kdf(root, &f->kdf_n, err)) < 0 ||
        (r = parse_slot(root, SOFT_SLOT_PIN, &f->slot[SOFT_SLOT_PIN], err)) < 0)
        return r;
    return parse_slot(root, SOFT_SLOT_PUK, &f->slot[SOFT_SLOT_PUK], err);
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

int soft_token_parse(const char *data, size_t len, const char *path, struct soft_token *ret,
                     tm_err *err)
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

static json_t *slot_json(const struct soft_slot_data *sd)
{
    char salt[B64_MAX_BYTES * 2], nonce[B64_MAX_BYTES * 2], ct[B64_MAX_BYTES * 2];
    b64_encode(sd->salt, sizeof(sd->salt), salt);
    b64_encode(sd->nonce, sizeof(sd->nonce), nonce);
    b64_encode(sd->ct, sizeof(sd->ct), ct);
    json_t *o = json_object();
    if (!o || add(o, "salt", json_string(salt)) < 0 ||
        add(o, "nonce", json_string(nonce)) < 0 ||
        add(o, "ct", json_string(ct)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int soft_token_store(const char *path, const struct soft_token *f, tm_err *err)
{
    _cleanup_json_ json_t *root = json_object();
    if (!root || add(root, "version", json_integer(SOFT_VERSION)) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    json_t *kdf = json_object();
    if (add(root, "kdf", kdf) < 0 || add(kdf, "alg", json_string("scrypt")) < 0 ||
        add(kdf, "N", json_integer((int64_t)f->kdf_n)) < 0 ||
        add(kdf, "r", json_integer(SOFT_KDF_R)) < 0 ||
        add(kdf, "p", json_integer(SOFT_KDF_P)) < 0 ||
        add(root, "pin", slot_json(&f->slot[SOFT_SLOT_PIN])) < 0 ||
        add(root, "puk", slot_json(&f->slot[SOFT_SLOT_PUK])) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    _cleanup_free_ char *s = json_dumps(root, JSON_FORMAT_FLAGS);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t len = strlen(s);
    return fs_err(write_file_atomic(path, s, len, 0600, err), err);
}

/* --- operations --- */

int soft_token_create(const char *path, const char *uuid, uint64_t kdf_n, const char *pin,
                      const char *puk, const struct secret *device_secret, tm_err *err)
{
    if (kdf_n < SOFT_KDF_N_MIN || kdf_n > SOFT_KDF_N_MAX || (kdf_n & (kdf_n - 1)))
        return tm_err_set(err, EINVAL, "scrypt N must be a power of two in 2^10..2^20, got %llu",
                          (unsigned long long)kdf_n);
    struct soft_token f = {.kdf_n = kdf_n};
    _cleanup_secret_ struct secret *kek = NULL;
    int r = secret_random(SOFT_KEK_LEN, &kek, err);
    if (r < 0 ||
        (r = slot_seal(&f.slot[SOFT_SLOT_PIN], uuid, SOFT_SLOT_PIN, pin, f.kdf_n, device_secret,
                       kek, err)) < 0 ||
        (r = slot_seal(&f.slot[SOFT_SLOT_PUK], uuid, SOFT_SLOT_PUK, puk, f.kdf_n, device_secret,
                       kek, err)) < 0)
        return r;
    return soft_token_store(path, &f, err);
}

int soft_token_open(const struct soft_token *tok, const char *uuid, enum soft_slot slot,
                    const char *secret, const struct secret *device_secret,
                    struct secret **ret_kek, tm_err *err)
{
    char aad[128];
    _cleanup_secret_ struct secret *k = NULL, *kek = NULL;
    const struct soft_slot_data *sd = &tok->slot[slot];
    int r = slot_aad(uuid, slot, aad, sizeof(aad), err);
    if (r < 0 || (r = slot_key(secret, sd, tok->kdf_n, device_secret, &k, err)) < 0 ||
        (r = secret_new(SOFT_KEK_LEN, &kek, err)) < 0)
        return r;
    r = aead_open(k, sd->nonce, aad, strlen(aad), sd->ct, SOFT_KEK_LEN, sd->ct + SOFT_KEK_LEN, kek,
                  err);
    if (r == -EBADMSG)
        return tm_err_set(err, EACCES, "wrong %s", slot == SOFT_SLOT_PIN ? "PIN" : "PUK");
    if (r < 0)
        return r;
    *ret_kek = steal_ptr(kek);
    return 0;
}

int soft_token_set_pin(const char *path, struct soft_token *tok, const char *uuid,
                       const struct secret *kek, const char *new_pin,
                       const struct secret *device_secret, tm_err *err)
{
    int r = slot_seal(&tok->slot[SOFT_SLOT_PIN], uuid, SOFT_SLOT_PIN, new_pin, tok->kdf_n,
                      device_secret, kek, err);
    if (r < 0)
        return r;
    return soft_token_store(path, tok, err);
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
