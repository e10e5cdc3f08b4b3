/* SPDX-License-Identifier: GPL-2.0-or-later */
/* How a child trustmed follows through its pidfd ended (child_exit.c). */
#pragma once

/* For the watcher of one child's pidfd: has it ended? 1: yes, *status is its wait status, or -1
 * when someone else reaped it first (cgroups_kill hands every process of a dying container to the
 * reaper (reaper.h), whose pidfd may turn readable in the same round as the owner's: whichever runs
 * first reaps, the other gets ECHILD). 0: not yet (a spurious wake-up); <0: -errno. A watcher that
 * took ECHILD for "not yet" would keep its level-triggered pidfd readable forever: trustmed spun,
 * and the start or session it waited for was never answered. */
int child_exit_status(int pidfd, int *status);
