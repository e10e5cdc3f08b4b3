/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The answer to an attestation request: a quote over the requested PCRs with the verifier's
 * nonce, and everything needed to check it (docs/ATTESTATION.md "Remote attestation"). The TCP
 * endpoint and the link to trustmed give the same answer. */
#pragma once

#include "attest.pb-c.h"
#include "tpmd.h"

#define ATTEST_NONCE_LEN 32

struct quote_answer {
    Trustme__Attest__Quote quote; /* points into the fields below */
    uint8_t *attest, *sig, *ak_pub;
    uint8_t values[TPM_PCR_COUNT][32];
    Trustme__Attest__PcrValue pcr[TPM_PCR_COUNT];
    Trustme__Attest__PcrValue *pcr_ptr[TPM_PCR_COUNT];
    Trustme__Attest__Event *ev;
    Trustme__Attest__Event **ev_ptr;
};

/* Check rq (nonce of 32 bytes, PCRs 0..23 without duplicates; empty: boot and runtime PCR),
 * read the PCRs and quote them. */
int quote_answer(struct tpmd *d, const Trustme__Attest__AttestRequest *rq, struct quote_answer *qa, tm_err *err);
void quote_answer_free(struct quote_answer *qa);

/* The log as protobuf events pointing into log (valid while log is unchanged); arrays malloc'ed. */
int events_fill(const struct mlog *log, Trustme__Attest__Event **ret_ev, Trustme__Attest__Event ***ret_ptr,
                tm_err *err);
