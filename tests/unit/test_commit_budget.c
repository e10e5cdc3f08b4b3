/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The keystores' TPM NV write budget (src/daemon/services/commit_budget.c): a burst, then one
 * more per refill period, per container; a full bucket does not save up; a removed container's
 * bucket is forgotten. */
#include "unit.h"

#include "commit_budget.h"

#define A "0b7d6b2e-7d58-4d1c-9a2f-3f0c5a1e9b11"
#define B "5e3a8d40-2b7f-4c66-8e0a-6d2c1b9f7a22"
#define S 1000ull

static void burst_then_refill(void **state)
{
    (void)state;
    uint64_t t = 1000 * S, wait = 0;
    for (int i = 0; i < COMMIT_BUDGET_BURST; i++)
        assert_true(commit_budget_take(A, t, &wait));
    assert_false(commit_budget_take(A, t, &wait));
    assert_int_equal(wait, COMMIT_BUDGET_REFILL_S);
    /* another container has its own bucket */
    assert_true(commit_budget_take(B, t, &wait));
    assert_false(commit_budget_take(A, t + (COMMIT_BUDGET_REFILL_S - 1) * S, &wait));
    assert_int_equal(wait, 1);
    t += COMMIT_BUDGET_REFILL_S * S;
    assert_true(commit_budget_take(A, t, &wait)); /* one more per period */
    assert_false(commit_budget_take(A, t, &wait));
    /* a day later: a full bucket, not more */
    t += 86400 * S;
    for (int i = 0; i < COMMIT_BUDGET_BURST; i++)
        assert_true(commit_budget_take(A, t, &wait));
    assert_false(commit_budget_take(A, t, &wait));
    /* removed and made again: a new container, a new bucket */
    commit_budget_forget(A);
    assert_true(commit_budget_take(A, t, &wait));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_refill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
