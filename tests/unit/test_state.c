/* The lifecycle table, written out again independently of state.c:
 *
 *   STOPPED -> STARTING -> RUNNING <-> (FREEZING -> FROZEN) -> STOPPING -> STOPPED
 *
 * Every (state, event) pair is checked, so adding or dropping a transition in state.c without
 * updating this file fails. */
#include "unit.h"

#include <stdio.h>

#include "state.h"

struct row {
    enum cevent event;
    enum cstate next;
    enum caction action;
};

/* Only the allowed pairs; everything else must be ACT_INVALID and keep the state. */
static const struct row stopped[] = {
    {EV_START, CS_STARTING, ACT_BEGIN_START},
};
static const struct row starting[] = {
    {EV_STARTED, CS_RUNNING, ACT_STARTED},
    {EV_START_FAILED, CS_STOPPING, ACT_ABORT_START},
    {EV_STOP, CS_STOPPING, ACT_ABORT_START},
    {EV_EXITED, CS_STOPPED, ACT_CLEANUP},
};
static const struct row running[] = {
    {EV_STOP, CS_STOPPING, ACT_STOP},
    {EV_EXITED, CS_STOPPED, ACT_CLEANUP},
    {EV_FREEZE, CS_FREEZING, ACT_FREEZE},
};
static const struct row freezing[] = {
    {EV_FROZEN, CS_FROZEN, ACT_FROZEN},
    {EV_FREEZE_FAILED, CS_RUNNING, ACT_THAW},
    {EV_STOP, CS_STOPPING, ACT_STOP},
    {EV_EXITED, CS_STOPPED, ACT_CLEANUP},
};
static const struct row frozen[] = {
    {EV_UNFREEZE, CS_RUNNING, ACT_THAW},
    {EV_STOP, CS_STOPPING, ACT_STOP},
    {EV_EXITED, CS_STOPPED, ACT_CLEANUP},
};
static const struct row stopping[] = {
    {EV_STOP, CS_STOPPING, ACT_STOP},          /* a second stop may escalate to SIGKILL */
    {EV_START_FAILED, CS_STOPPING, ACT_NONE},  /* a late start failure changes nothing */
    {EV_EXITED, CS_STOPPED, ACT_CLEANUP},
};

static void check_row(enum cstate state, const struct row *rows, size_t nrows)
{
    for (int ev = 0; ev < EV_COUNT; ev++) {
        struct transition want = {.next = state, .action = ACT_INVALID};
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].event == (enum cevent)ev)
                want = (struct transition){.next = rows[i].next, .action = rows[i].action};
        struct transition got = state_next(state, (enum cevent)ev);
        if (got.next != want.next || got.action != want.action)
            print_error("%s + %s: expected (%s, action %d), got (%s, action %d)\n",
                        state_name(state), event_name((enum cevent)ev), state_name(want.next),
                        want.action, state_name(got.next), got.action);
        assert_int_equal(got.action, want.action);
        assert_int_equal(got.next, want.next);
    }
}

#define ROW(s, rows)                                                                               \
    static void row_##rows(void **state)                                                           \
    {                                                                                              \
        (void)state;                                                                               \
        check_row(s, rows, sizeof(rows) / sizeof(rows[0]));                                        \
    }
ROW(CS_STOPPED, stopped)
ROW(CS_STARTING, starting)
ROW(CS_RUNNING, running)
ROW(CS_FREEZING, freezing)
ROW(CS_FROZEN, frozen)
ROW(CS_STOPPING, stopping)

static void invalid_pairs_keep_the_state(void **state)
{
    (void)state;
    size_t invalid = 0;
    for (int s = CS_FIRST; s <= CS_LAST; s++)
        for (int ev = 0; ev < EV_COUNT; ev++) {
            struct transition t = state_next((enum cstate)s, (enum cevent)ev);
            if (t.action == ACT_INVALID) {
                assert_int_equal(t.next, s);
                invalid++;
            }
        }
    /* 54 pairs, 18 allowed. */
    assert_int_equal(invalid, 36);
}

