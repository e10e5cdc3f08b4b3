/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme exec list / kill: the exec sessions of a container, also those whose client is gone. */
#pragma once

#include "control.h"

void cmd_exec_list(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_exec_kill(struct conn *conn, uint64_t id, const Trustme__Request *req);
