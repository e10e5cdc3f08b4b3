/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "audit_anchor.h"
#include "cleanup.h"
#include "commands_exec.h"
#include "commands_guestos.h"
#include "commands_net.h"
#include "commands_tpm.h"
#include "container.h"
#include "container_info.h"
#include "exec.h"
#include "lifecycle.h"
#include "log.h"
#include "requests.h"
#include "roles.h"
#include "session.h"
#include "tokens.h"
#include "vtpm.h"
#include "vtpm_owner.h"

struct container *commands_lookup(struct conn *conn, uint64_t id, const char *ref)
{
    if (!ref || !ref[0]) {
        conn_send_error(conn, id, EINVAL, "no container given");
        return NULL;
    }
    struct container *c = container_find(conn->d, ref);
    if (!c)
        conn_send_error(conn, id, ENOENT, "no container \"%s\" (see trustme list)", ref);
    return c;
}

/* Fire ev for a client that waits for its completion (kind); refusals are answered at once. */
static void fire_and_wait(struct conn *conn, uint64_t id, struct container *c, enum cevent ev, const void *arg,
                          enum wait_kind kind, bool wait)
{
    snprintf(c->actor, sizeof(c->actor), "%s", conn->actor);
    if (wait) /* before firing: the event may complete (or fail) synchronously */
        container_add_waiter(c, conn->id, id, kind);
    tm_err err;
    if (container_fire(c, ev, arg, &err) < 0) {
        if (wait)
            container_remove_waiter(c, conn->id, id);
        conn_send_error(conn, id, err.code, "%s", err.msg);
    }
}

void cmd_list(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    size_t n = 0;
    for (struct container *c = conn->d->containers; c; c = c->next)
        n++;
    Trustme__ContainerInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    Trustme__Encryption *encs = calloc(n ? n : 1, sizeof(*encs));
    Trustme__ContainerInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!infos || !encs || !ptrs) {
        free(infos);
        free(encs);
        free(ptrs);
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    size_t i = 0;
    for (struct container *c = conn->d->containers; c; c = c->next, i++) {
        container_info(c, &infos[i], &encs[i]);
        ptrs[i] = &infos[i];
    }
    Trustme__ContainerList list = TRUSTME__CONTAINER_LIST__INIT;
    list.n_containers = n;
    list.containers = ptrs;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_LIST;
    resp.list = &list;
    conn_send(conn, id, &resp);
    free(infos);
    free(encs);
    free(ptrs);
}

void cmd_state(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->state->id);
    if (c)
        reply_container(conn, id, c);
}

void cmd_config(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->config->id);
    if (!c)
        return;
    Trustme__ConfigReply cfg = TRUSTME__CONFIG_REPLY__INIT;
    cfg.has_config_json = true;
    cfg.config_json.data = (uint8_t *)c->config_json;
    cfg.config_json.len = c->config_len;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_CONFIG;
    resp.config = &cfg;
    conn_send(conn, id, &resp);
}

/* Token operations, wipe and remove need a container that is not running. */
static bool is_stopped(struct conn *conn, uint64_t id, const struct container *c, const char *what)
{
    if (!state_is_active(c->state) && !container_sessions(c))
        return true;
    conn_send_error(conn, id, EBUSY, "%s is %s; stop it before %s (trustme stop %s)", c->cfg->name,
                    state_name(c->state), what, c->cfg->name);
    return false;
}

/* A mandatory vTPM owner's container is destroyed only after its release (docs/VTPM.md). */
static bool vtpm_owner_allows(struct conn *conn, uint64_t id, const struct container *c)
{
    tm_err err = {0};
    if (vtpm_owner_may_destroy(c, NULL, 0, &err) == 0)
        return true;
    conn_send_error(conn, id, EPERM, "%s", err.msg);
    return false;
}

void cmd_remove(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->remove->id);
    if (!c || !is_stopped(conn, id, c, "removing it") || !vtpm_owner_allows(conn, id, c))
        return;
    /* Remove is wipe, then delete: the token and the wrapped key are destroyed, not just unlinked. */
    tokens_wipe(conn_reply_to(conn, id), c, NULL, true);
}

