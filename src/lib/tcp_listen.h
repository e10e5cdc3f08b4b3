/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The listening socket of trustme's TCP servers (tpmd's attestation endpoint, trustmed's migration
 * endpoint), handed to tm_acceptor (acceptor.h); their admission is conn_table.h's. */
#pragma once

#include "error.h"

/* A listening TCP socket, non-blocking and close-on-exec, on address: HOST:PORT or [IPv6]:PORT
 * (tm_split_hostport with min_port; 0 lets the kernel pick a free port), the first address it
 * resolves to. Returns the fd (the caller's); errors name the address and what it is for (what:
 * "migrate.address"). */
int tm_tcp_listen(const char *address, unsigned min_port, int backlog, const char *what, tm_err *err);
