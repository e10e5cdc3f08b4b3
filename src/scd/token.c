/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The public token API: checks arguments, takes the lock, dispatches by token type and puts the
 * attempt counters (tries.c) around every use of a PIN or PUK. */
#include "token.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "fs_err.h"
#include "log.h"
#include "test_hooks.h"
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
static int settle(const char *tries_path, enum tries_kind kind, struct tries *t, int r, tm_err *err)
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

/* --- the token files' digest --- */

struct token_file {
    char *data; /* NULL: the file is missing */
    size_t len;
};

static void token_file_free(struct token_file *f)
{
    free(f->data);
    *f = (struct token_file){0};
}

static int token_file_read(const char *path, struct token_file *ret, tm_err *err)
{
    *ret = (struct token_file){0};
    int r = fs_err(read_file(path, 64 * 1024, &ret->data, &ret->len, err), err);
    return r == -ENOENT ? 0 : r;
}

static void digest_bytes(struct tm_sha256_ctx *c, const struct token_file *f)
{
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    if (f->data)
        hdr[0] = (uint8_t)(f->len >> 24), hdr[1] = (uint8_t)(f->len >> 16), hdr[2] = (uint8_t)(f->len >> 8),
        hdr[3] = (uint8_t)f->len;
    tm_sha256_update(c, hdr, sizeof(hdr));
    if (f->data)
        tm_sha256_update(c, f->data, f->len);
}

static void files_digest_of(const struct token_file *record, const struct token_file *soft, uint8_t out[32])
{
    static const char tag[] = "trustme token files v1";
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, tag, sizeof(tag));
    digest_bytes(&c, record);
    digest_bytes(&c, soft);
    tm_sha256_final(&c, out);
}

static int files_digest(const struct token_paths *paths, uint8_t out[32], tm_err *err)
{
    _cleanup_(token_file_free) struct token_file record = {0}, soft = {0};
    int r = token_file_read(paths->record, &record, err);
    if (r < 0 || (r = token_file_read(paths->soft, &soft, err)) < 0)
        return r;
    files_digest_of(&record, &soft, out);
    return 0;
}

/* The operation of each PIN-using call: open the token with a counted attempt, work, close. */
struct session {
    const char *uuid;
    const struct token_paths *paths;
    const struct token_record *rec;
    const struct secret *device_secret;
    bool caller_counts; /* ctx->caller_counts: no tries file here */
    struct soft_token soft; /* soft: the token file */
    struct secret *kek; /* soft: the opened KEK */
    struct p11 *p11; /* pkcs11: a logged-in session */
};

/* A session on the token of uuid, not yet open (session_open); soft is the token file prepare()
 * read, if any. */
static struct session session_of(const struct token_ctx *ctx, const char *uuid, const struct token_paths *paths,
                                 const struct token_record *rec, const struct soft_token *soft)
{
    return (struct session){.uuid = uuid,
                            .paths = paths,
                            .rec = rec,
                            .soft = *soft,
                            .device_secret = ctx->device_secret,
                            .caller_counts = ctx->caller_counts};
}

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
    int r;
    if (s->caller_counts) {
        if (s->rec->type == TOKEN_SOFT) {
            /* kdf_n is set when token_prepare() read the file already (checked against the anchor). */
            if (!s->soft.kdf_n && (r = soft_token_load(s->paths->soft, &s->soft, err)) < 0)
                return r;
            return soft_token_open(&s->soft, s->uuid, kind == TRIES_PIN ? SOFT_SLOT_PIN : SOFT_SLOT_PUK, secret,
                                   s->device_secret, &s->kek, err);
        }
        struct p11_config cfg;
        token_record_p11_config(s->rec, &cfg);
        if ((r = p11_open(&cfg, &s->p11, err)) < 0)
            return r;
        return p11_login(s->p11, kind == TRIES_PUK, secret, err);
    }
    if ((r = tries_load(s->paths->tries, &t, err)) < 0 || (r = tries_check(&t, kind, err)) < 0)
        return r;
    if (s->rec->type == TOKEN_SOFT) {
        if ((!s->soft.kdf_n && (r = soft_token_load(s->paths->soft, &s->soft, err)) < 0) ||
            (r = tries_begin(s->paths->tries, kind, &t, err)) < 0)
            return r;
        r = soft_token_open(&s->soft, s->uuid, kind == TRIES_PIN ? SOFT_SLOT_PIN : SOFT_SLOT_PUK, secret,
                            s->device_secret, &s->kek, err);
        return settle(s->paths->tries, kind, &t, r, err);
    }
    struct p11_config cfg;
    token_record_p11_config(s->rec, &cfg);
    if ((r = p11_open(&cfg, &s->p11, err)) < 0 || (r = tries_begin(s->paths->tries, kind, &t, err)) < 0)
        return r;
    r = p11_login(s->p11, kind == TRIES_PUK, secret, err);
    return settle(s->paths->tries, kind, &t, r, err);
}

