/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Measuring a container start, after checking its anchored state (docs/ATTESTATION.md).
 *
 * A start first checks that its GuestOS's signer is not revoked (guestos_revocation.c: cached,
 * so normally without a round trip). Then it asks tpmd's anchor table for its GuestOS's entry ("guestos/<name>": the highest
 * version installed and its owner) and its config's ("config/<uuid>": the highest config_version
 * accepted). A store whose newest version is below the anchored one, or a config below its
 * anchored version, was rolled back: the start is refused, naming which. A store or config above
 * its anchor (a crash between an install and its anchor, or state from before the anchor table)
 * is anchored now. Then the GuestOS's guestos.json, each image (with the hash the signed
 * guestos.json declares; module_volume then refuses an image whose content differs) and the
 * container's config are extended into the runtime PCR before anything uses them.
 *
 * A container that can migrate (a soft token) also checks that the TPM anchors no migration lock
 * for it ("migrate/<uuid>", lock_anchor.h): its keys may be in a bundle for another device, and
 * two running copies never. That entry must be absent, or the start is refused.
 *
 * Normally all of that is one round trip to tpmd (a Measure with `expect`, start_expect): tpmd
 * measures only if every anchor entry the start checks holds what allows the start without a
 * change, checked and measured in the same request. Otherwise it measures nothing and answers
 * with the entries, and on_anchors decides as above (refuse, or raise the anchor, then measure). */
#include "measure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "container.h"
#include "lc_state.h"
#include "crypto.h"
#include "guestos.h"
#include "guestos_owner.h"
#include "guestos_revocation.h"
#include "lifecycle.h"
#include "lock_anchor.h"
#include "log.h"
#include "service.h"
#include "measurement.h"
#include "state.h"
#include "tpmd_client.h"
#include "vtpm.h"

/* The anchor entries a start checks: its GuestOS's (when it has one, first), its migration lock's
 * (a soft token's) and its config's (last); room for one more start-time check. */
#define MEASURE_ANCHORS_MAX 4
_Static_assert(MIGRATE_ANCHOR_NAME_MAX <= GUESTOS_ANCHOR_NAME_MAX, "a migration lock's anchor name fits");

struct measure_op {
    struct container *c;
    measure_done_fn done;
    char guestos[CONFIG_NAME_MAX + 1]; /* "" for a development rootfs */
    char anchor_names[MEASURE_ANCHORS_MAX][GUESTOS_ANCHOR_NAME_MAX + 1];
    size_t n_anchors;
    bool lock_anchor; /* anchor_names[lock_index] is the migration lock's */
    size_t lock_index;
    uint8_t gvalue[GUESTOS_ANCHOR_VALUE_LEN], cvalue[MEASURE_CONFIG_ANCHOR_LEN];
    struct tpmd_anchor_entry expect[MEASURE_ANCHORS_MAX];
    uint8_t gexpect[GUESTOS_ANCHOR_VALUE_LEN], cexpect[MEASURE_CONFIG_ANCHOR_LEN];
    struct tm_event_item items[TPMD_MEASURE_MAX];
    size_t n_items;
    char names[TPMD_MEASURE_MAX][TM_EVENT_NAME_MAX + 1];
};

_Static_assert(sizeof(((struct lc_state *)0)->guestos_anchor_seen) == GUESTOS_ANCHOR_VALUE_LEN,
               "lc_state's copy of a GuestOS anchor entry has its size");

static void finish(struct measure_op *op, const tm_err *err)
{
    struct container *c = op->c;
    c->lc->measure = NULL;
    measure_done_fn done = op->done;
    free(op);
    done(c, err);
}

static void on_measured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct measure_op *op = userdata;
    tm_err e = {0};
    if (err)
        tm_err_set(&e, err->code, "measuring it into the TPM failed: %s", err->msg);
    else
        vtpm_set_events(op->c, op->items, op->n_items); /* its vTPM's PCRs get the same */
    finish(op, e.code ? &e : NULL);
}

static void measure(struct measure_op *op)
{
    tm_err err = {0};
    if (tpmd_measure(op->c->d, op->items, op->n_items, on_measured, op, &err) < 0) {
        tm_err_prefix(&err, "measuring it into the TPM");
        finish(op, &err);
    }
}

static void on_anchor_set(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct measure_op *op = userdata;
    tm_err e = {0};
    if (err) {
        tm_err_set(&e, err->code, "the TPM anchor cannot be written: %s", err->msg);
        finish(op, &e);
        return;
    }
    measure(op);
}

void measure_config_anchor_name(const struct container *c, char out[GUESTOS_ANCHOR_NAME_MAX + 1])
{
    snprintf(out, GUESTOS_ANCHOR_NAME_MAX + 1, "config/%s", c->uuid);
}

