/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The console of a container started without --attach: init's stdout and stderr go into a FIFO
 * in the run dir, which trustmed drains into <run-dir>/containers/<uuid>/console.log, keeping at
 * most CONSOLE_LOG_MAX bytes there and as much again in console.log.1.
 *
 * Why not a plain file: the run dir is usually a tmpfs, so a container printing without end would
 * eat the host's memory. Why a FIFO and not a pipe: a restarted trustmed can open it again by path
 * and go on draining a re-adopted container. The container's end is opened read-write, so it is a
 * reader itself: while no trustmed reads, writers block once the 1 MiB buffer is full instead of
 * dying of SIGPIPE, and go on when the next trustmed drains. The same back-pressure bounds what a
 * chatty container costs trustmed (CONSOLE_RATE). */
#pragma once

#include "daemon.h"

#define CONSOLE_LOG_MAX (1024 * 1024)
/* What trustmed drains per container: a burst of CONSOLE_BURST bytes, then CONSOLE_RATE bytes a
 * second. Past that trustmed stops reading until the budget refills; the FIFO fills up and the
 * container's writes block (nothing is lost, the container is slowed down), so a flooding
 * container (`yes` as init) costs trustmed a few wake-ups a second, not a core. */
#define CONSOLE_RATE (256 * 1024)
#define CONSOLE_BURST (1024 * 1024)

/* Create the FIFO and start draining it; *ret_write gets a blocking write end for init's stdout
 * and stderr (the caller closes it after handing it on). */
int console_open(struct container *c, int *ret_write, tm_err *err);
/* Start draining an existing FIFO again (re-adoption). */
int console_reopen(struct container *c, tm_err *err);
/* Read what is left and stop draining. */
void console_close(struct container *c);
