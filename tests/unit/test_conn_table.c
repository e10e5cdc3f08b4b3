/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The admission core of the TCP servers (src/lib/conn_table.c: tpmd's attestation endpoint and
 * trustmed's migration endpoint) and their listening socket (src/lib/tcp_listen.c). Admission and
 * eviction decisions on tables built here: a peer at its limit makes room among its own
 * connections only; with every slot taken the address that holds most loses its longest-waiting
 * connection; busy connections and closed records are never chosen, closed records still count
 * for their address; IPv4 peers are compared by address, IPv6 ones by their /64 (link-local and
 * loopback ones, and IPv4-mapped ones of a dual-stack listener, in full), never by port. Then the flood of
 * test_tpmd.py's test_idle_clients_do_not_lock_out_verifiers played on a table; the listener, the
 * peer address, refusal and eviction on real sockets of the loopback; and the write-out of an
 * answer (tm_conn_flush) on an event loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "conn_table.h"
#include "event.h"
#include "tcp_listen.h"

struct rec {
    struct tm_conn link;
    int id;
};

static struct sockaddr_storage v4(const char *addr, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *addr, uint16_t port, uint32_t scope)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
    in->sin6_family = AF_INET6;
    in->sin6_port = htons(port);
    in->sin6_scope_id = scope;
    assert_int_equal(inet_pton(AF_INET6, addr, &in->sin6_addr), 1);
    return ss;
}

static int rec_id(struct tm_conn *c)
{
    return c ? tm_conn_record(c, struct rec, link)->id : 0;
}

/* What a server does: the new client admitted (its victim closed first), or refused (-EBUSY).
 * Returns the admission's result; *ret_victim the evicted record's id (0: none). */
static int connect_as(struct tm_conn_table *t, struct rec *r, int id, struct sockaddr_storage peer, int *ret_victim)
{
    struct tm_conn *victim = NULL;
    int res = tm_conn_admit_peer(t, &peer, &victim);
    *ret_victim = 0;
    if (res < 0)
        return res;
    *ret_victim = rec_id(victim);
    if (victim)
        tm_conn_remove(t, victim);
    tm_conn_add(t, &r->link, &peer);
    r->id = id;
    return 0;
}

static unsigned count(const struct tm_conn_table *t)
{
    unsigned n = 0;
    for (struct tm_conn *c = t->head; c; c = c->next)
        n++;
    return n;
}

static bool present(const struct tm_conn_table *t, int id)
{
    for (struct tm_conn *c = t->head; c; c = c->next)
        if (rec_id(c) == id)
            return true;
    return false;
}

static void peers_are_addresses_not_ports(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("192.0.2.1", 1000), b = v4("192.0.2.1", 2000), c = v4("192.0.2.2", 1000);
    assert_true(tm_same_peer(&a, &b));
    assert_false(tm_same_peer(&a, &c));
    /* an IPv6 peer is its /64: a host takes any address of its prefix at will */
    struct sockaddr_storage x = v6("2001:db8::1", 1000, 0), y = v6("2001:db8::1", 2000, 3),
                            z = v6("2001:db8::2", 1000, 0), w = v6("2001:db8:0:0:ffff:ffff:ffff:ffff", 1, 0),
                            other = v6("2001:db8:0:1::1", 1000, 0);
    assert_true(tm_same_peer(&x, &y));
    assert_true(tm_same_peer(&x, &z));
    assert_true(tm_same_peer(&x, &w));
    assert_false(tm_same_peer(&x, &other));
    /* link-local (all of them in fe80::/64) and ::/64 (loopback) compared in full */
    struct sockaddr_storage ll1 = v6("fe80::1", 1, 2), ll2 = v6("fe80::2", 1, 2), lo = v6("::1", 1, 0),
                            lo2 = v6("::2", 1, 0);
    assert_false(tm_same_peer(&ll1, &ll2));
    assert_true(tm_same_peer(&ll1, &ll1));
    assert_false(tm_same_peer(&lo, &lo2));
    /* an IPv4 client of a dual-stack listener arrives mapped: one peer per IPv4 address, as on an
     * IPv4 listener (not all of ::ffff:0:0/96 one peer) */
    struct sockaddr_storage mapped = v6("::ffff:192.0.2.1", 1000, 0), mapped2 = v6("::ffff:192.0.2.2", 1000, 0);
    assert_false(tm_same_peer(&a, &mapped));
    assert_true(tm_same_peer(&mapped, &mapped));
    assert_false(tm_same_peer(&mapped, &mapped2));
    /* another family: each connection a peer of its own */
    struct sockaddr_storage u = {.ss_family = AF_UNIX};
    assert_false(tm_same_peer(&u, &u));
}

