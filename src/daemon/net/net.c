/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of container networking (docs/NETWORK.md): the bridge, the pinned network
 * namespace, teardown and recovery, physical interfaces of running containers. The namespace
 * itself is made and filled by the setup process (modules/net.c). */
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "container.h"
#include "log.h"
#include "netlink.h"
#include "nft.h"
#include "reaper.h"

/* The host side of container networking (d->net): the bridge outlives the last bridged container
 * briefly. */
struct net_host {
    tm_source *bridge_timer; /* deletes the bridge when it fires */
    int bridge_del_pidfd; /* the child deleting it, while bridge_del_src is set */
    int bridge_del_ifindex; /* the bridge that child deletes */
    tm_source *bridge_del_src; /* reaps that child; a start waits for it instead */
    int bridge_ready_ifindex; /* the bridge this trustmed gave its address and brought up, 0: none */
    int deleter_fd; /* trustmed's end of the veth deleter's socketpair, -1: none */
    int deleter_pidfd;
};

int net_init(struct daemon *d, tm_err *err)
{
    d->net = calloc(1, sizeof(*d->net));
    if (!d->net)
        return tm_err_set(err, ENOMEM, "out of memory");
    d->net->deleter_fd = d->net->deleter_pidfd = -1;
    return 0;
}

void net_free(struct daemon *d)
{
    if (!d->net)
        return;
    /* The deleter deletes what it was sent, then sees the end of its socket and exits. */
    close_and_reset(d->net->deleter_fd);
    close_and_reset(d->net->deleter_pidfd);
    free(d->net);
    d->net = NULL;
}

bool net_wanted(const struct container *c)
{
    return c->cfg->net.mode == NET_BRIDGED || c->cfg->net.nifaces > 0;
}

struct net_state *net_state_of(struct container *c, tm_err *err)
{
    if (!c->net) {
        if (!(c->net = calloc(1, sizeof(*c->net)))) {
            tm_err_set(err, ENOMEM, "out of memory");
            return NULL;
        }
        c->net->netns_fd = -1;
    }
    return c->net;
}

void net_state_free(struct container *c)
{
    if (!c->net)
        return;
    close_and_reset(c->net->netns_fd);
    free(c->net);
    c->net = NULL;
}

