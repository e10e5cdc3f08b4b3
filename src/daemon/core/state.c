/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "state.h"

#include <stdio.h>

#define T(n, a)                    \
    {                              \
        .next = (n), .action = (a) \
    }

static const struct transition table[CS_LAST + 1][EV_COUNT] =
    {
        [CS_STOPPED] =
            {
                [EV_START] = T(CS_STARTING, ACT_BEGIN_START),
            },
        [CS_STARTING] =
            {
                [EV_STARTED] = T(CS_RUNNING, ACT_STARTED),
                [EV_START_FAILED] = T(CS_STOPPING, ACT_ABORT_START),
                [EV_STOP] = T(CS_STOPPING, ACT_ABORT_START),
                [EV_EXITED] = T(CS_STOPPED, ACT_CLEANUP),
            },
        [CS_RUNNING] =
            {
                [EV_STOP] = T(CS_STOPPING, ACT_STOP),
                [EV_EXITED] = T(CS_STOPPED, ACT_CLEANUP),
                [EV_FREEZE] = T(CS_FREEZING, ACT_FREEZE),
            },
        [CS_FREEZING] =
            {
                [EV_FROZEN] = T(CS_FROZEN, ACT_FROZEN),
                [EV_FREEZE_FAILED] = T(CS_RUNNING, ACT_THAW),
                [EV_STOP] = T(CS_STOPPING, ACT_STOP),
                [EV_EXITED] = T(CS_STOPPED, ACT_CLEANUP),
            },
        [CS_FROZEN] =
            {
                [EV_UNFREEZE] = T(CS_RUNNING, ACT_THAW),
                [EV_STOP] = T(CS_STOPPING, ACT_STOP),
                [EV_EXITED] = T(CS_STOPPED, ACT_CLEANUP),
            },
        [CS_STOPPING] =
            {
                /* A second stop may escalate to SIGKILL; a late start failure changes nothing. */
                [EV_STOP] = T(CS_STOPPING, ACT_STOP),
                [EV_START_FAILED] = T(CS_STOPPING, ACT_NONE),
                [EV_EXITED] = T(CS_STOPPED, ACT_CLEANUP),
            },
};

struct transition state_next(enum cstate state, enum cevent event)
{
    if (state < CS_FIRST || state > CS_LAST || event < 0 || event >= EV_COUNT)
        return (struct transition){.next = state, .action = ACT_INVALID};
    struct transition t = table[state][event];
    if (t.action == ACT_INVALID)
        t.next = state;
    return t;
}

const char *state_name(enum cstate state)
{
    static const char *const names[] = {
        [CS_STOPPED] = "stopped",   [CS_STARTING] = "starting", [CS_RUNNING] = "running",
        [CS_FREEZING] = "freezing", [CS_FROZEN] = "frozen",     [CS_STOPPING] = "stopping"};
    if (state < CS_FIRST || state > CS_LAST)
        return "unknown";
    return names[state];
}

const char *event_name(enum cevent event)
{
    static const char *const names[] = {[EV_START] = "start",
                                        [EV_STARTED] = "started",
                                        [EV_START_FAILED] = "start-failed",
                                        [EV_STOP] = "stop",
                                        [EV_EXITED] = "exited",
                                        [EV_FREEZE] = "freeze",
                                        [EV_FROZEN] = "frozen",
                                        [EV_FREEZE_FAILED] = "freeze-failed",
                                        [EV_UNFREEZE] = "unfreeze"};
    if (event < 0 || event >= EV_COUNT)
        return "unknown";
    return names[event];
}

const char *state_refusal(enum cstate state, enum cevent event, char *buf, size_t size)
{
    snprintf(buf, size, "cannot %s: the container is %s", event_name(event), state_name(state));
    return buf;
}

bool state_is_active(enum cstate state)
{
    return state != CS_STOPPED;
}
