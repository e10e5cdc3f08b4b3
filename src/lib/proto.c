#include "proto.h"

#include <errno.h>

#include "frame.h"

int tm_proto_append(tm_buf *out, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > TM_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t *p = tm_buf_reserve(out, 4 + len);
    if (!p)
        return -ENOMEM;
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    protobuf_c_message_pack(msg, p + 4);
    out->len += 4 + len;
    return 0;
}
