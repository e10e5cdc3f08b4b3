/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme's nftables tables, applied in a helper process (docs/NETWORK.md "nftables"): through
 * libnftables when a table's rules change (the scripts come from nft_rules.c; the changed ones are
 * run as one batch), as one batch of set elements (nft_batch.c) when only the members of the
 * bridge table's sets do. The host's IPv4 forwarding is switched on when the rules need it. */
#include "nft.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "nft_batch.h"
#include "reaper.h"

#define FD_SCAN_MAX 4096

/* Mark fds open in trustmed: set[fd] = 1. Returns -errno. */
static int open_fds(unsigned char set[FD_SCAN_MAX])
{
    _cleanup_(closedirp) DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;

    if (!dir)
        return -errno;
    memset(set, 0, FD_SCAN_MAX);
    while ((de = readdir(dir))) {
        long fd = strtol(de->d_name, NULL, 10);
        /* not the listing's own fd: closed again, it is what the next open gets */
        if (de->d_name[0] != '.' && fd >= 0 && fd < FD_SCAN_MAX && fd != dirfd(dir))
            set[fd] = 1;
    }
    return 0;
}

/* libnftables opens its netlink socket without SOCK_CLOEXEC (nftables 1.0.6; it gives no say), and
 * trustmed forks setup processes and services: no child may inherit a handle on the host's
 * netfilter (every fd trustme opens is O_CLOEXEC). So what nft_ctx_new opened is marked here. */
static struct nft_ctx *nft_ctx_new_cloexec(void)
{
    static unsigned char before[FD_SCAN_MAX], after[FD_SCAN_MAX];
    bool scanned = open_fds(before) == 0;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);

    if (ctx && scanned && open_fds(after) == 0)
        for (int fd = 0; fd < FD_SCAN_MAX; fd++)
            if (after[fd] && !before[fd])
                (void)fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    return ctx;
}

/* One context for the process's lifetime (the helper's, or trustmed's own without one): creating
 * one costs more than a whole sync (it reads nft's tables of names), and syncs run one at a time. Its cache is
 * not trusted across runs: nft checks the ruleset's generation on every command. */
static struct nft_ctx *nft_ctx_cached;

static struct nft_ctx *nft_context(tm_err *err)
{
    if (nft_ctx_cached)
        return nft_ctx_cached;
    nft_ctx_cached = nft_ctx_new_cloexec();
    if (!nft_ctx_cached) {
        tm_err_set(err, ENOMEM, "libnftables: cannot create a context");
        return NULL;
    }
    /* Errors are kept for tm_err rather than printed to trustmed's stderr. */
    if (nft_ctx_buffer_error(nft_ctx_cached) < 0 || nft_ctx_buffer_output(nft_ctx_cached) < 0) {
        nft_ctx_free(nft_ctx_cached);
        nft_ctx_cached = NULL;
        tm_err_set(err, ENOMEM, "libnftables: cannot buffer its output");
        return NULL;
    }
    return nft_ctx_cached;
}

static int nft_run(const char *script, tm_err *err)
{
    struct nft_ctx *ctx = nft_context(err);
    if (!ctx)
        return -ENOMEM;
    int r = nft_run_cmd_from_buffer(ctx, script);
    /* Read (and so reset) both buffers every time, or the next run's error would carry this one. */
    const char *msg = nft_ctx_get_error_buffer(ctx);
    (void)nft_ctx_get_output_buffer(ctx);
    if (r != 0) {
        size_t len = msg ? strlen(msg) : 0;
        while (len > 0 && msg[len - 1] == '\n')
            len--;
        return tm_err_set(err, EIO, "nftables: %.*s", (int)len, len ? msg : "the rules were refused");
    }
    return 0;
}

/* libnftables runs in a helper process of its own rather than in trustmed. Each run allocates and
 * fills four 128 KiB hash tables for every table it parses or reads from the kernel (nftables
 * 1.0.6, cache_init), some megabytes of fresh writes; in trustmed every one of those pages is
 * write-protected again by the fork of the next setup process (copy-on-write), so that each sync
 * took ~12 ms of CPU in page faults and TLB flushes on this (paravirtualised) kernel rather than
 * ~0.4 ms. The helper never forks: its pages stay its own. It is forked once, at the first sync,
 * keeps only its end of a socketpair (no other fd of trustmed), dies with trustmed
 * (PR_SET_PDEATHSIG) or when the socket closes, and runs one request at a time: a script (or a
 * batch of set elements) in, a tm_err out (code 0: applied). Should it be gone, trustmed runs the
 * script itself. */
