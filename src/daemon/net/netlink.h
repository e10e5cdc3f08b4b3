/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A minimal rtnetlink client for container networking (net.c): links, addresses, a default
 * route. Raw NETLINK_ROUTE sockets, no `ip` spawned and no library: the handful of messages
 * needed fits in one small file. Every request is acknowledged; nl_configure_netns sends its
 * four in one go (one system call and one wakeup rather than four).
 *
 * A socket works in the network namespace it was created in, whatever its user does afterwards:
 * nl_open(netns_fd) enters the namespace just for the socket() call and comes straight back, so
 * a single-threaded caller (trustmed, the setup process) can drive any namespace it holds an fd
 * of without forking. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* A NETLINK_ROUTE socket in netns_fd's namespace (-1: the caller's own). Returns the fd. */
int nl_open(int netns_fd, tm_err *err);
/* ifindex of name in the socket's namespace, -ENODEV when there is none. */
int nl_ifindex(int s, const char *name, tm_err *err);
/* name of ifindex, -ENODEV when there is none. */
int nl_ifname(int s, int ifindex, char name[IF_NAMESIZE], tm_err *err);
int nl_bridge_add(int s, const char *name, tm_err *err);
/* A veth pair: name here (up with up, on the bridge master unless 0), peer (with peer_mac unless
 * NULL, down) created straight in peer_netns_fd. One request. */
int nl_veth_add(int s, const char *name, int master, bool up, const char *peer, const uint8_t *peer_mac,
                int peer_netns_fd, tm_err *err);

/* What nl_link_set changes; unset fields are left alone. */
struct nl_link_change {
    int up; /* 1 up, 0 down, -1 unchanged */
    int master; /* ifindex of the bridge, 0 unchanged */
    const uint8_t *mac; /* NULL: unchanged */
    int netns_fd; /* move into this namespace, -1: stay */
    const char *name; /* new name (also when moving), NULL: unchanged */
};
int nl_link_set(int s, int ifindex, const struct nl_link_change *ch, tm_err *err);
int nl_link_del(int s, int ifindex, tm_err *err);
int nl_addr_add(int s, int ifindex, struct in_addr addr, unsigned prefix, tm_err *err);
int nl_route_default(int s, struct in_addr gateway, tm_err *err);
/* ifindex of name, and whether it is up; -ENODEV when there is none. */
int nl_ifindex_up(int s, const char *name, bool *ret_up, tm_err *err);
/* A container's new namespace, s opened in it: lo up; with eth0 > 0 also eth0's address, eth0 up
 * and the default route via gateway. One send, acknowledged message by message. */
int nl_configure_netns(int s, int eth0, struct in_addr addr, unsigned prefix, struct in_addr gateway, tm_err *err);
