/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The embedded TPM: an swtpm that tpmd starts (or finds still running) when no TCTI is
 * configured (docs/ATTESTATION.md "The TPM").
 *
 * The swtpm is the device's TPM for as long as it runs, so it is its own process, in its own
 * session: it outlives a crash or kill of tpmd, and the tpmd that trustmed starts next finds it
 * by its pid file and reuses it, PCRs and all. Only a clean stop of tpmd turns it off. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

/* swtpm logs a line for every client connection, and the TCTI connects once per command: the
 * log grows by ~25 bytes per TPM command (~18 MB a minute under a quote flood). It is written
 * only on request (tpmd --swtpm-log, for debugging), and emptied beyond SWTPM_LOG_MAX. */
#define SWTPM_LOG_MAX (1024 * 1024)
#define SWTPM_LOG_CHECK_MS (60 * 1000)

struct swtpm {
    pid_t pid;
    int pidfd; /* -1 when none */
    bool reused; /* it was running before this tpmd */
    bool log; /* it logs to log_path (started with --swtpm-log) */
    char sock[PATH_MAX]; /* the command socket; the control socket is <sock>.ctrl */
    char pid_path[PATH_MAX];
    char tcti[PATH_MAX + 16]; /* "swtpm:path=<sock>" */
    char log_path[PATH_MAX];
};

/* Reuse the swtpm of run_dir if it is alive and answers, else start one with its state in
 * data_dir/swtpm. binary: a path, or a name looked up on PATH. log: a new swtpm logs to
 * run_dir/swtpm.log (else nowhere). */
int swtpm_start(struct swtpm *s, const char *binary, const char *data_dir, const char *run_dir, bool log, tm_err *err);
/* Terminate it (SIGTERM, then SIGKILL after 3 s) and wait until it is gone. NULL-safe. */
void swtpm_stop(struct swtpm *s);
/* Forget it without stopping it (the process stays for the next tpmd). */
void swtpm_release(struct swtpm *s);
/* Empty the swtpm's log once it exceeds SWTPM_LOG_MAX (swtpm appends with O_APPEND, so it just
 * goes on writing at the new end); called every SWTPM_LOG_CHECK_MS. */
void swtpm_trim_log(const struct swtpm *s);
