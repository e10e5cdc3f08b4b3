/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Per-container state of the subsystems above core/ (container_slots.h). A small array: a
 * handful of subsystems keep state per container, and a lookup is a few pointer compares. */
#include "container_slots.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

void *container_state(const struct container *c, const struct container_slot *slot)
{
    for (size_t i = 0; i < c->nslots; i++)
        if (c->slots[i].slot == slot)
            return c->slots[i].state;
    return NULL;
}

int container_attach(struct container *c, const struct container_slot *slot, void *state, tm_err *err)
{
    assert(slot && state);
    if (container_state(c, slot))
        return tm_err_set(err, EEXIST, "%s: state attached twice to one container", slot->name);
    if (c->nslots == CONTAINER_SLOTS_MAX)
        return tm_err_set(err, ENOSPC, "%s: no free per-container slot (CONTAINER_SLOTS_MAX is %d)", slot->name,
                          CONTAINER_SLOTS_MAX);
    c->slots[c->nslots].slot = slot;
    c->slots[c->nslots].state = state;
    c->nslots++;
    return 0;
}

void *container_detach(struct container *c, const struct container_slot *slot)
{
    for (size_t i = 0; i < c->nslots; i++) {
        if (c->slots[i].slot != slot)
            continue;
        void *state = c->slots[i].state;
        /* Keep the order of attachment: the others are released in reverse of it. */
        memmove(&c->slots[i], &c->slots[i + 1], (c->nslots - i - 1) * sizeof(c->slots[0]));
        c->nslots--;
        return state;
    }
    return NULL;
}

void container_slots_free(struct container *c)
{
    while (c->nslots > 0) {
        c->nslots--;
        const struct container_slot *slot = c->slots[c->nslots].slot;
        if (slot->free)
            slot->free(c, c->slots[c->nslots].state);
    }
}
