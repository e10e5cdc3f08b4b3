/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The request loop on the link to trustmed.
 *
 * trustmed is tpmd's only peer on this link and may send requests back to back; they are
 * answered one at a time, in order. Every request is one SOCK_SEQPACKET packet (packet.h), so
 * bad input costs one Error answer and the next packet is read as usual; only trustmed closing
 * its end stops tpmd. */
#include "server.h"

#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "anchor.h"
#include "cleanup.h"
#include "csr.h"
#include "enroll.h"
#include "fileio.h"
#include "idle_memory.h"
#include "log.h"
#include "migrate.h"
#include "migrate_spend.h"
#include "packet.h"
#include "proto.h"
#include "quote.h"
#include "request.h"
#include "seal.h"
#include "tpm_util.h"
#include "secmem.h"
#include "tpmd.pb-c.h"
#include "vtpm_issuer.h"

/* After an offer's answer, before its spare key is made: the answer leaves first. */
#define SPARE_DELAY_MS 20

typedef Trustme__Tpmd__Request Request;
typedef Trustme__Tpmd__Response Response;

static int send_response(struct tpmd *d, uint64_t id, Response *resp, tm_err *err)
{
    resp->has_version = true;
    resp->version = TM_PROTOCOL_VERSION;
    resp->has_id = true;
    resp->id = id;
    /* A Secret answer holds the storage secret: packets up to 16 KiB are packed in locked
     * memory and wiped (packet.h). */
    return tm_packet_send_msg(d->link_fd, &resp->base, TPMD_REPLY_MAX, err);
}

static int send_error(struct tpmd *d, uint64_t id, int code, const char *msg)
{
    Trustme__Tpmd__Error e = TRUSTME__TPMD__ERROR__INIT;
    e.has_code = true;
    e.code = code > 0 ? code : EIO;
    e.message = (char *)msg;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_ERROR;
    resp.error = &e;
    tm_err err;
    return send_response(d, id, &resp, &err);
}

/* ---- measurements --------------------------------------------------------------------------- */

/* A start's anchor checks (Measure.expect): the expected names that exist go into m, and
 * m->anchor_mismatch says whether one differs from what trustmed expects. Checked and measured
 * in one request, nothing can change the table in between (tpmd answers one request at a time). */
static int check_expect(struct tpmd *d, const Trustme__Tpmd__Measure *rq, Trustme__Tpmd__Measured *m,
                        Trustme__Tpmd__AnchorEntry *ev, Trustme__Tpmd__AnchorEntry **evp, tm_err *err)
{
    int r;
    if (!d->anchor.loaded && (r = anchor_load(d->tpm.esys, d->data_dir, &d->anchor, err)) < 0)
        return tm_err_prefix(err, "the TPM-anchored state is unavailable, so nothing that depends on it starts");
    m->has_anchor_mismatch = true;
    for (size_t i = 0; i < rq->n_expect; i++) {
        const Trustme__Tpmd__AnchorEntry *x = rq->expect[i];
        if (!anchor_holds(&d->anchor, x->name, x->value.data, x->value.len, x->has_remove && x->remove))
            m->anchor_mismatch = true;
        const struct anchor_entry *e = anchor_find(&d->anchor, x->name);
        if (!e)
            continue;
        trustme__tpmd__anchor_entry__init(&ev[m->n_anchors]);
        ev[m->n_anchors].name = e->name;
        ev[m->n_anchors].has_value = true;
        ev[m->n_anchors].value = (ProtobufCBinaryData){.len = e->len, .data = (uint8_t *)e->value};
        evp[m->n_anchors] = &ev[m->n_anchors];
        m->n_anchors++;
    }
    m->anchors = evp;
    return 0;
}

