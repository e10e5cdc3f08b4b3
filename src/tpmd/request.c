/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Decoding and the TPM-free checks of a request from trustmed (request.h). */
#include "request.h"

#include <errno.h>

#include "anchor.h"
#include "csr.h"
#include "measurement.h"
#include "proto.h"
#include "seal.h"

typedef Trustme__Tpmd__Request Request;

/* All items are checked before the first is extended: a bad request measures nothing. */
static int check_measure(const Trustme__Tpmd__Measure *rq, tm_err *err)
{
    int r;
    if (rq->n_expect > ANCHOR_EXPECT_MAX)
        return tm_err_set(err, E2BIG, "%zu anchor expectations in one measurement (at most %d)", rq->n_expect,
                          ANCHOR_EXPECT_MAX);
    for (size_t i = 0; i < rq->n_expect; i++) {
        const Trustme__Tpmd__AnchorEntry *e = rq->expect[i];
        if ((r = anchor_check_name(e->name, err)) < 0)
            return tm_err_prefix(err, "anchor expectation %zu", i);
        if (!(e->has_remove && e->remove) && (!e->has_value || e->value.len > ANCHOR_VALUE_MAX))
            return tm_err_set(err, EINVAL,
                              "anchor expectation \"%s\" has neither a value (at most %d bytes) nor remove", e->name,
                              ANCHOR_VALUE_MAX);
    }
    for (size_t i = 0; i < rq->n_items; i++) {
        const Trustme__Attest__Event *it = rq->items[i];
        if (!it->has_pcr)
            return tm_err_set(err, EINVAL, "item %zu: PCR missing", i);
        if (tm_event_check(it->pcr, it->type, it->name, it->has_sha256 ? it->sha256.len : 0, err) < 0)
            return tm_err_prefix(err, "item %zu", i);
    }
    return 0;
}

static int check_reseal(const Trustme__Tpmd__Reseal *rq, tm_err *err)
{
    if (!rq->has_recovery_key || rq->recovery_key.len != RECOVERY_KEY_LEN)
        return tm_err_set(err, EINVAL, "the recovery key must have %d bytes", RECOVERY_KEY_LEN);
    return 0;
}

static int check_anchor(const Trustme__Tpmd__AnchorRequest *rq, tm_err *err)
{
    int r;
    if (rq->n_set > ANCHOR_ENTRIES_MAX || rq->n_get > ANCHOR_ENTRIES_MAX)
        return tm_err_set(err, E2BIG, "too many anchor entries in one request");
    for (size_t i = 0; i < rq->n_get; i++)
        if ((r = anchor_check_name(rq->get[i], err)) < 0)
            return r;
    for (size_t i = 0; i < rq->n_set; i++) {
        const Trustme__Tpmd__AnchorEntry *e = rq->set[i];
        if (!(e->has_remove && e->remove) && !e->has_value)
            return tm_err_set(err, EINVAL,
                              "anchor entry \"%s\" has neither a value nor "
                              "remove",
                              e->name ? e->name : "");
    }
    return 0;
}

static int check_cert_install(const Trustme__Tpmd__CertInstall *rq, tm_err *err)
{
    if (!rq->has_chain_pem)
        return tm_err_set(err, EINVAL, "certificate chain missing");
    if (rq->chain_pem.len == 0 || rq->chain_pem.len > CERT_CHAIN_PEM_MAX)
        return tm_err_set(err, EINVAL, "certificate chain of %zu bytes (1..%d allowed)", rq->chain_pem.len,
                          CERT_CHAIN_PEM_MAX);
    return 0;
}

static int check_container_cert(const Trustme__Tpmd__ContainerCert *rq, tm_err *err)
{
    if (!rq->has_spki_der || rq->spki_der.len == 0 || rq->spki_der.len > 512)
        return tm_err_set(err, EINVAL, "a container certificate needs a public key (at most 512 bytes)");
    if (!rq->common_name)
        return tm_err_set(err, EINVAL, "a container certificate needs a common name");
    if (rq->has_identity && rq->identity.len > 1024)
        return tm_err_set(err, EINVAL, "the container's identity has more than 1024 bytes");
    return 0;
}

static int check_vtpm_ek_cert(const Trustme__Tpmd__VtpmEkCert *rq, tm_err *err)
{
    if (!rq->has_ek_public || rq->ek_public.len == 0 || rq->ek_public.len > 512)
        return tm_err_set(err, EINVAL, "a vTPM EK certificate needs the EK's public area (at most 512 bytes)");
    if (!rq->uuid)
        return tm_err_set(err, EINVAL, "a vTPM EK certificate needs the container's UUID");
    return 0;
}

int tpmd_request_decode(struct tm_packet *pkt, Request **ret, tm_err *err)
{
    Request *rq = (Request *)tm_packet_unpack(&trustme__tpmd__request__descriptor, pkt);
    *ret = rq;
    if (!rq)
        return tm_err_set(err, EBADMSG, "malformed request");
    if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION)
        return tm_err_set(err, EPROTO, "unsupported protocol version");
    switch (rq->body_case) {
    case TRUSTME__TPMD__REQUEST__BODY_MEASURE: return check_measure(rq->measure, err);
    case TRUSTME__TPMD__REQUEST__BODY_RESEAL: return check_reseal(rq->reseal, err);
    case TRUSTME__TPMD__REQUEST__BODY_ANCHOR: return check_anchor(rq->anchor, err);
    case TRUSTME__TPMD__REQUEST__BODY_CERT_INSTALL: return check_cert_install(rq->cert_install, err);
    case TRUSTME__TPMD__REQUEST__BODY_CONTAINER_CERT: return check_container_cert(rq->container_cert, err);
    case TRUSTME__TPMD__REQUEST__BODY_TLS_SIGN:
        return rq->tls_sign->has_digest && rq->tls_sign->digest.len == 32
                   ? 0
                   : tm_err_set(err, EINVAL, "a TLS signature needs a SHA-256 digest (32 bytes)");
    case TRUSTME__TPMD__REQUEST__BODY_VTPM_EK_CERT: return check_vtpm_ek_cert(rq->vtpm_ek_cert, err);
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_KEY:
        return rq->migrate_key->has_nonce && rq->migrate_key->nonce.len == 32
                   ? 0
                   : tm_err_set(err, EINVAL, "a migration offer needs a 32-byte nonce");
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_DECRYPT:
        return rq->migrate_decrypt->offer_id && rq->migrate_decrypt->has_ciphertext &&
                       rq->migrate_decrypt->ciphertext.len <= 512
                   ? 0
                   : tm_err_set(err, EINVAL, "a migration decryption needs an offer id and at most 512 bytes");
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_SIGN:
        return rq->migrate_sign->has_data && rq->migrate_sign->data.len > 0 && rq->migrate_sign->data.len <= 4096
                   ? 0
                   : tm_err_set(err, EINVAL, "a migration text of 1..4096 bytes");
    case TRUSTME__TPMD__REQUEST__BODY_GET_LOG:
    case TRUSTME__TPMD__REQUEST__BODY_STORAGE_SECRET:
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_CSR:
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_INFO:
    case TRUSTME__TPMD__REQUEST__BODY_ATTEST: return 0;
    default: return tm_err_set(err, EOPNOTSUPP, "unknown request (body %d)", (int)rq->body_case);
    }
}
