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
            return tm_err_set(err, EFBIG, "%s: the files add up to more than %d bytes", paths[i],
                              VERIFY_PEM_MAX);
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

int attest_inputs_load(char *const *anchors, size_t n_anchors, char *const *crls, size_t n_crls,
                       const char *reference, struct attest_inputs *ret, tm_err *err)
{
    struct attest_inputs in = {0};
    _cleanup_(refvalues_files_done) struct refvalues_files rf = {0};
    int r = read_pems(anchors, n_anchors, &in.anchors, &in.anchors_len, err);
    if (r == 0 && n_crls)
        r = read_pems(crls, n_crls, &in.crls, &in.crls_len, err);
    if (r == 0 && (r = refvalues_read_files(reference, &rf, err)) < 0)
        tm_err_prefix(err, "reference values (sign REFS.json with trustme-pki sign)");
    if (r < 0) {
        attest_inputs_done(&in);
        return r;
    }
    tm_err e = {0};
    if (refvalues_load(&rf, in.anchors, in.anchors_len, in.crls, in.crls_len, 0, &in.refs, &e) < 0)
        snprintf(in.refs_error, sizeof(in.refs_error), "%s: %s", reference, e.msg);
    *ret = in;
    return 0;
}

void attest_inputs_done(struct attest_inputs *in)
{
    free(in->anchors);
    free(in->crls);
    refvalues_free(in->refs);
    *in = (struct attest_inputs){0};
}

struct attest_policy attest_inputs_policy(const struct attest_inputs *in, const uint8_t *nonce,
                                          size_t nonce_len, const uint32_t *pcrs, size_t npcrs)
{
    return (struct attest_policy){
        .nonce = nonce, .nonce_len = nonce_len, .pcrs = pcrs, .npcrs = npcrs,
        .anchors_pem = in->anchors, .anchors_len = in->anchors_len,
        .crls_pem = in->crls, .crls_len = in->crls_len,
        .refs = in->refs, .refs_error = in->refs_error,
    };
}
