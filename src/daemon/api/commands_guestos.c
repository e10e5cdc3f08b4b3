/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "commands_guestos.h"
#include "caps.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "container.h"
#include "container_info.h"
#include "container_root.h"
#include "guestos.h"
#include "guestos_install.h"
#include "guestos_revocation.h"
#include "lifecycle.h"
#include "measure.h"
#include "session.h"
#include "tpmd_client.h"
#include "volume.h"
#include "tokens.h"
#include "trust.h"
#include "vtpm.h"

#define CONFIG_JSON_MAX (1024 * 1024)
#define SIGNATURE_MAX (16 * 1024)
#define CHAIN_PEM_MAX (256 * 1024)

void reply_container(struct conn *conn, uint64_t id, const struct container *c)
{
    Trustme__ContainerInfo info;
    Trustme__Encryption enc;
    container_info(c, &info, &enc);
    if (conn->role == ROLE_RESTRICTED) {
        /* The container's own view (docs/ROLES.md): nothing of the host — not init's host pid,
         * not the host uid range, not the host path of its root file system, and not the last
         * start error (it names host paths and devices). */
        info.has_pid = false;
        info.pid = 0;
        info.has_uid_base = false;
        info.uid_base = 0;
        info.rootfs = NULL;
        info.last_error = NULL;
    }
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_CONTAINER;
    resp.container = &info;
    conn_send(conn, id, &resp);
}

/* ---- create and update ------------------------------------------------------------------------ */

/* A create or update between the request and scd's verdict on its signature. */
struct config_op {
    struct daemon *d;
    uint64_t conn_id, req_id;
    char actor[48];
    char uuid[TM_UUID_STR_LEN + 1]; /* update: the container; "" for create */
    ProtobufCBinaryData json, sig, chain;
    /* an update waiting for the TPM anchor of its config version */
    struct container_config *cfg;
    bool is_signed;
    char anchor_name[GUESTOS_ANCHOR_NAME_MAX + 1];
    uint8_t anchor_value[MEASURE_CONFIG_ANCHOR_LEN];
    struct config_op *next_pending; /* in pending while its anchor round trip is under way */
    bool is_pending;
};

/* Updates between their version check and their apply. Two at once of one container would both
 * pass the check against the current config, anchor in turn (the anchor going down to the
 * second's version) and apply in turn: an older signed config would come back. */
static struct config_op *pending;

static bool update_pending(const char *uuid)
{
    for (struct config_op *op = pending; op; op = op->next_pending)
        if (strcmp(op->uuid, uuid) == 0)
            return true;
    return false;
}

static void config_op_free(struct config_op *op)
{
    if (op->is_pending)
        for (struct config_op **p = &pending; *p; p = &(*p)->next_pending)
            if (*p == op) {
                *p = op->next_pending;
                break;
            }
    if (op->d)
        tpmd_forget(op->d, op);
    config_free(op->cfg);
    free(op->json.data);
    free(op->sig.data);
    free(op->chain.data);
    free(op);
}

static int dup_bytes(const ProtobufCBinaryData *in, ProtobufCBinaryData *out)
{
    out->len = in->len;
    out->data = malloc(in->len + 1);
    if (!out->data)
        return -ENOMEM;
    if (in->len)
        memcpy(out->data, in->data, in->len);
    out->data[in->len] = '\0';
    return 0;
}

/* What an update may not change: who the container is and how its data is kept. */
static int check_update(const struct container *c, const struct container_config *cfg, tm_err *err)
{
    if (strcmp(cfg->name, c->cfg->name) != 0)
        return tm_err_set(err, EINVAL, "$.name: an update cannot rename %s", c->cfg->name);
    if (cfg->token.kind != c->cfg->token.kind || strcmp(cfg->token.module, c->cfg->token.module) != 0 ||
        strcmp(cfg->token.label, c->cfg->token.label) != 0 || strcmp(cfg->token.serial, c->cfg->token.serial) != 0)
        return tm_err_set(err, EINVAL, "$.token: the token cannot be changed by an update");
    if (cfg->data_size_mb != c->cfg->data_size_mb)
        return tm_err_set(err, EINVAL,
                          "$.data_size_mb: the data volume's size cannot be changed "
                          "by an update");
    if (cfg->user_namespace != c->cfg->user_namespace)
        return tm_err_set(err, EINVAL,
                          "$.user_namespace: cannot be changed by an update (the data "
                          "volume's owners would not match)");
    return 0;
}

