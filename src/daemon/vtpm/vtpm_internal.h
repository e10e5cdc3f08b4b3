/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the files of trustmed's vtpm/ share (docs/VTPM.md): the per-container record and the steps
 * each file offers the others. vtpm.c is the start, stop and the public calls; vtpm_process.c
 * trustme-vtpm's process (launch, delivery, exit); vtpm_anchor.c the state file and its TPM anchor;
 * vtpm_ek.c the endorsement keys' records and certificates; vtpm_recover.c the re-adoption by a
 * restarted trustmed. Not for other folders: they use vtpm.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "container.h"
#include "event.h"
#include "vtpm.h"

#define VTPM_MAX_EVENTS TPMD_MEASURE_MAX
#define VTPM_KEY_LEN 32
#define VTPM_MAX_RESTARTS 5
/* The state file as trustme-vtpm writes it (src/vtpm/vtpm_state.h, vtpm_tpm.h: the same name and
 * magic): libtpms's permanent state, encrypted. */
#define STATE_FILE "tpm2.state"
#define STATE_TMP_FILE STATE_FILE ".tmp" /* a commit's synced new state, before its rename */
#define STATE_MAGIC "TMVTPM1\n"
#define STATE_MAGIC_LEN 8
#define STATE_SOCKET "state.sock"
#define STATE_MAX (4u << 20)
#define EK_RECORD "vtpm-ek"
#define EK_PUBLIC_MAX 400 /* an RSA 2048 EK's TPMT_PUBLIC is 314 bytes */
#define READY_MAX 2048
/* trustme-vtpm has this long after SIGTERM (it saves and exits in milliseconds), then SIGKILL: a
 * vTPM that ignores SIGTERM (hung in a command, or taken over through the guest's TPM commands)
 * must not keep the container from stopping and starting again, nor trustmed from exiting. */
#define STOP_TIMEOUT_MS (15 * 1000)
#define EK_CERT_RECORD "vtpm-ek-cert-" /* + kind + ".der" */

struct vtpm {
    struct container *c;
    struct secret *key; /* the state key, while the vTPM may have to be started (again) */
    pid_t pid;
    int pidfd, ready_fd;
    tm_source *pid_src, *ready_src;
    tm_source *stop_timer; /* SIGKILL after STOP_TIMEOUT_MS */
    vtpm_done_fn done; /* a start waiting for the vTPM */
    bool stopping; /* the container stopped: do not start it again */
    unsigned anchoring; /* anchor updates under way */
    bool start_queued; /* a start came while the last run's vTPM was still stopping */
    bool manufacture; /* a new vTPM: trustme-vtpm makes its EKs */
    /* trustme-vtpm runs while the state is checked (launch), and gets its key, state and events
     * only when the check passed (deliver): until then key_fd and state_memfd are trustmed's ends. */
    int key_fd, state_memfd;
    bool delivered; /* it has its key: what it reports is the state it started on */
    bool eks_measuring; /* its EKs are being measured into the physical TPM, alongside its start */
    bool ready_seen; /* it said "R": the start finishes once its EKs are measured too */
    bool adopted; /* re-adopted after a trustmed restart: not our child, and no key to restart it */
    unsigned restarts;
    /* The standby (docs/VTPM.md "The standby"): trustme-vtpm launched for the next start while the
     * container is stopped, with nothing but its empty pipes, waiting for a key; the next start
     * takes it (vtpm_standby_take) instead of launching one. */
    bool standby; /* pid is a standby no start has taken yet */
    bool waiting; /* it said "W": exec'd and linked, blocked on its key */
    bool want_standby; /* launch one once the container is at rest (stopped, its state anchored) */
    /* What it was launched for: a start takes it only for the same vTPM uid and directories. */
    uid_t launched_uid;
    dev_t launched_dev;
    ino_t launched_state_ino, launched_run_ino;
    /* The state as trustme-vtpm learnt it from its TPM (docs/VTPM.md "The state"): the last
     * committed digest ("C", or the anchored one at the start), and one announced before its
     * rename ("P") that is not committed yet. Only these are ever anchored or accepted on disk. */
    int report_fd;
    tm_source *report_src;
    bool have_known, have_pending, have_anchored;
    uint8_t known[32], pending[32];
    uint8_t anchored[32]; /* the digest this run anchored last (its end then writes no NV again) */
    uint8_t asked[32]; /* "A": the digest being anchored for trustme-vtpm, which waits for it */
    bool anchor_first_c; /* re-adopted: anchor the state it says it committed, once */
    int64_t budget_audit_ms; /* the last "budget spent" audit record (one a minute) */
    char report_buf[2 * 68];
    size_t report_len;
    /* EK certificates (docs/VTPM.md "EK certificates"): fd 4 of trustme-vtpm stays open (ev_fd)
     * while tpmd issues them; then they go to it with the events. Kept until it reports them
     * stored in its NV ("NV kind"), then recorded. */
    int ev_fd;
    unsigned certs_pending;
    struct {
        char kind[4];
        uint8_t *der;
        size_t len;
    } cert[VTPM_EKS];
    size_t ncert;
    char guestos[TM_EVENT_NAME_MAX + 1]; /* "NAME-VERSION" of this start's GuestOS, or "" */
    size_t nev;
    size_t log_cap; /* bytes allocated for log */
    bool owner_logged; /* the owner event is in log and digest (once per measurement) */
    unsigned pcr[VTPM_MAX_EVENTS];
    uint8_t digest[VTPM_MAX_EVENTS][32];
    char *log; /* the event log the guest reads at /run/tpm/event.log */
    size_t log_len;
};

