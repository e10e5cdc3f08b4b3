/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The target authenticates the source (docs/MIGRATION.md "Source authentication"): the source's
 * AK signs the bundle's head (its digest names the manifest, so every part, the offer id and the
 * target's AK name; the wrapped K, the IV and the sealed keys), and the bundle ends with that
 * signature and the source's AK certificate chain. Before the offer is spent, the target checks
 * the chain against its own General root (device.json trust.general_root) and CRLs
 * (trust.crls), through trustme-scd as every certificate check of trustmed, and requires the AK
 * certificate to be issued by the Device CA that issued its own AK's. The offer is public, so
 * without this anyone holding it could make a bundle that the target installs and signs a
 * receipt for. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "daemon.h"
#include "error.h"

/* After the last part: magic, u32 length and the AK's signature (ECDSA P-256, r || s), u32
 * length and the AK's certificate chain (PEM, the AK's first, then its Device CA). */
#define SOURCE_AUTH_MAGIC "TMMIGsrc"
#define SOURCE_AUTH_SIG_LEN 64
#define SOURCE_AUTH_CHAIN_MAX 16384
#define SOURCE_AUTH_KIND "export" /* the first line of the signed text (migrate_text) */

/* Called once. err NULL: done (signed and appended; or the source authenticated, and signer is
 * its AK certificate's subject, for the audit, and ak_id the SHA-256 of its DER, which the
 * offer's nonce must name (migrate_nonce.h); both NULL otherwise). */
typedef void (*source_auth_fn)(struct daemon *d, const char *signer, const uint8_t *ak_id, const tm_err *err,
                               void *userdata);

/* Source: have the AK sign h's head (h->digest, filled by bundle_write) and append the
 * signature and the AK's certificate chain to the bundle written at path, synced. A device
 * whose AK has no certificate refuses (the target could not authenticate it). */
int source_auth_sign(struct daemon *d, const struct bundle_header *h, const char *path, source_auth_fn fn,
                     void *userdata, tm_err *err);

/* This device's AK id (the SHA-256 of its AK certificate's DER, migrate_nonce.h): fn gets it as
 * ak_id (signer ""). A device whose AK has no certificate fails (no source could be bound). */
int source_auth_ak_id(struct daemon *d, source_auth_fn fn, void *userdata, tm_err *err);

/* Called once: sig (r || s) and the AK's certificate chain, or err. */
typedef void (*source_auth_signed_fn)(struct daemon *d, const uint8_t *sig, const ProtobufCBinaryData *chain,
                                      const tm_err *err, void *userdata);

/* Have the AK sign text (tpmd's migrate_sign: MIGRATE_SIGN_TAG before it) and give the signature
 * with the AK's certificate chain: the announcement of a bundle over TCP (migrate_announce.h). */
int source_auth_sign_text(struct daemon *d, const char *text, source_auth_signed_fn fn, void *userdata, tm_err *err);

/* Target: check sig over text (with MIGRATE_SIGN_TAG before it) and chain as a bundle's signature
 * is checked (below); fn as for source_auth_check. */
int source_auth_check_text(struct daemon *d, const char *text, const uint8_t sig[SOURCE_AUTH_SIG_LEN],
                           const uint8_t *chain, size_t chain_len, source_auth_fn fn, void *userdata, tm_err *err);

/* Target: check b's source signature and chain (above). b must stay open until fn is called.
 * Every failure names the check, prefixed "source authentication: ". */
int source_auth_check(struct daemon *d, const struct bundle_in *b, source_auth_fn fn, void *userdata, tm_err *err);
