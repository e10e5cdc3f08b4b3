/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "proto.h"

#include <errno.h>

#include "frame.h"

int tm_proto_append(tm_buf *out, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > TM_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t *p = tm_frame_reserve(out, len);
    if (!p)
        return -ENOMEM;
    protobuf_c_message_pack(msg, p);
    return 0;
}
