/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The source's migration lock anchored in the TPM (docs/MIGRATION.md "The lock in the TPM"):
 * the anchor table entry "migrate/<uuid>" says that this container's bundle was completed, and
 * for which bundle, offer, target AK and path. While it exists the container never starts here,
 * whatever the lock file says: root who deletes the file, or puts back an older one, is refused
 * with the reason (in the container's state and the audit log, `migrate.lock`). */
#pragma once

#include "daemon.h"
#include "error.h"
#include "migrate.h"
#include "service.h"
#include "tpmd_client.h"

/* A check's result for c (which still exists): err NULL when no anchored lock stands in the
 * way, else why. */
typedef void (*migrate_anchor_fn)(struct container *c, const tm_err *err, void *userdata);

/* The anchor table name of c's lock ("migrate/<uuid>"), for a caller that reads it with others.
 * Before a start: the start's Measure request expects c's entry to be absent (measure.c
 * start_expect), so that the check costs no round trip of its own. */
#define MIGRATE_ANCHOR_NAME_MAX 63
void migrate_anchor_name(const struct container *c, char out[MIGRATE_ANCHOR_NAME_MAX + 1]);
/* The start of c is refused (-EPERM, with the reason; audited when the lock file is missing or
 * not the anchored one) when the TPM anchors a lock for it: v, its entry's value, is not NULL. */
int migrate_anchor_refuse_start(struct container *c, const ProtobufCBinaryData *v, tm_err *err);

/* Before an export, in tpmd's answer for migrate_anchor_name: -EPERM (with the reason, audited)
 * while the TPM anchors a completed export of c, whatever its lock file says. */
int migrate_anchor_check_export(struct container *c, const Trustme__Tpmd__Response *resp, tm_err *err);

/* Before an abort or a commit: the lock file l (read by the caller) must be the one the TPM
 * anchors, if it anchors one; fn gets err NULL when it is (or nothing is anchored and l is a
 * lock whose export never completed). *anchored tells which. */
int migrate_anchor_check_lock(struct container *c, const struct migrate_lock *l, bool *anchored, migrate_anchor_fn fn,
                              void *userdata, tm_err *err);

/* Anchor l (exported, with its digest) for c: one NV write; fn then. */
int migrate_anchor_set(struct container *c, const struct migrate_lock *l, migrate_anchor_fn fn, void *userdata,
                       tm_err *err);
/* Remove c's anchored lock (abort with a refusal; the container removed). */
int migrate_anchor_drop(struct container *c, migrate_anchor_fn fn, void *userdata, tm_err *err);

/* At each tpmd start, once its anchor table is readable: each container's lock file against the
 * TPM (a missing or other file is audited; an exported lock not anchored yet is anchored). */
extern const struct service_events migrate_service_events;
/* The container is gone: its anchored lock goes too. */
extern const struct container_observer migrate_container_observer;
