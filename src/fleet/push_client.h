/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device's side of push mode (docs/FLEET.md "Push"). */
#pragma once

#include "error.h"

/* HTTPS: ca_file verifies the fleet's server certificate; with cert_file (the device's TLS
 * certificate, then its CAs) the client authenticates with the TPM's TLS key, through trustmed
 * at control_socket. ca_file NULL: plain HTTP. */
struct fleet_push_tls {
    const char *ca_file;
    const char *cert_file;
    const char *control_socket;
};

/* Ask server (HOST:PORT of `trustme-fleet serve`) for a nonce for device, get a quote with it
 * from the device's tpmd at attest (HOST:PORT), send it. 0 when the fleet says trusted, 1 when
 * untrusted (*ret_answer: the fleet's answer, JSON, malloc'ed), or a negative errno: -EACCES
 * (not enrolled), -ESTALE (the nonce was refused), -EPROTO, the connection's error. */
int fleet_push_run(const char *server, const char *device, const char *attest, const struct fleet_push_tls *tls,
                   int timeout_ms, char **ret_answer, tm_err *err);
