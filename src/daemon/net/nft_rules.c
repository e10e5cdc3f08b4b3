/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The text of trustme's nftables rules (docs/NETWORK.md "nftables"). One script replaces both
 * tables: "add table X; delete table X; table X {...}" is applied by nft as one batch, so the
 * kernel switches from the old rules to exactly the new ones atomically, whatever was there.
 *
 * The inet table's rules are written out per container (ports, host_ports and allowed pairs are
 * few, and per-rule comments make `nft list table` readable for an admin); the bridge table, which
 * every bridged container is in, keeps its members in sets, with a comment per element. */
#include "nft_rules.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

#define ADDR_STR_MAX INET_ADDRSTRLEN

static const char *addr_str(struct in_addr a, char buf[static ADDR_STR_MAX])
{
    return inet_ntop(AF_INET, &a, buf, ADDR_STR_MAX);
}

/* Names go into the script quoted ("..." and comment "..."); anything beyond these characters
 * could end the string or be read as a keyword, so it is refused rather than escaped. */
static bool safe_word(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return false;
    return true;
}

static const char *proto_name(uint8_t proto)
{
    return proto == IPPROTO_UDP ? "udp" : "tcp";
}

static bool pair_allowed(const struct net_device_config *dev, const char *a, const char *b)
{
    for (size_t i = 0; i < dev->nallow; i++) {
        const char *x = dev->allow[i][0], *y = dev->allow[i][1];
        if ((!strcmp(x, a) && !strcmp(y, b)) || (!strcmp(x, b) && !strcmp(y, a)))
            return true;
    }
    return false;
}

bool nft_needs_forwarding(const struct net_device_config *dev, const struct nft_member *members, size_t n)
{
    if (n > 0 && dev->nat)
        return true;
    for (size_t i = 0; i < n; i++)
        if (members[i].net && members[i].net->nports > 0)
            return true;
    return false;
}

static int check_input(const struct net_device_config *dev, const struct nft_member *m, size_t n, tm_err *err)
{
    if (!safe_word(dev->bridge, IF_NAMESIZE - 1))
        return tm_err_set(err, EINVAL, "bridge name \"%s\" cannot be used in nft rules", dev->bridge);
    for (size_t i = 0; i < n; i++) {
        if (!safe_word(m[i].name, 64) || !safe_word(m[i].host_if, IF_NAMESIZE - 1))
            return tm_err_set(err, EINVAL, "container \"%s\" (interface \"%s\"): name cannot be used in nft rules",
                              m[i].name, m[i].host_if);
        if (!m[i].net)
            return tm_err_set(err, EINVAL, "container %s: no network config", m[i].name);
    }
    /* The first rule would win and the second container's forward would silently not work. */
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < m[i].net->nports; p++)
            for (size_t j = i; j < n; j++)
                for (size_t q = (j == i ? p + 1 : 0); q < m[j].net->nports; q++) {
                    const struct net_port *a = &m[i].net->ports[p], *b = &m[j].net->ports[q];
                    if (a->host == b->host && a->proto == b->proto)
                        return tm_err_set(err, EADDRINUSE, "host port %s %u is forwarded by both %s and %s",
                                          proto_name(a->proto), a->host, m[i].name, m[j].name);
                }
    return 0;
}

static void emit_remove(FILE *f, const char *bridge)
{
    /* "add" first so that "delete" never fails on a table that does not exist. */
    fprintf(f, "add table inet trustme-%s\ndelete table inet trustme-%s\n", bridge, bridge);
    fprintf(f, "add table bridge trustme-%s\ndelete table bridge trustme-%s\n", bridge, bridge);
}

/* NAT: masquerade on the way out, and port forwards reached from elsewhere and from the host. */
static void emit_nat(FILE *f, const struct net_device_config *dev, const char *subnet, const struct nft_member *m,
                     size_t n)
{
    const char *br = dev->bridge;
    char a[ADDR_STR_MAX];

    if (dev->nat)
        fprintf(f,
                "\tchain postrouting {\n"
                "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                "\t\tip saddr %s oifname != \"%s\" masquerade comment \"containers to the outside\"\n"
                "\t}\n",
                subnet, br);
    /* Not from the bridge: a container reaches another only as network.allow says, not through a
     * forward. Not 127.0.0.0/8: a DNAT of loopback traffic to the bridge needs route_localnet,
     * a host setting trustme leaves alone; forwards are reached at the host's other addresses. */
    fprintf(f,
            "\tchain prerouting {\n"
            "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            "\t\tiifname != \"%s\" ip daddr != 127.0.0.0/8 fib daddr type local jump port_forwards\n"
            "\t}\n"
            "\tchain output {\n"
            "\t\ttype nat hook output priority -100; policy accept;\n" /* dstnat's value */
            "\t\tip daddr != 127.0.0.0/8 fib daddr type local jump port_forwards\n"
            "\t}\n"
            "\tchain port_forwards {\n",
            br);
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < m[i].net->nports; p++) {
            const struct net_port *port = &m[i].net->ports[p];
            fprintf(f, "\t\t%s dport %u dnat ip to %s:%u comment \"%s\"\n", proto_name(port->proto), port->host,
                    addr_str(m[i].address, a), port->container, m[i].name);
        }
    fprintf(f, "\t}\n");
}

