/* Measuring a container start into the runtime PCR, and the GuestOS anti-rollback counters in
 * the TPM (measure.c, docs/ATTESTATION.md). */
#pragma once

#include <stdint.h>

#include "daemon.h"
#include "tpmd_client.h"

struct guestos;

/* Called once, err NULL when everything was measured and the counter allowed the version. */
typedef void (*measure_done_fn)(struct container *c, const tm_err *err);

/* Raise g's counter to the newest installed version of g's name (refused if the TPM records a
 * higher one: a rolled-back store) and measure g's guestos.json, its images and c's config.
 * g may be NULL (a development rootfs). */
int measure_start(struct container *c, const struct guestos *g, measure_done_fn done, tm_err *err);
/* Measure every running container again (after a TPM reset the new log lacks them; without one
 * tpmd skips events it already holds). One whose measurement fails is stopped. */
void measure_running(struct daemon *d);
/* The start is abandoned: drop its pending answers. */
void measure_forget(struct container *c);

/* Ask for a GuestOS's counter; in fn, measure_counter_verdict says whether version may be
 * installed (-ESTALE with the reason when the TPM records a higher one). */
int measure_counter_get(struct daemon *d, const char *name, tpmd_reply_fn fn, void *userdata,
                        tm_err *err);
int measure_counter_verdict(const Trustme__Tpmd__Response *resp, const tm_err *err,
                            const char *name, uint64_t version, tm_err *out);
/* After an install: raise the counter (failures are logged; the next start raises it). */
void measure_guestos_installed(struct daemon *d, const char *name, uint64_t version);