/* The end of a create or update: r < 0 refused it (err says why), else c has cfg. */
static void config_op_done(struct config_op *op, struct container *c, struct container_config *cfg, bool is_signed,
                           int r, const tm_err *err)
{
    struct daemon *d = op->d;
    struct conn *conn = conn_find(d, op->conn_id);
    if (r < 0) {
        config_free(cfg);
        daemon_audit(d, "config.reject", "fail", c, op->actor, "%s", err->msg);
        if (conn)
            conn_send_error(conn, op->req_id, err->code, "invalid container config: %s", err->msg);
        config_op_free(op);
        return;
    }
    if (op->uuid[0]) {
        daemon_audit(d, "container.update", "ok", c, op->actor, "config %s%s%llu", is_signed ? "signed" : "unsigned",
                     cfg->config_version ? ", version " : "", (unsigned long long)cfg->config_version);
    } else {
        daemon_audit(d, "container.create", "ok", c, op->actor, "%s %s, config %s, user namespace %s, token %s",
                     cfg->guestos[0] ? "GuestOS" : "rootfs", cfg->guestos[0] ? cfg->guestos : cfg->rootfs,
                     is_signed ? "signed" : "unsigned", cfg->user_namespace ? "on" : "off",
                     token_kind_name(cfg->token.kind));
        if (caps_privileged(cfg)) {
            char names[768];
            caps_names(caps_privileged(cfg), names, sizeof(names));
            daemon_audit(d, "container.privileged", "ok", c, op->actor,
                         "created without a user "
                         "namespace, keeping %s",
                         names);
        }
    }
    if (conn)
        reply_container(conn, op->req_id, c);
    config_op_free(op);
}

/* The container op->uuid, still there and stopped. */
static int update_target(struct config_op *op, struct container **ret, tm_err *err)
{
    struct container *c = container_find(op->d, op->uuid);
    *ret = c;
    if (!c)
        return tm_err_set(err, ENOENT, "the container was removed meanwhile");
    if (state_is_active(c->state) || container_sessions(c))
        return tm_err_set(err, EBUSY, "%s is %s; stop it before updating it", c->cfg->name, state_name(c->state));
    return 0;
}

static void update_apply(struct config_op *op)
{
    struct container *c;
    tm_err err = {0};
    struct config_signature sig = {op->sig.data, op->sig.len, (const char *)op->chain.data, op->chain.len};
    struct container_config *cfg = op->cfg;
    op->cfg = NULL;
    int r = update_target(op, &c, &err);
    if (r == 0 && (r = check_update(c, cfg, &err)) == 0)
        r = container_update(c, cfg, (const char *)op->json.data, op->json.len, op->is_signed ? &sig : NULL, &err);
    if (r == 0)
        vtpm_config_changed(c); /* a standby trustme-vtpm was launched for the old config */
    config_op_done(op, c, cfg, op->is_signed, r, &err);
}

static void on_config_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr,
                               void *userdata)
{
    struct config_op *op = userdata;
    tm_err err = {0};
    if (aerr) {
        tm_err_set(&err, aerr->code, "the TPM anchor of its config version cannot be written: %s", aerr->msg);
        struct container *c = container_find(d, op->uuid);
        struct container_config *cfg = op->cfg;
        op->cfg = NULL;
        config_op_done(op, c, cfg, op->is_signed, -1, &err);
        return;
    }
    update_apply(op);
}

/* A versioned update: the new version must be above the one the TPM anchors (which is at least
 * the current config's, unless the config file was restored from an older copy), and is
 * anchored before the config is replaced: an older signed config can never come back. */
