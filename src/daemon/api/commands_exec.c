/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme exec list / kill (docs/PROTOCOL.md). A command whose CLI was killed keeps running
 * (as after a dropped ssh connection) with nobody to signal it: these reach it again. Admin
 * role only (roles.c); a session is named by its container and its number, so a request about
 * one container never touches another's. */
#include "commands_exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "commands.h"
#include "container.h"
#include "session.h"

/* The command's pid in its own pid namespace (the last NSpid entry), or 0. */
static int32_t inner_pid(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int32_t inner = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "NSpid:", 6) == 0) {
            char *last = strrchr(line, '\t');
            inner = last ? (int32_t)atoi(last + 1) : 0;
            break;
        }
    fclose(f);
    return inner;
}

void cmd_exec_list(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct container *c = commands_lookup(conn, id, req->exec_list->id);
    if (!c)
        return;
    size_t n = 0;
    for (struct session *s = container_sessions(c); s; s = s->next)
        n += !s->attach;
    _cleanup_free_ Trustme__ExecInfo *infos = calloc(n ? n : 1, sizeof(*infos));
    _cleanup_free_ Trustme__ExecInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!infos || !ptrs) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return;
    }
    size_t i = 0;
    for (struct session *s = container_sessions(c); s; s = s->next) {
        if (s->attach)
            continue;
        Trustme__ExecInfo *e = &infos[i];
        trustme__exec_info__init(e);
        e->has_session = e->has_pid = e->has_started_at = e->has_orphaned = e->has_tty = true;
        e->session = s->number;
        e->pid = s->pid ? inner_pid(s->pid) : 0;
        e->command = s->what;
        e->started_at = s->started_at;
        e->orphaned = s->conn_id == 0;
        e->tty = s->tty;
        e->actor = s->actor;
        ptrs[i++] = e;
    }
    Trustme__ExecList list = TRUSTME__EXEC_LIST__INIT;
    list.n_sessions = i;
    list.sessions = ptrs;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_EXEC_LIST;
    resp.exec_list = &list;
    conn_send(conn, id, &resp);
}

void cmd_exec_kill(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__ExecKillRequest *rq = req->exec_kill;
    struct container *c = commands_lookup(conn, id, rq->id);
    if (!c)
        return;
    int sig = rq->has_signal ? rq->signal : SIGTERM;
    if (sig < 1 || sig >= NSIG) {
        conn_send_error(conn, id, EINVAL, "invalid signal %d", sig);
        return;
    }
    struct session *s = container_sessions(c);
    while (s && (s->attach || !rq->has_session || s->number != rq->session))
        s = s->next;
    if (!s || s->pidfd < 0) {
        conn_send_error(conn, id, ENOENT, "%s has no exec session %llu (see trustme exec list %s)", c->cfg->name,
                        (unsigned long long)rq->session, c->cfg->name);
        return;
    }
    int r = (int)syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0);
    int e = errno;
    daemon_audit(conn->d, "exec.kill", r < 0 ? "fail" : "ok", c, conn->actor, "session %llu (%s): SIG%s%s%s",
                 (unsigned long long)s->number, s->what, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", r < 0 ? ": " : "",
                 r < 0 ? strerror(e) : "");
    if (r < 0)
        conn_send_error(conn, id, e, "cannot signal exec session %llu: %s", (unsigned long long)s->number, strerror(e));
    else
        conn_send_ok(conn, id);
}
