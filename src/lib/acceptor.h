/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The serving side of trustme's links, shared by its servers:
 *
 *   tm_acceptor     (here) the accept loop of a listening stream socket on the event loop (trustmed's
 *                   control sockets, control.c; tpmd's attestation endpoint, attest_server.c):
 *                   accepts every pending client, non-blocking and close-on-exec, and hands each
 *                   to the server's callback, which applies its own policy (peer credentials or
 *                   address, connection limits, eviction: the TCP servers' is conn_table.h) and
 *                   owns the fd from then on. Out of
 *                   fds or memory, it stops watching the socket for pause_ms instead of spinning
 *                   on a level-triggered event it cannot clear.
 *   tm_packet_next  (packet.h) the request loop step of a SOCK_SEQPACKET link to trustmed
 *                   (trustme-scd's server.c, trustme-tpmd's server.c).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "event.h"

/* fd: the accepted connection (O_NONBLOCK, O_CLOEXEC), owned by the callee. The callback must
 * not stop the acceptor that called it. */
typedef void (*tm_accept_fn)(int fd, void *userdata);

struct tm_acceptor {
    tm_loop *loop;
    int fd; /* the listening socket, owned: closed by tm_acceptor_stop */
    tm_source *src;
    tm_source *pause_timer; /* accepting paused for lack of fds or memory */
    unsigned pause_ms;
    const char *what; /* names the socket in the log ("control", "attestation") */
    uint64_t last_logged; /* monotonic seconds: the pause is logged at most every 10 s */
    tm_accept_fn fn;
    void *userdata;
};

/* Watch listen_fd (non-blocking, listening; owned by a from now on, also on failure). */
int tm_acceptor_start(struct tm_acceptor *a, tm_loop *loop, int listen_fd, unsigned pause_ms, const char *what,
                      tm_accept_fn fn, void *userdata, tm_err *err);
/* Stop accepting and close the listening socket; a zeroed or stopped acceptor is fine. */
void tm_acceptor_stop(struct tm_acceptor *a);
/* A zeroed connection record of size bytes for the accepted fd, or NULL with fd closed (out of
 * memory: the client is dropped, the server goes on). */
void *tm_accepted_alloc(int fd, size_t size);
