/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The command line and first steps shared by the helper services trustmed starts with a state
 * directory (trustme-scd, trustme-keystore): --state-dir DIR (required), --log-level LEVEL,
 * --help, and each service's own options. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "log.h"

struct tm_service_args {
    const char *state_dir;
    enum tm_log_level level;
};

/* The values a service's own options use in struct option (from here on up). */
#define TM_SERVICE_OPT_OWN 512

/* One of the service's own options (its val, its argument): 0 when taken, <0 when refused. */
typedef int tm_service_opt_fn(int opt, const char *arg, void *userdata);

/* Parse argv: own (NULL-terminated by a zero entry, or NULL) are the service's own options, each
 * handed to on_own. Returns 0 to run, or the exit status: 0 after --help (*ret_done set), 2 after
 * a usage error (said on stderr). */
int tm_service_args(int argc, char **argv, const char *name, void (*usage)(FILE *out), const struct option *own,
                    tm_service_opt_fn *on_own, void *userdata, struct tm_service_args *ret, bool *ret_done);
/* Logging as name at level, no SIGPIPE, umask 077, no core dumps: what a service holding keys
 * does before anything else. */
void tm_service_init(const char *name, enum tm_log_level level);
