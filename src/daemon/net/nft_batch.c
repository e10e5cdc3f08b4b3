/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Set elements of trustme's bridge table in one nfnetlink batch (nft_batch.h). The messages are
 * the ones nft itself sends for "add element" and "delete element": NFT_MSG_NEWSETELEM /
 * NFT_MSG_DELSETELEM with the table, the set and a list of keys, between the batch's BEGIN and END,
 * which the kernel applies as one transaction or not at all. */
#include "nft_batch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cleanup.h"

/* nft's own encoding of an element's comment in its user data (a type-length-value record, the
 * string with its NUL): what `nft list` shows after the element. */
#define UDATA_ELEM_COMMENT 0

struct batch {
    char *buf;
    size_t len, cap;
};

/* Room for n more bytes (the caller writes them, aligned). */
static void *batch_room(struct batch *b, size_t n)
{
    n = NLMSG_ALIGN(n);
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p)
            return NULL;
        b->buf = p;
        b->cap = cap;
    }
    void *at = b->buf + b->len;
    memset(at, 0, n);
    b->len += n;
    return at;
}

static struct nlmsghdr *msg_begin(struct batch *b, uint16_t type, uint16_t flags, uint8_t family, uint16_t res_id)
{
    size_t off = b->len;
    if (!batch_room(b, NLMSG_HDRLEN + sizeof(struct nfgenmsg)))
        return NULL;
    struct nlmsghdr *h = (struct nlmsghdr *)(b->buf + off);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | flags;
    struct nfgenmsg *g = NLMSG_DATA(h);
    g->nfgen_family = family;
    g->version = NFNETLINK_V0;
    g->res_id = htons(res_id);
    return h;
}

/* Offsets rather than pointers: the buffer may move as it grows. */
static size_t attr_put(struct batch *b, uint16_t type, const void *data, size_t len, bool *ok)
{
    size_t off = b->len;
    struct nlattr *a = batch_room(b, NLA_HDRLEN + len);
    if (!a) {
        *ok = false;
        return off;
    }
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    if (len)
        memcpy((char *)a + NLA_HDRLEN, data, len);
    return off;
}

static size_t nest_begin(struct batch *b, uint16_t type, bool *ok)
{
    return attr_put(b, type | NLA_F_NESTED, NULL, 0, ok);
}

static void nest_end(struct batch *b, size_t off, bool ok)
{
    if (ok)
        ((struct nlattr *)(b->buf + off))->nla_len = (uint16_t)(b->len - off);
}

/* The key as the kernel compares it: each field of a concatenation padded to 4 bytes, an
 * interface name to IFNAMSIZ (the meta expressions load the name NUL-padded), an address in
 * network order. */
static size_t elem_key(const struct nft_elem *e, uint8_t key[2 * IF_NAMESIZE])
{
    memset(key, 0, 2 * IF_NAMESIZE);
    memcpy(key, e->port, strnlen(e->port, IF_NAMESIZE - 1));
    switch (e->set) {
    case NFT_SET_PORTS: return IF_NAMESIZE;
    case NFT_SET_ADDRS: memcpy(key + IF_NAMESIZE, &e->address, 4); return IF_NAMESIZE + 4;
    case NFT_SET_PAIRS: memcpy(key + IF_NAMESIZE, e->peer, strnlen(e->peer, IF_NAMESIZE - 1)); return 2 * IF_NAMESIZE;
    }
    return 0;
}

