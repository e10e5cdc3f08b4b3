/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_net: a container's network (docs/NETWORK.md). Only for bridged containers and those with
 * physical interfaces; the others keep the loopback-only namespace init is cloned with.
 *
 *   prepare  trustmed: the address lease, the bridge, the rules (with this member already; handed
 *            to the nft helper, not waited for: net_pin does).
 *   setup    the setup process, still real root in the host's network namespace: makes the
 *            container's network namespace (owned by its user namespace, so that its root may
 *            administer it), creates the veth pair with its end inside, moves the physical
 *            interfaces in, hands the namespace to trustmed (which pins it and answers once the
 *            rules are applied), configures eth0, writes /etc/resolv.conf and stays in the
 *            namespace, so that init is cloned into it.
 *   cleanup  trustmed: interfaces given back, veth deleted, namespace unpinned, rules rebuilt.
 *
 * Doing the work in the setup process keeps netlink round trips off trustmed's event loop, and
 * the namespace is complete before init exists: the container never sees it half set up. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "module.h"
#include "mount_util.h"
#include "net.h"
#include "netlink.h"
#include "syncmsg.h"

static int net_prepare_hook(struct start_ctx *ctx, tm_err *err)
{
    return net_wanted(ctx->c) ? net_prepare(ctx->c, err) : 0;
}

/* The container's network namespace. With a user namespace, module_userns's holder made it
 * together with that (clone3 with CLONE_NEWUSER | CLONE_NEWNET: the namespace belongs to the new
 * user namespace, as if made from inside it), so no process is forked for it here. Without one,
 * a short-lived helper makes it: the setup process itself must stay in the host's namespace. */
static int make_netns(struct start_ctx *ctx, tm_err *err)
{
    if (ctx->netns_fd >= 0) {
        int fd = ctx->netns_fd;
        ctx->netns_fd = -1;
        return fd;
    }
    if (ctx->userns_fd >= 0)
        return tm_err_set(err, EINVAL, "no network namespace from the user namespace's holder");
    _cleanup_close_pair_ int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC) < 0)
        return tm_err_sys(err, "pipe");
    pid_t pid = fork();
    if (pid < 0)
        return tm_err_sys(err, "fork");
    if (pid == 0) {
        close(p[0]);
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close_and_reset(p[1]);
    char c;
    ssize_t n;
    while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close_and_reset(p[0]);
    int fd = -1;
    if (n == 1) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    int saved = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    errno = n == 1 ? saved : EPERM;
    return fd >= 0 ? fd : tm_err_sys(err, "cannot create the network namespace");
}

static int write_resolv_conf(struct start_ctx *ctx, tm_err *err)
{
    const struct net_config *net = &ctx->cfg->net;
    char text[1024];
    size_t len = 0;
    for (size_t i = 0; i < net->ndns; i++) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &net->dns[i], a, sizeof(a));
        len += (size_t)snprintf(text + len, sizeof(text) - len, "nameserver %s\n", a);
    }
    for (size_t i = 0; i < net->nsearch; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s%s", i ? " " : "search ", net->search[i],
                                i + 1 == net->nsearch ? "\n" : "");
    /* /etc resolved inside the root (a symlink the container planted stays inside); the file
     * itself is never followed: it is replaced. */
    uid_t owner = ctx->uid_base ? ctx->uid_base : 0;
    _cleanup_close_ int etc = mkdir_in_root(ctx->root_fd, "etc", 0755, owner, owner, err);
    if (etc < 0)
        return etc;
    _cleanup_close_ int dir = open_in_root(etc, ".", O_RDONLY | O_DIRECTORY, err);
    if (dir < 0)
        return dir;
    if (unlinkat(dir, "resolv.conf", 0) < 0 && errno != ENOENT && errno != EROFS)
        return tm_err_sys(err, "cannot replace /etc/resolv.conf in the container");
    _cleanup_close_ int fd = openat(dir, "resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return tm_err_sys(err, "cannot write /etc/resolv.conf in the container");
    if (write(fd, text, len) != (ssize_t)len || fchown(fd, owner, owner) < 0)
        return tm_err_sys(err, "cannot write /etc/resolv.conf in the container");
    return 0;
}

static int random_mac(uint8_t mac[6])
{
    if (getrandom(mac, 6, 0) != 6)
        return -errno;
    mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
    return 0;
}

/* The veth pair: tm<uuid> up on the bridge, eth0 (with its MAC, down) straight in the container's
 * namespace. eth0's address, up and route follow from inside (net_setup). */
