/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What lifecycle/ keeps of a container's current (or last) run: c->lc, allocated by the lifecycle
 * observer when the container is created or loaded. Private to lifecycle/ (and its unit test):
 * other folders see these values only through the accessors in lifecycle.h and session.h, so a
 * change here recompiles lifecycle/ only. Fields that core/ persists or other folders read (pid,
 * pidfd, started_at, last_error, last_exit, exit_code, actor) stay in struct container. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "event.h"

struct lc_state {
    tm_source *pidfd_src; /* init's pidfd in the loop */
    unsigned long long starttime; /* init's start time (clock ticks), guards against pid reuse */
    bool adopted; /* init was started by an earlier trustmed */
    bool starting_failed; /* the current start failed; c->last_error says why */
    struct start_op *start; /* only while starting */
    struct measure_op *measure; /* while its start waits for the TPM (measure.c) */
    /* Its GuestOS's anchor entry as tpmd last showed it, what the next start expects (measure.c;
     * only a guess that saves a round trip: tpmd compares it with the table). */
    uint8_t guestos_anchor_seen[40];
    bool guestos_anchor_seen_valid;
    tm_source *timer; /* stop (kill) or freeze (poll) timer */
    int freeze_polls;
    int wait_status; /* init's raw wait status, -1 when unknown */
    int userns_fd; /* its own user namespace while it runs (exec sessions join it) */
    unsigned long long userns_dev, userns_ino; /* identity of that namespace (for re-adoption) */
    int mntns_fd; /* init's mount namespace from its exec to its exit (TM_SYNC_MNTNS), or -1 */
    struct waiter *waiters; /* clients waiting for a state change (lifecycle.h) */
    struct session *sessions; /* attach and exec sessions */
};
