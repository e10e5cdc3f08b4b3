/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "wire.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

void tm_wire_encode(enum tm_wire_kind k, const struct tm_wire_hdr *h, uint8_t *out)
{
    assert(k == TM_WIRE_SYNC || k == TM_WIRE_LEN);
    if (k == TM_WIRE_SYNC) {
        /* host order: both ends are the same program on the same machine */
        const uint32_t w[3] = {TM_WIRE_SYNC_MAGIC, h->type, h->len};
        memcpy(out, w, sizeof(w));
        return;
    }
    out[0] = (uint8_t)(h->len >> 24);
    out[1] = (uint8_t)(h->len >> 16);
    out[2] = (uint8_t)(h->len >> 8);
    out[3] = (uint8_t)h->len;
}

int tm_wire_decode(enum tm_wire_kind k, const uint8_t *in, struct tm_wire_hdr *ret)
{
    if (k == TM_WIRE_SYNC) {
        uint32_t w[3];
        memcpy(w, in, sizeof(w));
        if (w[0] != TM_WIRE_SYNC_MAGIC)
            return -EBADMSG;
        *ret = (struct tm_wire_hdr){.type = w[1], .len = w[2]};
        return 0;
    }
    *ret = (struct tm_wire_hdr){.len = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3]};
    return 0;
}

int tm_wire_decode_packet(enum tm_wire_kind k, const uint8_t *in, size_t n, struct tm_wire_hdr *ret)
{
    size_t hs = tm_wire_hdr_size(k);
    struct tm_wire_hdr h;
    if (n < hs || tm_wire_decode(k, in, &h) < 0 || h.len != n - hs)
        return -EBADMSG;
    *ret = h;
    return 0;
}
