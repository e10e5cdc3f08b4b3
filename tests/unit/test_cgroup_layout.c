/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cgroup layout detection (src/daemon/core/cgroup_fs.c) from made-up mountinfo files: the
 * legacy, unified and hybrid layouts a device may have, not only the one this machine has. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "cgroup_fs.h"

struct fixture {
    char dir[64];
    char mountinfo[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/cglayout-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->mountinfo, sizeof(f->mountinfo), "%s/mountinfo", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* One mountinfo line for a cgroup mount of hierarchy `dev` at <dir>/<name>. */
static void add_mount(struct fixture *f, FILE *mi, const char *dev, const char *root, const char *name,
                      const char *fstype, const char *superopts)
{
    char mnt[128];
    snprintf(mnt, sizeof(mnt), "%s/%s", f->dir, name);
    mkdir(mnt, 0755);
    fprintf(mi, "40 31 %s %s %s rw,relatime shared:9 - %s cgroup %s\n", dev, root, mnt, fstype, superopts);
}

static void set_v2_controllers(struct fixture *f, const char *name, const char *controllers)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s/cgroup.controllers", f->dir, name);
    FILE *c = fopen(path, "w");
    assert_non_null(c);
    fprintf(c, "%s\n", controllers);
    fclose(c);
}

static int detect(struct fixture *f, struct cg_layout *l, tm_err *err)
{
    return cg_detect_from(l, f->mountinfo, err);
}

static void hybrid_layout(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    fprintf(mi, "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
    const char *v1[] = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"};
    for (size_t i = 0; i < sizeof(v1) / sizeof(v1[0]); i++) {
        char dev[16], opts[32];
        snprintf(dev, sizeof(dev), "0:%zu", 29 + i);
        snprintf(opts, sizeof(opts), "rw,%s", v1[i]);
        add_mount(f, mi, dev, "/", v1[i], "cgroup", opts);
    }
    add_mount(f, mi, "0:37", "/", "systemd", "cgroup", "rw,name=systemd");
    add_mount(f, mi, "0:38", "/", "unified", "cgroup2", "rw");
    fclose(mi);
    set_v2_controllers(f, "unified", "hugetlb");

    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), 0);
    assert_int_equal(l.n, 10);
    assert_string_equal(cg_mode(&l), "hybrid (v1 + v2)");
    assert_true(l.v2 >= 0 && l.h[l.v2].v2);
    assert_true(l.memory >= 0 && !l.h[l.memory].v2);
    assert_non_null(strstr(l.h[l.memory].mount, "/memory"));
    assert_non_null(strstr(l.h[l.freezer].mount, "/freezer"));
    assert_non_null(strstr(l.h[l.devices].mount, "/devices"));
    assert_non_null(strstr(l.h[l.pids].mount, "/pids"));
    assert_non_null(strstr(l.h[l.cpuset].mount, "/cpuset"));
}

static void unified_layout(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    add_mount(f, mi, "0:26", "/", "cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot");
    fclose(mi);
    set_v2_controllers(f, "cgroup", "cpuset cpu io memory hugetlb pids rdma misc");

    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(cg_mode(&l), "unified (v2)");
    assert_int_equal(l.v2, 0);
    assert_int_equal(l.memory, 0);
    assert_int_equal(l.pids, 0);
    assert_int_equal(l.cpuset, 0);
    /* v2 has no freezer or devices controller: cgroup.freeze and a BPF program stand in. */
    assert_int_equal(l.freezer, -1);
    assert_int_equal(l.devices, -1);
}

static void legacy_layout_with_joint_mounts(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    add_mount(f, mi, "0:29", "/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct");
    add_mount(f, mi, "0:30", "/", "memory", "cgroup", "rw,memory");
    add_mount(f, mi, "0:31", "/", "pids", "cgroup", "rw,pids");
    add_mount(f, mi, "0:32", "/", "freezer", "cgroup", "rw,freezer");
    add_mount(f, mi, "0:33", "/", "devices", "cgroup", "rw,devices");
    add_mount(f, mi, "0:34", "/", "cpuset", "cgroup", "rw,cpuset");
    fclose(mi);

    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), 0);
    assert_int_equal(l.n, 6);
    assert_string_equal(cg_mode(&l), "legacy (v1)");
    assert_int_equal(l.v2, -1);
    assert_true(l.h[0].controllers & CG_CPU);
    assert_non_null(strstr(l.h[l.memory].mount, "/memory"));
}

static void bind_mounts_and_subtrees_are_not_counted_twice(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    add_mount(f, mi, "0:30", "/", "memory", "cgroup", "rw,memory");
    add_mount(f, mi, "0:30", "/", "memory-again", "cgroup", "rw,memory"); /* same hierarchy */
    add_mount(f, mi, "0:31", "/sub", "pids-sub", "cgroup", "rw,pids"); /* not its root */
    fclose(mi);

    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.pids, -1);
}

static void no_cgroups_is_an_error(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    fprintf(mi, "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
    fclose(mi);
    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), -ENOENT);
    assert_err_contains(&err, "no cgroup file system");
}

static void paths_of_container_cgroups(void **state)
{
    struct fixture *f = *state;
    FILE *mi = fopen(f->mountinfo, "w");
    add_mount(f, mi, "0:30", "/", "memory", "cgroup", "rw,memory");
    fclose(mi);
    struct cg_layout l;
    tm_err err = {0};
    assert_int_equal(detect(f, &l, &err), 0);
    char out[4096], want[256];
    assert_int_equal(cg_path(&l, 0, "trustme", "abc", out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%s/memory/trustme/abc", f->dir);
    assert_string_equal(out, want);
    char small[8];
    assert_int_equal(cg_path(&l, 0, "trustme", "abc", small, sizeof(small)), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hybrid_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(unified_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_layout_with_joint_mounts, setup, teardown),
        cmocka_unit_test_setup_teardown(bind_mounts_and_subtrees_are_not_counted_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(no_cgroups_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(paths_of_container_cgroups, setup, teardown),
    };
    return cmocka_run_group_tests_name("cgroup_layout", tests, NULL, NULL);
}
