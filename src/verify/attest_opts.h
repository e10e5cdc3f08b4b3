/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The values of the options trustme-verify and `trustme attest` share (attest_optlist.h),
 * parsed the same way for both. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest_check.h"
#include "attest_optlist.h"
#include "error.h"
#include "inputs.h"

#define ATTEST_INPUTS_MAX 64 /* files of each list option */

struct attest_opts {
    char *files[ATTEST_LISTS][ATTEST_INPUTS_MAX];
    size_t n_files[ATTEST_LISTS];
    bool no_crl, json;
    const char *reference;
    uint64_t min_version;
    uint32_t pcrs[ATTEST_PCRS]; /* --pcr, in the order given */
    size_t npcrs;
};

/* The long name of option o ("ak-anchor"). */
const char *attest_option_name(enum attest_option o);
/* Take option o with its value (NULL for a flag). 0, or -EINVAL with err saying what is wrong
 * with it: a usage error. */
int attest_opts_take(struct attest_opts *opts, enum attest_option o, char *value, tm_err *err);
/* A decimal number in [0, max] (no sign, nothing after it), or -EINVAL: the one number parser of
 * the verifier's options. */
int attest_parse_u64(const char *s, uint64_t max, uint64_t *ret);
/* The files to read, for attest_inputs_load (which says what is missing). */
struct attest_inputs_files attest_opts_files(const struct attest_opts *opts);
