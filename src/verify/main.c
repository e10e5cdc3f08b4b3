/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-verify: remote attestation of a trustme device (docs/ATTESTATION.md). Fetches a quote
 * for a fresh nonce from the device's tpmd, or reads one saved earlier, and runs verify_core's
 * checks against the anchors, CRLs and signed reference values given here — never against
 * anything the device sends as trusted. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "attest_check.h"
#include "attest_opts.h"
#include "inputs.h"
#include "vtpm_ek.h"
#include "key_attest.h"
#include "verifier_args.h"
#include "keyattest.h"
#include "cleanup.h"
#include "client.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "version.h"

#define EXIT_UNTRUSTED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

/* The options shared with `trustme attest` (attest_optlist.h), then trustme-verify's own. */
static const struct help_line {
    const char *name, *value, *help;
} help_lines[] = {
#define ATTEST_OPTION_HELP(id, name, value, help) {name, value, help},
    ATTEST_OPTIONS(ATTEST_OPTION_HELP)
#undef ATTEST_OPTION_HELP
        {"expect-ak", "NAME",
         "the device's AK name (hex, as `trustme device info` shows it): without "
         "it, any device certified by the Device CA passes"},
    {"last-reset", "N",
     "the TPM reset count last seen from this AK: a lower one fails \"TPM "
     "clock\" (an old quote or a rolled-back TPM)"},
    {"vtpm-ek", "CERTS.pem",
     "also check a container vTPM's EK certificate (first in the file, then the device's "
     "vTPM issuer chain): it must chain to --ak-anchor through a vTPM issuer a --device-ca "
     "certified, and be the EK the device logged last for that container (\"vTPM EK\"; "
     "repeatable, docs/VTPM.md)"},
    {"timeout", "S", "seconds for the whole exchange (default 10)"},
    {"save-response", "FILE",
     "write the response as received to FILE and the nonce (hex) to "
     "FILE.nonce"},
    {"response", "FILE", "check a saved response instead, for the nonce --nonce HEX"},
    {"nonce", "HEX", "the nonce of --response FILE"},
    {"version", NULL, "print the version"},
};

/* "  --name VALUE   help", the help wrapped at 79 columns from column 23. */
static void help_option(FILE *out, const struct help_line *l)
{
    int col = fprintf(out, "  --%s%s%s", l->name, l->value ? " " : "", l->value ? l->value : "");
    if (col > 22) {
        fputc('\n', out);
        col = 0;
    }
    for (const char *h = l->help; *h;) {
        size_t n = strlen(h), width = 79 - 23;
        if (n > width) {
            n = width;
            while (n > 0 && h[n] != ' ')
                n--;
            if (n == 0)
                n = width;
        }
        fprintf(out, "%*s%.*s\n", 23 - col, "", (int)n, h);
        col = 0;
        h += n;
        while (*h == ' ')
            h++;
    }
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-verify HOST:PORT TRUST REFERENCE [--pcr N ...] [--expect-ak NAME]\n"
                 "                      [--last-reset N] [--json] [--timeout S] [--save-response FILE]\n"
                 "                      [--vtpm-ek CERTS.pem ...]\n"
                 "       trustme-verify --response FILE --nonce HEX TRUST REFERENCE [--pcr N ...] [...]\n"
                 "       trustme-verify --key-attestation CERTS.pem --ak-anchor ROOT.pem --device-ca CA.pem\n"
                 "                      (--crl CRL.pem ... | --no-crl) (--challenge HEX | --any-challenge)\n"
                 "                      [--vtpm-key KEY.json] [--json]\n"
                 "  TRUST:     --ak-anchor ROOT.pem --device-ca CA.pem --rim-anchor ROOT.pem\n"
                 "             --rim-ca CA.pem (each repeatable) (--crl CRL.pem ... | --no-crl)\n"
                 "  REFERENCE: --reference REFS.json [--min-version N]\n"
                 "\n"
                 "Ask the device's trustme-tpmd at HOST:PORT for a TPM quote over a fresh 32-byte nonce\n"
                 "and check it: certificate chain, AK binding, quote signature, nonce, PCR digest, event\n"
                 "log, reference values, TPM clock (docs/ATTESTATION.md). --ak-anchor, --device-ca,\n"
                 "--rim-anchor, --rim-ca, --crl and --pcr are repeatable.\n"
                 "\n"
                 "--key-attestation checks a keystore key's attestation instead (docs/KEYSTORE.md): the\n"
                 "key's certificate, the container attestation certificate and the AK's chain, leaf\n"
                 "first, as a container's keystore gives them; prints the container and the key, and\n"
                 "requires the verifier's --challenge (--any-challenge: any, a replay verifies too).\n"
                 "--vtpm-key: the container's vTPM key as its owner pinned it (trustme-owner\n"
                 "--fleet-key): a key of security level tpm must then come with that key's\n"
                 "TPM2_Certify of it.\n"
                 "\n");
    for (size_t i = 0; i < sizeof(help_lines) / sizeof(help_lines[0]); i++)
        if (help_lines[i].help)
            help_option(out, &help_lines[i]);
    fprintf(out, "\n"
                 "Exit status: 0 every check passed, 1 a check failed, 2 usage error (or unreadable\n"
                 "anchors, CAs, CRLs, reference files), 3 the device could not be reached or did not\n"
                 "answer with a quote.\n");
}

