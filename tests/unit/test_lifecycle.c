/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The container lifecycle (src/daemon/lifecycle/lifecycle.c) without root: the real state table,
 * module runner, start/stop code and core/, with fake modules and fake services (lifecycle_fakes.c). The setup
 * process and init are real processes (a fork, and a CLONE_PARENT child of this test).
 *
 * A failure at every hook of every phase of a start (prepare in trustmed, setup in the setup
 * process, child in init) must run the cleanup hooks of the modules that ran — in reverse — and
 * land in STOPPED with the failing module's reason; so must a refused measurement or data key.
 * Nothing may be left behind: no process, no fd, no start operation. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "container.h"
#include "fileio.h"
#include "jsonutil.h"
#include "lifecycle.h"
#include "lifecycle_fakes.h"
#include "lc_state.h"

static struct daemon d;
static struct container_config cfg;
static struct container c;
static int order[FAKE_MODULES]; /* fake_modules[] index of each position of the real table */
/* The real container store's paths (core/container.c): <run_dir|data_dir>/containers/<uuid>. */
static char run_dir[4096], data_dir[4096];

static size_t count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    size_t n = 0;
    while (readdir(dir))
        n++;
    closedir(dir);
    return n;
}

static void reset_container(void)
{
    fake_reset();
    if (c.lc) /* the last case's run state (lifecycle's observer makes and frees it) */
        lifecycle_container_observer.freed(&c);
    memset(&c, 0, sizeof(c));
    c.d = &d;
    snprintf(c.uuid, sizeof(c.uuid), "%s", "00000000-0000-4000-8000-000000000001");
    c.cfg = &cfg;
    c.state = CS_STOPPED;
    c.pidfd = -1;
    tm_err err;
    assert_int_equal(lifecycle_container_observer.created(&c, &err), 0);
    fake_attach(&c);
    c.exit_code = -1;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.name, sizeof(cfg.name), "%s", "c1");
    snprintf(cfg.init, sizeof(cfg.init), "%s", "/sbin/init");
    /* Each case's state.json is its own (see assert_saved_error). */
    char path[4096 + 16];
    snprintf(path, sizeof(path), "%s/state.json", data_dir);
    if (data_dir[0])
        unlink(path);
}

static void on_too_long(tm_source *src, void *userdata)
{
    tm_loop_quit(d.loop, 1);
}

/* Fire ev, then run the loop until the container is in state until. */
static void fire_until(enum cevent ev, const void *arg, enum cstate until)
{
    /* No quit while the event is fired outside the loop: a quit flag left set would end the
     * next run at once. */
    fake->quit_state = 0;
    tm_err err = {0};
    int fired = container_fire(&c, ev, arg, &err);
    if (fired < 0)
        print_error("%s refused: %s\n", event_name(ev), err.msg);
    assert_int_equal(fired, 0);
    if (c.state == until)
        return;
    fake->quit_state = until;
    tm_source *guard = tm_loop_timer(d.loop, 20000, on_too_long, NULL);
    int r = tm_loop_run(d.loop);
    tm_source_free(guard);
    if (r != 0)
        print_error("the container is %s after 20 s, not %s\n", state_name(c.state), state_name(until));
    assert_int_equal(r, 0);
    assert_int_equal(c.state, until);
}

/* Every process of the start has been waited for: none is left, not even a zombie. */
static void assert_no_children(void)
{
    fake_reap_taken();
    errno = 0;
    pid_t pid = waitpid(-1, NULL, WNOHANG);
    if (pid != -1)
        print_error("a process of the start is left (waitpid: %d; setup %d, init %d)\n", (int)pid, (int)fake->setup_pid,
                    (int)fake->init_pid);
    assert_int_equal(pid, -1);
    assert_int_equal(errno, ECHILD);
}

/* The expected log, built call by call. */
struct expect {
    int n;
    enum fake_phase phase[FAKE_LOG_MAX];
    int module[FAKE_LOG_MAX];
};

static void expect_run(struct expect *e, enum fake_phase phase, int from, int to)
{
    int step = from <= to ? 1 : -1;
    for (int pos = from;; pos += step) {
        e->phase[e->n] = phase;
        e->module[e->n++] = order[pos];
        if (pos == to)
            break;
    }
}

static void assert_log(const struct expect *e)
{
    bool same = fake->ncalls == e->n;
    for (int i = 0; same && i < e->n; i++)
        same = fake->calls[i].phase == e->phase[i] && fake->calls[i].module == e->module[i];
    if (!same) {
        print_error("hooks run:");
        for (int i = 0; i < fake->ncalls && i < FAKE_LOG_MAX; i++)
            print_error(" %s.%s", fake_modules[fake->calls[i].module]->name, fake_phase_name(fake->calls[i].phase));
        print_error("\nexpected: ");
        for (int i = 0; i < e->n; i++)
            print_error(" %s.%s", fake_modules[e->module[i]]->name, fake_phase_name(e->phase[i]));
        print_error("\n");
    }
    assert_true(same);
}

