/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "conn_table.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"

/* How many leading bytes of an IPv6 address name its peer. A host is commonly given a whole /64
 * (SLAAC lets it take any address of its link's prefix, hosting providers route one to each
 * machine), so per address one IPv6 client could be as many peers as the table has slots and
 * evict everyone else: its /64 is one peer. In full: link-local addresses (every one is in
 * fe80::/64, and only a neighbour on the link has them) and those in ::/64 (loopback, and the
 * IPv4 clients of a dual-stack listener, ::ffff:a.b.c.d: one peer per IPv4 address, as on an IPv4
 * listener). Which kind an address is follows from its first 8 bytes, so two addresses of
 * different kinds never compare equal. */
static size_t v6_peer_bytes(const struct in6_addr *a)
{
    static const uint8_t zero[8];
    if (IN6_IS_ADDR_LINKLOCAL(a) || memcmp(a->s6_addr, zero, sizeof(zero)) == 0)
        return sizeof(a->s6_addr);
    return 8;
}

bool tm_same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr,
                              *y = &((const struct sockaddr_in6 *)b)->sin6_addr;
        return memcmp(x->s6_addr, y->s6_addr, v6_peer_bytes(x)) == 0;
    }
    return false;
}

/* The open connection of peer that has waited longest (NULL: all of them are busy), and how many
 * open ones peer has. */
static struct tm_conn *longest_waiting(const struct tm_conn_table *t, const struct sockaddr_storage *peer,
                                       unsigned *ret_from_peer)
{
    struct tm_conn *oldest = NULL;
    unsigned n = 0;
    for (struct tm_conn *c = t->head; c; c = c->next) {
        if (!c->open || !tm_same_peer(&c->peer, peer))
            continue;
        n++;
        if (c->waiting_since && (!oldest || c->waiting_since < oldest->waiting_since))
            oldest = c;
    }
    *ret_from_peer = n;
    return oldest;
}

/* The records peer holds: open connections and closed ones whose answer is awaited. */
static unsigned held_by(const struct tm_conn_table *t, const struct sockaddr_storage *peer)
{
    unsigned n = 0;
    for (struct tm_conn *c = t->head; c; c = c->next)
        if (tm_same_peer(&c->peer, peer))
            n++;
    return n;
}

/* The longest-waiting open connection of the peer that holds most; among peers that hold as many,
 * the one that has waited longest of all. */
static struct tm_conn *busiest_peers_longest_waiting(const struct tm_conn_table *t)
{
    struct tm_conn *best = NULL;
    unsigned best_n = 0;
    for (struct tm_conn *c = t->head; c; c = c->next) {
        if (!c->open || !c->waiting_since)
            continue;
        unsigned n = held_by(t, &c->peer);
        if (n > best_n || (n == best_n && c->waiting_since < best->waiting_since)) {
            best = c;
            best_n = n;
        }
    }
    return best;
}

int tm_conn_admit_peer(const struct tm_conn_table *t, const struct sockaddr_storage *peer, struct tm_conn **ret_victim)
{
    /* Only admission adds, and an eviction frees the slot the new connection takes. */
    assert(t->nopen <= t->max_conns);
    unsigned from_peer;
    struct tm_conn *victim = longest_waiting(t, peer, &from_peer);
    if (from_peer >= t->max_per_peer) {
        /* A new client is worth more than one of its own that waits for nothing, never than
         * another address's. */
        if (!victim)
            return -EBUSY;
    } else if (t->nopen >= t->max_conns) {
        victim = busiest_peers_longest_waiting(t);
        if (!victim)
            return -EBUSY;
    } else {
        victim = NULL;
    }
    *ret_victim = victim;
    return 0;
}

int tm_conn_admit(struct tm_conn_table *t, int fd, struct sockaddr_storage *ret_peer)
{
    struct sockaddr_storage peer = {0};
    socklen_t len = sizeof(peer);
    struct tm_conn *victim = NULL;
    int r = getpeername(fd, (struct sockaddr *)&peer, &len) < 0 ? -errno : tm_conn_admit_peer(t, &peer, &victim);
    if (r < 0) {
        if (r == -EBUSY)
            log_debug("%s client refused: no idle connection to make room", t->what);
        close(fd);
        return r;
    }
    if (victim) {
        unsigned before = t->nopen;
        t->evict(victim);
        /* the slot the new client takes */
        assert(t->nopen == before - 1);
    }
    *ret_peer = peer;
    return 0;
}

void tm_conn_add(struct tm_conn_table *t, struct tm_conn *c, const struct sockaddr_storage *peer)
{
    *c = (struct tm_conn){.next = t->head, .peer = *peer, .open = true};
    tm_conn_waiting(t, c);
    if (t->head)
        t->head->prev = c;
    t->head = c;
    t->nopen++;
}

void tm_conn_closed(struct tm_conn_table *t, struct tm_conn *c)
{
    if (!c->open)
        return;
    c->open = false;
    t->nopen--;
}

void tm_conn_remove(struct tm_conn_table *t, struct tm_conn *c)
{
    tm_conn_closed(t, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

int tm_conn_flush(tm_buf *out, int fd, tm_source *src)
{
    int r = tm_buf_flush(out, fd);
    if (r == 1)
        tm_source_modify(src, EPOLLOUT); /* should this fail, the connection's timer still ends it */
    if (r != 0)
        return r;
    return tm_source_modify(src, EPOLLIN);
}