#define usage_error(...) verifier_usage_error("trustme-verify", __VA_ARGS__)

static int save_response(const char *path, const uint8_t *buf, size_t len, const uint8_t nonce[ATTEST_NONCE_LEN],
                         tm_err *err)
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

struct options {
    const char *target, *save, *response, *nonce_hex, *key_attestation, *challenge_hex, *vtpm_key;
    bool any_challenge; /* --any-challenge: the caller knows the attestation may be a replay */
    const char *vtpm_ek[VTPM_EK_FILES_MAX];
    size_t n_vtpm_ek;
    struct verifier_args common; /* the options `trustme attest` and trustme-owner have too */
    bool has_last_reset;
    uint32_t last_reset;
};

enum {
    OPT_SAVE = VERIFIER_OPT_OWN,
    OPT_RESPONSE,
    OPT_NONCE,
    OPT_LAST_RESET,
    OPT_KEY_ATTESTATION,
    OPT_CHALLENGE,
    OPT_ANY_CHALLENGE,
    OPT_VTPM_EK,
    OPT_VTPM_KEY
};

static int take_option(void *userdata, int c, char *value)
{
    struct options *o = userdata;
    uint64_t u;
    switch (c) {
    case OPT_LAST_RESET:
        if (attest_parse_u64(value, UINT32_MAX, &u) < 0)
            return usage_error("--last-reset %s: expected a reset count 0..%u", value, UINT32_MAX);
        o->has_last_reset = true;
        o->last_reset = (uint32_t)u;
        break;
    case OPT_SAVE: o->save = value; break;
    case OPT_RESPONSE: o->response = value; break;
    case OPT_NONCE: o->nonce_hex = value; break;
    case OPT_KEY_ATTESTATION: o->key_attestation = value; break;
    case OPT_CHALLENGE: o->challenge_hex = value; break;
    case OPT_ANY_CHALLENGE: o->any_challenge = true; break;
    case OPT_VTPM_KEY: o->vtpm_key = value; break;
    case OPT_VTPM_EK:
        if (o->n_vtpm_ek == VTPM_EK_FILES_MAX)
            return usage_error("--vtpm-ek: at most %d", VTPM_EK_FILES_MAX);
        o->vtpm_ek[o->n_vtpm_ek++] = value;
        break;
    }
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option own[] = {{"last-reset", required_argument, NULL, OPT_LAST_RESET},
                                        {"save-response", required_argument, NULL, OPT_SAVE},
                                        {"response", required_argument, NULL, OPT_RESPONSE},
                                        {"nonce", required_argument, NULL, OPT_NONCE},
                                        {"key-attestation", required_argument, NULL, OPT_KEY_ATTESTATION},
                                        {"challenge", required_argument, NULL, OPT_CHALLENGE},
                                        {"any-challenge", no_argument, NULL, OPT_ANY_CHALLENGE},
                                        {"vtpm-ek", required_argument, NULL, OPT_VTPM_EK},
                                        {"vtpm-key", required_argument, NULL, OPT_VTPM_KEY},
                                        {NULL, 0, NULL, 0}};
    static const struct verifier_program prog = {"trustme-verify", usage, own, take_option};
    int r = verifier_args_parse(&prog, argc, argv, &o->common, o);
    if (r != 0)
        return r;
    if (o->key_attestation) {
        if (o->n_vtpm_ek)
            return usage_error("--vtpm-ek goes with a quote, not --key-attestation");
        if (optind != argc || o->response || o->save)
            return usage_error("--key-attestation takes no HOST:PORT, --response or --save-response");
        /* As --crl or --no-crl: freshness is the verifier's explicit choice, since without a
         * challenge a copy of an old attestation verifies exactly as a new one does. */
        if (!o->challenge_hex == !o->any_challenge)
            return usage_error("--key-attestation needs --challenge HEX (the challenge you gave the keystore) "
                               "or --any-challenge (one of them)");
        return 0;
    }
    if (o->challenge_hex || o->any_challenge || o->vtpm_key)
        return usage_error("--challenge, --any-challenge and --vtpm-key go with --key-attestation");
    if (o->response ? optind != argc : optind != argc - 1)
        return usage_error(o->response ? "no HOST:PORT with --response" : "one HOST:PORT expected");
    o->target = o->response ? NULL : argv[optind];
    if (!o->response != !o->nonce_hex)
        return usage_error("--response FILE and --nonce HEX go together");
    if (o->response && o->save)
        return usage_error("--save-response is for a response fetched from a device");
    return 0;
}

