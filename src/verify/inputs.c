/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "inputs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fileio.h"
#include "verify.h"

/* The PEM files, concatenated: verify.c reads every block of one buffer. */
static int read_pems(char *const *paths, size_t n, char **ret, size_t *ret_len, tm_err *err)
{
    _cleanup_free_ char *all = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *data = NULL;
        size_t dlen = 0;
        int r = read_file(paths[i], VERIFY_PEM_MAX, &data, &dlen, err);
        if (r < 0)
            return r;
        if (len + dlen + 1 > VERIFY_PEM_MAX)
            return tm_err_set(err, EFBIG, "%s: the files add up to more than %d bytes", paths[i], VERIFY_PEM_MAX);
        char *grown = realloc(all, len + dlen + 2);
        if (!grown)
            return tm_err_set(err, ENOMEM, "out of memory");
        all = grown;
        memcpy(all + len, data, dlen);
        len += dlen;
        all[len++] = '\n';
        all[len] = '\0';
    }
    *ret = steal_ptr(all);
    *ret_len = len;
    return 0;
}

static int read_pins(char *const *paths, size_t n, const char *option, struct ca_pins *ret, tm_err *err)
{
    _cleanup_free_ char *pem = NULL;
    size_t len = 0;
    int r = read_pems(paths, n, &pem, &len, err);
    return r < 0 ? r : ca_pins_parse(pem, len, option, ret, err);
}

int attest_inputs_load(const struct attest_inputs_files *f, struct attest_inputs *ret, tm_err *err)
{
    /* Each role needs its root and its CA: one root (the Customer root) certifies the Device CA
     * and the GuestOS-signing CA, and only the first may vouch for an AK. */
    if (!f->n_ak_anchors || !f->n_device_cas)
        return tm_err_set(err, EINVAL,
                          "--ak-anchor ROOT.pem and --device-ca CA.pem are required "
                          "(the root and the CA of AK certificates)");
    if (!f->n_rim_anchors || !f->n_rim_cas)
        return tm_err_set(err, EINVAL,
                          "--rim-anchor ROOT.pem and --rim-ca CA.pem are required "
                          "(the root and the CA of the reference values' signer)");
    if (!f->n_crls && !f->no_crl)
        return tm_err_set(err, EINVAL,
                          "--crl CRL.pem is required (every CA's CRL, e.g. the "
                          "PKI's crls.pem), or --no-crl to check nothing for revocation");
    if (f->n_crls && f->no_crl)
        return tm_err_set(err, EINVAL, "--crl and --no-crl exclude each other");
    if (!f->reference)
        return tm_err_set(err, EINVAL, "--reference REFS.json is required");
    struct attest_inputs in = {0};
    _cleanup_(refvalues_files_done) struct refvalues_files rf = {0};
    int r = read_pems(f->ak_anchors, f->n_ak_anchors, &in.ak_anchors, &in.ak_anchors_len, err);
    if (r == 0)
        r = read_pins(f->device_cas, f->n_device_cas, "--device-ca", &in.device_cas, err);
    if (r == 0)
        r = read_pems(f->rim_anchors, f->n_rim_anchors, &in.rim_anchors, &in.rim_anchors_len, err);
    if (r == 0)
        r = read_pins(f->rim_cas, f->n_rim_cas, "--rim-ca", &in.rim_cas, err);
    if (r == 0 && f->n_crls)
        r = read_pems(f->crls, f->n_crls, &in.crls, &in.crls_len, err);
    if (r == 0 && (r = refvalues_read_files(f->reference, &rf, err)) < 0)
        tm_err_prefix(err, "reference values (sign REFS.json with trustme-pki sign)");
    if (r < 0) {
        attest_inputs_done(&in);
        return r;
    }
    struct refvalues_trust t = {
        .anchors_pem = in.rim_anchors,
        .anchors_len = in.rim_anchors_len,
        .cas = &in.rim_cas,
        .crls_pem = in.crls,
        .crls_len = in.crls_len,
        .min_version = f->min_version,
    };
    tm_err e = {0};
    if (refvalues_load(&rf, &t, &in.refs, &e) < 0)
        snprintf(in.refs_error, sizeof(in.refs_error), "%s: %s", f->reference, e.msg);
    *ret = in;
    return 0;
}

void attest_inputs_done(struct attest_inputs *in)
{
    free(in->ak_anchors);
    free(in->rim_anchors);
    free(in->crls);
    refvalues_free(in->refs);
    *in = (struct attest_inputs){0};
}

size_t attest_inputs_pcrs(const struct attest_inputs *in, const uint32_t *explicit_pcrs, size_t n_explicit,
                          uint32_t out[REFVALUES_PCRS])
{
    const uint32_t *src = n_explicit ? explicit_pcrs : in->refs ? in->refs->pcrs : NULL;
    size_t n = n_explicit ? n_explicit : in->refs ? in->refs->npcrs : 0;
    if (n > REFVALUES_PCRS)
        n = REFVALUES_PCRS;
    for (size_t i = 0; i < n; i++)
        out[i] = src[i];
    return n;
}

struct attest_policy attest_inputs_policy(const struct attest_inputs *in, const uint8_t *nonce, size_t nonce_len,
                                          const uint32_t *pcrs, size_t npcrs, bool pcrs_explicit)
{
    return (struct attest_policy){
        .nonce = nonce,
        .nonce_len = nonce_len,
        .pcrs = pcrs,
        .npcrs = npcrs,
        .pcrs_explicit = pcrs_explicit,
        .ak_anchors_pem = in->ak_anchors,
        .ak_anchors_len = in->ak_anchors_len,
        .device_cas = &in->device_cas,
        .crls_pem = in->crls,
        .crls_len = in->crls_len,
        .refs = in->refs,
        .refs_error = in->refs_error,
    };
}

int attest_read_pems(char *const *paths, size_t n, char **ret, size_t *ret_len, tm_err *err)
{
    return read_pems(paths, n, ret, ret_len, err);
}
