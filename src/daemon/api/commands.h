/* Control requests: one handler per request type, chosen from a table. */
#pragma once

#include "control.h"

void commands_dispatch(struct conn *conn, Trustme__Request *req);
/* Wipe the PINs, PUKs and keys a request carries (dispatch does it after the handler). */
void commands_wipe_secrets(Trustme__Request *req);
/* The container ref names, or NULL after answering the request with an error. */
struct container *commands_lookup(struct conn *conn, uint64_t id, const char *ref);
