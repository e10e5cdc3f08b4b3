/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The daemon's input path for the control protocol: bytes from a client, cut into frames by
 * tm_frame_feed, each payload decoded as a Request (and, for the CLI's side, as a Response).
 *
 * Input: one byte choosing the chunk size the stream arrives in (1..256), then the stream. */
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "proto.h"
#include "proto_strings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whatever decodes must be consistent enough to pack again (the daemon echoes parts of requests
 * into replies). Decoding the repacked bytes is not required to succeed: protobuf-c 1.4 keeps a
 * field number 0 spelled as a two-byte varint as an unknown field, and refuses its canonical
 * one-byte form. */
static void check_request(const uint8_t *p, size_t len)
{
    Trustme__Request *req = trustme__request__unpack(NULL, len, p);
    if (!req)
        return;
    /* The daemon's string check walks the same bytes by the descriptor (proto_strings.c). */
    tm_err err;
    tm_proto_check_strings(&trustme__request__descriptor, p, len, &err);
    size_t n = trustme__request__get_packed_size(req);
    uint8_t *again = malloc(n ? n : 1);
    if (!again)
        abort();
    if (trustme__request__pack(req, again) != n)
        abort();
    trustme__request__free_unpacked(req, NULL);
    free(again);
}

static void check_response(const uint8_t *p, size_t len)
{
    Trustme__Response *resp = trustme__response__unpack(NULL, len, p);
    if (resp)
        trustme__response__free_unpacked(resp, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    data++;
    size--;
    /* No input is long enough to complete a bigger frame; the daemon's 16 MiB limit would only
     * make every large header cost a 16 MiB allocation. The limit check is the same code. */
    tm_frame_reader r = {.max = 64 * 1024};
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk, used = 0;
        int ret = tm_frame_feed(&r, data + off, n, &used);
        if (used > n)
            abort();
        if (ret < 0) /* the daemon closes the connection here */
            break;
        if (ret == 0 && used != n)
            abort(); /* "all bytes consumed" */
        off += used;
        if (ret == 1) {
            uint32_t len;
            uint8_t *payload = tm_frame_take(&r, &len);
            if (!payload || len > TM_FRAME_MAX)
                abort();
            check_request(payload, len);
            check_response(payload, len);
            free(payload);
        }
    }
    tm_frame_reader_reset(&r);
    return 0;
}
