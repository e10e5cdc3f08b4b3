/* Code that runs outside trustmed: the setup process and the container's init (before exec). */
#pragma once

#include <sys/types.h>

#include "module.h"

/* The setup process: private mount namespace, setup hooks, then clone init with CLONE_PARENT
 * (so trustmed is init's parent) and report its pid. Never returns. */
_Noreturn void setup_main(struct start_ctx *ctx, pid_t daemon_pid);
/* The container's init: child hooks (root, pivot_root, hostname, caps, seccomp), then exec. */
_Noreturn void init_main(struct start_ctx *ctx);
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
/* The environment of a container process: defaults, then the config's, then extra (KEY=VALUE). */
char **build_env(const struct container_config *cfg, char *const *extra, size_t nextra);
