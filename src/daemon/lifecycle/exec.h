/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Exec sessions: running a command inside a running container (trustme run). */
#pragma once

#include "control.pb-c.h"
#include "daemon.h"
#include "reply.h"

/* Exec sessions one connection may have running at once (docs/PROTOCOL.md). */
#define EXEC_MAX_PER_CONN 64
/* Exec sessions of one container, whether their clients are still there or not. */
#define EXEC_MAX_PER_CONTAINER 256

/* to: the run request, answered through reply.h (its output and exit status). */
int exec_start(struct container *c, struct reply_to to, const Trustme__RunRequest *rq, tm_err *err);
