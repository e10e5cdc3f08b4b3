/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control requests about the TPM: measurements, the device identity (AK CSR and certificate),
 * resealing the device storage secret, and evidence for `trustme attest`. Each is passed on to
 * trustme-tpmd (tpmd_client.h) and answered when tpmd has answered. */
#pragma once

#include "control.h"

void cmd_measurements(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_device_csr(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_device_tls_sign(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_device_cert_install(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_device_info(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_device_reseal(struct conn *conn, uint64_t id, const Trustme__Request *req);
void cmd_attest(struct conn *conn, uint64_t id, const Trustme__Request *req);
