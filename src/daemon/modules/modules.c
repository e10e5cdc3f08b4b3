/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "module.h"

#include <assert.h>

#include "cleanup.h"

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
    case PHASE_PREPARE: return m->prepare;
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
        int r = fn ? fn(ctx, err) : 0;
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

void modules_cleanup(struct container *c, size_t n)
{
    assert(n <= ARRAY_SIZE(modules)); /* a count modules_run gave */
    for (size_t i = n; i-- > 0;)
        if (modules[i]->cleanup)
            modules[i]->cleanup(c);
}
