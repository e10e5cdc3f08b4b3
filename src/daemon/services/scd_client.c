/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of trustme-scd: a supervised service (service.c) confined by scd_sandbox.c. */
#include "scd_client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "packet.h"
#include "proto.h"
#include "service.h"
#include "daemon.h"
#include "service_options_private.h"

#define SCD_REPLY_MAX (TM_PACKET_LOCKED_MAX - 4) /* replies are small and may hold keys */
#define SCD_REQUEST_MAX (4u * 1024 * 1024) /* as scd's limit (server.c) */

typedef Trustme__Scd__Response Response;

static void exec_child(const void *ctx, int sock, int exe, pid_t daemon_pid)
{
    scd_sandbox_exec(ctx, sock, exe, daemon_pid);
}

static uint64_t response_id(const ProtobufCMessage *m)
{
    return ((const Response *)m)->id;
}

static bool is_ready(const ProtobufCMessage *m)
{
    const Response *resp = (const Response *)m;
    if (resp->body_case != TRUSTME__SCD__RESPONSE__BODY_READY)
        return false;
    log_info("trustme-scd ready (pid %u)", resp->ready->pid);
    return true;
}

static bool is_error(const ProtobufCMessage *m, tm_err *err)
{
    const Response *resp = (const Response *)m;
    if (resp->body_case != TRUSTME__SCD__RESPONSE__BODY_ERROR)
        return false;
    tm_err_set(err, resp->error->has_code && resp->error->code > 0 ? resp->error->code : EIO, "%s",
               resp->error->message ? resp->error->message : "token service error");
    return true;
}

static void deliver(service_fn fn, struct daemon *d, const ProtobufCMessage *resp, const tm_err *err, void *userdata)
{
    ((scd_reply_fn)fn)(d, (const Response *)resp, err, userdata);
}

static void on_ready(struct service *s)
{
    /* A new scd: the tokens' state is asked for afresh, it gets the device secret, installed
     * GuestOSes are checked against the current CRLs (main.c registers them in that order). */
    struct daemon *d = service_daemon(s);
    service_emit(d, scd_ready, d);
}

static void on_service_exit(struct service *s)
{
    struct daemon *d = service_daemon(s);
    service_emit(d, scd_gone, d);
}

static void on_spawned(struct service *s, int exe)
{
    struct daemon *d = service_daemon(s);
    service_emit(d, scd_spawned, d, exe);
}

static const struct service_ops scd_ops = {
    .name = "trustme-scd",
    .audit_name = "scd",
    .what = "the token service (trustme-scd)",
    .response = &trustme__scd__response__descriptor,
    .reply_max = SCD_REPLY_MAX,
    .request_max = SCD_REQUEST_MAX,
    .stop_wait_ms = 1000,
    .exec_child = exec_child,
    .response_id = response_id,
    .is_ready = is_ready,
    .is_error = is_error,
    .deliver = deliver,
    .on_spawned = on_spawned,
    .on_ready = on_ready,
    .on_exit = on_service_exit,
};

int scd_start(struct daemon *d, const struct scd_sandbox *sb, tm_err *err)
{
    return service_start(d, &scd_ops, sb->binary, sb, sizeof(*sb), &d->scd, err);
}

int scd_launch(struct daemon *d, tm_err *err)
{
    const struct service_options *o = d->service_opts;
    struct scd_sandbox sb = {.kdf_n = o->scd.kdf_n, .log_level = d->log_level};
    sb.ngroups = SCD_MAX_GROUPS;
    int r = daemon_find_helper(o->scd.binary, "trustme-scd", "/../scd", sb.binary, sizeof(sb.binary), err);
    if (r < 0)
        return tm_err_prefix(err, "the token service (use --scd-binary)");
    if ((r = daemon_helper_user(o->scd.user, "the token service", &sb.uid, &sb.gid, sb.groups, &sb.ngroups, err)) < 0)
        return r;
    snprintf(sb.state_dir, sizeof(sb.state_dir), "%s/scd", d->data_dir);
    snprintf(sb.root, sizeof(sb.root), "%s/scd-root", d->run_dir);
    if ((mkdir(sb.state_dir, 0700) < 0 && errno != EEXIST) || chown(sb.state_dir, sb.uid, sb.gid) < 0 ||
        chmod(sb.state_dir, 0700) < 0)
        return tm_err_sys(err, "cannot prepare %s", sb.state_dir);
    if (mkdir(sb.root, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", sb.root);
    for (size_t i = 0; i < o->scd.nbinds; i++)
        sb.binds[sb.nbinds++] = o->scd.binds[i];
    return scd_start(d, &sb, err);
}

void scd_stop(struct daemon *d)
{
    service_stop(d->scd);
    d->scd = NULL;
}

int scd_call(struct daemon *d, Trustme__Scd__Request *req, scd_reply_fn fn, void *userdata, tm_err *err)
{
    if (!service_running(d->scd))
        return tm_err_set(err, ESHUTDOWN,
                          "the token service (trustme-scd) is not running; it is "
                          "being restarted, try again");
    req->has_version = req->has_id = true;
    req->version = TM_PROTOCOL_VERSION;
    req->id = service_next_id(d->scd);
    return service_send(d->scd, &req->base, req->id, (service_fn)fn, userdata, err);
}

void scd_forget(struct daemon *d, void *userdata)
{
    service_forget(d->scd, userdata);
}