/* The last audit record is event/result with detail. */
static void assert_audit(const char *event, const char *result, const char *detail)
{
    assert_true(fake->audits > 0);
    int i = fake->audits - 1;
    assert_string_equal(fake->audit_event[i], event);
    assert_string_equal(fake->audit_result[i], result);
    if (detail)
        assert_string_equal(fake->audit_detail[i], detail);
}

/* The container's state.json (written by the real container_save_state) says last_error. */
static void assert_saved_error(const char *last_error)
{
    char path[4096 + 16];
    snprintf(path, sizeof(path), "%s/state.json", data_dir);
    char *data = NULL;
    size_t len;
    json_t *o = NULL;
    const char *saved = NULL;
    tm_err err = {0};
    if (read_file(path, 65536, &data, &len, &err) < 0 || tm_json_parse_object(data, len, &o, &err) < 0 ||
        tm_json_get_string(o, "$", "last_error", true, 1024, &saved, &err) < 0)
        print_error("%s: %s\n", path, err.msg);
    assert_non_null(saved);
    assert_string_equal(saved, last_error);
    json_decref(o);
    free(data);
}

/* A start that failed: STOPPED, the reason kept (also on disk) and audited, nothing left. */
static void assert_failed_start(const char *reason, size_t fds_before)
{
    assert_int_equal(c.state, CS_STOPPED);
    assert_string_equal(c.last_error, reason);
    assert_saved_error(reason);
    assert_audit("container.start", "fail", reason);
    assert_null(c.lc->start);
    assert_null(c.lc->measure);
    assert_false(fake_key_pending(&c));
    assert_false(fake_console_open(&c));
    assert_int_equal(c.pid, 0);
    assert_int_equal(c.pidfd, -1);
    assert_no_children();
    assert_int_equal(count_fds(), fds_before);
}

static void start_and_stop_run_every_hook_in_order(void **state)
{
    (void)state;
    reset_container();
    size_t fds = count_fds();
    struct start_args args = {0};
    fire_until(EV_START, &args, CS_RUNNING);
    struct expect e = {0};
    expect_run(&e, FAKE_PREPARE, 0, FAKE_MODULES - 1);
    expect_run(&e, FAKE_SETUP, 0, FAKE_MODULES - 1);
    expect_run(&e, FAKE_CHILD, 0, FAKE_MODULES - 1);
    assert_log(&e);
    assert_true(c.pid > 0);
    assert_int_equal(c.pid, fake->init_pid);
    assert_string_equal(c.last_error, "");
    assert_audit("container.start", "ok", NULL);
    assert_true(fake_console_open(&c));

    struct stop_args stop = {.timeout_s = 10};
    fire_until(EV_STOP, &stop, CS_STOPPED);
    expect_run(&e, FAKE_CLEANUP, FAKE_MODULES - 1, 0);
    assert_log(&e);
    assert_string_equal(c.last_exit, "killed by SIGTERM");
    assert_string_equal(c.last_error, "");
    assert_saved_error("");
    assert_audit("container.stop", "ok", "init killed by SIGTERM");
    assert_null(c.lc->start);
    assert_false(fake_console_open(&c));
    assert_int_equal(c.pid, 0);
    assert_no_children();
    assert_int_equal(count_fds(), fds);
}

/* Fail the hook of phase at each position of the table in turn. */
static void fail_each_hook_of(enum fake_phase phase)
{
    for (int pos = 0; pos < FAKE_MODULES; pos++) {
        reset_container();
        size_t fds = count_fds();
        fake->fail_phase = phase;
        fake->fail_module = order[pos];
        struct start_args args = {0};
        fire_until(EV_START, &args, CS_STOPPED);

        struct expect e = {0};
        int last = FAKE_MODULES - 1;
        expect_run(&e, FAKE_PREPARE, 0, phase == FAKE_PREPARE ? pos : last);
        if (phase >= FAKE_SETUP)
            expect_run(&e, FAKE_SETUP, 0, phase == FAKE_SETUP ? pos : last);
        if (phase >= FAKE_CHILD)
            expect_run(&e, FAKE_CHILD, 0, pos);
        /* A failed prepare hook may have done part of its work: its own cleanup runs too. A
         * failure in the setup process or init comes after every prepare hook: all clean up. */
        expect_run(&e, FAKE_CLEANUP, phase == FAKE_PREPARE ? pos : last, 0);
        assert_log(&e);

        char reason[128];
        snprintf(reason, sizeof(reason), "%s: %s hook failed", fake_modules[order[pos]]->name, fake_phase_name(phase));
        assert_failed_start(reason, fds);
    }
}

