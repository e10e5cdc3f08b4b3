/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme vtpm info` and `trustme vtpm reset` (docs/VTPM.md). */
#include "commands_vtpm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "commands.h"
#include "container.h"
#include "hex.h"
#include "reply.h"
#include "state.h"
#include "vtpm.h"
#include "vtpm_owner.h"

/* The request, while tpmd answers: the client and the container, looked up again by uuid. */
struct vtpm_req {
    uint64_t client, req_id;
    char uuid[TM_UUID_STR_LEN + 1];
};

/* The container ref names and a request for the answer to come; NULL when answered already
 * (no such container, or, with stopped, one that runs; out of memory). */
static struct vtpm_req *new_req(struct conn *conn, uint64_t id, const char *ref, bool stopped, struct container **ret_c)
{
    struct container *c = commands_lookup(conn, id, ref);
    if (!c)
        return NULL;
    if (stopped && state_is_active(c->state)) {
        conn_send_error(conn, id, EBUSY, "%s is %s; stop it before resetting its vTPM (trustme stop %s)", c->cfg->name,
                        state_name(c->state), c->cfg->name);
        return NULL;
    }
    struct vtpm_req *r = calloc(1, sizeof(*r));
    if (!r) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return NULL;
    }
    struct reply_to to = conn_reply_to(conn, id);
    r->client = to.client;
    r->req_id = to.req_id;
    memcpy(r->uuid, c->uuid, sizeof(r->uuid));
    *ret_c = c;
    return r;
}

/* Answer r with info, or with Ok when info is NULL. */
static void answer(struct daemon *d, const struct vtpm_req *r, Trustme__VtpmInfo *info)
{
    Trustme__Ok ok = TRUSTME__OK__INIT;
    Trustme__Response out = TRUSTME__RESPONSE__INIT;
    if (info) {
        out.body_case = TRUSTME__RESPONSE__BODY_VTPM_INFO;
        out.vtpm_info = info;
    } else {
        out.body_case = TRUSTME__RESPONSE__BODY_OK;
        out.ok = &ok;
    }
    reply_send(d, r->client, r->req_id, &out);
}

static void on_info_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_free_ struct vtpm_req *r = userdata;
    struct container *c = container_find(d, r->uuid);
    if (!c) {
        reply_error(d, r->client, r->req_id, ENOENT, "the container is gone");
        return;
    }
    struct vtpm_status st;
    vtpm_status(c, &st);
    char state_hex[65] = "", anchor_hex[65] = "";
    Trustme__VtpmInfo info = TRUSTME__VTPM_INFO__INIT;
    info.has_enabled = info.has_running = info.has_restarts = info.has_state_exists = true;
    info.enabled = c->cfg->vtpm;
    info.running = st.running;
    info.restarts = st.restarts;
    info.state_exists = st.state_exists;
    if (st.running) {
        info.has_pid = true;
        info.pid = (uint32_t)st.pid;
    }
    if (st.standby_pid) {
        info.has_standby_pid = info.has_standby_waiting = true;
        info.standby_pid = (uint32_t)st.standby_pid;
        info.standby_waiting = st.standby_waiting;
    }
    if (st.state_exists) {
        tm_hex(st.state_sha256, 32, state_hex);
        info.state_sha256 = state_hex;
    }
    if (!err) {
        char name[96];
        snprintf(name, sizeof(name), VTPM_ANCHOR_PREFIX "%s", c->uuid);
        const ProtobufCBinaryData *v = tpmd_anchor_value(resp, name);
        if (v && v->len == 32) {
            tm_hex(v->data, 32, anchor_hex);
            info.anchored_sha256 = anchor_hex;
        }
        if (resp->anchor) {
            info.has_anchor_version = true;
            info.anchor_version = resp->anchor->version;
        }
    }
    struct vtpm_ek eks[VTPM_EKS];
    size_t n_eks = 0;
    Trustme__VtpmEk ek_msgs[VTPM_EKS], *ek_ptrs[VTPM_EKS];
    char ek_names[VTPM_EKS][69];
    if (vtpm_eks(c, eks, &n_eks) < 0)
        n_eks = 0;
    for (size_t i = 0; i < n_eks; i++) {
        trustme__vtpm_ek__init(&ek_msgs[i]);
        tm_hex(eks[i].name, sizeof(eks[i].name), ek_names[i]);
        ek_msgs[i].kind = eks[i].kind;
        ek_msgs[i].name = ek_names[i];
        ek_msgs[i].has_public_area = ek_msgs[i].has_handle = true;
        ek_msgs[i].public_area = (ProtobufCBinaryData){eks[i].public_len, eks[i].public};
        ek_msgs[i].handle = strcmp(eks[i].kind, "rsa") == 0 ? VTPM_EK_RSA_HANDLE : VTPM_EK_ECC_HANDLE;
        ek_msgs[i].has_cert_der = eks[i].cert_len > 0;
        ek_msgs[i].cert_der = (ProtobufCBinaryData){eks[i].cert_len, eks[i].cert};
        ek_ptrs[i] = &ek_msgs[i];
    }
    info.n_eks = n_eks;
    info.eks = ek_ptrs;
    struct owner_stmt owner;
    tm_err oerr = {0};
    char key_hex[65] = "";
    if (vtpm_owner_read(c, &owner, &oerr) == 0) {
        info.owner_kind = owner.mandatory ? "mandatory" : "discretionary";
        tm_sha256_hex(owner.key, owner.key_len, key_hex);
        info.owner_key_sha256 = key_hex;
    }
    answer(d, r, &info);
}

void cmd_vtpm_info(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c;
    struct vtpm_req *r = new_req(conn, id, req->vtpm_info->id, false, &c);
    if (!r)
        return;
    char name[96];
    snprintf(name, sizeof(name), VTPM_ANCHOR_PREFIX "%s", c->uuid);
    const char *names[] = {name};
    tm_err err = {0};
    if (tpmd_anchor_get(c->d, names, 1, on_info_anchor, r, &err) < 0)
        on_info_anchor(c->d, NULL, &err, r);
}

static void on_reset(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    _cleanup_free_ struct vtpm_req *r = userdata;
    struct container *c = container_find(d, r->uuid);
    if (err) {
        daemon_audit(d, "vtpm.reset", "fail", c, NULL, "%s", err->msg);
        reply_error(d, r->client, r->req_id, err->code ? err->code : EIO, "the vTPM's anchor stays: %s", err->msg);
    } else {
        daemon_audit(d, "vtpm.reset", "ok", c, NULL, "its state and anchor are gone");
        answer(d, r, NULL);
    }
}

static void reset(struct conn *conn, uint64_t id, const char *name, const ProtobufCBinaryData *release)
{
    struct container *c = commands_lookup(conn, id, name);
    if (!c)
        return;
    tm_err oerr = {0};
    if (vtpm_owner_may_destroy(c, release ? release->data : NULL, release ? release->len : 0, &oerr) < 0) {
        daemon_audit(c->d, "vtpm.reset", "fail", c, NULL, "%s", oerr.msg);
        conn_send_error(conn, id, EPERM, "%s", oerr.msg);
        return;
    }
    struct vtpm_req *r = new_req(conn, id, name, true, &c);
    if (!r)
        return;
    tm_err err = {0};
    if (vtpm_reset(c, on_reset, r, &err) < 0) {
        conn_send_error(conn, id, err.code ? err.code : EIO, "%s", err.msg);
        free(r);
    }
}

void cmd_vtpm_reset(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    reset(conn, id, req->vtpm_reset->id, NULL);
}

void cmd_vtpm_reset_released(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__VtpmOwnerRequest *rq = req->vtpm_reset_released;
    ProtobufCBinaryData none = {0};
    reset(conn, id, rq->id, rq->has_statement ? &rq->statement : &none);
}

void cmd_vtpm_owner(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__VtpmOwnerRequest *rq = req->vtpm_owner;
    struct container *c = commands_lookup(conn, id, rq->id);
    if (!c)
        return;
    static struct owner_stmt s; /* large; the loop is single-threaded */
    tm_err err = {0};
    if (!rq->has_statement || vtpm_owner_install(c, rq->statement.data, rq->statement.len, &s, &err) < 0) {
        if (!rq->has_statement)
            tm_err_set(&err, EINVAL, "no statement");
        daemon_audit(c->d, "vtpm.owner", "fail", c, NULL, "%s", err.msg);
        conn_send_error(conn, id, err.code ? err.code : EINVAL, "%s", err.msg);
        return;
    }
    char key_hex[65];
    tm_sha256_hex(s.key, s.key_len, key_hex);
    if (s.type == OWNER_STMT_REFS)
        daemon_audit(c->d, "vtpm.owner", "ok", c, NULL, "the owner's reference values, %zu values", s.nrefs);
    else
        daemon_audit(c->d, "vtpm.owner", "ok", c, NULL, "%s owner, key %s", s.mandatory ? "mandatory" : "discretionary",
                     key_hex);
    Trustme__Ok ok = TRUSTME__OK__INIT;
    Trustme__Response out = TRUSTME__RESPONSE__INIT;
    out.body_case = TRUSTME__RESPONSE__BODY_OK;
    out.ok = &ok;
    conn_send(conn, id, &out);
}
