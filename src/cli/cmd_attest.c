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
#include "inputs.h"
#include "cleanup.h"
#include "cli.h"
#include "fileio.h"

#define EXIT_UNTRUSTED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define INPUTS_MAX 64 /* files of each list option, as trustme-verify */

static const char usage_text[] =
    "Usage: trustme attest --ak-anchor ROOT.pem --device-ca CA.pem --rim-anchor ROOT.pem\n"
    "                      --rim-ca CA.pem (--crl CRL.pem ... | --no-crl)\n"
    "                      --reference REFS.json [--min-version N] [--pcr N ...] [--json]\n"
    "  Quote this device's TPM over a fresh nonce and check it as trustme-verify does:\n"
    "  certificate chain (to --ak-anchor, issued by --device-ca), AK binding, quote\n"
    "  signature, nonce, PCR digest, event log, reference values (REFS.json with .sig and\n"
    "  .chain.pem, signed under --rim-anchor by a certificate of --rim-ca), TPM clock. Each\n"
    "  option but --reference, --min-version and --no-crl is repeatable.\n"
    "  Exit status: 0 trusted, 1 a check failed, 2 usage error (or unreadable anchors, CAs,\n"
    "  CRLs, reference files), 3 no quote could be had (trustmed or tpmd).\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("trustme attest: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see trustme attest --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

enum { LIST_AK_ANCHOR, LIST_DEVICE_CA, LIST_RIM_ANCHOR, LIST_RIM_CA, LIST_CRL, LISTS };
static const char *const list_option[LISTS] = {"--ak-anchor", "--device-ca", "--rim-anchor",
                                               "--rim-ca", "--crl"};

struct attest_opts {
    const char *reference;
    char *files[LISTS][INPUTS_MAX];
    size_t n_files[LISTS];
    bool no_crl;
    uint64_t min_version;
    uint32_t pcrs[ATTEST_PCRS];
    size_t npcrs;
};

static int list_index(const char *a)
{
    for (int l = 0; l < LISTS; l++)
        if (strcmp(a, list_option[l]) == 0)
            return l;
    return -1;
}

static int parse_opts(struct cli *cli, int argc, char **argv, struct attest_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (strcmp(a, "--json") == 0) {
            cli->json = true;
        } else if (list_index(a) >= 0 && has_value) {
            int l = list_index(a);
            if (o->n_files[l] >= INPUTS_MAX)
                return usage_error("at most %d %s files", INPUTS_MAX, a);
            o->files[l][o->n_files[l]++] = argv[++i];
        } else if (strcmp(a, "--no-crl") == 0) {
            o->no_crl = true;
        } else if (strcmp(a, "--anchor") == 0) {
            return usage_error("--anchor trusted a root for every role: give --ak-anchor and "
                               "--device-ca for AK certificates, --rim-anchor and --rim-ca for "
                               "the reference values' signer");
        } else if (strcmp(a, "--min-version") == 0 && has_value) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || argv[i][0] == '-' || v > INT64_MAX)
                return usage_error("--min-version %s: expected a version number", argv[i]);
            o->min_version = v;
        } else if (strcmp(a, "--reference") == 0 && has_value) {
            o->reference = argv[++i];
        } else if (strcmp(a, "--pcr") == 0 && has_value) {
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || v < 0 || v >= ATTEST_PCRS)
                return usage_error("--pcr %s: expected a PCR index 0..%d", argv[i], ATTEST_PCRS - 1);
            for (size_t k = 0; k < o->npcrs; k++)
                if (o->pcrs[k] == (uint32_t)v)
                    return usage_error("--pcr %ld given twice", v);
            o->pcrs[o->npcrs++] = (uint32_t)v;
        } else {
            return usage_error("unexpected %s", a);
        }
    }
    if (!o->reference)
        return usage_error("--reference REFS.json is required (make it with trustme-pki rim, "
                           "sign it with trustme-pki sign)");
    return 0;
}

/* Evidence for nonce from trustmed: tpmd's serialized AttestResponse (malloc'ed in *ret), once
 * it is known to answer this request. 0, or the exit status after printing why not. */
static int fetch_evidence(struct cli *cli, const uint8_t nonce[ATTEST_NONCE_LEN],
                          const uint32_t *pcrs, size_t npcrs, uint8_t **ret, size_t *ret_len)
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
                     "client?", (int)resp->body_case);
    } else if (resp->attest->response.len > ATTEST_RESPONSE_MAX) {
        r = cli_fail("the evidence has %zu bytes, more than %u", resp->attest->response.len,
                     ATTEST_RESPONSE_MAX);
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

int cmd_attest(struct cli *cli, int argc, char **argv)
{
    struct attest_opts o = {0};
    int r = parse_opts(cli, argc, argv, &o);
    if (r)
        return r;
    tm_err err = {0};
    /* tss2-mu would log each malformed TPM structure of the evidence to stderr; the report
     * says what was wrong. TSS2_LOG in the environment still wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = {
        .ak_anchors = o.files[LIST_AK_ANCHOR], .n_ak_anchors = o.n_files[LIST_AK_ANCHOR],
        .device_cas = o.files[LIST_DEVICE_CA], .n_device_cas = o.n_files[LIST_DEVICE_CA],
        .rim_anchors = o.files[LIST_RIM_ANCHOR], .n_rim_anchors = o.n_files[LIST_RIM_ANCHOR],
        .rim_cas = o.files[LIST_RIM_CA], .n_rim_cas = o.n_files[LIST_RIM_CA],
        .crls = o.files[LIST_CRL], .n_crls = o.n_files[LIST_CRL], .no_crl = o.no_crl,
        .reference = o.reference, .min_version = o.min_version,
    };
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
    r = fetch_evidence(cli, nonce, pcrs, npcrs, &evidence, &evidence_len);
    if (r)
        return r;
    struct attest_policy pol = attest_inputs_policy(&in, nonce, sizeof(nonce), pcrs, npcrs,
                                                    o.npcrs > 0);
    struct attest_report rep;
    if (attest_check_response(evidence, evidence_len, &pol, &rep, &err) < 0) {
        cli_fail("%s", err.msg);
        return EXIT_UNREACHABLE;
    }
    if (cli->json ? attest_report_print_json(stdout, &rep) < 0 : (attest_report_print(stdout, &rep), 0))
        return EXIT_UNTRUSTED;
    fflush(stdout);
    return rep.trusted ? 0 : EXIT_UNTRUSTED;
}
