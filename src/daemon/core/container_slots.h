/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A subsystem's own per-container state, kept in the container without struct container naming
 * it (docs/ARCHITECTURE.md, "How to add a subsystem").
 *
 * The subsystem defines one slot, `static const struct container_slot vtpm_slot = {"vtpm",
 * vtpm_state_free};`, attaches its state when the container gets it (an observer's created or
 * loaded hook, or the start that needs it), finds it again with container_state(c, &vtpm_slot),
 * and either detaches it itself or lets the container free it. Its state struct is declared in
 * its own .c file: a change to it recompiles its own folder only. */
#pragma once

#include "daemon.h"

struct container_slot {
    const char *name; /* for the log */
    /* Release state when the container object is freed (after every observer's freed hook, so
     * those may still use it); NULL: nothing to release. */
    void (*free)(struct container *c, void *state);
};

/* c's state for slot, or NULL when none is attached. */
void *container_state(const struct container *c, const struct container_slot *slot);
/* Attach state (not NULL) for slot: c owns it from now on (slot->free releases it). -EEXIST when
 * slot has state already, -ENOSPC when CONTAINER_SLOTS_MAX are in use (raise it). On failure
 * the caller still owns state. */
int container_attach(struct container *c, const struct container_slot *slot, void *state, tm_err *err);
/* Take slot's state out of c (the caller owns it again); NULL when there was none. */
void *container_detach(struct container *c, const struct container_slot *slot);
/* Release every attached state, the last attached first (container_free). */
void container_slots_free(struct container *c);
