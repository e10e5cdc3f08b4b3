/* Control requests: one handler per request type, chosen from a table. */
#pragma once

#include "control.h"

void commands_dispatch(struct conn *conn, const Trustme__Request *req);
/* The audit log has been streamed: send its head. */
void commands_stream_done(struct conn *conn, uint64_t req_id);
