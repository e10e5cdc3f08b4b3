/* Measuring a container start, and the GuestOS anti-rollback counters (docs/ATTESTATION.md).
 *
 * Before a start uses anything, its GuestOS's guestos.json, each image (with the hash the signed
 * guestos.json declares; module_volume then refuses an image whose content differs) and the
 * container's config are extended into the runtime PCR. In the same batch the GuestOS's TPM
 * counter is raised to the newest version in the store, which fails when the TPM records a
 * higher one: the store was rolled back. tpmd answers in order: the counter first, then the
 * measurements. */
#include "measure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "container.h"
#include "guestos.h"
#include "lifecycle.h"
#include "state.h"
#include "log.h"
#include "measurement.h"
#include "tpmd_client.h"

struct measure_op {
    struct container *c;
    measure_done_fn done;
    bool counter_failed;
    tm_err counter_err;
    char guestos[CONFIG_NAME_MAX + 1];
    char names[TPMD_MEASURE_MAX][TM_EVENT_NAME_MAX + 1];
};

static void on_counter(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                       void *userdata)
{
    struct measure_op *op = userdata;
    if (!err)
        return;
    op->counter_failed = true;
    if (err->code == ESTALE)
        tm_err_set(&op->counter_err, ESTALE, "GuestOS %s: the newest version in the store is older "
                   "than the TPM records as installed (%s): the data dir was restored from an older "
                   "copy; install the current version again", op->guestos, err->msg);
    else
        tm_err_set(&op->counter_err, err->code, "GuestOS %s: the TPM's anti-rollback counter: %s",
                   op->guestos, err->msg);
}

static void on_measured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                        void *userdata)
{
    struct measure_op *op = userdata;
    struct container *c = op->c;
    c->measure = NULL;
    tm_err e = {0};
    if (op->counter_failed)
        e = op->counter_err;
    else if (err)
        tm_err_set(&e, err->code, "measuring it into the TPM failed: %s", err->msg);
    measure_done_fn done = op->done;
    free(op);
    done(c, e.code ? &e : NULL);
}

static int counter_raise(struct daemon *d, const char *name, uint64_t version, tpmd_reply_fn fn,
                         void *userdata, tm_err *err)
{
    Trustme__Tpmd__CounterRaise cr = TRUSTME__TPMD__COUNTER_RAISE__INIT;
    cr.name = (char *)name;
    cr.has_value = true;
    cr.value = version;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_COUNTER_RAISE;
    req.counter_raise = &cr;
    return tpmd_call(d, &req, fn, userdata, err);
}

/* The events of a start of c on g: guestos.json, each image, the container config. names holds
 * the event names the items point to. */
static size_t start_items(const struct container *c, const struct guestos *g,
                          struct tm_event_item items[TPMD_MEASURE_MAX],
                          char names[TPMD_MEASURE_MAX][TM_EVENT_NAME_MAX + 1])
{
    unsigned pcr = c->d->device.runtime_pcr;
    size_t n = 0;
    if (g) {
        char base[CONFIG_NAME_MAX + 32];
        snprintf(base, sizeof(base), "%s-%llu", g->cfg->name, (unsigned long long)g->cfg->version);
        snprintf(names[n], TM_EVENT_NAME_MAX + 1, "%s/guestos.json", base);
        items[n] = (struct tm_event_item){pcr, TM_EVENT_GUESTOS_CONFIG, names[n], {0}};
        memcpy(items[n++].sha256, g->json_sha256, 32);
        for (size_t i = 0; i < g->cfg->nmounts && n < TPMD_MEASURE_MAX - 1; i++) {
            const struct guestos_mount *m = &g->cfg->mounts[i];
            if (!m->image[0])
                continue;
            snprintf(names[n], TM_EVENT_NAME_MAX + 1, "%s/%s", base, m->image);
            items[n] = (struct tm_event_item){pcr, TM_EVENT_GUESTOS_IMAGE, names[n], {0}};
            memcpy(items[n++].sha256, m->sha256, 32);
        }
    }
    items[n] = (struct tm_event_item){pcr, TM_EVENT_CONTAINER_CONFIG, c->cfg->name, {0}};
    tm_sha256(c->config_json, c->config_len, items[n++].sha256);
    return n;
}

int measure_start(struct container *c, const struct guestos *g, measure_done_fn done, tm_err *err)
{
    struct daemon *d = c->d;
    struct measure_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    *op = (struct measure_op){.c = c, .done = done};
    struct tm_event_item items[TPMD_MEASURE_MAX];
    int r;
    if (g) {
        /* The counter holds the newest version ever installed; an older version pinned by a
         * container may run while a newer one is in the store. A store whose newest version is
         * below the counter was rolled back: nothing on that GuestOS starts. */
        const struct guestos *newest = guestos_find(d, g->cfg->name, 0);
        snprintf(op->guestos, sizeof(op->guestos), "%s", g->cfg->name);
        if ((r = counter_raise(d, g->cfg->name, newest ? newest->cfg->version : g->cfg->version,
                               on_counter, op, err)) < 0) {
            free(op);
            return tm_err_prefix(err, "checking GuestOS %s's anti-rollback counter", g->cfg->name);
        }
    }
    size_t n = start_items(c, g, items, op->names);
    if ((r = tpmd_measure(d, items, n, on_measured, op, err)) < 0) {
        tpmd_forget(d, op); /* the counter request, if it went out */
        free(op);
        return tm_err_prefix(err, "measuring it into the TPM");
    }
    c->measure = op;
    return 0;
}

