/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The source's migration lock anchored in the TPM (lock_anchor.h, docs/MIGRATION.md). */
#include "lock_anchor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "container.h"
#include "crypto.h"
#include "hex.h"
#include "log.h"
#include "tpmd_client.h"

#define NAME_PREFIX "migrate/"
#define STATE_EXPORTED 'e'
#define VALUE_LEN (1 + 32 + 32)

struct anchor_op {
    struct daemon *d;
    char uuid[40];
    migrate_anchor_fn fn;
    void *userdata;
    struct migrate_lock lock; /* the caller's lock file, for a check */
    bool have_lock;
    bool *anchored;
};

static void anchor_name(const char *uuid, char out[MIGRATE_ANCHOR_NAME_MAX + 1])
{
    snprintf(out, MIGRATE_ANCHOR_NAME_MAX + 1, NAME_PREFIX "%s", uuid);
}

/* What the lock names, other than its state: which bundle went where. */
static void lock_identity(const struct migrate_lock *l, uint8_t out[32])
{
    char hex[2 * MIGRATE_SPKI_MAX + 1];
    tm_hex(l->ak_spki, l->ak_spki_len, hex);
    struct tm_sha256_ctx s;
    tm_sha256_init(&s);
    const char *parts[] = {"trustme-migrate-lock-v1", l->bundle_id, l->offer_id, hex, l->path};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        tm_sha256_update(&s, parts[i], strlen(parts[i]) + 1); /* with its NUL: no ambiguity */
    tm_sha256_final(&s, out);
}