void measure_config_anchor_encode(uint64_t version, uint8_t out[MEASURE_CONFIG_ANCHOR_LEN])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(version >> (56 - 8 * i));
}

int measure_config_anchor_parse(const ProtobufCBinaryData *value, uint64_t *ret, tm_err *err)
{
    *ret = 0;
    if (!value)
        return 0;
    if (value->len != MEASURE_CONFIG_ANCHOR_LEN)
        return tm_err_set(err, EBADMSG, "the TPM-anchored config entry has %zu bytes, not %d", value->len,
                          MEASURE_CONFIG_ANCHOR_LEN);
    for (int i = 0; i < 8; i++)
        *ret = (*ret << 8) | value->data[i];
    return 0;
}

/* What the next start of c expects of its GuestOS's anchor entry (value NULL: none). */
static void remember_guestos_anchor(struct container *c, const ProtobufCBinaryData *value)
{
    c->lc->guestos_anchor_seen_valid = value && value->len == GUESTOS_ANCHOR_VALUE_LEN;
    if (c->lc->guestos_anchor_seen_valid)
        memcpy(c->lc->guestos_anchor_seen, value->data, GUESTOS_ANCHOR_VALUE_LEN);
}

/* The anchored state allows the start (or is raised to what the data dir holds). */
static void on_anchors(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct measure_op *op = userdata;
    struct container *c = op->c;
    tm_err e = {0};
    if (err) {
        tm_err_set(&e, err->code,
                   "the TPM-anchored state is unavailable, so nothing that depends on "
                   "it starts: %s",
                   err->msg);
        finish(op, &e);
        return;
    }
    /* A locked container is refused before any entry is raised for it. */
    if (op->lock_anchor &&
        migrate_anchor_refuse_start(c, tpmd_anchor_value(resp, op->anchor_names[op->lock_index]), &e) < 0) {
        finish(op, &e);
        return;
    }
    struct tpmd_anchor_entry set[2];
    size_t n_set = 0;
    if (op->guestos[0]) {
        struct guestos_anchor a;
        const struct guestos *newest = guestos_find(d, op->guestos, 0);
        if (guestos_anchor_parse(tpmd_anchor_value(resp, op->anchor_names[0]), &a, &e) < 0) {
            finish(op, &e);
            return;
        }
        uint64_t have = newest ? newest->cfg->version : 0;
        remember_guestos_anchor(c, tpmd_anchor_value(resp, op->anchor_names[0]));
        if (a.version > have) {
            tm_err_set(&e, ESTALE,
                       "GuestOS %s: version %llu is anchored in the TPM as installed, "
                       "but the newest in the store is %llu: the GuestOS store was rolled back "
                       "(restored from an older copy); install version %llu or newer again",
                       op->guestos, (unsigned long long)a.version, (unsigned long long)have,
                       (unsigned long long)a.version);
            finish(op, &e);
            return;
        }
        if (a.version < have) {
            a.version = have;
            if (!a.owner[0] && newest->ca_sha256[0])
                memcpy(a.owner, newest->ca_sha256, sizeof(a.owner));
            guestos_anchor_encode(&a, op->gvalue);
            set[n_set++] = (struct tpmd_anchor_entry){op->anchor_names[0], op->gvalue, sizeof(op->gvalue), false};
            ProtobufCBinaryData v = {.len = sizeof(op->gvalue), .data = op->gvalue};
            remember_guestos_anchor(c, &v);
        }
    }
    uint64_t anchored;
    const char *cname = op->anchor_names[op->n_anchors - 1];
    if (measure_config_anchor_parse(tpmd_anchor_value(resp, cname), &anchored, &e) < 0) {
        finish(op, &e);
        return;
    }
    if (anchored > c->cfg->config_version) {
        tm_err_set(&e, ESTALE,
                   "its config has config_version %llu, but version %llu is anchored in "
                   "the TPM: the config was restored from an older copy; update it with a signed "
                   "config of a higher version",
                   (unsigned long long)c->cfg->config_version, (unsigned long long)anchored);
        finish(op, &e);
        return;
    }
    if (anchored < c->cfg->config_version) {
        measure_config_anchor_encode(c->cfg->config_version, op->cvalue);
        set[n_set++] = (struct tpmd_anchor_entry){cname, op->cvalue, sizeof(op->cvalue), false};
    }
    if (n_set == 0) {
        measure(op);
        return;
    }
    if (tpmd_anchor_update(d, set, n_set, NULL, 0, on_anchor_set, op, &e) < 0) {
        tm_err_prefix(&e, "the TPM anchor cannot be written");
        finish(op, &e);
    }
}

