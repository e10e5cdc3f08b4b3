/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "cgroup_fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "log.h"

static const struct {
    const char *name;
    enum cg_controller bit;
} controller_names[] = {
    {"memory", CG_MEMORY},   {"pids", CG_PIDS},       {"cpuset", CG_CPUSET},
    {"freezer", CG_FREEZER}, {"devices", CG_DEVICES}, {"cpu", CG_CPU},
};

static unsigned parse_controllers(const char *list, char sep)
{
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchrnul(p, sep);
        size_t n = (size_t)(e - p);
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(controller_names); i++)
            if (strlen(controller_names[i].name) == n && strncmp(p, controller_names[i].name, n) == 0) {
                bits |= controller_names[i].bit;
                known = true;
            }
        if (!known && n > 0 && strncmp(p, "rw", n) != 0 && strncmp(p, "ro", n) != 0)
            bits |= CG_OTHER;
        p = *e ? e + 1 : e;
    }
    return bits;
}

static void assign(struct cg_layout *l, int idx)
{
    /* A v1 hierarchy wins over v2 for a controller: in a hybrid layout a controller can only
     * be bound to one of them, and v2 lists only what is not bound to v1. */
    unsigned c = l->h[idx].controllers;
    int *slots[] = {&l->memory, &l->pids, &l->cpuset, &l->freezer, &l->devices};
    enum cg_controller bits[] = {CG_MEMORY, CG_PIDS, CG_CPUSET, CG_FREEZER, CG_DEVICES};
    for (size_t i = 0; i < ARRAY_SIZE(bits); i++)
        if ((c & bits[i]) && (*slots[i] < 0 || l->h[*slots[i]].v2))
            *slots[i] = idx;
}

int cg_detect(struct cg_layout *l, tm_err *err)
{
    return cg_detect_from(l, "/proc/self/mountinfo", err);
}

int cg_detect_from(struct cg_layout *l, const char *mountinfo, tm_err *err)
{
    *l = (struct cg_layout){.v2 = -1, .memory = -1, .pids = -1, .cpuset = -1, .freezer = -1, .devices = -1};
    _cleanup_fclose_ FILE *f = fopen(mountinfo, "re");
    if (!f)
        return tm_err_sys(err, "cannot read %s", mountinfo);
    char line[4096];
    char seen_dev[CG_MAX_HIERARCHIES][32];
    while (fgets(line, sizeof(line), f)) {
        char dev[32], root[PATH_MAX], mnt[PATH_MAX], fstype[32], opts[1024];
        /* id parent major:minor root mount-point options [optional fields] - fstype source super */
        if (sscanf(line, "%*d %*d %31s %4095s %4095s", dev, root, mnt) != 3)
            continue;
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(sep + 3, "%31s %*s %1023s", fstype, opts) != 2)
            continue;
        bool v2 = strcmp(fstype, "cgroup2") == 0;
        if ((!v2 && strcmp(fstype, "cgroup") != 0) || strcmp(root, "/") != 0)
            continue;
        bool dup = false;
        for (size_t i = 0; i < l->n && !dup; i++)
            dup = strcmp(seen_dev[i], dev) == 0;
        if (dup || l->n >= CG_MAX_HIERARCHIES)
            continue;
        struct cg_hierarchy *h = &l->h[l->n];
        snprintf(h->mount, sizeof(h->mount), "%s", mnt);
        h->v2 = v2;
        if (v2) {
            char path[PATH_MAX + 32], ctl[512] = "";
            snprintf(path, sizeof(path), "%s/cgroup.controllers", mnt);
            read_string_file(path, ctl, sizeof(ctl));
            h->controllers = parse_controllers(ctl, ' ');
            l->v2 = (int)l->n;
        } else {
            h->controllers = parse_controllers(opts, ',');
        }
        snprintf(seen_dev[l->n], sizeof(seen_dev[0]), "%s", dev);
        l->n++;
    }
    for (size_t i = 0; i < l->n; i++)
        assign(l, (int)i);
    if (l->n == 0)
        return tm_err_set(err, ENOENT, "no cgroup file system is mounted");
    if (l->memory < 0 || l->pids < 0 || (l->freezer < 0 && l->v2 < 0))
        log_warn("cgroups: memory, pids or freezer controller missing; those limits are not enforced");
    return 0;
}

