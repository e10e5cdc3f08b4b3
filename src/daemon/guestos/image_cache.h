/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verified once: a GuestOS image that a start hashed in full is not hashed again while nothing
 * about its inode can have changed (docs/GUESTOS.md "Verified once", docs/SECURITY.md).
 *
 * The setup process hashes an image on the fd it then mounts and, if the image's stamp (below)
 * was the same before and after the hash, hands that fd to trustmed (TM_SYNC_IMAGE). trustmed
 * keeps the fd open, which pins the inode (its device and inode number cannot be reused while we
 * hold it), and an inotify watch on it. A later start trusts the image without hashing it only
 * if the file it opens by path has the very same stamp: the same device and inode, size, mtime,
 * ctime, birth time, mode, owner, link count, inode generation and fs-verity digest, and trustmed
 * has seen no inotify event for it (write, truncate, attribute change, close after writing,
 * move, delete, unmount) when it forked the setup process. Anything else: hashed in full again.
 * The cache is memory only: a restart of trustmed, a reboot, or a copy of the disk starts over.
 *
 * Kept mounts: where the kernel can clone a detached mount (open_tree OPEN_TREE_CLONE, Linux
 * 6.15 and later), the setup process that mounted a trusted image also hands trustmed a detached,
 * read-only clone of that mount (TM_SYNC_IMAGE_MOUNT). trustmed keeps it beside the pinned fd,
 * and a later start that trusts the same image (the very same checks as above) clones it instead
 * of attaching a loop device and mounting the file system again: the same superblock, its
 * decompressed metadata and page cache, no new loop device. It goes with the entry (any change
 * seen on the image, the GuestOS removed, trustmed gone); the loop device detaches itself once
 * no container uses the superblock any more. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct daemon;
struct guestos;

struct image_stamp {
    uint64_t dev, ino, size, generation;
    int64_t mtime_sec, ctime_sec, btime_sec;
    uint32_t mtime_nsec, ctime_nsec, btime_nsec;
    uint32_t mode, uid, gid, nlink;
    uint8_t verity[64]; /* the fs-verity digest, all zero where the file has none */
};

/* What a cached image has: the pinned inode and its watch. Per GuestOS mount, NULL until one
 * start hashed that image. */
struct image_verified {
    int fd;
    int wd;
    int mnt_fd; /* a detached read-only mount of the verified image, or -1 (kept mounts above) */
    bool valid;
    struct image_stamp stamp;
};

/* TM_SYNC_IMAGE's payload: which mount of the GuestOS, and the stamp the hash was made under. */
struct image_verified_msg {
    uint32_t mount;
    struct image_stamp stamp;
};

/* The stamp of an open image file. */
int image_stamp_fd(int fd, struct image_stamp *ret, tm_err *err);
bool image_stamp_equal(const struct image_stamp *a, const struct image_stamp *b);
/* fs-verity on the image where the kernel has it: enabled (once; the file is then read-only for
 * good and each block checked as it is read), its digest into stamp->verity. Returns 1 when the
 * file has fs-verity, 0 when not, with why in why (ENOTTY / EOPNOTSUPP: not on this kernel or
 * file system). */
int image_verity(int fd, struct image_stamp *stamp, char *why, size_t why_size);
/* In the setup process: may the image of g's mount i, opened as one with stamp now, be trusted
 * without hashing it? */
bool image_cache_hit(const struct guestos *g, size_t i, const struct image_stamp *now);
/* In trustmed, right before it forks a setup process: read the watches' events and drop every
 * image they name (all of them if the queue overflowed). */
void image_cache_refresh(struct daemon *d);
/* In trustmed, on TM_SYNC_IMAGE from the setup process of a start on g: keep fd (taken over
 * either way) as the verified image of mount msg->mount, if it still has the stamp the hash
 * was made under. */
void image_cache_record(struct daemon *d, const struct guestos *g, const void *payload, size_t len, int fd);
/* In trustmed, on TM_SYNC_IMAGE_MOUNT: keep mnt_fd (taken over either way) as the kept mount of
 * msg->mount, if that entry is valid and still has the stamp the setup process trusted. */
void image_cache_record_mount(struct daemon *d, const struct guestos *g, const void *payload, size_t len, int mnt_fd);
/* In trustmed, before it forks a setup process for a start on g: the kept mounts of its valid
 * entries (-1 where none) into out[0..nmounts). */
void image_cache_kept_mounts(const struct guestos *g, int *out, size_t max, size_t *ret_n);
/* Drop g's entries (closing the fds and their watches). */
void image_cache_drop(struct guestos *g);
