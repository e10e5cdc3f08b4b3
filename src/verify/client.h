/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One attestation exchange with a device's tpmd over TCP (proto/attest.proto). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Connect to "HOST:PORT" ("[v6addr]:PORT" for IPv6), send one AttestRequest (version 1, id,
 * nonce, pcrs) and read one framed response of at most ATTEST_RESPONSE_MAX bytes, all within
 * timeout_ms. *ret_buf (malloc'ed) is the response's protobuf bytes, not yet decoded.
 * -EINVAL for a bad address, -ETIMEDOUT, -EPROTO, or the socket's error; err says which. */
int attest_fetch(const char *hostport, int timeout_ms, uint64_t id, const uint8_t *nonce, size_t nonce_len,
                 const uint32_t *pcrs, size_t npcrs, uint8_t **ret_buf, size_t *ret_len, tm_err *err);
