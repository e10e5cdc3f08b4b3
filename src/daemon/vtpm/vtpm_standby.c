/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The standby trustme-vtpm (docs/VTPM.md "The standby"). A start used to create trustme-vtpm's
 * process (exec, the dynamic linking of libcrypto, libtpms and nettle: about 13 ms of CPU on a
 * 2-core device) while its own setup process ran. Now, once a container's run has ended and its
 * state is anchored (and for every stopped vTPM container after trustmed's start), trustmed
 * launches the next run's trustme-vtpm at once, exactly as a start does (the vTPM's uid, no
 * capabilities, no key, no state), at SCHED_IDLE and one container at a time, and the next start
 * takes it. It holds nothing a start has not given it: the key, the state and the events come
 * only at that start, after the anchor check (vtpm_deliver). */
#include "vtpm_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "log.h"
#include "reaper.h"

/* One launch at a time: the next container's standby once this one waits for its key (or ended),
 * so that trustmed's own start, with many stopped containers, spawns no burst of processes. */
static tm_source *launch_timer;
static struct vtpm *launching;

/* Stopped, its last run's state anchored, no start under way, and a vTPM it may have. */
static bool at_rest(const struct vtpm *v)
{
    const struct container *c = v->c;
    tm_err err = {0};
    return c->cfg->vtpm && c->state == CS_STOPPED && !v->done && !v->start_queued && !c->d->shutting_down &&
           vtpm_check(c, &err) == 0;
}

static void kick(struct daemon *d);

static void on_launch_timer(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    launch_timer = NULL;
    if (launching || d->shutting_down)
        return;
    for (struct container *c = d->containers; c; c = c->next) {
        struct vtpm *v = c->vtpm;
        if (!v || !v->want_standby || v->pid || v->anchoring)
            continue; /* (a vTPM still stopping or anchoring asks again when it is done) */
        v->want_standby = false;
        if (!at_rest(v))
            continue;
        tm_err err = {0};
        v->standby = true;
        if (vtpm_launch(v, &err) < 0) {
            v->standby = false;
            log_info("%s: no standby trustme-vtpm: %s", container_label(c), err.msg);
            continue;
        }
        launching = v;
        log_debug("%s: standby trustme-vtpm launched (pid %d)", container_label(c), (int)v->pid);
        return;
    }
}

static void kick(struct daemon *d)
{
    if (!launch_timer && !launching && !d->shutting_down)
        launch_timer = tm_loop_timer(d->loop, 0, on_launch_timer, d);
}

void vtpm_standby_want(struct vtpm *v)
{
    if (v->c->d->shutting_down)
        return;
    v->want_standby = true;
    kick(v->c->d);
}

/* It waits for its key, it was taken, or it ended: the next one may be launched. */
void vtpm_standby_settled(struct vtpm *v)
{
    if (launching != v)
        return;
    launching = NULL;
    kick(v->c->d);
}

/* Whether this standby is still one for c's next start; why not. */
static const char *stale(const struct vtpm *v)
{
    const struct container *c = v->c;
    struct pollfd p = {.fd = v->pidfd, .events = POLLIN};
    if (v->pidfd < 0 || poll(&p, 1, 0) != 0)
        return "it ended";
    uid_t uid = 0;
    tm_err err = {0};
    if (!c->cfg->vtpm || vtpm_uid(c, &uid, &err) < 0 || uid != v->launched_uid)
        return "the vTPM's uid changed";
    char dir[PATH_MAX + 8];
    struct stat st;
    vtpm_state_dir(c, dir, sizeof(dir));
    if (stat(dir, &st) < 0 || st.st_dev != v->launched_dev || st.st_ino != v->launched_state_ino)
        return "its state directory was replaced";
    vtpm_run_dir(c, dir, sizeof(dir));
    if (stat(dir, &st) < 0 || st.st_ino != v->launched_run_ino)
        return "its run directory was replaced";
    /* An update of trustme-vtpm, libtpms or OpenSSL since its launch: the start must run the new
     * code, not the code the standby mapped (a file replaced shows as "(deleted)"). */
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)v->pid);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return "its mappings cannot be read";
    while (fgets(line, sizeof(line), f)) {
        char *slash = strchr(line, '/');
        if (slash && strncmp(slash, "/memfd:", 7) != 0 && strstr(slash, " (deleted)"))
            return "a file it runs (trustme-vtpm or a library) was replaced since its launch";
    }
    return NULL;
}

void vtpm_standby_take(struct vtpm *v)
{
    if (!v->standby)
        return;
    const char *why = stale(v);
    if (why) {
        log_info("%s: its standby trustme-vtpm (pid %d) is not used: %s; a new one is started", container_label(v->c),
                 (int)v->pid, why);
        vtpm_standby_drop(v);
        return;
    }
    v->standby = false;
    vtpm_standby_settled(v);
    /* From here it is this start's vTPM: the scheduling of any start, not the standby's idle one. */
    struct sched_param sp = {0};
    if (sched_setscheduler(v->pid, SCHED_OTHER, &sp) < 0)
        log_warn("%s: the vTPM (pid %d) keeps SCHED_IDLE: %s", container_label(v->c), (int)v->pid, strerror(errno));
    log_debug("%s: the start takes its standby trustme-vtpm (pid %d)", container_label(v->c), (int)v->pid);
}

/* Away with a trustme-vtpm that has no key (a standby, or one launched ahead of a start): killed
 * at once and reaped whenever it ends, so that a new one may be launched right away. It has read
 * nothing and written nothing: nothing to save or anchor. */
void vtpm_standby_drop(struct vtpm *v)
{
    if (!v->pid || v->delivered || v->adopted)
        return;
    vtpm_standby_settled(v);
    v->standby = v->waiting = false;
    tm_source_free(v->pid_src);
    v->pid_src = NULL;
    tm_source_free(v->ready_src);
    v->ready_src = NULL;
    close_and_reset(v->ready_fd);
    close_and_reset(v->ev_fd);
    vtpm_withdraw(v);
    vtpm_close_report(v);
    if (v->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
        reaper_take_pidfd(v->c->d, v->pidfd);
        v->pidfd = -1;
    }
    v->pid = 0;
}
