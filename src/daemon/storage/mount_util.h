/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Mounting safely into a container root that the container itself may have shaped.
 *
 * Paths below the root are resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): a
 * symlink planted in the container's persistent layer resolves inside the root, never onto the
 * host (CVE-2021-30465). Mounts are made with the new mount API onto those fds. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

/* Open path below rootfd (O_PATH unless flags say otherwise). Returns fd or -errno. */
int open_in_root(int rootfd, const char *path, int flags, tm_err *err);
/* Create the directory path (and its parents) below rootfd if missing; returns an O_PATH fd.
 * New directories are chowned to uid:gid unless uid is (uid_t)-1. */
int mkdir_in_root(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, tm_err *err);
/* Create a new file system mount that is not attached anywhere yet. options: "key=value,flag"
 * (may be NULL); attrs: MOUNT_ATTR_* of the mount. Returns the mount's fd or -errno. */
int mount_create(const char *fstype, const char *source, const char *options, unsigned attrs, tm_err *err);
/* Attach a detached mount (from mount_create or a tree clone) onto target_fd, first adding attrs
 * and, if userns_fd >= 0, the id mapping of that user namespace (only detached mounts can be
 * id-mapped). */
int mount_attach(int mnt_fd, int target_fd, unsigned attrs, int userns_fd, tm_err *err);
/* mount_create + mount_attach. */
int mount_new_fs(int target_fd, const char *fstype, const char *source, const char *options, unsigned attrs,
                 tm_err *err);
/* A new file system at path below rootfd (the directory is made if missing, owned by root). */
int mount_new_fs_in(int rootfd, const char *path, const char *fstype, const char *options, unsigned attrs, tm_err *err);
/* Bind-mount the tree at src (relative to src_dirfd, "" for the fd itself) onto target_fd. */
int bind_mount_at(int src_dirfd, const char *src, int target_fd, unsigned attrs, int userns_fd, tm_err *err);
/* Attach image to a free loop device (autoclear: it detaches itself once unmounted).
 * Returns an open fd of the loop device; its path is written to ret_devpath (on success only). */
int loop_attach(const char *image, bool read_only, char *ret_devpath, size_t size, tm_err *err);
/* The same for an image already open (the fd that was hashed is the one attached). */
int loop_attach_fd(int fd, const char *image, bool read_only, char *ret_devpath, size_t size, tm_err *err);
/* True if image is the backing file of an attached loop device. */
bool loop_in_use(const char *image);
