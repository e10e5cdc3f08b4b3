/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-vtpm's side of the vTPM state (vtpm_state.c; docs/VTPM.md "The state"): swtpm keeps its
 * NVRAM in a memfd of ours; after each response we commit what it wrote to the state file and
 * report its SHA-256 to trustmed, which anchors only digests learnt this way. */
#pragma once

#include <stdbool.h>

/* The state file in the state directory (swtpm's linear NVRAM store, its blobs encrypted). */
#define VTPM_STATE_FILE "tpm2.state"
/* In the vTPM's private run directory: a restarted trustmed connects here to learn the digest. */
#define VTPM_STATE_SOCKET "state.sock"

/* Take the state: memfd (trustmed's verified copy of the file; -1: read the state file as found,
 * for a standalone run), report_fd (to trustmed; -1: none). The memfd swtpm is given is *ret_fd. */
int vtpm_state_open(const char *state_dir, int memfd, int report_fd, int *ret_fd);

/* After each response of swtpm: when the memfd changed, write it to the state file (through a
 * temporary file and a rename) and report "P <hex>" before the rename, "C <hex>" after it. */
int vtpm_state_check(void);

/* At the end. swtpm_clean: it exited by itself after SIGTERM, so the memfd is whole; otherwise
 * (killed, possibly in the middle of a write) the last committed state is what stays. The state
 * file is rewritten from what we committed (and synced), whatever root put there meanwhile. */
int vtpm_state_finish(bool swtpm_clean);

/* At an end before the vTPM served anyone (its start failed, or trustmed went away during it):
 * no client saw what its own start wrote (Startup, an EK certificate replaced), so the state
 * trustmed gave it is written back, and the file stays the anchored state whoever dies when; the
 * next start does that work again. A new vTPM (given no state) keeps what it made, as finish. */
int vtpm_state_abandon(bool swtpm_clean);

/* A listening socket for a restarted trustmed (in the current directory's dir/VTPM_STATE_SOCKET). */
int vtpm_state_listen(const char *dir);
/* A connection to it: root's only; it gets "C <hex>" of the committed state and the reports from
 * now on (the previous peer is dropped). */
void vtpm_state_accept(int lfd);
