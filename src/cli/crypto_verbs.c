/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The verbs that parse certificates and check quotes and signatures (cmd_attest.c,
 * cmd_device.c, cmd_migrate.c, cmd_vtpm.c) need OpenSSL and tss2-mu. Loading and binding those
 * libraries (the CLI is linked with -z now) cost every run of trustme about 4-5 ms of CPU before
 * main, which a `trustme start` paid for nothing. So trustme is built without them, and these
 * verbs run trustme-crypto-verbs, the whole CLI, in its place with the same arguments
 * (docs/CLI.md "Programs"). */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "version.h"

#define HELPER "trustme-crypto-verbs"

/* An installed trustme (TRUSTME_BINDIR/trustme) runs the installed helper only; any other is a
 * build tree's and runs the one beside it, as trustmed finds its helpers (docs/PACKAGING.md). */
static int helper_path(char *out, size_t size)
{
    char exe[PATH_MAX], installed[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return cli_fail("cannot find trustme's own path: %s", strerror(errno));
    exe[n] = '\0';
    bool is_installed = realpath(TRUSTME_BINDIR, installed) &&
                        strlen(installed) + sizeof("/trustme") <= sizeof(installed) &&
                        strcmp(strcat(installed, "/trustme"), exe) == 0;
    *strrchr(exe, '/') = '\0';
    if (snprintf(out, size, "%s/" HELPER, is_installed ? TRUSTME_LIBEXECDIR : exe) >= (int)size)
        return cli_fail("the path of " HELPER " is too long");
    return 0;
}

static int relay(struct cli *cli)
{
    char path[PATH_MAX];
    if (helper_path(path, sizeof(path)))
        return 1;
    fflush(NULL); /* nothing is written before a verb runs; but never twice */
    execv(path, cli->argv);
    return cli_fail("cannot run %s: %s", path, strerror(errno));
}

#define RELAY(fn)                                     \
    int fn(struct cli *cli, const struct cli_args *a) \
    {                                                 \
        (void)a;                                      \
        return relay(cli);                            \
    }

RELAY(cmd_attest)
RELAY(cmd_measurements)
RELAY(cmd_device_info)
RELAY(cmd_device_csr)
RELAY(cmd_device_cert_install)
RELAY(cmd_device_reseal)
RELAY(cmd_migrate_nonce)
RELAY(cmd_migrate_offer)
RELAY(cmd_migrate_export)
RELAY(cmd_migrate_import)
RELAY(cmd_migrate_commit)
RELAY(cmd_migrate_abort)
RELAY(cmd_migrate_send)
RELAY(cmd_migrate_announce)
RELAY(cmd_vtpm_info)
RELAY(cmd_vtpm_reset)
RELAY(cmd_vtpm_owner)
