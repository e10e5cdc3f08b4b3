/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_vtpm: a container's vTPM appears at /run/tpm (docs/VTPM.md).
 *
 * The setup process binds the host's public vTPM directory (trustme-vtpm's sockets and the
 * event log, owned by the vTPM's uid) read-only onto /run/tpm in the container's root. Connecting
 * to a socket needs no write access to its file system, so the guest can use the vTPM but not
 * replace or remove anything there. Nothing else of the host's vTPM directories (the swtpm's own
 * sockets, the state) is reachable from inside. */
#include <fcntl.h>
#include <linux/mount.h>

#include "cleanup.h"
#include "module.h"
#include "mount_util.h"
#include "vtpm.h"

static int vtpm_setup(struct start_ctx *ctx, tm_err *err)
{
    if (!ctx->cfg->vtpm)
        return 0;
    char pub[PATH_MAX];
    vtpm_public_dir(ctx->c, pub, sizeof(pub));
    _cleanup_close_ int mp = mkdir_in_root(ctx->root_fd, VTPM_GUEST_DIR, 0755, ctx->uid_base, ctx->uid_base, err);
    if (mp < 0)
        return tm_err_prefix(err, "the vTPM's directory /%s", VTPM_GUEST_DIR);
    return bind_mount_at(AT_FDCWD, pub, mp,
                         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, -1, err);
}

const struct tm_module module_vtpm = {
    .name = "vtpm",
    .setup = vtpm_setup,
};