/* Routed (and, with br_netfilter, bridged) IPv4 traffic of the subnet. */
static void emit_forward(FILE *f, const struct net_device_config *dev, const char *subnet, const struct nft_member *m,
                         size_t n)
{
    const char *br = dev->bridge;
    char a[ADDR_STR_MAX], b[ADDR_STR_MAX];

    fprintf(f,
            "\tchain forward {\n"
            "\t\ttype filter hook forward priority filter; policy accept;\n"
            "\t\tiifname \"%s\" jump from_bridge\n"
            "\t\toifname \"%s\" jump to_bridge\n"
            "\t}\n"
            "\tchain from_bridge {\n"
            "\t\tct state established,related accept\n"
            "\t\toifname \"%s\" jump between_containers\n",
            br, br, br);
    if (dev->nat)
        fprintf(f, "\t\tip saddr %s accept comment \"containers to the outside\"\n", subnet);
    fprintf(f, "\t\tdrop\n"
               "\t}\n"
               "\tchain to_bridge {\n"
               "\t\tct state established,related accept\n");
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < m[i].net->nports; p++) {
            const struct net_port *port = &m[i].net->ports[p];
            fprintf(f, "\t\tip daddr %s %s dport %u ct status dnat accept comment \"%s\"\n", addr_str(m[i].address, a),
                    proto_name(port->proto), port->container, m[i].name);
        }
    /* Bridged traffic between two ports passes here too (br_netfilter): the pair rules by address
     * mirror the bridge table's rules by interface, which are the ones a spoofer cannot evade. */
    fprintf(f, "\t\tdrop\n"
               "\t}\n"
               "\tchain between_containers {\n");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j && pair_allowed(dev, m[i].name, m[j].name))
                fprintf(f, "\t\tip saddr %s ip daddr %s accept comment \"%s to %s\"\n", addr_str(m[i].address, a),
                        addr_str(m[j].address, b), m[i].name, m[j].name);
    fprintf(f, "\t\tdrop\n"
               "\t}\n");
}

/* What containers may reach of the host itself. */
static void emit_input(FILE *f, const struct net_device_config *dev, const struct nft_member *m, size_t n)
{
    const char *br = dev->bridge;
    char a[ADDR_STR_MAX], gw[ADDR_STR_MAX];
    struct in_addr gw_addr = {htonl(ntohl(dev->subnet.s_addr) + 1)};

    addr_str(gw_addr, gw);
    fprintf(f,
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            "\t\tiifname \"%s\" jump input_from_bridge\n"
            "\t}\n"
            "\tchain input_from_bridge {\n"
            "\t\tct state established,related accept\n"
            /* Only the bridge address answers a ping: the host's other addresses (its uplink,
             * other bridges) are none of a container's business, not even whether they exist. */
            "\t\tip daddr %s icmp type echo-request accept\n",
            br, gw);
    for (size_t i = 0; i < n; i++) {
        const struct net_config *net = m[i].net;
        if (net->nhost_ports == 0)
            continue;
        fprintf(f, "\t\tip saddr %s ip daddr %s meta l4proto { tcp, udp } th dport { ", addr_str(m[i].address, a), gw);
        for (size_t p = 0; p < net->nhost_ports; p++)
            fprintf(f, "%s%u", p ? ", " : "", net->host_ports[p]);
        fprintf(f, " } accept comment \"%s\"\n", m[i].name);
    }
    fprintf(f, "\t\tdrop\n"
               "\t}\n");
}

const char *nft_set_name(enum nft_set_id set)
{
    return set == NFT_SET_PORTS ? "ports" : set == NFT_SET_ADDRS ? "addrs" : "pairs";
}

bool nft_elem_same(const struct nft_elem *a, const struct nft_elem *b)
{
    return a->set == b->set && strcmp(a->port, b->port) == 0 &&
           (a->set != NFT_SET_ADDRS || a->address.s_addr == b->address.s_addr) &&
           (a->set != NFT_SET_PAIRS || strcmp(a->peer, b->peer) == 0);
}