/* One NEWSETELEM or DELSETELEM for the elements of e[] in set (none: no message). */
static bool put_elems(struct batch *b, const char *table, enum nft_set_id set, bool add, const struct nft_elem *e,
                      size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += e[i].set == set;
    if (count == 0)
        return true;
    size_t start = b->len;
    bool ok = true;
    uint16_t type = (NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM);
    /* NLM_F_CREATE without NLM_F_EXCL: an element that is there already is no error. */
    if (!msg_begin(b, type, NLM_F_ACK | (add ? NLM_F_CREATE : 0), NFPROTO_BRIDGE, 0))
        return false;
    const char *name = nft_set_name(set);
    attr_put(b, NFTA_SET_ELEM_LIST_TABLE, table, strlen(table) + 1, &ok);
    attr_put(b, NFTA_SET_ELEM_LIST_SET, name, strlen(name) + 1, &ok);
    size_t list = nest_begin(b, NFTA_SET_ELEM_LIST_ELEMENTS, &ok);
    for (size_t i = 0; i < n && ok; i++) {
        if (e[i].set != set)
            continue;
        uint8_t key[2 * IF_NAMESIZE];
        size_t klen = elem_key(&e[i], key);
        size_t el = nest_begin(b, NFTA_LIST_ELEM, &ok);
        size_t k = nest_begin(b, NFTA_SET_ELEM_KEY, &ok);
        attr_put(b, NFTA_DATA_VALUE, key, klen, &ok);
        nest_end(b, k, ok);
        size_t clen = strnlen(e[i].comment, sizeof(e[i].comment) - 1);
        if (add && clen > 0) {
            uint8_t udata[2 + sizeof(e[i].comment)];
            udata[0] = UDATA_ELEM_COMMENT;
            udata[1] = (uint8_t)(clen + 1);
            memcpy(udata + 2, e[i].comment, clen);
            udata[2 + clen] = '\0';
            attr_put(b, NFTA_SET_ELEM_USERDATA, udata, clen + 3, &ok);
        }
        nest_end(b, el, ok);
    }
    nest_end(b, list, ok);
    if (ok)
        ((struct nlmsghdr *)(b->buf + start))->nlmsg_len = (uint32_t)(b->len - start);
    return ok;
}

int nft_batch_elems(const char *bridge, const struct nft_elem *del, size_t ndel, const struct nft_elem *add,
                    size_t nadd, char **ret_buf, size_t *ret_len, tm_err *err)
{
    char table[IF_NAMESIZE + 16];
    snprintf(table, sizeof(table), "trustme-%s", bridge);
    _cleanup_free_ char *buf = NULL;
    struct batch b = {0};
    bool ok = msg_begin(&b, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES) != NULL;
    if (ok)
        ((struct nlmsghdr *)b.buf)->nlmsg_len = (uint32_t)b.len;
    /* Deletions first: a port of a container started again under another address. */
    for (int s = NFT_SET_PORTS; s <= NFT_SET_PAIRS && ok; s++)
        ok = put_elems(&b, table, (enum nft_set_id)s, false, del, ndel);
    for (int s = NFT_SET_PORTS; s <= NFT_SET_PAIRS && ok; s++)
        ok = put_elems(&b, table, (enum nft_set_id)s, true, add, nadd);
    size_t end = b.len;
    if (ok && msg_begin(&b, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES))
        ((struct nlmsghdr *)(b.buf + end))->nlmsg_len = (uint32_t)(b.len - end);
    else
        ok = false;
    buf = b.buf;
    if (!ok)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ret_len = b.len;
    *ret_buf = steal_ptr(buf);
    return 0;
}

int nft_batch_socket(tm_err *err)
{
    _cleanup_close_ int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (s < 0)
        return tm_err_sys(err, "cannot open a netfilter socket");
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return tm_err_sys(err, "cannot bind a netfilter socket");
    /* A kernel that never answers must not hang trustmed's start or stop for good. */
    struct timeval tv = {.tv_sec = 10};
    if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        return tm_err_sys(err, "cannot set a timeout on the netfilter socket");
    return steal_fd(s);
}

int nft_batch_send(int s, char *buf, size_t len, tm_err *err)
{
    static uint32_t seq;
    uint32_t first = seq + 1, nmsg = 0, want = 0;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; (size_t)((char *)h - buf) < len;
         h = (struct nlmsghdr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len))) {
        if (h->nlmsg_len < NLMSG_HDRLEN || (size_t)((char *)h - buf) + h->nlmsg_len > len)
            return tm_err_set(err, EINVAL, "nftables: a malformed batch");
        h->nlmsg_seq = first + nmsg++;
        want += (h->nlmsg_flags & NLM_F_ACK) != 0;
    }
    seq += nmsg;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(s, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)) != (ssize_t)len)
        return tm_err_sys(err, "nftables: cannot send the batch");
    /* One answer per message that asked for one, errors included; a failed commit is answered
     * once, for BEGIN (the first). */
    char in[8192] __attribute__((aligned(4)));
    uint32_t acked = 0;
    while (acked < want) {
        ssize_t n = recv(s, in, sizeof(in), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "nftables: no answer to the batch");
        for (struct nlmsghdr *h = (struct nlmsghdr *)in; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq < first || h->nlmsg_seq - first >= nmsg)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (e->error != 0) {
                errno = -e->error;
                return tm_err_sys(err, "nftables: the kernel refused the set elements");
            }
            acked++;
        }
    }
    return 0;
}
