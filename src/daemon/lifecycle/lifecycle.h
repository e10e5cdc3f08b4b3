/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Driving containers through the state table (state.h): what each action does in trustmed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "daemon.h"

struct start_args {
    bool attach; /* relay init's stdio to conn_id/req_id */
    bool stdin_credit; /* the client sends stdin within StdinCredit grants (session.h) */
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

/* A client waiting for a state change to finish (start, stop, freeze, unfreeze). */
enum wait_kind { WAIT_START, WAIT_STOP, WAIT_FREEZE, WAIT_UNFREEZE };
struct waiter {
    struct waiter *next;
    uint64_t conn_id, req_id;
    enum wait_kind kind;
};
void container_add_waiter(struct container *c, uint64_t conn_id, uint64_t req_id, enum wait_kind kind);
/* Forget the waiter for (conn_id, req_id), if there is one (its event was refused). */
void container_remove_waiter(struct container *c, uint64_t conn_id, uint64_t req_id);
/* Does connection conn_id wait for c's state change or hold one of its sessions? */
bool container_serves(const struct container *c, uint64_t conn_id);
/* Was c's running init started by an earlier trustmed (re-adopted)? */
bool container_adopted(const struct container *c);
/* Watch an init process through its pidfd (used by start and by re-adoption). */
int container_watch_init(struct container *c, pid_t pid, int pidfd, tm_err *err);
/* Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), 0 if gone. */
unsigned long long proc_starttime(pid_t pid);
/* Its own state of the container's runs (c->lc) at create and load, freed with its console;
 * its config anchor at remove, the core container's policy at every state change (daemon.h). */
extern const struct container_observer lifecycle_container_observer;
