/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme iface assign|unassign: physical interfaces of a running container (docs/NETWORK.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int iface(struct cli *cli, const struct cli_args *a, bool assign)
{
    bool persistent = assign && cli_flag(a, "persistent");
    char *const *pos = a->argv;
    Trustme__IfaceRequest ir = TRUSTME__IFACE_REQUEST__INIT;
    ir.id = (char *)pos[0];
    ir.iface = (char *)pos[1];
    ir.has_persistent = persistent;
    ir.persistent = persistent;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    if (assign) {
        req.body_case = TRUSTME__REQUEST__BODY_IFACE_ASSIGN;
        req.iface_assign = &ir;
    } else {
        req.body_case = TRUSTME__REQUEST__BODY_IFACE_UNASSIGN;
        req.iface_unassign = &ir;
    }
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("%s %s %s %s\n", pos[1], assign ? "assigned to" : "given back from", pos[0],
           persistent ? "(persistent)" : "");
    return 0;
}

int cmd_iface_assign(struct cli *cli, const struct cli_args *a)
{
    return iface(cli, a, true);
}
int cmd_iface_unassign(struct cli *cli, const struct cli_args *a)
{
    return iface(cli, a, false);
}
