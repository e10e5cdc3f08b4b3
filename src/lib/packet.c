/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "packet.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wire.h"

#define HDR TM_WIRE_LEN_HDR
#define ARENA_ALIGN 16u
#define ARENA_MAX (64u * 1024) /* the largest secret */

int tm_packet_socketpair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
}

/* Room for len bytes: locked when small enough to be a secret-bearing message. */
static int packet_alloc(struct tm_packet *pkt, size_t len, tm_err *err)
{
    *pkt = (struct tm_packet){0};
    if (len <= TM_PACKET_LOCKED_MAX) {
        int r = secret_new(len, &pkt->locked, err);
        if (r < 0)
            return r;
        pkt->data = pkt->locked->data;
    } else {
        pkt->heap = malloc(len);
        if (!pkt->heap)
            return tm_err_set(err, ENOMEM, "out of memory for a %zu-byte message", len);
        pkt->data = pkt->heap;
    }
    pkt->len = len;
    return 0;
}

int tm_packet_pack(const ProtobufCMessage *msg, size_t max, struct tm_packet *pkt, tm_err *err)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > max)
        return tm_err_set(err, EMSGSIZE, "message of %zu bytes exceeds the limit of %zu", len, max);
    int r = packet_alloc(pkt, HDR + len, err);
    if (r < 0)
        return r;
    tm_wire_encode(TM_WIRE_LEN, &(struct tm_wire_hdr){.len = (uint32_t)len}, pkt->data);
    protobuf_c_message_pack(msg, pkt->data + HDR);
    return 0;
}

int tm_packet_send(int fd, const struct tm_packet *pkt)
{
    for (;;) {
        ssize_t n = send(fd, pkt->data, pkt->len, MSG_NOSIGNAL);
        if (n >= 0)
            return (size_t)n == pkt->len ? 0 : -EIO; /* a packet goes whole or not at all */
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int tm_packet_send_msg(int fd, const ProtobufCMessage *msg, size_t max, tm_err *err)
{
    struct tm_packet pkt;
    int r = tm_packet_pack(msg, max, &pkt, err);
    if (r < 0)
        return r;
    r = tm_packet_send(fd, &pkt);
    tm_packet_free(&pkt);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot send");
    }
    return 0;
}

/* Take the next packet off the socket into buf (NULL, 0: discard it). */
static ssize_t take(int fd, void *buf, size_t size)
{
    ssize_t n;
    do
        n = recv(fd, buf, size, MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int tm_packet_recv(int fd, size_t max, struct tm_packet *pkt)
{
    *pkt = (struct tm_packet){0};
    ssize_t n;
    do
        n = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC); /* the real size of the next packet */
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n == 0) {
        /* End of stream, or an empty packet: consume it, then ask whether the peer is gone. */
        uint8_t b;
        n = take(fd, &b, 0);
        if (n < 0)
            return n == -EWOULDBLOCK ? -EAGAIN : (int)n;
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP)))
            return 0;
        return -EBADMSG;
    }
    if ((size_t)n > HDR + max) {
        take(fd, NULL, 0);
        return -EMSGSIZE;
    }
    tm_err err;
    if (packet_alloc(pkt, (size_t)n, &err) < 0) {
        take(fd, NULL, 0);
        return -err.code;
    }
    ssize_t got = take(fd, pkt->data, pkt->len);
    if (got != n) {
        tm_packet_free(pkt);
        return got < 0 ? (int)got : -EIO;
    }
    struct tm_wire_hdr h;
    if (tm_wire_decode_packet(TM_WIRE_LEN, pkt->data, (size_t)n, &h) < 0) {
        tm_packet_free(pkt);
        return -EBADMSG;
    }
    return 1;
}

int tm_packet_next(int fd, size_t max, struct tm_packet *pkt, tm_packet_bad_fn bad, void *userdata)
{
    int r = tm_packet_recv(fd, max, pkt);
    if (r != -EMSGSIZE && r != -EBADMSG)
        return r;
    /* The packet is gone already; the next one is read as usual, when it is there (not here:
     * a blocking fd in an event loop would wait in recv). */
    bad(-r, r == -EMSGSIZE ? "message too large" : "not one framed message", userdata);
    return TM_PACKET_ANSWERED;
}

/* A bump allocator over the packet's locked arena: freeing is a no-op, the arena is wiped and
 * unmapped as a whole by tm_packet_free. */
static void *arena_alloc(void *data, size_t size)
{
    struct tm_packet *pkt = data;
    size_t at = (pkt->arena_used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (size > pkt->arena->len || at > pkt->arena->len - size)
        return NULL;
    pkt->arena_used = at + size;
    return pkt->arena->data + at;
}

static void arena_free(void *data, void *ptr)
{
}

ProtobufCMessage *tm_packet_unpack(const ProtobufCMessageDescriptor *desc, struct tm_packet *pkt)
{
    if (pkt->msg || pkt->len < HDR)
        return NULL;
    const uint8_t *payload = pkt->data + HDR;
    size_t len = pkt->len - HDR;
    if (!pkt->locked) {
        pkt->msg = protobuf_c_message_unpack(desc, NULL, len, payload);
        return pkt->msg;
    }
    /* Unpacking copies bytes fields (PINs, keys) and adds a struct per message: a few times the
     * wire size for any message our peers send. A message padded with hundreds of unknown fields
     * (each costs a struct of its own) can exhaust the arena; it is then refused as malformed
     * rather than parsed into memory that may be swapped. */
    tm_err err;
    size_t arena = 4 * len + 8192;
    if (arena > ARENA_MAX)
        arena = ARENA_MAX;
    if (!pkt->arena && secret_new(arena, &pkt->arena, &err) < 0)
        return NULL;
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = pkt};
    pkt->msg = protobuf_c_message_unpack(desc, &alloc, len, payload);
    return pkt->msg;
}

void tm_packet_free(struct tm_packet *pkt)
{
    if (pkt->msg && !pkt->arena)
        protobuf_c_message_free_unpacked(pkt->msg, NULL);
    secret_free(pkt->arena);
    secret_free(pkt->locked);
    free(pkt->heap);
    *pkt = (struct tm_packet){0};
}
