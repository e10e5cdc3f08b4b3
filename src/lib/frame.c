/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

#define FRAME_FIRST_ALLOC 65536

static uint32_t frame_limit(const tm_frame_reader *r)
{
    return r->max ? r->max : TM_FRAME_MAX;
}

int tm_frame_feed(tm_frame_reader *r, const uint8_t *data, size_t n, size_t *ret_consumed)
{
    size_t used = 0;
    if (r->hdr_got < sizeof(r->hdr)) {
        size_t want = sizeof(r->hdr) - r->hdr_got;
        size_t take = n < want ? n : want;
        memcpy(r->hdr + r->hdr_got, data, take);
        r->hdr_got += take;
        used += take;
        if (r->hdr_got < sizeof(r->hdr)) {
            *ret_consumed = used;
            return 0;
        }
        struct tm_wire_hdr h;
        (void)tm_wire_decode(TM_WIRE_LEN, r->hdr, &h);
        r->len = h.len;
        if (r->len > frame_limit(r)) {
            *ret_consumed = used;
            return -EMSGSIZE;
        }
        /* +1 so that an empty payload still gets a distinct allocation. Only a first chunk:
         * announcing 16 MiB and sending a few bytes must not cost 16 MiB (half frames held
         * open by a hostile client stay cheap). */
        r->cap = ((size_t)r->len < FRAME_FIRST_ALLOC ? (size_t)r->len : FRAME_FIRST_ALLOC) + 1;
        r->payload = malloc(r->cap);
        if (!r->payload)
            return -ENOMEM;
        r->got = 0;
    }
    size_t want = r->len - r->got;
    size_t avail = n - used;
    size_t take = avail < want ? avail : want;
    if (r->got + take + 1 > r->cap) {
        size_t cap = r->cap;
        while (cap < r->got + take + 1)
            cap *= 2;
        if (cap > (size_t)r->len + 1)
            cap = (size_t)r->len + 1;
        uint8_t *p = realloc(r->payload, cap);
        if (!p)
            return -ENOMEM;
        r->payload = p;
        r->cap = cap;
    }
    memcpy(r->payload + r->got, data + used, take);
    r->got += take;
    used += take;
    *ret_consumed = used;
    return r->got == r->len ? 1 : 0;
}

uint8_t *tm_frame_take(tm_frame_reader *r, uint32_t *ret_len)
{
    uint8_t *p = r->payload;
    *ret_len = r->len;
    r->payload = NULL;
    r->cap = 0;
    r->hdr_got = 0;
    r->got = 0;
    r->len = 0;
    return p;
}

bool tm_frame_partial(const tm_frame_reader *r)
{
    return r->hdr_got > 0;
}

void tm_frame_reader_reset(tm_frame_reader *r)
{
    free(r->payload);
    uint32_t max = r->max;
    *r = (tm_frame_reader){.max = max};
}

int tm_frame_read(tm_frame_reader *r, int fd)
{
    for (;;) {
        /* Read no further than the end of the current frame: bytes of the next frame stay in the
         * socket, so no per-connection carry-over buffer is needed. */
        uint8_t tmp[65536];
        size_t want;
        if (r->hdr_got < sizeof(r->hdr))
            want = sizeof(r->hdr) - r->hdr_got;
        else
            want = r->len - r->got;
        if (want > sizeof(tmp))
            want = sizeof(tmp);
        if (want == 0) /* empty payload: header alone completed the frame */
            return 1;
        ssize_t n = read(fd, tmp, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -errno;
        }
        if (n == 0)
            return tm_frame_partial(r) ? -EPROTO : -EPIPE;
        size_t used;
        int ret = tm_frame_feed(r, tmp, (size_t)n, &used);
        /* Frames may carry PINs: no copy stays behind on the stack (the payload's owner wipes
         * its own). */
        explicit_bzero(tmp, (size_t)n);
        if (ret != 0)
            return ret;
    }
}

uint8_t *tm_frame_reserve(tm_buf *out, size_t len)
{
    if (len > TM_FRAME_MAX)
        return NULL;
    uint8_t *p = tm_buf_reserve(out, TM_WIRE_LEN_HDR + len);
    if (!p)
        return NULL;
    tm_wire_encode(TM_WIRE_LEN, &(struct tm_wire_hdr){.len = (uint32_t)len}, p);
    out->len += TM_WIRE_LEN_HDR + len;
    return p + TM_WIRE_LEN_HDR;
}

int tm_frame_append(tm_buf *out, const void *payload, size_t len)
{
    if (len > TM_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t *p = tm_frame_reserve(out, len);
    if (!p)
        return -ENOMEM;
    if (len)
        memcpy(p, payload, len);
    return 0;
}

int tm_buf_flush(tm_buf *out, int fd)
{
    while (tm_buf_pending(out) > 0) {
        ssize_t n = write(fd, out->data + out->start, tm_buf_pending(out));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 1;
            return -errno;
        }
        tm_buf_consume(out, (size_t)n);
    }
    return 0;
}
