/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Measuring a container start into the runtime PCR after checking the TPM-anchored versions of
 * its GuestOS and its config (measure.c, docs/ATTESTATION.md). */
#pragma once

#include <stdint.h>

#include "daemon.h"
#include "guestos_owner.h"
#include "tpmd_client.h"

struct guestos;

/* Called once, err NULL when the anchors allowed the start and everything was measured. */
typedef void (*measure_done_fn)(struct container *c, const tm_err *err);

/* Check g's and c's config's anchored versions (refused when the store or the config was rolled
 * back; raised when they are newer) and measure g's guestos.json, its images and c's config.
 * g may be NULL (a development rootfs). */
int measure_start(struct container *c, const struct guestos *g, measure_done_fn done, tm_err *err);
/* Measure every running container again (after a TPM reset the new log lacks them; without one
 * tpmd skips events it already holds). One whose measurement fails is stopped. */
void measure_running(struct daemon *d);
/* measure_running when tpmd is ready (service.h). */
extern const struct service_events measure_service_events;
/* The start is abandoned: drop its pending answers. */
void measure_forget(struct container *c);

/* A container config's anchor entry, "config/<uuid>": the highest config_version accepted
 * (8 bytes, big-endian). */
#define MEASURE_CONFIG_ANCHOR_LEN 8
void measure_config_anchor_name(const struct container *c, char out[GUESTOS_ANCHOR_NAME_MAX + 1]);
void measure_config_anchor_encode(uint64_t version, uint8_t out[MEASURE_CONFIG_ANCHOR_LEN]);
int measure_config_anchor_parse(const ProtobufCBinaryData *value, uint64_t *ret, tm_err *err);
/* c is removed: drop its config's anchor entry (in the background; a failure leaves an unused
 * entry, never a wrong one: the UUID is not used again). */
void measure_config_anchor_drop(struct container *c);
