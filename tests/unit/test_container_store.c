/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The container store (core/container.c) and the observers through which the subsystems above
 * core/ keep per-container state (daemon.h): called in registration order, undone in reverse, a
 * failed create leaves nothing behind. Links core/ alone, which is the layer rule's point: the
 * store needs nothing above it. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "container.h"
#include "container_slots.h"
#include "daemon.h"
#include "fileio.h"

#define CONFIG "{\"name\":\"demo\",\"rootfs\":{\"path\":\"/srv/demo\"}}"

static char calls[256];
static int fail_created = -1; /* which observer's created hook fails (-1: none) */

static void note(const char *what)
{
    strncat(calls, what, sizeof(calls) - strlen(calls) - 1);
}

#define OBSERVER(n)                                                                        \
    static int created_##n(struct container *c, tm_err *err)                               \
    {                                                                                      \
        (void)c;                                                                           \
        note("c" #n " ");                                                                  \
        return fail_created == n ? tm_err_set(err, ENOSPC, "observer " #n " refused") : 0; \
    }                                                                                      \
    static int loaded_##n(struct container *c, tm_err *err)                                \
    {                                                                                      \
        (void)c, (void)err;                                                                \
        note("l" #n " ");                                                                  \
        return 0;                                                                          \
    }                                                                                      \
    static void removed_##n(struct container *c)                                           \
    {                                                                                      \
        (void)c, note("r" #n " ");                                                         \
    }                                                                                      \
    static void freed_##n(struct container *c)                                             \
    {                                                                                      \
        (void)c, note("f" #n " ");                                                         \
    }                                                                                      \
    static const struct container_observer observer_##n = {                                \
        .name = #n, .created = created_##n, .loaded = loaded_##n, .removed = removed_##n, .freed = freed_##n}

OBSERVER(0);
OBSERVER(1);
OBSERVER(2);

struct fixture {
    char dir[64];
    struct daemon d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/trustme-unit-store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->d.data_dir, sizeof(f->d.data_dir), "%s/data", f->dir);
    snprintf(f->d.run_dir, sizeof(f->d.run_dir), "%s/run", f->dir);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/containers", f->d.data_dir);
    assert_int_equal(mkdir_p(path, 0700), 0);
    f->d.id_base = 100000;
    daemon_observe(&f->d, &observer_0);
    daemon_observe(&f->d, &observer_1);
    daemon_observe(&f->d, &observer_2);
    calls[0] = '\0';
    fail_created = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    while (f->d.containers) {
        struct container *c = f->d.containers;
        f->d.containers = c->next;
        container_free(c);
    }
    rm_rf(f->dir);
    free(f);
    return 0;
}

static int create(struct daemon *d, struct container **ret, tm_err *err)
{
    struct container_config *cfg;
    assert_int_equal(config_parse(CONFIG, strlen(CONFIG), &cfg, err), 0);
    int r = container_create(d, cfg, CONFIG, strlen(CONFIG), NULL, ret, err);
    if (r < 0)
        config_free(cfg); /* the caller still owns it */
    return r;
}

/* Entries in <data>/containers, hidden staging directories included. */
static int entries(const struct daemon *d)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/containers", d->data_dir);
    DIR *dir = opendir(path);
    assert_non_null(dir);
    int n = 0;
    for (struct dirent *de; (de = readdir(dir));)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(dir);
    return n;
}

static void test_create_and_remove_call_every_observer_in_order(void **state)
{
    struct fixture *f = *state;
    struct container *c;
    tm_err err;
    assert_int_equal(create(&f->d, &c, &err), 0);
    assert_string_equal(calls, "c0 c1 c2 ");
    assert_ptr_equal(container_find(&f->d, "demo"), c);
    assert_int_equal(entries(&f->d), 1);
    calls[0] = '\0';
    assert_int_equal(container_remove(c, &err), 0);
    assert_string_equal(calls, "r2 r1 r0 f2 f1 f0 ");
    assert_null(container_find(&f->d, "demo"));
    assert_int_equal(entries(&f->d), 0);
}

static void test_a_refused_create_undoes_the_observers_before_it(void **state)
{
    struct fixture *f = *state;
    fail_created = 1;
    struct container *c = NULL;
    tm_err err;
    assert_int_equal(create(&f->d, &c, &err), -ENOSPC);
    assert_err_contains(&err, "observer 1 refused");
    /* 0 took its part and gives it back; 1 refused and 2 never ran; the half-made object is
     * freed through every observer (freeing must tolerate a part never taken). */
    assert_string_equal(calls, "c0 c1 r0 f2 f1 f0 ");
    assert_null(f->d.containers);
    assert_int_equal(entries(&f->d), 0);
}

static void test_load_calls_the_loaded_hooks(void **state)
{
    struct fixture *f = *state;
    struct container *c;
    tm_err err;
    assert_int_equal(create(&f->d, &c, &err), 0);
    char uuid[sizeof(c->uuid)];
    memcpy(uuid, c->uuid, sizeof(uuid));
    /* A second daemon on the same data dir: what a restart sees. */
    struct daemon d2 = {.id_base = f->d.id_base};
    memcpy(d2.data_dir, f->d.data_dir, sizeof(d2.data_dir));
    memcpy(d2.run_dir, f->d.run_dir, sizeof(d2.run_dir));
    daemon_observe(&d2, &observer_0);
    daemon_observe(&d2, &observer_1);
    calls[0] = '\0';
    assert_int_equal(containers_load(&d2, &err), 0);
    assert_string_equal(calls, "l0 l1 ");
    assert_non_null(d2.containers);
    assert_string_equal(d2.containers->uuid, uuid);
    assert_int_equal(d2.containers->uid_base, c->uid_base);
    container_free(d2.containers);
}

/* Per-container state of a subsystem (container_slots.h): found by its slot, freed with the
 * container after the observers' freed hooks, the last attached first; a detached one is the
 * caller's again. */
static void free_slot_state(struct container *c, void *state)
{
    (void)c;
    note(state);
}
static const struct container_slot slot_a = {"a", free_slot_state}, slot_b = {"b", free_slot_state},
                                   slot_c = {"c", free_slot_state};

static void test_slots_hold_per_container_state(void **state)
{
    struct fixture *f = *state;
    struct container *c;
    tm_err err;
    assert_int_equal(create(&f->d, &c, &err), 0);
    assert_null(container_state(c, &slot_a));
    assert_int_equal(container_attach(c, &slot_a, "sa ", &err), 0);
    assert_int_equal(container_attach(c, &slot_b, "sb ", &err), 0);
    assert_int_equal(container_attach(c, &slot_c, "sc ", &err), 0);
    assert_int_equal(container_attach(c, &slot_b, "sb2 ", &err), -EEXIST);
    assert_string_equal(container_state(c, &slot_b), "sb ");
    assert_string_equal(container_detach(c, &slot_b), "sb ");
    assert_null(container_state(c, &slot_b));
    assert_null(container_detach(c, &slot_b));
    assert_string_equal(container_state(c, &slot_c), "sc ");
    calls[0] = '\0';
    assert_int_equal(container_remove(c, &err), 0);
    assert_string_equal(calls, "r2 r1 r0 f2 f1 f0 sc sa ");
}

static void test_slots_are_bounded(void **state)
{
    struct fixture *f = *state;
    struct container *c;
    tm_err err;
    assert_int_equal(create(&f->d, &c, &err), 0);
    static struct container_slot slots[CONTAINER_SLOTS_MAX + 1];
    for (int i = 0; i <= CONTAINER_SLOTS_MAX; i++)
        slots[i] = (struct container_slot){.name = "many"};
    for (int i = 0; i < CONTAINER_SLOTS_MAX; i++)
        assert_int_equal(container_attach(c, &slots[i], "x", &err), 0);
    assert_int_equal(container_attach(c, &slots[CONTAINER_SLOTS_MAX], "x", &err), -ENOSPC);
    assert_err_contains(&err, "no free per-container slot");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_remove_call_every_observer_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_create_undoes_the_observers_before_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_calls_the_loaded_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_hold_per_container_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_are_bounded, setup, teardown),
    };
    return cmocka_run_group_tests_name("container_store", tests, NULL, NULL);
}
