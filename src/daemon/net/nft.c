/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme's nftables tables, applied in process through libnftables (docs/NETWORK.md
 * "nftables"). The script comes from nft_rules.c; here it is run as one batch, and the host's
 * IPv4 forwarding is switched on when the rules need it. */
#include "nft.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

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

/* One context for trustmed's lifetime: creating one costs more than a whole sync (it reads
 * nft's tables of names), and trustmed runs one sync at a time on its event loop. Its cache is
 * not trusted across runs: nft checks the ruleset's generation on every command. */
static struct nft_ctx *nft_context(tm_err *err)
{
    static struct nft_ctx *ctx;

    if (ctx)
        return ctx;
    ctx = nft_ctx_new_cloexec();
    if (!ctx) {
        tm_err_set(err, ENOMEM, "libnftables: cannot create a context");
        return NULL;
    }
    /* Errors are kept for tm_err rather than printed to trustmed's stderr. */
    if (nft_ctx_buffer_error(ctx) < 0 || nft_ctx_buffer_output(ctx) < 0) {
        nft_ctx_free(ctx);
        ctx = NULL;
        tm_err_set(err, ENOMEM, "libnftables: cannot buffer its output");
        return NULL;
    }
    return ctx;
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

int nft_sync(struct daemon *d, const struct nft_member *members, size_t n, tm_err *err)
{
    const struct net_device_config *dev = &d->device.net;
    _cleanup_free_ char *script = NULL;
    int r;

    r = nft_ruleset(dev, members, n, &script, err);
    if (r < 0)
        return r;
    /* Before the rules: a forward must not be in place while the host still drops its packets. */
    if (nft_needs_forwarding(dev, members, n)) {
        r = enable_ip_forward(err);
        if (r < 0)
            return r;
    }
    r = nft_run(script, err);
    if (r < 0)
        return tm_err_prefix(err, "tables trustme-%s", dev->bridge);
    return 0;
}

void nft_remove(struct daemon *d)
{
    _cleanup_free_ char *script = NULL;
    tm_err err = {0};

    if (nft_ruleset_remove(d->device.net.bridge, &script, &err) < 0 || nft_run(script, &err) < 0)
        log_warn("removing the nft tables trustme-%s: %s", d->device.net.bridge, err.msg);
}
