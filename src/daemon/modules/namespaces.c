/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_namespaces: uts (host name), net (loopback only for now) and time namespaces. The
 * namespaces themselves are created by the clone of init; this module configures them. */
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "module.h"

/* A new time namespace whose monotonic and boot clocks start near zero, so that uptime inside
 * the container counts from its start. Offsets can only be written before the first process
 * enters the namespace, hence here, before init is cloned. */
static int time_setup(struct start_ctx *ctx, tm_err *err)
{
    if (unshare(CLONE_NEWTIME) < 0)
        return tm_err_sys(err, "cannot create the time namespace");
    struct timespec mono, boot;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_BOOTTIME, &boot);
    char offsets[128];
    snprintf(offsets, sizeof(offsets), "monotonic -%lld 0\nboottime -%lld 0\n", (long long)mono.tv_sec,
             (long long)boot.tv_sec);
    int r = write_string_file("/proc/self/timens_offsets", offsets);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot set the time namespace's offsets");
    }
    return 0;
}

static int loopback_up(tm_err *err)
{
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return tm_err_sys(err, "socket");
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return tm_err_sys(err, "cannot read the flags of lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        return tm_err_sys(err, "cannot bring lo up");
    return 0;
}

static int namespaces_child(struct start_ctx *ctx, tm_err *err)
{
    if (sethostname(ctx->cfg->hostname, strlen(ctx->cfg->hostname)) < 0)
        return tm_err_sys(err, "cannot set the host name");
    return loopback_up(err);
}

const struct tm_module module_namespaces = {
    .name = "namespaces",
    .setup = time_setup,
    .child = namespaces_child,
};
