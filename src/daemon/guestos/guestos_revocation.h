/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Revocation reaches what is installed (docs/GUESTOS.md "Revocation"): every signed GuestOS in
 * the store is verified again, through trustme-scd, against the current CRLs and registered
 * GuestOS Signing CAs — at start-up, whenever the CRL files or the registered CAs change (a
 * check every few seconds compares their hash), at `ca register`/`ca unregister`, and at each
 * container start. A verdict is cached per GuestOS under the SHA-256 of those files, so a start
 * with nothing changed costs reading a few small files and no scd round trip.
 *
 * A GuestOS whose signer's chain is revoked (a revoked certificate anywhere in it) or no longer
 * passes through a registered GuestOS Signing CA does not start and shows as "revoked". Other
 * failures of the re-check (an expired certificate, a stale or missing CRL) are logged but do not
 * stop an installed GuestOS: they stop new installs. */
#pragma once

#include "daemon.h"
#include "guestos.h"

/* Called once: err NULL when g may start, else why not. g may have been removed meanwhile
 * (then err says so). */
typedef void (*revocation_done_fn)(struct daemon *d, const tm_err *err, void *userdata);

/* Decide whether g may start now; fn is called (possibly at once) with the verdict. */
int revocation_check(struct daemon *d, struct guestos *g, revocation_done_fn fn, void *userdata, tm_err *err);
/* Re-check every signed GuestOS in the background if the CRLs or CAs changed since the last
 * time (force: regardless), and keep checking every few seconds. */
void revocation_refresh(struct daemon *d, bool force);
/* revocation_refresh(d, true) whenever a new scd is ready (service.h). */
extern const struct service_events revocation_service_events;
/* The caller behind userdata is going away. */
void revocation_forget(struct daemon *d, void *userdata);
void revocation_stop(struct daemon *d);
