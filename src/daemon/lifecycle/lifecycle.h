/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Driving containers through the state table (state.h): what each action does in trustmed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "daemon.h"

struct start_args {
    bool attach; /* relay init's stdio to conn_id/req_id */
    uint64_t conn_id, req_id;
    const ProtobufCBinaryData *pin; /* the token's PIN (encrypted data), only during the call */
};

struct stop_args {
    unsigned timeout_s; /* grace period after SIGTERM; 0 = SIGKILL at once */
    bool kill;
};

#define STOP_TIMEOUT_DEFAULT_S 10
#define START_TIMEOUT_MS (300 * 1000)

/* Apply event ev (with its argument, or NULL) to c. A refused transition returns -EBUSY with a
 * message in err and changes nothing. */
int container_fire(struct container *c, enum cevent ev, const void *arg, tm_err *err);
void container_add_waiter(struct container *c, uint64_t conn_id, uint64_t req_id, enum wait_kind kind);
/* Watch an init process through its pidfd (used by start and by re-adoption). */
int container_watch_init(struct container *c, pid_t pid, int pidfd, tm_err *err);
/* Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), 0 if gone. */
unsigned long long proc_starttime(pid_t pid);
/* Its console at free, its config anchor at remove, the core container's policy at every state
 * change (daemon.h). */
extern const struct container_observer lifecycle_container_observer;