/* Each member's port and port with address; each allowed pair both ways (checked input). */
static int bridge_elems(const struct net_device_config *dev, const struct nft_member *m, size_t n,
                        struct nft_elem **ret_elems, size_t *ret_n, tm_err *err)
{
    size_t count = 2 * n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            count += i != j && pair_allowed(dev, m[i].name, m[j].name);
    _cleanup_free_ struct nft_elem *e = calloc(count ? count : 1, sizeof(*e));
    if (!e)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        e[k] = (struct nft_elem){.set = NFT_SET_PORTS};
        snprintf(e[k].port, sizeof(e[k].port), "%s", m[i].host_if);
        snprintf(e[k].comment, sizeof(e[k].comment), "%s", m[i].name);
        e[k + 1] = e[k];
        e[k + 1].set = NFT_SET_ADDRS;
        e[k + 1].address = m[i].address;
        k += 2;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j && pair_allowed(dev, m[i].name, m[j].name)) {
                e[k] = (struct nft_elem){.set = NFT_SET_PAIRS};
                snprintf(e[k].port, sizeof(e[k].port), "%s", m[i].host_if);
                snprintf(e[k].peer, sizeof(e[k].peer), "%s", m[j].host_if);
                snprintf(e[k].comment, sizeof(e[k].comment), "%s to %s", m[i].name, m[j].name);
                k++;
            }
    *ret_n = k;
    *ret_elems = steal_ptr(e);
    return 0;
}

static void emit_set(FILE *f, enum nft_set_id set, const char *type, const struct nft_elem *e, size_t n)
{
    char a[ADDR_STR_MAX];
    bool first = true;

    fprintf(f, "\tset %s {\n\t\ttype %s\n", nft_set_name(set), type);
    for (size_t i = 0; i < n; i++) {
        if (e[i].set != set)
            continue;
        fprintf(f, "%s\"%s\"", first ? "\t\telements = { " : ", ", e[i].port);
        if (set == NFT_SET_ADDRS)
            fprintf(f, " . %s", addr_str(e[i].address, a));
        else if (set == NFT_SET_PAIRS)
            fprintf(f, " . \"%s\"", e[i].peer);
        fprintf(f, " comment \"%s\"", e[i].comment);
        first = false;
    }
    fprintf(f, "%s\t}\n", first ? "" : " }\n");
}

/* Layer 2: what the inet table cannot see reliably (who sent it: the port, not the address). The
 * members are elements of the sets, so a start or stop changes no rule (nft_batch.c). */
static void emit_bridge_table(FILE *f, const struct net_device_config *dev, const struct nft_elem *e, size_t n)
{
    fprintf(f, "table bridge trustme-%s {\n", dev->bridge);
    emit_set(f, NFT_SET_PORTS, "ifname", e, n);
    emit_set(f, NFT_SET_ADDRS, "ifname . ipv4_addr", e, n);
    emit_set(f, NFT_SET_PAIRS, "ifname . ifname", e, n);
    /* A container speaks only with its own address, so that rules by address (host_ports, the
     * pairs) mean that container, and it cannot claim another's address in the host's ARP cache.
     * 0.0.0.0 is an ARP probe's sender address. First, nothing but untagged IPv4, ARP and IPv6:
     * `ether type` of a frame with a VLAN tag is the tag's (802.1Q, 802.1ad), so the two rules
     * after it would not see a tagged one, and the host takes a priority-tagged frame (VLAN id 0)
     * as untagged: a tagged ARP request taught the host's ARP cache another container's address
     * at this one's MAC (review rev7). */
    fprintf(f, "\tchain prerouting {\n"
               "\t\ttype filter hook prerouting priority filter; policy accept;\n"
               "\t\tiifname @ports ether type != { ip, arp, ip6 } drop comment \"untagged IPv4, ARP and IPv6 only\"\n"
               "\t\tether type ip iifname @ports iifname . ip saddr != @addrs drop comment \"not its address\"\n"
               "\t\tether type arp iifname @ports arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @addrs drop "
               "comment \"not its address\"\n"
               "\t}\n"
               "\tchain forward {\n"
               "\t\ttype filter hook forward priority filter; policy accept;\n"
               "\t\tiifname . oifname @pairs accept comment \"an allowed pair\"\n"
               /* Anything else a member's port forwards at layer 2 goes to or comes from another
                * port of the bridge: another container. (meta ibrname would name the bridge, but
                * needs the kernel's nft_meta_bridge, which this platform lacks; so net.c syncs
                * before a new veth is up.) */
               "\t\tiifname @ports drop comment \"from a container\"\n"
               "\t\toifname @ports drop comment \"to a container\"\n"
               "\t}\n"
               "}\n");
}

