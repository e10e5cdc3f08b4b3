/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Length-prefixed framing of the control protocol: a 4-byte big-endian length, then the payload.
 *
 * The reader is a pure state machine over bytes (tm_frame_feed), so it can be unit-tested and
 * fuzzed without sockets; tm_frame_read() drives it from a non-blocking fd. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TM_FRAME_MAX (16u * 1024 * 1024)

typedef struct tm_frame_reader {
    uint8_t hdr[4]; /* TM_WIRE_LEN (wire.h) */
    size_t hdr_got;
    uint32_t len; /* payload length once the header is complete */
    uint8_t *payload;
    size_t cap; /* allocated for payload: grows with what arrived, not with what was announced */
    size_t got;
    uint32_t max; /* largest accepted payload; 0 means TM_FRAME_MAX */
} tm_frame_reader;

/* Feed up to n bytes. Returns 1 when a frame is complete (*ret_consumed bytes were used; take it with
 * tm_frame_take), 0 when all bytes were consumed and more are needed, -EMSGSIZE when the header
 * announces a frame above the limit, -ENOMEM. */
int tm_frame_feed(tm_frame_reader *r, const uint8_t *data, size_t n, size_t *ret_consumed);
/* Hand the completed payload to the caller (who frees it) and reset for the next frame. */
uint8_t *tm_frame_take(tm_frame_reader *r, uint32_t *ret_len);
/* True if the reader holds part of a frame (EOF now means a truncated message). */
bool tm_frame_partial(const tm_frame_reader *r);
void tm_frame_reader_reset(tm_frame_reader *r);

/* Read from a non-blocking fd until one frame is complete or the fd would block.
 * Returns 1 (frame ready), 0 (would block), -EPIPE (clean EOF between frames), -EPROTO (EOF
 * inside a frame: a truncated message), -EMSGSIZE, or the read error (e.g. -ECONNRESET when the
 * peer went away with our replies unread). */
int tm_frame_read(tm_frame_reader *r, int fd);

/* Append the header of a len-byte frame to out and reserve its payload; returns where the payload
 * goes (the caller fills exactly len bytes), or NULL (too large, or out of memory). */
uint8_t *tm_frame_reserve(tm_buf *out, size_t len);
/* Append header + payload to an output buffer. */
int tm_frame_append(tm_buf *out, const void *payload, size_t len);
/* Write as much of out as the non-blocking fd takes (callers ignore SIGPIPE). 0 when all written, 1 when data remains,
 * -errno on error. */
int tm_buf_flush(tm_buf *out, int fd);
