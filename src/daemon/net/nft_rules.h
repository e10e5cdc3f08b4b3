/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The text of trustme's nftables rules (nft_rules.c): a pure function of the device's network
 * config and the bridged containers, so that it can be unit tested and read (it is what an admin
 * sees with `nft list table inet trustme-<bridge>`). nft.c applies it. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "config_net.h"
#include "error.h"

/* One bridged container as the rules see it (net.c fills these in for every container whose
 * network is up, plus the one starting). */
struct nft_member {
    const char *name; /* container name (for device.json network.allow) */
    const char *host_if; /* its veth's host end, e.g. "tm1a2b3c4d5e" */
    struct in_addr address;
    const struct net_config *net; /* ports, host_ports */
};

/* The bridge table names its members in three sets rather than in rules of their own, so that a
 * start or stop changes elements, not rules (nft.c sends just the difference, nft_batch.c):
 *   ports  the members' veths (host ends)            type ifname
 *   addrs  each veth with its container's address    type ifname . ipv4_addr
 *   pairs  veth to veth of the allowed pairs         type ifname . ifname */
enum nft_set_id { NFT_SET_PORTS, NFT_SET_ADDRS, NFT_SET_PAIRS };
struct nft_elem {
    enum nft_set_id set;
    char port[IF_NAMESIZE]; /* a member's veth */
    char peer[IF_NAMESIZE]; /* NFT_SET_PAIRS: the veth it may send to */
    struct in_addr address; /* NFT_SET_ADDRS: the member's own address */
    char comment[2 * 64 + 8]; /* the container, or "a to b": what `nft list` shows */
};
const char *nft_set_name(enum nft_set_id set);
/* Same set and key (the comment aside). */
bool nft_elem_same(const struct nft_elem *a, const struct nft_elem *b);

/* The whole nft script that replaces the daemon's two tables with rules for exactly these members
 * in one transaction (n == 0: a script that removes both tables, whether they exist or not).
 * *ret_text is malloc'ed. Fails with -EINVAL for a name nft could misread and -EADDRINUSE when two
 * members forward the same host port. */
int nft_ruleset(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_text,
                tm_err *err);
/* The same for n > 0 as two scripts, one for each table ("inet" and "bridge"), each replacing
 * its table as a whole: nft.c sends only the one(s) that differ from what it last applied. */
int nft_ruleset_tables(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_inet,
                       char **ret_bridge, tm_err *err);
/* What nft.c needs for a sync of n > 0 members: the inet table's script, the bridge table's
 * script without elements (the same for any members: what the elements go into), and the
 * elements of its sets (*ret_elems malloc'ed). */
int nft_ruleset_parts(const struct net_device_config *dev, const struct nft_member *members, size_t n, char **ret_inet,
                      char **ret_bridge_base, struct nft_elem **ret_elems, size_t *ret_nelems, tm_err *err);
/* The bridge table's script (replacing it as a whole) with these elements in its sets. */
int nft_ruleset_bridge(const struct net_device_config *dev, const struct nft_elem *elems, size_t nelems,
                       char **ret_text, tm_err *err);
/* The script that removes both tables (no error when they do not exist). */
int nft_ruleset_remove(const char *bridge, char **ret_text, tm_err *err);
/* Whether these rules need the host to forward IPv4 (outbound NAT or a port forward). */
bool nft_needs_forwarding(const struct net_device_config *dev, const struct nft_member *members, size_t n);
