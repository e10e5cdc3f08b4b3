# SPDX-License-Identifier: GPL-2.0-or-later
"""A minimal protobuf encoder/decoder and the 4-byte frame, for tests that speak trustme's
protocols (control and scd) byte by byte, without generated code."""
import struct


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def read_varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def parse(buf):
    """Top-level fields of a message: {field: [values]} (varints as ints, others as bytes)."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = read_varint(buf, pos)
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        fields.setdefault(num, []).append(val)
    return fields


def encode(fields):
    """The inverse of parse: {field: [values]} back to bytes (ints as varints, bytes as
    length-delimited), in the order given. parse, edit, encode: a message tampered with field by
    field."""
    out = b""
    for num, values in fields.items():
        for v in values:
            out += field_varint(num, v) if isinstance(v, int) else field_bytes(num, v)
    return out
