/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The attestation endpoint's relay to a container's vTPM (docs/VTPM.md "Remote take-ownership"):
 * which commands it carries, where the vTPM is, and what a connection leaves behind. tpmd
 * neither reads nor vouches for what it relays; these checks only keep one relay request from
 * costing tpmd more than a quote does (no RSA key generation, at most one command of at most
 * VTPM_MAX_COMMAND bytes in flight per connection). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vtpm_wire.h"

#define VTPM_RELAY_LOG_MAX (256 * 1024) /* bytes of a container's event log */
/* The persistent handle of the attestation key a vTPM's owner makes for trustme-fleet
 * (docs/FLEET.md "vTPM quotes"): the one handle EvictControl is relayed for. */
#define VTPM_FLEET_KEY_HANDLE 0x81018000u

/* Why this command is not relayed (a usage error for the requester, err says it), or 0: its
 * size must match its header, its code must be one the take-ownership protocol uses, a
 * CreatePrimary must make an ECC key, and an EvictControl must name VTPM_FLEET_KEY_HANDLE. */
int vtpm_relay_check_command(const uint8_t *cmd, size_t len, tm_err *err);

/* A non-blocking connection to <vtpm_dir>/<uuid>/pub/tpm.sock, the socket the container's own
 * processes use. uuid must be a UUID (it becomes a path). -errno; err says why. */
int vtpm_relay_connect(const char *vtpm_dir, const char *uuid, tm_err *err);

/* <vtpm_dir>/<uuid>/pub/event.log, at most VTPM_RELAY_LOG_MAX bytes, into *ret (malloc'ed). */
int vtpm_relay_event_log(const char *vtpm_dir, const char *uuid, uint8_t **ret, size_t *ret_len, tm_err *err);
