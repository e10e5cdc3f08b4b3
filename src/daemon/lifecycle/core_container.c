/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The core container c0 (device.json core_container, docs/ROLES.md): started first, always;
 * stopped last; restarted when it ends unasked, since it may be the only way in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "container.h"
#include "lc_state.h"
#include "lifecycle.h"
#include "log.h"
#include "core_container.h"
#include "tokens.h"

#define CORE_BACKOFF_MAX_S 60
/* A c0 that ran this long before it ended is restarted at once again (back-off reset). */
#define CORE_STABLE_S 60

/* The core container policy's state (d->core). */
struct core_state {
    bool others_pending; /* the other autostarts wait for c0's start to end */
    tm_source *restart_timer; /* c0 ended unasked: started again when this fires */
    unsigned backoff_s; /* the next restart's delay; doubles while c0 keeps dying */
    bool stop_requested; /* c0's current stop was asked for: no restart */
};

int core_init(struct daemon *d, tm_err *err)
{
    d->core = calloc(1, sizeof(*d->core));
    return d->core ? 0 : tm_err_set(err, ENOMEM, "out of memory");
}

bool core_is(const struct container *c)
{
    const char *name = c->d->device.core_container;
    return name[0] && strcmp(c->cfg->name, name) == 0;
}

static struct container *core_find(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (core_is(c))
            return c;
    return NULL;
}

int core_check(struct daemon *d, tm_err *err)
{
    const struct device_config *dev = &d->device;
    if (dev->admin_socket_in_root)
        return 0;
    /* Without an admin socket on the host, a missing or locked c0 would leave no way in at
     * all: better to refuse to run than to run unmanageable. */
    if (!dev->core_container[0])
        return tm_err_set(err, EINVAL,
                          "device.json: admin_socket_in_root is false but no "
                          "core_container is named: the device would have no admin socket");
    struct container *c = core_find(d);
    if (!c)
        return tm_err_set(err, ENOENT,
                          "device.json: admin_socket_in_root is false but the core "
                          "container \"%s\" does not exist: create it before removing the admin "
                          "socket from the root namespace",
                          dev->core_container);
    if (container_encrypted(c))
        return tm_err_set(err, EINVAL,
                          "device.json: admin_socket_in_root is false but the core "
                          "container %s has encrypted data: it needs its token's PIN to start, "
                          "and nobody could give it (its config must have \"token\": \"none\")",
                          c->cfg->name);
    return 0;
}

/* Start c0 unattended; false if it is not starting now. */
static bool start_core(struct container *c, const char *actor)
{
    struct daemon *d = c->d;
    if (container_encrypted(c)) {
        log_warn("%s: the core container is not started automatically: its data is encrypted "
                 "and needs its token's PIN (trustme start %s)",
                 container_label(c), c->cfg->name);
        daemon_audit(d, "container.autostart", "fail", c, actor, "%s",
                     "core container with encrypted data: needs the token's PIN");
        return false;
    }
    snprintf(c->actor, sizeof(c->actor), "%s", actor);
    struct start_args args = {0};
    tm_err err;
    if (container_fire(c, EV_START, &args, &err) < 0) {
        log_warn("%s: cannot start the core container: %s", container_label(c), err.msg);
        return false;
    }
    return c->state == CS_STARTING;
}

void core_autostart(struct daemon *d)
{
    struct container *c = core_find(d);
    if (d->device.core_container[0] && !c)
        log_warn("device.json names the core container \"%s\", which does not exist", d->device.core_container);
    if (c && c->state == CS_STOPPED && start_core(c, "autostart")) {
        d->core->others_pending = true; /* core_on_transition starts them */
        return;
    }
    daemon_autostart(d);
}

static void on_restart_timer(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    d->core->restart_timer = NULL;
    struct container *c = core_find(d);
    if (c && c->state == CS_STOPPED && !d->shutting_down)
        start_core(c, "core-restart");
}

static void schedule_restart(struct container *c)
{
    struct daemon *d = c->d;
    if (d->core->restart_timer || container_encrypted(c))
        return;
    bool stable = !c->lc->starting_failed && c->started_at && (uint64_t)time(NULL) - c->started_at >= CORE_STABLE_S;
    if (stable || !d->core->backoff_s)
        d->core->backoff_s = 1;
    unsigned delay = d->core->backoff_s;
    if (d->core->backoff_s < CORE_BACKOFF_MAX_S)
        d->core->backoff_s = d->core->backoff_s * 2 > CORE_BACKOFF_MAX_S ? CORE_BACKOFF_MAX_S : d->core->backoff_s * 2;
    const char *why = c->lc->starting_failed ? c->last_error : c->last_exit;
    log_warn("%s: the core container ended (%s); starting it again in %u s", container_label(c), why, delay);
    daemon_audit(d, "core.restart", "ok", c, "trustmed", "ended (%s); restart in %u s", why, delay);
    d->core->restart_timer = tm_loop_timer(d->loop, delay * 1000ull, on_restart_timer, d);
}

bool core_stops_last(const struct container *c)
{
    if (!core_is(c))
        return false;
    for (struct container *o = c->d->containers; o; o = o->next)
        if (o != c && state_is_active(o->state))
            return true;
    return false;
}

void core_on_transition(struct container *c, enum cstate old, enum cevent ev)
{
    struct daemon *d = c->d;
    if (!core_is(c)) {
        /* Shutdown: the last of the others has stopped, now c0 (begin_shutdown skipped it). */
        struct container *core = d->shutting_down && c->state == CS_STOPPED ? core_find(d) : NULL;
        if (core && state_is_active(core->state) && core->state != CS_STOPPING && !core_stops_last(core)) {
            struct stop_args args = {.timeout_s = STOP_TIMEOUT_DEFAULT_S};
            container_fire(core, EV_STOP, &args, NULL);
        }
        return;
    }
    if (ev == EV_START || ev == EV_STOP)
        d->core->stop_requested = ev == EV_STOP;
    if (d->core->others_pending && c->state != CS_STARTING) {
        d->core->others_pending = false;
        if (c->state == CS_STOPPED)
            log_warn("%s: the core container did not start; starting the others anyway", container_label(c));
        daemon_autostart(d);
    }
    /* Ended without a stop request (its init exited, was killed, or the start failed). */
    if (c->state == CS_STOPPED && old != CS_STOPPED && !d->core->stop_requested && !d->shutting_down)
        schedule_restart(c);
}

void core_free(struct daemon *d)
{
    if (!d->core)
        return;
    tm_source_free(d->core->restart_timer);
    free(d->core);
    d->core = NULL;
}

void daemon_autostart(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        if (!c->cfg->autostart || c->state != CS_STOPPED || core_is(c))
            continue;
        if (container_encrypted(c)) {
            /* Its data key needs the token's PIN, which nobody is there to give. */
            log_info("%s: not started automatically: its data is encrypted and needs its PIN "
                     "(trustme start %s)",
                     container_label(c), c->cfg->name);
            daemon_audit(d, "container.autostart", "fail", c, "autostart", "%s",
                         "encrypted data: needs the token's PIN");
            continue;
        }
        snprintf(c->actor, sizeof(c->actor), "autostart");
        struct start_args args = {0};
        tm_err err;
        if (container_fire(c, EV_START, &args, &err) < 0)
            log_warn("%s: autostart: %s", container_label(c), err.msg);
    }
}