static int veth_add(struct start_ctx *ctx, int host, int netns, tm_err *err)
{
    const struct net_device_config *dev = &ctx->d->device.net;
    const struct net_config *net = &ctx->cfg->net;
    char host_if[IF_NAMESIZE];
    uint8_t mac[6];
    int r;
    net_host_if(ctx->c, host_if);
    if (net->has_mac)
        memcpy(mac, net->mac, 6);
    else if ((r = random_mac(mac)) < 0)
        return tm_err_set(err, -r, "getrandom");
    /* The bridge's index as net_prepare found it (trustmed keeps the bridge while this container
     * is a member); the host end up and on the bridge in the same request. */
    int br = ctx->c->net->bridge_ifindex;
    r = nl_veth_add(host, host_if, br, true, "eth0", mac, netns, err);
    if (r == -EEXIST) {
        /* The veth of this container's last run, still being deleted (net_teardown hands that to
         * a child): the name is this container's alone, so it is deleted here and made anew. */
        int old = nl_ifindex(host, host_if, err);
        if (old > 0 && (r = nl_link_del(host, old, err)) < 0 && r != -ENODEV)
            return tm_err_prefix(err, "the old %s", host_if);
        r = nl_veth_add(host, host_if, br, true, "eth0", mac, netns, err);
    }
    return r < 0 ? tm_err_prefix(err, "bridge %s", dev->bridge) : 0;
}

static int move_ifaces(struct start_ctx *ctx, int host, int inside, int netns, tm_err *err)
{
    const struct net_config *net = &ctx->cfg->net;
    for (size_t i = 0; i < net->nifaces; i++) {
        int r, idx = nl_ifindex(host, net->ifaces[i], err);
        if (idx < 0)
            return tm_err_prefix(err, "interface %s", net->ifaces[i]);
        if ((r = nl_link_set(host, idx, &(struct nl_link_change){.up = 0, .netns_fd = netns}, err)) < 0)
            return tm_err_prefix(err, "cannot move %s in", net->ifaces[i]);
        /* Recorded by the index it has inside: an index taken there is renumbered. */
        int now = nl_ifindex(inside, net->ifaces[i], err);
        if ((r = net_ifaces_record(ctx->c, now > 0 ? now : idx, net->ifaces[i], err)) < 0)
            return r;
    }
    return 0;
}

static int net_setup(struct start_ctx *ctx, tm_err *err)
{
    if (!net_wanted(ctx->c))
        return 0;
    const struct net_config *net = &ctx->cfg->net;
    int r;
    _cleanup_close_ int netns = make_netns(ctx, err);
    if (netns < 0)
        return netns;
    /* trustmed pins it first: from now on, whatever is moved in is found again, even if this
     * start fails halfway or trustmed dies. */
    if (tm_sync_send(ctx->sync_fd, TM_SYNC_NETNS, NULL, 0, netns) < 0)
        return tm_err_sys(err, "cannot hand over the network namespace");
    _cleanup_close_ int host = nl_open(-1, err);
    if (host < 0)
        return host;
    if (net->mode == NET_BRIDGED && (r = veth_add(ctx, host, netns, err)) < 0)
        return r;
    if (net->nifaces) {
        _cleanup_close_ int in = nl_open(netns, err);
        if (in < 0)
            return in;
        if ((r = move_ifaces(ctx, host, in, netns, err)) < 0)
            return r;
    }
    /* Everything on the host's side is done: the rest is configured from inside, where init is
     * cloned anyway (no switching back and forth for a socket of the namespace). */
    if (setns(netns, CLONE_NEWNET) < 0)
        return tm_err_sys(err, "cannot enter the network namespace");
    ctx->netns_joined = true;
    _cleanup_close_ int inside = nl_open(-1, err);
    if (inside < 0)
        return inside;
    int eth0 = 0;
    if (net->mode == NET_BRIDGED && (eth0 = nl_ifindex(inside, "eth0", err)) < 0)
        return tm_err_prefix(err, "eth0");
    /* trustmed has pinned the namespace and its nft helper has applied the rules with this
     * container (net_pin): only now may eth0 come up, the first moment the veth can carry a
     * packet. Until here the veth is inert (eth0 down: no carrier on either end). trustmed's
     * TM_SYNC_PREPARED (sent once the cgroups are made, right after the fork) comes before its
     * go-ahead on the socket when no earlier module took it: read it first. */
    if ((r = modules_await_prepared(ctx, err)) < 0)
        return r;
    if ((r = tm_sync_recv_exact(ctx->sync_fd, TM_SYNC_CONTINUE, NULL, 0)) < 0) {
        errno = -r;
        return tm_err_sys(err, "trustmed did not confirm the network namespace and its rules");
    }
    const struct net_device_config *dev = &ctx->d->device.net;
    if ((r = nl_configure_netns(inside, eth0, eth0 > 0 ? ctx->c->net->address : (struct in_addr){0}, dev->prefix,
                                config_net_bridge_address(dev), err)) < 0)
        return r;
    if (net->ndns && (r = write_resolv_conf(ctx, err)) < 0)
        return r;
    return 0;
}

static void net_cleanup(struct container *c)
{
    if (c->net || net_wanted(c))
        net_teardown(c);
}

const struct tm_module module_net = {
    .name = "net",
    .prepare = net_prepare_hook,
    .setup = net_setup,
    .cleanup = net_cleanup,
};
