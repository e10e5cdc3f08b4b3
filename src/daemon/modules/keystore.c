/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_keystore: the keystore socket inside a container with `keystore: true`
 * (docs/KEYSTORE.md). Like the control socket (ctlsock.c), the setup process binds a listening
 * socket at /run/trustme/keystore.sock on a small tmpfs in the container's mount namespace only
 * and hands it to trustmed, which gives it to the container's own keystore service
 * (services/keystore_svc.c); the container's root owns the socket (0660), host root the tmpfs.
 * No path of it exists on the host. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "ctlsock.h"
#include "keystore_svc.h"
#include "module.h"
#include "mount_util.h"
#include "syncmsg.h"

#define KEYSTORE_SOCK_NAME "keystore.sock"

/* /run/trustme: the control socket's tmpfs when the container has one, else a new one. */
static int socket_dir(struct start_ctx *ctx, tm_err *err)
{
    tm_err ignored;
    int dir = open_in_root(ctx->root_fd, CTLSOCK_DIR, O_PATH | O_DIRECTORY, &ignored);
    struct statfs sf;
    if (dir >= 0 && fstatfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC)
        return dir;
    if (dir >= 0)
        close(dir);
    _cleanup_close_ int mp = mkdir_in_root(ctx->root_fd, CTLSOCK_DIR, 0755, ctx->uid_base, ctx->uid_base, err);
    if (mp < 0)
        return tm_err_prefix(err, "the keystore socket's directory /%s", CTLSOCK_DIR);
    int r = mount_new_fs(mp, "tmpfs", "tmpfs", "mode=0755,size=16k,nr_inodes=16",
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (r < 0)
        return tm_err_prefix(err, "/%s", CTLSOCK_DIR);
    return open_in_root(ctx->root_fd, CTLSOCK_DIR, O_PATH | O_DIRECTORY, err);
}

static int keystore_setup(struct start_ctx *ctx, tm_err *err)
{
    if (!ctx->c->cfg->keystore)
        return 0;
    _cleanup_close_ int dir = socket_dir(ctx, err);
    if (dir < 0)
        return dir;
    _cleanup_close_ int fd = ctlsock_bind_named(dir, KEYSTORE_SOCK_NAME, ctx->uid_base, ctx->uid_base, err);
    if (fd < 0)
        return fd;
    int r = tm_sync_send(ctx->sync_fd, TM_SYNC_KEYSTORE, NULL, 0, fd);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot hand the keystore socket to trustmed");
    }
    return 0;
}

/* trustmed, after the last process (or a failed start): the service goes, its key with it. */
static void keystore_cleanup(struct container *c)
{
    keystore_svc_stop(c);
}

const struct tm_module module_keystore = {
    .name = "keystore",
    .setup = keystore_setup,
    .cleanup = keystore_cleanup,
};