static int ask_anchors(struct measure_op *op, tm_err *err)
{
    const char *names[MEASURE_ANCHORS_MAX];
    for (size_t i = 0; i < op->n_anchors; i++)
        names[i] = op->anchor_names[i];
    if (tpmd_anchor_get(op->c->d, names, op->n_anchors, on_anchors, op, err) < 0)
        return tm_err_prefix(err, "reading its TPM-anchored state");
    return 0;
}

/* The start's one round trip: checked and measured (on_anchors when an entry differed). */
static void on_start_measured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct measure_op *op = userdata;
    tm_err e = {0};
    if (err) {
        tm_err_set(&e, err->code, "the TPM service refused the start: %s", err->msg);
        finish(op, &e);
        return;
    }
    const Trustme__Tpmd__Measured *m = resp->measured;
    if (!m->has_anchor_mismatch) {
        /* A tpmd that measured without looking at the table: check it the long way (the
         * measurement is then skipped as logged already). */
        if (ask_anchors(op, &e) < 0)
            finish(op, &e);
        return;
    }
    if (m->anchor_mismatch) {
        log_debug("%s: its TPM-anchored entries are not what the start expected: deciding on them",
                  container_label(op->c));
        on_anchors(d, resp, NULL, op);
        return;
    }
    if (op->guestos[0])
        remember_guestos_anchor(op->c, tpmd_anchor_value(resp, op->anchor_names[0]));
    vtpm_set_events(op->c, op->items, op->n_items); /* its vTPM's PCRs get the same */
    finish(op, NULL);
}

/* What each checked entry holds when on_anchors would let the start go on without writing the
 * table: the GuestOS's entry at the store's newest version (its owner as tpmd last showed it,
 * else the newest version's signing CA), the config's at its config_version (absent for 0). Only
 * a guess that saves a round trip: tpmd compares, and any other value goes through on_anchors.
 * A new start-time anchor check adds its name in measure_start, its expectation here and its
 * decision in on_anchors. */
static size_t start_expect(struct measure_op *op)
{
    struct container *c = op->c;
    size_t n = 0;
    if (op->guestos[0]) {
        const struct guestos *newest = guestos_find(c->d, op->guestos, 0);
        struct guestos_anchor a = {.version = newest ? newest->cfg->version : 0};
        struct guestos_anchor seen;
        ProtobufCBinaryData v = {.len = GUESTOS_ANCHOR_VALUE_LEN, .data = c->lc->guestos_anchor_seen};
        if (c->lc->guestos_anchor_seen_valid && guestos_anchor_parse(&v, &seen, NULL) == 0)
            memcpy(a.owner, seen.owner, sizeof(a.owner));
        else if (newest)
            memcpy(a.owner, newest->ca_sha256, sizeof(a.owner));
        guestos_anchor_encode(&a, op->gexpect);
        op->expect[n++] = (struct tpmd_anchor_entry){op->anchor_names[0], op->gexpect, sizeof(op->gexpect), false};
    }
    if (op->lock_anchor) /* no migration lock */
        op->expect[n++] = (struct tpmd_anchor_entry){.name = op->anchor_names[op->lock_index], .remove = true};
    const char *cname = op->anchor_names[op->n_anchors - 1];
    if (c->cfg->config_version) {
        measure_config_anchor_encode(c->cfg->config_version, op->cexpect);
        op->expect[n++] = (struct tpmd_anchor_entry){cname, op->cexpect, sizeof(op->cexpect), false};
    } else {
        op->expect[n++] = (struct tpmd_anchor_entry){.name = cname, .remove = true};
    }
    return n;
}

static int check_and_measure(struct measure_op *op, tm_err *err)
{
    size_t n = start_expect(op);
    if (tpmd_measure_expect(op->c->d, op->items, op->n_items, op->expect, n, on_start_measured, op, err) < 0)
        return tm_err_prefix(err, "checking its TPM-anchored state and measuring it");
    return 0;
}

static void on_revocation(struct daemon *d, const tm_err *err, void *userdata)
{
    struct measure_op *op = userdata;
    tm_err e = {0};
    if (err) {
        e = *err;
        finish(op, &e);
        return;
    }
    if (check_and_measure(op, &e) < 0)
        finish(op, &e);
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
    _cleanup_free_ struct measure_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    *op = (struct measure_op){.c = c, .done = done};
    op->n_items = start_items(c, g, op->items, op->names);
    if (g) {
        snprintf(op->guestos, sizeof(op->guestos), "%s", g->cfg->name);
        guestos_anchor_name(g->cfg->name, op->anchor_names[op->n_anchors++]);
    }
    /* Only a soft token's data key goes into a migration bundle (docs/MIGRATION.md). */
    if (c->cfg->token.kind == TOKEN_KIND_SOFT) {
        op->lock_anchor = true;
        op->lock_index = op->n_anchors;
        migrate_anchor_name(c, op->anchor_names[op->n_anchors++]);
    }
    measure_config_anchor_name(c, op->anchor_names[op->n_anchors++]);
    int r = g ? revocation_check(d, (struct guestos *)g, on_revocation, op, err) : 1;
    if (r == 1)
        r = check_and_measure(op, err);
    if (r < 0) {
        revocation_forget(d, op);
        return r;
    }
    c->lc->measure = steal_ptr(op);
    return 0;
}