static void on_config_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr, void *userdata)
{
    struct config_op *op = userdata;
    tm_err err = {0};
    uint64_t anchored = 0;
    int r = 0;
    if (aerr)
        r = tm_err_set(&err, aerr->code, "the TPM-anchored config version cannot be read: %s", aerr->msg);
    else
        r = measure_config_anchor_parse(tpmd_anchor_value(resp, op->anchor_name), &anchored, &err);
    if (r == 0 && op->cfg->config_version && op->cfg->config_version <= anchored)
        r = tm_err_set(&err, ESTALE,
                       "$.config_version: %llu is not above version %llu, which this "
                       "device's TPM anchors for this container: an older config cannot come "
                       "back",
                       (unsigned long long)op->cfg->config_version, (unsigned long long)anchored);
    if (r < 0) {
        struct container *c = container_find(d, op->uuid);
        struct container_config *cfg = op->cfg;
        op->cfg = NULL;
        config_op_done(op, c, cfg, op->is_signed, r, &err);
        return;
    }
    if (op->cfg->config_version == anchored) { /* both 0: nothing anchored, nothing to anchor */
        update_apply(op);
        return;
    }
    /* An unversioned (unsigned) config, where the policy allows one, drops the anchor. */
    measure_config_anchor_encode(op->cfg->config_version, op->anchor_value);
    struct tpmd_anchor_entry set = {.name = op->anchor_name,
                                    .value = op->anchor_value,
                                    .len = sizeof(op->anchor_value),
                                    .remove = op->cfg->config_version == 0};
    if (tpmd_anchor_update(d, &set, 1, NULL, 0, on_config_anchored, op, &err) < 0)
        on_config_anchored(d, NULL, &err, op);
}

static void config_op_finish(struct config_op *op, bool is_signed)
{
    struct daemon *d = op->d;
    const char *json = (const char *)op->json.data;
    tm_err err = {0};
    struct container_config *cfg = NULL;
    struct container *c = NULL;
    struct config_signature sig = {op->sig.data, op->sig.len, (const char *)op->chain.data, op->chain.len};
    int r = config_parse(json, op->json.len, &cfg, &err);
    if (r == 0 && !cfg->guestos[0] && !d->device.allow_unsigned)
        r = tm_err_set(&err, EPERM,
                       "$.rootfs: a development rootfs is refused by the device "
                       "policy (policy.allow_unsigned); name a GuestOS instead");
    if (r == 0 && !cfg->guestos[0])
        r = volume_check_rootfs(cfg, &err);
    if (r == 0 && caps_privileged(cfg) && !d->device.allow_privileged) {
        char names[768];
        caps_names(caps_privileged(cfg), names, sizeof(names));
        r = tm_err_set(&err, EPERM,
                       "$.capabilities: %s without a user namespace would reach the "
                       "host (the container's root is the host's root); the device policy refuses "
                       "privileged containers (device.json policy.allow_privileged)",
                       names);
    }
    if (r == 0 && is_signed && cfg->config_version == 0)
        r = tm_err_set(&err, EINVAL,
                       "$.config_version: a signed config needs a version (1, then "
                       "higher with every update), so that an older one cannot be replayed");
    if (r == 0 && op->uuid[0]) {
        if ((r = update_target(op, &c, &err)) == 0 && update_pending(op->uuid))
            r = tm_err_set(&err, EBUSY,
                           "another update of %s is under way; try again when it is "
                           "done",
                           c->cfg->name);
        if (r == 0 && (r = check_update(c, cfg, &err)) == 0 && cfg->config_version &&
            cfg->config_version <= c->cfg->config_version)
            r = tm_err_set(&err, ESTALE,
                           "$.config_version: %llu does not raise the current "
                           "config's version %llu: an update must",
                           (unsigned long long)cfg->config_version, (unsigned long long)c->cfg->config_version);
        if (r == 0) {
            /* Through the TPM anchor: also an unversioned config, which may have to drop one. */
            op->cfg = cfg;
            op->is_signed = is_signed;
            measure_config_anchor_name(c, op->anchor_name);
            const char *names[] = {op->anchor_name};
            if (tpmd_anchor_get(d, names, 1, on_config_anchor, op, &err) == 0) {
                op->is_pending = true;
                op->next_pending = pending;
                pending = op;
                return;
            }
            op->cfg = NULL;
            r = -1;
        }
    } else if (r == 0) {
        r = container_create(d, cfg, json, op->json.len, is_signed ? &sig : NULL, &c, &err);
    }
    config_op_done(op, c, cfg, is_signed, r, &err);
}