static int do_measure(struct tpmd *d, uint64_t id, const Trustme__Tpmd__Measure *rq, tm_err *err)
{
    int r;
    /* Every item passed tm_event_check (request.c): a bad request measures nothing. */
    Trustme__Tpmd__Measured m = TRUSTME__TPMD__MEASURED__INIT;
    m.has_added = m.has_skipped = true;
    /* At most ANCHOR_EXPECT_MAX (request.c). */
    Trustme__Tpmd__AnchorEntry ev[ANCHOR_EXPECT_MAX], *evp[ANCHOR_EXPECT_MAX];
    if (rq->n_expect > 0 && (r = check_expect(d, rq, &m, ev, evp, err)) < 0)
        return r;
    for (size_t i = 0; i < rq->n_items && !m.anchor_mismatch; i++) {
        const Trustme__Attest__Event *it = rq->items[i];
        if (mlog_contains(&d->log, it->pcr, it->type, it->name, it->sha256.data)) {
            m.skipped++;
            continue;
        }
        /* Logged first: a crash between the two leaves a log entry without its extend, which
         * the next start recognises and drops; the reverse would leave an extend nobody can
         * explain. */
        uint8_t digest[32];
        tm_event_digest(it->pcr, it->type, it->name, it->sha256.data, digest);
        if ((r = mlog_append(&d->log, it->pcr, it->type, it->name, it->sha256.data, err)) < 0)
            return tm_err_prefix(err, "item %zu (%u measured before it)", i, m.added);
        if ((r = tpm_pcr_extend(&d->tpm, it->pcr, digest, err)) < 0) {
            tm_err ignore;
            if (mlog_unappend(&d->log, &ignore) < 0)
                log_error("%s", ignore.msg);
            return tm_err_prefix(err, "item %zu (%u measured before it)", i, m.added);
        }
        m.added++;
        log_debug("measured %s %s into PCR %u", it->type, it->name, it->pcr);
    }
    if (rq->has_complete && rq->complete && d->quotes_held && !m.anchor_mismatch) {
        d->quotes_held = false;
        log_info("everything running is measured again after the TPM reset: answering quotes");
    }
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_MEASURED;
    resp.measured = &m;
    return send_response(d, id, &resp, err);
}

static int do_get_log(struct tpmd *d, uint64_t id, tm_err *err)
{
    uint32_t mask = mlog_pcr_mask(d->log.ev, d->log.n) | tpmd_base_mask(d);
    uint8_t values[TPM_PCR_COUNT][32];
    int r = tpm_pcr_read(&d->tpm, mask, values, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__Log l = TRUSTME__TPMD__LOG__INIT;
    _cleanup_free_ Trustme__Attest__Event *ev = NULL;
    _cleanup_free_ Trustme__Attest__Event **ev_ptr = NULL;
    if ((r = events_fill(&d->log, &ev, &ev_ptr, err)) < 0)
        return r;
    l.n_events = d->log.n;
    l.events = ev_ptr;
    Trustme__Attest__PcrValue pcr[TPM_PCR_COUNT], *pcr_ptr[TPM_PCR_COUNT];
    for (unsigned i = 0; i < TPM_PCR_COUNT; i++) {
        if (!(mask & (1u << i)))
            continue;
        trustme__attest__pcr_value__init(&pcr[l.n_pcrs]);
        pcr[l.n_pcrs].has_index = pcr[l.n_pcrs].has_sha256 = true;
        pcr[l.n_pcrs].index = i;
        pcr[l.n_pcrs].sha256 = (ProtobufCBinaryData){.len = 32, .data = values[i]};
        pcr_ptr[l.n_pcrs] = &pcr[l.n_pcrs];
        l.n_pcrs++;
    }
    l.pcrs = pcr_ptr;
    char why[1024] = "";
    l.has_consistent = true;
    l.consistent = mlog_check(&d->log, tpmd_base_mask(d), values, why, sizeof(why)) == 1;
    if (!l.consistent)
        l.inconsistency = why;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_LOG;
    resp.log = &l;
    return send_response(d, id, &resp, err);
}

/* ---- the storage secret ------------------------------------------------------------------------ */

static int send_secret(struct tpmd *d, uint64_t id, const struct secret *s, bool created, const char *recovery_path,
                       tm_err *err)
{
    Trustme__Tpmd__Secret m = TRUSTME__TPMD__SECRET__INIT;
    m.has_secret = m.has_created = true;
    m.secret = (ProtobufCBinaryData){.len = s->len, .data = s->data};
    m.created = created;
    if (created && recovery_path && *recovery_path)
        m.recovery_key_path = (char *)recovery_path;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_SECRET;
    resp.secret = &m;
    return send_response(d, id, &resp, err);
}

/* The boot PCR must hold exactly what the log says was measured into it, from its reset value,
 * and something must have been: a PCR that root pre-extended with the digests of the genuine
 * virtualization layer (and then a measurement that failed, or was never sent) satisfies the
 * seal's PCR policy but not this (docs/SECURITY.md "Self-measurement"). */
static int check_boot_pcr(struct tpmd *d, tm_err *err)
{
    uint8_t values[TPM_PCR_COUNT][32], want[32];
    int r = tpm_pcr_read(&d->tpm, 1u << d->boot_pcr, values, err);
    if (r < 0)
        return r;
    if (!(mlog_pcr_mask(d->log.ev, d->log.n) & (1u << d->boot_pcr)))
        return tm_err_set(err, EPERM,
                          "nothing has been measured into the boot PCR %u: the "
                          "device storage secret is withheld",
                          d->boot_pcr);
    mlog_replay(d->log.ev, d->log.n, d->boot_pcr, want);
    if (memcmp(want, values[d->boot_pcr], 32) != 0)
        return tm_err_set(err, EPERM,
                          "the boot PCR %u holds extensions the measurement log does "
                          "not explain (extended by another process, or before this TPM boot's "
                          "first measurement): the device storage secret is withheld",
                          d->boot_pcr);
    return 0;
}

int recovery_key_move(struct tpmd *d, char *ret_path, size_t size, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/recovery-key", d->data_dir);
    if (ret_path && size)
        ret_path[0] = '\0';
    if (!d->recovery_out || strcmp(path, d->recovery_out) == 0)
        return 0;
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    tm_err rerr = {0};
    int r = read_file(path, 4096, &text, &len, &rerr);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        *err = rerr;
        return r;
    }
    /* Only with the sealed secret beside it: a key without a blob is left from a crash during
     * the first seal and opens nothing (seal.c replaces it). */
    if (sealed_secret_exists(d->data_dir)) {
        r = write_file_atomic(d->recovery_out, text, len, 0400, err);
        explicit_bzero(text, len);
        if (r < 0)
            return tm_err_prefix(err, "cannot move the recovery key out of the data dir");
    }
    explicit_bzero(text, len);
    /* Overwritten before it goes: the data dir may be copied, backed up, on flash. */
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        uint8_t noise[256] = {0};
        (void)secure_random(noise, len < sizeof(noise) ? len : sizeof(noise), NULL);
        if (fchmod(fd, 0600) == 0 && pwrite(fd, noise, len < sizeof(noise) ? len : sizeof(noise), 0) > 0)
            (void)fsync(fd);
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove %s", path);
    (void)fsync_parent(path);
    if (ret_path && size && sealed_secret_exists(d->data_dir))
        snprintf(ret_path, size, "%s", d->recovery_out);
    return 0;
}

