/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "images.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "image_type.h"
#include "mount_util.h"
#include "syncmsg.h"

_Static_assert(CTX_IMAGE_MNT_MAX >= GUESTOS_MOUNTS_MAX, "a kept mount for every GuestOS mount");

/* Hash the image on fd in full; if its stamp did not change while it was hashed, hand fd to
 * trustmed, which keeps it as verified (image_cache.h). fs-verity is enabled first where the
 * kernel has it, so that its digest is part of the stamp. */
static int hash_and_report(const struct start_ctx *ctx, size_t i, int fd, const char *path, bool *ret_cached,
                           struct image_stamp *ret_stamp, tm_err *err)
{
    const struct guestos *g = ctx->guestos;
    const struct guestos_mount *m = &g->cfg->mounts[i];
    struct image_verified_msg msg = {.mount = (uint32_t)i};
    char why[160];
    bool verity = image_verity(fd, &msg.stamp, why, sizeof(why)) == 1;
    /* Written back first: a shared writable mapping made before now then faults again on its
     * next write, which updates ctime (an already dirty page would not). */
    bool cacheable = fsync(fd) == 0;
    tm_err serr;
    if (image_stamp_fd(fd, &msg.stamp, &serr) < 0)
        cacheable = false;
    uint8_t digest[32];
    uint64_t size = 0;
    int r = tm_sha256_fd(fd, digest, &size, NULL, NULL, err);
    if (r < 0)
        return r;
    if (size != m->size || memcmp(digest, m->sha256, 32) != 0)
        return tm_err_set(err, EBADMSG, "image %s of %s-%llu corrupted (%s does not match guestos.json)", m->image,
                          g->cfg->name, (unsigned long long)g->cfg->version,
                          size != m->size ? "its size" : "its SHA-256");
    struct image_stamp after;
    if (cacheable && image_stamp_fd(fd, &after, &serr) == 0 && image_stamp_equal(&after, &msg.stamp)) {
        char note[PATH_MAX + 256];
        snprintf(note, sizeof(note), "image %s hashed in full%s%s", path,
                 verity ? " (fs-verity enabled)" : "; fs-verity: ", verity ? "" : why);
        tm_sync_send_text(ctx->sync_fd, TM_SYNC_PROGRESS, note);
        /* Best effort: without it the next start hashes again. */
        *ret_cached = tm_sync_send(ctx->sync_fd, TM_SYNC_IMAGE, &msg, sizeof(msg), fd) == 0;
        *ret_stamp = msg.stamp;
    }
    return 0;
}

/* A clone of trustmed's kept mount of this very image (image_cache.h "kept mounts"), with attrs
 * added; -1 if there is none or the kernel cannot clone it. */
