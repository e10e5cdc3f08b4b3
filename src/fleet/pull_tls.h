/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One attestation exchange with a device over TLS, the device's endpoint authenticated by the
 * TLS key pinned at enrollment (docs/FLEET.md "The pull path over TLS"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "fleet.h"

/* As attest_fetch (src/verify/client.h), to t->address over TLS 1.3: the endpoint's certificate
 * chain must be one fleet_device_tls_pinned accepts for t (t->tls_spki). *ret_refused is set
 * when it is not (-EACCES: someone else answered, or another device's endpoint), as opposed to
 * a device that could not be reached. */
int fleet_pull_tls_fetch(const struct fleet_trust *trust, const struct fleet_target *t, int timeout_ms, uint64_t id,
                         const uint8_t *nonce, size_t nonce_len, const uint32_t *pcrs, size_t npcrs, uint8_t **ret_buf,
                         size_t *ret_len, bool *ret_refused, tm_err *err);
