/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's command-line options for its helper services trustme-scd and trustme-tpmd: main.c
 * hands each one over as it parses them; services/ keeps them (d->service_opts) and checks them. */
#pragma once

#include "daemon.h"
#include "error.h"

enum service_option {
    SVC_OPT_SCD_USER, /* --scd-user */
    SVC_OPT_SCD_BINARY, /* --scd-binary */
    SVC_OPT_SCD_BIND, /* --scd-bind (repeatable; the string is kept, not copied) */
    SVC_OPT_SCD_KDF_N, /* --scd-kdf-n */
    SVC_OPT_TPMD_USER, /* --tpmd-user */
    SVC_OPT_TPMD_BINARY, /* --tpmd-binary */
    SVC_OPT_SWTPM_STATE, /* --swtpm-state-dir */
    SVC_OPT_RECOVERY_KEY_FILE, /* --recovery-key-file */
};

/* The defaults, before the first service_option. */
int service_options_init(struct daemon *d, tm_err *err);
/* Set one option; a bad value fails with a sentence naming the option. */
int service_option(struct daemon *d, enum service_option o, const char *arg, tm_err *err);
void service_options_free(struct daemon *d);
/* The embedded swtpm's state directory (--swtpm-state-dir). */
const char *tpmd_swtpm_state_dir(const struct daemon *d);
