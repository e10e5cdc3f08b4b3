/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Socket I/O bounded by a deadline: every step of one exchange (connect, send, receive) shares
 * one CLOCK_MONOTONIC deadline, so a peer that accepts slowly or trickles bytes holds the caller
 * no longer than that. Shared by trustme-verify's client, trustme-owner's relay and
 * trustme-fleet's channels. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* CLOCK_MONOTONIC in milliseconds: what deadlines are measured in. */
int64_t tm_now_ms(void);
/* Wait until fd has one of events (POLLIN, POLLOUT): 0, -ETIMEDOUT once the deadline has passed,
 * or -errno. Interrupted waits go on with the time left. */
int tm_wait_fd(int fd, short events, int64_t deadline);
/* Connect to HOST:PORT ([IPv6]:PORT; each address the name resolves to in turn) before the
 * deadline. A non-blocking, close-on-exec socket, or -errno with the reason naming hostport. */
int tm_dial(const char *hostport, int64_t deadline, tm_err *err);
/* Send all len bytes on a non-blocking socket before the deadline: 0, -ETIMEDOUT, -EPIPE when the
 * peer is gone, or -errno. */
int tm_send_all(int fd, const void *buf, size_t len, int64_t deadline);
/* Receive exactly len bytes from a non-blocking socket before the deadline: 0, -EPIPE when the
 * peer closed before the first byte, -EPROTO when it closed after some, -ETIMEDOUT, or -errno. */
int tm_recv_all(int fd, void *buf, size_t len, int64_t deadline);
