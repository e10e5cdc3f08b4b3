/* The public token API: checks arguments, takes the lock, dispatches by token type and puts the
 * attempt counters (tries.c) around every use of a PIN or PUK. */
#include "token.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "fs_err.h"
#include "token_pkcs11.h"
#include "token_record.h"
#include "token_soft.h"
#include "tries.h"

const char *token_type_name(enum token_type t)
{
    switch (t) {
    case TOKEN_SOFT: return "soft";
    case TOKEN_PKCS11: return "pkcs11";
    case TOKEN_NONE: break;
    }
    return "none";
}

int token_check_secret_bytes(const void *data, size_t len, tm_err *err)
{
    /* protobuf-c hands over an empty bytes field as (NULL, 0): memchr must not see that NULL. */
    if (len > 0 && memchr(data, '\0', len))
        return tm_err_set(err, EINVAL, "PIN or PUK contains a NUL byte");
    if (len > TOKEN_PIN_MAX)
        return tm_err_set(err, EINVAL, "PIN or PUK longer than %d bytes", TOKEN_PIN_MAX);
    return 0;
}

static int check_secret(const char *what, const char *s, size_t min, size_t max, tm_err *err)
{
    if (!s)
        return tm_err_set(err, EINVAL, "no %s given", what);
    size_t len = strnlen(s, max + 1);
    if (len < min)
        return tm_err_set(err, EINVAL, "%s too short: at least %zu characters", what, min);
    if (len > max)
        return tm_err_set(err, EINVAL, "%s too long: at most %zu characters", what, max);
    return 0;
}

static int check_pin(const char *what, const char *pin, tm_err *err)
{
    return check_secret(what, pin, TOKEN_PIN_MIN, TOKEN_PIN_MAX, err);
}

static int unlink_synced_(const char *path, tm_err *err)
{
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return 0;
        return tm_err_sys(err, "cannot remove %s", path);
    }
    int r = fsync_parent(path);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot sync the directory of %s", path);
    }
    return 0;
}

static int unlink_synced(const char *path, tm_err *err)
{
    return fs_err(unlink_synced_(path, err), err);
}

/* Settle a PIN or PUK attempt begun with tries_begin, given what checking it returned. */
static int settle(const char *tries_path, enum tries_kind kind, struct tries *t, int r,
                  tm_err *err)
{
    if (r == 0)
        return tries_end(tries_path, kind, t, TRIES_VERIFIED, err);
    if (r == -EACCES)
        return tries_end(tries_path, kind, t, TRIES_WRONG, err);
    /* Not the secret's fault. If taking the attempt back fails, it stays counted: that errs on
     * the safe side, and err keeps the reason that matters. */
    (void)tries_end(tries_path, kind, t, TRIES_UNTRIED, NULL);
    return r;
}

/* The operation of each PIN-using call: open the token with a counted attempt, work, close. */
struct session {
    const char *uuid;
    const struct token_paths *paths;
    const struct token_record *rec;
    const struct secret *device_secret;
    struct soft_token soft; /* soft: the token file */
    struct secret *kek;     /* soft: the opened KEK */
    struct p11 *p11;        /* pkcs11: a logged-in session */
};

static void session_done(struct session *s)
{
    secret_free(s->kek);
    p11_close(s->p11);
}

/* Open the token behind rec with a PIN (kind TRIES_PIN) or PUK (TRIES_PUK), counting the
 * attempt. In this order: a locked or blocked token is refused before anything else is looked
 * at; then the token is reached (its file read, its module loaded), so that what goes wrong there
 * costs no attempt; then the attempt is counted, and only then is the secret checked — the one
 * step that answers -EACCES. */
static int session_open(struct session *s, enum tries_kind kind, const char *secret, tm_err *err)
{
    struct tries t;
    int r = tries_load(s->paths->tries, &t, err);
    if (r < 0 || (r = tries_check(&t, kind, err)) < 0)
        return r;
    if (s->rec->type == TOKEN_SOFT) {
        if ((r = soft_token_load(s->paths->soft, &s->soft, err)) < 0 ||
            (r = tries_begin(s->paths->tries, kind, &t, err)) < 0)
            return r;
        r = soft_token_open(&s->soft, s->uuid, kind == TRIES_PIN ? SOFT_SLOT_PIN : SOFT_SLOT_PUK,
                            secret, s->device_secret, &s->kek, err);
        return settle(s->paths->tries, kind, &t, r, err);
    }
    struct p11_config cfg;
    token_record_p11_config(s->rec, &cfg);
    if ((r = p11_open(&cfg, &s->p11, err)) < 0 ||
        (r = tries_begin(s->paths->tries, kind, &t, err)) < 0)
        return r;
    r = p11_login(s->p11, kind == TRIES_PUK, secret, err);
    return settle(s->paths->tries, kind, &t, r, err);
}

