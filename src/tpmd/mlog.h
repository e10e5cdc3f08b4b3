/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The measurement log (docs/ATTESTATION.md "PCRs and the event log"): <run>/measurements.log,
 * one JSON object per line, {"seq":N,"pcr":N,"type":"...","name":"...","sha256":"<hex>"}.
 *
 * The log describes what the PCRs hold, so it lives as long as they do: in the run dir, replayed
 * against the PCRs at every start of tpmd. The TPM calls are the caller's: this file reads and
 * writes the log and compares it with PCR values it is given, which keeps it testable without a
 * TPM. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "measurement.h"

#define MLOG_PCRS 24
#define MLOG_MAX_EVENTS 10000 /* keeps the whole log within an attestation response (4 MiB) */
#define MLOG_LINE_MAX 1024

struct mlog_event {
    uint64_t seq;
    uint32_t pcr;
    char type[TM_EVENT_TYPE_MAX + 1];
    char name[TM_EVENT_NAME_MAX + 1];
    uint8_t sha256[32];
};

struct mlog {
    char path[PATH_MAX];
    int fd; /* O_APPEND */
    struct mlog_event *ev;
    size_t n, cap;
    off_t size; /* bytes in the file */
    size_t last_len; /* length of the last line appended by this process */
    /* Non-empty: something found at load (a corrupt line, a replay mismatch) that makes the log
     * untrustworthy for as long as this tpmd runs; reported with every GetLog. */
    char problem[512];
    /* At load the PCRs were fresh and a log of an earlier TPM boot was there: it was moved aside
     * (a TPM reset: trustmed audits it and measures its running containers again). */
    bool restarted;
    size_t old_events;
};

/* ---- pure parts ---------------------------------------------------------------------------- */

/* One line (without its newline) into ev; seq must be expect_seq. 0 or -EINVAL naming the field. */
int mlog_parse_line(const char *line, size_t len, uint64_t expect_seq, struct mlog_event *ev, tm_err *err);
/* The line for ev, with its newline, into buf; returns its length. */
size_t mlog_format_line(const struct mlog_event *ev, char buf[MLOG_LINE_MAX]);
/* The value PCR pcr has after extending zero with the events of the log that name it. */
void mlog_replay(const struct mlog_event *ev, size_t n, uint32_t pcr, uint8_t out[32]);
/* Bit i set: PCR i is named by an event. */
uint32_t mlog_pcr_mask(const struct mlog_event *ev, size_t n);
/* The lowest PCR in mask whose replayed value is not values[pcr]; -1 if they all match. */
int mlog_first_mismatch(const struct mlog_event *ev, size_t n, uint32_t mask, const uint8_t values[MLOG_PCRS][32]);

enum mlog_verdict {
    MLOG_CONSISTENT, /* the replay gives the PCR values */
    MLOG_DROP_LAST, /* it does without the last event: a crash came between log and extend */
    MLOG_FRESH, /* the PCRs are all zero: the TPM restarted, the log is history */
    MLOG_INCONSISTENT, /* none of these: keep the log and say so */
};
/* Compare a log with the current PCR values; mask: PCRs that must match besides those the log
 * names (the boot and runtime PCR). *ret_pcr names the first PCR that differs. */
enum mlog_verdict mlog_reconcile(const struct mlog_event *ev, size_t n, uint32_t mask,
                                 const uint8_t values[MLOG_PCRS][32], int *ret_pcr);

/* ---- the file ----------------------------------------------------------------------------------- */

/* Load run_dir/measurements.log (or start it), reconcile it with values (every PCR's current
 * value) and act on the verdict: drop the unextended last event, archive a stale log as
 * measurements.log.old, or keep an inconsistent one with log->problem set. A corrupt line is
 * never fatal: what precedes it is kept, the file is saved as measurements.log.corrupt and the log
 * is inconsistent. Fails only when the file cannot be read or written. */
int mlog_open(struct mlog *log, const char *run_dir, uint32_t mask, const uint8_t values[MLOG_PCRS][32], tm_err *err);
void mlog_close(struct mlog *log);

bool mlog_contains(const struct mlog *log, uint32_t pcr, const char *type, const char *name, const uint8_t sha256[32]);
/* Append an event (already checked with tm_event_check) to the file and the memory log. */
int mlog_append(struct mlog *log, uint32_t pcr, const char *type, const char *name, const uint8_t sha256[32],
                tm_err *err);
/* Take back the event just appended (its PCR extend failed). */
int mlog_unappend(struct mlog *log, tm_err *err);
/* 1 if the log replays to values (and had no problem at load), else 0 with msg saying why. */
int mlog_check(const struct mlog *log, uint32_t mask, const uint8_t values[MLOG_PCRS][32], char *msg, size_t msg_size);
