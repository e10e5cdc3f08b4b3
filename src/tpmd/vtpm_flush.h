/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Flushing what a closed relay connection left loaded in a container's vTPM (docs/VTPM.md
 * "Remote take-ownership"), on tpmd's event loop. The container's root decides how fast its vTPM
 * answers (it can keep it busy making RSA keys, or have it wedged), and tpmd serves every
 * container and trustmed from one thread: so no flush ever waits. Each is a non-blocking
 * connection of its own, given up after VTPM_FLUSH_DEADLINE_MS, and at most VTPM_FLUSH_MAX run at
 * once (the oldest is given up for a new one). A flush given up leaves the objects in that one
 * vTPM, which only its own container's clients then lack room for. */
#pragma once

#include "event.h"
#include "vtpm_wire.h"

#define VTPM_FLUSH_MAX 32
#define VTPM_FLUSH_DEADLINE_MS 2000

/* Start flushing hs in the vTPM of container uuid under vtpm_dir; best effort (the container
 * may have stopped meanwhile). Returns at once. */
void vtpm_flush_start(tm_loop *loop, const char *vtpm_dir, const char *uuid, const struct vtpm_handles *hs);
/* Give up every flush still running (tpmd's end). */
void vtpm_flush_stop_all(void);
/* How many flushes are running. */
unsigned vtpm_flush_running(void);
