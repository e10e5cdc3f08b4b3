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
/* In the vTPM's private run directory: a restarted trustmed connects here to learn the digest. */
#define VTPM_STATE_SOCKET "state.sock"

/* Take the state: memfd (trustmed's verified copy of the file; -1: read the state file as found,
 * for a standalone run; closed here), report_fd (to trustmed; -1: none). *ret, *ret_len: the
 * state (length 0: a new vTPM). */
int vtpm_state_open(const char *state_dir, int memfd, int report_fd, const uint8_t **ret, size_t *ret_len);

/* What the TPM stored (the whole state file's new bytes), committed at the next check. */
int vtpm_state_put(const uint8_t *state, size_t len);

/* After each response: when the TPM stored a new state, write it to the state file (through a
 * temporary file and a rename) and report "P <hex>" before the rename, "C <hex>" after it. */
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
