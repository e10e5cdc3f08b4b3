/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Alerts (docs/FLEET.md "Alerts"): a row in the alerts table, and the operator's command. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "log.h"

extern char **environ;

static void run_command(const char *command, const char *kind, const char *device, const char *message)
{
    /* The environment is built before fork: a worker has threads (--threads), and the child may
     * only call async-signal-safe functions until it execs. */
    size_t n = 0;
    while (environ[n])
        n++;
    _cleanup_free_ char **envp = calloc(n + 4, sizeof(*envp));
    _cleanup_free_ char *e_kind = NULL, *e_device = NULL, *e_message = NULL;
    if (!envp || asprintf(&e_kind, "FLEET_ALERT_KIND=%s", kind) < 0 ||
        asprintf(&e_device, "FLEET_ALERT_DEVICE=%s", device ? device : "") < 0 ||
        asprintf(&e_message, "FLEET_ALERT_MESSAGE=%s", message) < 0) {
        log_warn("alert command: out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FLEET_ALERT_", 12) != 0)
            envp[k++] = environ[i];
    envp[k++] = e_kind;
    envp[k++] = e_device;
    envp[k++] = e_message;
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    /* Not waited for: the caller ignores SIGCHLD, so the child is reaped by the kernel, and a
     * slow webhook does not hold up verification. */
    pid_t pid = fork();
    if (pid < 0) {
        log_warn("alert command: fork: %m");
        return;
    }
    if (pid == 0) {
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
}

void fleet_alert(PGconn *c, const char *command, const char *kind, const char *device, const char *message)
{
    tm_err err = {0};
    if (FLEET_EXEC(c, NULL, &err, "INSERT INTO alerts (kind, device, message) VALUES ($1, $2, $3)", kind, device,
                   message) < 0)
        log_warn("alert %s not recorded: %s", kind, err.msg);
    log_warn("alert %s: %s", kind, message);
    if (command && *command)
        run_command(command, kind, device, message);
}

void fleet_alert_limited(PGconn *c, const char *command, const char *kind, const char *device, const char *message,
                         int window_s)
{
    _cleanup_res_ PGresult *res = NULL;
    tm_err err = {0};
    char win[16];
    snprintf(win, sizeof(win), "%d", window_s);
    if (FLEET_EXEC(c, &res, &err,
                   "INSERT INTO alerts (kind, device, message) SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM "
                   "alerts WHERE kind = $1 AND device = $2 AND at > now() - make_interval(secs => $4::int)) "
                   "RETURNING id",
                   kind, device, message, win) < 0) {
        log_warn("alert %s not recorded: %s", kind, err.msg);
        return;
    }
    if (PQntuples(res) == 0)
        return; /* raised within the window already */
    log_warn("alert %s: %s", kind, message);
    if (command && *command)
        run_command(command, kind, device, message);
}

/* Each UPDATE marks the rows it alerts for, so of several processes sweeping at once exactly
 * one alerts for each; the mark is cleared when the thing recovers. */
int fleet_sweep(PGconn *c, const char *command, tm_err *err)
{
    _cleanup_res_ PGresult *missing = NULL;
    int r = fleet_exec(c, &missing, err,
                       "UPDATE devices d SET missing_alerted_at = now() FROM device_groups g "
                       "WHERE g.id = d.group_id AND d.missing_alerted_at IS NULL "
                       "AND coalesce(d.last_seen, d.enrolled_at) < now() - make_interval(secs => 2 * g.interval_s) "
                       "RETURNING d.name, coalesce(to_char(d.last_seen, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'never')",
                       0, NULL);
    if (r < 0)
        return r;
    for (int i = 0; i < PQntuples(missing); i++) {
        char msg[256];
        snprintf(msg, sizeof(msg), "device %s missed two intervals (last seen: %s)", PQgetvalue(missing, i, 0),
                 PQgetvalue(missing, i, 1));
        fleet_alert(c, command, "device-missing", PQgetvalue(missing, i, 0), msg);
    }
    /* A pull device whose work is an interval overdue and not held by a live claim: no worker
     * is doing it (all dead, or overloaded). */
    _cleanup_res_ PGresult *overdue = NULL;
    r = fleet_exec(c, &overdue, err,
                   "UPDATE work w SET overdue_alerted_at = now() FROM devices d JOIN device_groups g ON "
                   "g.id = d.group_id WHERE d.id = w.device_id AND d.address IS NOT NULL "
                   "AND w.overdue_alerted_at IS NULL AND w.due_at < now() - make_interval(secs => g.interval_s) "
                   "AND (w.claimed_until IS NULL OR w.claimed_until < now()) RETURNING d.name",
                   0, NULL);
    if (r < 0)
        return r;
    for (int i = 0; i < PQntuples(overdue); i++) {
        char msg[256];
        snprintf(msg, sizeof(msg), "no verifier did the work of device %s for an interval past its due time",
                 PQgetvalue(overdue, i, 0));
        fleet_alert(c, command, "work-overdue", PQgetvalue(overdue, i, 0), msg);
    }
    _cleanup_res_ PGresult *workers = NULL;
    r = fleet_exec(c, &workers, err,
                   "UPDATE workers SET missing_alerted_at = now() WHERE missing_alerted_at IS NULL "
                   "AND heartbeat < now() - interval '30 seconds' RETURNING name",
                   0, NULL);
    if (r < 0)
        return r;
    for (int i = 0; i < PQntuples(workers); i++) {
        char msg[256];
        snprintf(msg, sizeof(msg), "verifier worker %s stopped working (no heartbeat for 30 s)",
                 PQgetvalue(workers, i, 0));
        fleet_alert(c, command, "worker-missing", NULL, msg);
    }
    return 0;
}
