/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `attest` in trustme-static: the verifier needs tss2-mu, which Debian ships as a shared
 * library only. The static CLI is for containers without shared libraries (docs/CLI.md); attest
 * from the host or with trustme-verify. */
#include <stdio.h>

#include "cli.h"

int cmd_attest(struct cli *cli, const struct cli_args *a)
{
    fprintf(stderr, "trustme: attest is not part of this static build (trustme-static); use the "
                    "trustme of the host or trustme-verify\n");
    return 2;
}

/* `migrate` verifies an offer with the same verifier: not here either. */
static int no_migrate(void)
{
    fprintf(stderr, "trustme: migrate is not part of this static build (trustme-static); use the trustme of the "
                    "host\n");
    return 2;
}

int cmd_migrate_nonce(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_offer(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_export(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_import(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_commit(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_abort(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_send(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}

int cmd_migrate_announce(struct cli *cli, const struct cli_args *a)
{
    return no_migrate();
}
