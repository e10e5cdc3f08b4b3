/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "cgroups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf_devices.h"
#include "cleanup.h"
#include "daemon.h"
#include "fileio.h"
#include "log.h"
#include "module.h"
#include "reaper.h"

static int container_cg(struct daemon *d, size_t i, const char *uuid, const char *file, char *out, size_t size)
{
    char leaf[TM_UUID_STR_LEN + 1 + NAME_MAX + 1];
    if (file)
        snprintf(leaf, sizeof(leaf), "%s/%s", uuid, file);
    else
        snprintf(leaf, sizeof(leaf), "%s", uuid);
    return cg_path(&d->cgroups, i, d->cgroup_parent, leaf, out, size);
}

static int set_file(struct daemon *d, int idx, const char *uuid, const char *file, const char *val, tm_err *err)
{
    char path[PATH_MAX];
    container_cg(d, (size_t)idx, uuid, file, path, sizeof(path));
    int r = write_string_file(path, val);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot write \"%s\" to %s", val, path);
    }
    return 0;
}

static int set_memory(struct start_ctx *ctx, tm_err *err)
{
    struct daemon *d = ctx->d;
    int idx = d->cgroups.memory;
    if (idx < 0)
        return 0;
    char val[32];
    if (ctx->cfg->memory_limit_mb)
        snprintf(val, sizeof(val), "%" PRIu64, ctx->cfg->memory_limit_mb << 20);
    else
        snprintf(val, sizeof(val), d->cgroups.h[idx].v2 ? "max" : "-1");
    if (d->cgroups.h[idx].v2) {
        int r = set_file(d, idx, ctx->c->uuid, "memory.max", val, err);
        if (r == 0 && ctx->cfg->memory_limit_mb)
            set_file(d, idx, ctx->c->uuid, "memory.swap.max", "0", NULL); /* absent without swap */
        return r;
    }
    int r = set_file(d, idx, ctx->c->uuid, "memory.limit_in_bytes", val, err);
    /* memory+swap: the same limit, so the container cannot spill into swap. The file exists only
     * with swap accounting. */
    if (r == 0)
        set_file(d, idx, ctx->c->uuid, "memory.memsw.limit_in_bytes", val, NULL);
    return r;
}

static int set_cpuset(struct start_ctx *ctx, tm_err *err)
{
    struct daemon *d = ctx->d;
    int idx = d->cgroups.cpuset;
    if (idx < 0)
        return ctx->cfg->cpus[0] ? tm_err_set(err, ENOTSUP, "no cpuset controller on this host") : 0;
    char parent_cpus[4096] = "";
    char path[PATH_MAX];
    if (!d->cgroups.h[idx].v2) {
        /* A new v1 cpuset is empty; it must get CPUs and memory nodes before tasks can join. */
        for (size_t k = 0; k < 2; k++) {
            const char *file = k == 0 ? "cpuset.cpus" : "cpuset.mems";
            char val[4096];
            cg_path(&d->cgroups, (size_t)idx, d->cgroup_parent, file, path, sizeof(path));
            int r = read_string_file(path, val, sizeof(val));
            if (r < 0) {
                errno = -r;
                return tm_err_sys(err, "cannot read %s", path);
            }
            if (k == 0)
                snprintf(parent_cpus, sizeof(parent_cpus), "%s", val);
            if ((r = set_file(d, idx, ctx->c->uuid, file, val, err)) < 0)
                return r;
        }
    }
    if (!ctx->cfg->cpus[0])
        return 0;
    if (set_file(d, idx, ctx->c->uuid, "cpuset.cpus", ctx->cfg->cpus, err) < 0)
        return tm_err_set(err, EINVAL, "cpus \"%s\" are not available on this host (available: %s)", ctx->cfg->cpus,
                          parent_cpus[0] ? parent_cpus : "unknown");
    return 0;
}

static int set_devices_v1(struct start_ctx *ctx, tm_err *err)
{
    struct daemon *d = ctx->d;
    int idx = d->cgroups.devices;
    int r = set_file(d, idx, ctx->c->uuid, "devices.deny", "a", err);
    for (size_t i = 0; r == 0 && i < ctx->ndevices; i++) {
        const struct device_rule *dr = &ctx->devices[i];
        char rule[64], maj[16], min[16];
        snprintf(maj, sizeof(maj), dr->major == DEV_WILDCARD ? "*" : "%u", dr->major);
        snprintf(min, sizeof(min), dr->minor == DEV_WILDCARD ? "*" : "%u", dr->minor);
        snprintf(rule, sizeof(rule), "%c %s:%s %s", dr->type, maj, min, dr->access);
        r = set_file(d, idx, ctx->c->uuid, "devices.allow", rule, err);
    }
    return r;
}

