/* trustme iface assign|unassign: physical interfaces of a running container (docs/NETWORK.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_iface(struct cli *cli, int argc, char **argv)
{
    const char *usage = "assign CONTAINER IFACE [--persistent] | unassign CONTAINER IFACE\n"
                        "  assign: move the host's interface IFACE into the running container;\n"
                        "  --persistent also adds it to the config's network.interfaces.\n"
                        "  unassign: give it back to the host (also done at stop)";
    if (argc < 2 || (strcmp(argv[1], "assign") != 0 && strcmp(argv[1], "unassign") != 0)) {
        fprintf(stderr, "usage: trustme iface %s\n", usage);
        return 2;
    }
    bool assign = strcmp(argv[1], "assign") == 0, persistent = false;
    const char *pos[2] = {NULL, NULL};
    size_t npos = 0;
    for (int i = 2; i < argc; i++) {
        if (assign && strcmp(argv[i], "--persistent") == 0)
            persistent = true;
        else if (argv[i][0] != '-' && npos < 2)
            pos[npos++] = argv[i];
        else {
            fprintf(stderr, "usage: trustme iface %s\n", usage);
            return 2;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "usage: trustme iface %s\n", usage);
        return 2;
    }
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
