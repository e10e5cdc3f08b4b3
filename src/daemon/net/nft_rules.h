/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The text of trustme's nftables rules (nft_rules.c): a pure function of the device's network
 * config and the bridged containers, so that it can be unit tested and read (it is what an admin
 * sees with `nft list table inet trustme-<bridge>`). nft.c applies it. */
#pragma once

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
/* The script that removes both tables (no error when they do not exist). */
int nft_ruleset_remove(const char *bridge, char **ret_text, tm_err *err);
/* Whether these rules need the host to forward IPv4 (outbound NAT or a port forward). */
bool nft_needs_forwarding(const struct net_device_config *dev, const struct nft_member *members, size_t n);
