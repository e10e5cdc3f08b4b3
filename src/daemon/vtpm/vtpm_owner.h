/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A vTPM's owner as the device records it (docs/VTPM.md "Mandatory and discretionary owners"):
 * the owner's signed statement, kept in <data>/containers/<uuid>/vtpm-owner. A mandatory owner's
 * vTPM is destroyed (reset, wipe, remove) only with a release statement signed by that owner. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "owner_stmt.h"

/* The recorded statement: 0, -ENOENT (no owner recorded), or -errno (err says why). */
int vtpm_owner_read(const struct container *c, struct owner_stmt *ret, tm_err *err);
/* Record a statement: an owner statement signed by its own key, naming this container and its
 * vTPM's current ECC EK (a recorded mandatory owner is replaced only by a statement of the same
 * key); or the recorded owner's reference values, signed by it. */
int vtpm_owner_install(struct container *c, const uint8_t *text, size_t len, struct owner_stmt *ret, tm_err *err);
/* May c's vTPM be destroyed? 0 when no owner is recorded, the owner is discretionary, or release
 * is a release statement the mandatory owner signed for this container and EK; -EPERM with the
 * reason otherwise. */
int vtpm_owner_may_destroy(const struct container *c, const uint8_t *release, size_t len, tm_err *err);
/* The SHA-256 of the recorded owner statement file as it is (root with file operations may
 * have edited it: the digest then matches no statement its owner signed): 1, 0 with no record,
 * or -errno when it cannot be read. */
int vtpm_owner_digest(const struct container *c, uint8_t out[32]);
/* The vTPM is gone: so are its owner record and the owner's reference values. */
void vtpm_owner_forget(const struct container *c);
/* Measure -> verify -> extend: when the owner installed reference values (a "trustme-vtpm-refs-v1"
 * statement given to vtpm_owner_install), every measurement of this start (log: the vTPM's event
 * lines "PCR TYPE SHA256 NAME") must be among them; -EPERM with the first that is not. */
int vtpm_owner_check_events(const struct container *c, const char *log, tm_err *err);
