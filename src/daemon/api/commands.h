/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control requests: one handler per request type, chosen from a table. */
#pragma once

#include "control.h"

void commands_dispatch(struct conn *conn, Trustme__Request *req);
/* Wipe the PINs, PUKs and keys a request carries (dispatch does it after the handler). */
void commands_wipe_secrets(Trustme__Request *req);
/* The container ref names, or NULL after answering the request with an error. */
struct container *commands_lookup(struct conn *conn, uint64_t id, const char *ref);

/* The handlers of the requests about containers and sessions (rows of requests.c). */
void cmd_list(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_state(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_config(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_remove(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_wipe(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_change_pin(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_token_unlock(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_start(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_stop(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_freeze(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_unfreeze(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_run(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_audit(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_logs(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_stdin(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_resize(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_signal(struct conn *conn, uint64_t id, const Trustme__Request *req);