/* Concatenated files of one list option (a trust input: unreadable is a usage error). */
static int read_list(const struct options *o, enum attest_option opt, char **ret, size_t *ret_len, tm_err *err)
{
    char *all = NULL;
    size_t len = 0;
    for (size_t i = 0; i < o->common.shared.n_files[opt]; i++) {
        _cleanup_free_ char *data = NULL;
        size_t dlen = 0;
        char *grown;
        if (read_file(o->common.shared.files[opt][i], VERIFY_PEM_MAX, &data, &dlen, err) < 0 ||
            !(grown = realloc(all, len + dlen + 2))) {
            free(all);
            return err->code ? -err->code : tm_err_set(err, ENOMEM, "out of memory");
        }
        all = grown;
        memcpy(all + len, data, dlen);
        len += dlen;
        all[len++] = '\n';
        all[len] = '\0';
    }
    *ret = all;
    *ret_len = len;
    return 0;
}

/* KEY.json as trustme-owner --fleet-key writes it: {"container", "handle", "name", "public"}, the
 * public part a TPMT_PUBLIC in hex. */
static int read_vtpm_key(const char *path, uint8_t *pub, size_t *pub_len, char container[37], tm_err *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        return tm_err_set(err, EINVAL, "--vtpm-key %s: %s", path, je.text);
    const char *hex = json_string_value(json_object_get(j, "public"));
    const char *c = json_string_value(json_object_get(j, "container"));
    size_t n = hex ? strlen(hex) : 0;
    int r = 0;
    if (!hex || !c || strlen(c) != 36 || n == 0 || n % 2 || n / 2 > *pub_len ||
        tm_hex_decode_str(hex, pub, n / 2, TM_HEX_ANY_CASE, NULL) < 0)
        r = tm_err_set(err, EINVAL, "--vtpm-key %s: expected \"container\" (a UUID) and \"public\" (hex)", path);
    else {
        *pub_len = n / 2;
        memcpy(container, c, 37);
    }
    json_decref(j);
    return r;
}

