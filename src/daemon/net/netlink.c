/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"

#define NL_BUF 4096

/* One request, or several sent together (nl_configure_netns): h is the one being built. */
struct nl_req {
    struct nlmsghdr *h;
    char buf[NL_BUF] __attribute__((aligned(4)));
};

static void req_put(struct nl_req *q, struct nlmsghdr *at, uint16_t type, uint16_t flags, const void *body, size_t len)
{
    q->h = at;
    q->h->nlmsg_type = type;
    q->h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    q->h->nlmsg_len = NLMSG_LENGTH(len);
    memcpy(NLMSG_DATA(q->h), body, len);
}

static void req_init(struct nl_req *q, uint16_t type, uint16_t flags, const void *body, size_t len)
{
    memset(q->buf, 0, sizeof(q->buf));
    req_put(q, (struct nlmsghdr *)q->buf, type, flags, body, len);
}

/* Another message after the one built last, in the same send. */
static void req_next(struct nl_req *q, uint16_t type, uint16_t flags, const void *body, size_t len)
{
    req_put(q, (struct nlmsghdr *)((char *)q->h + NLMSG_ALIGN(q->h->nlmsg_len)), type, flags, body, len);
}

static size_t req_len(const struct nl_req *q)
{
    return (size_t)((char *)q->h - q->buf) + q->h->nlmsg_len;
}

static struct rtattr *attr_put(struct nl_req *q, uint16_t type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)q->h + NLMSG_ALIGN(q->h->nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    q->h->nlmsg_len = NLMSG_ALIGN(q->h->nlmsg_len) + RTA_ALIGN(a->rta_len);
    return a;
}

static void attr_end(struct nl_req *q, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)q->h + q->h->nlmsg_len - (char *)nest);
}

int nl_open(int netns_fd, tm_err *err)
{
    _cleanup_close_ int self = -1;
    if (netns_fd >= 0) {
        if ((self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
            return tm_err_sys(err, "cannot open the own network namespace");
        if (setns(netns_fd, CLONE_NEWNET) < 0)
            return tm_err_sys(err, "cannot enter the network namespace");
    }
    _cleanup_close_ int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    int saved = errno;
    if (self >= 0 && setns(self, CLONE_NEWNET) < 0) {
        /* Staying in a container's namespace would be far worse than dying. */
        perror("cannot return to the own network namespace");
        abort();
    }
    errno = saved;
    if (s < 0)
        return tm_err_sys(err, "cannot open a netlink socket");
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return tm_err_sys(err, "cannot bind a netlink socket");
    return steal_fd(s);
}

/* Send q (one message or several) and read until every one is acknowledged; with reply, the
 * first answer message (of a single request) is copied there. The kernel handles the messages of
 * one send in order, each under its own rtnl lock, and goes on after one fails: the first error
 * is returned. */
static int talk(int s, struct nl_req *q, struct nlmsghdr *reply, size_t reply_size, const char *what, tm_err *err)
{
    static uint32_t seq;
    size_t len = req_len(q);
    uint32_t first = seq + 1, nmsg = 0;
    for (struct nlmsghdr *h = (struct nlmsghdr *)q->buf; (char *)h < q->buf + len;
         h = (struct nlmsghdr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len)))
        h->nlmsg_seq = first + nmsg++;
    seq += nmsg;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(s, q->buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return tm_err_sys(err, "%s: netlink send", what);
    char buf[16384] __attribute__((aligned(4)));
    bool got = false;
    uint32_t acked = 0;
    int error = 0;
    while (acked < nmsg) {
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "%s: netlink receive", what);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq < first || h->nlmsg_seq - first >= nmsg)
                continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                acked++;
                if (e->error != 0 && error == 0)
                    error = e->error;
                continue;
            }
            if (reply && !got && h->nlmsg_len <= reply_size) {
                memcpy(reply, h, h->nlmsg_len);
                got = true;
            }
        }
    }
    if (error != 0) {
        errno = -error;
        return tm_err_sys(err, "%s", what);
    }
    return got ? 1 : 0;
}

static int get_link(int s, int ifindex, const char *name, struct nlmsghdr *reply, size_t size, tm_err *err)
{
    struct nl_req q;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    req_init(&q, RTM_GETLINK, 0, &ifi, sizeof(ifi));
    if (name)
        attr_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
    int r = talk(s, &q, reply, size, "cannot look up a link", err);
    if (r == -ENODEV || r == 0)
        return -ENODEV;
    return r < 0 ? r : 0;
}

