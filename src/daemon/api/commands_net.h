/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control requests about container networking: trustme iface assign/unassign (net.c). */
#pragma once

#include "control.h"

void cmd_iface_assign(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_iface_unassign(struct conn *conn, uint64_t id, const Trustme__Request *req);