static void admits_within_the_limits(void **state)
{
    (void)state;
    struct tm_conn_table t = {.max_conns = 4, .max_per_peer = 2};
    struct rec r[4];
    int victim;
    assert_int_equal(connect_as(&t, &r[0], 1, v4("192.0.2.1", 1), &victim), 0);
    assert_int_equal(victim, 0);
    assert_int_equal(connect_as(&t, &r[1], 2, v4("192.0.2.1", 2), &victim), 0);
    assert_int_equal(victim, 0);
    assert_int_equal(connect_as(&t, &r[2], 3, v6("2001:db8::1", 1, 0), &victim), 0);
    assert_int_equal(connect_as(&t, &r[3], 4, v6("2001:db8::2", 1, 0), &victim), 0);
    assert_int_equal(victim, 0);
    assert_int_equal(t.nopen, 4);
    assert_int_equal(count(&t), 4);
    /* newest first, each waiting since it was admitted */
    assert_int_equal(rec_id(t.head), 4);
    assert_true(r[0].link.waiting_since < r[1].link.waiting_since);
    assert_true(r[1].link.waiting_since < r[3].link.waiting_since);
}

static void a_peer_at_its_limit_makes_room_among_its_own(void **state)
{
    (void)state;
    struct tm_conn_table t = {.max_conns = 8, .max_per_peer = 2};
    struct rec r[8];
    int victim;
    /* another address's connection waited longer than any of the peer's */
    assert_int_equal(connect_as(&t, &r[0], 1, v6("2001:db8:9::1", 1, 0), &victim), 0);
    assert_int_equal(connect_as(&t, &r[1], 2, v6("2001:db8::1", 1, 0), &victim), 0);
    assert_int_equal(connect_as(&t, &r[2], 3, v6("2001:db8::1", 2, 0), &victim), 0);
    assert_int_equal(connect_as(&t, &r[3], 4, v6("2001:db8::1", 3, 0), &victim), 0);
    assert_int_equal(victim, 2);
    assert_true(present(&t, 1));
    /* its own busy: refused, although there is room and another's connection is idle */
    tm_conn_busy(&r[2].link);
    tm_conn_busy(&r[3].link);
    struct tm_conn unwritten, *v = &unwritten;
    struct sockaddr_storage p = v6("2001:db8::1", 4, 0);
    assert_int_equal(tm_conn_admit_peer(&t, &p, &v), -EBUSY);
    assert_ptr_equal(v, &unwritten);
    /* once one waits again it is the one to go */
    tm_conn_waiting(&t, &r[3].link);
    assert_int_equal(tm_conn_admit_peer(&t, &p, &v), 0);
    assert_int_equal(rec_id(v), 4);
    /* another address of its /64 is the same peer: it too makes room among the peer's own */
    struct sockaddr_storage same64 = v6("2001:db8::2", 1, 0);
    assert_int_equal(tm_conn_admit_peer(&t, &same64, &v), 0);
    assert_int_equal(rec_id(v), 4);
    /* the next /64 is another peer, with room of its own */
    struct sockaddr_storage q = v6("2001:db8:0:1::1", 1, 0);
    assert_int_equal(tm_conn_admit_peer(&t, &q, &v), 0);
    assert_null(v);
    /* and the same holds for IPv4 */
    struct tm_conn_table t4 = {.max_conns = 8, .max_per_peer = 1};
    struct rec s[3];
    assert_int_equal(connect_as(&t4, &s[0], 1, v4("198.51.100.7", 1), &victim), 0);
    assert_int_equal(connect_as(&t4, &s[1], 2, v4("198.51.100.8", 1), &victim), 0);
    assert_int_equal(connect_as(&t4, &s[2], 3, v4("198.51.100.8", 2), &victim), 0);
    assert_int_equal(victim, 2);
    assert_true(present(&t4, 1));
}

