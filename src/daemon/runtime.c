#include "runtime.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "console.h"
#include "container.h"
#include "fileio.h"
#include "jsonutil.h"
#include "lifecycle.h"
#include "log.h"
#include "modules/cgroups.h"

static void runtime_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_run_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/runtime.json", dir);
}

int runtime_save(struct container *c, tm_err *err)
{
    char path[PATH_MAX + 16];
    runtime_path(c, path, sizeof(path));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "pid", json_object_new_int(c->pid));
    json_object_object_add(o, "starttime", json_object_new_int64((int64_t)c->starttime));
    json_object_object_add(o, "started_at", json_object_new_int64((int64_t)c->started_at));
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    /* Not durable on purpose: no process it describes survives a power cut. */
    int r = write_file_replace(path, s, strlen(s), 0600, err);
    json_object_put(o);
    return r;
}

void runtime_remove(struct container *c)
{
    char path[PATH_MAX + 16];
    runtime_path(c, path, sizeof(path));
    unlink(path);
}

static int runtime_load(struct container *c, pid_t *pid, unsigned long long *starttime,
                        uint64_t *started_at)
{
    char path[PATH_MAX + 16];
    runtime_path(c, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len;
    tm_err err;
    if (read_file(path, 4096, &data, &len, &err) < 0)
        return -ENOENT;
    json_object *o;
    if (tm_json_parse_object(data, len, &o, &err) < 0)
        return -EINVAL;
    int64_t p = 0, st = 0, sa = 0;
    int r = tm_json_get_int(o, "$", "pid", true, 1, INT32_MAX, &p, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "starttime", true, 0, INT64_MAX, &st, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "started_at", false, 0, INT64_MAX, &sa, &err);
    json_object_put(o);
    if (r < 0)
        return -EINVAL;
    *pid = (pid_t)p;
    *starttime = (unsigned long long)st;
    *started_at = (uint64_t)sa;
    return 0;
}

void runtime_recover(struct container *c)
{
    struct daemon *d = c->d;
    pid_t pid;
    unsigned long long starttime;
    uint64_t started_at;
    if (runtime_load(c, &pid, &starttime, &started_at) < 0) {
        /* No record of a running init: anything still in the cgroups is a leftover of a start
         * that trustmed did not live to finish. */
        int n = cgroups_count_tasks(d, c->uuid);
        if (n > 0) {
            log_warn("%s: killing %d process(es) left from an interrupted start", container_label(c), n);
            daemon_audit(d, "container.cleanup", "ok", c, "trustmed",
                         "killed %d process(es) of an interrupted start", n);
        }
        cgroups_destroy(d, c->uuid);
        runtime_remove(c);
        return;
    }
    /* Same pid, same start time, still in the container's cgroup: the very same init. */
    if (proc_starttime(pid) == starttime && cgroups_contains(d, c->uuid, pid)) {
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        tm_err err;
        if (pidfd >= 0 && container_watch_init(c, pid, pidfd, &err) == 0) {
            if (console_reopen(c, &err) < 0)
                log_warn("%s: %s (its output is lost until its next start)", container_label(c), err.msg);
            c->adopted = true;
            c->started_at = started_at;
            /* Restoring the state found, not a transition: nothing is done to the container. */
            c->state = cgroups_is_frozen(c) > 0 ? CS_FROZEN : CS_RUNNING;
            log_info("%s: re-adopted running init pid %d", container_label(c), pid);
            daemon_audit(d, "container.adopt", "ok", c, "trustmed", "init pid %d, %s", pid,
                         state_name(c->state));
            return;
        }
        if (pidfd >= 0)
            close(pidfd);
    }
    log_warn("%s: init (pid %d) ended while trustmed was not running; cleaning up", container_label(c), pid);
    cgroups_destroy(d, c->uuid);
    runtime_remove(c);
    snprintf(c->last_exit, sizeof(c->last_exit), "ended while trustmed was not running");
    c->exit_code = -1;
    tm_err err;
    container_save_state(c, &err);
    daemon_audit(d, "container.stop", "ok", c, "trustmed", "init %s", c->last_exit);
}
