/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtpm_quote.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "hex.h"
#include "measurement.h"
#include "tpm_parse.h"

static void sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* Parse "PCR TYPE SHA256 NAME" lines, replay them into pcr_values, and check each against refs. */
int vtpm_container_log_check(const char *log, const struct refvalues *refs, uint8_t pcr_values[24][32],
                             size_t *ret_events, char *why, size_t why_size)
{
    size_t n = 0;
    const char *p = log;
    bool rejected = false;
    memset(pcr_values, 0, 24 * 32);
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol) {
            snprintf(why, why_size, "the log does not end with a newline");
            return -EINVAL;
        }
        char line[512];
        size_t len = (size_t)(eol - p);
        if (len >= sizeof(line)) {
            snprintf(why, why_size, "line %zu is too long", n + 1);
            return -EINVAL;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol + 1;
        char type[TM_EVENT_TYPE_MAX + 3], shahex[66];
        unsigned pcr;
        int off = 0;
        if (sscanf(line, "%2u %33s %65s %n", &pcr, type, shahex, &off) != 3 || off <= 0 || pcr >= 24 ||
            strlen(shahex) != 64) {
            snprintf(why, why_size, "line %zu is not \"PCR TYPE SHA256 NAME\"", n + 1);
            return -EINVAL;
        }
        const char *name = line + off;
        uint8_t sha[32];
        tm_err err = {0};
        if (tm_hex_decode_str(shahex, sha, 32, 0, &err) < 0 || tm_event_check(pcr, type, name, 32, &err) < 0) {
            snprintf(why, why_size, "line %zu: %s", n + 1, err.msg);
            return -EINVAL;
        }
        bool quoted = !refs;
        for (size_t i = 0; refs && i < refs->npcrs; i++)
            quoted |= refs->pcrs[i] == pcr;
        if (!quoted) {
            snprintf(why, why_size, "event %s %s is on PCR %u, which the reference values do not quote", type, name,
                     pcr);
            return -EINVAL;
        }
        if (refs && !rejected && !refvalues_contains(refs, type, sha)) {
            /* Replay on: the quote is checked against the whole log first. */
            snprintf(why, why_size, "%s %s (%s) is not one of the container's reference values", type, name, shahex);
            rejected = true;
        }
        uint8_t digest[32];
        tm_event_digest(pcr, type, name, sha, digest);
        tm_pcr_extend(pcr_values[pcr], digest);
        n++;
    }
    *ret_events = n;
    if (rejected)
        return -EKEYREJECTED;
    for (size_t i = 0; refs && i < refs->n_required; i++) {
        bool seen = false;
        for (const char *q = log; q && *q && !seen; q = strchr(q, '\n'), q = q ? q + 1 : NULL) {
            char type[TM_EVENT_TYPE_MAX + 3], shahex[66];
            unsigned pcr;
            int off = 0;
            const char *eol = strchr(q, '\n');
            char line[512];
            size_t len = eol ? (size_t)(eol - q) : strlen(q);
            if (len >= sizeof(line))
                continue;
            memcpy(line, q, len);
            line[len] = '\0';
            if (sscanf(line, "%2u %33s %65s %n", &pcr, type, shahex, &off) == 3 && off > 0 &&
                strcmp(type, refs->required[i].type) == 0 && strcmp(line + off, refs->required[i].name) == 0)
                seen = true;
        }
        if (!seen) {
            snprintf(why, why_size, "the required event %s %s is missing", refs->required[i].type,
                     refs->required[i].name);
            return -ENOENT;
        }
    }
    *ret_events = n;
    return 0;
}

/* The vTPM's quote by AKv: signed by AKv, over the nonce, of the PCRs asked, whose digest is that
 * of the values the container's log replays to; signed by AKv as a primary of the endorsement
 * hierarchy. */
int vtpm_quote_check(const TPM2B_ATTEST *quoted, const TPMT_SIGNATURE *sig, const TPMT_PUBLIC *akv,
                     const uint8_t akv_name[34], const uint8_t nonce[32], const TPML_PCR_SELECTION *sel,
                     uint8_t pcr_values[24][32], char *why, size_t why_size)
{
    tm_err err = {0};
    TPMS_ATTEST a;
    if (tpm_attest_parse(quoted->attestationData, quoted->size, &a, &err) < 0) {
        snprintf(why, why_size, "%s", err.msg);
        return -EINVAL;
    }
    if (a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_QUOTE) {
        snprintf(why, why_size, "not a TPM-generated quote");
        return -EINVAL;
    }
    if (a.extraData.size != 32 || memcmp(a.extraData.buffer, nonce, 32) != 0) {
        snprintf(why, why_size, "the quote is not over this run's nonce (replayed?)");
        return -EINVAL;
    }
    uint8_t qn_in[4 + 34], qn[34] = {0x00, 0x0b};
    qn_in[0] = 0x40;
    qn_in[1] = qn_in[2] = 0x00;
    qn_in[3] = 0x0b; /* TPM_RH_ENDORSEMENT */
    memcpy(qn_in + 4, akv_name, 34);
    sha256(qn_in, sizeof(qn_in), qn + 2);
    if (a.qualifiedSigner.size != 34 || memcmp(a.qualifiedSigner.name, qn, 34) != 0) {
        snprintf(why, why_size, "the quote's signer is not the attestation key made for this run");
        return -EINVAL;
    }
    /* The signature, with AKv's public key. */
    uint8_t pub[sizeof(TPMT_PUBLIC)], der[TPM_ECDSA_DER_MAX], sigbuf[sizeof(TPMT_SIGNATURE)];
    size_t publen = 0, derlen = 0, siglen = 0;
    EVP_PKEY *key = NULL;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(akv, pub, sizeof(pub), &publen) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sigbuf, sizeof(sigbuf), &siglen) != TSS2_RC_SUCCESS ||
        tpm_ak_public(pub, publen, &key, &err) < 0 || tpm_signature_der(sigbuf, siglen, der, &derlen, &err) < 0) {
        EVP_PKEY_free(key);
        snprintf(why, why_size, "%s", err.code ? err.msg : "cannot read the key or signature");
        return -EINVAL;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, der, derlen, quoted->attestationData, quoted->size) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    if (!ok) {
        snprintf(why, why_size, "the quote's signature does not verify with the attestation key");
        return -EKEYREJECTED;
    }
    const TPML_PCR_SELECTION *qs = &a.attested.quote.pcrSelect;
    if (qs->count != 1 || qs->pcrSelections[0].hash != TPM2_ALG_SHA256 ||
        qs->pcrSelections[0].sizeofSelect != sel->pcrSelections[0].sizeofSelect ||
        memcmp(qs->pcrSelections[0].pcrSelect, sel->pcrSelections[0].pcrSelect, sel->pcrSelections[0].sizeofSelect)) {
        snprintf(why, why_size, "the quote does not select the PCRs asked for");
        return -EINVAL;
    }
    uint8_t all[24 * 32];
    size_t n = 0;
    for (unsigned i = 0; i < 24; i++)
        if (sel->pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8)))
            memcpy(all + 32 * n++, pcr_values[i], 32);
    uint8_t digest[32];
    sha256(all, 32 * n, digest);
    if (a.attested.quote.pcrDigest.size != 32 || memcmp(a.attested.quote.pcrDigest.buffer, digest, 32) != 0) {
        snprintf(why, why_size, "the quoted PCRs are not what the container's event log replays to");
        return -EINVAL;
    }
    return 0;
}
