/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control requests about what runs and who signed it: the GuestOS store, trusted CAs, and
 * creating or updating containers from (possibly signed) configs. */
#pragma once

#include "control.h"

void cmd_create(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_update(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_guestos_install(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_guestos_list(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_guestos_remove(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_ca_register(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_ca_unregister(struct conn *conn, uint64_t id, const Trustme__Request *req);
/* Shared with commands.c. */
void reply_container(struct conn *conn, uint64_t id, const struct container *c);
