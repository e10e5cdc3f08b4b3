/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The keystores' NV write budget: see commit_budget.h. */
#include "commit_budget.h"

#include <stdio.h>
#include <string.h>

/* More containers with a keystore than this committing within one refill period share the
 * least used bucket's slot: the fullest bucket is the one given up (it loses nothing but
 * history). */
#define BUCKETS 256

struct bucket {
    char uuid[64];
    uint32_t tokens;
    uint64_t at_ms; /* when tokens was last brought up to date */
};

static struct bucket buckets[BUCKETS];

static struct bucket *bucket_of(const char *uuid, uint64_t now_ms)
{
    struct bucket *spare = NULL;
    for (size_t i = 0; i < BUCKETS; i++) {
        if (strcmp(buckets[i].uuid, uuid) == 0)
            return &buckets[i];
        if (!buckets[i].uuid[0] && !spare)
            spare = &buckets[i];
    }
    if (!spare) {
        spare = &buckets[0];
        for (size_t i = 1; i < BUCKETS; i++)
            if (buckets[i].tokens > spare->tokens)
                spare = &buckets[i];
    }
    snprintf(spare->uuid, sizeof(spare->uuid), "%s", uuid);
    spare->tokens = COMMIT_BUDGET_BURST;
    spare->at_ms = now_ms;
    return spare;
}

bool commit_budget_take(const char *uuid, uint64_t now_ms, uint64_t *ret_wait_s)
{
    const uint64_t refill = (uint64_t)COMMIT_BUDGET_REFILL_S * 1000;
    struct bucket *b = bucket_of(uuid, now_ms);
    uint64_t add = now_ms > b->at_ms ? (now_ms - b->at_ms) / refill : 0;
    if (add) {
        b->tokens = add >= COMMIT_BUDGET_BURST - b->tokens ? COMMIT_BUDGET_BURST : b->tokens + (uint32_t)add;
        b->at_ms += add * refill;
    }
    if (b->tokens == COMMIT_BUDGET_BURST)
        b->at_ms = now_ms; /* a full bucket does not save up */
    if (b->tokens == 0) {
        if (ret_wait_s)
            *ret_wait_s = (refill - (now_ms - b->at_ms) + 999) / 1000;
        return false;
    }
    b->tokens--;
    return true;
}

void commit_budget_forget(const char *uuid)
{
    for (size_t i = 0; i < BUCKETS; i++)
        if (strcmp(buckets[i].uuid, uuid) == 0)
            memset(&buckets[i], 0, sizeof(buckets[i]));
}