void net_host_if(const struct container *c, char out[IF_NAMESIZE])
{
    size_t n = 0;
    out[n++] = 't';
    out[n++] = 'm';
    for (const char *p = c->uuid; *p && n < 12; p++)
        if (isxdigit((unsigned char)*p))
            out[n++] = (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

/* The container other than c whose veth has the name host_if and is (being) set up. The name is
 * made of the first 10 hex digits of a UUID (net_host_if), and a UUID is chosen by whoever made
 * the container: a migration source names it in its bundle. Two containers with one name would
 * share their set elements (the other's address and allowed pairs, by port name), and each would
 * delete the other's veth as its own (a start deletes a veth of its name as its last run's;
 * net_teardown deletes by name). */
static const struct container *veth_name_holder(const struct container *c, const char *host_if)
{
    char other[IF_NAMESIZE];
    for (const struct container *o = c->d->containers; o; o = o->next) {
        if (o == c || !o->net || !o->net->active)
            continue;
        net_host_if(o, other);
        if (strcmp(other, host_if) == 0)
            return o;
    }
    return NULL;
}

static void netns_path(const struct container *c, char *out, size_t size)
{
    char run[PATH_MAX];
    container_run_dir(c, run, sizeof(run));
    snprintf(out, size, "%s/netns", run);
}

void net_ifaces_path(const struct container *c, char *out, size_t size)
{
    char run[PATH_MAX];
    container_run_dir(c, run, sizeof(run));
    snprintf(out, size, "%s/ifaces", run);
}

int net_ifaces_record(const struct container *c, int ifindex, const char *name, tm_err *err)
{
    char path[PATH_MAX + 8];
    net_ifaces_path(c, path, sizeof(path));
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    if (dprintf(fd, "%d %s\n", ifindex, name) < 0)
        return tm_err_sys(err, "cannot write %s", path);
    return 0;
}

/* Rebuild the rules from every container whose veth is (being) set up: begun (*ret_ticket for
 * nft_sync_wait), or with ret_ticket NULL applied before it returns. */
static int sync_rules_ticket(struct daemon *d, uint64_t *ret_ticket, tm_err *err)
{
    struct nft_member m[256];
    char names[256][IF_NAMESIZE];
    size_t n = 0;
    for (struct container *c = d->containers; c && n < ARRAY_SIZE(m); c = c->next) {
        if (!c->net || !c->net->active)
            continue;
        net_host_if(c, names[n]);
        m[n] = (struct nft_member){
            .name = c->cfg->name, .host_if = names[n], .address = c->net->address, .net = &c->cfg->net};
        n++;
    }
    return ret_ticket ? nft_sync_begin(d, m, n, ret_ticket, err) : nft_sync(d, m, n, err);
}

static int sync_rules(struct daemon *d, tm_err *err)
{
    return sync_rules_ticket(d, NULL, err);
}

static bool any_active(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (c->net && c->net->active)
            return true;
    return false;
}

/* The device's bridge with its address (the subnet's first host address), up. A bridge this
 * trustmed has set up already (same index, still up) is taken as it is: one request rather than
 * three at every start while another bridged container runs. */
static int bridge_ensure(struct daemon *d, int s, tm_err *err)
{
    const struct net_device_config *dev = &d->device.net;
    bool up = false;
    int idx = nl_ifindex_up(s, dev->bridge, &up, err);
    if (idx > 0 && idx == d->net->bridge_ready_ifindex && up)
        return idx;
    d->net->bridge_ready_ifindex = 0;
    if (idx == -ENODEV) {
        int r = nl_bridge_add(s, dev->bridge, err);
        if (r < 0 && r != -EEXIST)
            return r;
        idx = nl_ifindex(s, dev->bridge, err);
    }
    if (idx < 0)
        return idx;
    int r;
    if ((r = nl_addr_add(s, idx, config_net_bridge_address(dev), dev->prefix, err)) < 0 ||
        (r = nl_link_set(s, idx, &(struct nl_link_change){.up = 1, .netns_fd = -1}, err)) < 0)
        return tm_err_prefix(err, "bridge %s", dev->bridge);
    d->net->bridge_ready_ifindex = idx;
    return idx;
}

/* Deleting a link takes 15-40 ms here, nearly all of it after the kernel has unlinked it and
 * freed its name (netdev_run_todo waits for RCU: rcu_barrier, the last references), while
 * making one takes ~1 ms. So a short-lived child deletes it and trustmed goes on: a stop does not
 * wait for the grace periods. By index, so that a link made meanwhile under the same name (the
 * container started again) is never touched. Returns the child's pidfd; -1 if it could not be
 * forked, after deleting the link here. */
static int link_del_async(int ifindex)
{
    int pidfd = -1;
    struct clone_args args = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    tm_err err;
    if (pid == 0) { /* its own socket: an ack must not end up with trustmed */
        int s = nl_open(-1, &err);
        _exit(s >= 0 && (nl_link_del(s, ifindex, &err) == 0 || err.code == ENODEV) ? 0 : 1);
    }
    _cleanup_close_ int s = pid < 0 ? nl_open(-1, &err) : -1;
    if (pid < 0 && (s < 0 || nl_link_del(s, ifindex, &err) < 0))
        log_warn("%s", err.msg);
    return pid < 0 ? -1 : pidfd;
}

/* Veths are deleted by one long-lived child, trustmed-netdel, sent their indexes over a socketpair:
 * a child forked per stop cost trustmed the fork and, after it, a copy-on-write fault for every
 * page it wrote (docs/NETWORK.md). The deleter deletes them one after another (each waits for the
 * kernel's RCU work, not for trustmed), never forks, keeps no fd of trustmed's but its socket, and
 * exits at the socket's end, after the indexes already sent: none is left when trustmed stops or
 * dies. */
static __attribute__((noreturn)) void deleter_main(int fd)
{
    (void)prctl(PR_SET_NAME, "trustmed-netdel");
    tm_err err;
    int s = nl_open(-1, &err);
    for (;;) {
        int ifindex;
        ssize_t n = recv(fd, &ifindex, sizeof(ifindex), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(ifindex))
            _exit(0);
        if (s < 0 || (nl_link_del(s, ifindex, &err) < 0 && err.code != ENODEV))
            (void)dprintf(2, "trustmed-netdel: %s\n", s < 0 ? "no netlink socket" : err.msg);
    }
}

static int deleter_start(struct daemon *d)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return -errno;
    int pidfd = -1;
    struct clone_args args = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
        if (dup3(sp[1], 3, 0) < 0 || close_range(4, ~0U, 0) < 0)
            _exit(1);
        deleter_main(3);
    }
    int saved = errno;
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return -saved;
    }
    d->net->deleter_fd = sp[0];
    d->net->deleter_pidfd = pidfd;
    return 0;
}