static int clone_kept_mount(const struct start_ctx *ctx, size_t i, unsigned attrs)
{
    if (i >= ctx->nimage_mnt || ctx->image_mnt[i] < 0)
        return -1;
    _cleanup_close_ int mfd = open_tree(ctx->image_mnt[i], "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (mfd < 0)
        return -1;
    struct mount_attr a = {.attr_set = attrs | MOUNT_ATTR_RDONLY};
    if (mount_setattr(mfd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
        return -1;
    return steal_fd(mfd);
}

/* Hand trustmed a detached clone of mfd (made read-only, nothing else yet) to keep for the next
 * starts. Best effort: a kernel before 6.15 cannot clone a detached mount (EINVAL), and then
 * every start mounts the image again, as before. */
static void offer_kept_mount(const struct start_ctx *ctx, size_t i, int mfd, const struct image_stamp *stamp)
{
    _cleanup_close_ int keep = open_tree(mfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (keep < 0)
        return;
    struct image_verified_msg msg = {.mount = (uint32_t)i, .stamp = *stamp};
    tm_sync_send(ctx->sync_fd, TM_SYNC_IMAGE_MOUNT, &msg, sizeof(msg), keep);
}

int image_mount_verified(const struct start_ctx *ctx, const struct guestos_mount *m, unsigned attrs, tm_err *err)
{
    const struct guestos *g = ctx->guestos;
    size_t i = (size_t)(m - g->cfg->mounts);
    char path[PATH_MAX + GUESTOS_IMAGE_NAME_MAX + 2];
    snprintf(path, sizeof(path), "%s/%s", g->dir, m->image);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "image %s of %s-%llu cannot be opened", m->image, g->cfg->name,
                          (unsigned long long)g->cfg->version);
    /* The very inode trustmed holds since a start hashed it, unchanged in every respect the
     * stamp compares, and trustmed saw no change event on it: no need to hash it again. */
    struct image_stamp now;
    int r = image_stamp_fd(fd, &now, err);
    if (r < 0)
        return r;
    bool trusted = image_cache_hit(g, i, &now);
    if (trusted) {
        /* The same inode, unchanged: its kept mount is of exactly what was verified. */
        int kept = clone_kept_mount(ctx, i, attrs);
        char note[PATH_MAX + 128];
        snprintf(note, sizeof(note), "image %s unchanged since it was verified, not hashed again%s", path,
                 kept >= 0 ? "; its kept mount cloned" : "");
        tm_sync_send_text(ctx->sync_fd, TM_SYNC_PROGRESS, note);
        if (kept >= 0)
            return kept;
    } else if ((r = hash_and_report(ctx, i, fd, path, &trusted, &now, err)) < 0) {
        return r;
    }
    char label[CONFIG_NAME_MAX + 24];
    snprintf(label, sizeof(label), "%s-%llu", g->cfg->name, (unsigned long long)g->cfg->version);
    if ((r = image_check_fs_type(fd, m, label, err)) < 0)
        return r;
    char dev[64];
    /* The mount holds the loop device; closing lfd lets autoclear detach it when the mount goes.
     * erofs could mount the file directly, but only a loop device pins this very fd. */
    _cleanup_close_ int lfd = loop_attach_fd(fd, path, true, dev, sizeof(dev), err);
    if (lfd < 0)
        return lfd;
    _cleanup_close_ int mfd = mount_create(m->fs_type, dev, NULL, MOUNT_ATTR_RDONLY, err);
    if (mfd < 0)
        return mfd;
    if (trusted)
        offer_kept_mount(ctx, i, mfd, &now);
    struct mount_attr a = {.attr_set = attrs};
    if (attrs && mount_setattr(mfd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
        return tm_err_sys(err, "cannot set the mount attributes of image %s", m->image);
    return steal_fd(mfd);
}

/* "/var/lib/app" -> "var_lib_app": a per-container directory's name on the data volume. Not
 * injective ("/a_b", "/a/b"): guestos_config.c refuses data mounts whose names would collide. */
static void flat_name(const char *mount_point, char *out, size_t size)
{
    snprintf(out, size, "%s", mount_point + 1);
    for (char *p = out; *p; p++)
        if (*p == '/')
            *p = '_';
}

static int mount_data_dir(struct start_ctx *ctx, const struct guestos_mount *m, const char *data, int target,
                          tm_err *err)
{
    if (!data)
        return tm_err_set(err, EINVAL, "%s needs a data volume (the container has data_size_mb 0)", m->mount_point);
    char name[PATH_MAX], dir[2 * PATH_MAX];
    flat_name(m->mount_point, name, sizeof(name));
    snprintf(dir, sizeof(dir), "%s/mounts", data);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    snprintf(dir, sizeof(dir), "%s/mounts/%s", data, name);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    if (chown(dir, ctx->uid_base, ctx->uid_base) < 0)
        return tm_err_sys(err, "cannot chown %s", dir);
    return bind_mount_at(AT_FDCWD, dir, target, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, -1, err);
}

int images_mount_rest(struct start_ctx *ctx, const char *data, tm_err *err)
{
    const struct guestos *g = ctx->guestos;
    for (size_t i = 0; i < g->cfg->nmounts; i++) {
        const struct guestos_mount *m = &g->cfg->mounts[i];
        if (i == g->cfg->root)
            continue;
        _cleanup_close_ int target =
            mkdir_in_root(ctx->root_fd, m->mount_point + 1, 0755, ctx->uid_base, ctx->uid_base, err);
        if (target < 0)
            return tm_err_prefix(err, "mount point %s", m->mount_point);
        int r = 0;
        if (m->kind == GMOUNT_SHARED) {
            _cleanup_close_ int mfd = image_mount_verified(ctx, m, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
            r = mfd < 0 ? mfd : mount_attach(mfd, target, 0, ctx->userns_fd, err);
        } else if (m->kind == GMOUNT_DATA) {
            r = mount_data_dir(ctx, m, data, target, err);
        } else if (m->kind == GMOUNT_TMPFS) {
            char opts[128];
            snprintf(opts, sizeof(opts), "mode=0755,size=%llum,uid=%u,gid=%u", (unsigned long long)m->size_mb,
                     ctx->uid_base, ctx->uid_base);
            r = mount_new_fs(target, "tmpfs", "tmpfs", opts, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
        }
        if (r < 0)
            return tm_err_prefix(err, "mount %s", m->mount_point);
    }
    return 0;
}
