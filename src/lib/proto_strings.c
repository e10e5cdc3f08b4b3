/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "proto_strings.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Deep enough for every message of ours; a deeper nesting is refused rather than recursed. */
#define MAX_DEPTH 16

bool tm_utf8_valid(const uint8_t *s, size_t len, bool allow_nul, size_t *ret_bad)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t min, cp;
        if (c < 0x80) {
            if (c == 0 && !allow_nul)
                goto bad;
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            goto bad; /* a continuation byte first, or 0xf8..0xff */
        }
        if (len - i <= n)
            goto bad;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto bad;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        i += n + 1;
    }
    return true;
bad:
    if (ret_bad)
        *ret_bad = i;
    return false;
}

static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *ret)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*pos >= len)
            return -EBADMSG;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *ret = v;
            return 0;
        }
    }
    return -EBADMSG;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len, const char *path, int depth,
                 tm_err *err)
{
    if (depth > MAX_DEPTH)
        return tm_err_set(err, EINVAL, "%s: messages nested too deeply", path[0] ? path : "request");
    unsigned counts[64] = {0}; /* per field index, for "argv[1]"; fields beyond 64 are unnamed */
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, n;
        if (read_varint(p, len, &pos, &key) < 0)
            return tm_err_set(err, EBADMSG, "malformed request");
        unsigned wire = key & 7;
        switch (wire) {
        case 0:
            if (read_varint(p, len, &pos, &n) < 0)
                return tm_err_set(err, EBADMSG, "malformed request");
            continue;
        case 1:
        case 5: {
            size_t w = wire == 1 ? 8 : 4;
            if (len - pos < w)
                return tm_err_set(err, EBADMSG, "malformed request");
            pos += w;
            continue;
        }
        case 2: break;
        default: return tm_err_set(err, EBADMSG, "malformed request");
        }
        if (read_varint(p, len, &pos, &n) < 0 || n > len - pos)
            return tm_err_set(err, EBADMSG, "malformed request");
        const uint8_t *val = p + pos;
        pos += (size_t)n;
        const ProtobufCFieldDescriptor *f =
            key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3)) : NULL;
        if (!f || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
            continue; /* unknown fields, bytes, packed numbers */
        size_t idx = (size_t)(f - desc->fields);
        char sub[256];
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            snprintf(sub, sizeof(sub), "%s%s%s[%u]", path, path[0] ? "." : "", f->name, idx < 64 ? counts[idx]++ : 0);
        else
            snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", f->name);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int r = check(f->descriptor, val, (size_t)n, sub, depth + 1, err);
            if (r < 0)
                return r;
            continue;
        }
        size_t bad = 0;
        if (!tm_utf8_valid(val, (size_t)n, false, &bad))
            return tm_err_set(err, EINVAL,
                              "%s: %s at byte %zu; strings must be UTF-8 text "
                              "without NUL bytes",
                              sub, val[bad] == 0 ? "a NUL byte" : "invalid UTF-8", bad);
    }
    return 0;
}

int tm_proto_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, tm_err *err)
{
    return check(desc, data, len, "", 0, err);
}
