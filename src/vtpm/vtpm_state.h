/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-vtpm's side of the vTPM state (vtpm_state.c; docs/VTPM.md "The state"): after each
 * response we commit what the TPM stored (encrypted, vtpm_tpm.c) to the state file and report
 * its SHA-256 to trustmed, which anchors only digests learnt this way. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The state file in the state directory (vtpm_tpm.h: VTPM_STATE_MAGIC, the TPM's permanent
 * state encrypted). */
#define VTPM_STATE_FILE "tpm2.state"
/* A commit's new state, synced before trustmed anchors it and renamed over the file after: when
 * a power loss came between the two, this is the anchored state (trustmed renames it in). */
#define VTPM_STATE_TMP_FILE VTPM_STATE_FILE ".tmp"
/* In the vTPM's private run directory: a restarted trustmed connects here to learn the digest. */
#define VTPM_STATE_SOCKET "state.sock"

/* Take the state: memfd (trustmed's verified copy of the file; -1: read the state file as found,
 * for a standalone run; closed here), report_fd (to trustmed; -1: none). *ret, *ret_len: the
 * state (length 0: a new vTPM). */
int vtpm_state_open(const char *state_dir, int memfd, int report_fd, const uint8_t **ret, size_t *ret_len);

/* What the TPM stored (the whole state file's new bytes), committed at the next check. */
int vtpm_state_put(const uint8_t *state, size_t len);

/* Serving starts: from now on a command's stores are committed before its response leaves. A new
 * vTPM's manufactured state is committed here, before any client is served. */
int vtpm_state_serving(void);

/* After each response while serving: when the command stored a new state, write it to the state
 * file (a synced temporary file, "A <hex>" to trustmed and its anchor awaited, a rename, the
 * directory synced) and report "C <hex>". Before serving, nothing is written (see the .c). */
int vtpm_state_check(void);

/* At the end. take_pending: the TPM was shut down in order, so what it stored last is kept too;
 * otherwise (a failure mid-command) the last committed state is what stays. The state file is
 * rewritten from what we committed (and synced), whatever root put there meanwhile. */
int vtpm_state_finish(bool take_pending);

/* At an end before the vTPM served anyone (its start failed, or trustmed went away during it):
 * no client saw what its own start wrote (Startup, an EK certificate replaced), so the state
 * trustmed gave it is written back, and the file stays the anchored state whoever dies when; the
 * next start does that work again. A new vTPM (given no state) keeps what it made, as finish. */
int vtpm_state_abandon(bool take_pending);

/* A listening socket for a restarted trustmed (in the current directory's dir/VTPM_STATE_SOCKET). */
int vtpm_state_listen(const char *dir);
/* A connection to it: root's only; it gets "C <hex>" of the committed state and the reports from
 * now on (the previous peer is dropped). */
void vtpm_state_accept(int lfd);