static int do_storage_secret(struct tpmd *d, uint64_t id, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int cr = check_boot_pcr(d, err);
    if (cr < 0) {
        log_error("%s", err->msg);
        return cr;
    }
    bool created = false;
    char recovery_path[PATH_MAX] = "";
    int r = sealed_secret_get(d->tpm.esys, d->tpm.srk, d->data_dir, d->boot_pcr, &s, &created, recovery_path,
                              sizeof(recovery_path), err);
    if (r < 0)
        return r;
    /* The recovery key never stays in the data dir (a copy of the disk must not open it): it goes to the place trustmed
     * named, by default the run dir (a tmpfs, gone at the next boot). */
    if (created && (r = recovery_key_move(d, recovery_path, sizeof(recovery_path), err)) < 0)
        return r;
    if (created)
        log_warn("sealed a new device storage secret; its recovery key is in %s, the only copy: "
                 "move it off the device now",
                 recovery_path);
    return send_secret(d, id, s, created, recovery_path, err);
}

static int do_reseal(struct tpmd *d, uint64_t id, const Trustme__Tpmd__Reseal *rq, tm_err *err)
{
    /* The key's length is checked (request.c). */
    _cleanup_secret_ struct secret *key = NULL, *s = NULL;
    int r = secret_new(RECOVERY_KEY_LEN, &key, err);
    if (r < 0)
        return r;
    memcpy(key->data, rq->recovery_key.data, RECOVERY_KEY_LEN);
    if ((r = sealed_secret_reseal(d->tpm.esys, d->tpm.srk, d->data_dir, d->boot_pcr, key, &s, err)) < 0)
        return r;
    log_info("device storage secret resealed to the current boot PCR %u", d->boot_pcr);
    return send_secret(d, id, s, false, NULL, err);
}

/* ---- the anchor table ------------------------------------------------------------------------- */

