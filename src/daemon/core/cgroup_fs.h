/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cgroup hierarchies as found at run time: v1 (legacy), v2 (unified) or both (hybrid).
 * Each controller trustme uses is looked up in whichever hierarchy provides it. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define CG_MAX_HIERARCHIES 16

enum cg_controller {
    CG_MEMORY = 1u << 0,
    CG_PIDS = 1u << 1,
    CG_CPUSET = 1u << 2,
    CG_FREEZER = 1u << 3,
    CG_DEVICES = 1u << 4,
    CG_CPU = 1u << 5,
    CG_OTHER = 1u << 6,
};

struct cg_hierarchy {
    /* The mount point, or, delegated by systemd (cg_delegate), the unit's cgroup in it: what
     * container cgroup paths are relative to. */
    char mount[PATH_MAX];
    bool v2;
    unsigned controllers; /* for v2: those listed in cgroup.controllers of the root */
};

struct cg_layout {
    struct cg_hierarchy h[CG_MAX_HIERARCHIES];
    size_t n;
    int v2; /* index of the cgroup2 hierarchy, -1 if none */
    int memory, pids, cpuset, freezer, devices; /* index of the hierarchy providing it, -1 if none */
};

int cg_detect(struct cg_layout *l, tm_err *err);
/* The same from a mountinfo file (for tests); cgroup2's controllers are read from
 * <mount point>/cgroup.controllers. */
int cg_detect_from(struct cg_layout *l, const char *mountinfo, tm_err *err);
/* "legacy (v1)", "unified (v2)" or "hybrid (v1 + v2)". */
const char *cg_mode(const struct cg_layout *l);
/* <mount of hierarchy i>/<parent>[/<leaf>] */
int cg_path(const struct cg_layout *l, size_t i, const char *parent, const char *leaf, char *out, size_t size);
/* Create <parent> in every hierarchy and make it usable as a parent of container cgroups
 * (cpuset.cpus/mems in v1, controllers enabled for children in v2). */
int cg_init_parent(const struct cg_layout *l, const char *parent, tm_err *err);
/* Under systemd (a unit with Delegate=yes): in every hierarchy where trustmed's own cgroup
 * (read from proc_cgroup, i.e. /proc/self/cgroup) is a unit's (*.service, *.scope), move trustmed
 * into <unit>/supervisor and make the unit's cgroup the root of what follows, so that the
 * containers' cgroups are made in the delegated subtree. Elsewhere nothing changes.
 * *ret_unit: the unit's name, or NULL when no hierarchy was delegated. */
int cg_delegate(struct cg_layout *l, const char *proc_cgroup, const char **ret_unit, tm_err *err);
/* Remove <parent> where it is empty. */
void cg_remove_parent(const struct cg_layout *l, const char *parent);