struct nft_helper {
    int fd; /* trustmed's end; -1: none */
    int pidfd;
};
static struct nft_helper helper = {-1, -1};

/* What trustmed sends the helper: a script for libnftables, or an nfnetlink batch of set elements
 * (nft_batch.c), written to the kernel as it is. The first byte says which. */
#define REQ_SCRIPT 'S'
#define REQ_BATCH 'B'

static int run_batch(char *batch, size_t len, tm_err *err)
{
    static int s = -1; /* the helper's own netfilter socket, kept */
    if (s < 0 && (s = nft_batch_socket(err)) < 0)
        return s;
    return nft_batch_send(s, batch, len, err);
}

static __attribute__((noreturn)) void helper_main(int fd)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    (void)prctl(PR_SET_NAME, "trustmed-nft");
    if (getppid() == 1)
        _exit(0);
    /* A context trustmed made itself (when it had no helper) lost its socket to close_range:
     * left alone, not freed, and a new one made here. */
    nft_ctx_cached = NULL;
    for (;;) {
        ssize_t len = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
        if (len <= 0) {
            if (len < 0 && errno == EINTR)
                continue;
            _exit(0);
        }
        char *req = malloc((size_t)len + 1);
        if (!req || recv(fd, req, (size_t)len, 0) != len)
            _exit(1);
        req[len] = '\0';
        tm_err err = {0};
        if (req[0] == REQ_BATCH)
            (void)run_batch(req + 1, (size_t)len - 1, &err);
        else if (req[0] == REQ_SCRIPT)
            (void)nft_run(req + 1, &err);
        else
            tm_err_set(&err, EPROTO, "nftables helper: unknown request");
        free(req);
        if (send(fd, &err, sizeof(err), MSG_NOSIGNAL) != (ssize_t)sizeof(err))
            _exit(1);
    }
}

static void helper_stop(struct daemon *d)
{
    close_and_reset(helper.fd);
    if (helper.pidfd >= 0)
        reaper_take_pidfd(d, helper.pidfd);
    helper.pidfd = -1;
}

static int helper_start(void)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return -errno;
    int pidfd = -1;
    struct clone_args args = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
        /* Nothing of trustmed's stays open here but this socket (at fd 3). */
        if (dup3(sp[1], 3, 0) < 0 || close_range(4, ~0U, 0) < 0)
            _exit(1);
        helper_main(3);
    }
    int saved = errno;
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return -saved;
    }
    helper.fd = sp[0];
    helper.pidfd = pidfd;
    return 0;
}