static void on_config_verified(struct daemon *d, const struct trust_result *res, const tm_err *err, void *userdata)
{
    struct config_op *op = userdata;
    if (!err) {
        config_op_finish(op, true);
        return;
    }
    daemon_audit(d, "config.reject", "fail", NULL, op->actor, "signature: %s", err->msg);
    struct conn *conn = conn_find(d, op->conn_id);
    if (conn)
        conn_send_error(conn, op->req_id, err->code, "config signature rejected: %s", err->msg);
    config_op_free(op);
}

static void config_request(struct conn *conn, uint64_t id, const char *uuid, protobuf_c_boolean has_json,
                           const ProtobufCBinaryData *json, protobuf_c_boolean has_sig, const ProtobufCBinaryData *sig,
                           protobuf_c_boolean has_chain, const ProtobufCBinaryData *chain)
{
    struct daemon *d = conn->d;
    const char *verb = uuid ? "update" : "create";
    if (!has_json || json->len == 0) {
        conn_send_error(conn, id, EINVAL, "%s: the config is empty", verb);
        return;
    }
    if (json->len > CONFIG_JSON_MAX || (has_sig && sig->len > SIGNATURE_MAX) ||
        (has_chain && chain->len > CHAIN_PEM_MAX)) {
        conn_send_error(conn, id, EFBIG,
                        "%s: the config (at most %d bytes), its signature or its "
                        "chain is too large",
                        verb, CONFIG_JSON_MAX);
        return;
    }
    bool is_signed = has_sig && sig->len > 0;
    if (is_signed != (has_chain && chain->len > 0)) {
        conn_send_error(conn, id, EINVAL,
                        "%s: a signature needs its certificate chain, and a chain "
                        "its signature",
                        verb);
        return;
    }
    if (!is_signed && d->device.signed_configs) {
        daemon_audit(d, "config.reject", "fail", NULL, conn->actor, "unsigned config");
        conn_send_error(conn, id, EPERM,
                        "%s: this device accepts only signed configs "
                        "(policy.signed_configs): give CONFIG.sig and CONFIG.chain.pem",
                        verb);
        return;
    }
    struct config_op *op = calloc(1, sizeof(*op));
    if (!op || dup_bytes(json, &op->json) < 0 ||
        (is_signed && (dup_bytes(sig, &op->sig) < 0 || dup_bytes(chain, &op->chain) < 0))) {
        if (op)
            config_op_free(op);
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    op->d = d;
    op->conn_id = conn->id;
    op->req_id = id;
    snprintf(op->actor, sizeof(op->actor), "%s", conn->actor);
    snprintf(op->uuid, sizeof(op->uuid), "%s", uuid ? uuid : "");
    if (!is_signed) {
        config_op_finish(op, false);
        return;
    }
    tm_err err = {0};
    if (trust_verify(d, op->json.data, op->json.len, op->sig.data, op->sig.len, (const char *)op->chain.data,
                     op->chain.len, CHAIN_GUESTOS, false, on_config_verified, op, &err) < 0)
        on_config_verified(d, NULL, &err, op);
}

void cmd_create(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__CreateRequest *rq = req->create;
    config_request(conn, id, NULL, rq->has_config_json, &rq->config_json, rq->has_signature, &rq->signature,
                   rq->has_chain_pem, &rq->chain_pem);
}

void cmd_update(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__UpdateRequest *rq = req->update;
    struct container *c = rq->id && rq->id[0] ? container_find(conn->d, rq->id) : NULL;
    if (!c) {
        conn_send_error(conn, id, ENOENT, "no container \"%s\" (see trustme list)", rq->id ? rq->id : "");
        return;
    }
    config_request(conn, id, c->uuid, rq->has_config_json, &rq->config_json, rq->has_signature, &rq->signature,
                   rq->has_chain_pem, &rq->chain_pem);
}

/* ---- the GuestOS store ------------------------------------------------------------------------ */

void cmd_guestos_install(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    if (conn->role != ROLE_RESTRICTED) {
        guestos_install(conn->d, conn_reply_to(conn, id), req->guestos_install->path, -1);
        return;
    }
    /* A restricted client names a directory of its own container (docs/ROLES.md), never one of
     * the host: resolved inside init's root, so that no error can tell what exists outside. */
    struct container *own = container_find(conn->d, conn->role_uuid);
    tm_err err = {0};
    _cleanup_close_ int root =
        own ? container_root_open(own, &err) : tm_err_set(&err, ESRCH, "the container is not running");
    if (root < 0) {
        conn_send_error(conn, id, err.code, "guestos install: %s", err.msg);
        return;
    }
    guestos_install(conn->d, conn_reply_to(conn, id), req->guestos_install->path, root);
}

/* users (comma-separated names) cut down to the restricted client's own container, or "". */
static void restricted_users(struct daemon *d, const struct conn *conn, char *users)
{
    const struct container *own = container_find(d, conn->role_uuid);
    size_t n = own ? strlen(own->cfg->name) : 0;
    bool listed = false;
    for (const char *p = users; own && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strcspn(p, ",") == n && strncmp(p, own->cfg->name, n) == 0)
            listed = true;
    }
    if (listed)
        memmove(users, own->cfg->name, n + 1);
    else
        users[0] = '\0';
}

