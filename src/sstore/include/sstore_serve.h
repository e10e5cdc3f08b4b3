/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The secure-storage API of proto/sstore.proto against one store (docs/SECURE_STORAGE.md).
 *
 * The keystore service calls it for its Request field 360 with the caller's own store (found by
 * the container the connection belongs to, never by anything in the request) and sends resp as
 * its Response field 360:
 *
 *     Trustme__Sstore__Response r;
 *     sstore_serve(store_of(conn), req->sstore, &r);
 *     resp.sstore = &r; ...send...; sstore_response_clear(&r);
 */
#pragma once

#include "sstore.h"
#include "sstore.pb-c.h"

/* Fills resp (an Error with errno and message on failure; the store stays usable for the
 * next request) and returns 0 or the negative errno. s NULL: the store could not be opened;
 * every request is answered EIO. */
int sstore_serve(struct sstore *s, const Trustme__Sstore__Request *req, Trustme__Sstore__Response *resp);
void sstore_response_clear(Trustme__Sstore__Response *resp);
