/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device's TLS client key as an OpenSSL key whose signatures are made by the device's TPM
 * (docs/FLEET.md "Device identity on the wire"): trustmed's control socket passes each digest on
 * to trustme-tpmd, which signs it with the TLS key that never leaves the TPM. */
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "error.h"

/* A private-key handle for cert's public key (EC P-256) that signs through trustmed at
 * control_socket. One per process (the socket path is kept for the signing callback).
 * The handle is checked with one signature before it is returned: -EKEYREJECTED when the TPM's
 * TLS key is not cert's key (a certificate copied from another device). */
int tpm_key_for_cert(X509 *cert, const char *control_socket, EVP_PKEY **ret, tm_err *err);
