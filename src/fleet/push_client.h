/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device's side of push mode (docs/FLEET.md "Push"). */
#pragma once

#include "error.h"

/* Ask server (HOST:PORT of `trustme-fleet serve`) for a nonce for device, get a quote with it
 * from the device's tpmd at attest (HOST:PORT), send it. 0 when the fleet says trusted, 1 when
 * untrusted (*ret_answer: the fleet's answer, JSON, malloc'ed), or a negative errno: -EACCES
 * (not enrolled), -ESTALE (the nonce was refused), -EPROTO, the connection's error. */
int fleet_push_run(const char *server, const char *device, const char *attest, int timeout_ms, char **ret_answer,
                   tm_err *err);