void cmd_guestos_list(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct daemon *d = conn->d;
    revocation_refresh(d, false); /* changed CRLs: re-checked in the background */
    size_t n = 0;
    for (struct guestos *g = d->guestos; g; g = g->next)
        n++;
    _cleanup_free_ Trustme__GuestosInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    _cleanup_free_ Trustme__GuestosInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    _cleanup_free_ char(*users)[1024] = calloc(n ? n : 1, sizeof(*users));
    _cleanup_free_ char **user_ptrs = calloc(n ? n : 1, sizeof(char *));
    if (!infos || !ptrs || !users || !user_ptrs) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    size_t i = 0;
    for (struct guestos *g = d->guestos; g; g = g->next, i++) {
        Trustme__GuestosInfo *info = &infos[i];
        trustme__guestos_info__init(info);
        info->name = g->cfg->name;
        info->has_version = true;
        info->version = g->cfg->version;
        info->trust = (char *)guestos_trust_shown(g);
        info->signer = g->signer;
        info->has_size = true;
        info->size = g->size;
        info->architecture = g->cfg->architecture;
        info->has_installed_at = true;
        info->installed_at = g->installed_at;
        info->description = g->cfg->description;
        /* used_by as one comma-separated entry: the CLI splits it. A restricted client is
         * told of its own container only: which others exist is not its business (as for
         * state, docs/ROLES.md). */
        if (guestos_users(d, g, users[i], sizeof(users[i])) > 0 && conn->role == ROLE_RESTRICTED)
            restricted_users(d, conn, users[i]);
        if (users[i][0]) {
            user_ptrs[i] = users[i];
            info->n_used_by = 1;
            info->used_by = &user_ptrs[i];
        }
        ptrs[i] = info;
    }
    Trustme__GuestosList list = TRUSTME__GUESTOS_LIST__INIT;
    list.n_guestos = n;
    list.guestos = ptrs;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_GUESTOS_LIST;
    resp.guestos_list = &list;
    conn_send(conn, id, &resp);
}

void cmd_guestos_remove(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__GuestosRemoveRequest *rq = req->guestos_remove;
    tm_err err = {0};
    if (!rq->name || !config_name_valid(rq->name)) {
        conn_send_error(conn, id, EINVAL, "guestos remove: no valid GuestOS name given");
        return;
    }
    uint64_t version = rq->has_version ? rq->version : 0;
    if (guestos_remove(conn->d, rq->name, version, &err) < 0) {
        conn_send_error(conn, id, err.code, "%s", err.msg);
        return;
    }
    daemon_audit(conn->d, "guestos.remove", "ok", NULL, conn->actor, "%s%s%llu", rq->name, version ? "-" : "",
                 (unsigned long long)version);
    conn_send_ok(conn, id);
}

/* ---- trusted CAs ------------------------------------------------------------------------------ */

struct ca_op {
    uint64_t conn_id, req_id;
    char actor[48];
    ProtobufCBinaryData pem;
};

