/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The helper services' shared command line (service_args.h). */
#include "service_args.h"

#include <assert.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "secmem.h"

enum { OPT_STATE = 256, OPT_LOG };

int tm_service_args(int argc, char **argv, const char *name, void (*usage)(FILE *out), const struct option *own,
                    tm_service_opt_fn *on_own, void *userdata, struct tm_service_args *ret, bool *ret_done)
{
    struct option opts[16] = {{"state-dir", required_argument, NULL, OPT_STATE},
                              {"log-level", required_argument, NULL, OPT_LOG},
                              {"help", no_argument, NULL, 'h'}};
    size_t n = 3;
    for (; own && own->name; own++) {
        assert(n < ARRAY_SIZE(opts) - 1 && own->val >= TM_SERVICE_OPT_OWN);
        opts[n++] = *own;
    }
    *ret = (struct tm_service_args){.level = TM_LOG_INFO};
    *ret_done = false;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case OPT_STATE: ret->state_dir = optarg; break;
        case OPT_LOG:
            if (tm_log_parse_level(optarg, &ret->level) < 0) {
                fprintf(stderr, "%s: bad --log-level\n", name);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            *ret_done = true;
            return 0;
        default:
            if (o >= TM_SERVICE_OPT_OWN && on_own && on_own(o, optarg, userdata) == 0)
                break;
            usage(stderr);
            return 2;
        }
    }
    if (!ret->state_dir) {
        usage(stderr);
        return 2;
    }
    return 0;
}

void tm_service_init(const char *name, enum tm_log_level level)
{
    tm_log_init(name, false, level);
    /* A vanished trustmed must not kill a service in the middle of writing a file. */
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    secmem_no_core_dumps(); /* it holds keys or PINs: a crash must not write them out */
}