static void a_full_table_evicts_from_the_address_that_holds_most(void **state)
{
    (void)state;
    struct tm_conn_table t = {.max_conns = 4, .max_per_peer = 3};
    struct rec r[5];
    int victim;
    assert_int_equal(connect_as(&t, &r[0], 1, v4("192.0.2.2", 1), &victim), 0); /* B, waited longest */
    assert_int_equal(connect_as(&t, &r[1], 2, v4("192.0.2.1", 1), &victim), 0); /* A */
    assert_int_equal(connect_as(&t, &r[2], 3, v4("192.0.2.1", 2), &victim), 0); /* A */
    assert_int_equal(connect_as(&t, &r[3], 4, v4("192.0.2.3", 1), &victim), 0); /* C */
    struct sockaddr_storage d = v4("192.0.2.4", 1);
    struct tm_conn *v;
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_int_equal(rec_id(v), 2);
    tm_conn_busy(&r[1].link);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_int_equal(rec_id(v), 3);
    /* A's all busy: among the addresses that hold one each, the longest waiting */
    tm_conn_busy(&r[2].link);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_int_equal(rec_id(v), 1);
    tm_conn_busy(&r[0].link);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_int_equal(rec_id(v), 4);
    /* nothing waits: refused */
    tm_conn_busy(&r[3].link);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), -EBUSY);
    /* a tie between addresses: the longest waiting of both */
    tm_conn_waiting(&t, &r[2].link); /* A: waits again, newest */
    tm_conn_waiting(&t, &r[3].link); /* C */
    tm_conn_waiting(&t, &r[0].link); /* B */
    tm_conn_remove(&t, &r[1].link); /* A holds one as well now */
    assert_int_equal(connect_as(&t, &r[4], 5, v4("192.0.2.4", 1), &victim), 0);
    assert_int_equal(victim, 0);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0); /* D holds 1 too, but waits newest */
    assert_int_equal(rec_id(v), 3);
}

static void closed_records_count_for_their_address_only(void **state)
{
    (void)state;
    /* The migration endpoint keeps the record of a connection it closed while an announcement's
     * check was in flight: it takes no slot and cannot be evicted, but its address holds it. */
    struct tm_conn_table t = {.max_conns = 4, .max_per_peer = 2};
    struct rec r[6];
    int victim;
    assert_int_equal(connect_as(&t, &r[0], 1, v4("192.0.2.1", 1), &victim), 0);
    assert_int_equal(connect_as(&t, &r[1], 2, v4("192.0.2.1", 2), &victim), 0);
    tm_conn_closed(&t, &r[0].link);
    tm_conn_closed(&t, &r[1].link);
    tm_conn_closed(&t, &r[1].link); /* twice is once */
    assert_int_equal(t.nopen, 0);
    assert_int_equal(count(&t), 2);
    /* A's closed records are not at its limit */
    assert_int_equal(connect_as(&t, &r[2], 3, v4("192.0.2.1", 3), &victim), 0);
    assert_int_equal(victim, 0);
    assert_int_equal(connect_as(&t, &r[3], 4, v4("192.0.2.2", 1), &victim), 0);
    assert_int_equal(connect_as(&t, &r[4], 5, v4("192.0.2.2", 2), &victim), 0);
    assert_int_equal(connect_as(&t, &r[5], 6, v4("192.0.2.3", 1), &victim), 0);
    assert_int_equal(t.nopen, 4);
    /* full: A holds 3 records (one open), B 2, C 1: A's open one goes, not a closed one that
     * waited longer, and not B's that waited longer */
    struct sockaddr_storage d = v4("192.0.2.4", 1);
    struct tm_conn *v;
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_int_equal(rec_id(v), 3);
    tm_conn_closed(&t, v);
    assert_int_equal(t.nopen, 3);
    assert_int_equal(tm_conn_admit_peer(&t, &d, &v), 0);
    assert_null(v);
    tm_conn_remove(&t, &r[0].link);
    tm_conn_remove(&t, &r[1].link);
    assert_int_equal(count(&t), 4);
    assert_int_equal(t.nopen, 3);
}