/* ---- after a TPM reset ------------------------------------------------------------------------ */

struct remeasure_op {
    char name[CONFIG_NAME_MAX + 1];
    char names[TPMD_MEASURE_MAX][TM_EVENT_NAME_MAX + 1];
};

static void on_remeasured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                          void *userdata)
{
    struct remeasure_op *op = userdata;
    struct container *c = container_find(d, op->name);
    if (!err) {
        /* Without a reset tpmd already held every event and added none: nothing to say. */
        if (resp->measured && resp->measured->added)
            daemon_audit(d, "tpm.remeasure", "ok", c, "trustmed", "measured again after a TPM "
                         "reset (%u events)", resp->measured->added);
    } else if (c && state_is_active(c->state)) {
        /* Running unmeasured would hide it from every verifier: stop it instead. */
        log_error("container %s: measuring it again failed (%s): stopping it", op->name, err->msg);
        daemon_audit(d, "tpm.remeasure", "fail", c, "trustmed", "%s; stopping the container",
                     err->msg);
        struct stop_args stop = {.timeout_s = STOP_TIMEOUT_DEFAULT_S};
        tm_err e;
        if (container_fire(c, EV_STOP, &stop, &e) < 0)
            log_error("container %s: cannot stop it: %s", op->name, e.msg);
    }
    free(op);
}

void measure_running(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        /* A start still waiting for its own measurement gets it from the new tpmd's queue. */
        if (!state_is_active(c->state) || c->measure)
            continue;
        const struct guestos *g = NULL;
        if (c->cfg->guestos[0] && !(g = guestos_find(d, c->cfg->guestos, c->guestos_version))) {
            log_error("container %s: its GuestOS %s-%llu is gone, it cannot be measured again",
                      c->cfg->name, c->cfg->guestos, (unsigned long long)c->guestos_version);
        }
        struct remeasure_op *op = calloc(1, sizeof(*op));
        if (!op) {
            log_error("container %s: out of memory measuring it again", c->cfg->name);
            continue;
        }
        snprintf(op->name, sizeof(op->name), "%s", c->cfg->name);
        struct tm_event_item items[TPMD_MEASURE_MAX];
        size_t n = start_items(c, g, items, op->names);
        tm_err err;
        if (tpmd_measure(d, items, n, on_remeasured, op, &err) < 0) {
            log_error("container %s: cannot measure it again: %s", c->cfg->name, err.msg);
            free(op);
        }
    }
}

void measure_forget(struct container *c)
{
    if (!c->measure)
        return;
    tpmd_forget(c->d, c->measure);
    free(c->measure);
    c->measure = NULL;
}

/* ---- GuestOS installs ------------------------------------------------------------------------ */

int measure_counter_get(struct daemon *d, const char *name, tpmd_reply_fn fn, void *userdata,
                        tm_err *err)
{
    Trustme__Tpmd__CounterGet cg = TRUSTME__TPMD__COUNTER_GET__INIT;
    cg.name = (char *)name;
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_COUNTER_GET;
    req.counter_get = &cg;
    return tpmd_call(d, &req, fn, userdata, err);
}

int measure_counter_verdict(const Trustme__Tpmd__Response *resp, const tm_err *err,
                            const char *name, uint64_t version, tm_err *out)
{
    if (err)
        return tm_err_set(out, err->code, "cannot read GuestOS %s's anti-rollback counter from "
                          "the TPM: %s", name, err->msg);
    if (!resp->counter || !resp->counter->has_value)
        return tm_err_set(out, EPROTO, "the TPM service answered without a counter value");
    if (resp->counter->value > version)
        return tm_err_set(out, ESTALE, "GuestOS %s version %llu is older than version %llu, which "
                          "this device's TPM records as installed: a downgrade is refused", name,
                          (unsigned long long)version, (unsigned long long)resp->counter->value);
    return 0;
}

static void on_raised(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                      void *userdata)
{
    if (err)
        log_error("GuestOS installed, but its anti-rollback counter was not raised: %s (the next "
                  "start of a container on it raises it)", err->msg);
}

void measure_guestos_installed(struct daemon *d, const char *name, uint64_t version)
{
    tm_err err;
    if (counter_raise(d, name, version, on_raised, NULL, &err) < 0)
        log_error("GuestOS %s installed, but its anti-rollback counter was not raised: %s", name,
                  err.msg);
}
