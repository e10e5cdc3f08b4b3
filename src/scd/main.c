/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-scd: the token service. trustmed starts it (docs/ARCHITECTURE.md "trustme-scd") already
 * confined: its own unprivileged uid, no capabilities, no_new_privs, a private mount namespace
 * holding only its state dir and what it needs to run, no network; the socket to trustmed is fd 3.
 * scd holds the tokens and is the only process that sees a PIN or unwraps a container key. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "secmem.h"
#include "server.h"
#include "service_args.h"
#include "token.h"
#include "version.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-scd --state-dir DIR [--kdf-n N] [--log-level LEVEL]\n"
                 "\n"
                 "The trustme token service. Started by trustmed, which passes the socket to it as\n"
                 "fd 3; not meant to be run by hand.\n");
}

enum { OPT_KDF = TM_SERVICE_OPT_OWN };

static int own_option(int opt, const char *arg, void *userdata)
{
    assert(opt == OPT_KDF);
    *(uint64_t *)userdata = strtoull(arg, NULL, 10);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option own[] = {{"kdf-n", required_argument, NULL, OPT_KDF}, {NULL, 0, NULL, 0}};
    uint64_t kdf_n = 0;
    struct tm_service_args args;
    bool done;
    int rc = tm_service_args(argc, argv, "trustme-scd", usage, own, own_option, &kdf_n, &args, &done);
    if (rc || done)
        return rc;
    const char *state_dir = args.state_dir;
    tm_service_init("trustme-scd", args.level); /* no SIGPIPE: not in the middle of a tries file */
    if (fcntl(3, F_GETFD) < 0) {
        log_error("no socket to trustmed on fd 3 (scd is started by trustmed)");
        return 2;
    }
    struct token_ctx tctx = {.state_dir = state_dir, .soft_kdf_n = kdf_n, .caller_counts = true};
    log_info("trustme-scd %s ready, pid %d", TRUSTME_VERSION, getpid());
    int r = server_run(3, &tctx);
    return r < 0 ? 1 : 0;
}
