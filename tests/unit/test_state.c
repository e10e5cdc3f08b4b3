/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The lifecycle table, written out again independently of state.c, cell by cell in the layout of
 * docs/ARCHITECTURE.md "The state table" (rows: states, columns: events; "--" = refused):
 *
 *   STOPPED -> STARTING -> RUNNING <-> (FREEZING -> FROZEN) -> STOPPING -> STOPPED
 *
 * Every one of the 54 (state, event) cells is checked, refused ones included, so adding or
 * dropping a transition in state.c without updating this file fails; and the doc's table is
 * parsed and compared with state.c as well (the_doc_is_the_table). */
#include "unit.h"

#include <stdio.h>

#include "state.h"

struct cell {
    enum cstate next; /* 0: refused (the state stays) */
    enum caction action;
};

#define NO             \
    {                  \
        0, ACT_INVALID \
    }
#define TO(s, a)        \
    {                   \
        CS_##s, ACT_##a \
    }

/* clang-format off */
static const struct cell grid[CS_LAST + 1][EV_COUNT] = {
    /*             start                     started             start-failed              stop                      exited               freeze                 frozen               freeze-failed      unfreeze */
    [CS_STOPPED]  = {TO(STARTING, BEGIN_START), NO,                NO,                       NO,                       NO,                  NO,                    NO,                  NO,                NO},
    [CS_STARTING] = {NO,                        TO(RUNNING, STARTED), TO(STOPPING, ABORT_START), TO(STOPPING, ABORT_START), TO(STOPPED, CLEANUP), NO,                 NO,                  NO,                NO},
    [CS_RUNNING]  = {NO,                        NO,                NO,                       TO(STOPPING, STOP),       TO(STOPPED, CLEANUP), TO(FREEZING, FREEZE), NO,                  NO,                NO},
    [CS_FREEZING] = {NO,                        NO,                NO,                       TO(STOPPING, STOP),       TO(STOPPED, CLEANUP), NO,                   TO(FROZEN, FROZEN),  TO(RUNNING, THAW), NO},
    [CS_FROZEN]   = {NO,                        NO,                NO,                       TO(STOPPING, STOP),       TO(STOPPED, CLEANUP), NO,                   NO,                  NO,                TO(RUNNING, THAW)},
    /* a second stop may escalate to SIGKILL; a late start failure changes nothing */
    [CS_STOPPING] = {NO,                        NO,                TO(STOPPING, NONE),       TO(STOPPING, STOP),       TO(STOPPED, CLEANUP), NO,                   NO,                  NO,                NO},
};
/* clang-format on */

static void check_row(enum cstate state)
{
    for (int ev = 0; ev < EV_COUNT; ev++) {
        const struct cell *want = &grid[state][ev];
        enum cstate want_next = want->action == ACT_INVALID ? state : want->next;
        struct transition got = state_next(state, (enum cevent)ev);
        if (got.next != want_next || got.action != want->action)
            print_error("%s + %s: expected (%s, action %d), got (%s, action %d)\n", state_name(state),
                        event_name((enum cevent)ev), state_name(want_next), want->action, state_name(got.next),
                        got.action);
        assert_int_equal(got.action, want->action);
        assert_int_equal(got.next, want_next);
    }
}

#define ROW(s, name)                     \
    static void row_##name(void **state) \
    {                                    \
        (void)state;                     \
        check_row(s);                    \
    }
ROW(CS_STOPPED, stopped)
ROW(CS_STARTING, starting)
ROW(CS_RUNNING, running)
ROW(CS_FREEZING, freezing)
ROW(CS_FROZEN, frozen)
ROW(CS_STOPPING, stopping)

