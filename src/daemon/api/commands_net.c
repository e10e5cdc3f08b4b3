/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme iface assign/unassign (docs/NETWORK.md "Physical interfaces"). */
#include "commands_net.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "cleanup.h"
#include "config.h"
#include "container.h"
#include "json_cleanup.h"
#include "commands.h"
#include "net.h"

static struct container *target(struct conn *conn, uint64_t id, const Trustme__IfaceRequest *rq)
{
    if (!rq->id || !rq->id[0] || !rq->iface || !rq->iface[0]) {
        conn_send_error(conn, id, EINVAL, "a container and an interface are needed");
        return NULL;
    }
    return commands_lookup(conn, id, rq->id);
}

/* --persistent: the interface joins the config's network.interfaces (the config is rewritten and
 * parsed again, as an update would; a signed config cannot be changed here). */
static int persist(struct container *c, const char *iface, tm_err *err)
{
    if (c->config_signed)
        return tm_err_set(err, EPERM, "%s's config is signed: change it with trustme update", c->cfg->name);
    for (size_t i = 0; i < c->cfg->net.nifaces; i++)
        if (strcmp(c->cfg->net.ifaces[i], iface) == 0)
            return 0;
    _cleanup_json_ json_t *root = json_loads(c->config_json, JSON_REJECT_DUPLICATES, NULL);
    json_t *net, *arr;
    if (!root || !json_is_object(root))
        return tm_err_set(err, EINVAL, "cannot read %s's config", c->cfg->name);
    if (!(net = json_object_get(root, "network"))) {
        net = json_object();
        json_object_set_new(root, "network", net);
    }
    if (!(arr = json_object_get(net, "interfaces"))) {
        arr = json_array();
        json_object_set_new(net, "interfaces", arr);
    }
    json_array_append_new(arr, json_string(iface));
    _cleanup_free_ char *json = json_dumps(root, JSON_PRETTY_FLAGS);
    if (!json)
        return tm_err_set(err, ENOMEM, "out of memory");
    struct container_config *cfg;
    int r = config_parse(json, strlen(json), &cfg, err);
    if (r < 0)
        return r;
    if ((r = container_update(c, cfg, json, strlen(json), NULL, err)) < 0)
        config_free(cfg);
    return r;
}

void cmd_iface_assign(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__IfaceRequest *rq = req->iface_assign;
    struct container *c = target(conn, id, rq);
    if (!c)
        return;
    tm_err err = {0};
    int r = net_iface_assign(c, rq->iface, &err);
    if (r == 0 && rq->persistent && (r = persist(c, rq->iface, &err)) < 0)
        tm_err_prefix(&err, "%s was assigned, but not made persistent", rq->iface);
    daemon_audit(conn->d, "net.iface.assign", r < 0 ? "fail" : "ok", c, conn->actor, "%s%s%s%s", rq->iface,
                 rq->persistent ? " (persistent)" : "", r < 0 ? ": " : "", r < 0 ? err.msg : "");
    if (r < 0)
        conn_send_error(conn, id, err.code, "%s", err.msg);
    else
        conn_send_ok(conn, id);
}

void cmd_iface_unassign(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__IfaceRequest *rq = req->iface_unassign;
    struct container *c = target(conn, id, rq);
    if (!c)
        return;
    tm_err err = {0};
    int r = net_iface_unassign(c, rq->iface, &err);
    daemon_audit(conn->d, "net.iface.unassign", r < 0 ? "fail" : "ok", c, conn->actor, "%s%s%s", rq->iface,
                 r < 0 ? ": " : "", r < 0 ? err.msg : "");
    if (r < 0)
        conn_send_error(conn, id, err.code, "%s", err.msg);
    else
        conn_send_ok(conn, id);
}
