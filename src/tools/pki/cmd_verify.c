/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki verify: the daemon's own check (src/scd/verify.c, linked as is), so that what
 * passes here passes there. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "pki.h"
#include "verify.h"

#define LIST_MAX 64

/* The named PEM files, concatenated (each ends in a newline, so blocks never run together). */
static int read_all(const char *const *paths, size_t n, char **ret, size_t *ret_len, tm_err *err)
{
    _cleanup_free_ char *all = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *text = NULL;
        size_t tlen;
        int r = read_file(paths[i], VERIFY_PEM_MAX, &text, &tlen, err);
        if (r < 0)
            return r;
        if (len + tlen + 2 > VERIFY_PEM_MAX)
            return tm_err_set(err, EFBIG, "%s: more than %d bytes of PEM in all", paths[i], VERIFY_PEM_MAX);
        char *grown = realloc(all, len + tlen + 2);
        if (!grown)
            return tm_err_set(err, ENOMEM, "out of memory");
        all = grown;
        memcpy(all + len, text, tlen);
        len += tlen;
        all[len++] = '\n';
        all[len] = '\0';
    }
    *ret = steal_ptr(all);
    *ret_len = len;
    return 0;
}

struct mapping {
    void *addr;
    size_t len;
};

static void unmapp(struct mapping *m)
{
    if (m->addr && m->len)
        munmap(m->addr, m->len);
}

static int map_file(const char *path, struct mapping *m, tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot open %s", path);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", path);
    m->len = (size_t)st.st_size;
    if (m->len == 0) {
        static char empty[1];
        m->addr = empty;
        return 0;
    }
    m->addr = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->addr == MAP_FAILED) {
        m->addr = NULL;
        return tm_err_sys(err, "cannot map %s", path);
    }
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    enum { OPT_ANCHOR = 256, OPT_CRL, OPT_EKU };
    static const struct option opts[] = {{"anchor", required_argument, NULL, OPT_ANCHOR},
                                         {"crl", required_argument, NULL, OPT_CRL},
                                         {"eku", required_argument, NULL, OPT_EKU},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *anchors[LIST_MAX], *crls[LIST_MAX], *eku = "codeSigning";
    size_t n_anchors = 0, n_crls = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ANCHOR:
            if (n_anchors == LIST_MAX)
                return usage_error("verify", "at most %d --anchor", LIST_MAX);
            anchors[n_anchors++] = optarg;
            break;
        case OPT_CRL:
            if (n_crls == LIST_MAX)
                return usage_error("verify", "at most %d --crl", LIST_MAX);
            crls[n_crls++] = optarg;
            break;
        case OPT_EKU: eku = optarg; break;
        case 'h': pki_usage(stdout); return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage_error("verify", "one signed file expected");
    if (n_anchors == 0)
        return usage_error("verify", "at least one --anchor is required");
    const char *file = argv[optind];
    if (strlen(file) > PATH_MAX - 32)
        return usage_error("verify", "file name too long");

    tm_err err = {0};
    char sig_path[PATH_MAX], chain_path[PATH_MAX];
    snprintf(sig_path, sizeof(sig_path), "%s.sig", file);
    snprintf(chain_path, sizeof(chain_path), "%s.chain.pem", file);
    _cleanup_(unmapp) struct mapping data = {0};
    _cleanup_free_ char *sig = NULL, *chain = NULL, *anchor_pem = NULL, *crl_pem = NULL;
    size_t sig_len, chain_len, anchor_len, crl_len = 0;
    const char *chain_paths[] = {chain_path};
    int r = map_file(file, &data, &err);
    if (r == 0)
        r = read_file(sig_path, 4096, &sig, &sig_len, &err);
    if (r == 0)
        r = read_all(chain_paths, 1, &chain, &chain_len, &err);
    if (r == 0)
        r = read_all(anchors, n_anchors, &anchor_pem, &anchor_len, &err);
    if (r == 0 && n_crls)
        r = read_all(crls, n_crls, &crl_pem, &crl_len, &err);
    if (r < 0)
        return verb_fail("verify", &err);
    struct verify_request rq = {
        .data = data.addr,
        .data_len = data.len,
        .sig = (const uint8_t *)sig,
        .sig_len = sig_len,
        .chain_pem = chain,
        .chain_len = chain_len,
        .anchors_pem = anchor_pem,
        .anchors_len = anchor_len,
        .crls_pem = crl_pem,
        .crls_len = crl_len,
        .eku = eku,
    };
    struct verify_result res;
    if ((r = verify_signed(&rq, &res, &err)) < 0)
        return tm_err_prefix(&err, "%s", file), verb_fail("verify", &err);
    printf("%s: OK\nsigner: %s\nanchor: %s\nanchor-sha256: %s\nalgorithm: %s\n", file, res.leaf_subject,
           res.anchor_subject, res.anchor_sha256_hex,
           res.alg == VERIFY_RSA_PSS_SHA256 ? "rsa-pss-sha256" : "ecdsa-p256-sha256");
    return 0;
}