int token_prepare(const struct token_ctx *ctx, const char *uuid, struct token_paths *paths, int *lock_fd,
                  struct token_record *rec, struct soft_token *soft, tm_err *err)
{
    *soft = (struct soft_token){0};
    int r = token_paths_init(ctx, uuid, paths, err);
    if (r < 0)
        return r;
    r = token_dir_lock(paths, false, lock_fd, err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOKEY, "container %s has no token: pair one first", uuid);
    if (r < 0)
        return r;
    if (!ctx->anchor)
        return token_record_load(paths->record, uuid, rec, err);
    _cleanup_(token_file_free) struct token_file record = {0}, sfile = {0};
    uint8_t now[32];
    if ((r = token_file_read(paths->record, &record, err)) < 0 || (r = token_file_read(paths->soft, &sfile, err)) < 0)
        return r;
    files_digest_of(&record, &sfile, now);
    if (memcmp(now, ctx->anchor, 32) != 0)
        return tm_err_set(err, ESTALE,
                          "the token files of container %s are not the ones "
                          "anchored in the TPM (restored from a copy, edited, or from another "
                          "device): refusing them",
                          uuid);
    /* The caller settles an anchored pending change (token_commit) before it uses the token: a
     * pending file here is not anchored, so it goes. */
    if ((r = unlink_synced(paths->soft_new, err)) < 0)
        return r;
    if (!record.data)
        return tm_err_set(err, ENOKEY, "container %s has no token: pair one first", uuid);
    if ((r = token_record_parse(record.data, record.len, paths->record, rec, err)) < 0)
        return r;
    if (rec->type != TOKEN_SOFT)
        return 0;
    if (!sfile.data)
        return tm_err_set(err, ENOKEY, "soft token file %s is missing", paths->soft);
    return soft_token_parse(sfile.data, sfile.len, paths->soft, soft, err);
}

/* --- pairing --- */

static int check_spec(const struct token_ctx *ctx, const struct token_spec *spec, const char *pin, const char *puk,
                      struct token_record *rec, uint64_t *kdf_n, tm_err *err)
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
        *kdf_n = spec->soft_kdf_n ? spec->soft_kdf_n : ctx->soft_kdf_n ? ctx->soft_kdf_n : TOKEN_SOFT_KDF_N_DEFAULT;
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
        return tm_err_set(err, EINVAL, "PKCS#11 token serial must have 1..%d bytes", P11_SERIAL_MAX);
    snprintf(rec->module, sizeof(rec->module), "%s", m);
    if ((rec->has_label = l != NULL))
        snprintf(rec->label, sizeof(rec->label), "%s", l);
    if ((rec->has_serial = s != NULL))
        snprintf(rec->serial, sizeof(rec->serial), "%s", s);
    return 0;
}

int token_pair(const struct token_ctx *ctx, const char *uuid, const struct token_spec *spec, const char *pin,
               const char *puk, tm_err *err)
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