/* Load paths, lock and record for an operation on a paired token. */
static int prepare(const struct token_ctx *ctx, const char *uuid, struct token_paths *paths,
                   int *lock_fd, struct token_record *rec, tm_err *err)
{
    int r = token_paths_init(ctx, uuid, paths, err);
    if (r < 0)
        return r;
    r = token_dir_lock(paths, false, lock_fd, err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOKEY, "container %s has no token: pair one first", uuid);
    if (r < 0)
        return r;
    return token_record_load(paths->record, uuid, rec, err);
}

/* --- pairing --- */

static int check_spec(const struct token_ctx *ctx, const struct token_spec *spec, const char *pin,
                      const char *puk, struct token_record *rec, uint64_t *kdf_n, tm_err *err)
{
    int r = check_pin("PIN", pin, err);
    if (r < 0)
        return r;
    *rec = (struct token_record){.type = spec->type};
    if (spec->type == TOKEN_SOFT) {
        if ((r = check_secret("PUK", puk, TOKEN_PUK_MIN, TOKEN_PUK_MAX, err)) < 0)
            return r;
        if (strcmp(pin, puk) == 0)
            return tm_err_set(err, EINVAL, "the PUK must differ from the PIN");
        *kdf_n = spec->soft_kdf_n ? spec->soft_kdf_n
                 : ctx->soft_kdf_n ? ctx->soft_kdf_n : TOKEN_SOFT_KDF_N_DEFAULT;
        return 0;
    }
    if (spec->type != TOKEN_PKCS11)
        return tm_err_set(err, EINVAL, "unknown token type %d", (int)spec->type);
    const char *m = spec->pkcs11_module, *l = spec->pkcs11_label, *s = spec->pkcs11_serial;
    if (!m || m[0] != '/')
        return tm_err_set(err, EINVAL, "PKCS#11 module must be an absolute path");
    if (strlen(m) >= sizeof(rec->module))
        return tm_err_set(err, ENAMETOOLONG, "PKCS#11 module path too long");
    if (!l && !s)
        return tm_err_set(err, EINVAL, "PKCS#11 token: give its label or its serial number");
    if (l && (l[0] == '\0' || strlen(l) > P11_LABEL_MAX))
        return tm_err_set(err, EINVAL, "PKCS#11 token label must have 1..%d bytes", P11_LABEL_MAX);
    if (s && (s[0] == '\0' || strlen(s) > P11_SERIAL_MAX))
        return tm_err_set(err, EINVAL, "PKCS#11 token serial must have 1..%d bytes",
                          P11_SERIAL_MAX);
    snprintf(rec->module, sizeof(rec->module), "%s", m);
    if ((rec->has_label = l != NULL))
        snprintf(rec->label, sizeof(rec->label), "%s", l);
    if ((rec->has_serial = s != NULL))
        snprintf(rec->serial, sizeof(rec->serial), "%s", s);
    return 0;
}

