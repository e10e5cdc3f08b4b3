/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Children trustmed no longer follows (killed on an error path, a helper whose session ended
 * first, whatever a dying container left in its cgroups) must still be reaped, or they stay
 * zombies for trustmed's lifetime. */
#pragma once

#include <sys/types.h>

struct daemon;

/* Reap the process behind pidfd when it exits; takes ownership of pidfd. */
void reaper_take_pidfd(struct daemon *d, int pidfd);
/* The same for a pid. Safe for any pid: one that is not our child is simply forgotten. */
void reaper_take_pid(struct daemon *d, pid_t pid);
/* At exit, before the event loop goes: forget every process still waited for. */
void reaper_free_all(void);
