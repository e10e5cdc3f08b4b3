/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device's attestation endpoint over TLS, its key in the TPM (docs/FLEET.md "The pull path
 * over TLS"). */
#pragma once

#include "error.h"

struct fleet_attest_tls_opts {
    const char *listen; /* HOST:PORT to serve on (port 0 picks one) */
    const char *attest; /* HOST:PORT of the device's tpmd (its plain endpoint, on the loopback) */
    const char *cert_file; /* the device's TLS certificate, then its CAs */
    const char *control_socket; /* trustmed's, through which the TPM signs */
};

/* Serve until *stop: prints "listening on ADDR" once listening. A certificate whose key is not in
 * this device's TPM is refused at start (-EKEYREJECTED). */
int fleet_attest_tls_serve(const struct fleet_attest_tls_opts *o, volatile int *stop, tm_err *err);