/* A request to the helper (a new one if there is none); -EPIPE if it cannot be asked. */
static int helper_send(struct daemon *d, char kind, const void *data, size_t len)
{
    if (helper.fd < 0 && helper_start() < 0)
        return -EPIPE;
    struct iovec iov[2] = {{&kind, 1}, {(void *)data, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(helper.fd, &mh, MSG_NOSIGNAL) != (ssize_t)(len + 1)) {
        helper_stop(d);
        return -EPIPE;
    }
    return 0;
}

/* The helper's answer to the script sent last; -EPIPE (and no helper any more) if it is gone. */
static int helper_reply(struct daemon *d, tm_err *err)
{
    tm_err reply;
    ssize_t n;
    while ((n = recv(helper.fd, &reply, sizeof(reply), 0)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(reply)) {
        /* Gone in the middle: whether the batch was applied is unknown; the caller runs it again
         * (it replaces the tables as a whole, so twice is the same as once). */
        helper_stop(d);
        return -EPIPE;
    }
    if (reply.code == 0)
        return 0;
    reply.msg[sizeof(reply.msg) - 1] = '\0';
    return tm_err_set(err, reply.code, "%s", reply.msg);
}

/* The script run by the helper; -EPIPE (and no helper any more) if it cannot be asked. */
static int helper_run(struct daemon *d, const char *script, tm_err *err)
{
    int r = helper_send(d, REQ_SCRIPT, script, strlen(script));
    return r < 0 ? r : helper_reply(d, err);
}

/* Run a script: in the helper (a new one if the last is gone), or here when none can be had. */
static int nft_apply(struct daemon *d, const char *script, tm_err *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int r = helper_run(d, script, err);
        if (r != -EPIPE)
            return r;
    }
    return nft_run(script, err);
}

/* Left on afterwards (docs/NETWORK.md "Host settings"): other daemons and the admin may rely on
 * it, and turning it off under them would break their traffic. */
static int enable_ip_forward(tm_err *err)
{
    _cleanup_close_ int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
    char c;

    if (fd < 0)
        return tm_err_sys(err, "opening /proc/sys/net/ipv4/ip_forward");
    if (pread(fd, &c, 1, 0) != 1)
        return tm_err_sys(err, "reading /proc/sys/net/ipv4/ip_forward");
    if (c != '0')
        return 0;
    if (pwrite(fd, "1", 1, 0) != 1)
        return tm_err_sys(err, "setting net.ipv4.ip_forward=1");
    log_info("set net.ipv4.ip_forward=1 for the containers' NAT and port forwards");
    return 0;
}

/* What the kernel has, as far as trustmed knows: the inet table's script and the bridge table's
 * script without elements as last applied, and the elements of the bridge table's sets (NULL:
 * unknown, so the next sync sends both tables whole). A start or stop of a container without
 * ports, host_ports or allowed pairs leaves the inet table's text as it was and the bridge table's
 * rules too: only its own elements are added or deleted then, in one small nfnetlink batch
 * (nft_batch.c) that needs neither libnftables' parser nor its copy of the kernel's ruleset (~11
 * round trips), nor replaces any chain (whose hooks the kernel would unregister and register
 * again). trustmed is the only writer of its tables; after any failure both are sent whole. */
static char *applied_inet, *applied_bridge;
static struct nft_elem *applied_elems;
static size_t applied_nelems;

static void forget_applied(void)
{
    free(applied_inet);
    free(applied_bridge);
    free(applied_elems);
    applied_inet = applied_bridge = NULL;
    applied_elems = NULL;
    applied_nelems = 0;
}

/* A sync begun (nft_sync_begin) whose answer has not been read yet: at most one, since a sync
 * reads the answer of the one before it first. Its tables are the applied ones once the helper
 * says so. A start does not wait for it in net_prepare but before its eth0 comes up (net_pin),
 * so that the helper's run overlaps with the setup process's work. */
static struct {
    bool on;
    bool batch; /* elements only: on failure, the bridge table is sent whole (script) */
    char *inet, *bridge; /* both tables' scripts (the bridge's without elements) once applied */
    struct nft_elem *elems;
    size_t nelems;
    char *script; /* the tables as a script: run again if the helper dies meanwhile, or if the
                   * batch fails (the table changed behind trustmed's back) */
} pending;
/* Syncs begun and syncs whose outcome is known (a ticket is the first's count at its begin), and
 * the outcome of the last one known: since every sync replaces the tables with the rules of all
 * members, a sync is in force as long as the last one known succeeded. */
static uint64_t begun, known;
static tm_err last_outcome;

static void outcome(int r, const tm_err *err)
{
    known = begun;
    if (r == 0)
        tm_err_clear(&last_outcome);
    else
        last_outcome = *err;
}

static void pending_clear(void)
{
    free(pending.inet);
    free(pending.bridge);
    free(pending.elems);
    free(pending.script);
    pending.inet = pending.bridge = pending.script = NULL;
    pending.elems = NULL;
    pending.nelems = 0;
    pending.on = pending.batch = false;
}

/* The answer to the pending sync is read (or the sync is run again, here if need be). */
static void pending_collect(struct daemon *d)
{
    if (!pending.on)
        return;
    tm_err err = {0};
    int r = helper_reply(d, &err);
    if (r == -EPIPE || (r < 0 && pending.batch)) {
        if (r != -EPIPE)
            log_info("%s; sending the table whole", err.msg);
        tm_err_clear(&err);
        r = nft_apply(d, pending.script, &err);
    }
    if (r == 0) {
        forget_applied();
        applied_inet = steal_ptr(pending.inet);
        applied_bridge = steal_ptr(pending.bridge);
        applied_elems = steal_ptr(pending.elems);
        applied_nelems = pending.nelems;
    }
    pending_clear();
    outcome(r, &err);
}

static bool elem_in(const struct nft_elem *e, const struct nft_elem *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (nft_elem_same(e, &set[i]))
            return true;
    return false;
}

/* The batch that turns the applied elements into elems (*ret_len 0: nothing to change). */
static int elems_batch(struct daemon *d, const struct nft_elem *elems, size_t n, char **ret, size_t *ret_len,
                       tm_err *err)
{
    _cleanup_free_ struct nft_elem *del = calloc(applied_nelems + 1, sizeof(*del));
    _cleanup_free_ struct nft_elem *add = calloc(n + 1, sizeof(*add));
    size_t ndel = 0, nadd = 0;
    if (!del || !add)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < applied_nelems; i++)
        if (!elem_in(&applied_elems[i], elems, n))
            del[ndel++] = applied_elems[i];
    for (size_t i = 0; i < n; i++)
        if (!elem_in(&elems[i], applied_elems, applied_nelems))
            add[nadd++] = elems[i];
    *ret = NULL;
    *ret_len = 0;
    if (ndel + nadd == 0)
        return 0;
    return nft_batch_elems(d->device.net.bridge, del, ndel, add, nadd, ret, ret_len, err);
}