int token_new_key(const struct token_ctx *ctx, const char *uuid, const char *pin, const uint8_t *given,
                  size_t given_len, struct secret **ret_key, uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct soft_token soft;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("PIN", pin, err);
    if (r < 0 || (r = token_prepare(ctx, uuid, &paths, &lock_fd, &rec, &soft, err)) < 0)
        return r;
    _cleanup_secret_ struct secret *key = NULL;
    _cleanup_(session_done) struct session s = session_of(ctx, uuid, &paths, &rec, &soft);
    uint8_t out[KEYWRAP_BLOB_LEN];
    if (given && (given_len != KEYWRAP_KEY_LEN || rec.type != TOKEN_SOFT))
        return tm_err_set(err, EINVAL, "a carried data key needs a soft token and %d bytes", KEYWRAP_KEY_LEN);
    if (given) {
        if ((r = secret_new(KEYWRAP_KEY_LEN, &key, err)) < 0)
            return r;
        memcpy(key->data, given, given_len);
    } else if ((r = secret_random(KEYWRAP_KEY_LEN, &key, err)) < 0)
        return r;
    if ((r = session_open(&s, TRIES_PIN, pin, err)) < 0)
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

int token_unwrap(const struct token_ctx *ctx, const char *uuid, const char *pin, const uint8_t *blob, size_t blob_len,
                 struct secret **ret_key, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct soft_token soft;
    struct keywrap_info info;
    _cleanup_close_ int lock_fd = -1;
    int r = check_pin("PIN", pin, err);
    if (r < 0 || (r = token_prepare(ctx, uuid, &paths, &lock_fd, &rec, &soft, err)) < 0)
        return r;
    if ((r = keywrap_parse(blob, blob_len, ctx->device_secret != NULL, &info, err)) < 0)
        return r;
    if ((enum token_type)info.token != rec.type)
        return tm_err_set(err, EINVAL,
                          "key blob was wrapped by a %s token, but container %s has a "
                          "%s token",
                          token_type_name((enum token_type)info.token), uuid, token_type_name(rec.type));
    _cleanup_(session_done) struct session s = session_of(ctx, uuid, &paths, &rec, &soft);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = session_open(&s, TRIES_PIN, pin, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* For bench/storage.sh: the PIN check (the KDF, almost all of it) of a start. */
    log_debug("PIN checked in %.3f ms",
              (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    if (r < 0)
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

/* Give the soft token a new KEK (soft_token_rekey) and re-wrap the container key under it, as
 * pending files (docs/STORAGE.md, "Changing a PIN"): the new token file goes to <uuid>.soft.new
 * and the caller gets its digest and the new key blob; token_commit puts it in place once the
 * caller has anchored that digest. Without a caller that anchors (ctx->anchor NULL: the library
 * on its own, unit tests) the file is replaced at once. */
static int rekey(const struct token_ctx *ctx, const char *uuid, const struct token_paths *paths, struct session *s,
                 const char *new_pin, const char *puk, const uint8_t *blob, size_t blob_len, struct token_rekeyed *ret,
                 tm_err *err)
{
    _cleanup_secret_ struct secret *key = NULL, *nkek = NULL;
    _cleanup_free_ char *data = NULL;
    _cleanup_(token_file_free) struct token_file record = {0};
    struct soft_token nt;
    size_t len;
    int r;
    *ret = (struct token_rekeyed){0};
    /* The container key stays (it is the data volume's); only its wrap changes. */
    if (blob && (r = keywrap_open_soft(s->kek, ctx->device_secret, uuid, blob, blob_len, &key, err)) < 0)
        return tm_err_prefix(err, "cannot re-wrap the container key");
    if ((r = soft_token_rekey(&s->soft, uuid, s->kek, new_pin, puk, ctx->device_secret, &nt, &nkek, err)) < 0)
        return r;
    if (key && (r = keywrap_seal_soft(nkek, ctx->device_secret, uuid, key, ret->wrapped, err)) < 0)
        return r;
    ret->has_wrapped = key != NULL;
    if (!ctx->anchor)
        return soft_token_store(paths->soft, &nt, err);
    if ((r = soft_token_format(&nt, &data, &len, err)) < 0 ||
        (r = fs_err(write_file_atomic(paths->soft_new, data, len, 0600, err), err)) < 0 ||
        (r = token_file_read(paths->record, &record, err)) < 0)
        return r;
    struct token_file sf = {.data = data, .len = len};
    files_digest_of(&record, &sf, ret->pending_sha256);
    ret->pending = true;
    test_crash_point(ctx->state_dir, "scd-pending-written");
    return 0;
}

/* A new PIN, authorised by the old PIN (kind TRIES_PIN) or the PUK (TRIES_PUK) in secret: with
 * the token directory locked (*lock_fd, which the caller holds until it is done), open the token,
 * then re-key a soft token or have the PKCS#11 token set its PIN. */
static int set_new_pin(const struct token_ctx *ctx, const char *uuid, enum tries_kind kind, const char *secret,
                       const char *new_pin, const uint8_t *blob, size_t blob_len, struct token_paths *paths,
                       int *lock_fd, struct token_rekeyed *ret, tm_err *err)
{
    struct token_record rec;
    struct soft_token soft;
    int r = token_prepare(ctx, uuid, paths, lock_fd, &rec, &soft, err);
    if (r < 0)
        return r;
    _cleanup_(session_done) struct session s = session_of(ctx, uuid, paths, &rec, &soft);
    if ((r = session_open(&s, kind, secret, err)) < 0)
        return r;
    if (rec.type == TOKEN_SOFT)
        return rekey(ctx, uuid, paths, &s, new_pin, kind == TRIES_PUK ? secret : NULL, blob, blob_len, ret, err);
    if (kind == TRIES_PUK)
        return p11_init_pin(s.p11, new_pin, err);
    return p11_set_pin(s.p11, secret, new_pin, err);
}

int token_change_pin(const struct token_ctx *ctx, const char *uuid, const char *old_pin, const char *new_pin,
                     const uint8_t *blob, size_t blob_len, struct token_rekeyed *ret, tm_err *err)
{
    struct token_paths paths;
    _cleanup_close_ int lock_fd = -1;
    *ret = (struct token_rekeyed){0};
    int r = check_pin("old PIN", old_pin, err);
    if (r < 0 || (r = check_pin("new PIN", new_pin, err)) < 0)
        return r;
    return set_new_pin(ctx, uuid, TRIES_PIN, old_pin, new_pin, blob, blob_len, &paths, &lock_fd, ret, err);
}

int token_unlock(const struct token_ctx *ctx, const char *uuid, const char *puk, const char *new_pin,
                 const uint8_t *blob, size_t blob_len, struct token_rekeyed *ret, tm_err *err)
{
    struct token_paths paths;
    _cleanup_close_ int lock_fd = -1;
    *ret = (struct token_rekeyed){0};
    int r = check_pin("new PIN", new_pin, err);
    if (r < 0 || (r = check_secret("PUK", puk, 1, TOKEN_PUK_MAX, err)) < 0 ||
        (r = set_new_pin(ctx, uuid, TRIES_PUK, puk, new_pin, blob, blob_len, &paths, &lock_fd, ret, err)) < 0)
        return r;
    /* The new PIN is in place: only now does the PIN counter start again. */
    if (ctx->caller_counts)
        return 0;
    struct tries t;
    if ((r = tries_load(paths.tries, &t, err)) < 0)
        return r;
    t.pin_failures = 0;
    return tries_store(paths.tries, &t, err);
}

int token_commit(const struct token_ctx *ctx, const char *uuid, const uint8_t pending[32], tm_err *err)
{
    struct token_paths paths;
    _cleanup_close_ int lock_fd = -1;
    _cleanup_(token_file_free) struct token_file record = {0}, sfile = {0}, snew = {0};
    uint8_t now[32], next[32];
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0)
        return r;
    r = token_dir_lock(&paths, false, &lock_fd, err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOKEY, "container %s has no token: pair one first", uuid);
    if (r < 0 || (r = token_file_read(paths.record, &record, err)) < 0 ||
        (r = token_file_read(paths.soft, &sfile, err)) < 0 || (r = token_file_read(paths.soft_new, &snew, err)) < 0)
        return r;
    if (snew.data) {
        files_digest_of(&record, &snew, next);
        if (memcmp(next, pending, 32) == 0) {
            if (rename(paths.soft_new, paths.soft) < 0)
                return fs_err(tm_err_sys(err, "cannot rename %s", paths.soft_new), err);
            if ((r = fsync_parent(paths.soft)) < 0) {
                errno = -r;
                return fs_err(tm_err_sys(err, "cannot sync %s", paths.dir), err);
            }
            test_crash_point(ctx->state_dir, "scd-committed");
            return 0;
        }
        /* Not the anchored one (left by a change that never got anchored, or written by
         * someone else): it is never used. */
        if ((r = unlink_synced(paths.soft_new, err)) < 0)
            return r;
    }
    files_digest_of(&record, &sfile, now);
    if (memcmp(now, pending, 32) == 0)
        return 0; /* renamed already, before a crash */
    if (ctx->anchor && memcmp(now, ctx->anchor, 32) == 0)
        return 0; /* the pending file is gone: the current generation stays */
    return tm_err_set(err, ESTALE,
                      "the token files of container %s are not the ones anchored in "
                      "the TPM (restored from a copy, edited, or from another device): refusing "
                      "them",
                      uuid);
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
            _cleanup_(session_done) struct session s = {.uuid = uuid,
                                                        .paths = &paths,
                                                        .rec = &rec,
                                                        .device_secret = ctx->device_secret,
                                                        .caller_counts = ctx->caller_counts};
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
    if ((r = soft_token_erase(paths.soft_new, err)) < 0 || (r = soft_token_erase(paths.soft, err)) < 0 ||
        (r = unlink_synced(paths.tries, err)) < 0 || (r = unlink_synced(paths.record, err)) < 0)
        return r;
    return key_left ? TOKEN_WIPE_KEY_LEFT : 0;
}

int token_files_digest(const struct token_ctx *ctx, const char *uuid, uint8_t out[32], tm_err *err)
{
    struct token_paths paths;
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0)
        return r;
    return files_digest(&paths, out, err);
}

int token_status(const struct token_ctx *ctx, const char *uuid, struct token_status *ret, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct tries t;
    struct soft_token soft;
    _cleanup_close_ int lock_fd = -1;
    /* A status is no use of the files: it reports them as they are. */
    struct token_ctx plain = *ctx;
    plain.anchor = NULL;
    int r = token_prepare(&plain, uuid, &paths, &lock_fd, &rec, &soft, err);
    if (r == -ENOKEY) {
        *ret = (struct token_status){.paired = false, .type = TOKEN_NONE};
        return 0;
    }
    if (r < 0)
        return r;
    if (ctx->caller_counts)
        t = (struct tries){0, 0}; /* the caller's count is the one that holds */
    else if ((r = tries_load(paths.tries, &t, err)) < 0)
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