/* A container's veth, by index (never a link made meanwhile under its name): to the deleter, or,
 * if it cannot take it, to a child of its own. */
static void veth_del_async(struct daemon *d, int ifindex)
{
    if (d->net->deleter_fd < 0)
        (void)deleter_start(d);
    if (d->net->deleter_fd >= 0) {
        if (send(d->net->deleter_fd, &ifindex, sizeof(ifindex), MSG_NOSIGNAL | MSG_DONTWAIT) ==
            (ssize_t)sizeof(ifindex))
            return;
        if (errno != EAGAIN) { /* gone: a new one next time */
            close_and_reset(d->net->deleter_fd);
            reaper_take_pidfd(d, d->net->deleter_pidfd);
            d->net->deleter_pidfd = -1;
        }
    }
    reaper_take_pidfd(d, link_del_async(ifindex));
}

static void bridge_del_done(struct daemon *d)
{
    tm_source_free(d->net->bridge_del_src);
    d->net->bridge_del_src = NULL;
    close_and_reset(d->net->bridge_del_pidfd);
}

static void on_bridge_deleted(tm_source *src, uint32_t events, void *userdata)
{
    struct daemon *d = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)d->net->bridge_del_pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0)
        return; /* spurious */
    bridge_del_done(d);
}

/* A bridge being deleted cannot be reused: wait until the child has deleted it (a start right
 * after the linger time ran out). With s (a host netlink socket), not if the kernel has unlinked it
 * already (its name no longer leads to it): a new bridge gets a new index, which the child never
 * touches, so the start need not wait for the rest of the deletion. */
static void bridge_wait_deleted(struct daemon *d, int s)
{
    tm_err err;
    if (!d->net->bridge_del_src || (s >= 0 && nl_ifindex(s, d->device.net.bridge, &err) != d->net->bridge_del_ifindex))
        return;
    siginfo_t si;
    while (waitid(P_PIDFD, (id_t)d->net->bridge_del_pidfd, &si, WEXITED) < 0 && errno == EINTR)
        ;
    bridge_del_done(d);
}

/* The bridge goes when no bridged container is left, so that a device with nothing running has no
 * trace of trustme's network; async: in a child (a start waits for it while the bridge is still
 * linked). */
static void bridge_remove_now(struct daemon *d, bool async)
{
    tm_err err;
    tm_source_free(d->net->bridge_timer);
    d->net->bridge_timer = NULL;
    if (any_active(d))
        return;
    _cleanup_close_ int s = nl_open(-1, &err);
    int idx = s >= 0 ? nl_ifindex(s, d->device.net.bridge, &err) : -1;
    d->net->bridge_ready_ifindex = 0;
    if (idx <= 0)
        return;
    bridge_wait_deleted(d, -1);
    if (!async) {
        if (nl_link_del(s, idx, &err) < 0)
            log_warn("%s", err.msg);
        return;
    }
    int pidfd = link_del_async(idx);
    if (pidfd < 0)
        return;
    d->net->bridge_del_pidfd = pidfd;
    d->net->bridge_del_ifindex = idx;
    if (!(d->net->bridge_del_src = tm_loop_io(d->loop, pidfd, EPOLLIN, on_bridge_deleted, d))) {
        siginfo_t si; /* cannot watch it: wait here */
        while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close_and_reset(d->net->bridge_del_pidfd);
    }
}

static void on_bridge_linger_end(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    d->net->bridge_timer = NULL;
    bridge_remove_now(d, true);
}

