/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One measurement event and the digest a PCR is extended with (docs/ATTESTATION.md "Event
 * log"). Shared by trustme-tpmd, which extends, and the verifier, which replays. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TM_EVENT_TYPE_MAX 31
#define TM_EVENT_NAME_MAX 255
#define TM_PCR_MAX 23

/* The event types trustme measures. */
#define TM_EVENT_BINARY "binary"
#define TM_EVENT_DEVICE_CONFIG "device-config"
#define TM_EVENT_GUESTOS_CONFIG "guestos-config"
#define TM_EVENT_GUESTOS_IMAGE "guestos-image"
#define TM_EVENT_CONTAINER_CONFIG "container-config"
/* A container's vTPM endorsement key (name "<uuid>/ek-rsa|ecc", digest SHA-256 of its TPMT_PUBLIC,
 * i.e. its TPM name without the algorithm id): deep attestation, docs/VTPM.md. */
#define TM_EVENT_VTPM_EK "vtpm-ek"
/* A container vTPM's recorded owner statement (name "<uuid>/owner", digest SHA-256 of the
 * statement file as recorded): who owns the vTPM, measured with its EKs and into the vTPM's own
 * PCR, docs/VTPM.md "Mandatory and discretionary owners". */
#define TM_EVENT_VTPM_OWNER "vtpm-owner"

/* Check an (untrusted) event's fields: pcr 0..23, type one of the above, name 1..255 bytes of
 * printable ASCII, sha256 exactly 32 bytes. 0 or -EINVAL with err naming the field. */
int tm_event_check(uint32_t pcr, const char *type, const char *name, size_t sha256_len, tm_err *err);

/* SHA-256("trustme-event-v1" || u32be(pcr) || u16be(len(type)) || type || u16be(len(name)) ||
 * name || sha256): what the PCR is extended with. Fields must have passed tm_event_check. */
void tm_event_digest(uint32_t pcr, const char *type, const char *name, const uint8_t sha256[32], uint8_t out[32]);

/* pcr_value = SHA-256(pcr_value || digest): one PCR extend, for replaying a log. */
void tm_pcr_extend(uint8_t pcr_value[32], const uint8_t digest[32]);
