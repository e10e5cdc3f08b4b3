/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parsing the options trustme-verify and `trustme attest` share (attest_optlist.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attest_opts.h"

static const char *const names[ATTEST_OPTS] = {
#define ATTEST_OPTION_NAME(id, name, value, help) name,
    ATTEST_OPTIONS(ATTEST_OPTION_NAME)
#undef ATTEST_OPTION_NAME
};

const char *attest_option_name(enum attest_option o)
{
    return o < ATTEST_OPTS ? names[o] : "?";
}

int attest_parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

int attest_opts_take(struct attest_opts *opts, enum attest_option o, char *value, tm_err *err)
{
    uint64_t v;
    if (o < ATTEST_LISTS) {
        if (opts->n_files[o] >= ATTEST_INPUTS_MAX)
            return tm_err_set(err, EINVAL, "at most %d --%s files", ATTEST_INPUTS_MAX, names[o]);
        opts->files[o][opts->n_files[o]++] = value;
        return 0;
    }
    switch (o) {
    case ATTEST_OPT_NO_CRL: opts->no_crl = true; return 0;
    case ATTEST_OPT_JSON: opts->json = true; return 0;
    case ATTEST_OPT_REFERENCE: opts->reference = value; return 0;
    case ATTEST_OPT_MIN_VERSION:
        if (attest_parse_u64(value, INT64_MAX, &v) < 0)
            return tm_err_set(err, EINVAL, "--min-version %s: expected a version number", value);
        opts->min_version = v;
        return 0;
    case ATTEST_OPT_PCR:
        if (attest_parse_u64(value, ATTEST_PCRS - 1, &v) < 0)
            return tm_err_set(err, EINVAL, "--pcr %s: expected a PCR index 0..%d", value, ATTEST_PCRS - 1);
        for (size_t i = 0; i < opts->npcrs; i++)
            if (opts->pcrs[i] == (uint32_t)v)
                return tm_err_set(err, EINVAL, "--pcr %u given twice", (unsigned)v);
        opts->pcrs[opts->npcrs++] = (uint32_t)v;
        return 0;
    case ATTEST_OPT_ANCHOR:
        return tm_err_set(err, EINVAL,
                          "--anchor trusted a root for every role: give --ak-anchor "
                          "and --device-ca for AK certificates, --rim-anchor and --rim-ca for the "
                          "reference values' signer");
    default: return tm_err_set(err, EINVAL, "unknown attestation option %d", (int)o);
    }
}

struct attest_inputs_files attest_opts_files(const struct attest_opts *opts)
{
    return (struct attest_inputs_files){
        .ak_anchors = opts->files[ATTEST_OPT_AK_ANCHOR],
        .n_ak_anchors = opts->n_files[ATTEST_OPT_AK_ANCHOR],
        .device_cas = opts->files[ATTEST_OPT_DEVICE_CA],
        .n_device_cas = opts->n_files[ATTEST_OPT_DEVICE_CA],
        .rim_anchors = opts->files[ATTEST_OPT_RIM_ANCHOR],
        .n_rim_anchors = opts->n_files[ATTEST_OPT_RIM_ANCHOR],
        .rim_cas = opts->files[ATTEST_OPT_RIM_CA],
        .n_rim_cas = opts->n_files[ATTEST_OPT_RIM_CA],
        .crls = opts->files[ATTEST_OPT_CRL],
        .n_crls = opts->n_files[ATTEST_OPT_CRL],
        .no_crl = opts->no_crl,
        .reference = opts->reference,
        .min_version = opts->min_version,
    };
}