static void every_state_can_reach_stopped(void **state)
{
    (void)state;
    /* The daemon must always be able to bring a container down: stop or exit from every state
     * other than STOPPED leads (through STOPPING at most) to STOPPED. */
    for (int s = CS_STARTING; s <= CS_LAST; s++) {
        struct transition t = state_next((enum cstate)s, EV_EXITED);
        assert_int_equal(t.next, CS_STOPPED);
        assert_int_equal(t.action, ACT_CLEANUP);
        t = state_next((enum cstate)s, EV_STOP);
        assert_int_not_equal(t.action, ACT_INVALID);
        assert_int_equal(t.next, CS_STOPPING);
    }
}

static void out_of_range_state(void **state)
{
    (void)state;
    static const int bad[] = {0, CS_LAST + 1, -1, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct transition t = state_next((enum cstate)bad[i], EV_START);
        assert_int_equal(t.action, ACT_INVALID);
        assert_int_equal((int)t.next, bad[i]);
    }
}

static void out_of_range_event(void **state)
{
    (void)state;
    static const int bad[] = {-1, EV_COUNT, EV_COUNT + 1, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct transition t = state_next(CS_RUNNING, (enum cevent)bad[i]);
        assert_int_equal(t.action, ACT_INVALID);
        assert_int_equal(t.next, CS_RUNNING);
    }
}

static void state_names(void **state)
{
    (void)state;
    assert_string_equal(state_name(CS_STOPPED), "stopped");
    assert_string_equal(state_name(CS_STARTING), "starting");
    assert_string_equal(state_name(CS_RUNNING), "running");
    assert_string_equal(state_name(CS_FREEZING), "freezing");
    assert_string_equal(state_name(CS_FROZEN), "frozen");
    assert_string_equal(state_name(CS_STOPPING), "stopping");
    assert_string_equal(state_name((enum cstate)0), "unknown");
    assert_string_equal(state_name((enum cstate)(CS_LAST + 1)), "unknown");
    assert_string_equal(state_name((enum cstate)-1), "unknown");
}

static void event_names(void **state)
{
    (void)state;
    static const char *const want[EV_COUNT] = {
        [EV_START] = "start", [EV_STARTED] = "started", [EV_START_FAILED] = "start-failed",
        [EV_STOP] = "stop", [EV_EXITED] = "exited", [EV_FREEZE] = "freeze",
        [EV_FROZEN] = "frozen", [EV_FREEZE_FAILED] = "freeze-failed", [EV_UNFREEZE] = "unfreeze"};
    for (int ev = 0; ev < EV_COUNT; ev++)
        assert_string_equal(event_name((enum cevent)ev), want[ev]);
    assert_string_equal(event_name((enum cevent)-1), "unknown");
    assert_string_equal(event_name(EV_COUNT), "unknown");
}

static void refusal_wording(void **state)
{
    (void)state;
    char buf[128];
    assert_ptr_equal(state_refusal(CS_STOPPED, EV_FREEZE, buf, sizeof(buf)), buf);
    assert_string_equal(buf, "cannot freeze: the container is stopped");
    state_refusal(CS_FROZEN, EV_START, buf, sizeof(buf));
    assert_string_equal(buf, "cannot start: the container is frozen");
    state_refusal(CS_RUNNING, EV_UNFREEZE, buf, sizeof(buf));
    assert_string_equal(buf, "cannot unfreeze: the container is running");
}

static void refusal_is_cut_to_the_buffer(void **state)
{
    (void)state;
    char buf[12];
    memset(buf, 'x', sizeof(buf));
    state_refusal(CS_STOPPING, EV_FREEZE, buf, sizeof(buf));
    assert_string_equal(buf, "cannot free");
}

static void active_states(void **state)
{
    (void)state;
    assert_false(state_is_active(CS_STOPPED));
    for (int s = CS_STARTING; s <= CS_LAST; s++)
        assert_true(state_is_active((enum cstate)s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(row_stopped),
        cmocka_unit_test(row_starting),
        cmocka_unit_test(row_running),
        cmocka_unit_test(row_freezing),
        cmocka_unit_test(row_frozen),
        cmocka_unit_test(row_stopping),
        cmocka_unit_test(invalid_pairs_keep_the_state),
        cmocka_unit_test(every_state_can_reach_stopped),
        cmocka_unit_test(out_of_range_state),
        cmocka_unit_test(out_of_range_event),
        cmocka_unit_test(state_names),
        cmocka_unit_test(event_names),
        cmocka_unit_test(refusal_wording),
        cmocka_unit_test(refusal_is_cut_to_the_buffer),
        cmocka_unit_test(active_states),
    };
    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
