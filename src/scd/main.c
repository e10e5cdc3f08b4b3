/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-scd: the token service. trustmed starts it (docs/ARCHITECTURE.md "trustme-scd") already
 * confined: its own unprivileged uid, no capabilities, no_new_privs, a private mount namespace
 * holding only its state dir and what it needs to run, no network; the socket to trustmed is fd 3.
 * scd holds the tokens and is the only process that sees a PIN or unwraps a container key. */
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
#include "token.h"
#include "version.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-scd --state-dir DIR [--kdf-n N] [--log-level LEVEL]\n"
                 "\n"
                 "The trustme token service. Started by trustmed, which passes the socket to it as\n"
                 "fd 3; not meant to be run by hand.\n");
}

int main(int argc, char **argv)
{
    enum { OPT_STATE = 256, OPT_KDF, OPT_LOG };
    static const struct option opts[] = {{"state-dir", required_argument, NULL, OPT_STATE},
                                         {"kdf-n", required_argument, NULL, OPT_KDF},
                                         {"log-level", required_argument, NULL, OPT_LOG},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *state_dir = NULL;
    uint64_t kdf_n = 0;
    enum tm_log_level level = TM_LOG_INFO;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case OPT_STATE: state_dir = optarg; break;
        case OPT_KDF: kdf_n = strtoull(optarg, NULL, 10); break;
        case OPT_LOG:
            if (tm_log_parse_level(optarg, &level) < 0) {
                fprintf(stderr, "trustme-scd: bad --log-level\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!state_dir) {
        usage(stderr);
        return 2;
    }
    tm_log_init("trustme-scd", false, level);
    /* A vanished trustmed must not kill us in the middle of writing a tries file. */
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    secmem_no_core_dumps(); /* it holds keys or PINs: a crash must not write them out */
    if (fcntl(3, F_GETFD) < 0) {
        log_error("no socket to trustmed on fd 3 (scd is started by trustmed)");
        return 2;
    }
    struct token_ctx tctx = {.state_dir = state_dir, .soft_kdf_n = kdf_n, .caller_counts = true};
    log_info("trustme-scd %s ready, pid %d", TRUSTME_VERSION, getpid());
    int r = server_run(3, &tctx);
    return r < 0 ? 1 : 0;
}
