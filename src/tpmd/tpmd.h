/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The state of one trustme-tpmd, shared by its request handlers (server.c on the link to
 * trustmed, attest_server.c on the TCP endpoint). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anchor.h"
#include "event.h"
#include "mlog.h"
#include "swtpm.h"
#include "tpm.h"

struct attest_server;

struct tpmd {
    const char *data_dir;
    const char *run_dir;
    const char *vtpm_dir; /* the containers' vTPMs (<trustmed run>/vtpm), NULL: no relay */
    const char *tcti; /* what tpmd talks to (the swtpm's TCTI when embedded) */
    const char *recovery_out; /* where the recovery key goes, out of the data dir */
    bool embedded;
    uint32_t boot_pcr;
    uint32_t runtime_pcr;
    struct swtpm swtpm;
    struct tpm tpm;
    struct mlog log;
    char *chain_pem; /* <data>/ak-chain.pem, NULL until provisioned */
    size_t chain_len;
    char *ek_chain_pem; /* <data>/ek-chain.pem: the EK's certificate chain, or NULL */
    size_t ek_chain_len;
    char *issuer_chain_pem; /* <data>/vtpm-issuer-chain.pem: the vTPM-issuing key's, or NULL */
    size_t issuer_chain_len;
    char attest_address[80]; /* host:port actually bound */
    tm_loop *loop;
    struct attest_server *attest;
    int link_fd; /* to trustmed */
    tm_source *link_src;
    int signal_fd;
    tm_source *signal_src;
    tm_source *spare_src; /* soon after an offer: the next offer's key made (migrate_spare) */
    tm_source *idle_src; /* TM_IDLE_RELEASE_MS after the last request: memory given back */
    /* trustmed stops (SIGTERM): the embedded TPM is powered off with it. Without it (only the
     * link closed: trustmed died) tpmd exits and leaves the swtpm, its PCRs and the log to the
     * tpmd of the next trustmed, as a hardware TPM outlives a crashed daemon. */
    bool stop_clean;
    /* The TPM was reset under running containers (the log restarted): no quote until trustmed
     * has measured them again and says so (Measure.complete), else a verifier polling in
     * between sees the boot events alone and says "trusted". */
    bool quotes_held;
    struct {
        uint32_t failures; /* cleared at start */
        bool lockout;
        char error[256]; /* clearing failed: why */
    } da_reset;
    bool tpm_lost; /* the TPM connection broke: tpmd is exiting (tpmd_check_tpm) */
    /* The anchor table (anchor.h), loaded at start; while it fails to load, every anchor
     * request tries again and fails closed with the reason. */
    struct anchor_table anchor;
};

/* After a request: if the connection to the TPM broke, quit the loop with an error. */
void tpmd_check_tpm(struct tpmd *d);

/* The PCRs that are always reported and checked: boot and runtime PCR. */
static inline uint32_t tpmd_base_mask(const struct tpmd *d)
{
    return 1u << d->boot_pcr | 1u << d->runtime_pcr;
}