static int cgroups_prepare(struct start_ctx *ctx, tm_err *err)
{
    struct daemon *d = ctx->d;
    const struct container_config *cfg = ctx->cfg;
    bool all_new = true; /* every directory made just now: no task can be in them yet */
    for (size_t i = 0; i < d->cgroups.n; i++) {
        char dir[PATH_MAX];
        if (container_cg(d, i, ctx->c->uuid, NULL, dir, sizeof(dir)) < 0)
            return tm_err_set(err, ENAMETOOLONG, "cgroup path too long");
        int r = mkdir(dir, 0755) < 0 ? -errno : 0;
        if (r == -EEXIST) {
            all_new = false;
            r = 0;
        }
        if (r == -ENOENT) {
            /* The parent is gone (removed by hand, or the hierarchy was mounted after we
             * started): make it again rather than fail every start until a restart. */
            if ((r = cg_init_parent(&d->cgroups, d->cgroup_parent, err)) < 0)
                return r;
            r = mkdir(dir, 0755) < 0 ? -errno : 0;
            if (r == -EEXIST) {
                all_new = false;
                r = 0;
            }
        }
        if (r < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot create %s", dir);
        }
    }
    /* Only a cgroup left from an earlier run can hold tasks (reading cgroup.procs of all of them
     * was 40 of trustmed's calls per start). */
    if (!all_new && cgroups_count_tasks(d, ctx->c->uuid) > 0)
        return tm_err_set(err, EBUSY, "the container's cgroup still has tasks from an earlier run");
    int r;
    if ((r = set_cpuset(ctx, err)) < 0 || (r = set_memory(ctx, err)) < 0)
        return r;
    if (d->cgroups.pids >= 0) {
        char val[32];
        snprintf(val, sizeof(val), cfg->pids_limit ? "%u" : "max", cfg->pids_limit);
        if ((r = set_file(d, d->cgroups.pids, ctx->c->uuid, "pids.max", val, err)) < 0)
            return r;
    }
    if (d->cgroups.devices >= 0 && (r = set_devices_v1(ctx, err)) < 0)
        return r;
    if (d->cgroups.v2 >= 0) {
        /* On a unified host this is the device allowlist; on a hybrid one it adds a second,
         * independent check to the v1 controller. */
        char dir[PATH_MAX];
        container_cg(d, (size_t)d->cgroups.v2, ctx->c->uuid, NULL, dir, sizeof(dir));
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return tm_err_sys(err, "cannot open %s", dir);
        /* Loaded at each start, from the config as it is now (an update may have changed the
         * devices), and closed once attached: the attachment holds the program as long as the
         * cgroup lives, so trustmed keeps no fd per container (a load costs well under 1 ms). */
        _cleanup_close_ int prog = bpf_devices_load(ctx->devices, ctx->ndevices, err);
        if (prog < 0)
            return prog;
        if ((r = bpf_devices_attach(dfd, prog, err)) < 0)
            return r;
    }
    if (d->cgroups.freezer >= 0 && !d->cgroups.h[d->cgroups.freezer].v2)
        set_file(d, d->cgroups.freezer, ctx->c->uuid, "freezer.state", "THAWED", NULL);
    return 0;
}

/* Move the calling (single-threaded) process into the container's v1 cgroups, and open its v2
 * cgroup for the clone that follows (CLONE_INTO_CGROUP).
 *
 * Why not write our pid to cgroup.procs: moving a process takes the kernel's global threadgroup
 * lock, and taking that lock waits for an RCU grace period — 8 to 16 ms on our machines, the
 * largest single cost of a start. A thread moving itself by writing "0" to a v1 "tasks" file skips
 * that lock, and a process created straight into a v2 cgroup never moves at all. */
static int cgroups_enter(struct start_ctx *ctx, tm_err *err)
{
    struct daemon *d = ctx->d;
    for (size_t i = 0; i < d->cgroups.n; i++) {
        if (d->cgroups.h[i].v2)
            continue;
        int r = set_file(d, (int)i, ctx->c->uuid, "tasks", "0", err);
        if (r < 0)
            return r;
    }
    if (d->cgroups.v2 >= 0) {
        char dir[PATH_MAX];
        container_cg(d, (size_t)d->cgroups.v2, ctx->c->uuid, NULL, dir, sizeof(dir));
        ctx->cgroup_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (ctx->cgroup_fd < 0)
            return tm_err_sys(err, "cannot open %s", dir);
    }
    return 0;
}

/* init's cgroup namespace, rooted at the container's cgroups (which init is in by now). */
static int cgroups_child(struct start_ctx *ctx, tm_err *err)
{
    if (unshare(CLONE_NEWCGROUP) < 0)
        return tm_err_sys(err, "cannot create the cgroup namespace");
    return 0;
}

/* An exec session's process joins init's cgroup namespace only once it is in the container's
 * cgroups: the helper that created it had to stay in the host's namespace for CLONE_INTO_CGROUP
 * (a namespace-delegating host would not let it see the target otherwise). */
static int cgroups_exec(struct start_ctx *ctx, tm_err *err)
{
    if (setns(ctx->init_pidfd, CLONE_NEWCGROUP) < 0)
        return tm_err_sys(err, "cannot enter the container's cgroup namespace");
    close_and_reset(ctx->init_pidfd); /* the last use of init's pidfd */
    return 0;
}

