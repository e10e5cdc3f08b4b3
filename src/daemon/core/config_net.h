/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The network part of the container config ("network", "control") and of the device config
 * ("network"), docs/NETWORK.md. Parsed strictly, like the rest: every error names its JSON path. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define NET_PORTS_MAX 32
#define NET_HOST_PORTS_MAX 16
#define NET_DNS_MAX 3
#define NET_SEARCH_MAX 6
#define NET_SEARCH_NAME_MAX 63
#define NET_IFACES_MAX 8
#define NET_ALLOW_MAX 64

enum net_mode {
    NET_NONE = 0, /* loopback only (the default) */
    NET_BRIDGED = 1, /* a veth pair, the host end on the device's bridge */
};

struct net_port {
    uint16_t host, container;
    uint8_t proto; /* IPPROTO_TCP or IPPROTO_UDP */
};

/* A container's "network". */
struct net_config {
    enum net_mode mode;
    bool has_address; /* a fixed address inside the device's subnet */
    struct in_addr address;
    bool has_mac; /* a fixed MAC for eth0 (unicast) */
    uint8_t mac[6];
    struct in_addr dns[NET_DNS_MAX]; /* /etc/resolv.conf nameservers; none: no resolv.conf */
    size_t ndns;
    char search[NET_SEARCH_MAX][NET_SEARCH_NAME_MAX + 1];
    size_t nsearch;
    struct net_port ports[NET_PORTS_MAX]; /* forwards host_port -> container_port */
    size_t nports;
    uint16_t host_ports[NET_HOST_PORTS_MAX]; /* host services on the bridge address it may reach */
    size_t nhost_ports;
    char ifaces[NET_IFACES_MAX][IF_NAMESIZE]; /* physical interfaces moved in at every start */
    size_t nifaces;
};

/* Which control socket a container gets inside (docs/NETWORK.md "Control roles"). */
enum control_role {
    CONTROL_NONE = 0, /* none (the default) */
    CONTROL_RESTRICTED = 1, /* a socket with the short allowlist */
};

/* The device's "network": the bridge every bridged container joins. */
struct net_device_config {
    char bridge[IF_NAMESIZE]; /* default "trustme0" */
    struct in_addr subnet; /* network address; the bridge has .1 (the first host address) */
    unsigned prefix; /* 8..30; default 10.223.0.0/24 */
    bool nat; /* masquerade outbound traffic (default true) */
    /* Container pairs (by name) allowed to talk to each other; everything else between
     * containers is dropped. */
    char (*allow)[2][64];
    size_t nallow;
};

struct json_t;
/* root: the container config's top-level object. Absent "network": mode none. */
int config_net_parse(struct json_t *root, struct net_config *ret, enum control_role *ret_role, tm_err *err);
/* root: device.json's top-level object; NULL (no device.json) or no "network": the defaults. */
int config_net_device_parse(struct json_t *root, struct net_device_config *ret, tm_err *err);
void config_net_device_clear(struct net_device_config *cfg);
/* cfg's fixed address, ports etc. make sense on this device's subnet (checked at create and at
 * every start, since device.json may change). */
int config_net_check(const struct net_config *cfg, const struct net_device_config *dev, tm_err *err);

/* Helpers shared by the parser and net.c. */
bool config_net_ifname_valid(const char *name);
bool config_net_is_veth_name(const char *name); /* "tm" + 10 hex digits */
bool config_net_in_subnet(const struct net_device_config *dev, struct in_addr a);
struct in_addr config_net_bridge_address(const struct net_device_config *dev); /* first host */
