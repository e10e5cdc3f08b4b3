/* Exec sessions: running a command inside a running container (trustme run). */
#pragma once

#include "control.h"
#include "control.pb-c.h"

int exec_start(struct container *c, struct conn *conn, uint64_t req_id,
               const Trustme__RunRequest *rq, tm_err *err);
