/* SPDX-License-Identifier: GPL-2.0-or-later */
/* File-descriptor helpers. Every fd trustme opens is O_CLOEXEC; these keep it that way. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Write all of buf to a blocking fd, retrying on EINTR and short writes. 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);
/* Read up to len bytes, stopping early only at EOF. Returns bytes read or -errno. */
ssize_t read_all(int fd, void *buf, size_t len);
int fd_set_nonblock(int fd, bool on);
/* In a child about to run foreign code: move fds[i] to 3+i (each stays O_CLOEXEC) and close every
 * other fd >= 3, including 3+i where fds[i] is -1. fds[] is updated with the new numbers. */
int fd_keep_only(int *fds, size_t n);
