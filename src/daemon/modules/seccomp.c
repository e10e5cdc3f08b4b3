/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_seccomp: a deny list returning EPERM for the system calls a container never needs and
 * that have repeatedly been the way out of one. Loaded last, after the capability drop, into init
 * and into every exec session. The filter is built once with libseccomp and kept as BPF. */
#include "seccomp_filter.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "fdutil.h"
#include "module.h"

static const char *const denied[] = {
    /* kernel code and the running kernel */
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "iopl",
    "ioperm",
    "uselib",
    "nfsservctl",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "vhangup",
    /* the clock of the whole host */
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "stime",
    /* file handles bypass the mount namespace (the "shocker" escape) */
    "open_by_handle_at",
    /* large kernel attack surface, rarely needed inside a guest */
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
};

static int add_rules(scmp_filter_ctx sc)
{
    int r;
    /* 32-bit x86 binaries get the same rules (other ABIs hit the default: kill). */
    if (seccomp_arch_native() == SCMP_ARCH_X86_64 && (r = seccomp_arch_add(sc, SCMP_ARCH_X86)) < 0)
        return r;
    /* no_new_privs is decided per process in load_filter, not forced by libseccomp. */
    if ((r = seccomp_attr_set(sc, SCMP_FLTATR_CTL_NNP, 0)) < 0)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a system call on this architecture */
        if ((r = seccomp_rule_add(sc, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0)
            return r;
    }
    /* TIOCSTI pushes input into a terminal: a container must not type into someone's shell. */
    return seccomp_rule_add(sc, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
}

/* libseccomp 2.5 exports BPF only to an fd: go through a memfd. */
static int export_bpf(scmp_filter_ctx sc, struct sock_fprog *out)
{
    _cleanup_close_ int mfd = memfd_create("seccomp", MFD_CLOEXEC);
    if (mfd < 0)
        return -errno;
    int r = seccomp_export_bpf(sc, mfd);
    if (r < 0)
        return r;
    off_t size = lseek(mfd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
        return -EIO;
    _cleanup_free_ struct sock_filter *f = malloc((size_t)size);
    if (!f)
        return -ENOMEM;
    if (pread(mfd, f, (size_t)size, 0) != size)
        return -EIO;
    out->filter = steal_ptr(f);
    out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    return 0;
}

int seccomp_build(struct daemon *d, tm_err *err)
{
    _cleanup_free_ struct sock_fprog *out = calloc(1, sizeof(*out));
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    scmp_filter_ctx sc = seccomp_init(SCMP_ACT_ALLOW);
    if (!sc)
        return tm_err_set(err, ENOMEM, "seccomp_init failed");
    int r = add_rules(sc);
    if (r == 0)
        r = export_bpf(sc, out);
    seccomp_release(sc);
    if (r < 0)
        return tm_err_set(err, -r, "cannot build the seccomp filter: %s", strerror(-r));
    d->seccomp = steal_ptr(out);
    return 0;
}

void seccomp_filter_free(struct daemon *d)
{
    if (!d->seccomp)
        return;
    free(d->seccomp->filter);
    free(d->seccomp);
    d->seccomp = NULL;
}

static int load_filter(struct start_ctx *ctx, tm_err *err)
{
    /* Without CAP_SYS_ADMIN (privileged containers drop it) the kernel requires no_new_privs. */
    cap_t caps = cap_get_proc();
    cap_flag_value_t admin = CAP_CLEAR;
    if (caps)
        cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &admin);
    cap_free(caps);
    if (admin != CAP_SET && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return tm_err_sys(err, "cannot set no_new_privs");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, ctx->d->seccomp) < 0)
        return tm_err_sys(err, "cannot load the filter");
    return 0;
}

const struct tm_module module_seccomp = {
    .name = "seccomp",
    .child = load_filter,
    .exec = load_filter,
};