int nft_sync_begin(struct daemon *d, const struct nft_member *members, size_t n, uint64_t *ret_ticket, tm_err *err)
{
    const struct net_device_config *dev = &d->device.net;
    _cleanup_free_ char *inet = NULL, *base = NULL, *bridge = NULL, *script = NULL, *batch = NULL;
    _cleanup_free_ struct nft_elem *elems = NULL;
    size_t nelems = 0, batch_len = 0;
    int r;

    *ret_ticket = 0;
    pending_collect(d);
    if (n == 0) {
        forget_applied();
        begun++;
        r = nft_ruleset_remove(dev->bridge, &script, err);
        if (r >= 0)
            r = nft_apply(d, script, err);
        outcome(r < 0 ? r : 0, err);
        return r < 0 ? tm_err_prefix(err, "tables trustme-%s", dev->bridge) : 0;
    }
    r = nft_ruleset_parts(dev, members, n, &inet, &base, &elems, &nelems, err);
    if (r < 0 || (r = nft_ruleset_bridge(dev, elems, nelems, &bridge, err)) < 0)
        return r;
    /* Before the rules: a forward must not be in place while the host still drops its packets. */
    if (nft_needs_forwarding(dev, members, n)) {
        r = enable_ip_forward(err);
        if (r < 0)
            return r;
    }
    bool same_inet = applied_inet && strcmp(applied_inet, inet) == 0;
    bool same_base = applied_bridge && strcmp(applied_bridge, base) == 0;
    bool same_elems = same_base && applied_nelems == nelems;
    for (size_t i = 0; same_elems && i < nelems; i++)
        same_elems = elem_in(&elems[i], applied_elems, applied_nelems);
    bool elems_only = same_inet && same_base;
    if (elems_only) {
        if ((r = elems_batch(d, elems, nelems, &batch, &batch_len, err)) < 0)
            return r;
        if (batch_len == 0)
            return 0;
        script = steal_ptr(bridge); /* should the batch fail */
    } else if (asprintf(&script, "%s%s", same_inet ? "" : inet, same_elems ? "" : bridge) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    forget_applied(); /* until the kernel took it: a failed batch may have changed nothing */
    *ret_ticket = ++begun;
    if (elems_only ? helper_send(d, REQ_BATCH, batch, batch_len) == 0
                   : helper_send(d, REQ_SCRIPT, script, strlen(script)) == 0) {
        pending.on = true;
        pending.batch = elems_only;
        pending.inet = steal_ptr(inet);
        pending.bridge = steal_ptr(base);
        pending.elems = steal_ptr(elems);
        pending.nelems = nelems;
        pending.script = steal_ptr(script);
        return 0;
    }
    /* No helper to be had: run here, now. */
    tm_err here = {0};
    r = nft_apply(d, script, &here);
    if (r == 0) {
        applied_inet = steal_ptr(inet);
        applied_bridge = steal_ptr(base);
        applied_elems = steal_ptr(elems);
        applied_nelems = nelems;
    }
    outcome(r, &here);
    return 0;
}

int nft_sync_wait(struct daemon *d, uint64_t ticket, tm_err *err)
{
    if (ticket == 0)
        return 0;
    if (known < ticket)
        pending_collect(d);
    if (last_outcome.code == 0)
        return 0;
    *err = last_outcome;
    return tm_err_prefix(err, "tables trustme-%s", d->device.net.bridge);
}

int nft_sync(struct daemon *d, const struct nft_member *members, size_t n, tm_err *err)
{
    uint64_t ticket;
    int r = nft_sync_begin(d, members, n, &ticket, err);
    return r < 0 ? r : nft_sync_wait(d, ticket, err);
}

void nft_remove(struct daemon *d)
{
    uint64_t ticket;
    tm_err err = {0};

    if (nft_sync_begin(d, NULL, 0, &ticket, &err) < 0)
        log_warn("removing the nft tables trustme-%s: %s", d->device.net.bridge, err.msg);
}
