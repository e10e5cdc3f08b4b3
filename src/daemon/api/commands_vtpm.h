/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM's control requests (commands_vtpm.c; docs/VTPM.md). */
#pragma once

#include "control.h"

/* VtpmInfo: running, state digest, the anchored digest (one anchor read from tpmd). */
void cmd_vtpm_info(struct conn *conn, uint64_t id, const Trustme__Request *req);
/* A stopped container's vTPM state and its anchor are removed: the next start makes a new one. */
void cmd_vtpm_reset(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_vtpm_reset_released(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_vtpm_owner(struct conn *conn, uint64_t id, const Trustme__Request *req);
