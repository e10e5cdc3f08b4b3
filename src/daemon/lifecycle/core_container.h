/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The core container c0 (core_container.c, docs/ROLES.md). */
#pragma once

#include <stdbool.h>

#include "daemon.h"
#include "error.h"

bool core_is(const struct container *c);
/* Its state (d->core), before any container is loaded. Freed by core_free. */
int core_init(struct daemon *d, tm_err *err);
/* At start-up, before the control socket: c0 must exist and start unattended when the device is
 * managed through it alone (admin_socket_in_root false). */
int core_check(struct daemon *d, tm_err *err);
/* Start c0, then (once its start has ended) every other autostart container. */
void core_autostart(struct daemon *d);
/* Every state change of every container (lifecycle.c): c0's start lets the others start, c0's
 * end without a stop request restarts it, and at shutdown c0 is stopped once the others are. */
void core_on_transition(struct container *c, enum cstate old, enum cevent ev);
/* At shutdown: should this container's stop wait for the others? */
bool core_stops_last(const struct container *c);
/* Also when core_init failed or never ran. */
void core_free(struct daemon *d);
/* Start every autostart container but the core container. */
void daemon_autostart(struct daemon *d);
