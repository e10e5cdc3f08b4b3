/* trustme-verify: remote attestation of a trustme device (docs/ATTESTATION.md). Fetches a quote
 * for a fresh nonce from the device's tpmd, or reads one saved earlier, and runs verify_core's
 * checks against the anchors, CRLs and signed reference values given here — never against
 * anything the device sends as trusted. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "attest_check.h"
#include "inputs.h"
#include "cleanup.h"
#include "client.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "version.h"

#define EXIT_UNTRUSTED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define INPUTS_MAX 64 /* files of each of --ak-anchor, --device-ca, --rim-anchor, --rim-ca, --crl */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: trustme-verify HOST:PORT TRUST REFERENCE [--pcr N ...] [--expect-ak NAME]\n"
        "                      [--last-reset N] [--json] [--timeout S] [--save-response FILE]\n"
        "       trustme-verify --response FILE --nonce HEX TRUST REFERENCE [--pcr N ...] [...]\n"
        "  TRUST:     --ak-anchor ROOT.pem --device-ca CA.pem --rim-anchor ROOT.pem\n"
        "             --rim-ca CA.pem (each repeatable) (--crl CRL.pem ... | --no-crl)\n"
        "  REFERENCE: --reference REFS.json [--min-version N]\n"
        "\n"
        "Ask the device's trustme-tpmd at HOST:PORT for a TPM quote over a fresh 32-byte nonce\n"
        "and check it: certificate chain, AK binding, quote signature, nonce, PCR digest, event\n"
        "log, reference values, TPM clock (docs/ATTESTATION.md).\n"
        "\n"
        "  --ak-anchor ROOT.pem the root of AK certificates (the Customer root)\n"
        "  --device-ca CA.pem   the CA that issues AK certificates (the Device CA): an AK\n"
        "                       certificate of another CA under the root fails\n"
        "  --rim-anchor ROOT.pem the root of the reference values' signer (Software Signing)\n"
        "  --rim-ca CA.pem      the CA that issues their signer (the Software Signing sub-CA)\n"
        "  --crl CRL.pem        CRLs: every CA of both chains needs one (the PKI's crls.pem)\n"
        "  --no-crl             check nothing for revocation (required without --crl)\n"
        "  --reference REFS.json signed reference values (REFS.json.sig, REFS.json.chain.pem):\n"
        "                       the approved hashes, the PCRs to quote, the required events\n"
        "  --min-version N      refuse reference values whose rim_version is below N\n"
        "  --pcr N              quote PCR N (0..23; repeatable) instead of the reference\n"
        "                       values' PCRs; events on other PCRs are then not checked\n"
        "  --expect-ak NAME     the device's AK name (hex, as `trustme device info` shows it):\n"
        "                       without it, any device certified by the Device CA passes\n"
        "  --last-reset N       the TPM reset count last seen from this AK: a lower one fails\n"
        "                       \"TPM clock\" (an old quote or a rolled-back TPM)\n"
        "  --timeout S          seconds for the whole exchange (default 10)\n"
        "  --json               {\"verdict\", \"checks\": [{\"name\", \"ok\", \"detail\"}], \"events\",\n"
        "                       \"clock\"}\n"
        "  --save-response FILE write the response as received to FILE and the nonce (hex) to\n"
        "                       FILE.nonce\n"
        "  --response FILE      check a saved response instead, for the nonce --nonce HEX\n"
        "\n"
        "Exit status: 0 every check passed, 1 a check failed, 2 usage error (or unreadable\n"
        "anchors, CAs, CRLs, reference files), 3 the device could not be reached or did not\n"
        "answer with a quote.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trustme-verify: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see trustme-verify --help)\n");
    va_end(ap);
    return EXIT_USAGE;
}

static int save_response(const char *path, const uint8_t *buf, size_t len,
                         const uint8_t nonce[ATTEST_NONCE_LEN], tm_err *err)
{
    char hex[2 * ATTEST_NONCE_LEN + 2], npath[4096];
    tm_hex(nonce, ATTEST_NONCE_LEN, hex);
    strcat(hex, "\n");
    if (snprintf(npath, sizeof(npath), "%s.nonce", path) >= (int)sizeof(npath))
        return tm_err_set(err, ENAMETOOLONG, "%s: path too long", path);
    int r = write_file_atomic(path, buf, len, 0644, err);
    if (r >= 0)
        r = write_file_atomic(npath, hex, strlen(hex), 0644, err);
    return r;
}

