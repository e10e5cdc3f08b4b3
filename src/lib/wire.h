/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one header in front of every message trustme's processes send each other.
 *
 * Two layouts, one set of functions (and each layout byte-identical to what was on the wire
 * before they shared them):
 *   TM_WIRE_LEN   a 4-byte big-endian payload length: the control protocol's frames (frame.c)
 *                 and the packets to trustme-scd and trustme-tpmd (packet.c). Type, version and
 *                 request id are fields of the protobuf message behind it.
 *   TM_WIRE_SYNC  {magic "tms1", type, payload length} as three host-order uint32: parent and
 *                 child of one clone() on one machine (syncmsg.c).
 * On a SOCK_SEQPACKET link a header arrives with its whole message: tm_wire_decode_packet then
 * also checks that the length it announces is exactly what followed it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum tm_wire_kind {
    TM_WIRE_LEN,
    TM_WIRE_SYNC,
};

#define TM_WIRE_LEN_HDR 4u
#define TM_WIRE_SYNC_HDR 12u
#define TM_WIRE_HDR_MAX 12u
#define TM_WIRE_SYNC_MAGIC 0x746d7331u /* "tms1" */

struct tm_wire_hdr {
    uint32_t type; /* TM_WIRE_SYNC only; 0 for TM_WIRE_LEN */
    uint32_t len; /* payload bytes after the header */
};

static inline size_t tm_wire_hdr_size(enum tm_wire_kind k)
{
    return k == TM_WIRE_SYNC ? TM_WIRE_SYNC_HDR : TM_WIRE_LEN_HDR;
}

/* Writes the header of kind k, tm_wire_hdr_size(k) bytes, to out. */
void tm_wire_encode(enum tm_wire_kind k, const struct tm_wire_hdr *h, uint8_t *out);
/* Reads the tm_wire_hdr_size(k) bytes at in. 0, or -EBADMSG (TM_WIRE_SYNC: not its magic). */
int tm_wire_decode(enum tm_wire_kind k, const uint8_t *in, struct tm_wire_hdr *ret);
/* A whole packet of n bytes starting with a header: decoded, and its length must be exactly
 * n minus the header. 0, or -EBADMSG (too short for a header, wrong magic, wrong length). */
int tm_wire_decode_packet(enum tm_wire_kind k, const uint8_t *in, size_t n, struct tm_wire_hdr *ret);
