/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "verifier_args.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>

#include "hex.h"
#include "version.h"

#define EXIT_USAGE 2

int verifier_usage_error(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", name);
    va_end(ap);
    return EXIT_USAGE;
}

int verifier_args_parse(const struct verifier_program *p, int argc, char **argv, struct verifier_args *ret,
                        void *userdata)
{
    enum { OPT_SHARED = 256, OPT_TIMEOUT = OPT_SHARED + ATTEST_OPTS, OPT_EXPECT_AK, OPT_VERSION };
    static_assert(OPT_VERSION < VERIFIER_OPT_OWN, "own options start after the common ones");
    struct option opts[ATTEST_OPTS + 4 + VERIFIER_OWN_MAX + 1] = {
#define ATTEST_OPTION_GETOPT(id, name, value, help) \
    {name, value ? required_argument : no_argument, NULL, OPT_SHARED + ATTEST_OPT_##id},
        ATTEST_OPTIONS(ATTEST_OPTION_GETOPT)
#undef ATTEST_OPTION_GETOPT
            {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"expect-ak", required_argument, NULL, OPT_EXPECT_AK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
    };
    size_t n = ATTEST_OPTS + 4;
    for (const struct option *o = p->own; o->name; o++) {
        assert(n < ATTEST_OPTS + 4 + VERIFIER_OWN_MAX && o->val >= VERIFIER_OPT_OWN);
        opts[n++] = *o;
    }
    ret->timeout_s = 10;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        tm_err err;
        uint64_t v;
        if (c >= OPT_SHARED && c < OPT_SHARED + ATTEST_OPTS) {
            if (attest_opts_take(&ret->shared, (enum attest_option)(c - OPT_SHARED), optarg, &err) < 0)
                return verifier_usage_error(p->name, "%s", err.msg);
            continue;
        }
        int r;
        switch (c) {
        case OPT_TIMEOUT:
            if (attest_parse_u64(optarg, 3600, &v) < 0 || v < 1)
                return verifier_usage_error(p->name, "--timeout %s: expected seconds 1..3600", optarg);
            ret->timeout_s = (int)v;
            break;
        case OPT_EXPECT_AK:
            if (tm_hex_decode_str(optarg, ret->expect_ak, sizeof(ret->expect_ak), TM_HEX_ANY_CASE, NULL) < 0)
                return verifier_usage_error(p->name, "--expect-ak: expected the AK name, %zu hex digits",
                                            2 * sizeof(ret->expect_ak));
            ret->has_expect_ak = true;
            break;
        case OPT_VERSION: printf("%s %s\n", p->name, TRUSTME_VERSION); exit(0);
        case 'h': p->usage(stdout); exit(0);
        default:
            if (c < VERIFIER_OPT_OWN)
                return EXIT_USAGE;
            if ((r = p->take(userdata, c, optarg)) != 0)
                return r;
        }
    }
    return 0;
}
