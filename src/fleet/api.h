/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-fleet's HTTP+JSON API and status page (docs/FLEET.md "API"), on libmicrohttpd. */
#pragma once

#include <stdint.h>

#include "error.h"

struct fleet_api;

/* Listen on addr:port (port 0: any; the port taken is in *ret_port). Requests are served one at
 * a time on one database connection of its own (conninfo). */
int fleet_api_start(const char *addr, uint16_t port, const char *conninfo, const char *alert_command,
                    struct fleet_api **ret, uint16_t *ret_port, tm_err *err);
void fleet_api_stop(struct fleet_api *a);
