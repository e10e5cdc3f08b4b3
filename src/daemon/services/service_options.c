/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's options for trustme-scd and trustme-tpmd (service_options.h). */
#include "service_options.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service_options_private.h"
#include "cleanup.h"

int service_options_init(struct daemon *d, tm_err *err)
{
    assert(!d->service_opts);
    struct service_options *o = calloc(1, sizeof(*o));
    if (!o)
        return tm_err_set(err, ENOMEM, "out of memory");
    snprintf(o->scd.user, sizeof(o->scd.user), "trustme-scd");
    snprintf(o->tpmd.user, sizeof(o->tpmd.user), "trustme-tpm");
    snprintf(o->tpmd.swtpm_state, sizeof(o->tpmd.swtpm_state), "/var/lib/trustme-swtpm");
    d->service_opts = o;
    return 0;
}

void service_options_free(struct daemon *d)
{
    free(d->service_opts);
    d->service_opts = NULL;
}

/* An absolute path of at most 200 bytes (it becomes part of longer paths and command lines). */
static int short_abs_path(const char *opt, const char *arg, char *out, size_t size, tm_err *err)
{
    if (arg[0] != '/' || strlen(arg) > 200)
        return tm_err_set(err, EINVAL, "%s must be an absolute path of at most 200 bytes", opt);
    snprintf(out, size, "%s", arg);
    return 0;
}

int service_option(struct daemon *d, enum service_option opt, const char *arg, tm_err *err)
{
    struct service_options *o = d->service_opts;
    assert(o && arg);
    switch (opt) {
    case SVC_OPT_SCD_USER: snprintf(o->scd.user, sizeof(o->scd.user), "%s", arg); return 0;
    case SVC_OPT_SCD_BINARY: snprintf(o->scd.binary, sizeof(o->scd.binary), "%s", arg); return 0;
    case SVC_OPT_SCD_BIND:
        if (arg[0] != '/' || o->scd.nbinds == ARRAY_SIZE(o->scd.binds))
            return tm_err_set(err, EINVAL, "--scd-bind takes an absolute path, at most %zu times",
                              ARRAY_SIZE(o->scd.binds));
        o->scd.binds[o->scd.nbinds++] = arg;
        return 0;
    case SVC_OPT_SCD_KDF_N: {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(arg, &end, 10);
        if (errno || *end || n < 1024 || n > (1u << 20) || (n & (n - 1)))
            return tm_err_set(err, EINVAL, "--scd-kdf-n must be a power of two from 1024 to 1048576");
        o->scd.kdf_n = n;
        return 0;
    }
    case SVC_OPT_TPMD_USER: snprintf(o->tpmd.user, sizeof(o->tpmd.user), "%s", arg); return 0;
    case SVC_OPT_TPMD_BINARY: snprintf(o->tpmd.binary, sizeof(o->tpmd.binary), "%s", arg); return 0;
    case SVC_OPT_SWTPM_STATE:
        return short_abs_path("--swtpm-state-dir", arg, o->tpmd.swtpm_state, sizeof(o->tpmd.swtpm_state), err);
    case SVC_OPT_RECOVERY_KEY_FILE:
        return short_abs_path("--recovery-key-file", arg, o->tpmd.recovery_key_file, sizeof(o->tpmd.recovery_key_file),
                              err);
    }
    return tm_err_set(err, EINVAL, "unknown service option %d", (int)opt);
}

const char *tpmd_swtpm_state_dir(const struct daemon *d)
{
    return d->service_opts->tpmd.swtpm_state;
}
