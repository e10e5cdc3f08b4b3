/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_caps: the capability bounding set of init and of every exec session. */
#include <errno.h>
#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "caps.h"
#include "cleanup.h"
#include "module.h"

/* Always removed (unless the config keeps one): loading kernel code, raw hardware and kernel
 * memory access, the clock, reboot, the kernel log, MAC policy, the audit system, tracing other
 * processes, immutable files, process accounting, alarms and suspend blocking, BPF and perf. */
static const int drop_always[] = {
    CAP_SYS_MODULE,   CAP_SYS_RAWIO,     CAP_SYS_TIME,   CAP_SYS_BOOT,   CAP_SYSLOG,          CAP_MAC_ADMIN,
    CAP_MAC_OVERRIDE, CAP_AUDIT_CONTROL, CAP_AUDIT_READ, CAP_SYS_PTRACE, CAP_LINUX_IMMUTABLE, CAP_SYS_PACCT,
    CAP_WAKE_ALARM,   CAP_BLOCK_SUSPEND, CAP_PERFMON,    CAP_BPF,        CAP_SYS_TTY_CONFIG,
};
/* Without a user namespace the container's root is the host's root: these would reach the host. */
static const int drop_without_userns[] = {CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH, CAP_SYS_RESOURCE};

uint64_t caps_drop_mask(const struct container_config *cfg, bool userns)
{
    uint64_t drop = 0;
    for (size_t i = 0; i < ARRAY_SIZE(drop_always); i++)
        drop |= 1ULL << drop_always[i];
    if (!userns)
        for (size_t i = 0; i < ARRAY_SIZE(drop_without_userns); i++)
            drop |= 1ULL << drop_without_userns[i];
    return drop & ~cfg->caps_keep;
}

uint64_t caps_privileged(const struct container_config *cfg)
{
    if (cfg->user_namespace)
        return 0;
    struct container_config none = {.caps_keep = 0};
    return cfg->caps_keep & caps_drop_mask(&none, false);
}

void caps_names(uint64_t mask, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int cap = 0; cap < 64; cap++) {
        if (!(mask & (1ULL << cap)))
            continue;
        char *name = cap_to_name(cap);
        if (!name)
            continue;
        int n = snprintf(out + used, size - used, "%s", used ? "," : "");
        for (const char *p = name; *p && n >= 0 && used + (size_t)n + 1 < size; p++)
            out[used + (size_t)n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        cap_free(name);
        if (n < 0 || used + (size_t)n + 1 >= size)
            break;
        used += (size_t)n;
        out[used] = '\0';
    }
}

static int caps_prepare(struct start_ctx *ctx, tm_err *err)
{
    ctx->caps_drop = caps_drop_mask(ctx->cfg, ctx->uid_base != 0);
    return 0;
}

static int caps_drop(struct start_ctx *ctx, tm_err *err)
{
    cap_t caps = cap_get_proc();
    if (!caps)
        return tm_err_sys(err, "cap_get_proc");
    int r = 0;
    for (int cap = 0; cap < 64 && r == 0; cap++) {
        if (!(ctx->caps_drop & (1ULL << cap)) || !CAP_IS_SUPPORTED(cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            r = tm_err_sys(err, "cannot drop capability %d from the bounding set", cap);
        cap_value_t v = cap;
        cap_set_flag(caps, CAP_EFFECTIVE, 1, &v, CAP_CLEAR);
        cap_set_flag(caps, CAP_PERMITTED, 1, &v, CAP_CLEAR);
        cap_set_flag(caps, CAP_INHERITABLE, 1, &v, CAP_CLEAR);
    }
    if (r == 0 && cap_set_proc(caps) < 0)
        r = tm_err_sys(err, "cap_set_proc");
    cap_free(caps);
    if (r == 0 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        r = tm_err_sys(err, "cannot clear ambient capabilities");
    return r;
}

const struct tm_module module_caps = {
    .name = "caps",
    .prepare = caps_prepare,
    .child = caps_drop,
    .exec = caps_drop,
};
