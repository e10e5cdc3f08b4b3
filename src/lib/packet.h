/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Framed protobuf messages, one per SOCK_SEQPACKET packet: the link between trustmed and
 * trustme-scd.
 *
 * Each packet is a frame as on the control socket (a 4-byte big-endian length, then one
 * message), so the same rules hold: bounded size, version and id in every message. The packet
 * boundary makes every frame stand alone: a packet that is too large, or whose header disagrees
 * with its size, is dropped by itself and the next one is read as usual. Garbage can cost one
 * error answer, never the connection (a byte stream could not resynchronise after it).
 *
 * The messages on this link carry PINs and raw container keys. Packets of up to
 * TM_PACKET_LOCKED_MAX bytes, and the messages unpacked from them, live in locked memory
 * (secmem.h) from recv() to tm_packet_free(), which wipes them. Larger packets (signature
 * verification requests: data, chains, CRLs) carry nothing secret and use the heap. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define TM_PACKET_LOCKED_MAX (16u * 1024)

struct tm_packet {
    uint8_t *data; /* header + payload */
    size_t len;
    struct secret *locked; /* data, when it is small */
    uint8_t *heap; /* data, when it is large */
    struct secret *arena; /* memory the unpacked message lives in (small packets) */
    size_t arena_used;
    ProtobufCMessage *msg; /* the unpacked message, owned by the packet */
};

/* A connected SOCK_SEQPACKET pair, close-on-exec. 0 or -errno. */
int tm_packet_socketpair(int fds[2]);
/* Serialize msg into pkt (at most max bytes of payload). */
int tm_packet_pack(const ProtobufCMessage *msg, size_t max, struct tm_packet *pkt, tm_err *err);
/* Send pkt whole. 0, -EAGAIN (non-blocking fd, try again later) or -errno. */
int tm_packet_send(int fd, const struct tm_packet *pkt);
/* Pack and send in one go, on a blocking fd. */
int tm_packet_send_msg(int fd, const ProtobufCMessage *msg, size_t max, tm_err *err);
/* Receive one packet of at most max payload bytes. 1: a packet in *pkt; 0: EOF; -EAGAIN;
 * -EMSGSIZE or -EBADMSG: a packet that was too large or not one frame, already dropped (the
 * caller answers with an error and reads on); other -errno. */
int tm_packet_recv(int fd, size_t max, struct tm_packet *pkt);
/* The request loop step of a service's link to trustmed (trustme-scd, trustme-tpmd): the next
 * packet of at most max payload bytes. A packet that was too large or not one frame is dropped
 * and answered through bad (code EMSGSIZE or EBADMSG, a message saying which); the caller then
 * reads on as usual: garbage costs one error answer, never the link. 1: a packet in *pkt;
 * TM_PACKET_ANSWERED: a bad packet was answered, call again (when the fd is readable); 0:
 * trustmed closed the link; -EAGAIN: nothing yet (a non-blocking fd); other -errno: the link
 * broke. */
#define TM_PACKET_ANSWERED 2
typedef void (*tm_packet_bad_fn)(int code, const char *msg, void *userdata);
int tm_packet_next(int fd, size_t max, struct tm_packet *pkt, tm_packet_bad_fn bad, void *userdata);
/* Unpack the packet's payload as desc; NULL if it does not parse (or, small packets, does not
 * fit their locked arena: see packet.c). The message belongs to pkt. */
ProtobufCMessage *tm_packet_unpack(const ProtobufCMessageDescriptor *desc, struct tm_packet *pkt);
/* Wipe and free everything pkt holds; pkt is zeroed and may be reused. */
void tm_packet_free(struct tm_packet *pkt);
