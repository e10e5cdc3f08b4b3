/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Framed attestation messages (a 4-byte big-endian length, then the payload: the framing of
 * proto/attest.proto's endpoint) over a non-blocking socket, plain or TLS, every step bounded by
 * one deadline: a peer that trickles bytes cannot hold a worker or a device's TLS endpoint longer
 * than that (docs/FLEET.md "The pull path over TLS"). */
#pragma once

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "deadline.h"
#include "error.h"

struct tls_chan {
    int fd; /* non-blocking */
    SSL *ssl; /* NULL: plain */
    int64_t deadline; /* tm_now_ms() time (deadline.h) */
};

/* Connect to HOST:PORT ([V6]:PORT) before the deadline; a non-blocking socket, or -errno. */
int tls_chan_dial(const char *hostport, int64_t deadline, tm_err *err);
/* The TLS handshake on ch->ssl (client or server, as the SSL was made), within the deadline. */
int tls_chan_handshake(struct tls_chan *ch, tm_err *err);
/* One frame of at most max bytes: 1 and *ret_buf (malloc'ed), 0 when the peer closed between
 * frames, or -errno (-EMSGSIZE, -ETIMEDOUT, -EPROTO for a cut frame or a TLS failure). */
int tls_chan_read_frame(struct tls_chan *ch, uint32_t max, uint8_t **ret_buf, size_t *ret_len, tm_err *err);
int tls_chan_write_frame(struct tls_chan *ch, const uint8_t *buf, size_t len, tm_err *err);
/* The reason of the last OpenSSL failure, for messages ("" when none). */
const char *tls_chan_reason(char *buf, size_t size);
