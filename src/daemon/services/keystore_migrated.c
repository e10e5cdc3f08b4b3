/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The carried keystore keys of a migrated container (keystore_migrated.h, docs/MIGRATION.md). */
#include "keystore_migrated.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "crypto.h"
#include "fileio.h"
#include "keystore_svc.h"
#include "test_hooks.h"
#include "tpmd_client.h"

#define INFO "trustme migrated keystore keys v1|"
#define FILE_LEN (12 + KEYSTORE_CARRIED_LEN + 16)

static void token_part_of(const struct secret *data_key, uint8_t out[32])
{
    tm_hkdf_sha256(data_key->data, data_key->len, NULL, 0, "trustme keystore token v1", 25, out, 32);
}

int keystore_carried_keys(struct container *c, const struct secret *data_key, uint8_t out[KEYSTORE_CARRIED_LEN],
                          tm_err *err)
{
    const struct secret *root = tpmd_keystore_root(c->d);
    if (!root)
        return tm_err_set(err, EAGAIN, "the device storage secret is not unsealed (yet): no keystore key");
    uint8_t tp[32];
    token_part_of(data_key, tp);
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    /* A container that was itself carried here has its carried keys, not this device's. */
    int r = keystore_migrated_load(c->d, dir, c->uuid, tp, out, err);
    if (r != -ENOENT) {
        explicit_bzero(tp, sizeof(tp));
        return r;
    }
    keystore_derive(root, tp, c->uuid, out, out + 32);
    explicit_bzero(tp, sizeof(tp));
    return 0;
}

static int file_key(struct daemon *d, const char *uuid, const uint8_t token_part[32], uint8_t out[32], tm_err *err)
{
    const struct secret *root = tpmd_keystore_root(d);
    if (!root)
        return tm_err_set(err, EAGAIN, "the device storage secret is not unsealed (yet)");
    char info[128];
    int n = snprintf(info, sizeof(info), INFO "%s", uuid);
    tm_hkdf_sha256(root->data, root->len, token_part, 32, info, (size_t)n, out, 32);
    return 0;
}

static bool gcm(bool enc, const uint8_t key[32], const uint8_t iv[12], const char *uuid, const uint8_t *in,
                uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l = 0;
    bool ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1 &&
              EVP_CipherUpdate(ctx, NULL, &l, (const uint8_t *)uuid, (int)strlen(uuid)) == 1 &&
              EVP_CipherUpdate(ctx, out, &l, in, KEYSTORE_CARRIED_LEN) == 1 &&
              (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1) &&
              EVP_CipherFinal_ex(ctx, out + l, &l) == 1 &&
              (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

int keystore_migrated_store(struct daemon *d, const char *dir, const char *uuid, const struct secret *data_key,
                            const uint8_t keys[KEYSTORE_CARRIED_LEN], tm_err *err)
{
    uint8_t tp[32], k[32], buf[FILE_LEN];
    token_part_of(data_key, tp);
    int r = file_key(d, uuid, tp, k, err);
    explicit_bzero(tp, sizeof(tp));
    if (r < 0 || (r = secure_random(buf, 12, err)) < 0)
        return r;
    bool ok = gcm(true, k, buf, uuid, keys, buf + 12, buf + 12 + KEYSTORE_CARRIED_LEN);
    explicit_bzero(k, sizeof(k));
    if (!ok)
        return tm_err_set(err, EIO, "cannot seal the carried keystore keys");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" KEYSTORE_MIGRATED_FILE, dir);
    return write_file_atomic(path, buf, sizeof(buf), 0600, err);
}

int keystore_migrated_load(struct daemon *d, const char *dir, const char *uuid, const uint8_t token_part[32],
                           uint8_t out[KEYSTORE_CARRIED_LEN], tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" KEYSTORE_MIGRATED_FILE, dir);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err e = {0};
    int r = read_file(path, FILE_LEN, &data, &len, &e);
    if (r == -ENOENT)
        return r;
    if (r < 0)
        return tm_err_set(err, -r, "%s", e.msg);
    if (len != FILE_LEN)
        return tm_err_set(err, EBADMSG, "%s has %zu bytes", path, len);
    uint8_t k[32];
    if ((r = file_key(d, uuid, token_part, k, err)) < 0)
        return r;
    uint8_t *b = (uint8_t *)data;
    bool ok = gcm(false, k, b, uuid, b + 12, out, b + 12 + KEYSTORE_CARRIED_LEN);
    explicit_bzero(k, sizeof(k));
    if (!ok) {
        explicit_bzero(out, KEYSTORE_CARRIED_LEN);
        return tm_err_set(err, EBADMSG,
                          "the carried keystore keys (%s) do not open on this device (altered, or another "
                          "device's)",
                          path);
    }
    return 0;
}

void keystore_migrated_remove(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" KEYSTORE_MIGRATED_FILE, dir);
    if (unlink(path) == 0)
        fsync_parent(path);
}

static uid_t own_uid;
static gid_t own_gid;

static int own(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    /* Only what a migration installs: directories and regular files (never a link followed). */
    if (type != FTW_F && type != FTW_D && type != FTW_DP)
        return -EINVAL;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return -EINVAL;
    if (lchown(path, own_uid, own_gid) < 0 || chmod(path, S_ISDIR(st->st_mode) ? 0700 : 0600) < 0)
        return -errno;
    return 0;
}

int keystore_migrated_adopt(struct container *c, uid_t uid, gid_t gid, tm_err *err)
{
    char dir[PATH_MAX], src[PATH_MAX + 16], dst[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(src, sizeof(src), "%s/" KEYSTORE_MIGRATED_DIR, dir);
    struct stat st;
    if (lstat(src, &st) < 0)
        return errno == ENOENT ? 0 : tm_err_sys(err, "cannot stat %s", src);
    if (!S_ISDIR(st.st_mode))
        return tm_err_set(err, ENOTDIR, "%s is not a directory", src);
    own_uid = uid;
    own_gid = gid;
    int r = nftw(src, own, 16, FTW_PHYS | FTW_DEPTH);
    if (r != 0)
        return tm_err_set(err, r < 0 ? -r : EIO, "cannot give the carried keystore %s to its service", src);
    test_crash_point(c->d->data_dir, "keystore-adopt-owned"); /* re-owned in place, not moved */
    snprintf(dst, sizeof(dst), "%s/keystore/%s", c->d->data_dir, c->uuid);
    r = rm_rf(dst);
    if (r < 0 && r != -ENOENT)
        return tm_err_set(err, -r, "cannot replace %s", dst);
    if (rename(src, dst) < 0)
        return tm_err_sys(err, "cannot move the carried keystore %s to %s", src, dst);
    fsync_parent(dst);
    fsync_parent(src);
    return 0;
}
