/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_devices: the device allowlist. /dev is a tmpfs holding only the allowed nodes; the
 * same list becomes the cgroup device rules (module_cgroups), so a node created some other way
 * still cannot be opened. The host console (5:1) is never exposed: without a terminal there is
 * no /dev/console (docs/SECURITY.md). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "module.h"
#include "mount_util.h"

static const struct device_rule builtin[] = {
    {'c', 1, 3, "rwm", "/dev/null"},
    {'c', 1, 5, "rwm", "/dev/zero"},
    {'c', 1, 7, "rwm", "/dev/full"},
    {'c', 1, 8, "rwm", "/dev/random"},
    {'c', 1, 9, "rwm", "/dev/urandom"},
    {'c', 5, 0, "rwm", "/dev/tty"},
    {'c', 5, 2, "rwm", ""}, /* /dev/ptmx -> pts/ptmx of the container's devpts */
    {'c', 136, DEV_WILDCARD, "rwm", ""}, /* its pseudo terminals */
};

static const struct {
    const char *name, *target;
} links[] = {
    {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

static int devices_prepare(struct start_ctx *ctx, tm_err *err)
{
    size_t n = ARRAY_SIZE(builtin) + ctx->cfg->ndevices;
    ctx->devices = calloc(n, sizeof(*ctx->devices));
    if (!ctx->devices)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(ctx->devices, builtin, sizeof(builtin));
    if (ctx->cfg->ndevices > 0) /* devices is NULL then: memcpy's source must not be */
        memcpy(ctx->devices + ARRAY_SIZE(builtin), ctx->cfg->devices, ctx->cfg->ndevices * sizeof(*ctx->devices));
    ctx->ndevices = n;
    return 0;
}

static int make_node(int devfd, const struct device_rule *d, uid_t owner, tm_err *err)
{
    const char *rel = d->path + strlen("/dev/");
    char dir[CONFIG_DEVICE_PATH_MAX], base[CONFIG_DEVICE_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", rel);
    snprintf(base, sizeof(base), "%s", rel);
    char *parent = dirname(dir);
    _cleanup_close_ int pfd = strcmp(parent, ".") == 0 ? open_in_root(devfd, ".", O_PATH | O_DIRECTORY, err)
                                                       : mkdir_in_root(devfd, parent, 0755, owner, owner, err);
    if (pfd < 0)
        return pfd;
    const char *name = basename(base);
    mode_t mode = (d->type == 'b' ? S_IFBLK | 0660 : S_IFCHR | 0666);
    if (mknodat(pfd, name, mode, makedev(d->major, d->minor)) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", d->path);
    if (fchownat(pfd, name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0)
        return tm_err_sys(err, "cannot chown %s", d->path);
    return 0;
}

static int devices_setup(struct start_ctx *ctx, tm_err *err)
{
    _cleanup_close_ int devfd = open_in_root(ctx->root_fd, "dev", O_PATH | O_DIRECTORY, err);
    if (devfd < 0)
        return devfd;
    uid_t owner = ctx->uid_base;
    for (size_t i = 0; i < ctx->ndevices; i++) {
        if (ctx->devices[i].path[0] == '\0')
            continue;
        int r = make_node(devfd, &ctx->devices[i], owner, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        if (symlinkat(links[i].target, devfd, links[i].name) < 0 && errno != EEXIST)
            return tm_err_sys(err, "cannot create /dev/%s", links[i].name);
        if (fchownat(devfd, links[i].name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0)
            return tm_err_sys(err, "cannot chown /dev/%s", links[i].name);
    }
    const char *dirs[] = {"pts", "shm", "mqueue"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        _cleanup_close_ int fd = mkdir_in_root(devfd, dirs[i], 0755, owner, owner, err);
        if (fd < 0)
            return fd;
    }
    return 0;
}

const struct tm_module module_devices = {
    .name = "devices",
    .prepare = devices_prepare,
    .setup = devices_setup,
};
