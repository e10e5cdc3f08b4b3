/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of the device's trust: which anchors and CAs a signature must chain to, and
 * asking trustme-scd to check it (trustmed itself never parses a certificate).
 *
 *   CHAIN_SOFTWARE  the Software Signing root (the core GuestOS)
 *   CHAIN_GUESTOS   the General root, through a registered GuestOS-signing CA (device.json
 *                   trust.guestos_cas and <data-dir>/trust/cas/, filled by `trustme ca register`)
 *
 * Where the proper chain fails and the device policy allows locally signed GuestOSes, the
 * device's local root is tried next; success there is TRUST_LOCAL. */
#pragma once

#include <stddef.h>

#include "daemon.h"
#include "guestos.h"

enum signer_chain { CHAIN_SOFTWARE, CHAIN_GUESTOS };

struct trust_result {
    enum trust_level trust;
    char signer[512];
    char sha256[65]; /* ca register: the registered certificate's */
    char ca_sha256[65]; /* CHAIN_GUESTOS, signed: the registered GuestOS Signing CA it passed */
};

/* Called once; err set on failure (a message fit for the user). */
typedef void (*trust_done_fn)(struct daemon *d, const struct trust_result *res, const tm_err *err, void *userdata);

/* Check sig over data against chain. The buffers must stay valid until fn is called. */
int trust_verify(struct daemon *d, const void *data, size_t len, const void *sig, size_t sig_len, const char *chain,
                 size_t chain_len, enum signer_chain which, bool allow_local, trust_done_fn fn, void *userdata,
                 tm_err *err);
/* Register a GuestOS-signing CA after scd found that it chains to the General root. */
int trust_register_ca(struct daemon *d, const char *pem, size_t len, trust_done_fn fn, void *userdata, tm_err *err);
/* The caller behind userdata is going away. */
void trust_forget(struct daemon *d, void *userdata);