static void a_flood_from_one_address_keeps_anothers_connection(void **state)
{
    (void)state;
    /* the attestation endpoint's limits and test_tpmd.py's idle clients */
    struct tm_conn_table t = {.max_conns = 16, .max_per_peer = 8};
    static struct rec r[80];
    int victim, id = 0;
    assert_int_equal(connect_as(&t, &r[id], id + 1, v4("127.0.0.2", 40000), &victim), 0);
    for (id = 1; id <= 16; id++)
        assert_int_equal(connect_as(&t, &r[id], id + 1, v4("127.0.0.1", (uint16_t)(40000 + id)), &victim), 0);
    /* 127.0.0.1 holds 8, its newest */
    assert_int_equal(count(&t), 9);
    for (int i = 2; i <= 17; i++)
        assert_int_equal(present(&t, i), i > 9);
    /* the verifier from a third address gets in while they are open */
    assert_int_equal(connect_as(&t, &r[id], id + 1, v4("127.0.0.3", 1), &victim), 0);
    assert_int_equal(victim, 0);
    id++;
    for (; id < 60; id++) {
        assert_int_equal(connect_as(&t, &r[id], id + 1, v4("127.0.0.1", (uint16_t)(41000 + id)), &victim), 0);
        assert_true(victim >= 2);
    }
    assert_true(present(&t, 1));
    assert_true(present(&t, 18));
    assert_int_equal(t.nopen, 10);
    /* six more addresses fill the table; then the flood evicts only its own */
    for (int i = 0; i < 6; i++, id++) {
        char addr[INET_ADDRSTRLEN];
        snprintf(addr, sizeof(addr), "127.0.1.%d", i + 1);
        assert_int_equal(connect_as(&t, &r[id], id + 1, v4(addr, 1), &victim), 0);
        assert_int_equal(victim, 0);
    }
    assert_int_equal(t.nopen, 16);
    for (; id < 70; id++) {
        assert_int_equal(connect_as(&t, &r[id], id + 1, v4("127.0.0.1", (uint16_t)(42000 + id)), &victim), 0);
        assert_true(victim >= 19 && victim <= 60);
    }
    /* a new address with all full: the flooder (8) loses one */
    assert_int_equal(connect_as(&t, &r[id], id + 1, v6("::1", 1, 0), &victim), 0);
    assert_true(victim >= 19 && victim <= 70 && !(victim > 60 && victim <= 66));
    assert_true(present(&t, 1));
}

/* Review rev7: a client with a /64 of its own (any IPv6 host on a SLAAC link, any hosted machine)
 * connects from a new address each time. Compared by address, each of them was a peer holding one
 * connection: with the table full, the longest-waiting connection of all went, a verifier's that
 * waited longest among peers that hold as many. As one peer, the prefix is held to the per-peer
 * limit and evicts only its own. */