void cmd_wipe(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__WipeRequest *rq = req->wipe;
    struct container *c = commands_lookup(conn, id, rq->id);
    if (!c || !is_stopped(conn, id, c, "wiping it") || !vtpm_owner_allows(conn, id, c))
        return;
    if (vtpm_busy(c)) /* its state would be anchored again after the wipe reset it */
        conn_send_error(conn, id, EBUSY, "%s's vTPM is still saving its state; wipe it again in a moment",
                        c->cfg->name);
    else
        tokens_wipe(conn_reply_to(conn, id), c, rq->has_pin ? &rq->pin : NULL, false);
}

void cmd_change_pin(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->change_pin->id);
    if (c)
        tokens_change_pin(conn_reply_to(conn, id), c, req->change_pin);
}

void cmd_token_unlock(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->token_unlock->id);
    if (c)
        tokens_puk_unlock(conn_reply_to(conn, id), c, req->token_unlock);
}

void cmd_start(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__StartRequest *rq = req->start;
    struct container *c = commands_lookup(conn, id, rq->id);
    if (!c)
        return;
    if (conn->d->shutting_down) {
        conn_send_error(conn, id, ESHUTDOWN, "trustmed is shutting down");
        return;
    }
    /* A stopped container with encrypted data needs its PIN; ask before anything changes. */
    bool pin_required;
    tm_err err;
    if (c->state == CS_STOPPED && tokens_check_start(c, rq->has_pin, &pin_required, &err) < 0) {
        if (pin_required)
            conn_send_pin_required(conn, id, "%s", err.msg);
        else
            conn_send_error(conn, id, err.code, "%s", err.msg);
        return;
    }
    struct start_args args = {.attach = rq->has_attach && rq->attach,
                              .stdin_credit = rq->has_stdin_credit && rq->stdin_credit,
                              .conn_id = conn->id,
                              .req_id = id,
                              .pin = rq->has_pin ? &rq->pin : NULL};
    /* An attached start is answered by its session (output, then the exit status). */
    fire_and_wait(conn, id, c, EV_START, &args, WAIT_START, !args.attach);
}

void cmd_stop(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__StopRequest *rq = req->stop;
    struct container *c = commands_lookup(conn, id, rq->id);
    if (!c)
        return;
    struct stop_args args = {.timeout_s = rq->has_timeout_s ? rq->timeout_s : STOP_TIMEOUT_DEFAULT_S,
                             .kill = rq->has_kill && rq->kill};
    if (args.timeout_s > 3600) {
        conn_send_error(conn, id, EINVAL, "stop timeout above 3600 s");
        return;
    }
    fire_and_wait(conn, id, c, EV_STOP, &args, WAIT_STOP, true);
}

void cmd_freeze(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->freeze->id);
    if (c)
        fire_and_wait(conn, id, c, EV_FREEZE, NULL, WAIT_FREEZE, true);
}

void cmd_unfreeze(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->unfreeze->id);
    if (c)
        fire_and_wait(conn, id, c, EV_UNFREEZE, NULL, WAIT_UNFREEZE, true);
}

void cmd_run(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->run->id);
    if (!c)
        return;
    tm_err err;
    if (exec_start(c, conn_reply_to(conn, id), req->run, &err) < 0) {
        daemon_audit(conn->d, "exec.start", "fail", c, conn->actor, "%s", err.msg);
        conn_send_error(conn, id, err.code, "%s", err.msg);
    }
}

/* The audit log has been streamed: send its head, which the verifier checks the end against. */
static void audit_done(struct conn *conn, uint64_t req_id)
{
    Trustme__AuditEnd end = TRUSTME__AUDIT_END__INIT;
    end.has_head_seq = true;
    end.head_seq = conn->d->audit.seq;
    end.head_hash = conn->d->audit.hash;
    char anchored_hash[TM_SHA256_HEX_LEN + 1];
    uint64_t anchored_seq;
    const char *problem;
    if (audit_anchor_head(&anchored_seq, anchored_hash, &problem)) {
        end.has_anchored_seq = true;
        end.anchored_seq = anchored_seq;
        end.anchored_hash = anchored_hash;
    }
    end.anchor_problem = (char *)problem;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_AUDIT_END;
    resp.audit_end = &end;
    conn_send(conn, req_id, &resp);
}

/* Stream the file after `after` (a rotated file's name, or "" for the first): the rotated files
 * oldest first, then the log itself, then the head. The next file is looked up when the one before
 * ends, so a connection holds no list. */
