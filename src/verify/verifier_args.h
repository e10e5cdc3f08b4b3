/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The command line of a program that verifies a device (trustme-verify, trustme-owner): the
 * options of attest_optlist.h, --timeout, --expect-ak, --version and --help, parsed by one loop,
 * and the program's own options handed to it. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "attest_opts.h"

#define VERIFIER_OPT_OWN 1024 /* the first getopt value a program's own option may use */
#define VERIFIER_OWN_MAX 16 /* own options at most */

struct verifier_args {
    struct attest_opts shared;
    uint8_t expect_ak[34]; /* --expect-ak: the AK's name */
    bool has_expect_ak;
    int timeout_s; /* --timeout: 1..3600, 10 by default */
};

struct verifier_program {
    const char *name; /* in --version and in messages */
    void (*usage)(FILE *out);
    const struct option *own; /* ended by a zero entry; each val >= VERIFIER_OPT_OWN */
    /* Take own option val with its value (NULL for a flag): 0 or verifier_usage_error's code. */
    int (*take)(void *userdata, int val, char *value);
};

/* "<name>: <message> (see <name> --help)" on stderr; the usage exit status (2). */
int verifier_usage_error(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse argv's options into ret (and through p->take, the program's own); --version and --help
 * print and exit 0. 0 with optind at the first operand, or the usage exit status. */
int verifier_args_parse(const struct verifier_program *p, int argc, char **argv, struct verifier_args *ret,
                        void *userdata);
