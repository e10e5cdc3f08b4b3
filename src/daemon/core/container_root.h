/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A running container's root directory, as its init sees it: the base for resolving a path a
 * client inside the container named, so that it can never name anything outside. */
#pragma once

#include "daemon.h"
#include "error.h"

/* An O_PATH directory fd of init's root. The pid is looked up through /proc, then init's pidfd
 * confirms it is still the same process (not a reused pid). -errno with err set when c has no
 * init (not running) or it is gone. */
int container_root_open(const struct container *c, tm_err *err);
/* Open path (absolute, in the container's view) below root_fd with flags: every component,
 * "..", and symlink stays inside the root (RESOLVE_IN_ROOT), /proc/<pid>/root and other magic
 * links are refused (RESOLVE_NO_MAGICLINKS). Returns fd or -errno (errno set, err untouched). */
int container_root_openat(int root_fd, const char *path, int flags);