/* The last bridged container is gone: the bridge lingers NET_BRIDGE_LINGER_MS, so that a container
 * started again meanwhile (a restart, a stop/start by a script) neither pays for its deletion nor
 * for its creation. trustmed's shutdown deletes it at once. */
static void bridge_maybe_remove(struct daemon *d)
{
    if (any_active(d) || d->net->bridge_timer)
        return;
    if (d->shutting_down) {
        bridge_remove_now(d, false);
        return;
    }
    d->net->bridge_timer = tm_loop_timer(d->loop, NET_BRIDGE_LINGER_MS, on_bridge_linger_end, d);
    if (!d->net->bridge_timer)
        bridge_remove_now(d, false);
}

void net_shutdown(struct daemon *d)
{
    if (d->net->bridge_timer)
        bridge_remove_now(d, false);
    bridge_wait_deleted(d, -1);
}

int net_prepare(struct container *c, tm_err *err)
{
    struct daemon *d = c->d;
    int r;
    if ((r = config_net_check(&c->cfg->net, &d->device.net, err)) < 0)
        return r;
    struct net_state *st = net_state_of(c, err);
    if (!st)
        return -ENOMEM;
    _cleanup_close_ int s = nl_open(-1, err);
    if (s < 0)
        return s;
    /* Interfaces to move in must be there now (the setup process moves them). */
    for (size_t i = 0; i < c->cfg->net.nifaces; i++)
        if ((r = nl_ifindex(s, c->cfg->net.ifaces[i], err)) < 0)
            return tm_err_prefix(err, "$.network.interfaces[%zu]: %s", i,
                                 r == -ENODEV ? "no such interface on the host" : "");
    if (c->cfg->net.mode != NET_BRIDGED)
        return 0;
    char host_if[IF_NAMESIZE];
    net_host_if(c, host_if);
    const struct container *holder = veth_name_holder(c, host_if);
    if (holder)
        return tm_err_set(err, EEXIST,
                          "its veth would be %s, the name of running container %s's (their UUIDs begin with the "
                          "same 10 hex digits)",
                          host_if, container_label(holder));
    /* A lingering bridge is kept; one being deleted is waited for, then made again. */
    tm_source_free(d->net->bridge_timer);
    d->net->bridge_timer = NULL;
    bridge_wait_deleted(d, s);
    if ((r = net_lease_acquire(c, err)) < 0 || (r = bridge_ensure(d, s, err)) < 0)
        return r;
    st->bridge_ifindex = r;
    /* Its rules are handed to the nft helper now, and net_pin waits for them: the setup process
     * brings eth0 up (the first moment its veth can carry a packet) only after that, so no packet
     * of it ever passes unfiltered, while the helper's run overlaps with the setup process's
     * work instead of delaying its fork. */
    st->active = true;
    return sync_rules_ticket(d, &st->rules_ticket, err);
}

int net_pin(struct container *c, int fd, tm_err *err)
{
    _cleanup_close_ int owned = fd;
    struct net_state *st = net_state_of(c, err);
    if (!st)
        return -ENOMEM;
    char path[PATH_MAX + 8], src[64];
    netns_path(c, path, sizeof(path));
    _cleanup_close_ int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0)
        return tm_err_sys(err, "cannot create %s", path);
    snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
    if (mount(src, path, NULL, MS_BIND, NULL) < 0)
        return tm_err_sys(err, "cannot pin the network namespace at %s", path);
    close_and_reset(st->netns_fd);
    st->netns_fd = steal_fd(owned);
    /* The rules net_prepare began: the caller tells the setup process to go on once they hold. */
    uint64_t ticket = st->rules_ticket;
    st->rules_ticket = 0;
    return nft_sync_wait(c->d, ticket, err);
}