static int key_attestation(const struct options *o)
{
    tm_err err = {0};
    _cleanup_free_ char *anchors = NULL, *cas = NULL, *crls = NULL, *certs = NULL;
    size_t anchors_len = 0, cas_len = 0, crls_len = 0, certs_len = 0;
    struct ca_pins pins = {0};
    uint8_t challenge[TM_KEY_CHALLENGE_MAX];
    size_t challenge_len = 0;
    if (!o->common.shared.n_files[ATTEST_OPT_AK_ANCHOR] || !o->common.shared.n_files[ATTEST_OPT_DEVICE_CA])
        return usage_error("--key-attestation needs --ak-anchor ROOT.pem and --device-ca CA.pem");
    if (!o->common.shared.no_crl == !o->common.shared.n_files[ATTEST_OPT_CRL])
        return usage_error("--key-attestation needs --crl CRL.pem or --no-crl (one of them)");
    if (o->challenge_hex) {
        size_t n = strlen(o->challenge_hex);
        if (n % 2 || n / 2 > sizeof(challenge) ||
            tm_hex_decode_str(o->challenge_hex, challenge, n / 2, TM_HEX_ANY_CASE, NULL) < 0)
            return usage_error("--challenge: expected up to %zu bytes in hex", sizeof(challenge));
        challenge_len = n / 2;
    }
    uint8_t vtpm_pub[1024];
    size_t vtpm_pub_len = sizeof(vtpm_pub);
    char vtpm_container[37] = "";
    if (o->vtpm_key && read_vtpm_key(o->vtpm_key, vtpm_pub, &vtpm_pub_len, vtpm_container, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (read_list(o, ATTEST_OPT_AK_ANCHOR, &anchors, &anchors_len, &err) < 0 ||
        read_list(o, ATTEST_OPT_DEVICE_CA, &cas, &cas_len, &err) < 0 ||
        ca_pins_parse(cas, cas_len, "--device-ca", &pins, &err) < 0 ||
        read_list(o, ATTEST_OPT_CRL, &crls, &crls_len, &err) < 0 ||
        read_file(o->key_attestation, VERIFY_PEM_MAX, &certs, &certs_len, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        return EXIT_USAGE;
    }
    struct key_attest_policy pol = {
        .ak_anchors_pem = anchors,
        .ak_anchors_len = anchors_len,
        .device_cas = &pins,
        .crls_pem = crls_len ? crls : NULL,
        .crls_len = crls_len,
        .challenge = o->challenge_hex ? challenge : NULL,
        .challenge_len = challenge_len,
        .vtpm_key_public = o->vtpm_key ? vtpm_pub : NULL,
        .vtpm_key_public_len = o->vtpm_key ? vtpm_pub_len : 0,
        .vtpm_key_container = o->vtpm_key ? vtpm_container : NULL,
    };
    struct key_attest_report rep;
    if (key_attest_check(certs, certs_len, &pol, &rep, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s: %s\n", o->key_attestation, err.msg);
        return EXIT_UNTRUSTED;
    }
    key_attest_print(stdout, &rep, o->common.shared.json);
    fflush(stdout);
    return rep.trusted ? 0 : EXIT_UNTRUSTED;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int r = parse_options(argc, argv, &o);
    if (r)
        return r;
    if (o.key_attestation)
        return key_attestation(&o);
    signal(SIGPIPE, SIG_IGN);
    /* tss2-mu would log each malformed TPM structure of an untrusted response to stderr; the
     * report says what was wrong. TSS2_LOG in the environment still wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    tm_err err = {0};
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = attest_opts_files(&o.common.shared);
    if (attest_inputs_load(&files, &in, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        return EXIT_USAGE;
    }
    /* What to quote is the verifier's: its --pcr, else the signed reference values' PCRs. */
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = attest_inputs_pcrs(&in, o.common.shared.pcrs, o.common.shared.npcrs, pcrs);

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
        if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce) || getrandom(&id, sizeof(id), 0) != sizeof(id)) {
            perror("trustme-verify: getrandom");
            return EXIT_UNREACHABLE;
        }
        if (attest_fetch(o.target, o.common.timeout_s * 1000, id, nonce, sizeof(nonce), pcrs, npcrs, &resp, &resp_len,
                         &err) < 0) {
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
    struct attest_policy pol = attest_inputs_policy(&in, nonce, sizeof(nonce), pcrs, npcrs, o.common.shared.npcrs > 0);
    pol.has_last_reset = o.has_last_reset;
    pol.last_reset = o.last_reset;
    if (o.common.has_expect_ak) {
        pol.expect_ak_name = o.common.expect_ak;
        pol.expect_ak_name_len = sizeof(o.common.expect_ak);
    }
    /* The vTPM EK bundles are the verifier's inputs: unreadable is a usage error. */
    char *ek_pem[VTPM_EK_FILES_MAX] = {0};
    size_t ek_len[VTPM_EK_FILES_MAX] = {0};
    for (size_t i = 0; i < o.n_vtpm_ek; i++)
        if (read_file(o.vtpm_ek[i], VERIFY_PEM_MAX, &ek_pem[i], &ek_len[i], &err) < 0) {
            fprintf(stderr, "trustme-verify: --vtpm-ek: %s\n", err.msg);
            while (i--)
                free(ek_pem[i]);
            return EXIT_USAGE;
        }
    struct attest_report rep;
    Trustme__Attest__AttestResponse *msg = NULL;
    if (attest_response_decode(resp, resp_len, &msg, &err) < 0) {
        fprintf(stderr, "trustme-verify: %s\n", err.msg);
        for (size_t i = 0; i < o.n_vtpm_ek; i++)
            free(ek_pem[i]);
        return EXIT_UNREACHABLE;
    }
    attest_check_quote(msg->quote, &pol, &rep);
    for (size_t i = 0; i < o.n_vtpm_ek; i++) {
        struct attest_check c;
        vtpm_ek_check(ek_pem[i], ek_len[i], o.vtpm_ek[i], msg->quote, &pol, &rep, NULL, NULL, &c);
        attest_report_add(&rep, &c);
        free(ek_pem[i]);
    }
    trustme__attest__attest_response__free_unpacked(msg, NULL);
    if (o.common.shared.json ? attest_report_print_json(stdout, &rep) < 0 : (attest_report_print(stdout, &rep), 0))
        return EXIT_UNTRUSTED;
    fflush(stdout);
    return rep.trusted ? 0 : EXIT_UNTRUSTED;
}
