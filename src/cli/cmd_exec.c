/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme exec list|kill: commands started by trustme run, also those whose CLI is gone
 * (docs/CLI.md). */
#include <ctype.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json_cleanup.h"
#include "jsonutil.h"

/* A command name as the daemon sent it, with control bytes shown as '?'. */
static void print_clean(const char *s)
{
    for (; s && *s; s++)
        putchar(iscntrl((unsigned char)*s) ? '?' : *s);
}

static int parse_signal(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (*s && !*end)
        return n > 0 && n < NSIG ? (int)n : -1;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (int i = 1; i < NSIG; i++)
        if (sigabbrev_np(i) && strcasecmp(s, sigabbrev_np(i)) == 0)
            return i;
    return -1;
}

int cmd_exec_list(struct cli *cli, const struct cli_args *a)
{
    const char *name = a->argv[0];
    Trustme__ExecListRequest lr = TRUSTME__EXEC_LIST_REQUEST__INIT;
    lr.id = (char *)name;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_EXEC_LIST;
    req.exec_list = &lr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    if (resp->body_case != TRUSTME__RESPONSE__BODY_EXEC_LIST) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("unexpected reply from trustmed");
    }
    const Trustme__ExecList *l = resp->exec_list;
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l->n_sessions; i++) {
            const Trustme__ExecInfo *e = l->sessions[i];
            json_t *o = json_object();
            json_object_set_new(o, "session", json_integer((int64_t)e->session));
            json_object_set_new(o, "pid", json_integer(e->pid));
            json_object_set_new(o, "command", tm_json_text(e->command ? e->command : ""));
            json_object_set_new(o, "started_at", json_integer((int64_t)e->started_at));
            json_object_set_new(o, "orphaned", json_boolean(e->orphaned));
            json_object_set_new(o, "tty", json_boolean(e->tty));
            json_object_set_new(o, "actor", tm_json_text(e->actor ? e->actor : ""));
            json_array_append_new(arr, o);
        }
        json_dumpf(arr, stdout, JSON_FORMAT_FLAGS);
        putchar('\n');
        json_decref(arr);
    } else {
        printf("%-8s %-8s %-20s %-9s %s\n", "SESSION", "PID", "STARTED", "CLIENT", "COMMAND");
        for (size_t i = 0; i < l->n_sessions; i++) {
            const Trustme__ExecInfo *e = l->sessions[i];
            char started[32] = "-";
            time_t t = (time_t)e->started_at;
            if (t)
                strftime(started, sizeof(started), "%Y-%m-%d %H:%M:%S", localtime(&t));
            printf("%-8llu %-8d %-20s %-9s ", (unsigned long long)e->session, e->pid, started,
                   e->orphaned ? "orphaned" : "attached");
            print_clean(e->command);
            printf("%s\n", e->tty ? " (tty)" : "");
        }
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_exec_kill(struct cli *cli, const struct cli_args *a)
{
    const char *name = a->argv[0], *session = a->argv[1];
    /* "-9" as well as "9", "KILL" or "SIGKILL" (the verb takes options first: a "-9" after
     * the container is an argument) */
    const char *signame = a->argc > 2 ? a->argv[2] + (a->argv[2][0] == '-') : NULL;
    char *end;
    unsigned long long number = strtoull(session, &end, 10);
    int sig = signame ? parse_signal(signame) : SIGTERM;
    if (!*session || *end || session[0] == '-')
        return cli_usage_error(a->verb, "SESSION is a number, not %s", session);
    if (sig < 0)
        return cli_usage_error(a->verb, "no signal %s", signame);
    Trustme__ExecKillRequest kr = TRUSTME__EXEC_KILL_REQUEST__INIT;
    kr.id = (char *)name;
    kr.has_session = kr.has_signal = true;
    kr.session = number;
    kr.signal = sig;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_EXEC_KILL;
    req.exec_kill = &kr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("SIG%s sent to exec session %llu of %s\n", sigabbrev_np(sig), number, name);
    return 0;
}
