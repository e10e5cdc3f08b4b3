/* Exec sessions: running a command inside a running container (trustme run). */
#pragma once

#include "control.h"
#include "control.pb-c.h"

/* Exec sessions one connection may have running at once (docs/PROTOCOL.md). */
#define EXEC_MAX_PER_CONN 64
/* Exec sessions of one container, whether their clients are still there or not. */
#define EXEC_MAX_PER_CONTAINER 256

int exec_start(struct container *c, struct conn *conn, uint64_t req_id,
               const Trustme__RunRequest *rq, tm_err *err);
