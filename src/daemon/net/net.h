/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Container networking (docs/NETWORK.md): address leases, the device's bridge, each bridged
 * container's veth, physical interfaces moved in and given back, the pinned network namespace,
 * and the member list handed to nft_sync. The start itself is module_net (modules/net.c). */
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"

/* What trustmed keeps per container (c->net; NULL for a container that never needed one). */
struct net_state {
    bool leased; /* address holds its lease */
    struct in_addr address;
    char address_str[INET_ADDRSTRLEN]; /* the same, for ContainerInfo */
    bool active; /* its veth is (being) set up: it is a member of the nft rules */
    int netns_fd; /* its network namespace while it runs (pinned), or -1 */
    int bridge_ifindex; /* the device's bridge as net_prepare found it (for the setup process) */
    uint64_t rules_ticket; /* the nft sync net_prepare began, net_pin waits for; 0: none */
};

/* Does the container's config need module_net at all (bridged, or physical interfaces)? */
bool net_wanted(const struct container *c);
struct net_state *net_state_of(struct container *c, tm_err *err);
void net_state_free(struct container *c);
/* The host side's state (d->net), before any container is loaded; freed by net_free. */
int net_init(struct daemon *d, tm_err *err);
void net_free(struct daemon *d);
/* Its lease at create and remove, its state at free (daemon.h). */
extern const struct container_observer net_container_observer;
/* "tm" + the first 10 hex digits of the UUID */
void net_host_if(const struct container *c, char out[IF_NAMESIZE]);

/* Leases (<data>/net/leases.json): acquire at create and at every start (keeps the one held if it
 * still fits the config and the device's subnet), release at remove. */
int net_lease_acquire(struct container *c, tm_err *err);
void net_lease_release(struct container *c);
/* trustmed's start: read the leases back, drop those of containers that do not exist. */
void net_leases_load_all(struct daemon *d);

/* trustmed's side of a start (module_net's prepare): bridge up, rules with this member handed to
 * the nft helper (net_pin waits for them). */
int net_prepare(struct container *c, tm_err *err);
/* The setup process handed over the container's network namespace: pin it (takes fd), then wait
 * until the rules net_prepare began are applied. On success the setup process may bring eth0 up
 * (the caller tells it to go on: TM_SYNC_CONTINUE). */
int net_pin(struct container *c, int fd, tm_err *err);
/* Everything a start set up is undone: rules rebuilt without it (begun first, awaited last: applied
 * when it returns), interfaces given back, netns unpinned, its veth deleted (by trustmed-netdel: the
 * stop does not wait for the kernel's RCU grace periods), the bridge some seconds after the last
 * bridged container (NET_BRIDGE_LINGER_MS).
 * Tolerates partial setup; also for containers that died while trustmed was not running (from the
 * pinned netns). */
void net_teardown(struct container *c);
/* How long the bridge outlives the last bridged container: a stop/start within that time finds it
 * there (deleting a bridge costs ~40 ms, making one ~1.5 ms). */
#define NET_BRIDGE_LINGER_MS 2000
/* trustmed's exit, after the last container: a bridge still lingering is deleted now. */
void net_shutdown(struct daemon *d);
/* trustmed's start, after re-adoption: adopt running containers' namespaces, tear down what dead
 * ones left, drop leases of containers that no longer exist, rebuild the rules. */
void net_recover(struct daemon *d);

/* Physical interfaces of a running container (trustme iface ...). */
int net_iface_assign(struct container *c, const char *name, tm_err *err);
int net_iface_unassign(struct container *c, const char *name, tm_err *err);

/* <run>/containers/<uuid>/ifaces: "ifindex name" of each interface moved in (the setup process
 * and iface assign append, teardown gives back exactly these). */
void net_ifaces_path(const struct container *c, char *out, size_t size);
int net_ifaces_record(const struct container *c, int ifindex, const char *name, tm_err *err);