static void an_ipv6_prefix_is_one_peer(void **state)
{
    (void)state;
    struct tm_conn_table t = {.max_conns = 16, .max_per_peer = 8};
    static struct rec r[64];
    int victim, id = 0;
    assert_int_equal(connect_as(&t, &r[id], id + 1, v6("2001:db8:2::1", 40000, 0), &victim), 0);
    for (id = 1; id < 64; id++) {
        char addr[INET6_ADDRSTRLEN];
        snprintf(addr, sizeof(addr), "2001:db8:1::%x", id);
        assert_int_equal(connect_as(&t, &r[id], id + 1, v6(addr, 1, 0), &victim), 0);
        assert_true(victim != 1);
    }
    assert_true(present(&t, 1));
    assert_int_equal(t.nopen, 9);
}

static struct tm_conn_table *evict_table;
static int evicted;

static void evict(struct tm_conn *victim)
{
    evicted = rec_id(victim);
    tm_conn_remove(evict_table, victim);
}

/* A client of the listener from address from (IPv4 or IPv6); its accepted end into *ret_accepted. */
static int dial(int lfd, int family, const char *from, int *ret_accepted)
{
    struct sockaddr_storage bound, src = {0};
    socklen_t len = sizeof(bound);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&bound, &len), 0);
    int cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cfd >= 0);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&src;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, from, &in->sin_addr), 1);
        assert_int_equal(bind(cfd, (struct sockaddr *)&src, sizeof(*in)), 0);
    }
    assert_int_equal(connect(cfd, (struct sockaddr *)&bound, len), 0);
    *ret_accepted = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*ret_accepted >= 0);
    return cfd;
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void admits_the_address_of_a_real_client(void **state)
{
    (void)state;
    tm_err err;
    int lfd = tm_tcp_listen("127.0.0.1:0", 0, 4, "test address", &err);
    assert_true(lfd >= 0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    int one = 0;
    socklen_t len = sizeof(one);
    assert_int_equal(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, &len), 0);
    assert_int_equal(one, 1);
    struct sockaddr_in bound;
    len = sizeof(bound);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&bound, &len), 0);
    assert_int_not_equal(bound.sin_port, 0);

    struct tm_conn_table t = {.max_conns = 2, .max_per_peer = 1, .what = "test", .evict = evict};
    evict_table = &t;
    evicted = 0;
    struct sockaddr_storage peer, want = v4("127.0.0.5", 9);
    struct rec r[2] = {{.id = 1}, {.id = 2}};
    int a1, c1 = dial(lfd, AF_INET, "127.0.0.5", &a1);
    assert_int_equal(tm_conn_admit(&t, a1, &peer), 0);
    assert_true(tm_same_peer(&peer, &want));
    assert_true(is_open(a1));
    tm_conn_add(&t, &r[0].link, &peer);
    /* the same address again: its first connection is evicted through the server's callback */
    int a2, c2 = dial(lfd, AF_INET, "127.0.0.5", &a2);
    assert_int_equal(tm_conn_admit(&t, a2, &peer), 0);
    assert_int_equal(evicted, 1);
    assert_int_equal(t.nopen, 0);
    tm_conn_add(&t, &r[1].link, &peer);
    /* busy: the next one from there is refused and its fd closed */
    tm_conn_busy(&r[1].link);
    int a3, c3 = dial(lfd, AF_INET, "127.0.0.5", &a3);
    evicted = 0;
    assert_int_equal(tm_conn_admit(&t, a3, &peer), -EBUSY);
    assert_false(is_open(a3));
    assert_int_equal(evicted, 0);

    /* a second listener on the same port: refused, naming what the address is for */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(bound.sin_port));
    assert_int_equal(tm_tcp_listen(addr, 0, 4, "test address", &err), -EADDRINUSE);
    assert_err_at(&err, "test address");
    assert_err_contains(&err, "cannot listen on 127.0.0.1:");
    assert_int_equal(tm_tcp_listen("127.0.0.1:0", 1, 4, "test address", &err), -EINVAL);
    assert_err_at(&err, "test address");
    assert_err_contains(&err, "port 1..65535");
    /* not a socket: getpeername's error, and closed as well */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tm_conn_admit(&t, p[0], &peer), -ENOTSOCK);
    assert_false(is_open(p[0]));
    close(p[1]);
    close(a1);
    close(a2);
    close(c1);
    close(c2);
    close(c3);
    close(lfd);
}

