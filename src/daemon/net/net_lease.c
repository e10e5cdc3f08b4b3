/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Address leases of bridged containers: <data>/net/leases.json maps each container's UUID to its
 * address. Read and rewritten whole (atomically) on every change: a few hundred bytes, changed
 * only at create, remove and the occasional start that needs a new address. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "config.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"
#include "net.h"
#include "uuid.h"

#define LEASES_MAX (1 << 20)

static void leases_path(struct daemon *d, char *out, size_t size)
{
    snprintf(out, size, "%s/net/leases.json", d->data_dir);
}

/* The lease file's object, {} when there is none yet. */
static int leases_load(struct daemon *d, json_t **ret, tm_err *err)
{
    char path[PATH_MAX + 32];
    leases_path(d, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_file(path, LEASES_MAX, &data, &len, err);
    if (r < 0 && err->code == ENOENT) {
        json_t *none = json_object();
        if (!none)
            return tm_err_set(err, ENOMEM, "out of memory");
        *ret = none;
        return 0;
    }
    if (r < 0 || (r = tm_json_parse_object(data, len, ret, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    return 0;
}

static int leases_store(struct daemon *d, json_t *o, tm_err *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/net", d->data_dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", path);
    leases_path(d, path, sizeof(path));
    _cleanup_free_ char *s = json_dumps(o, JSON_PRETTY_FLAGS);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    return write_file_atomic(path, s, strlen(s), 0600, err);
}

static bool lease_of(json_t *o, const char *uuid, struct in_addr *ret)
{
    json_t *v;
    return ((v = json_object_get(o, uuid)) != NULL) && json_is_string(v) &&
           inet_pton(AF_INET, json_string_value(v), ret) == 1;
}

static bool taken(json_t *o, const char *uuid, struct in_addr a)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        struct in_addr b;
        if (strcmp(k, uuid) != 0 && json_is_string(v) && inet_pton(AF_INET, json_string_value(v), &b) == 1 &&
            b.s_addr == a.s_addr)
            return true;
    }
    return false;
}

/* A held address still fits: inside the subnet, not its network/broadcast/bridge address. */
static bool usable(const struct net_device_config *dev, struct in_addr a)
{
    uint32_t h = ntohl(a.s_addr), n = ntohl(dev->subnet.s_addr);
    uint32_t bcast = n | (dev->prefix ? (1u << (32 - dev->prefix)) - 1 : ~0u);
    return config_net_in_subnet(dev, a) && h != n && h != n + 1 && h != bcast;
}

int net_lease_acquire(struct container *c, tm_err *err)
{
    struct daemon *d = c->d;
    const struct net_device_config *dev = &d->device.net;
    const struct net_config *cfg = &c->cfg->net;
    int r;
    if ((r = config_net_check(cfg, dev, err)) < 0 || cfg->mode != NET_BRIDGED)
        return r;
    struct net_state *st = net_state_of(c, err);
    if (!st)
        return -ENOMEM;
    _cleanup_json_ json_t *o = NULL;
    if ((r = leases_load(d, &o, err)) < 0)
        return r;
    struct in_addr held;
    bool has = lease_of(o, c->uuid, &held);
    struct in_addr want = held;
    char a[INET_ADDRSTRLEN];
    if (cfg->has_address) {
        want = cfg->address;
        inet_ntop(AF_INET, &want, a, sizeof(a));
        if (taken(o, c->uuid, want))
            return tm_err_set(err, EADDRINUSE, "$.network.address: %s is taken by another container", a);
    } else if (!has || !usable(dev, held) || taken(o, c->uuid, held)) {
        uint32_t n = ntohl(dev->subnet.s_addr), size = 1u << (32 - dev->prefix);
        bool found = false;
        for (uint32_t h = n + 2; h < n + size - 1 && !found; h++) {
            want.s_addr = htonl(h);
            found = !taken(o, c->uuid, want);
        }
        if (!found)
            return tm_err_set(err, EADDRNOTAVAIL, "no free address left in the device's subnet");
    }
    if (!has || held.s_addr != want.s_addr) {
        inet_ntop(AF_INET, &want, a, sizeof(a));
        json_t *v = json_string(a);
        if (!v || json_object_set_new(o, c->uuid, v) < 0)
            return tm_err_set(err, ENOMEM, "out of memory");
        if ((r = leases_store(d, o, err)) < 0)
            return r;
    }
    st->address = want;
    inet_ntop(AF_INET, &want, st->address_str, sizeof(st->address_str));
    st->leased = true;
    return 0;
}

static void drop(struct daemon *d, json_t *o, const char *uuid)
{
    tm_err err;
    json_object_del(o, uuid);
    if (leases_store(d, o, &err) < 0)
        log_warn("%s", err.msg);
}

void net_lease_release(struct container *c)
{
    _cleanup_json_ json_t *o = NULL;
    tm_err err;
    if (leases_load(c->d, &o, &err) < 0) {
        log_warn("%s", err.msg);
        return;
    }
    if ((json_object_get(o, c->uuid) != NULL))
        drop(c->d, o, c->uuid);
    if (c->net)
        c->net->leased = false;
}

/* At trustmed's start: leases of containers that no longer exist (a create interrupted between
 * its lease and its directory) go; those of existing containers are read back. */
void net_leases_load_all(struct daemon *d)
{
    _cleanup_json_ json_t *o = NULL;
    tm_err err;
    if (leases_load(d, &o, &err) < 0) {
        log_warn("%s", err.msg);
        return;
    }
    char stale[64][TM_UUID_STR_LEN + 1];
    size_t nstale = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        (void)v;
        struct container *c = NULL;
        for (c = d->containers; c && strcmp(c->uuid, k) != 0; c = c->next)
            ;
        struct in_addr a;
        if (c && lease_of(o, k, &a) && net_state_of(c, &err)) {
            c->net->address = a;
            inet_ntop(AF_INET, &a, c->net->address_str, sizeof(c->net->address_str));
            c->net->leased = true;
        } else if (!c && nstale < ARRAY_SIZE(stale)) {
            snprintf(stale[nstale++], sizeof(stale[0]), "%s", k);
        }
    }
    for (size_t i = 0; i < nstale; i++) {
        log_info("dropping the address lease of %s (no such container)", stale[i]);
        drop(d, o, stale[i]);
    }
}
