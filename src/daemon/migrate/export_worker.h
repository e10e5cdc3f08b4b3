/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The export's bundle, written by a child process (docs/MIGRATION.md "Export"): hashing and
 * copying a data volume of hundreds of MiB takes seconds, during which trustmed keeps serving
 * its other clients. The same pattern as a GuestOS install's worker: clone3 with a pidfd, a
 * sync socket for its progress and its last words, killed with trustmed (PDEATHSIG). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "daemon.h"
#include "error.h"
#include "secmem.h"

struct export_worker;

/* Called from the event loop: every second while the bundle is written (bytes so far of total),
 * then once at the end: err NULL and h->digest filled (the head digest the lock keeps), or the
 * reason (a worker that was killed leaves path behind: the caller removes it). The worker is
 * already freed when done runs: forget the pointer. */
typedef void (*export_worker_progress_fn)(uint64_t done, uint64_t total, void *userdata);
typedef void (*export_worker_done_fn)(const struct bundle_header *h, const tm_err *err, void *userdata);

/* Write the bundle at path (bundle_write: a new file, synced) from the files of dir, in a child.
 * h, the key and the secrets are taken as they are now (the secrets go to the child over its
 * socket, into its locked memory: secret memory is wiped in a fork). */
int export_worker_start(struct daemon *d, const char *path, const char *dir, const struct bundle_header *h,
                        const uint8_t *key_spki, size_t key_spki_len, const struct secret *secrets,
                        export_worker_progress_fn progress, export_worker_done_fn done, void *userdata,
                        struct export_worker **ret, tm_err *err);
/* Kill the child (if it still runs) and forget it: done is not called. NULL is fine. */
void export_worker_free(struct export_worker *w);