static void listens_on_ipv6(void **state)
{
    (void)state;
    tm_err err;
    int lfd = tm_tcp_listen("[::1]:0", 0, 4, "test address", &err);
    if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT)
        skip(); /* no IPv6 loopback here */
    assert_true(lfd >= 0);
    struct tm_conn_table t = {.max_conns = 2, .max_per_peer = 1, .what = "test", .evict = evict};
    struct sockaddr_storage peer, want = v6("::1", 1, 0);
    int afd, cfd = dial(lfd, AF_INET6, NULL, &afd);
    assert_int_equal(tm_conn_admit(&t, afd, &peer), 0);
    assert_true(tm_same_peer(&peer, &want));
    close(afd);
    close(cfd);
    close(lfd);
}

struct watch {
    tm_loop *loop;
    uint32_t events;
};

static void on_io(tm_source *src, uint32_t events, void *userdata)
{
    struct watch *w = userdata;
    (void)src;
    w->events = events;
    tm_loop_quit(w->loop, 0);
}

static void on_deadline(tm_source *src, void *userdata)
{
    (void)src;
    tm_loop_quit(userdata, -ETIMEDOUT);
}

/* What the source watches after tm_conn_flush: run the loop until it reports. */
static uint32_t next_events(struct watch *w)
{
    w->events = 0;
    tm_source *deadline = tm_loop_timer(w->loop, 5000, on_deadline, w->loop);
    assert_int_equal(tm_loop_run(w->loop), 0);
    tm_source_free(deadline);
    return w->events;
}

static void flush_waits_for_room_then_for_the_next_request(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as the servers do */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct watch w = {.loop = tm_loop_new()};
    assert_non_null(w.loop);
    tm_source *src = tm_loop_io(w.loop, sv[0], 0, on_io, &w);
    assert_non_null(src);
    tm_buf out = {0};
    /* more than the socket takes: the rest waits for room */
    size_t big = 8u << 20;
    assert_non_null(tm_buf_reserve(&out, big));
    out.len += big;
    assert_int_equal(tm_conn_flush(&out, sv[0], src), 1);
    assert_true(tm_buf_pending(&out) > 0);
    char sink[65536];
    while (read(sv[1], sink, sizeof(sink)) > 0)
        ;
    assert_int_equal(next_events(&w) & (EPOLLOUT | EPOLLIN), EPOLLOUT);
    /* all written: it watches for the next request */
    while (tm_buf_pending(&out)) {
        int r = tm_conn_flush(&out, sv[0], src);
        assert_true(r >= 0);
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(next_events(&w), EPOLLIN);
    /* the peer gone: the error */
    assert_non_null(tm_buf_reserve(&out, 1));
    out.len += 1;
    close(sv[1]);
    assert_int_equal(tm_conn_flush(&out, sv[0], src), -EPIPE);
    tm_buf_free(&out);
    tm_source_free(src);
    tm_loop_free(w.loop);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peers_are_addresses_not_ports),
        cmocka_unit_test(admits_within_the_limits),
        cmocka_unit_test(a_peer_at_its_limit_makes_room_among_its_own),
        cmocka_unit_test(a_full_table_evicts_from_the_address_that_holds_most),
        cmocka_unit_test(closed_records_count_for_their_address_only),
        cmocka_unit_test(a_flood_from_one_address_keeps_anothers_connection),
        cmocka_unit_test(an_ipv6_prefix_is_one_peer),
        cmocka_unit_test(admits_the_address_of_a_real_client),
        cmocka_unit_test(listens_on_ipv6),
        cmocka_unit_test(flush_waits_for_room_then_for_the_next_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
