/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The start of a container as an ordered table of modules (docs/ARCHITECTURE.md).
 *
 * Every isolation concern is one module with up to six hooks. A phase runs the hooks of all
 * modules in table order; cleanup runs in reverse. Where each hook runs:
 *
 *   prepare  trustmed, before anything is forked      (may fail; undone by cleanup); for a module
 *            with prepare_after_fork, right after the setup process is forked, while that
 *            process works on its first modules: it waits for it before its own setup hook
 *   setup    the setup process: real root, own mount namespace, off the event loop
 *   child    container init, before exec: it starts with host credentials in the container's pid,
 *            network and time namespaces and a mount namespace of the host's (module_kernfs),
 *            and is inside all the container's namespaces from module_userns's hook on
 *   join     an exec session's helper, still on the host, before it enters the namespaces
 *   exec     an exec session's process inside the namespaces, before exec
 *   cleanup  trustmed, after the container's last process is gone (must tolerate partial setup)
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

struct daemon;
struct container;
struct guestos;

/* As many as a GuestOS has mounts (guestos_config.h GUESTOS_MOUNTS_MAX, checked there). */
#define CTX_IMAGE_MNT_MAX 16

/* How a start encrypts the container's data volume; trustmed holds the key until then. */
enum data_crypt {
    DATA_PLAIN, /* no token, or a tmpfs */
    DATA_FSCRYPT, /* trustmed adds the key to the mounted ext4 (fscrypt.h) */
    DATA_DMCRYPT, /* the setup process opens LUKS2 with it (storage_dmcrypt.h) */
};

struct start_ctx {
    struct daemon *d;
    struct container *c;
    const struct container_config *cfg;
    char run_dir[PATH_MAX]; /* <run-dir>/containers/<uuid>: mount points, console log */
    char data_dir[PATH_MAX]; /* <data-dir>/containers/<uuid>: config, state, data image */
    char root[PATH_MAX]; /* where the container's root is assembled */
    int root_fd; /* O_PATH fd of the assembled root (setup process) */
    int cgroup_fd; /* the container's cgroup v2 directory, for CLONE_INTO_CGROUP */
    int init_pidfd; /* exec sessions: the container's init, whose namespaces to join */
    uint32_t uid_base; /* 0 without a user namespace */
    int sync_fd; /* child end of the sync socket */
    int userns_fd; /* setup: the container's user namespace */
    int netns_fd; /* setup: the network namespace module_userns made, or -1 */
    int stdio[3]; /* init's stdin/stdout/stderr; -1 = /dev/null */
    bool tty; /* exec session with a pty */
    struct device_rule *devices; /* effective allowlist: built-ins + config */
    size_t ndevices;
    uint64_t caps_drop; /* capabilities removed from the bounding set */
    enum data_crypt crypt;
    const struct guestos *guestos; /* what it runs; NULL for a development rootfs */
    bool netns_joined; /* setup: module_net entered init's network namespace already */
    bool prepared_seen; /* setup: trustmed's TM_SYNC_PREPARED was received (modules_await_prepared) */
    /* setup: per GuestOS mount, trustmed's kept mount of the verified image to clone, or -1
     * (image_cache.h "kept mounts"); only the first nimage_mnt are set */
    int image_mnt[CTX_IMAGE_MNT_MAX];
    size_t nimage_mnt;
};

struct tm_module {
    const char *name;
    int (*prepare)(struct start_ctx *ctx, tm_err *err);
    int (*setup)(struct start_ctx *ctx, tm_err *err);
    int (*child)(struct start_ctx *ctx, tm_err *err);
    int (*join)(struct start_ctx *ctx, tm_err *err);
    int (*exec)(struct start_ctx *ctx, tm_err *err);
    void (*cleanup)(struct container *c);
    /* prepare runs in PHASE_PREPARE_LATE instead: after the fork of the setup process, so that
     * trustmed's work and the setup process's overlap on two cores. Its cleanup must tolerate
     * that prepare never ran (a start that failed before the fork). */
    bool prepare_after_fork;
};

enum tm_phase { PHASE_PREPARE, PHASE_PREPARE_LATE, PHASE_SETUP, PHASE_CHILD, PHASE_JOIN, PHASE_EXEC };

/* Run one phase over the table. *ret_done is the number of modules whose hook ran, including
 * a failing one (whose cleanup must undo its partial work); err names the failing module. */
int modules_run(enum tm_phase phase, struct start_ctx *ctx, size_t *ret_done, tm_err *err);
/* Setup process: wait for trustmed's TM_SYNC_PREPARED (once; later calls return at once). Done
 * before the first setup hook of a prepare_after_fork module, and before any other exchange with
 * trustmed on the sync socket, so that the message is never taken for another's answer. */
int modules_await_prepared(struct start_ctx *ctx, tm_err *err);
/* Run cleanup hooks of the first n modules in reverse order. */
void modules_cleanup(struct container *c, size_t n);
size_t modules_count(void);

extern const struct tm_module module_kernfs, module_userns, module_volume, module_devices, module_cgroups,
    module_namespaces, module_caps, module_seccomp, module_ctlsock, module_net, module_keystore, module_vtpm;