static void a_failing_prepare_hook_is_cleaned_up(void **state)
{
    fail_each_hook_of(FAKE_PREPARE);
}
static void a_failing_setup_hook_is_cleaned_up(void **state)
{
    fail_each_hook_of(FAKE_SETUP);
}
static void a_failing_child_hook_is_cleaned_up(void **state)
{
    fail_each_hook_of(FAKE_CHILD);
}

static void a_refused_measurement_stops_before_any_module(void **state)
{
    (void)state;
    reset_container();
    size_t fds = count_fds();
    fake->measure_fails = true;
    struct start_args args = {0};
    fire_until(EV_START, &args, CS_STOPPED);
    struct expect e = {0};
    assert_log(&e);
    assert_failed_start("fake tpmd: measurement refused", fds);
}

static void a_refused_key_stops_before_any_module(void **state)
{
    (void)state;
    reset_container();
    size_t fds = count_fds();
    cfg.token.kind = TOKEN_KIND_SOFT;
    cfg.data_size_mb = 64;
    fake->key_fails = true;
    struct start_args args = {0};
    fire_until(EV_START, &args, CS_STOPPED);
    struct expect e = {0};
    assert_log(&e);
    assert_failed_start("fake scd: wrong PIN", fds);
}

/* A stop while the start waits for tpmd: the pending measurement is dropped, nothing ran. */
static void a_stop_while_measuring_ends_the_start(void **state)
{
    (void)state;
    reset_container();
    size_t fds = count_fds();
    struct start_args args = {0};
    tm_err err;
    assert_int_equal(container_fire(&c, EV_START, &args, &err), 0);
    assert_int_equal(c.state, CS_STARTING);
    assert_non_null(c.lc->measure);
    struct stop_args stop = {.timeout_s = 10};
    fire_until(EV_STOP, &stop, CS_STOPPED);
    struct expect e = {0};
    assert_log(&e);
    assert_null(c.lc->start);
    assert_null(c.lc->measure);
    assert_false(fake_console_open(&c));
    assert_audit("container.stop", "ok", NULL);
    assert_no_children();
    assert_int_equal(count_fds(), fds);
}

/* Once the blocking hook has been entered, fire a stop. */
static void stop_when_blocked(tm_source *src, void *userdata)
{
    static struct stop_args stop = {.timeout_s = 10};
    if (!__atomic_load_n(&fake->blocked, __ATOMIC_SEQ_CST)) {
        tm_loop_timer(d.loop, 5, stop_when_blocked, NULL);
        return;
    }
    tm_err err;
    assert_int_equal(container_fire(&c, EV_STOP, &stop, &err), 0);
}

/* A stop while the setup process (or init) is still at work: both are killed (init found
 * through the cgroups if its pid has not arrived yet), every prepared module cleans up, and the
 * container is stopped, not failed. */
static void stop_while_blocked_in(enum fake_phase phase)
{
    for (int pos = 0; pos < FAKE_MODULES; pos += 3) {
        reset_container();
        size_t fds = count_fds();
        fake->block_phase = phase;
        fake->block_module = order[pos];
        tm_loop_timer(d.loop, 5, stop_when_blocked, NULL);
        struct start_args args = {0};
        fire_until(EV_START, &args, CS_STOPPED);
        struct expect e = {0};
        int last = FAKE_MODULES - 1;
        expect_run(&e, FAKE_PREPARE, 0, last);
        expect_run(&e, FAKE_SETUP, 0, phase == FAKE_SETUP ? pos : last);
        if (phase == FAKE_CHILD)
            expect_run(&e, FAKE_CHILD, 0, pos);
        expect_run(&e, FAKE_CLEANUP, last, 0);
        assert_log(&e);
        /* A stop, not a failed start (before: "the setup process killed by SIGKILL", whenever
         * the stop found the setup process still alive). */
        assert_string_equal(c.last_error, "");
        assert_audit("container.stop", "ok", NULL);
        assert_null(c.lc->start);
        assert_false(fake_console_open(&c));
        assert_int_equal(c.pid, 0);
        assert_no_children();
        assert_int_equal(count_fds(), fds);
    }
}

static void a_stop_during_setup_ends_the_start(void **state)
{
    stop_while_blocked_in(FAKE_SETUP);
}
static void a_stop_during_init_setup_ends_the_start(void **state)
{
    stop_while_blocked_in(FAKE_CHILD);
}

/* freeze, frozen, unfreeze on a running container; a freezer that does not report frozen
 * thaws it again with the reason. */
