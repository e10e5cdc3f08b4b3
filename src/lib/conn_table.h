/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Admission to trustme's TCP servers (tpmd's attestation endpoint, attest_server.c; trustmed's
 * migration endpoint, migrate_net.c). Anyone on the network may connect, so each server keeps its
 * connections in a table with a limit in all and a limit per peer (an IPv4 address, an IPv6 /64;
 * the port ignored: tm_same_peer), and
 * a new client that finds no room evicts a connection that waits for nothing but its next request:
 *
 *   - a peer at its own limit makes room among its own connections only (the one that has waited
 *     longest), so one address cannot evict another's;
 *   - else, with every slot taken, the longest-waiting connection of the address that holds most
 *     records, so a source with its one connection is not chosen while a flooding address holds
 *     more;
 *   - a busy connection (an answer being written, work in flight) is never chosen; when there is
 *     none to choose the new client is refused.
 *
 * A server embeds a struct tm_conn in its connection record and says when the connection begins
 * to wait (tm_conn_waiting) and when it is busy (tm_conn_busy); what counts as waiting is the
 * server's (the migration endpoint's announcement check does). A record may stay in the table
 * after its connection closed (tm_conn_closed), for work whose answer is awaited: it no longer
 * counts for the limits nor can it be evicted, but its peer still holds it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "event.h"

struct tm_conn {
    struct tm_conn *prev, *next;
    struct sockaddr_storage peer; /* its address: the limits count it, the port ignored */
    uint64_t waiting_since; /* when it began to wait (the table's clock): evictable; 0: busy */
    bool open; /* false: closed, the record kept for the answer to its work */
};

/* Close victim's connection to make room for a new client (and log it): afterwards the record is
 * closed (tm_conn_closed) or out of the table (tm_conn_remove). */
typedef void (*tm_conn_evict_fn)(struct tm_conn *victim);

struct tm_conn_table {
    struct tm_conn *head; /* newest first */
    unsigned nopen; /* open connections */
    uint64_t clock; /* counts up at every wait that begins: orders them, oldest first */
    unsigned max_conns, max_per_peer;
    const char *what; /* names the server's clients in the log ("attestation") */
    tm_conn_evict_fn evict;
};

/* The record of type that holds c as its member (NULL for NULL). */
#define tm_conn_record(c, type, member)                                         \
    ({                                                                          \
        struct tm_conn *_c = (c);                                               \
        _c ? (type *)(void *)((char *)_c - offsetof(type, member)) : (type *)0; \
    })

/* Whether a and b are the same peer: the same IPv4 address, or IPv6 addresses of the same /64
 * (link-local, loopback and IPv4-mapped ones: the same address); the port, flow and scope
 * ignored. Other families are never the same: each such connection is a peer of its own. */
bool tm_same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* The admission of a client from peer. 0: admitted once *ret_victim is closed (NULL: no need);
 * -EBUSY: no room and nothing to evict, refuse it. */
int tm_conn_admit_peer(const struct tm_conn_table *t, const struct sockaddr_storage *peer, struct tm_conn **ret_victim);
/* The admission of the client on fd (tm_acceptor's callback): its address into *ret_peer, and the
 * victim, if room must be made, evicted (t->evict). Refused (-EBUSY, logged) or gone (getpeername's
 * error), fd is closed. */
int tm_conn_admit(struct tm_conn_table *t, int fd, struct sockaddr_storage *ret_peer);

/* An admitted connection: into the table, open and waiting for its first request. */
void tm_conn_add(struct tm_conn_table *t, struct tm_conn *c, const struct sockaddr_storage *peer);
/* Its connection closed; the record stays until tm_conn_remove. */
void tm_conn_closed(struct tm_conn_table *t, struct tm_conn *c);
/* Out of the table (closed or not). */
void tm_conn_remove(struct tm_conn_table *t, struct tm_conn *c);

/* It begins to wait (for a request): the newest wait, evicted last. */
static inline void tm_conn_waiting(struct tm_conn_table *t, struct tm_conn *c)
{
    c->waiting_since = ++t->clock;
}
/* It has work under way: not evictable. */
static inline void tm_conn_busy(struct tm_conn *c)
{
    c->waiting_since = 0;
}

/* Write what out holds to the connection's fd (one answer at a time); src then watches for what
 * comes next. 1: the socket is full, src waits for EPOLLOUT; 0: all written, src waits for the next
 * request (EPOLLIN); negative: the socket failed, or src could not be changed. */
int tm_conn_flush(tm_buf *out, int fd, tm_source *src);