int nl_ifindex(int s, const char *name, tm_err *err)
{
    char buf[NL_BUF] __attribute__((aligned(4)));
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    int r = get_link(s, 0, name, h, sizeof(buf), err);
    if (r < 0)
        return r;
    return ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index;
}

int nl_ifname(int s, int ifindex, char name[IF_NAMESIZE], tm_err *err)
{
    char buf[NL_BUF] __attribute__((aligned(4)));
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    int r = get_link(s, ifindex, NULL, h, sizeof(buf), err);
    if (r < 0)
        return r;
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)IFLA_PAYLOAD(h);
    for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFLA_IFNAME) {
            snprintf(name, IF_NAMESIZE, "%s", (char *)RTA_DATA(a));
            return 0;
        }
    return -ENODEV;
}

int nl_bridge_add(int s, const char *name, tm_err *err)
{
    struct nl_req q;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    attr_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *info = attr_put(&q, IFLA_LINKINFO, NULL, 0);
    attr_put(&q, IFLA_INFO_KIND, "bridge", 6);
    attr_end(&q, info);
    int r = talk(s, &q, NULL, 0, "cannot create the bridge", err);
    return r < 0 ? tm_err_prefix(err, "%s", name) : 0;
}

int nl_veth_add(int s, const char *name, int master, bool up, const char *peer, const uint8_t *peer_mac,
                int peer_netns_fd, tm_err *err)
{
    struct nl_req q;
    /* Flags and master are applied by the kernel right after it registers the link(s)
     * (rtnl_configure_link, do_set_master), as `ip link add ... master B up` does. */
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_change = up ? IFF_UP : 0, .ifi_flags = up ? IFF_UP : 0};
    req_init(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    attr_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
    /* One queue each way, as many as a veth uses anyway (real_num_*_queues is 1 by default).
     * Without these the kernel gives each end one per possible CPU and, once registered, cuts the
     * real number back to 1 (veth_init_queues), which calls synchronize_net() for each end under
     * the RTNL lock: two expedited RCU grace periods per veth, 1-50 ms here, where the request
     * otherwise takes ~0.4 ms. */
    const uint32_t one = 1;
    attr_put(&q, IFLA_NUM_TX_QUEUES, &one, sizeof(one));
    attr_put(&q, IFLA_NUM_RX_QUEUES, &one, sizeof(one));
    if (master > 0) {
        uint32_t m = (uint32_t)master;
        attr_put(&q, IFLA_MASTER, &m, sizeof(m));
    }
    struct rtattr *info = attr_put(&q, IFLA_LINKINFO, NULL, 0);
    attr_put(&q, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = attr_put(&q, IFLA_INFO_DATA, NULL, 0);
    /* VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's attributes. Not up: the
     * kernel configures the peer before it links the pair, and a veth without its peer cannot be
     * opened (ENOTCONN). */
    struct ifinfomsg peer_ifi = {.ifi_family = AF_UNSPEC};
    struct rtattr *p = attr_put(&q, VETH_INFO_PEER, &peer_ifi, sizeof(peer_ifi));
    attr_put(&q, IFLA_IFNAME, peer, strlen(peer) + 1);
    attr_put(&q, IFLA_NUM_TX_QUEUES, &one, sizeof(one));
    attr_put(&q, IFLA_NUM_RX_QUEUES, &one, sizeof(one));
    if (peer_mac)
        attr_put(&q, IFLA_ADDRESS, peer_mac, 6);
    if (peer_netns_fd >= 0) {
        uint32_t fd = (uint32_t)peer_netns_fd;
        attr_put(&q, IFLA_NET_NS_FD, &fd, sizeof(fd));
    }
    attr_end(&q, p);
    attr_end(&q, data);
    attr_end(&q, info);
    int r = talk(s, &q, NULL, 0, "cannot create the veth pair", err);
    return r < 0 ? tm_err_prefix(err, "%s", name) : 0;
}

int nl_link_set(int s, int ifindex, const struct nl_link_change *ch, tm_err *err)
{
    struct nl_req q;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    if (ch->up >= 0) {
        ifi.ifi_change = IFF_UP;
        ifi.ifi_flags = ch->up ? IFF_UP : 0;
    }
    req_init(&q, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    if (ch->master) {
        uint32_t m = (uint32_t)ch->master;
        attr_put(&q, IFLA_MASTER, &m, sizeof(m));
    }
    if (ch->mac)
        attr_put(&q, IFLA_ADDRESS, ch->mac, 6);
    if (ch->netns_fd >= 0) {
        uint32_t fd = (uint32_t)ch->netns_fd;
        attr_put(&q, IFLA_NET_NS_FD, &fd, sizeof(fd));
    }
    if (ch->name)
        attr_put(&q, IFLA_IFNAME, ch->name, strlen(ch->name) + 1);
    int r = talk(s, &q, NULL, 0, "cannot change a link", err);
    return r < 0 ? r : 0;
}

int nl_link_del(int s, int ifindex, tm_err *err)
{
    struct nl_req q;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    req_init(&q, RTM_DELLINK, 0, &ifi, sizeof(ifi));
    int r = talk(s, &q, NULL, 0, "cannot delete a link", err);
    return r < 0 ? r : 0;
}

int nl_addr_add(int s, int ifindex, struct in_addr addr, unsigned prefix, tm_err *err)
{
    struct nl_req q;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET,
                            .ifa_prefixlen = (unsigned char)prefix,
                            .ifa_index = (unsigned)ifindex,
                            .ifa_scope = RT_SCOPE_UNIVERSE};
    req_init(&q, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
    attr_put(&q, IFA_LOCAL, &addr, sizeof(addr));
    attr_put(&q, IFA_ADDRESS, &addr, sizeof(addr));
    struct in_addr bcast = {addr.s_addr | htonl(prefix ? (1u << (32 - prefix)) - 1 : ~0u)};
    attr_put(&q, IFA_BROADCAST, &bcast, sizeof(bcast));
    int r = talk(s, &q, NULL, 0, "cannot add an address", err);
    return r < 0 ? r : 0;
}

int nl_route_default(int s, struct in_addr gateway, tm_err *err)
{
    struct nl_req q;
    struct rtmsg rt = {.rtm_family = AF_INET,
                       .rtm_table = RT_TABLE_MAIN,
                       .rtm_protocol = RTPROT_STATIC,
                       .rtm_scope = RT_SCOPE_UNIVERSE,
                       .rtm_type = RTN_UNICAST};
    req_init(&q, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof(rt));
    attr_put(&q, RTA_GATEWAY, &gateway, sizeof(gateway));
    int r = talk(s, &q, NULL, 0, "cannot add the default route", err);
    return r < 0 ? r : 0;
}

int nl_ifindex_up(int s, const char *name, bool *ret_up, tm_err *err)
{
    char buf[NL_BUF] __attribute__((aligned(4)));
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    int r = get_link(s, 0, name, h, sizeof(buf), err);
    if (r < 0)
        return r;
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    *ret_up = (ifi->ifi_flags & IFF_UP) != 0;
    return ifi->ifi_index;
}

int nl_configure_netns(int s, int eth0, struct in_addr addr, unsigned prefix, struct in_addr gateway, tm_err *err)
{
    struct nl_req q;
    /* lo is LOOPBACK_IFINDEX (1) in every namespace. */
    struct ifinfomsg up = {.ifi_family = AF_UNSPEC, .ifi_index = 1, .ifi_change = IFF_UP, .ifi_flags = IFF_UP};
    req_init(&q, RTM_NEWLINK, 0, &up, sizeof(up));
    if (eth0 > 0) {
        struct ifaddrmsg ifa = {.ifa_family = AF_INET,
                                .ifa_prefixlen = (unsigned char)prefix,
                                .ifa_index = (unsigned)eth0,
                                .ifa_scope = RT_SCOPE_UNIVERSE};
        req_next(&q, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
        attr_put(&q, IFA_LOCAL, &addr, sizeof(addr));
        attr_put(&q, IFA_ADDRESS, &addr, sizeof(addr));
        struct in_addr bcast = {addr.s_addr | htonl(prefix ? (1u << (32 - prefix)) - 1 : ~0u)};
        attr_put(&q, IFA_BROADCAST, &bcast, sizeof(bcast));
        up.ifi_index = eth0;
        req_next(&q, RTM_NEWLINK, 0, &up, sizeof(up));
        /* After the address and up: the gateway is reached through eth0's prefix route. */
        struct rtmsg rt = {.rtm_family = AF_INET,
                           .rtm_table = RT_TABLE_MAIN,
                           .rtm_protocol = RTPROT_STATIC,
                           .rtm_scope = RT_SCOPE_UNIVERSE,
                           .rtm_type = RTN_UNICAST};
        req_next(&q, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof(rt));
        attr_put(&q, RTA_GATEWAY, &gateway, sizeof(gateway));
    }
    int r = talk(s, &q, NULL, 0, eth0 > 0 ? "cannot configure lo and eth0" : "cannot bring lo up", err);
    return r < 0 ? r : 0;
}