enum { LIST_AK_ANCHOR, LIST_DEVICE_CA, LIST_RIM_ANCHOR, LIST_RIM_CA, LIST_CRL, LISTS };
static const char *const list_option[LISTS] = {"ak-anchor", "device-ca", "rim-anchor", "rim-ca",
                                               "crl"};

struct options {
    const char *target, *reference, *save, *response, *nonce_hex;
    uint8_t expect_ak[34];
    bool has_expect_ak;
    char *files[LISTS][INPUTS_MAX];
    size_t n_files[LISTS];
    bool no_crl;
    uint64_t min_version;
    bool has_last_reset;
    uint32_t last_reset;
    uint32_t pcrs[ATTEST_PCRS];
    size_t npcrs;
    bool json;
    int timeout_s;
};

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_LIST = 256, OPT_REF = OPT_LIST + LISTS, OPT_PCR, OPT_JSON, OPT_TIMEOUT, OPT_SAVE,
           OPT_RESPONSE, OPT_NONCE, OPT_VERSION, OPT_EXPECT_AK, OPT_NO_CRL, OPT_MIN_VERSION,
           OPT_LAST_RESET, OPT_ANCHOR };
    static const struct option opts[] = {
        {"ak-anchor", required_argument, NULL, OPT_LIST + LIST_AK_ANCHOR},
        {"device-ca", required_argument, NULL, OPT_LIST + LIST_DEVICE_CA},
        {"rim-anchor", required_argument, NULL, OPT_LIST + LIST_RIM_ANCHOR},
        {"rim-ca", required_argument, NULL, OPT_LIST + LIST_RIM_CA},
        {"crl", required_argument, NULL, OPT_LIST + LIST_CRL},
        {"no-crl", no_argument, NULL, OPT_NO_CRL},
        {"min-version", required_argument, NULL, OPT_MIN_VERSION},
        {"last-reset", required_argument, NULL, OPT_LAST_RESET},
        {"anchor", required_argument, NULL, OPT_ANCHOR},
        {"reference", required_argument, NULL, OPT_REF},
        {"pcr", required_argument, NULL, OPT_PCR},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"save-response", required_argument, NULL, OPT_SAVE},
        {"response", required_argument, NULL, OPT_RESPONSE},
        {"nonce", required_argument, NULL, OPT_NONCE},
        {"expect-ak", required_argument, NULL, OPT_EXPECT_AK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    o->timeout_s = 10;
    int c;
    char *end;
    long v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= OPT_LIST && c < OPT_LIST + LISTS) {
            int l = c - OPT_LIST;
            if (o->n_files[l] >= INPUTS_MAX)
                return usage_error("at most %d --%s files", INPUTS_MAX, list_option[l]);
            o->files[l][o->n_files[l]++] = optarg;
            continue;
        }
        uint64_t u;
        switch (c) {
        case OPT_ANCHOR:
            return usage_error("--anchor trusted a root for every role: give --ak-anchor and "
                               "--device-ca for AK certificates, --rim-anchor and --rim-ca for "
                               "the reference values' signer");
        case OPT_NO_CRL: o->no_crl = true; break;
        case OPT_MIN_VERSION:
            if (parse_u64(optarg, INT64_MAX, &u) < 0)
                return usage_error("--min-version %s: expected a version number", optarg);
            o->min_version = u;
            break;
        case OPT_LAST_RESET:
            if (parse_u64(optarg, UINT32_MAX, &u) < 0)
                return usage_error("--last-reset %s: expected a reset count 0..%u", optarg,
                                   UINT32_MAX);
            o->has_last_reset = true;
            o->last_reset = (uint32_t)u;
            break;
        case OPT_REF: o->reference = optarg; break;
        case OPT_PCR:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 23)
                return usage_error("--pcr %s: expected a PCR index 0..23", optarg);
            for (size_t i = 0; i < o->npcrs; i++)
                if (o->pcrs[i] == (uint32_t)v)
                    return usage_error("--pcr %ld given twice", v);
            o->pcrs[o->npcrs++] = (uint32_t)v;
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_TIMEOUT:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 3600)
                return usage_error("--timeout %s: expected seconds 1..3600", optarg);
            o->timeout_s = (int)v;
            break;
        case OPT_SAVE: o->save = optarg; break;
        case OPT_RESPONSE: o->response = optarg; break;
        case OPT_NONCE: o->nonce_hex = optarg; break;
        case OPT_EXPECT_AK:
            if (tm_hex_decode_str(optarg, o->expect_ak, sizeof(o->expect_ak), TM_HEX_ANY_CASE, NULL) < 0)
                return usage_error("--expect-ak: expected the AK name, %zu hex digits",
                                   2 * sizeof(o->expect_ak));
            o->has_expect_ak = true;
            break;
        case OPT_VERSION: printf("trustme-verify %s\n", TRUSTME_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: return EXIT_USAGE;
        }
    }
    if (o->response ? optind != argc : optind != argc - 1)
        return usage_error(o->response ? "no HOST:PORT with --response"
                                       : "one HOST:PORT expected");
    o->target = o->response ? NULL : argv[optind];
    if (!o->response != !o->nonce_hex)
        return usage_error("--response FILE and --nonce HEX go together");
    if (o->response && o->save)
        return usage_error("--save-response is for a response fetched from a device");
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int r = parse_options(argc, argv, &o);
    if (r)
        return r;
    signal(SIGPIPE, SIG_IGN);
    /* tss2-mu would log each malformed TPM structure of an untrusted response to stderr; the
     * report says what was wrong. TSS2_LOG in the environment still wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    tm_err err = {0};
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
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        return EXIT_USAGE;
    }
    /* What to quote is the verifier's: its --pcr, else the signed reference values' PCRs. */
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = attest_inputs_pcrs(&in, o.pcrs, o.npcrs, pcrs);

    uint8_t nonce[ATTEST_NONCE_LEN];
    _cleanup_free_ uint8_t *resp = NULL;
    size_t resp_len = 0;
    if (o.response) {
        if (tm_hex_decode_str(o.nonce_hex, nonce, sizeof(nonce), TM_HEX_ANY_CASE, NULL) < 0)
            return usage_error("--nonce: expected %d hex digits", 2 * ATTEST_NONCE_LEN);
        if (read_file(o.response, ATTEST_RESPONSE_MAX, (char **)&resp, &resp_len, &err) < 0) {
            fprintf(stderr, "trustme-verify: %s\n", err.msg);
            return EXIT_USAGE;
        }
    } else {
        uint64_t id;
        if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce) ||
            getrandom(&id, sizeof(id), 0) != sizeof(id)) {
            perror("trustme-verify: getrandom");
            return EXIT_UNREACHABLE;
        }
        if (attest_fetch(o.target, o.timeout_s * 1000, id, nonce, sizeof(nonce), pcrs, npcrs,
                         &resp, &resp_len, &err) < 0) {
            fprintf(stderr, "trustme-verify: %s\n", err.msg);
            return EXIT_UNREACHABLE;
        }
        if (o.save && save_response(o.save, resp, resp_len, nonce, &err) < 0) {
            fprintf(stderr, "trustme-verify: --save-response: %s\n", err.msg);
            return EXIT_USAGE;
        }
        Trustme__Attest__AttestResponse *msg = NULL;
        if (attest_response_decode(resp, resp_len, &msg, &err) == 0) {
            bool same = msg->has_id && msg->id == id;
            trustme__attest__attest_response__free_unpacked(msg, NULL);
            if (!same) {
                fprintf(stderr, "trustme-verify: the response's id is not the request's\n");
                return EXIT_UNREACHABLE;
            }
        }
    }
    struct attest_policy pol = attest_inputs_policy(&in, nonce, sizeof(nonce), pcrs, npcrs,
                                                    o.npcrs > 0);
    pol.has_last_reset = o.has_last_reset;
    pol.last_reset = o.last_reset;
    if (o.has_expect_ak) {
        pol.expect_ak_name = o.expect_ak;
        pol.expect_ak_name_len = sizeof(o.expect_ak);
    }
    struct attest_report rep;
    if (attest_check_response(resp, resp_len, &pol, &rep, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        return EXIT_UNREACHABLE;
    }
    if (o.json ? attest_report_print_json(stdout, &rep) < 0 : (attest_report_print(stdout, &rep), 0))
        return EXIT_UNTRUSTED;
    fflush(stdout);
    return rep.trusted ? 0 : EXIT_UNTRUSTED;
}
