/* Control requests: one handler per request type, chosen from a table. */
#pragma once

#include "control.h"

void commands_dispatch(struct conn *conn, Trustme__Request *req);
