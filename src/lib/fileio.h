/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Files: bounded reads, atomic replacement, directory helpers. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Read a whole file of at most max bytes into a NUL-terminated buffer. */
int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len, tm_err *err);
/* Replace path atomically: write a temporary file in the same directory, fsync it, rename it over
 * path, fsync the directory. After a crash the old or the new content is there, never a mix. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, tm_err *err);
/* The same without the fsyncs: still never a mix of old and new, but after a power cut the old
 * content may be back. For state that is worthless after a power cut anyway (what runs now) or not
 * worth a disk flush on every stop. */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode, tm_err *err);
/* Overwrite path in place (creating it when missing) and fdatasync it; the directory is synced only
 * when the file is new. Not atomic: a crash can leave a torn file. For one slot of an A/B pair whose
 * live slot something else names (the TPM's digest: tpmd's anchor table, sstore superblocks), so
 * that the slot written holds only dead data. Rewriting a file of the same size changes no metadata,
 * so the fdatasync flushes the data alone (no journal commit). A file there that this process may
 * not write (a copy root put back) is removed and made anew. Refuses what is not a regular file
 * (a FIFO or a symlink put there). */
int write_file_in_place(const char *path, const void *data, size_t len, mode_t mode, tm_err *err);
/* Write a short string to an existing file (sysfs, cgroupfs, procfs) in one write(2). */
int write_string_file(const char *path, const char *s);
int read_string_file(const char *path, char *buf, size_t size);
int mkdir_p(const char *path, mode_t mode);
/* Remove a directory tree without crossing mount points or following symlinks. */
int rm_rf(const char *path);
/* fsync the directory containing path (after creating, renaming or removing an entry in it). */
int fsync_parent(const char *path);