/* docs/ARCHITECTURE.md's words for the actions. */
static const char *const action_words[] = {
    [ACT_NONE] = "–",    [ACT_BEGIN_START] = "begin start", [ACT_STARTED] = "started", [ACT_ABORT_START] = "abort",
    [ACT_STOP] = "stop", [ACT_CLEANUP] = "cleanup",         [ACT_FREEZE] = "freeze",   [ACT_FROZEN] = "frozen",
    [ACT_THAW] = "thaw",
};

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* The cell "next / action" of the doc, or "" for a refused one. */
static void parse_cell(char *text, enum cstate state, enum cevent ev, size_t *checked)
{
    text = trim(text);
    struct transition got = state_next(state, ev);
    if (!text[0]) {
        if (got.action != ACT_INVALID)
            print_error("docs: %s + %s is empty, state.c allows it\n", state_name(state), event_name(ev));
        assert_int_equal(got.action, ACT_INVALID);
        (*checked)++;
        return;
    }
    char *slash = strstr(text, " / ");
    assert_non_null(slash);
    *slash = '\0';
    const char *next = trim(text), *action = trim(slash + 3);
    if (strcmp(next, state_name(got.next)) != 0 || got.action == ACT_INVALID ||
        strcmp(action, action_words[got.action]) != 0)
        print_error("docs: %s + %s is \"%s / %s\", state.c says %s / %s\n", state_name(state), event_name(ev), next,
                    action, state_name(got.next), got.action == ACT_INVALID ? "refused" : action_words[got.action]);
    assert_string_equal(next, state_name(got.next));
    assert_int_not_equal(got.action, ACT_INVALID);
    assert_string_equal(action, action_words[got.action]);
    (*checked)++;
}

static void the_doc_is_the_table(void **state)
{
    (void)state;
    const char *root = getenv("TRUSTME_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/ARCHITECTURE.md", root ? root : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        print_error("cannot open %s (set TRUSTME_SOURCE_ROOT)\n", path);
    assert_non_null(f);
    char line[1024];
    enum cevent columns[EV_COUNT];
    size_t ncolumns = 0, checked = 0;
    bool in_table = false;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "| state \\ event |", 17) == 0) {
            in_table = true;
            for (char *save, *h = strtok_r(line + 17, "|", &save); h; h = strtok_r(NULL, "|", &save)) {
                h = trim(h);
                if (!h[0])
                    continue;
                int ev = 0;
                while (ev < EV_COUNT && strcmp(event_name((enum cevent)ev), h) != 0)
                    ev++;
                if (ev == EV_COUNT)
                    print_error("docs: unknown event column \"%s\"\n", h);
                assert_true(ev < EV_COUNT && ncolumns < EV_COUNT);
                columns[ncolumns++] = (enum cevent)ev;
            }
            continue;
        }
        if (!in_table || strncmp(line, "|---", 4) == 0)
            continue;
        if (line[0] != '|')
            break;
        /* | state | cell | cell | ... | */
        char *p = line + 1, *bar = strchr(p, '|');
        assert_non_null(bar);
        *bar = '\0';
        const char *name = trim(p);
        int s = CS_FIRST;
        while (s <= CS_LAST && strcmp(state_name((enum cstate)s), name) != 0)
            s++;
        if (s > CS_LAST)
            print_error("docs: unknown state row \"%s\"\n", name);
        assert_true(s <= CS_LAST);
        p = bar + 1;
        for (size_t col = 0; col < ncolumns; col++) {
            bar = strchr(p, '|');
            assert_non_null(bar);
            *bar = '\0';
            parse_cell(p, (enum cstate)s, columns[col], &checked);
            p = bar + 1;
        }
    }
    fclose(f);
    assert_int_equal(ncolumns, EV_COUNT);
    assert_int_equal(checked, (CS_LAST - CS_FIRST + 1) * EV_COUNT);
}

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
    assert_string_equal(state_name((enum cstate) - 1), "unknown");
}

static void event_names(void **state)
{
    (void)state;
    static const char *const want[EV_COUNT] = {[EV_START] = "start",
                                               [EV_STARTED] = "started",
                                               [EV_START_FAILED] = "start-failed",
                                               [EV_STOP] = "stop",
                                               [EV_EXITED] = "exited",
                                               [EV_FREEZE] = "freeze",
                                               [EV_FROZEN] = "frozen",
                                               [EV_FREEZE_FAILED] = "freeze-failed",
                                               [EV_UNFREEZE] = "unfreeze"};
    for (int ev = 0; ev < EV_COUNT; ev++)
        assert_string_equal(event_name((enum cevent)ev), want[ev]);
    assert_string_equal(event_name((enum cevent) - 1), "unknown");
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
        cmocka_unit_test(the_doc_is_the_table),
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
