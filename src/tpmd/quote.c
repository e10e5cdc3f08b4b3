/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "quote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "crypto.h"
#include "log.h"

int events_fill(const struct mlog *log, Trustme__Attest__Event **ret_ev, Trustme__Attest__Event ***ret_ptr, tm_err *err)
{
    size_t n = log->n;
    _cleanup_free_ Trustme__Attest__Event *ev = calloc(n ? n : 1, sizeof(*ev));
    _cleanup_free_ Trustme__Attest__Event **ptr = calloc(n ? n : 1, sizeof(*ptr));
    if (!ev || !ptr)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct mlog_event *e = &log->ev[i];
        trustme__attest__event__init(&ev[i]);
        ev[i].has_seq = ev[i].has_pcr = ev[i].has_sha256 = true;
        ev[i].seq = e->seq;
        ev[i].pcr = e->pcr;
        ev[i].type = (char *)e->type;
        ev[i].name = (char *)e->name;
        ev[i].sha256.data = (uint8_t *)e->sha256;
        ev[i].sha256.len = 32;
        ptr[i] = &ev[i];
    }
    *ret_ev = steal_ptr(ev);
    *ret_ptr = steal_ptr(ptr);
    return 0;
}

static int selection(const struct tpmd *d, const Trustme__Attest__AttestRequest *rq, uint32_t *ret_mask, tm_err *err)
{
    if (rq->n_pcrs == 0) {
        *ret_mask = tpmd_base_mask(d);
        return 0;
    }
    uint32_t mask = 0;
    for (size_t i = 0; i < rq->n_pcrs; i++) {
        if (rq->pcrs[i] >= TPM_PCR_COUNT)
            return tm_err_set(err, EINVAL, "PCR %u does not exist (0..%d)", rq->pcrs[i], TPM_PCR_COUNT - 1);
        if (mask & (1u << rq->pcrs[i]))
            return tm_err_set(err, EINVAL, "PCR %u is selected twice", rq->pcrs[i]);
        mask |= 1u << rq->pcrs[i];
    }
    *ret_mask = mask;
    return 0;
}

/* SHA-256 over the values of the PCRs in mask, ascending: what TPM2_Quote puts in pcrDigest. */
static void composite(uint32_t mask, const uint8_t values[TPM_PCR_COUNT][32], uint8_t out[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    for (unsigned i = 0; i < TPM_PCR_COUNT; i++)
        if (mask & (1u << i))
            tm_sha256_update(&c, values[i], 32);
    tm_sha256_final(&c, out);
}

int quote_answer(struct tpmd *d, const Trustme__Attest__AttestRequest *rq, struct quote_answer *qa, tm_err *err)
{
    *qa = (struct quote_answer){0};
    trustme__attest__quote__init(&qa->quote);
    if (!rq->has_nonce || rq->nonce.len != ATTEST_NONCE_LEN)
        return tm_err_set(err, EINVAL, "the nonce must have %d bytes, not %zu", ATTEST_NONCE_LEN,
                          rq->has_nonce ? rq->nonce.len : 0);
    if (d->quotes_held)
        return tm_err_set(err, EAGAIN,
                          "the TPM was reset: trustmed is measuring what runs "
                          "again; try again in a moment");
    uint32_t mask = 0;
    int r = selection(d, rq, &mask, err);
    if (r < 0)
        return r;
    /* Reading the PCRs and quoting them are two TPM commands: the values sent must be those the
     * quote covers. Nothing else extends while tpmd (single-threaded) quotes, unless another
     * process shares the TPM: then the digests differ and the read is repeated once. */
    for (int attempt = 0;; attempt++) {
        uint8_t digest[32], want[32];
        size_t attest_len, sig_len;
        if ((r = tpm_pcr_read(&d->tpm, mask, qa->values, err)) < 0 ||
            (r = tpm_quote(&d->tpm, mask, rq->nonce.data, rq->nonce.len, &qa->attest, &attest_len, &qa->sig, &sig_len,
                           digest, err)) < 0)
            goto fail;
        composite(mask, qa->values, want);
        if (memcmp(digest, want, 32) == 0) {
            qa->quote.attest = (ProtobufCBinaryData){.len = attest_len, .data = qa->attest};
            qa->quote.signature = (ProtobufCBinaryData){.len = sig_len, .data = qa->sig};
            break;
        }
        free(qa->attest);
        free(qa->sig);
        qa->attest = qa->sig = NULL;
        if (attempt == 1) {
            r = tm_err_set(err, EAGAIN,
                           "the PCRs changed while they were quoted (does another "
                           "process extend them?): try again");
            goto fail;
        }
        log_warn("PCRs changed between reading and quoting them: quoting again");
    }
    Trustme__Attest__Quote *q = &qa->quote;
    q->has_attest = q->has_signature = q->has_ak_public = true;
    size_t k = 0;
    for (unsigned i = 0; i < TPM_PCR_COUNT; i++) {
        if (!(mask & (1u << i)))
            continue;
        trustme__attest__pcr_value__init(&qa->pcr[k]);
        qa->pcr[k].has_index = qa->pcr[k].has_sha256 = true;
        qa->pcr[k].index = i;
        qa->pcr[k].sha256 = (ProtobufCBinaryData){.len = 32, .data = qa->values[i]};
        qa->pcr_ptr[k] = &qa->pcr[k];
        k++;
    }
    q->n_pcrs = k;
    q->pcrs = qa->pcr_ptr;
    if ((r = events_fill(&d->log, &qa->ev, &qa->ev_ptr, err)) < 0)
        goto fail;
    q->n_events = d->log.n;
    q->events = qa->ev_ptr;
    size_t ak_len;
    if ((r = tpm_ak_public_marshal(&d->tpm, &qa->ak_pub, &ak_len, err)) < 0)
        goto fail;
    q->ak_public = (ProtobufCBinaryData){.len = ak_len, .data = qa->ak_pub};
    q->has_ak_parent_name = true;
    q->ak_parent_name = (ProtobufCBinaryData){.len = d->tpm.srk_name.size, .data = d->tpm.srk_name.name};
    /* Always present, empty until the device is provisioned. */
    q->has_cert_chain_pem = true;
    q->cert_chain_pem = (ProtobufCBinaryData){.len = d->chain_len, .data = (uint8_t *)d->chain_pem};
    return 0;
fail:
    quote_answer_free(qa);
    return r;
}

void quote_answer_free(struct quote_answer *qa)
{
    free(qa->attest);
    free(qa->sig);
    free(qa->ak_pub);
    free(qa->ev);
    free(qa->ev_ptr);
    *qa = (struct quote_answer){0};
}
