/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The helper services' options as services/ keeps them (service_options.h); private to
 * services/, so a change here recompiles services/ only. */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct service_options {
    struct {
        char user[64]; /* its system user */
        char binary[PATH_MAX]; /* "" = TRUSTME_LIBEXECDIR's or the build tree's */
        const char *binds[8]; /* host paths it may use (SoftHSM2 tokens, pcscd) */
        size_t nbinds;
        uint64_t kdf_n; /* scrypt N for new soft tokens, 0 = scd's default */
    } scd;
    struct {
        char user[64];
        char binary[PATH_MAX];
        char swtpm_state[PATH_MAX]; /* the embedded swtpm's state (default /var/lib/trustme-swtpm) */
        char recovery_key_file[PATH_MAX]; /* where the first seal's recovery key goes ("": run dir) */
    } tpmd;
};