void measure_forget(struct container *c)
{
    if (!c->lc->measure)
        return;
    revocation_forget(c->d, c->lc->measure);
    tpmd_forget(c->d, c->lc->measure);
    free(c->lc->measure);
    c->lc->measure = NULL;
}

static void on_dropped(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    if (err)
        log_warn("cannot drop a removed container's config version from the TPM anchor table: %s "
                 "(an unused entry stays)",
                 err->msg);
}

void measure_config_anchor_drop(struct container *c)
{
    if (!c->cfg->config_version)
        return;
    char name[GUESTOS_ANCHOR_NAME_MAX + 1];
    measure_config_anchor_name(c, name);
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    tm_err err;
    if (tpmd_anchor_update(c->d, &e, 1, NULL, 0, on_dropped, NULL, &err) < 0)
        on_dropped(c->d, NULL, &err, NULL);
}

/* ---- after a TPM reset ------------------------------------------------------------------------ */

struct remeasure_op {
    char name[CONFIG_NAME_MAX + 1];
    char names[TPMD_MEASURE_MAX][TM_EVENT_NAME_MAX + 1];
};

/* A running container that cannot be measured again is stopped: running unmeasured would hide
 * it from every verifier. */
static void remeasure_failed(struct daemon *d, struct container *c, const char *why)
{
    log_error("container %s: measuring it again failed (%s): stopping it", c->cfg->name, why);
    daemon_audit(d, "tpm.remeasure", "fail", c, "trustmed", "%s; stopping the container", why);
    struct stop_args stop = {.timeout_s = STOP_TIMEOUT_DEFAULT_S};
    tm_err e;
    if (container_fire(c, EV_STOP, &stop, &e) < 0)
        log_error("container %s: cannot stop it: %s", c->cfg->name, e.msg);
}

static void on_remeasured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct remeasure_op *op = userdata;
    struct container *c = container_find(d, op->name);
    if (!err) {
        /* Without a reset tpmd already held every event and added none: nothing to say. */
        if (resp->measured && resp->measured->added)
            daemon_audit(d, "tpm.remeasure", "ok", c, "trustmed",
                         "measured again after a TPM "
                         "reset (%u events)",
                         resp->measured->added);
    } else if (c && state_is_active(c->state)) {
        remeasure_failed(d, c, err->msg);
    }
    free(op);
}

static void on_remeasure_complete(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err,
                                  void *userdata)
{
    if (err && resp)
        log_error("tpmd refused the end of the measurements after a TPM reset: %s (it answers "
                  "no quote until the next start)",
                  err->msg);
}

void measure_running(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        /* A start still waiting for its own measurement gets it from the new tpmd's queue. */
        if (!state_is_active(c->state) || c->lc->measure)
            continue;
        const struct guestos *g = NULL;
        if (c->cfg->guestos[0] && !(g = guestos_find(d, c->cfg->guestos, c->guestos_version))) {
            char why[CONFIG_NAME_MAX + 96];
            snprintf(why, sizeof(why), "its GuestOS %s-%llu is gone", c->cfg->guestos,
                     (unsigned long long)c->guestos_version);
            remeasure_failed(d, c, why);
            continue;
        }
        struct remeasure_op *op = calloc(1, sizeof(*op));
        if (!op) {
            remeasure_failed(d, c, "out of memory");
            continue;
        }
        snprintf(op->name, sizeof(op->name), "%s", c->cfg->name);
        struct tm_event_item items[TPMD_MEASURE_MAX];
        size_t n = start_items(c, g, items, op->names);
        /* Its vTPM's endorsement keys, measured when the vTPM started (deep attestation). */
        n += vtpm_ek_events(c, items + n, op->names + n, TPMD_MEASURE_MAX - n);
        tm_err err;
        if (tpmd_measure(d, items, n, on_remeasured, op, &err) < 0) {
            free(op);
            remeasure_failed(d, c, err.msg);
        }
    }
    /* Behind every request above on the same ordered link: tpmd answers quotes again only
     * once all of them are in its log. */
    tm_err err;
    if (tpmd_measure_complete(d, on_remeasure_complete, NULL, &err) < 0)
        log_error("cannot end the measurements after a TPM reset: %s", err.msg);
}

/* tpmd's new log must hold what runs before any quote is answered. */
const struct service_events measure_service_events = {
    .name = "measure",
    .tpmd_ready = measure_running,
};
