/* SPDX-License-Identifier: GPL-2.0-or-later */
/* api/'s side of reply.h: answers from the code below api/ go to the connection they belong to,
 * if it is still there. */
#include "reply_ops.h"

#include "container_info.h"
#include "control.h"

static bool reply_ops_alive(struct daemon *d, uint64_t client)
{
    return conn_find(d, client) != NULL;
}

static bool reply_ops_send(struct daemon *d, uint64_t client, uint64_t req_id, Trustme__Response *resp)
{
    struct conn *conn = conn_find(d, client);
    if (!conn)
        return false;
    conn_send(conn, req_id, resp);
    return true;
}

static bool reply_ops_container(struct daemon *d, uint64_t client, uint64_t req_id, const struct container *c)
{
    struct conn *conn = conn_find(d, client);
    if (!conn)
        return false;
    Trustme__ContainerInfo info;
    Trustme__Encryption enc;
    container_info(c, &info, &enc);
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_CONTAINER;
    resp.container = &info;
    conn_send(conn, req_id, &resp);
    return true;
}

static bool reply_ops_congested(struct daemon *d, uint64_t client)
{
    struct conn *conn = conn_find(d, client);
    return conn && conn_congested(conn);
}

static bool reply_ops_input_paused(struct daemon *d, uint64_t client)
{
    struct conn *conn = conn_find(d, client);
    return conn && conn->input_paused;
}

static void reply_ops_pause_input(struct daemon *d, uint64_t client, bool paused)
{
    struct conn *conn = conn_find(d, client);
    if (conn)
        conn_pause_input(conn, paused);
}

static bool reply_ops_restricted(struct daemon *d, uint64_t client)
{
    struct conn *conn = conn_find(d, client);
    return conn && conn->role == ROLE_RESTRICTED;
}

static bool reply_ops_install_failure_audit_due(struct daemon *d, uint64_t client)
{
    struct conn *conn = conn_find(d, client);
    return !conn || conn->role != ROLE_RESTRICTED || control_audit_due(conn, CONTROL_AUDIT_INSTALL_FAILED);
}

const struct reply_ops control_reply_ops = {
    .alive = reply_ops_alive,
    .send = reply_ops_send,
    .container = reply_ops_container,
    .congested = reply_ops_congested,
    .input_paused = reply_ops_input_paused,
    .pause_input = reply_ops_pause_input,
    .restricted = reply_ops_restricted,
    .install_failure_audit_due = reply_ops_install_failure_audit_due,
};
