/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Per-container cgroups: limits, device rules, freezing and killing (module_cgroups). */
#pragma once

#include <stdbool.h>

#include "error.h"

struct container;
struct daemon;

/* Ask the freezer to freeze (or thaw) every task of the container. */
int cgroups_set_frozen(struct container *c, bool frozen, tm_err *err);
/* 1 when all tasks are frozen, 0 while freezing is still in progress, -errno on error. */
int cgroups_is_frozen(struct container *c);
/* Up to max pids of the tasks in the container's cgroups; returns how many, or -errno. */
int cgroups_list_tasks(struct daemon *d, const char *uuid, int *pids, int max);
/* Number of tasks left in the container's cgroups (0 if they are gone), or -errno. */
int cgroups_count_tasks(struct daemon *d, const char *uuid);
/* SIGKILL every task in the container's cgroups (trustmed's own children among them are reaped). */
void cgroups_kill(struct daemon *d, const char *uuid);
/* SIGKILL every task in the container's cgroups and remove them (retrying later if busy). */
void cgroups_destroy(struct daemon *d, const char *uuid);
/* True if the pid is in the container's cgroup (re-adoption sanity check). */
bool cgroups_contains(struct daemon *d, const char *uuid, int pid);
