/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme attest: remote attestation of the local device, checked in this process (never in
 * trustmed) by verify_core, the library behind trustme-verify: same checks, same report, same
 * exit status (docs/ATTESTATION.md). Only the transport differs: the evidence comes through
 * trustmed's control socket instead of tpmd's TCP endpoint. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "attest_check.h"
#include "attest_opts.h"
#include "inputs.h"
#include "cleanup.h"
#include "cli.h"
#include "fileio.h"

#define EXIT_UNTRUSTED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

/* The options, shared with trustme-verify (attest_optlist.h): the verb table lists them in
 * their enum's order, so that a given option's index is its enum attest_option. */
static int parse_opts(const struct cli_args *a, struct attest_opts *o)
{
    tm_err err;
    for (size_t g = 0; g < a->ngiven; g++)
        if (attest_opts_take(o, (enum attest_option)a->given[g].opt, a->given[g].value, &err) < 0)
            return cli_usage_error(a->verb, "%s", err.msg);
    if (!o->reference)
        return cli_usage_error(a->verb, "--reference REFS.json is required (make it with "
                                        "trustme-pki rim, sign it with trustme-pki sign)");
    return 0;
}

/* Evidence for nonce from trustmed (also `trustme migrate offer`'s): tpmd's serialized AttestResponse (malloc'ed in *ret), once
 * it is known to answer this request. 0, or the exit status after printing why not. */
int attest_fetch_evidence(struct cli *cli, const uint8_t nonce[ATTEST_NONCE_LEN], const uint32_t *pcrs, size_t npcrs,
                          uint8_t **ret, size_t *ret_len)
{
    Trustme__AttestRequest ar = TRUSTME__ATTEST_REQUEST__INIT;
    ar.has_nonce = true;
    ar.nonce.data = (uint8_t *)nonce;
    ar.nonce.len = ATTEST_NONCE_LEN;
    ar.n_pcrs = npcrs;
    ar.pcrs = (uint32_t *)pcrs;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_ATTEST;
    req.attest = &ar;
    Trustme__Response *resp;
    if (cli_call(cli, &req, &resp))
        return EXIT_UNREACHABLE;
    int r = 0;
    if (resp->body_case != TRUSTME__RESPONSE__BODY_ATTEST || !resp->attest->has_response) {
        r = cli_fail("unexpected answer from trustmed (body %d): is trustmed older than this "
                     "client?",
                     (int)resp->body_case);
    } else if (resp->attest->response.len > ATTEST_RESPONSE_MAX) {
        r = cli_fail("the evidence has %zu bytes, more than %u", resp->attest->response.len, ATTEST_RESPONSE_MAX);
    } else {
        /* trustmed sets the AttestResponse's id to the control request's id (req.id, filled in
         * by the call): a reply to some other request is not evidence for this nonce. */
        tm_err err;
        Trustme__Attest__AttestResponse *msg = NULL;
        const ProtobufCBinaryData *b = &resp->attest->response;
        if (attest_response_decode(b->data, b->len, &msg, &err) == 0) {
            bool same = msg->has_id && msg->id == req.id;
            trustme__attest__attest_response__free_unpacked(msg, NULL);
            if (!same)
                r = cli_fail("the evidence's id is not the request's");
        }
        /* Undecodable evidence is attest_check_response's to report, as for trustme-verify. */
        if (!r && !(*ret = malloc(b->len ? b->len : 1)))
            r = cli_fail("out of memory");
        if (!r) {
            memcpy(*ret, b->data, b->len);
            *ret_len = b->len;
        }
    }
    trustme__response__free_unpacked(resp, NULL);
    return r ? EXIT_UNREACHABLE : 0;
}

int cmd_attest(struct cli *cli, const struct cli_args *a)
{
    struct attest_opts o = {0};
    int r = parse_opts(a, &o);
    if (r)
        return r;
    tm_err err = {0};
    /* tss2-mu would log each malformed TPM structure of the evidence to stderr; the report
     * says what was wrong. TSS2_LOG in the environment still wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = attest_opts_files(&o);
    if (attest_inputs_load(&files, &in, &err) < 0) {
        fprintf(stderr, "trustme attest: %s (see trustme attest --help)\n", err.msg);
        return EXIT_USAGE;
    }
    /* What to quote is the verifier's: --pcr, else the signed reference values' PCRs. */
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = attest_inputs_pcrs(&in, o.pcrs, o.npcrs, pcrs);

    uint8_t nonce[ATTEST_NONCE_LEN];
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)) {
        cli_fail("getrandom: %s", strerror(errno));
        return EXIT_UNREACHABLE;
    }
    _cleanup_free_ uint8_t *evidence = NULL;
    size_t evidence_len = 0;
    r = attest_fetch_evidence(cli, nonce, pcrs, npcrs, &evidence, &evidence_len);
    if (r)
        return r;
    struct attest_policy pol = attest_inputs_policy(&in, nonce, sizeof(nonce), pcrs, npcrs, o.npcrs > 0);
    struct attest_report rep;
    if (attest_check_response(evidence, evidence_len, &pol, &rep, &err) < 0) {
        cli_fail("%s", err.msg);
        return EXIT_UNREACHABLE;
    }
    if (o.json ? attest_report_print_json(stdout, &rep) < 0 : (attest_report_print(stdout, &rep), 0))
        return EXIT_UNTRUSTED;
    fflush(stdout);
    return rep.trusted ? 0 : EXIT_UNTRUSTED;
}