static void audit_next(struct conn *conn, uint64_t req_id);

static void audit_stream_after(struct conn *conn, uint64_t req_id, const char *after)
{
    const char *log_path = conn->d->audit.path;
    char **names;
    size_t count;
    tm_err err;
    if (tm_audit_rotated_files(log_path, &names, &count, &err) < 0) {
        conn_send_error(conn, req_id, err.code, "%s", err.msg);
        return;
    }
    char next[64] = "";
    for (size_t i = 0; i < count; i++) {
        if (!next[0] && strcmp(names[i], after) > 0 && strlen(names[i]) < sizeof(next))
            snprintf(next, sizeof(next), "%s", names[i]);
        free(names[i]);
    }
    free(names);
    const char *base = strrchr(log_path, '/') ? strrchr(log_path, '/') + 1 : log_path;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%.*s%s", (int)(base - log_path), log_path, next[0] ? next : base);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        conn_send_error(conn, req_id, errno, "cannot open the audit log %s: %s", path, strerror(errno));
        return;
    }
    conn_stream_file(conn, req_id, fd, next[0] ? audit_next : audit_done);
    snprintf(conn->stream_name, sizeof(conn->stream_name), "%s", next[0] ? next : base);
}

static void audit_next(struct conn *conn, uint64_t req_id)
{
    char after[64];
    snprintf(after, sizeof(after), "%s", conn->stream_name);
    audit_stream_after(conn, req_id, after);
}

void cmd_audit(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    audit_stream_after(conn, id, "");
}

void cmd_logs(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->logs->id);
    if (!c)
        return;
    char dir[PATH_MAX], path[PATH_MAX + 32];
    container_run_dir(c, dir, sizeof(dir));
    bool previous = req->logs->has_previous && req->logs->previous;
    snprintf(path, sizeof(path), "%s/%s", dir, previous ? "console.log.1" : "console.log");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        conn_send_ok(conn, id); /* never started without --attach (or no earlier log): empty */
        return;
    }
    if (fd < 0) {
        conn_send_error(conn, id, errno, "cannot open %s: %s", path, strerror(errno));
        return;
    }
    conn_stream_file(conn, id, fd, conn_send_ok);
}

/* Session input: the request carries the id of the start/run request it belongs to. */
static struct session *session_for(struct conn *conn, uint64_t id)
{
    struct session *s = session_find(conn->d, conn->id, id);
    if (!s)
        conn_send_error(conn, id, ENOENT, "no session %llu on this connection", (unsigned long long)id);
    return s;
}

void cmd_stdin(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct session *s = session_for(conn, id);
    if (s)
        session_input(s, req->stdin->has_data ? req->stdin->data.data : NULL,
                      req->stdin->has_data ? req->stdin->data.len : 0, req->stdin->has_eof && req->stdin->eof);
}

void cmd_resize(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct session *s = session_for(conn, id);
    if (s)
        session_resize(s, req->resize->rows, req->resize->cols);
}

void cmd_signal(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct session *s = session_for(conn, id);
    if (!s)
        return;
    int sig = req->signal->has_signal ? req->signal->signal : 0;
    if (sig < 1 || sig >= NSIG) {
        conn_send_error(conn, id, EINVAL, "invalid signal %d", sig);
        return;
    }
    int pidfd = s->attach ? s->c->pidfd : s->pidfd;
    if (pidfd >= 0)
        syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* The request table (requests.c) says which of these handles which request, who may send it and
 * what it carries to wipe. */
void commands_wipe_secrets(Trustme__Request *req)
{
    requests_wipe_secrets(req);
}

void commands_dispatch(struct conn *conn, Trustme__Request *req)
{
    /* The role is the socket's (roles.c): checked before any handler sees the request. */
    if (!roles_permit(conn, req)) {
        commands_wipe_secrets(req);
        return;
    }
    const struct request_row *row = requests_row(req->body_case);
    if (row && row->handler) {
        row->handler(conn, req->id, req);
        commands_wipe_secrets(req);
        return;
    }
    conn_send_error(conn, req->id, EOPNOTSUPP,
                    "unknown request (body %d): is this client newer "
                    "than the daemon?",
                    (int)req->body_case);
}