static int read_pids(struct daemon *d, const char *uuid, int *pids, int max)
{
    int n = 0;
    for (size_t i = 0; i < d->cgroups.n; i++) {
        char path[PATH_MAX];
        container_cg(d, i, uuid, "cgroup.procs", path, sizeof(path));
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        int pid;
        while (fscanf(f, "%d", &pid) == 1) {
            bool dup = false;
            for (int k = 0; k < n && !dup; k++)
                dup = pids[k] == pid;
            if (!dup && n < max)
                pids[n++] = pid;
        }
    }
    return n;
}

int cgroups_list_tasks(struct daemon *d, const char *uuid, int *pids, int max)
{
    return read_pids(d, uuid, pids, max);
}

int cgroups_count_tasks(struct daemon *d, const char *uuid)
{
    int pids[64];
    return read_pids(d, uuid, pids, (int)ARRAY_SIZE(pids));
}

bool cgroups_contains(struct daemon *d, const char *uuid, int pid)
{
    int pids[4096];
    int n = read_pids(d, uuid, pids, (int)ARRAY_SIZE(pids));
    for (int i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

/* Directories that could not be removed yet (tasks still exiting): retried from a timer. */
static struct pending_rmdir {
    struct pending_rmdir *next;
    char path[PATH_MAX];
    int tries;
} * pending;
static tm_source *pending_timer;

static void retry_pending(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    pending_timer = NULL;
    for (struct pending_rmdir **pp = &pending; *pp;) {
        struct pending_rmdir *p = *pp;
        if (rmdir(p->path) == 0 || errno == ENOENT || ++p->tries > 100) {
            if (p->tries > 100)
                log_error("cgroups: giving up removing %s: %m", p->path);
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    if (pending)
        pending_timer = tm_loop_timer(d->loop, 100, retry_pending, d);
}

void cgroups_kill(struct daemon *d, const char *uuid)
{
    int pids[4096];
    int n = read_pids(d, uuid, pids, (int)ARRAY_SIZE(pids));
    for (int i = 0; i < n; i++) {
        kill(pids[i], SIGKILL);
        reaper_take_pid(d, pids[i]);
    }
}

void cgroups_destroy(struct daemon *d, const char *uuid)
{
    cgroups_kill(d, uuid);
    if (d->cgroups.freezer >= 0) {
        /* Frozen tasks do not die until thawed. */
        int idx = d->cgroups.freezer;
        set_file(d, idx, uuid, d->cgroups.h[idx].v2 ? "cgroup.freeze" : "freezer.state",
                 d->cgroups.h[idx].v2 ? "0" : "THAWED", NULL);
    }
    for (size_t i = 0; i < d->cgroups.n; i++) {
        char dir[PATH_MAX];
        container_cg(d, i, uuid, NULL, dir, sizeof(dir));
        if (rmdir(dir) == 0 || errno == ENOENT)
            continue;
        struct pending_rmdir *p = calloc(1, sizeof(*p));
        if (!p)
            continue;
        snprintf(p->path, sizeof(p->path), "%s", dir);
        p->next = pending;
        pending = p;
    }
    if (pending && !pending_timer)
        pending_timer = tm_loop_timer(d->loop, 10, retry_pending, d);
}

static void cgroups_cleanup(struct container *c)
{
    cgroups_destroy(c->d, c->uuid);
}

int cgroups_set_frozen(struct container *c, bool frozen, tm_err *err)
{
    struct daemon *d = c->d;
    int idx = d->cgroups.freezer;
    if (idx >= 0 && !d->cgroups.h[idx].v2)
        return set_file(d, idx, c->uuid, "freezer.state", frozen ? "FROZEN" : "THAWED", err);
    if (d->cgroups.v2 >= 0)
        return set_file(d, d->cgroups.v2, c->uuid, "cgroup.freeze", frozen ? "1" : "0", err);
    return tm_err_set(err, ENOTSUP, "no freezer on this host");
}

int cgroups_is_frozen(struct container *c)
{
    struct daemon *d = c->d;
    int idx = d->cgroups.freezer;
    char path[PATH_MAX], buf[256];
    if (idx >= 0 && !d->cgroups.h[idx].v2) {
        container_cg(d, (size_t)idx, c->uuid, "freezer.state", path, sizeof(path));
        int r = read_string_file(path, buf, sizeof(buf));
        return r < 0 ? r : strcmp(buf, "FROZEN") == 0;
    }
    container_cg(d, (size_t)d->cgroups.v2, c->uuid, "cgroup.events", path, sizeof(path));
    int r = read_string_file(path, buf, sizeof(buf));
    return r < 0 ? r : strstr(buf, "frozen 1") != NULL;
}

const struct tm_module module_cgroups = {
    .name = "cgroups",
    .prepare = cgroups_prepare,
    .prepare_after_fork = true, /* made while the setup process mounts; it joins them afterwards */
    .setup = cgroups_enter,
    .child = cgroups_child,
    .join = cgroups_enter,
    .exec = cgroups_exec,
    .cleanup = cgroups_cleanup,
};