/* vtpm.c */
int vtpm_uid(const struct container *c, uid_t *ret, tm_err *err);
void vtpm_state_dir(const struct container *c, char *out, size_t size); /* <data>/containers/<uuid>/vtpm */
void vtpm_run_dir(const struct container *c, char *out, size_t size); /* <run>/vtpm/<uuid> */
struct vtpm *vtpm_get(struct container *c); /* made on first use; NULL: no memory */
void vtpm_finish_start(struct vtpm *v, const tm_err *err);
void vtpm_check_and_spawn(struct vtpm *v);

/* vtpm_process.c */
int vtpm_launch(struct vtpm *v, tm_err *err);
int vtpm_deliver(struct vtpm *v, tm_err *err);
void vtpm_withdraw(struct vtpm *v);
void vtpm_on_exit(tm_source *src, uint32_t events, void *userdata);
void vtpm_stop(struct vtpm *v);
int vtpm_make_dirs(const struct container *c, uid_t uid, tm_err *err);
/* pid's start time (field 22 of /proc/PID/stat): names the very process, unlike its pid or its
 * command line (which the process itself may rewrite). */
int vtpm_start_time(pid_t pid, unsigned long long *ret);
void vtpm_pidfile_path(const struct container *c, char *out, size_t size);

/* vtpm_anchor.c */
void vtpm_anchor_name(const struct container *c, char *out, size_t size);
int vtpm_read_state(const struct container *c, const char *name, uint8_t **ret, size_t *ret_len);
bool vtpm_state_digest(const struct container *c, uint8_t out[32]);
const char *vtpm_state_refused(const struct vtpm *v, bool have, const uint8_t digest[32]);
int vtpm_take_anchored_tmp(struct vtpm *v, const char *sdir, uint8_t **state, size_t *state_len);
void vtpm_close_report(struct vtpm *v);
void vtpm_on_report(tm_source *src, uint32_t events, void *userdata);
void vtpm_anchor_step(struct vtpm *v, const uint8_t digest[32], bool answer);
void vtpm_anchor_state(struct vtpm *v);

/* vtpm_standby.c */
void vtpm_standby_want(struct vtpm *v);
void vtpm_standby_take(struct vtpm *v);
void vtpm_standby_drop(struct vtpm *v);
void vtpm_standby_settled(struct vtpm *v);

/* vtpm_ek.c */
void vtpm_ek_record_path(const struct container *c, char *out, size_t size);
void vtpm_remove_ek_records(const struct container *c);
int vtpm_record_eks(struct vtpm *v, const char *msg, size_t len, tm_err *err);
bool vtpm_owner_event(const struct container *c, struct tm_event_item *item, char name[TM_EVENT_NAME_MAX + 1]);
int vtpm_measure_eks(struct vtpm *v, tm_err *err);
void vtpm_request_certs(struct vtpm *v);
void vtpm_record_certs(struct vtpm *v, const char *msg, size_t len);
void vtpm_certs_clear(struct vtpm *v);