int token_pair(const struct token_ctx *ctx, const char *uuid, const struct token_spec *spec,
               const char *pin, const char *puk, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    uint64_t kdf_n = 0;
    _cleanup_close_ int lock_fd = -1;
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0 || (r = check_spec(ctx, spec, pin, puk, &rec, &kdf_n, err)) < 0 ||
        (r = token_dir_lock(&paths, true, &lock_fd, err)) < 0)
        return r;
    if (access(paths.record, F_OK) == 0)
        return tm_err_set(err, EEXIST, "container %s already has a token: wipe it first", uuid);
    /* Leftovers of an interrupted pairing or wipe: the record is written last, so without one
     * they belong to nobody. */
    if ((r = unlink_synced(paths.tries, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT) {
        if ((r = soft_token_create(paths.soft, uuid, kdf_n, pin, puk, ctx->device_secret, err)) < 0)
            return r;
        if ((r = token_record_store(paths.record, &rec, err)) < 0) {
            (void)soft_token_erase(paths.soft, NULL);
            return r;
        }
        return 0;
    }
    struct p11_config cfg;
    token_record_p11_config(&rec, &cfg);
    _cleanup_p11_ struct p11 *p = NULL;
    if ((r = p11_open(&cfg, &p, err)) < 0 || (r = p11_login(p, false, pin, err)) < 0 ||
        (r = p11_create_kek(p, uuid, err)) < 0)
        return r;
    if ((r = token_record_store(paths.record, &rec, err)) < 0) {
        (void)p11_destroy_kek(p, uuid, NULL);
        return r;
    }
    return 0;
}

/* --- keys --- */

int token_new_key(const struct token_ctx *ctx, const char *uuid, const char *pin,
                  struct secret **ret_key, uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("PIN", pin, err);
    if (r < 0 || (r = prepare(ctx, uuid, &paths, &lock_fd, &rec, err)) < 0)
        return r;
    _cleanup_secret_ struct secret *key = NULL;
    _cleanup_(session_done) struct session s = {.uuid = uuid, .paths = &paths, .rec = &rec,
                                        .device_secret = ctx->device_secret};
    uint8_t out[KEYWRAP_BLOB_LEN];
    if ((r = secret_random(KEYWRAP_KEY_LEN, &key, err)) < 0 ||
        (r = session_open(&s, TRIES_PIN, pin, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT)
        r = keywrap_seal_soft(s.kek, ctx->device_secret, uuid, key, out, err);
    else
        r = p11_wrap(s.p11, uuid, key, ctx->device_secret != NULL, out, err);
    if (r < 0)
        return r;
    if (rec.type == TOKEN_PKCS11 && ctx->device_secret) {
        /* key was the inner key the token wrapped; the container gets its binding. */
        _cleanup_secret_ struct secret *inner = steal_ptr(key);
        if ((r = keywrap_p11_bind(inner, ctx->device_secret, &key, err)) < 0)
            return r;
    }
    memcpy(blob, out, sizeof(out));
    *ret_key = steal_ptr(key);
    return 0;
}

int token_unwrap(const struct token_ctx *ctx, const char *uuid, const char *pin,
                 const uint8_t *blob, size_t blob_len, struct secret **ret_key, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct keywrap_info info;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("PIN", pin, err);
    if (r < 0 || (r = prepare(ctx, uuid, &paths, &lock_fd, &rec, err)) < 0)
        return r;
    if ((r = keywrap_parse(blob, blob_len, ctx->device_secret != NULL, &info, err)) < 0)
        return r;
    if ((enum token_type)info.token != rec.type)
        return tm_err_set(err, EINVAL, "key blob was wrapped by a %s token, but container %s has a "
                          "%s token", token_type_name((enum token_type)info.token), uuid,
                          token_type_name(rec.type));
    _cleanup_(session_done) struct session s = {.uuid = uuid, .paths = &paths, .rec = &rec,
                                        .device_secret = ctx->device_secret};
    if ((r = session_open(&s, TRIES_PIN, pin, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT)
        return keywrap_open_soft(s.kek, ctx->device_secret, uuid, blob, blob_len, ret_key, err);
    if (!ctx->device_secret)
        return p11_unwrap(s.p11, uuid, blob, blob_len, false, ret_key, err);
    _cleanup_secret_ struct secret *inner = NULL;
    if ((r = p11_unwrap(s.p11, uuid, blob, blob_len, true, &inner, err)) < 0)
        return r;
    return keywrap_p11_bind(inner, ctx->device_secret, ret_key, err);
}

/* --- PINs --- */

int token_change_pin(const struct token_ctx *ctx, const char *uuid, const char *old_pin,
                     const char *new_pin, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("old PIN", old_pin, err);
    if (r < 0 || (r = check_pin("new PIN", new_pin, err)) < 0 ||
        (r = prepare(ctx, uuid, &paths, &lock_fd, &rec, err)) < 0)
        return r;
    _cleanup_(session_done) struct session s = {.uuid = uuid, .paths = &paths, .rec = &rec,
                                        .device_secret = ctx->device_secret};
    if ((r = session_open(&s, TRIES_PIN, old_pin, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT)
        return soft_token_set_pin(paths.soft, &s.soft, uuid, s.kek, new_pin, ctx->device_secret, err);
    return p11_set_pin(s.p11, old_pin, new_pin, err);
}

int token_unlock(const struct token_ctx *ctx, const char *uuid, const char *puk,
                 const char *new_pin, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("new PIN", new_pin, err);
    if (r < 0 || (r = check_secret("PUK", puk, 1, TOKEN_PUK_MAX, err)) < 0 ||
        (r = prepare(ctx, uuid, &paths, &lock_fd, &rec, err)) < 0)
        return r;
    _cleanup_(session_done) struct session s = {.uuid = uuid, .paths = &paths, .rec = &rec,
                                        .device_secret = ctx->device_secret};
    if ((r = session_open(&s, TRIES_PUK, puk, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT)
        r = soft_token_set_pin(paths.soft, &s.soft, uuid, s.kek, new_pin, ctx->device_secret, err);
    else
        r = p11_init_pin(s.p11, new_pin, err);
    if (r < 0)
        return r;
    /* The new PIN is in place: only now does the PIN counter start again. */
    struct tries t;
    if ((r = tries_load(paths.tries, &t, err)) < 0)
        return r;
    t.pin_failures = 0;
    return tries_store(paths.tries, &t, err);
}

/* --- wipe and status --- */

int token_wipe(const struct token_ctx *ctx, const char *uuid, const char *pin, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    _cleanup_close_ int lock_fd = -1;
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0)
        return r;
    if (pin && (r = check_pin("PIN", pin, err)) < 0)
        return r;
    r = token_dir_lock(&paths, false, &lock_fd, err);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    bool key_left = false;
    tm_err rec_err;
    r = token_record_load(paths.record, uuid, &rec, &rec_err);
    if (r < 0 && r != -ENOKEY)
        key_left = true; /* unreadable: it may have named a PKCS#11 token */
    if (r == 0 && rec.type == TOKEN_PKCS11) {
        if (pin) {
            _cleanup_(session_done) struct session s = {.uuid = uuid, .paths = &paths,
                                                        .rec = &rec,
                                                        .device_secret = ctx->device_secret};
            if ((r = session_open(&s, TRIES_PIN, pin, err)) < 0)
                return r;
            r = p11_destroy_kek(s.p11, uuid, err);
            if (r < 0 && r != -ENOKEY)
                return r;
        } else {
            key_left = true;
        }
    }
    /* Whatever the record said, a soft token file must not outlive it. The record goes last:
     * if this is interrupted, the container still shows a token, and wiping again finishes. */
    if ((r = soft_token_erase(paths.soft, err)) < 0 || (r = unlink_synced(paths.tries, err)) < 0 ||
        (r = unlink_synced(paths.record, err)) < 0)
        return r;
    return key_left ? TOKEN_WIPE_KEY_LEFT : 0;
}

static int digest_file(struct tm_sha256_ctx *c, const char *path, tm_err *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = fs_err(read_file(path, 64 * 1024, &data, &len, err), err);
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        hdr[0] = (uint8_t)(len >> 24), hdr[1] = (uint8_t)(len >> 16), hdr[2] = (uint8_t)(len >> 8),
        hdr[3] = (uint8_t)len;
    tm_sha256_update(c, hdr, sizeof(hdr));
    if (r == 0)
        tm_sha256_update(c, data, len);
    return 0;
}

static int files_digest(const struct token_paths *paths, uint8_t out[32], tm_err *err)
{
    static const char tag[] = "trustme token files v1";
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, tag, sizeof(tag));
    int r = digest_file(&c, paths->record, err);
    if (r < 0 || (r = digest_file(&c, paths->soft, err)) < 0)
        return r;
    tm_sha256_final(&c, out);
    return 0;
}

int token_files_digest(const struct token_ctx *ctx, const char *uuid, uint8_t out[32],
                       tm_err *err)
{
    struct token_paths paths;
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0)
        return r;
    return files_digest(&paths, out, err);
}

int token_status(const struct token_ctx *ctx, const char *uuid, struct token_status *ret,
                 tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct tries t;
    _cleanup_close_ int lock_fd = -1;
    int r = prepare(ctx, uuid, &paths, &lock_fd, &rec, err);
    if (r == -ENOKEY) {
        *ret = (struct token_status){.paired = false, .type = TOKEN_NONE};
        return 0;
    }
    if (r < 0 || (r = tries_load(paths.tries, &t, err)) < 0)
        return r;
    *ret = (struct token_status){
        .paired = true,
        .type = rec.type,
        .locked = t.pin_failures >= TRIES_PIN_MAX,
        .blocked = t.puk_failures >= TRIES_PUK_MAX,
        .pin_failures = (unsigned)t.pin_failures,
        .pin_tries_left = (unsigned)(TRIES_PIN_MAX - t.pin_failures),
        .puk_failures = (unsigned)t.puk_failures,
        .puk_tries_left = (unsigned)(TRIES_PUK_MAX - t.puk_failures),
    };
    return files_digest(&paths, ret->files_sha256, err);
}
