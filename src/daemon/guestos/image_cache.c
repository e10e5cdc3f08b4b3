/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "image_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fsverity.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "guestos.h"
#include "log.h"

/* Every change to a file's content, size, attributes or name that goes through the kernel's file
 * system calls raises one of these on the inode (an mmap write does not, but it updates ctime
 * and mtime at the page fault, which the stamp compares). */
#define IMAGE_WATCH_MASK \
    (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF | IN_UNMOUNT | IN_MASK_ADD)

/* One inotify instance for all images of this trustmed (single-threaded). The setup process
 * inherits it and closes it with every other fd (fd_keep_only). */
static int watch_fd = -1;

int image_stamp_fd(int fd, struct image_stamp *ret, tm_err *err)
{
    struct statx stx;
    memset(ret, 0, sizeof(*ret));
    /* AT_STATX_SYNC_AS_STAT: what the local kernel has; the store is on a local file system. */
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_BTIME, &stx) < 0)
        return tm_err_sys(err, "statx of an image");
    ret->dev = ((uint64_t)stx.stx_dev_major << 32) | stx.stx_dev_minor;
    ret->ino = stx.stx_ino;
    ret->size = stx.stx_size;
    ret->mtime_sec = stx.stx_mtime.tv_sec;
    ret->mtime_nsec = stx.stx_mtime.tv_nsec;
    ret->ctime_sec = stx.stx_ctime.tv_sec;
    ret->ctime_nsec = stx.stx_ctime.tv_nsec;
    if (stx.stx_mask & STATX_BTIME) {
        ret->btime_sec = stx.stx_btime.tv_sec;
        ret->btime_nsec = stx.stx_btime.tv_nsec;
    }
    ret->mode = stx.stx_mode;
    ret->uid = stx.stx_uid;
    ret->gid = stx.stx_gid;
    ret->nlink = stx.stx_nlink;
    /* The inode generation: a new inode that reuses a number gets another one (ext4, xfs). */
    int gen = 0;
    if (ioctl(fd, FS_IOC_GETVERSION, &gen) == 0)
        ret->generation = (uint32_t)gen;
    /* The digest follows its header (digest[]): room for 64 bytes behind it. */
    union {
        struct fsverity_digest d;
        uint8_t bytes[sizeof(struct fsverity_digest) + 64];
    } vd;
    memset(&vd, 0, sizeof(vd));
    vd.d.digest_size = 64;
    if (ioctl(fd, FS_IOC_MEASURE_VERITY, &vd) == 0 && vd.d.digest_size <= sizeof(ret->verity))
        memcpy(ret->verity, vd.d.digest, vd.d.digest_size);
    if (!S_ISREG(ret->mode))
        return tm_err_set(err, EINVAL, "an image is not a regular file");
    return 0;
}

bool image_stamp_equal(const struct image_stamp *a, const struct image_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->generation == b->generation &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec && a->ctime_sec == b->ctime_sec &&
           a->ctime_nsec == b->ctime_nsec && a->btime_sec == b->btime_sec && a->btime_nsec == b->btime_nsec &&
           a->mode == b->mode && a->uid == b->uid && a->gid == b->gid && a->nlink == b->nlink &&
           memcmp(a->verity, b->verity, sizeof(a->verity)) == 0;
}

int image_verity(int fd, struct image_stamp *stamp, char *why, size_t why_size)
{
    struct fsverity_enable_arg arg = {
        .version = 1,
        .hash_algorithm = FS_VERITY_HASH_ALG_SHA256,
        .block_size = 4096,
    };
    /* EEXIST: enabled already. Needs no writer of the file (ETXTBSY otherwise). */
    if (ioctl(fd, FS_IOC_ENABLE_VERITY, &arg) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(why, why_size, "%s%s", strerror(e),
                 e == ENOTTY || e == EOPNOTSUPP ? " (no fs-verity in this kernel or file system)" : "");
        return 0;
    }
    tm_err err;
    if (image_stamp_fd(fd, stamp, &err) < 0) {
        snprintf(why, why_size, "%s", err.msg);
        return 0;
    }
    static const uint8_t zero[sizeof(stamp->verity)];
    if (memcmp(stamp->verity, zero, sizeof(zero)) == 0) {
        snprintf(why, why_size, "enabled, but no digest could be read");
        return 0;
    }
    return 1;
}

bool image_cache_hit(const struct guestos *g, size_t i, const struct image_stamp *now)
{
    if (!g->verified || i >= g->cfg->nmounts)
        return false;
    const struct image_verified *v = &g->verified[i];
    return v->valid && v->fd >= 0 && image_stamp_equal(&v->stamp, now);
}

static void entry_drop(struct image_verified *v)
{
    v->valid = false;
    close_and_reset(v->mnt_fd);
    close_and_reset(v->fd);
    v->wd = -1;
}

/* Invalidate every entry whose watch is wd (-1: all). Watches of one inode are shared: one
 * inotify instance returns the same wd for the same inode, so a GuestOS and another that
 * shares a hard-linked image would share it too. */
static void drop_watched(struct daemon *d, int wd)
{
    for (struct guestos *g = d->guestos; g; g = g->next) {
        if (!g->verified)
            continue;
        for (size_t i = 0; i < g->cfg->nmounts; i++) {
            struct image_verified *v = &g->verified[i];
            if (v->fd >= 0 && (wd < 0 || v->wd == wd)) {
                log_debug("GuestOS %s-%llu: image %s changed since it was verified; the next start hashes it",
                          g->cfg->name, (unsigned long long)g->cfg->version, g->cfg->mounts[i].image);
                entry_drop(v);
            }
        }
    }
}