/* Give back what was moved in (the ifaces file), renamed back to the name it had on the host. */
static void give_back_all(struct container *c, int netns_fd)
{
    char path[PATH_MAX + 8];
    net_ifaces_path(c, path, sizeof(path));
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return;
    tm_err err;
    _cleanup_close_ int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int s = netns_fd >= 0 ? nl_open(netns_fd, &err) : -1;
    int idx;
    char name[IF_NAMESIZE + 1];
    while (s >= 0 && self >= 0 && fscanf(f, "%d %15s", &idx, name) == 2) {
        char now[IF_NAMESIZE];
        if (nl_ifname(s, idx, now, &err) < 0) {
            log_info("%s: interface %s is no longer in the container", container_label(c), name);
            continue;
        }
        if (nl_link_set(s, idx, &(struct nl_link_change){.up = 0, .netns_fd = self, .name = name}, &err) < 0)
            log_warn("%s: cannot give %s back: %s", container_label(c), name, err.msg);
        else
            daemon_audit(c->d, "net.iface.unassign", "ok", c, "trustmed", "%s given back", name);
    }
    unlink(path);
}

void net_teardown(struct container *c)
{
    struct daemon *d = c->d;
    char path[PATH_MAX + 8], host_if[IF_NAMESIZE];
    tm_err err;
    /* Its rules go first: the helper deletes its set elements while the link and the namespace are
     * dealt with here, and the stop waits for them at the end (they are gone when it returns).
     * Meanwhile its port is no member: nothing runs in the namespace any more (init and every
     * process of the container are gone), and the rules drop whatever a member's port sends to it
     * or gets from it. */
    bool was_active = c->net && c->net->active;
    uint64_t ticket = 0;
    int synced = 0;
    if (c->net) {
        c->net->active = false;
        c->net->rules_ticket = 0; /* the sync below waits for that one first */
    }
    if (was_active && (synced = sync_rules_ticket(d, &ticket, &err)) < 0)
        log_warn("%s: %s", container_label(c), err.msg);
    netns_path(c, path, sizeof(path));
    int fd = c->net ? c->net->netns_fd : -1;
    _cleanup_close_ int pinned = fd < 0 ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    give_back_all(c, fd >= 0 ? fd : pinned);
    _cleanup_close_ int s = nl_open(-1, &err);
    net_host_if(c, host_if);
    /* Not another running container's veth of the same name (a start net_prepare refused). */
    const struct container *holder = veth_name_holder(c, host_if);
    int idx = s >= 0 && !holder ? nl_ifindex(s, host_if, &err) : -1;
    if (holder)
        log_warn("%s: its veth %s is running container %s's: not deleted", container_label(c), host_if,
                 container_label(holder));
    /* The veth is inert while the child deletes it (above); a start meanwhile finds the name taken
     * and deletes it itself. */
    if (idx > 0)
        veth_del_async(d, idx);
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        log_warn("%s: cannot unpin %s: %m", container_label(c), path);
    unlink(path);
    if (c->net)
        close_and_reset(c->net->netns_fd);
    if (was_active && synced == 0 && nft_sync_wait(d, ticket, &err) < 0)
        log_warn("%s: %s", container_label(c), err.msg);
    if (was_active)
        bridge_maybe_remove(d);
}

