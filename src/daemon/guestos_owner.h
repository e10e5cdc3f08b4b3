/* Who may sign a GuestOS name (docs/GUESTOS.md "Names and their vendors"): the GuestOS Signing
 * CA device.json binds to it (trust.guestos_owners), else the one its first signed install
 * passed through, recorded in <data-dir>/trust/guestos-owners.json. A vendor's registered CA
 * therefore signs its own names only, never another vendor's. */
#pragma once

#include <stdbool.h>

#include "daemon.h"

/* ret: the owner's SHA-256 (hex), "" when the name has none yet; *ret_bound: by device.json. */
int guestos_owner_lookup(struct daemon *d, const char *name, char ret[65], bool *ret_bound,
                         tm_err *err);
/* Record ca as name's owner (durably: written and synced before this returns). */
int guestos_owner_record(struct daemon *d, const char *name, const char *ca, tm_err *err);