const char *cg_mode(const struct cg_layout *l)
{
    bool v1 = false;
    for (size_t i = 0; i < l->n; i++)
        v1 |= !l->h[i].v2;
    if (v1 && l->v2 >= 0)
        return "hybrid (v1 + v2)";
    return v1 ? "legacy (v1)" : "unified (v2)";
}

int cg_path(const struct cg_layout *l, size_t i, const char *parent, const char *leaf, char *out, size_t size)
{
    int n = leaf ? snprintf(out, size, "%s/%s/%s", l->h[i].mount, parent, leaf)
                 : snprintf(out, size, "%s/%s", l->h[i].mount, parent);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Copy a v1 cpuset file from the parent when it is empty (a new v1 cpuset has no CPUs). */
static int cpuset_inherit(const char *dir, const char *file)
{
    char path[PATH_MAX + 64], parent[PATH_MAX + 64], val[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (read_string_file(path, val, sizeof(val)) == 0 && val[0])
        return 0;
    snprintf(parent, sizeof(parent), "%s/../%s", dir, file);
    int r = read_string_file(parent, val, sizeof(val));
    return r < 0 ? r : write_string_file(path, val);
}

/* In v2, a controller must be enabled in every ancestor's subtree_control to reach a child. */
static int v2_enable_controllers(const struct cg_hierarchy *h, const char *parent)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", h->mount);
    char rel[256];
    snprintf(rel, sizeof(rel), "%s", parent);
    char *save = NULL;
    for (char *comp = strtok_r(rel, "/", &save);; comp = strtok_r(NULL, "/", &save)) {
        for (size_t i = 0; i < ARRAY_SIZE(controller_names); i++) {
            if (!(h->controllers & controller_names[i].bit) || controller_names[i].bit == CG_FREEZER ||
                controller_names[i].bit == CG_DEVICES)
                continue;
            char path[PATH_MAX + 32], cmd[32];
            snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
            snprintf(cmd, sizeof(cmd), "+%s", controller_names[i].name);
            int r = write_string_file(path, cmd);
            if (r < 0)
                log_warn("cgroups: cannot enable %s in %s: %s", controller_names[i].name, dir, strerror(-r));
        }
        if (!comp)
            break;
        size_t len = strlen(dir);
        snprintf(dir + len, sizeof(dir) - len, "/%s", comp);
    }
    return 0;
}

int cg_init_parent(const struct cg_layout *l, const char *parent, tm_err *err)
{
    for (size_t i = 0; i < l->n; i++) {
        char dir[PATH_MAX];
        if (cg_path(l, i, parent, NULL, dir, sizeof(dir)) < 0)
            return tm_err_set(err, ENAMETOOLONG, "cgroup path too long");
        int r = mkdir_p(dir, 0755);
        if (r < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot create cgroup %s", dir);
        }
        if (!l->h[i].v2 && (l->h[i].controllers & CG_CPUSET)) {
            /* Every level below the root needs CPUs and memory nodes before a task may join. */
            char sub[PATH_MAX];
            snprintf(sub, sizeof(sub), "%s", l->h[i].mount);
            char rel[256], *save = NULL;
            snprintf(rel, sizeof(rel), "%s", parent);
            for (char *comp = strtok_r(rel, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
                size_t len = strlen(sub);
                snprintf(sub + len, sizeof(sub) - len, "/%s", comp);
                if ((r = cpuset_inherit(sub, "cpuset.cpus")) < 0 || (r = cpuset_inherit(sub, "cpuset.mems")) < 0) {
                    errno = -r;
                    return tm_err_sys(err, "cannot initialise cpuset %s", sub);
                }
            }
        }
        if (l->h[i].v2)
            v2_enable_controllers(&l->h[i], parent);
    }
    return 0;
}

void cg_remove_parent(const struct cg_layout *l, const char *parent)
{
    for (size_t i = 0; i < l->n; i++) {
        char dir[PATH_MAX];
        if (cg_path(l, i, parent, NULL, dir, sizeof(dir)) == 0 && rmdir(dir) < 0 && errno != ENOENT && errno != EBUSY &&
            errno != ENOTEMPTY)
            log_warn("cannot remove cgroup %s: %m", dir);
    }
}

/* Whether pid is listed in dir/cgroup.procs. */
static bool cgroup_has(const char *dir, pid_t pid)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    long n;
    while (f && fscanf(f, "%ld", &n) == 1)
        if (n == (long)pid)
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int cg_delegate(struct cg_layout *l, const char *proc_cgroup, const char **ret_unit, tm_err *err)
{
    static char unit[256];
    *ret_unit = NULL;
    pid_t self = getpid();
    for (size_t i = 0; i < l->n; i++) {
        struct cg_hierarchy *h = &l->h[i];
        _cleanup_fclose_ FILE *f = fopen(proc_cgroup, "re");
        if (!f)
            return tm_err_sys(err, "cannot read %s", proc_cgroup);
        /* "id:controllers:path" per hierarchy; which line is h's is told by its cgroup.procs
         * (controller lists do not name every hierarchy: name=systemd, blkio, ...). */
        char line[PATH_MAX + 256], own[PATH_MAX] = "";
        while (!own[0] && fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\n")] = '\0';
            char *path = strchr(line, ':');
            path = path ? strchr(path + 1, ':') : NULL;
            if (!path || path[1] != '/' || strstr(path, "/.."))
                continue;
            char dir[PATH_MAX * 2];
            snprintf(dir, sizeof(dir), "%s%s", h->mount, path + 1);
            if (cgroup_has(dir, self))
                snprintf(own, sizeof(own), "%s", path + 1);
        }
        /* systemd >= 254 with DelegateSubgroup=supervisor starts it in the leaf already. */
        if (ends_with(own, "/supervisor"))
            *strrchr(own, '/') = '\0';
        if (!ends_with(own, ".service") && !ends_with(own, ".scope"))
            continue; /* not a unit's cgroup: this hierarchy is not delegated to us */
        char base[PATH_MAX * 2], leaf[PATH_MAX * 2 + 16];
        int n = snprintf(base, sizeof(base), "%s%s", h->mount, own);
        if (n < 0 || (size_t)n >= sizeof(h->mount))
            return tm_err_set(err, ENAMETOOLONG, "cgroup path too long");
        snprintf(leaf, sizeof(leaf), "%s/supervisor", base);
        if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
            return tm_err_sys(err, "cannot create cgroup %s", leaf);
        int r;
        /* A new v1 cpuset has no CPUs: every level from the root down gets its parent's. */
        for (char *p = leaf + strlen(h->mount); !h->v2 && (h->controllers & CG_CPUSET) && p; p = strchr(p + 1, '/')) {
            char sub[sizeof(leaf)];
            snprintf(sub, sizeof(sub), "%.*s", (int)(strchrnul(p + 1, '/') - leaf), leaf);
            if ((r = cpuset_inherit(sub, "cpuset.cpus")) < 0 || (r = cpuset_inherit(sub, "cpuset.mems")) < 0) {
                errno = -r;
                return tm_err_sys(err, "cannot initialise cpuset %s", sub);
            }
        }
        /* In v2 a cgroup whose children get controllers holds no process itself. */
        snprintf(line, sizeof(line), "%s/cgroup.procs", leaf);
        if ((r = write_string_file(line, "0")) < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot move trustmed into %s", leaf);
        }
        snprintf(h->mount, sizeof(h->mount), "%s", base);
        snprintf(unit, sizeof(unit), "%s", strrchr(own, '/') + 1);
        *ret_unit = unit;
    }
    return 0;
}
