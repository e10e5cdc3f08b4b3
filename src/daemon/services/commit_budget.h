/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TPM NV write budget of a container's keystore (docs/KEYSTORE.md "Commit budget"): every
 * anchor update its keystore service asks for (a secure-storage commit, a tamper-proof write, a
 * key index commit) is one NV write on the TPM, which a hardware TPM can take only so many times
 * in its life. A token bucket per container UUID: COMMIT_BUDGET_BURST updates at once, then one
 * more every COMMIT_BUDGET_REFILL_S seconds. Kept per UUID, not per service, so that a
 * restarted service or container does not start with a full bucket. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define COMMIT_BUDGET_BURST 120
#define COMMIT_BUDGET_REFILL_S 30

/* Take one update from uuid's bucket at now_ms (monotonic). false: the budget is spent, and
 * *ret_wait_s says when the next one is possible. */
bool commit_budget_take(const char *uuid, uint64_t now_ms, uint64_t *ret_wait_s);
/* A removed container's bucket goes with it. */
void commit_budget_forget(const char *uuid);
