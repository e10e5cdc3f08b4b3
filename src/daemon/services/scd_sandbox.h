/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Starting trustme-scd confined (scd_sandbox.c). */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SCD_MAX_BINDS 8
#define SCD_MAX_GROUPS 32

struct scd_sandbox {
    char binary[PATH_MAX]; /* trustme-scd on the host */
    char state_dir[PATH_MAX]; /* <data-dir>/scd, owned by uid */
    char root[PATH_MAX]; /* an empty directory for its root (in the run dir) */
    uid_t uid;
    gid_t gid;
    gid_t groups[SCD_MAX_GROUPS]; /* the user's supplementary groups (e.g. softhsm, for tokens) */
    int ngroups;
    uint64_t kdf_n; /* scrypt N for new soft tokens, 0 for scd's default */
    const char *log_level;
    const char *binds[SCD_MAX_BINDS]; /* host paths scd may use read-write */
    const char *binds_at[SCD_MAX_BINDS]; /* where binds[i] appears inside (NULL: at its own path) */
    size_t nbinds;
};

/* In a freshly forked child: confine, then exec scd (the binary open as exe) with sock as
 * fd 3. Never returns. */
_Noreturn void scd_sandbox_exec(const struct scd_sandbox *sb, int sock, int exe, pid_t daemon_pid);
/* The same confinement for another service (trustme-keystore): fds[i] becomes fd 3+i, exe
 * (open, close-on-exec) is executed with argv. Never returns. */
_Noreturn void sandbox_exec(const struct scd_sandbox *sb, int *fds, size_t nfds, int exe, char *const argv[],
                            pid_t daemon_pid);
