/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme version: the CLI's version and protocol, and those of the trustmed it talks to. Every
 * reply of trustmed carries both (Response.version, .daemon_version), so any request serves; a
 * `list`, which a restricted socket may refuse: the refusal carries them too. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "proto.h"
#include "verbs.h"
#include "version.h"

int cmd_version(struct cli *cli, const struct cli_args *a)
{
    struct client cl;
    tm_err err;
    Trustme__Response *resp = NULL;
    bool reached = false;
    if (cli_connect(cli, &cl) == 0) {
        Trustme__ListRequest lr = TRUSTME__LIST_REQUEST__INIT;
        Trustme__Request req = TRUSTME__REQUEST__INIT;
        req.body_case = TRUSTME__REQUEST__BODY_LIST;
        req.list = &lr;
        if (client_send(&cl, &req, &err) < 0 || client_recv(&cl, &resp, &err) < 0)
            cli_fail("%s", err.msg);
        else
            reached = true;
        client_close(&cl);
    }
    const char *daemon = reached && resp->daemon_version ? resp->daemon_version : NULL;
    unsigned proto = reached && resp->has_version ? resp->version : 0;
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:i}", "cli", TRUSTME_VERSION, "cli_protocol", (int)TM_PROTOCOL_VERSION);
        if (reached) {
            json_object_set_new(o, "daemon", daemon ? json_string(daemon) : json_null());
            json_object_set_new(o, "daemon_protocol", json_integer(proto));
        }
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("trustme (CLI)  %s, protocol %u\n", TRUSTME_VERSION, TM_PROTOCOL_VERSION);
        if (reached)
            printf("trustmed       %s, protocol %u%s\n", daemon ? daemon : "(too old to say)", proto,
                   proto != TM_PROTOCOL_VERSION ? " (differs: requests will be refused)" : "");
    }
    if (resp)
        trustme__response__free_unpacked(resp, NULL);
    return reached ? 0 : 1;
}
