/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The container lifecycle as one explicit transition table: state x event -> next state + action.
 *
 *   STOPPED -> STARTING -> RUNNING <-> (FREEZING -> FROZEN) -> STOPPING -> STOPPED
 *
 * Every state change of a container goes through state_next(); lifecycle.c carries out the action
 * the table names. Pairs missing from the table are refused with a message (state_refusal). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Values match trustme.ContainerState in proto/control.proto. */
enum cstate {
    CS_STOPPED = 1,
    CS_STARTING = 2,
    CS_RUNNING = 3,
    CS_FREEZING = 4,
    CS_FROZEN = 5,
    CS_STOPPING = 6,
};
#define CS_FIRST CS_STOPPED
#define CS_LAST CS_STOPPING

enum cevent {
    EV_START, /* a client asked to start */
    EV_STARTED, /* init has exec'd */
    EV_START_FAILED, /* a start step failed, or the start timed out */
    EV_STOP, /* a client (or shutdown) asked to stop */
    EV_EXITED, /* the container's last process is gone */
    EV_FREEZE, /* a client asked to freeze */
    EV_FROZEN, /* the freezer reports all tasks frozen */
    EV_FREEZE_FAILED, /* freezing did not complete in time */
    EV_UNFREEZE, /* a client asked to thaw */
    EV_COUNT
};

enum caction {
    ACT_INVALID = 0, /* not allowed in this state */
    ACT_NONE, /* change state only */
    ACT_BEGIN_START, /* run the prepare hooks and spawn the setup process */
    ACT_STARTED, /* record the running init, answer waiting clients */
    ACT_ABORT_START, /* kill whatever the start created; EXITED follows */
    ACT_STOP, /* signal init (TERM, or KILL), arm the kill timer */
    ACT_CLEANUP, /* run the cleanup hooks in reverse, record how init ended */
    ACT_FREEZE, /* ask the freezer, poll until frozen */
    ACT_FROZEN, /* answer waiting clients */
    ACT_THAW, /* thaw and answer waiting clients */
};

struct transition {
    enum cstate next;
    enum caction action;
};

/* The transition for (state, event); action is ACT_INVALID if the event is not allowed. */
struct transition state_next(enum cstate state, enum cevent event);
const char *state_name(enum cstate state);
const char *event_name(enum cevent event);
/* A sentence for a refused transition, e.g. "cannot freeze: the container is stopped". */
const char *state_refusal(enum cstate state, enum cevent event, char *buf, size_t size);
/* True in the states where the container has processes (or is creating them). */
bool state_is_active(enum cstate state);
