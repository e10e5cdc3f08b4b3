/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a running container leaves in the run dir so that the next trustmed can re-adopt it:
 * <run-dir>/containers/<uuid>/runtime.json with init's pid and start time. */
#pragma once

#include "daemon.h"

int runtime_save(struct container *c, tm_err *err);
void runtime_remove(struct container *c);
/* At start-up: take over a container whose init outlived the previous trustmed, or remove
 * whatever a dead one left behind (processes, cgroups). */
void runtime_recover(struct container *c);