void image_cache_refresh(struct daemon *d)
{
    if (watch_fd < 0)
        return;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(watch_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* The watches cannot be read: nothing can be trusted without them. */
            log_warn("GuestOS image watches unreadable (%s): every image is hashed at its next start",
                     n < 0 ? strerror(errno) : "end of file");
            drop_watched(d, -1);
            close_and_reset(watch_fd);
            return;
        }
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            drop_watched(d, (ev->mask & IN_Q_OVERFLOW) ? -1 : ev->wd);
            off += (ssize_t)sizeof(*ev) + ev->len;
        }
    }
}

void image_cache_record(struct daemon *d, const struct guestos *cg, const void *payload, size_t len, int fd)
{
    _cleanup_close_ int kept = fd;
    struct image_verified_msg msg;
    if (len != sizeof(msg) || fd < 0) {
        log_warn("malformed verified-image report from a setup process");
        return;
    }
    memcpy(&msg, payload, sizeof(msg));
    /* The start's GuestOS, if it is still in the store (the pointer names no freed one). */
    struct guestos *g = d->guestos;
    while (g && g != cg)
        g = g->next;
    if (!g || msg.mount >= g->cfg->nmounts || !g->cfg->mounts[msg.mount].image[0])
        return;
    struct image_stamp now;
    tm_err err;
    if (image_stamp_fd(fd, &now, &err) < 0 || !image_stamp_equal(&now, &msg.stamp)) {
        log_debug("GuestOS %s-%llu: image %s changed while it was hashed; not cached", g->cfg->name,
                  (unsigned long long)g->cfg->version, g->cfg->mounts[msg.mount].image);
        return;
    }
    if (!g->verified) {
        g->verified = calloc(g->cfg->nmounts, sizeof(*g->verified));
        if (!g->verified)
            return;
        for (size_t i = 0; i < g->cfg->nmounts; i++)
            g->verified[i].fd = g->verified[i].wd = g->verified[i].mnt_fd = -1;
    }
    if (watch_fd < 0 && (watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        log_warn("cannot watch GuestOS images (%s): each is hashed at every start", strerror(errno));
        return;
    }
    /* The watch goes on the inode of this fd, not on whatever the path names now. */
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(watch_fd, self, IMAGE_WATCH_MASK);
    if (wd < 0) {
        log_warn("cannot watch image %s of %s-%llu (%s): it is hashed at every start", g->cfg->mounts[msg.mount].image,
                 g->cfg->name, (unsigned long long)g->cfg->version, strerror(errno));
        return;
    }
    struct image_verified *v = &g->verified[msg.mount];
    entry_drop(v);
    v->fd = steal_fd(kept);
    v->wd = wd;
    v->stamp = now;
    v->valid = true;
    log_debug("GuestOS %s-%llu: image %s verified (inode %llu on device %llu:%llu)%s", g->cfg->name,
              (unsigned long long)g->cfg->version, g->cfg->mounts[msg.mount].image, (unsigned long long)now.ino,
              (unsigned long long)(now.dev >> 32), (unsigned long long)(now.dev & 0xffffffffu),
              now.verity[0] || now.verity[1] ? ", under fs-verity" : "");
}

/* The start's GuestOS, if it is still in the store (the pointer names no freed one). */
static struct guestos *live_guestos(struct daemon *d, const struct guestos *cg)
{
    struct guestos *g = d->guestos;
    while (g && g != cg)
        g = g->next;
    return g;
}

void image_cache_record_mount(struct daemon *d, const struct guestos *cg, const void *payload, size_t len, int mnt_fd)
{
    _cleanup_close_ int kept = mnt_fd;
    struct image_verified_msg msg;
    if (len != sizeof(msg) || mnt_fd < 0) {
        log_warn("malformed kept-mount report from a setup process");
        return;
    }
    memcpy(&msg, payload, sizeof(msg));
    struct guestos *g = live_guestos(d, cg);
    if (!g || !g->verified || msg.mount >= g->cfg->nmounts)
        return;
    struct image_verified *v = &g->verified[msg.mount];
    /* Only for the entry as it is now: if a watch fired or another start replaced it meanwhile,
     * this mount may be of an image that is no longer the verified one. */
    if (!v->valid || v->fd < 0 || !image_stamp_equal(&v->stamp, &msg.stamp))
        return;
    close_and_reset(v->mnt_fd);
    v->mnt_fd = steal_fd(kept);
    log_debug("GuestOS %s-%llu: image %s mounted once, kept for the next starts", g->cfg->name,
              (unsigned long long)g->cfg->version, g->cfg->mounts[msg.mount].image);
}

void image_cache_kept_mounts(const struct guestos *g, int *out, size_t max, size_t *ret_n)
{
    size_t n = g && g->cfg->nmounts < max ? g->cfg->nmounts : (g ? max : 0);
    for (size_t i = 0; i < n; i++)
        out[i] = g->verified && g->verified[i].valid ? g->verified[i].mnt_fd : -1;
    *ret_n = n;
}

void image_cache_drop(struct guestos *g)
{
    if (!g || !g->verified)
        return;
    /* The watches stay until their inodes go (a removed GuestOS's files are deleted): another
     * GuestOS may share an inode through a hard link, and an event on a watch no entry uses
     * drops nothing. */
    for (size_t i = 0; i < g->cfg->nmounts; i++)
        entry_drop(&g->verified[i]);
    free(g->verified);
    g->verified = NULL;
}
