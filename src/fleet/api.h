/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-fleet's HTTP+JSON API and status page (docs/FLEET.md "API"), on libmicrohttpd. */
#pragma once

#include <stdint.h>

#include "error.h"

struct fleet_api;

/* TLS (docs/FLEET.md "TLS"): all NULL for plain HTTP. With client_ca_pem, every endpoint but
 * the two of push mode needs a client certificate that verifies to it (an admin's) or to
 * viewer_ca_pem (a viewer's: GET only). */
struct fleet_api_tls {
    const char *cert_pem; /* the server's certificate (chain) */
    const char *key_pem;
    const char *client_ca_pem; /* the admins' CAs (all operators' without viewer_ca_pem) */
    const char *viewer_ca_pem; /* NULL, or the viewers' CAs: read-only operators */
};

/* Listen on addr:port (port 0: any; the port taken is in *ret_port). Requests are served one at
 * a time on one database connection of its own (conninfo). */
int fleet_api_start(const char *addr, uint16_t port, const char *conninfo, const char *alert_command,
                    const struct fleet_api_tls *tls, struct fleet_api **ret, uint16_t *ret_port, tm_err *err);
void fleet_api_stop(struct fleet_api *a);
