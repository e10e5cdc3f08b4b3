/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TCP attestation endpoint (proto/attest.proto): framed AttestRequest in, AttestResponse
 * out, on tpmd's event loop. Clients are untrusted and never block each other or the link to
 * trustmed: non-blocking sockets, at most ATTEST_MAX_CONNS at once and ATTEST_MAX_PER_PEER from
 * one address, ATTEST_TIMEOUT_MS for each request (from the moment a connection waits for one
 * until its answer is written). A new client that finds no room evicts the connection that has
 * waited longest without a request (its own peer's first, else the busiest peer's), so idle
 * connections cannot lock verifiers out. */
#pragma once

#include "error.h"
#include "tpmd.h"

#define ATTEST_MAX_CONNS 16
#define ATTEST_MAX_PER_PEER 8
#define ATTEST_TIMEOUT_MS 10000
#define ATTEST_REQUEST_MAX 4096
#define ATTEST_RESPONSE_MAX (4u * 1024 * 1024)
#define ATTEST_DEFAULT_ADDRESS "127.0.0.1:9505"

/* Listen on address ("HOST:PORT", "[V6]:PORT"; port 0 picks one) and serve on d->loop;
 * d->attest_address receives the address actually bound. */
int attest_server_start(struct tpmd *d, const char *address, tm_err *err);
/* Close the listener and every connection. NULL-safe. */
void attest_server_stop(struct attest_server *s);