static struct anchor_op *op_new(struct container *c, migrate_anchor_fn fn, void *userdata, tm_err *err)
{
    struct anchor_op *op = calloc(1, sizeof(*op));
    if (!op) {
        tm_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    op->d = c->d;
    snprintf(op->uuid, sizeof(op->uuid), "%s", c->uuid);
    op->fn = fn;
    op->userdata = userdata;
    return op;
}

/* The container op is about, or NULL (it went away meanwhile; the op is freed). */
static struct container *op_container(struct anchor_op *op)
{
    struct container *c = container_find(op->d, op->uuid);
    if (!c)
        free(op);
    return c;
}

static void finish(struct anchor_op *op, struct container *c, const tm_err *err)
{
    migrate_anchor_fn fn = op->fn;
    void *ud = op->userdata;
    free(op);
    if (fn)
        fn(c, err, ud);
}

static const ProtobufCBinaryData *entry_of(const Trustme__Tpmd__Response *resp, const char *uuid)
{
    char name[MIGRATE_ANCHOR_NAME_MAX + 1];
    anchor_name(uuid, name);
    return resp ? tpmd_anchor_value(resp, name) : NULL;
}

static int get(struct container *c, tpmd_reply_fn fn, struct anchor_op *op, tm_err *err)
{
    char name[MIGRATE_ANCHOR_NAME_MAX + 1];
    anchor_name(c->uuid, name);
    const char *names[] = {name};
    int r = tpmd_anchor_get(c->d, names, 1, fn, op, err);
    if (r < 0)
        free(op);
    return r < 0 ? tm_err_prefix(err, "migration lock: the TPM's record") : 0;
}

/* ---- before a start ---------------------------------------------------------------------------- */

void migrate_anchor_name(const struct container *c, char out[MIGRATE_ANCHOR_NAME_MAX + 1])
{
    anchor_name(c->uuid, out);
}

int migrate_anchor_refuse_start(struct container *c, const ProtobufCBinaryData *v, tm_err *err)
{
    if (!v)
        return 0;
    struct migrate_lock l;
    tm_err le = {0};
    int r = migrate_lock_read(c, &l, &le);
    uint8_t id[32];
    if (r == 0)
        lock_identity(&l, id);
    const char *why = r == -ENOENT ? "its lock file was removed"
                      : r < 0      ? "its lock file does not parse"
                      : v->len != VALUE_LEN || memcmp(v->data + 1, id, 32) != 0
                          ? "its lock file is not the one the TPM anchored (replaced or restored)"
                          : "it is locked";
    if (r < 0 || strcmp(why, "it is locked") != 0)
        daemon_audit(c->d, "migrate.lock", "fail", c, "trustmed", "start refused: the TPM anchors an export; %s", why);
    return tm_err_set(err, EPERM,
                      "the container is migrating: the TPM records that its bundle was exported to another device, "
                      "and %s; `trustme migrate commit` or `trustme migrate abort` with the target's signed refusal",
                      why);
}

/* ---- before an export -------------------------------------------------------------------------- */

int migrate_anchor_check_export(struct container *c, const Trustme__Tpmd__Response *resp, tm_err *err)
{
    if (!entry_of(resp, c->uuid))
        return 0;
    /* The lock file said it was free (else the export was refused before): root removed it. A
     * second bundle would put the container on a second device. */
    daemon_audit(c->d, "migrate.lock", "fail", c, "trustmed",
                 "export refused: the TPM anchors an earlier export; its lock file was removed");
    return tm_err_set(err, EPERM,
                      "the container is migrating already: the TPM records that a bundle of it was exported, and "
                      "its lock file was removed; `trustme migrate commit` with the target's receipt, or `trustme "
                      "migrate abort` with its signed refusal (with the lock file put back)");
}

/* ---- before an abort or a commit --------------------------------------------------------------- */

static void lock_checked(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct anchor_op *op = userdata;
    struct container *c = op_container(op);
    if (!c)
        return;
    tm_err e = {0};
    const ProtobufCBinaryData *v = err ? NULL : entry_of(resp, op->uuid);
    uint8_t id[32];
    lock_identity(&op->lock, id);
    *op->anchored = v != NULL;
    if (err) {
        tm_err_set(&e, err->code, "migration lock: the TPM's record cannot be read: %s", err->msg);
    } else if (v && (v->len != VALUE_LEN || memcmp(v->data + 1, id, 32) != 0)) {
        tm_err_set(&e, EPERM,
                   "migration lock: the lock file is not the one the TPM anchored (replaced or restored from "
                   "an older migration)");
        daemon_audit(d, "migrate.lock", "fail", c, "trustmed", "%s", e.msg);
    }
    finish(op, c, e.code ? &e : NULL);
}

int migrate_anchor_check_lock(struct container *c, const struct migrate_lock *l, bool *anchored, migrate_anchor_fn fn,
                              void *userdata, tm_err *err)
{
    struct anchor_op *op = op_new(c, fn, userdata, err);
    if (!op)
        return -ENOMEM;
    op->lock = *l;
    op->anchored = anchored;
    return get(c, lock_checked, op, err);
}

/* ---- set and drop ------------------------------------------------------------------------------ */

static void updated(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct anchor_op *op = userdata;
    if (!op->fn) {
        if (err)
            log_warn("container %s: migration lock in the TPM: %s", op->uuid, err->msg);
        free(op);
        return;
    }
    struct container *c = op_container(op);
    if (!c)
        return;
    tm_err e = {0};
    if (err)
        tm_err_set(&e, err->code, "migration lock: anchoring it in the TPM: %s", err->msg);
    finish(op, c, e.code ? &e : NULL);
}

static int update(struct container *c, const struct tpmd_anchor_entry *set, migrate_anchor_fn fn, void *userdata,
                  tm_err *err)
{
    struct anchor_op *op = op_new(c, fn, userdata, err);
    if (!op)
        return -ENOMEM;
    int r = tpmd_anchor_update(c->d, set, 1, NULL, 0, updated, op, err);
    if (r < 0) {
        free(op);
        return tm_err_prefix(err, "migration lock: anchoring it in the TPM");
    }
    return 0;
}

int migrate_anchor_set(struct container *c, const struct migrate_lock *l, migrate_anchor_fn fn, void *userdata,
                       tm_err *err)
{
    char name[MIGRATE_ANCHOR_NAME_MAX + 1];
    anchor_name(c->uuid, name);
    uint8_t value[VALUE_LEN] = {STATE_EXPORTED};
    lock_identity(l, value + 1);
    if (l->digest[0] && tm_hex_decode_str(l->digest, value + 33, 32, 0, err) < 0)
        return tm_err_prefix(err, "migration lock: its digest");
    struct tpmd_anchor_entry e = {.name = name, .value = value, .len = sizeof(value)};
    return update(c, &e, fn, userdata, err);
}

int migrate_anchor_drop(struct container *c, migrate_anchor_fn fn, void *userdata, tm_err *err)
{
    char name[MIGRATE_ANCHOR_NAME_MAX + 1];
    anchor_name(c->uuid, name);
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    return update(c, &e, fn, userdata, err);
}

/* ---- at each tpmd start ------------------------------------------------------------------------ */

static void recover_checked(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct anchor_op *op = userdata;
    struct container *c = op_container(op);
    if (!c)
        return;
    free(op);
    if (err) {
        log_warn("container %s: its migration lock in the TPM cannot be read (%s)", c->uuid, err->msg);
        return;
    }
    const ProtobufCBinaryData *v = entry_of(resp, c->uuid);
    struct migrate_lock l;
    tm_err le = {0};
    int r = migrate_lock_read(c, &l, &le);
    if (!v) {
        /* Marked, not anchored yet (killed between the two), or an older trustme's lock. */
        if (r == 0 && l.exported && migrate_anchor_set(c, &l, NULL, NULL, &le) < 0)
            log_warn("container %s: %s", c->uuid, le.msg);
        return;
    }
    uint8_t id[32];
    if (r == 0)
        lock_identity(&l, id);
    if (r < 0 || v->len != VALUE_LEN || memcmp(v->data + 1, id, 32) != 0)
        daemon_audit(d, "migrate.lock", "fail", c, "trustmed",
                     "the TPM anchors an export of this container, and its lock file %s: the container stays "
                     "locked",
                     r == -ENOENT ? "was removed" : "is not the anchored one (replaced or restored)");
}

static void on_anchors(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next) {
        if (c->cfg->token.kind != TOKEN_KIND_SOFT)
            continue; /* only those migrate */
        tm_err err = {0};
        struct anchor_op *op = op_new(c, NULL, NULL, &err);
        if (!op || get(c, recover_checked, op, &err) < 0)
            log_warn("container %s: %s", c->uuid, err.msg);
    }
}

const struct service_events migrate_service_events = {
    .name = "migrate",
    .tpmd_anchors = on_anchors,
};

static void on_removed(struct container *c)
{
    if (c->cfg->token.kind != TOKEN_KIND_SOFT)
        return;
    tm_err err = {0};
    if (migrate_anchor_drop(c, NULL, NULL, &err) < 0)
        log_warn("container %s: %s", c->uuid, err.msg);
}

const struct container_observer migrate_container_observer = {
    .name = "migrate",
    .removed = on_removed,
};