static void freeze_and_thaw(void **state)
{
    (void)state;
    reset_container();
    size_t fds = count_fds();
    struct start_args args = {0};
    fire_until(EV_START, &args, CS_RUNNING);
    fire_until(EV_FREEZE, NULL, CS_FROZEN);
    assert_true(fake->frozen);
    assert_audit("container.freeze", "ok", NULL);
    fire_until(EV_UNFREEZE, NULL, CS_RUNNING);
    assert_false(fake->frozen);
    assert_audit("container.unfreeze", "ok", NULL);

    fake->freeze_result = -EIO;
    fire_until(EV_FREEZE, NULL, CS_RUNNING);
    assert_false(fake->frozen);
    assert_audit("container.freeze", "fail", "freezing did not complete: cannot read the freezer state");

    /* A frozen container is stopped with SIGKILL, delivered once thawed. */
    fake->freeze_result = 1;
    fire_until(EV_FREEZE, NULL, CS_FROZEN);
    struct stop_args stop = {.timeout_s = 10};
    fire_until(EV_STOP, &stop, CS_STOPPED);
    assert_false(fake->frozen);
    assert_string_equal(c.last_exit, "killed by SIGKILL");
    assert_no_children();
    assert_int_equal(count_fds(), fds);
}

/* Refused transitions change nothing (the cells state.c leaves empty). */
static void refused_events_change_nothing(void **state)
{
    (void)state;
    reset_container();
    static const enum cevent refused[] = {EV_STOP, EV_FREEZE, EV_UNFREEZE, EV_STARTED, EV_EXITED};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        tm_err err = {0};
        assert_int_equal(container_fire(&c, refused[i], NULL, &err), -EBUSY);
        char want[128];
        snprintf(want, sizeof(want), "cannot %s: the container is stopped", event_name(refused[i]));
        assert_string_equal(err.msg, want);
        assert_int_equal(c.state, CS_STOPPED);
    }
    assert_int_equal(fake->ncalls, 0);
    assert_int_equal(fake->audits, 0);
}

static int group_setup(void **state)
{
    (void)state;
    static char dir[] = "/tmp/test_lifecycle.XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    snprintf(d.run_dir, sizeof(d.run_dir), "%s/run", dir);
    snprintf(d.data_dir, sizeof(d.data_dir), "%s/data", dir);
    reset_container();
    container_run_dir(&c, run_dir, sizeof(run_dir));
    container_data_dir(&c, data_dir, sizeof(data_dir));
    /* lifecycle.c makes the container's run dir; the data dir is the create's (state.json). */
    char path[4096 + 16];
    const char *const dirs[] = {d.run_dir, d.data_dir};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/containers", dirs[i]);
        if (mkdir(dirs[i], 0700) < 0 || mkdir(path, 0700) < 0)
            return -1;
    }
    if (mkdir(data_dir, 0700) < 0)
        return -1;
    d.loop = tm_loop_new();
    d.device.allow_unsigned = true; /* a development rootfs: no GuestOS to resolve */
    if (!d.loop)
        return -1;
    daemon_observe(&d, &fake_observer);
    /* The real table's order, as modules.c runs it. */
    fake_reset();
    struct start_ctx ctx = {0};
    tm_err err;
    if (modules_run(PHASE_PREPARE, &ctx, NULL, &err) < 0 || fake->ncalls != FAKE_MODULES)
        return -1;
    for (int i = 0; i < FAKE_MODULES; i++)
        order[i] = fake->calls[i].module;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char path[4096 + 16];
    snprintf(path, sizeof(path), "%s/state.json", data_dir);
    unlink(path);
    rmdir(data_dir);
    rmdir(run_dir);
    const char *const dirs[] = {d.run_dir, d.data_dir};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/containers", dirs[i]);
        rmdir(path);
        rmdir(dirs[i]);
    }
    char *top = strrchr(d.run_dir, '/');
    *top = '\0';
    rmdir(d.run_dir);
    tm_loop_free(d.loop);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_and_stop_run_every_hook_in_order),
        cmocka_unit_test(a_failing_prepare_hook_is_cleaned_up),
        cmocka_unit_test(a_failing_setup_hook_is_cleaned_up),
        cmocka_unit_test(a_failing_child_hook_is_cleaned_up),
        cmocka_unit_test(a_refused_measurement_stops_before_any_module),
        cmocka_unit_test(a_refused_key_stops_before_any_module),
        cmocka_unit_test(a_stop_while_measuring_ends_the_start),
        cmocka_unit_test(a_stop_during_setup_ends_the_start),
        cmocka_unit_test(a_stop_during_init_setup_ends_the_start),
        cmocka_unit_test(freeze_and_thaw),
        cmocka_unit_test(refused_events_change_nothing),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, group_setup, group_teardown);
}
