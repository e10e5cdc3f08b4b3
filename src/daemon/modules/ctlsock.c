/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_ctlsock: see ctlsock.h. */
#include "ctlsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "log.h"
#include "module.h"
#include "mount_util.h"
#include "syncmsg.h"

/* Does c get a socket inside (api/ decides: docs/ROLES.md)? */
static bool ctlsock_wanted(const struct container *c, const char **ret_role)
{
    return c->d->ctlsock && c->d->ctlsock->wanted(c, ret_role);
}

int ctlsock_bind_named(int dirfd, const char *name, uid_t uid, gid_t gid, tm_err *err)
{
    /* The directory was resolved inside the container's root (openat2 RESOLVE_IN_ROOT); bind()
     * takes a path, so it reaches that very directory through the fd's magic link. */
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/%s", dirfd, name);
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove the old /%s/%s", CTLSOCK_DIR, name);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tm_err_sys(err, "socket");
    /* Nobody can connect before listen(): mode and owner are right before it. */
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(dirfd, name, 0660, 0) < 0 ||
        listen(fd, 16) < 0)
        return tm_err_sys(err, "cannot listen on /%s/%s in the container", CTLSOCK_DIR, name);
    return steal_fd(fd);
}

int ctlsock_bind(int dirfd, uid_t uid, gid_t gid, tm_err *err)
{
    return ctlsock_bind_named(dirfd, CTLSOCK_NAME, uid, gid, err);
}

/* Setup process: the tmpfs and the socket, before init exists. */
static int ctlsock_setup(struct start_ctx *ctx, tm_err *err)
{
    const char *role;
    if (!ctlsock_wanted(ctx->c, &role))
        return 0;
    /* Host root owns the tmpfs (0755): the container cannot remove or replace the socket, whose
     * owner is the container's root (0660; that root may chmod or chgrp it for its users). */
    _cleanup_close_ int mp = mkdir_in_root(ctx->root_fd, CTLSOCK_DIR, 0755, ctx->uid_base, ctx->uid_base, err);
    if (mp < 0)
        return tm_err_prefix(err, "the control socket's directory /%s", CTLSOCK_DIR);
    int r = mount_new_fs(mp, "tmpfs", "tmpfs", "mode=0755,size=16k,nr_inodes=16",
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (r < 0)
        return tm_err_prefix(err, "/%s", CTLSOCK_DIR);
    _cleanup_close_ int dir = open_in_root(ctx->root_fd, CTLSOCK_DIR, O_PATH | O_DIRECTORY, err);
    if (dir < 0)
        return dir;
    _cleanup_close_ int fd = ctlsock_bind(dir, ctx->uid_base, ctx->uid_base, err);
    if (fd < 0)
        return fd;
    if ((r = tm_sync_send(ctx->sync_fd, TM_SYNC_CONTROL, NULL, 0, fd)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot hand the control socket to trustmed");
    }
    return 0;
}

void ctlsock_received(struct container *c, int fd)
{
    _cleanup_close_ int owned = fd;
    const char *role;
    tm_err err;
    if (!ctlsock_wanted(c, &role))
        return;
    if (c->d->ctlsock->serve(c, steal_fd(owned), &err) < 0) /* one per container */
        log_warn("%s: no control socket inside: %s", container_label(c), err.msg);
    else
        log_info("%s: %s control socket at /%s/%s inside", container_label(c), role, CTLSOCK_DIR, CTLSOCK_NAME);
}

void ctlsock_readopt(struct container *c)
{
    const char *role;
    if (!c->pid || !ctlsock_wanted(c, &role))
        return;
    tm_err err = {0};
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/root", c->pid);
    _cleanup_close_ int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int dir =
        root < 0 ? tm_err_sys(&err, "%s", path) : open_in_root(root, CTLSOCK_DIR, O_PATH | O_DIRECTORY, &err);
    uid_t uid = c->cfg->user_namespace ? c->uid_base : 0;
    int fd = dir < 0 ? dir : ctlsock_bind(dir, uid, uid, &err);
    if (fd < 0) {
        log_warn("%s: cannot renew its control socket (restart it to get one): %s", container_label(c), err.msg);
        return;
    }
    ctlsock_received(c, fd);
}

/* trustmed, after the last process: the tmpfs went with the mount namespace. */
static void ctlsock_cleanup(struct container *c)
{
    if (c->d->ctlsock)
        c->d->ctlsock->forget(c);
}

const struct tm_module module_ctlsock = {
    .name = "control socket",
    .setup = ctlsock_setup,
    .cleanup = ctlsock_cleanup,
};
