/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Generic first and last steps of every process trustmed forks (child.c). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* Common first steps of every forked helper: default signal handling and an unblocked mask
 * (trustmed blocks the signals it reads from a signalfd), death with trustmed, and a check that
 * trustmed did not die before that was set. */
void child_reset(pid_t daemon_pid);
/* A helper service's last step before exec: an empty capability bounding set, the given user,
 * its groups, no_new_privs. */
int child_drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, int ngroups, tm_err *err);
/* clone3 with CLONE_PARENT (the child is trustmed's, the caller can exit) and, if cgroup_fd is
 * given, CLONE_INTO_CGROUP (see module_cgroups for why). Returns the pid, 0 in the child. */
pid_t clone_for_daemon(uint64_t ns_flags, int cgroup_fd);
/* Report err on the sync socket and exit. */
_Noreturn void child_fail(int sync_fd, const tm_err *err, int status);
