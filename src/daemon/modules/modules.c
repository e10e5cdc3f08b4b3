/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "module.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "cleanup.h"
#include "syncmsg.h"

/* THE order of a container start. Read top to bottom for prepare/setup/child/join/exec, bottom
 * to top for cleanup. Why this order:
 *  - kernfs first (child only): init mounts /proc, /sys and their masks while it still has host
 *    credentials, so that userns's child hook, which moves it into the container's user and
 *    mount namespaces, makes the kernel lock them.
 *  - userns next: setup needs the namespace's fd to id-map the root filesystem, and the child
 *    must become root in it before any other module's child hook.
 *  - volume before devices: /dev is a tmpfs inside the assembled root, populated afterwards.
 *  - ctlsock right after volume: its tmpfs at /run/trustme goes on top of the GuestOS's mounts.
 *  - devices before cgroups: prepare computes the allowlist the cgroup device rules enforce.
 *  - net after userns and volume (its namespace belongs to the user namespace; resolv.conf goes
 *    into the assembled root) and before cgroups (its namespace helper is not counted there).
 *  - cgroups late in setup: the setup process joins the container's cgroups only after its own
 *    helpers (mkfs, the user-namespace holder) are done, so they are not counted against pids.max.
 *    trustmed makes them (prepare_after_fork) while the setup process mounts.
 *  - caps then seccomp last: the filter is loaded after the capability drop, and nothing after
 *    it needs a syscall the filter denies. */
static const struct tm_module *const modules[] = {
    &module_kernfs,  &module_userns, &module_volume,  &module_ctlsock,    &module_keystore, &module_vtpm,
    &module_devices, &module_net,    &module_cgroups, &module_namespaces, &module_caps,     &module_seccomp,
};

size_t modules_count(void)
{
    return ARRAY_SIZE(modules);
}

static int (*hook(const struct tm_module *m, enum tm_phase phase))(struct start_ctx *, tm_err *)
{
    switch (phase) {
    case PHASE_PREPARE: return m->prepare_after_fork ? NULL : m->prepare;
    case PHASE_PREPARE_LATE: return m->prepare_after_fork ? m->prepare : NULL;
    case PHASE_SETUP: return m->setup;
    case PHASE_CHILD: return m->child;
    case PHASE_JOIN: return m->join;
    case PHASE_EXEC: return m->exec;
    }
    return NULL;
}

int modules_run(enum tm_phase phase, struct start_ctx *ctx, size_t *ret_done, tm_err *err)
{
    for (size_t i = 0; i < ARRAY_SIZE(modules); i++) {
        int (*fn)(struct start_ctx *, tm_err *) = hook(modules[i], phase);
        int r = 0;
        if (fn && phase == PHASE_SETUP && modules[i]->prepare_after_fork)
            r = modules_await_prepared(ctx, err);
        if (fn && r == 0)
            r = fn(ctx, err);
        if (r < 0) {
            /* The failing hook may have done part of its work: its cleanup runs too. */
            if (ret_done)
                *ret_done = i + 1;
            return tm_err_prefix(err, "%s", modules[i]->name);
        }
    }
    if (ret_done)
        *ret_done = ARRAY_SIZE(modules);
    return 0;
}

int modules_await_prepared(struct start_ctx *ctx, tm_err *err)
{
    if (ctx->prepared_seen)
        return 0;
    /* The sync socket does not block (tm_sync_recv): wait for trustmed here. */
    struct pollfd p = {.fd = ctx->sync_fd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    tm_sync_msg msg;
    int r = tm_sync_recv(ctx->sync_fd, &msg);
    if (r > 0 && msg.fd >= 0)
        close(msg.fd);
    if (r <= 0 || msg.type != TM_SYNC_PREPARED)
        return tm_err_set(err, EPROTO, "trustmed did not finish preparing the start");
    ctx->prepared_seen = true;
    return 0;
}

void modules_cleanup(struct container *c, size_t n)
{
    assert(n <= ARRAY_SIZE(modules)); /* a count modules_run gave */
    for (size_t i = n; i-- > 0;)
        if (modules[i]->cleanup)
            modules[i]->cleanup(c);
}
