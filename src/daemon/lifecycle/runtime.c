/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "lc_state.h"
#include "console.h"
#include "container.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "lifecycle.h"
#include "guestos.h"
#include "log.h"
#include "cgroups.h"

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
    _cleanup_json_ json_t *o = json_object();
    json_object_set_new(o, "pid", json_integer(c->pid));
    json_object_set_new(o, "starttime", json_integer((int64_t)c->lc->starttime));
    json_object_set_new(o, "started_at", json_integer((int64_t)c->started_at));
    json_object_set_new(o, "userns_dev", json_integer((int64_t)c->lc->userns_dev));
    json_object_set_new(o, "userns_ino", json_integer((int64_t)c->lc->userns_ino));
    /* What it runs: a re-adopted container keeps its GuestOS version from being removed. */
    json_object_set_new(o, "guestos_version", json_integer((int64_t)c->guestos_version));
    _cleanup_free_ char *s = json_dumps(o, JSON_FORMAT_FLAGS);
    /* Not durable on purpose: no process it describes survives a power cut. */
    return s ? write_file_replace(path, s, strlen(s), 0600, err) : tm_err_set(err, ENOMEM, "out of memory");
}

void runtime_remove(struct container *c)
{
    char path[PATH_MAX + 16];
    runtime_path(c, path, sizeof(path));
    unlink(path);
}

static int runtime_load(struct container *c, pid_t *pid, unsigned long long *starttime, uint64_t *started_at)
{
    int64_t dev = 0, ino = 0;
    char path[PATH_MAX + 16];
    runtime_path(c, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len;
    tm_err err;
    if (read_file(path, 4096, &data, &len, &err) < 0)
        return -ENOENT;
    json_t *o;
    if (tm_json_parse_object(data, len, &o, &err) < 0)
        return -EINVAL;
    int64_t p = 0, st = 0, sa = 0;
    int r = tm_json_get_int(o, "$", "pid", true, 1, INT32_MAX, &p, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "starttime", true, 0, INT64_MAX, &st, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "started_at", false, 0, INT64_MAX, &sa, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "userns_dev", false, 0, INT64_MAX, &dev, &err);
    if (r >= 0)
        r = tm_json_get_int(o, "$", "userns_ino", false, 0, INT64_MAX, &ino, &err);
    int64_t gv = 0;
    if (r >= 0)
        r = tm_json_get_int(o, "$", "guestos_version", false, 0, INT64_MAX, &gv, &err);
    json_decref(o);
    c->guestos_version = (uint64_t)gv;
    c->lc->userns_dev = (unsigned long long)dev;
    c->lc->userns_ino = (unsigned long long)ino;
    if (r < 0)
        return -EINVAL;
    *pid = (pid_t)p;
    *starttime = (unsigned long long)st;
    *started_at = (uint64_t)sa;
    return 0;
}

/* The container's own user namespace, opened through one of its processes that is still in it
 * (init first; it may have moved into a nested one). -1 if none is. */
static int find_userns(struct container *c, pid_t init)
{
    int pids[256];
    int n = cgroups_list_tasks(c->d, c->uuid, pids, (int)ARRAY_SIZE(pids));
    for (int i = -1; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/user", i < 0 ? init : pids[i]);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == c->lc->userns_dev && st.st_ino == c->lc->userns_ino)
            return steal_fd(fd);
    }
    return -1;
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
            daemon_audit(d, "container.cleanup", "ok", c, "trustmed", "killed %d process(es) of an interrupted start",
                         n);
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
            if (c->cfg->user_namespace && (c->lc->userns_fd = find_userns(c, pid)) < 0)
                log_warn("%s: none of its processes is in its own user namespace any more: "
                         "commands cannot be run in it until it is restarted",
                         container_label(c));
            c->lc->adopted = true;
            c->started_at = started_at;
            /* Exec sessions get the environment of the GuestOS version it runs. */
            const struct guestos *g =
                c->cfg->guestos[0] && c->guestos_version ? guestos_find(d, c->cfg->guestos, c->guestos_version) : NULL;
            tm_err gerr;
            if (g && guestos_apply(c->cfg, g->cfg, &gerr) < 0)
                log_warn("%s: %s", container_label(c), gerr.msg);
            /* Restoring the state found, not a transition: nothing is done to the container. */
            c->state = cgroups_is_frozen(c) > 0 ? CS_FROZEN : CS_RUNNING;
            log_info("%s: re-adopted running init pid %d", container_label(c), pid);
            daemon_audit(d, "container.adopt", "ok", c, "trustmed", "init pid %d, %s", pid, state_name(c->state));
            return;
        }
        if (pidfd >= 0)
            close(pidfd);
    }
    log_warn("%s: init (pid %d) ended while trustmed was not running; cleaning up", container_label(c), pid);
    if (started_at) /* the start it records is the last one, and state.json is saved below */
        c->started_at = started_at;
    cgroups_destroy(d, c->uuid);
    runtime_remove(c);
    snprintf(c->last_exit, sizeof(c->last_exit), "ended while trustmed was not running");
    c->exit_code = -1;
    tm_err err;
    container_save_state(c, &err);
    daemon_audit(d, "container.stop", "ok", c, "trustmed", "init %s", c->last_exit);
}