static void on_ca_verified(struct daemon *d, const struct trust_result *res, const tm_err *err, void *userdata)
{
    struct ca_op *op = userdata;
    tm_err e = {0};
    int r = -1;
    if (err) {
        e = *err;
    } else {
        char dir[PATH_MAX], path[PATH_MAX + 80];
        snprintf(dir, sizeof(dir), "%s/trust", d->data_dir);
        mkdir(dir, 0700);
        snprintf(dir, sizeof(dir), "%s/trust/cas", d->data_dir);
        mkdir(dir, 0700);
        snprintf(path, sizeof(path), "%s/%s.pem", dir, res->sha256);
        r = strlen(res->sha256) == 64 ? write_file_atomic(path, op->pem.data, op->pem.len, 0600, &e)
                                      : tm_err_set(&e, EPROTO, "no certificate hash from scd");
    }
    struct conn *conn = conn_find(d, op->conn_id);
    if (r < 0) {
        daemon_audit(d, "ca.register", "fail", NULL, op->actor, "%s", e.msg);
        if (conn)
            conn_send_error(conn, op->req_id, e.code, "CA not registered: %s", e.msg);
    } else {
        daemon_audit(d, "ca.register", "ok", NULL, op->actor, "%s, sha256 %s", res->signer, res->sha256);
        revocation_refresh(d, false);
        if (conn) {
            Trustme__CaInfo info = TRUSTME__CA_INFO__INIT;
            info.subject = (char *)res->signer;
            info.sha256 = (char *)res->sha256;
            Trustme__Response resp = TRUSTME__RESPONSE__INIT;
            resp.body_case = TRUSTME__RESPONSE__BODY_CA;
            resp.ca = &info;
            conn_send(conn, op->req_id, &resp);
        }
    }
    free(op->pem.data);
    free(op);
}

void cmd_ca_register(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__CaRegisterRequest *rq = req->ca_register;
    if (!rq->has_cert_pem || rq->cert_pem.len == 0 || rq->cert_pem.len > CHAIN_PEM_MAX) {
        conn_send_error(conn, id, EINVAL, "ca register: give one PEM certificate (at most %d bytes)", CHAIN_PEM_MAX);
        return;
    }
    struct ca_op *op = calloc(1, sizeof(*op));
    if (!op || dup_bytes(&rq->cert_pem, &op->pem) < 0) {
        free(op);
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    op->conn_id = conn->id;
    op->req_id = id;
    snprintf(op->actor, sizeof(op->actor), "%s", conn->actor);
    tm_err err = {0};
    if (trust_register_ca(conn->d, (const char *)op->pem.data, op->pem.len, on_ca_verified, op, &err) < 0)
        on_ca_verified(conn->d, NULL, &err, op);
}

void cmd_ca_unregister(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct daemon *d = conn->d;
    const char *sha = req->ca_unregister->sha256;
    bool ok = sha && strlen(sha) == 64;
    for (size_t i = 0; ok && i < 64; i++)
        ok = (sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f');
    if (!ok) {
        conn_send_error(conn, id, EINVAL,
                        "ca unregister: give the CA's SHA-256 (64 lower-case hex "
                        "digits, as trustme ca register printed it)");
        return;
    }
    char path[PATH_MAX + 100];
    snprintf(path, sizeof(path), "%s/trust/cas/%s.pem", d->data_dir, sha);
    if (unlink(path) < 0) {
        tm_err err = {0};
        if (errno == ENOENT)
            tm_err_set(&err, ENOENT,
                       "no CA with SHA-256 %s is registered with trustme ca register "
                       "(CAs listed in device.json trust.guestos_cas are removed there)",
                       sha);
        else
            tm_err_sys(&err, "cannot remove %s", path);
        daemon_audit(d, "ca.unregister", "fail", NULL, conn->actor, "%s: %s", sha, err.msg);
        conn_send_error(conn, id, err.code, "CA not unregistered: %s", err.msg);
        return;
    }
    fsync_parent(path);
    daemon_audit(d, "ca.unregister", "ok", NULL, conn->actor, "sha256 %s", sha);
    /* GuestOSes signed under it no longer start: the re-check finds no registered CA. */
    revocation_refresh(d, false);
    conn_send_ok(conn, id);
}