static int do_anchor(struct tpmd *d, uint64_t id, const Trustme__Tpmd__AnchorRequest *rq, tm_err *err)
{
    /* The counts, the names to get and value-or-remove of each change are checked
     * (request.c). */
    int r;
    if (!d->anchor.loaded && (r = anchor_load(d->tpm.esys, d->data_dir, &d->anchor, err)) < 0)
        return r;
    if (rq->n_set > 0) {
        _cleanup_free_ struct anchor_change *c = calloc(rq->n_set, sizeof(*c));
        if (!c)
            return tm_err_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < rq->n_set; i++) {
            const Trustme__Tpmd__AnchorEntry *e = rq->set[i];
            c[i] = (struct anchor_change){
                .name = e->name, .remove = e->has_remove && e->remove, .value = e->value.data, .len = e->value.len};
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if ((r = anchor_update(d->tpm.esys, d->data_dir, &d->anchor, c, rq->n_set, err)) < 0)
            return r;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        log_debug("anchor table version %llu written in %.3f ms", (unsigned long long)d->anchor.version,
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    }
    _cleanup_free_ Trustme__Tpmd__AnchorEntry *ev = calloc(rq->n_get + 1, sizeof(*ev));
    _cleanup_free_ Trustme__Tpmd__AnchorEntry **evp = calloc(rq->n_get + 1, sizeof(*evp));
    if (!ev || !evp)
        return tm_err_set(err, ENOMEM, "out of memory");
    Trustme__Tpmd__AnchorReply ar = TRUSTME__TPMD__ANCHOR_REPLY__INIT;
    for (size_t i = 0; i < rq->n_get; i++) {
        const struct anchor_entry *e = anchor_find(&d->anchor, rq->get[i]);
        if (!e)
            continue;
        trustme__tpmd__anchor_entry__init(&ev[ar.n_entries]);
        ev[ar.n_entries].name = e->name;
        ev[ar.n_entries].has_value = true;
        ev[ar.n_entries].value = (ProtobufCBinaryData){.len = e->len, .data = (uint8_t *)e->value};
        evp[ar.n_entries] = &ev[ar.n_entries];
        ar.n_entries++;
    }
    ar.entries = evp;
    ar.has_version = true;
    ar.version = d->anchor.version;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_ANCHOR;
    resp.anchor = &ar;
    return send_response(d, id, &resp, err);
}

/* ---- device identity ------------------------------------------------------------------------------ */

static int do_device_csr(struct tpmd *d, uint64_t id, const Trustme__Tpmd__DeviceCsr *rq, tm_err *err)
{
    _cleanup_free_ char *pem = NULL;
    size_t len;
    int r = rq->has_tls && rq->tls
                ? tls_csr(&d->tpm, d->data_dir, rq->common_name, d->chain_pem, d->chain_len, &pem, &len, err)
            : rq->has_vtpm_issuer && rq->vtpm_issuer
                ? vtpm_issuer_csr(&d->tpm, d->data_dir, d->chain_pem, d->chain_len, &pem, &len, err)
                : device_csr(&d->tpm, rq->common_name, d->ek_chain_pem, d->ek_chain_len, &pem, &len, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__Csr c = TRUSTME__TPMD__CSR__INIT;
    c.has_pem = true;
    c.pem = (ProtobufCBinaryData){.len = len, .data = (uint8_t *)pem};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_CSR;
    resp.csr = &c;
    return send_response(d, id, &resp, err);
}

static int do_tls_sign(struct tpmd *d, uint64_t id, const Trustme__Tpmd__TlsSign *rq, tm_err *err)
{
    uint8_t sig[64];
    if (!rq->has_digest || rq->digest.len != 32)
        return tm_err_set(err, EINVAL, "a TLS signature needs a SHA-256 digest (32 bytes)");
    int r = tpm_tls_sign(&d->tpm, d->data_dir, rq->digest.data, sig, sig + 32, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__TlsSignature ts = TRUSTME__TPMD__TLS_SIGNATURE__INIT;
    ts.has_signature = true;
    ts.signature = (ProtobufCBinaryData){.len = sizeof(sig), .data = sig};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_TLS_SIGNATURE;
    resp.tls_signature = &ts;
    return send_response(d, id, &resp, err);
}

static int do_container_cert(struct tpmd *d, uint64_t id, const Trustme__Tpmd__ContainerCert *rq, tm_err *err)
{
    _cleanup_free_ uint8_t *der = NULL;
    size_t len;
    if (!rq->has_spki_der || !rq->common_name)
        return tm_err_set(err, EINVAL, "a container certificate needs a public key and a name");
    int r = container_cert(&d->tpm, d->chain_pem, d->chain_len, rq->spki_der.data, rq->spki_der.len, rq->common_name,
                           rq->identity.data, rq->has_identity ? rq->identity.len : 0, &der, &len, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__ContainerCertReply c = TRUSTME__TPMD__CONTAINER_CERT_REPLY__INIT;
    c.has_cert_der = true;
    c.cert_der = (ProtobufCBinaryData){.len = len, .data = der};
    c.has_chain_pem = true;
    c.chain_pem = (ProtobufCBinaryData){.len = d->chain_len, .data = (uint8_t *)d->chain_pem};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_CONTAINER_CERT;
    resp.container_cert = &c;
    return send_response(d, id, &resp, err);
}

static int do_vtpm_ek_cert(struct tpmd *d, uint64_t id, const Trustme__Tpmd__VtpmEkCert *rq, tm_err *err)
{
    _cleanup_free_ uint8_t *der = NULL;
    size_t len;
    int r = vtpm_ek_cert(&d->tpm, d->data_dir, d->issuer_chain_pem, d->issuer_chain_len, rq->ek_public.data,
                         rq->ek_public.len, rq->uuid, rq->guestos, &der, &len, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__VtpmEkCertReply c = TRUSTME__TPMD__VTPM_EK_CERT_REPLY__INIT;
    c.has_cert_der = c.has_chain_pem = true;
    c.cert_der = (ProtobufCBinaryData){.len = len, .data = der};
    c.chain_pem = (ProtobufCBinaryData){.len = d->issuer_chain_len, .data = (uint8_t *)d->issuer_chain_pem};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_VTPM_EK_CERT;
    resp.vtpm_ek_cert = &c;
    return send_response(d, id, &resp, err);
}

static int store_chain(struct tpmd *d, const char *name, char *pem, size_t len, char **slot, size_t *slot_len,
                       tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", d->data_dir, name);
    int r = write_file_atomic(path, pem, len, 0644, err);
    if (r < 0) {
        free(pem);
        return r;
    }
    free(*slot);
    *slot = pem;
    *slot_len = len;
    log_info("certificate chain installed (%s)", path);
    return 0;
}

/* A certificate for this TPM's keys: the EK's (the manufacturer's, docs/ATTESTATION.md
 * "Enrollment"), the AK's in clear, or the AK's as the Device CA sends it, encrypted under a
 * credential only this TPM can activate. */
static int do_cert_install(struct tpmd *d, uint64_t id, const Trustme__Tpmd__CertInstall *rq, tm_err *err)
{
    /* The chain's presence and size are checked (request.c). */
    _cleanup_free_ char *certs = NULL;
    size_t certs_len;
    bool activated;
    char *pem = NULL;
    size_t len;
    int r = enroll_unwrap(&d->tpm, rq->chain_pem.data, rq->chain_pem.len, &certs, &certs_len, &activated, err);
    if (r < 0)
        return r;
    if (!activated &&
        (r = vtpm_issuer_check_chain(d->data_dir, (const uint8_t *)certs, certs_len, &pem, &len, err)) != 0) {
        if (r < 0 || (r = store_chain(d, "vtpm-issuer-chain.pem", pem, len, &d->issuer_chain_pem, &d->issuer_chain_len,
                                      err)) < 0)
            return r;
    } else if (!activated && cert_is_for_ek(&d->tpm, (const uint8_t *)certs, certs_len)) {
        if ((r = check_ek_chain(&d->tpm, (const uint8_t *)certs, certs_len, &pem, &len, err)) < 0 ||
            (r = store_chain(d, "ek-chain.pem", pem, len, &d->ek_chain_pem, &d->ek_chain_len, err)) < 0)
            return r;
    } else {
        if ((r = check_ak_chain(&d->tpm, (const uint8_t *)certs, certs_len, &pem, &len, err)) < 0 ||
            (r = store_chain(d, "ak-chain.pem", pem, len, &d->chain_pem, &d->chain_len, err)) < 0)
            return r;
        if (activated)
            log_info("the AK certificate came through credential activation with this TPM's EK");
    }
    Trustme__Tpmd__Ok ok = TRUSTME__TPMD__OK__INIT;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_OK;
    resp.ok = &ok;
    return send_response(d, id, &resp, err);
}

static int do_device_info(struct tpmd *d, uint64_t id, tm_err *err)
{
    _cleanup_free_ char *pem = NULL, *ek_pem = NULL;
    size_t len, ek_len;
    int r = ak_public_pem(&d->tpm, &pem, &len, err);
    if (r < 0)
        return r;
    tm_err ek_err;
    if (d->tpm.ek_public.size == 0 || ek_public_pem(&d->tpm, &ek_pem, &ek_len, &ek_err) < 0)
        ek_len = 0; /* no EK: shown as none */
    Trustme__Tpmd__DeviceInfo di = TRUSTME__TPMD__DEVICE_INFO__INIT;
    di.has_ek_public_pem = ek_len > 0;
    di.has_ek_cert_pem = true;
    di.ek_public_pem = (ProtobufCBinaryData){.len = ek_len, .data = (uint8_t *)ek_pem};
    di.ek_cert_pem = (ProtobufCBinaryData){.len = d->ek_chain_len, .data = (uint8_t *)d->ek_chain_pem};
    di.has_vtpm_issuer_chain_pem = true;
    di.vtpm_issuer_chain_pem =
        (ProtobufCBinaryData){.len = d->issuer_chain_len, .data = (uint8_t *)d->issuer_chain_pem};
    di.tcti = (char *)(d->embedded ? "embedded" : d->tcti);
    di.has_embedded = di.has_ak_public_pem = di.has_ak_name = di.has_cert_chain_pem = true;
    di.embedded = d->embedded;
    di.ak_public_pem = (ProtobufCBinaryData){.len = len, .data = (uint8_t *)pem};
    di.ak_name = (ProtobufCBinaryData){.len = d->tpm.ak_name.size, .data = d->tpm.ak_name.name};
    di.cert_chain_pem = (ProtobufCBinaryData){.len = d->chain_len, .data = (uint8_t *)d->chain_pem};
    di.attest_address = d->attest_address;
    di.has_boot_pcr = di.has_runtime_pcr = di.has_secret_sealed = true;
    di.boot_pcr = d->boot_pcr;
    di.runtime_pcr = d->runtime_pcr;
    di.secret_sealed = sealed_secret_exists(d->data_dir);
    di.manufacturer = d->tpm.manufacturer;
    struct tpm_da da;
    if ((r = tpm_da_read(&d->tpm, &da, err)) < 0)
        return r;
    di.has_da_lockout = di.has_da_failures = di.has_da_max_tries = di.has_da_recovery_s = true;
    di.da_lockout = da.in_lockout;
    di.da_failures = da.failures;
    di.da_max_tries = da.max_tries;
    di.da_recovery_s = da.recovery_s;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_DEVICE_INFO;
    resp.device_info = &di;
    return send_response(d, id, &resp, err);
}

static int do_attest(struct tpmd *d, uint64_t id, const Trustme__Attest__AttestRequest *rq, tm_err *err)
{
    struct quote_answer qa;
    int r = quote_answer(d, rq, &qa, err);
    if (r < 0)
        return r;
    Trustme__Attest__AttestResponse ar = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    ar.has_version = true;
    ar.version = TM_PROTOCOL_VERSION;
    ar.has_id = rq->has_id;
    ar.id = rq->id;
    ar.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE;
    ar.quote = &qa.quote;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_ATTEST;
    resp.attest = &ar;
    r = send_response(d, id, &resp, err);
    quote_answer_free(&qa);
    return r;
}

/* ---- migration (docs/MIGRATION.md) ---------------------------------------------------------- */

static void on_spare(tm_source *src, void *userdata)
{
    struct tpmd *d = userdata;
    (void)src;
    d->spare_src = NULL;
    tm_err err = {0};
    if (migrate_spare(&d->tpm, d->data_dir, d->boot_pcr, &err) < 0)
        log_warn("migration: no spare key for the next offer (it makes its own): %s", err.msg);
}

static int do_migrate_key(struct tpmd *d, uint64_t id, const Trustme__Tpmd__MigrateKey *rq, tm_err *err)
{
    struct migrate_offer o;
    int r = migrate_offer(&d->tpm, d->data_dir, d->boot_pcr, rq->nonce.data, rq->nonce.len, &o, err);
    if (r < 0)
        return r;
    /* The offer exists for the source only once the TPM records it (migrate_spend.h). */
    uint64_t expires = 0;
    if ((r = migrate_spend_open(d->tpm.esys, d->data_dir, &d->anchor, o.offer_id, o.key_public, o.key_public_len,
                                rq->nonce.data, rq->nonce.len, rq->has_lifetime ? rq->lifetime : 0, &expires, err)) <
        0) {
        migrate_offer_free(&o);
        return r;
    }
    Trustme__Tpmd__MigrateKeyReply mk = TRUSTME__TPMD__MIGRATE_KEY_REPLY__INIT;
    mk.has_expires = true;
    mk.expires = expires;
    mk.offer_id = o.offer_id;
    mk.has_key_public = mk.has_certify_attest = mk.has_certify_sig = true;
    mk.key_public = (ProtobufCBinaryData){.len = o.key_public_len, .data = o.key_public};
    mk.certify_attest = (ProtobufCBinaryData){.len = o.certify_attest_len, .data = o.certify_attest};
    mk.certify_sig = (ProtobufCBinaryData){.len = o.certify_sig_len, .data = o.certify_sig};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_KEY;
    resp.migrate_key = &mk;
    r = send_response(d, id, &resp, err);
    migrate_offer_free(&o);
    /* The next offer's key, once this answer is out (a request meanwhile waits for it, as for
     * any TPM command; a device that offers once offers again, to retry or for more containers). */
    if (!d->spare_src)
        d->spare_src = tm_loop_timer(d->loop, SPARE_DELAY_MS, on_spare, d);
    return r;
}

static int do_migrate_decrypt(struct tpmd *d, uint64_t id, const Trustme__Tpmd__MigrateDecrypt *rq, tm_err *err)
{
    _cleanup_secret_ struct secret *k = NULL;
    int r = rq->has_target_ak ? migrate_check_target(&d->tpm, rq->target_ak.data, rq->target_ak.len, err) : 0;
    /* Spent in the TPM's anchor table before the key is used: a restored key file is useless.
     * Only for the source whose AK the offer's nonce names (migrate_nonce.h). */
    if (r == 0)
        r = migrate_spend(d->tpm.esys, d->data_dir, &d->anchor, rq->offer_id,
                          rq->has_source_ak_id ? rq->source_ak_id.data : NULL,
                          rq->has_source_ak_id ? rq->source_ak_id.len : 0, err);
    if (r < 0)
        return r;
    r = migrate_decrypt(&d->tpm, d->data_dir, d->boot_pcr, rq->offer_id, rq->ciphertext.data, rq->ciphertext.len, &k,
                        err);
    if (r < 0)
        return r;
    Trustme__Tpmd__MigrateSecret ms = TRUSTME__TPMD__MIGRATE_SECRET__INIT;
    ms.has_secret = true;
    ms.secret = (ProtobufCBinaryData){.len = k->len, .data = k->data};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SECRET;
    resp.migrate_secret = &ms;
    return send_response(d, id, &resp, err);
}

static int do_migrate_sign(struct tpmd *d, uint64_t id, const Trustme__Tpmd__MigrateSign *rq, tm_err *err)
{
    uint8_t sig[64];
    int r = rq->installed_offer
                ? migrate_spend_installed(d->tpm.esys, d->data_dir, &d->anchor, rq->installed_offer, err)
                : 0;
    if (r < 0)
        return r;
    r = migrate_sign(&d->tpm, rq->data.data, rq->data.len, sig, err);
    if (r < 0)
        return r;
    Trustme__Tpmd__TlsSignature ts = TRUSTME__TPMD__TLS_SIGNATURE__INIT;
    ts.has_signature = true;
    ts.signature = (ProtobufCBinaryData){.len = sizeof(sig), .data = sig};
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_MIGRATE_SIGNATURE;
    resp.migrate_signature = &ts;
    return send_response(d, id, &resp, err);
}

/* ---- the loop ----------------------------------------------------------------------------------- */

static void dispatch(struct tpmd *d, const Request *rq)
{
    tm_err err = {0};
    int r;
    switch (rq->body_case) {
    case TRUSTME__TPMD__REQUEST__BODY_MEASURE: r = do_measure(d, rq->id, rq->measure, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_GET_LOG: r = do_get_log(d, rq->id, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_STORAGE_SECRET: r = do_storage_secret(d, rq->id, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_RESEAL: r = do_reseal(d, rq->id, rq->reseal, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_CSR: r = do_device_csr(d, rq->id, rq->device_csr, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_CERT_INSTALL: r = do_cert_install(d, rq->id, rq->cert_install, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_INFO: r = do_device_info(d, rq->id, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_ATTEST: r = do_attest(d, rq->id, rq->attest, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_ANCHOR: r = do_anchor(d, rq->id, rq->anchor, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_CONTAINER_CERT: r = do_container_cert(d, rq->id, rq->container_cert, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_TLS_SIGN: r = do_tls_sign(d, rq->id, rq->tls_sign, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_VTPM_EK_CERT: r = do_vtpm_ek_cert(d, rq->id, rq->vtpm_ek_cert, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_KEY: r = do_migrate_key(d, rq->id, rq->migrate_key, &err); break;
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_DECRYPT:
        r = do_migrate_decrypt(d, rq->id, rq->migrate_decrypt, &err);
        break;
    case TRUSTME__TPMD__REQUEST__BODY_MIGRATE_SIGN: r = do_migrate_sign(d, rq->id, rq->migrate_sign, &err); break;
    default:
        r = tm_err_set(&err, EOPNOTSUPP, "unknown request (body %d)", (int)rq->body_case);
        /* (tpmd_request_decode refused it already) */
    }
    if (r < 0) {
        log_debug("request %llu failed: %s", (unsigned long long)rq->id, err.msg);
        send_error(d, rq->id, err.code, err.msg);
    }
    tpmd_check_tpm(d);
}

void tpmd_check_tpm(struct tpmd *d)
{
    if (!tpm_connection_lost() || d->tpm_lost)
        return;
    d->tpm_lost = true;
    log_error("the connection to the TPM broke: exiting, so that trustmed starts a new TPM service");
    tm_loop_quit(d->loop, -ENOTCONN);
}

static void wipe_request(Request *rq)
{
    /* A large packet is unpacked on the heap, which tm_packet_free does not wipe. */
    if (rq->body_case == TRUSTME__TPMD__REQUEST__BODY_RESEAL && rq->reseal->recovery_key.data)
        explicit_bzero(rq->reseal->recovery_key.data, rq->reseal->recovery_key.len);
}

static void bad_packet(int code, const char *msg, void *userdata)
{
    send_error(userdata, 0, code, msg);
}

static void on_link(tm_source *src, uint32_t events, void *userdata)
{
    struct tpmd *d = userdata;
    struct tm_packet pkt;
    int r = tm_packet_next(d->link_fd, TPMD_REQUEST_MAX, &pkt, bad_packet, d);
    if (r == -EAGAIN || r == TM_PACKET_ANSWERED)
        return;
    if (r <= 0) {
        if (r < 0)
            log_error("connection to trustmed broken: %s", strerror(-r));
        else
            log_info("trustmed closed the connection: stopping");
        tm_loop_quit(d->loop, 0);
        return;
    }
    Request *rq = NULL;
    tm_err err = {0};
    if ((r = tpmd_request_decode(&pkt, &rq, &err)) < 0) {
        log_debug("request %llu refused: %s", rq ? (unsigned long long)rq->id : 0ULL, err.msg);
        send_error(d, rq && rq->has_id ? rq->id : 0, err.code, err.msg);
    } else {
        dispatch(d, rq);
    }
    if (rq)
        wipe_request(rq);
    tm_packet_free(&pkt);
    tpmd_busy(d);
}

static void on_idle(tm_source *src, void *userdata)
{
    struct tpmd *d = userdata;
    d->idle_src = NULL;
    size_t dropped = tm_idle_release();
    log_debug("idle: heap trimmed, %zu KiB of read-only library mappings dropped", dropped / 1024);
}

void tpmd_busy(struct tpmd *d)
{
    tm_source_free(d->idle_src);
    d->idle_src = tm_loop_timer(d->loop, TM_IDLE_RELEASE_MS, on_idle, d);
}

int server_start(struct tpmd *d, tm_err *err)
{
    /* Answers up to TPMD_REPLY_MAX must fit one packet; the kernel caps this at wmem_max. */
    int sndbuf = (int)TPMD_REPLY_MAX + 4096;
    setsockopt(d->link_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    d->link_src = tm_loop_io(d->loop, d->link_fd, EPOLLIN, on_link, d);
    if (!d->link_src)
        return tm_err_set(err, ENOMEM, "out of memory");
    Trustme__Tpmd__Ready ready = TRUSTME__TPMD__READY__INIT;
    ready.has_pid = true;
    ready.pid = (uint32_t)getpid();
    if (d->log.restarted) {
        ready.has_log_restarted = ready.has_old_log_events = true;
        ready.log_restarted = true;
        ready.old_log_events = (uint32_t)d->log.old_events;
    }
    if (d->da_reset.failures || d->da_reset.lockout) {
        ready.has_da_failures_cleared = ready.has_da_lockout_cleared = true;
        ready.da_failures_cleared = d->da_reset.failures;
        ready.da_lockout_cleared = d->da_reset.lockout;
    }
    if (d->da_reset.error[0])
        ready.da_reset_error = d->da_reset.error;
    Response resp = TRUSTME__TPMD__RESPONSE__INIT;
    resp.body_case = TRUSTME__TPMD__RESPONSE__BODY_READY;
    resp.ready = &ready;
    tpmd_busy(d); /* what the start touched goes too, once nothing follows */
    return send_response(d, 0, &resp, err);
}

void server_stop(struct tpmd *d)
{
    tm_source_free(d->link_src);
    d->link_src = NULL;
    tm_source_free(d->idle_src);
    d->idle_src = NULL;
    tm_source_free(d->spare_src);
    d->spare_src = NULL;
}
