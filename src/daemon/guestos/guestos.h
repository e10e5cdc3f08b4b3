/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The GuestOS store: <data-dir>/guestos/<name>-<version>/, holding what `trustme guestos
 * install` verified (guestos_install.c) — the signed guestos.json with its signature and chain,
 * the images — and install.json, trustmed's own record of how far it trusts it.
 *
 * Nothing is trusted for being in the store: every image is hashed on the very fd that is then
 * mounted at a container start (module_volume), and again at each later start unless trustmed
 * has held that very inode, unchanged, ever since (image_cache.h). */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "guestos_config.h"
#include "image_cache.h"

enum trust_level {
    TRUST_SIGNED, /* through the chain its name requires (docs/GUESTOS.md "Trust") */
    TRUST_LOCAL, /* by the device's local root: only where the policy allows it */
    TRUST_UNSIGNED, /* development only, where the policy allows it */
};

struct guestos {
    struct guestos *next;
    struct guestos_config *cfg;
    enum trust_level trust;
    char signer[512]; /* the signing certificate's subject, "" when unsigned */
    char ca_sha256[65]; /* the registered GuestOS Signing CA it was signed through, or "" */
    /* The last re-check against CRLs and registered CAs (guestos_revocation.c): under which
     * files' hash it was made, and whether the signer is revoked (why, if so). */
    uint8_t checked_under[32];
    bool checked;
    bool revoked;
    char revoked_why[512];
    uint64_t installed_at;
    uint64_t size; /* bytes of all its images */
    uint8_t json_sha256[32]; /* of guestos.json as loaded: measured before each use */
    struct image_verified *verified; /* per mount: the images verified once (image_cache.h) */
    char dir[PATH_MAX];
};

const char *trust_level_name(enum trust_level t);
/* What `guestos list` and `trustme list` show: the trust level, or "revoked". */
const char *guestos_trust_shown(const struct guestos *g);
/* Create the store, drop what an interrupted install or remove left, load what is installed. */
int guestos_store_init(struct daemon *d, tm_err *err);
void guestos_store_free(struct daemon *d);
/* The installed version of name (0: the newest). */
struct guestos *guestos_find(struct daemon *d, const char *name, uint64_t version);
/* What a start of c would run now. */
struct guestos *guestos_for(struct container *c);
/* The containers running on g or that would start on it, comma-separated, into buf. */
size_t guestos_users(struct daemon *d, const struct guestos *g, char *buf, size_t size);
/* Add a GuestOS that has just been renamed into the store. */
int guestos_store_add(struct daemon *d, const char *dir, tm_err *err);
/* Remove name's version (0: the only one), unless a container uses it. */
int guestos_remove(struct daemon *d, const char *name, uint64_t version, tm_err *err);
/* Fill in what c's config leaves to its GuestOS: init, args, environment. */
int guestos_apply(struct container_config *cfg, const struct guestos_config *g, tm_err *err);
/* Write install.json into a staged GuestOS directory. */
int guestos_write_record(const char *dir, enum trust_level trust, const char *signer, const char *ca_sha256,
                         tm_err *err);