static int finish(FILE **f, char **text, char **ret_text, tm_err *err)
{
    int r = fclose(*f);
    *f = NULL;
    if (r != 0)
        return tm_err_sys(err, "building the nft rules");
    *ret_text = steal_ptr(*text);
    return 0;
}

int nft_ruleset_remove(const char *bridge, char **ret_text, tm_err *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len;

    if (!safe_word(bridge, IF_NAMESIZE - 1))
        return tm_err_set(err, EINVAL, "bridge name \"%s\" cannot be used in nft rules", bridge);
    _cleanup_fclose_ FILE *f = open_memstream(&text, &len);
    if (!f)
        return tm_err_sys(err, "building the nft rules");
    emit_remove(f, bridge);
    return finish(&f, &text, ret_text, err);
}

/* The inet table's script: "add; delete" of the table, then its contents (see the top). */
static int inet_script(const struct net_device_config *dev, const struct nft_member *members, size_t n,
                       const char *subnet, char **ret_text, tm_err *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len;

    _cleanup_fclose_ FILE *f = open_memstream(&text, &len);
    if (!f)
        return tm_err_sys(err, "building the nft rules");
    fprintf(f, "add table inet trustme-%s\ndelete table inet trustme-%s\n", dev->bridge, dev->bridge);
    fprintf(f, "table inet trustme-%s {\n", dev->bridge);
    emit_nat(f, dev, subnet, members, n);
    emit_forward(f, dev, subnet, members, n);
    emit_input(f, dev, members, n);
    fprintf(f, "}\n");
    return finish(&f, &text, ret_text, err);
}

int nft_ruleset_bridge(const struct net_device_config *dev, const struct nft_elem *elems, size_t nelems,
                       char **ret_text, tm_err *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len;

    if (!safe_word(dev->bridge, IF_NAMESIZE - 1))
        return tm_err_set(err, EINVAL, "bridge name \"%s\" cannot be used in nft rules", dev->bridge);
    _cleanup_fclose_ FILE *f = open_memstream(&text, &len);
    if (!f)
        return tm_err_sys(err, "building the nft rules");
    fprintf(f, "add table bridge trustme-%s\ndelete table bridge trustme-%s\n", dev->bridge, dev->bridge);
    emit_bridge_table(f, dev, elems, nelems);
    return finish(&f, &text, ret_text, err);
}

int nft_ruleset_parts(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_inet,
                      char **ret_bridge_base, struct nft_elem **ret_elems, size_t *ret_nelems, tm_err *err)
{
    _cleanup_free_ char *inet = NULL, *base = NULL;
    _cleanup_free_ struct nft_elem *elems = NULL;
    size_t nelems = 0;
    char net[ADDR_STR_MAX], subnet[ADDR_STR_MAX + 4];
    int r;

    assert(n > 0);
    r = check_input(dev, members, n, err);
    if (r < 0)
        return r;
    snprintf(subnet, sizeof(subnet), "%s/%u", addr_str(dev->subnet, net), dev->prefix);
    if ((r = inet_script(dev, members, n, subnet, &inet, err)) < 0 ||
        (r = nft_ruleset_bridge(dev, NULL, 0, &base, err)) < 0 ||
        (r = bridge_elems(dev, members, n, &elems, &nelems, err)) < 0)
        return r;
    *ret_inet = steal_ptr(inet);
    *ret_bridge_base = steal_ptr(base);
    *ret_elems = steal_ptr(elems);
    *ret_nelems = nelems;
    return 0;
}

int nft_ruleset_tables(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_inet,
                       char **ret_bridge, tm_err *err)
{
    _cleanup_free_ char *inet = NULL, *base = NULL, *bridge = NULL;
    _cleanup_free_ struct nft_elem *elems = NULL;
    size_t nelems = 0;
    int r;

    if ((r = nft_ruleset_parts(dev, members, n, &inet, &base, &elems, &nelems, err)) < 0 ||
        (r = nft_ruleset_bridge(dev, elems, nelems, &bridge, err)) < 0)
        return r;
    *ret_inet = steal_ptr(inet);
    *ret_bridge = steal_ptr(bridge);
    return 0;
}

int nft_ruleset(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_text,
                tm_err *err)
{
    _cleanup_free_ char *inet = NULL, *bridge = NULL;
    char net[ADDR_STR_MAX];
    int r;

    if (n == 0)
        return nft_ruleset_remove(dev->bridge, ret_text, err);
    if ((r = nft_ruleset_tables(dev, members, n, &inet, &bridge, err)) < 0)
        return r;
    if (asprintf(ret_text, "# trustmed: bridge %s, subnet %s/%u, %zu container(s); replaced as a whole\n%s%s",
                 dev->bridge, addr_str(dev->subnet, net), dev->prefix, n, inet, bridge) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    return 0;
}