void net_recover(struct daemon *d)
{
    net_leases_load_all(d);
    for (struct container *c = d->containers; c; c = c->next) {
        char path[PATH_MAX + 8];
        netns_path(c, path, sizeof(path));
        bool running = c->pid > 0;
        if (running && c->cfg->net.mode == NET_BRIDGED) {
            tm_err err;
            struct net_state *st = net_state_of(c, &err);
            if (st && (st->netns_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
                log_warn("%s: its network namespace is not pinned: %m", container_label(c));
            if (st)
                st->active = true;
        } else if (running && c->cfg->net.nifaces) {
            if (net_state_of(c, NULL))
                c->net->netns_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        } else if (!running) {
            /* Dead meanwhile (or never fully started): whatever it left goes. */
            net_teardown(c);
        }
    }
    /* Only a daemon with bridged containers ever made the bridge and the tables: one without
     * them must not touch a bridge of that name, which may be another daemon's. */
    bool bridged = false;
    for (struct container *c = d->containers; c; c = c->next)
        bridged |= c->cfg->net.mode == NET_BRIDGED;
    if (!bridged)
        return;
    tm_err err;
    if (sync_rules(d, &err) < 0)
        log_warn("%s", err.msg);
    bridge_remove_now(d, false); /* left by the last trustmed: no linger */
}

static int running_netns(struct container *c, tm_err *err)
{
    if (c->state != CS_RUNNING && c->state != CS_FROZEN)
        return tm_err_set(err, EINVAL, "%s is not running", c->cfg->name);
    if (!c->net || c->net->netns_fd < 0) {
        char path[PATH_MAX + 8];
        netns_path(c, path, sizeof(path));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return tm_err_sys(err, "%s: its network namespace is not pinned", c->cfg->name);
        if (!net_state_of(c, err))
            return -ENOMEM;
        c->net->netns_fd = steal_fd(fd);
    }
    return c->net->netns_fd;
}

int net_iface_assign(struct container *c, const char *name, tm_err *err)
{
    int r;
    if (!config_net_ifname_valid(name) || strcmp(name, "lo") == 0 || strcmp(name, c->d->device.net.bridge) == 0 ||
        config_net_is_veth_name(name))
        return tm_err_set(err, EINVAL, "\"%s\" cannot be assigned", name);
    if (c->cfg->net.mode == NET_BRIDGED && strcmp(name, "eth0") == 0)
        return tm_err_set(err, EINVAL, "\"eth0\" is the bridged container's own veth end inside");
    int netns = running_netns(c, err);
    if (netns < 0)
        return netns;
    _cleanup_close_ int s = nl_open(-1, err);
    if (s < 0)
        return s;
    _cleanup_close_ int in = nl_open(netns, err);
    if (in < 0)
        return in;
    if (nl_ifindex(in, name, err) >= 0)
        return tm_err_set(err, EEXIST, "%s already has an interface named %s", c->cfg->name, name);
    int idx = nl_ifindex(s, name, err);
    if (idx < 0)
        return idx == -ENODEV ? tm_err_set(err, ENODEV, "no interface %s on the host", name) : idx;
    /* Moved, then recorded by the index it has inside (an index taken there is renumbered). */
    if ((r = nl_link_set(s, idx, &(struct nl_link_change){.up = 0, .netns_fd = netns}, err)) < 0)
        return tm_err_prefix(err, "%s", name);
    int now = nl_ifindex(in, name, err);
    if ((r = net_ifaces_record(c, now > 0 ? now : idx, name, err)) < 0)
        return r;
    return 0;
}

int net_iface_unassign(struct container *c, const char *name, tm_err *err)
{
    int netns = running_netns(c, err);
    if (netns < 0)
        return netns;
    char path[PATH_MAX + 8], tmp[PATH_MAX + 16];
    net_ifaces_path(c, path, sizeof(path));
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    int idx, found = -1;
    char n[IF_NAMESIZE + 1];
    _cleanup_free_ char *rest = NULL;
    size_t restlen = 0;
    _cleanup_fclose_ FILE *keep = open_memstream(&rest, &restlen);
    if (!keep)
        return tm_err_set(err, ENOMEM, "out of memory");
    while (f && fscanf(f, "%d %15s", &idx, n) == 2) {
        if (found < 0 && strcmp(n, name) == 0)
            found = idx;
        else
            fprintf(keep, "%d %s\n", idx, n);
    }
    if (found < 0)
        return tm_err_set(err, ENOENT, "%s was not assigned to %s", name, c->cfg->name);
    _cleanup_close_ int in = nl_open(netns, err);
    _cleanup_close_ int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return in;
    char cur[IF_NAMESIZE];
    int r = nl_ifname(in, found, cur, err);
    if (r == 0)
        r = nl_link_set(in, found, &(struct nl_link_change){.up = 0, .netns_fd = self, .name = name}, err);
    if (r < 0 && r != -ENODEV)
        return tm_err_prefix(err, "cannot give %s back", name);
    fflush(keep);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    _cleanup_close_ int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0 || write(out, rest, restlen) != (ssize_t)restlen || rename(tmp, path) < 0)
        return tm_err_sys(err, "cannot update %s", path);
    return r == -ENODEV ? tm_err_set(err, ENODEV, "%s is no longer in the container", name) : 0;
}

const struct container_observer net_container_observer = {
    .name = "net",
    .created = net_lease_acquire,
    .removed = net_lease_release,
    .freed = net_state_free,
};
