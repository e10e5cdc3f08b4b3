/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme migrate offer|export|import|commit|abort|send (docs/MIGRATION.md). The offer's evidence
 * is checked here, by verify_core (the checks of trustme-verify and `trustme attest`) and its
 * migrate_offer_check; trustmed does what needs the container's keys and the TPM. The files are
 * carried by hand between the two devices, or `send` carries them over the target's migration
 * endpoint (TCP), which changes none of the checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest_check.h"
#include "attest_opts.h"
#include "cleanup.h"
#include "cli.h"
#include "deadline.h"
#include "fileio.h"
#include "hex.h"
#include "inputs.h"
#include "migrate_offer.h"
#include "pin_input.h"
#include "secmem.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define OFFER_MAX (4u * 1024 * 1024 + 65536)

static int read_nonce(const struct cli_args *a, uint8_t nonce[ATTEST_NONCE_LEN])
{
    const char *hex = cli_value(a, "nonce");
    tm_err err;
    if (!hex)
        return cli_usage_error(a->verb, "--nonce HEX is required: 64 hex digits the source chose");
    if (tm_hex_decode_str(hex, nonce, ATTEST_NONCE_LEN, 0, &err) < 0)
        return cli_usage_error(a->verb, "--nonce: %s", err.msg);
    return 0;
}

static int write_message(const char *path, const Trustme__MigrateMessage *m)
{
    size_t len = trustme__migrate_message__get_packed_size(m);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return cli_fail("out of memory");
    trustme__migrate_message__pack(m, buf);
    tm_err err;
    if (write_file_atomic(path, buf, len, 0600, &err) < 0)
        return cli_fail("%s", err.msg);
    return 0;
}

static Trustme__MigrateMessage *read_message(const char *path, ProtobufCBinaryData *ret_raw)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err err;
    if (read_file(path, OFFER_MAX, &data, &len, &err) < 0) {
        cli_fail("%s", err.msg);
        return NULL;
    }
    Trustme__MigrateMessage *m = trustme__migrate_message__unpack(NULL, len, (uint8_t *)data);
    if (!m) {
        cli_fail("%s is not a migration offer, receipt or refusal", path);
        return NULL;
    }
    if (ret_raw) {
        ret_raw->data = (uint8_t *)steal_ptr(data);
        ret_raw->len = len;
    }
    return m;
}

/* Send a migrate request; the answer (a MigrateMessage, or Ok) in *ret. 0 or the exit status. */
static int call(struct cli *cli, Trustme__MigrateRequest *mr, Trustme__Response **ret)
{
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_MIGRATE;
    req.migrate = mr;
    if (cli_call(cli, &req, ret))
        return EXIT_REFUSED;
    return 0;
}

/* A nonce from trustmed that commits to this device's AK (docs/MIGRATION.md "Source binding"). */
static int source_nonce(struct cli *cli, uint8_t ret[ATTEST_NONCE_LEN])
{
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    mr.verb = "nonce";
    Trustme__Response *resp = NULL;
    int r = call(cli, &mr, &resp);
    if (r)
        return r;
    if (resp->body_case != TRUSTME__RESPONSE__BODY_MIGRATE || !resp->migrate->has_nonce ||
        resp->migrate->nonce.len != ATTEST_NONCE_LEN) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("unexpected answer from trustmed");
    }
    memcpy(ret, resp->migrate->nonce.data, ATTEST_NONCE_LEN);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_migrate_nonce(struct cli *cli, const struct cli_args *a)
{
    (void)a;
    uint8_t nonce[ATTEST_NONCE_LEN];
    int r = source_nonce(cli, nonce);
    if (r)
        return r;
    char hex[2 * ATTEST_NONCE_LEN + 1];
    tm_hex(nonce, ATTEST_NONCE_LEN, hex);
    printf("%s\n", hex);
    return 0;
}

int cmd_migrate_offer(struct cli *cli, const struct cli_args *a)
{
    uint8_t nonce[ATTEST_NONCE_LEN];
    const char *out = cli_value(a, "out");
    int r = read_nonce(a, nonce);
    if (r)
        return r;
    if (!out)
        return cli_usage_error(a->verb, "--out OFFER is required");
    uint32_t pcrs[ATTEST_PCRS];
    size_t npcrs = 0;
    for (size_t g = 0; g < a->ngiven; g++) {
        if (strcmp(a->verb->opts[a->given[g].opt].name, "pcr") != 0)
            continue;
        uint64_t v;
        if (attest_parse_u64(a->given[g].value, 23, &v) < 0 || npcrs == ATTEST_PCRS)
            return cli_usage_error(a->verb, "--pcr: 0..23");
        pcrs[npcrs++] = (uint32_t)v;
    }
    /* The quote first (through trustmed, as `trustme attest`), then the certified key. */
    _cleanup_free_ uint8_t *evidence = NULL;
    size_t evidence_len = 0;
    if ((r = attest_fetch_evidence(cli, nonce, pcrs, npcrs, &evidence, &evidence_len)))
        return r;
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    const char *lifetime = cli_value(a, "lifetime");
    if (lifetime) {
        uint64_t v;
        if (attest_parse_u64(lifetime, 30 * 24 * 3600, &v) < 0 || v == 0)
            return cli_usage_error(a->verb, "--lifetime: 1..2592000 seconds");
        mr.has_lifetime = true;
        mr.lifetime = (uint32_t)v;
    }
    mr.verb = "offer";
    mr.has_nonce = true;
    mr.nonce = (ProtobufCBinaryData){.len = sizeof(nonce), .data = nonce};
    Trustme__Response *resp = NULL;
    if ((r = call(cli, &mr, &resp)))
        return r;
    if (resp->body_case != TRUSTME__RESPONSE__BODY_MIGRATE || !resp->migrate->offer_id) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("unexpected answer from trustmed");
    }
    Trustme__MigrateMessage *m = resp->migrate;
    m->has_attest_response = m->has_nonce = true;
    m->attest_response = (ProtobufCBinaryData){.len = evidence_len, .data = evidence};
    m->nonce = (ProtobufCBinaryData){.len = sizeof(nonce), .data = nonce};
    r = write_message(out, m);
    if (!r)
        printf("offer %s written to %s (valid until %llu, unix time)\n", m->offer_id, out,
               (unsigned long long)m->expires);
    m->attest_response.data = m->nonce.data = NULL; /* not the response's to free */
    m->has_attest_response = m->has_nonce = false;
    trustme__response__free_unpacked(resp, NULL);
    return r ? EXIT_REFUSED : 0;
}

/* The verifier's checks of the offer's quote, then of its migration key. */
static int verify_offer(const struct cli_args *a, const Trustme__MigrateMessage *offer, const uint8_t *nonce,
                        struct migrate_offer_key *ret)
{
    struct attest_opts o = {0};
    tm_err err = {0};
    for (size_t g = 0; g < a->ngiven; g++)
        if (a->given[g].opt < ATTEST_OPTS &&
            attest_opts_take(&o, (enum attest_option)a->given[g].opt, a->given[g].value, &err) < 0)
            return cli_usage_error(a->verb, "%s", err.msg);
    if (!o.reference)
        return cli_usage_error(a->verb, "--reference REFS.json is required: the target must run approved "
                                        "software with an approved device config");
    setenv("TSS2_LOG", "all+NONE", 0);
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = attest_opts_files(&o);
    if (attest_inputs_load(&files, &in, &err) < 0) {
        fprintf(stderr, "trustme migrate export: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (!offer->has_attest_response || !offer->has_nonce)
        return cli_fail("the offer has no attestation (made by `trustme migrate offer`?)");
    if (offer->nonce.len != ATTEST_NONCE_LEN || memcmp(offer->nonce.data, nonce, ATTEST_NONCE_LEN) != 0)
        fprintf(stderr, "trustme migrate export: the offer names another nonce than --nonce (checked below)\n");
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = attest_inputs_pcrs(&in, o.pcrs, o.npcrs, pcrs);
    struct attest_policy pol = attest_inputs_policy(&in, nonce, ATTEST_NONCE_LEN, pcrs, npcrs, o.npcrs > 0);
    /* Which device: over TCP whoever answers at the address does, and a man in the middle can
     * hand on the offer of another device of the PKI that runs approved software. */
    uint8_t expect_ak[34];
    const char *expect = cli_value(a, "expect-ak");
    if (expect) {
        if (tm_hex_decode_str(expect, expect_ak, sizeof(expect_ak), TM_HEX_ANY_CASE, NULL) < 0)
            return cli_usage_error(a->verb, "--expect-ak: expected the AK name, %zu hex digits", 2 * sizeof(expect_ak));
        pol.expect_ak_name = expect_ak;
        pol.expect_ak_name_len = sizeof(expect_ak);
    }
    struct attest_report rep;
    Trustme__Attest__AttestResponse *ar = NULL;
    if (attest_response_decode(offer->attest_response.data, offer->attest_response.len, &ar, &err) < 0)
        return cli_fail("offer refused: the attestation does not decode: %s", err.msg);
    attest_check_quote(ar->quote, &pol, &rep);
    if (!rep.trusted) {
        attest_report_print(stderr, &rep);
        for (size_t i = 0; i < ATTEST_CHECK_COUNT; i++)
            if (!rep.checks[i].ok)
                fprintf(stderr, "trustme migrate export: offer refused: %s: %s\n", rep.checks[i].name,
                        rep.checks[i].detail);
        trustme__attest__attest_response__free_unpacked(ar, NULL);
        return EXIT_REFUSED;
    }
    int r = migrate_offer_check(ar->quote, offer->key_public.data, offer->has_key_public ? offer->key_public.len : 0,
                                offer->certify_attest.data, offer->certify_attest.len, offer->certify_sig.data,
                                offer->certify_sig.len, nonce, ATTEST_NONCE_LEN, ret, &err);
    trustme__attest__attest_response__free_unpacked(ar, NULL);
    if (r < 0) {
        fprintf(stderr, "trustme migrate export: offer refused: %s\n", err.msg);
        return EXIT_REFUSED;
    }
    return 0;
}

static int verify_and_export(struct cli *cli, const struct cli_args *a, const char *name,
                             const Trustme__MigrateMessage *offer, ProtobufCBinaryData raw, const uint8_t *nonce,
                             const char *out);

int cmd_migrate_export(struct cli *cli, const struct cli_args *a)
{
    const char *name = a->argv[0], *offer_path = cli_value(a, "offer"), *out = cli_value(a, "out");
    uint8_t nonce[ATTEST_NONCE_LEN];
    int r = read_nonce(a, nonce);
    if (r)
        return r;
    if (!offer_path || !out)
        return cli_usage_error(a->verb, "--offer OFFER and --out BUNDLE are required");
    _cleanup_free_ char *abs_out = NULL;
    if (out[0] != '/') {
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        if (!cwd || asprintf(&abs_out, "%s/%s", cwd, out) < 0)
            return cli_fail("out of memory");
        out = abs_out;
    }
    ProtobufCBinaryData raw = {0};
    Trustme__MigrateMessage *offer = read_message(offer_path, &raw);
    if (!offer)
        return EXIT_REFUSED;
    r = verify_and_export(cli, a, name, offer, raw, nonce, out);
    trustme__migrate_message__free_unpacked(offer, NULL);
    free(raw.data);
    return r;
}

/* Verify the offer (raw: as the target sent it), then have trustmed export name to out. */
static int verify_and_export(struct cli *cli, const struct cli_args *a, const char *name,
                             const Trustme__MigrateMessage *offer, ProtobufCBinaryData raw, const uint8_t *nonce,
                             const char *out)
{
    struct migrate_offer_key key;
    int r = verify_offer(a, offer, nonce, &key);
    if (r)
        return r;
    /* The PIN opens the data key; the PUK is checked too, and the target's token keeps both
     * (docs/MIGRATION.md "The token"). */
    _cleanup_secret_ struct secret *pin = NULL, *puk = NULL;
    struct pin_input in;
    tm_err perr;
    char prompt[160], puk_prompt[200];
    snprintf(prompt, sizeof(prompt), "PIN for %s", name);
    snprintf(puk_prompt, sizeof(puk_prompt), "PUK for %s (its token on the target keeps the same PIN and PUK)", name);
    if ((r = pin_input_open(&in, cli_value(a, "pin-file"), false, &perr)) == 0) {
        if ((r = pin_read(&in, prompt, &pin, &perr)) == 0)
            r = pin_read(&in, puk_prompt, &puk, &perr);
        pin_input_close(&in);
    }
    if (r < 0)
        return cli_fail("%s (the export needs the container's PIN and its PUK)", perr.msg);
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    mr.verb = "export";
    mr.id = (char *)name;
    mr.has_offer = mr.has_wrap_spki = mr.has_ak_spki = mr.has_ak_name = true;
    mr.offer = raw;
    mr.wrap_spki = (ProtobufCBinaryData){.len = key.wrap_spki_len, .data = key.wrap_spki};
    mr.ak_spki = (ProtobufCBinaryData){.len = key.ak_spki_len, .data = key.ak_spki};
    mr.ak_name = (ProtobufCBinaryData){.len = sizeof(key.ak_name), .data = key.ak_name};
    mr.path = (char *)out;
    /* trustmed checks that it names this device's AK (the target installs only for that AK). */
    mr.has_nonce = true;
    mr.nonce =
        (ProtobufCBinaryData){.len = ATTEST_NONCE_LEN, .data = (uint8_t *)nonce}; /* (protobuf-c does not write it) */
    if (pin) {
        mr.has_pin = true;
        mr.pin = (ProtobufCBinaryData){.len = strlen((const char *)pin->data), .data = pin->data};
    }
    if (puk) {
        mr.has_puk = true;
        mr.puk = (ProtobufCBinaryData){.len = strlen((const char *)puk->data), .data = puk->data};
    }
    Trustme__Response *resp = NULL;
    if ((r = call(cli, &mr, &resp)))
        return r;
    if (resp->body_case == TRUSTME__RESPONSE__BODY_MIGRATE && resp->migrate->bundle_id)
        printf("bundle %s for offer %s written to %s; %s is locked (migrating) until commit or abort\n",
               resp->migrate->bundle_id, resp->migrate->offer_id ? resp->migrate->offer_id : "?", out, name);
    else
        r = cli_fail("unexpected answer from trustmed");
    trustme__response__free_unpacked(resp, NULL);
    return r ? EXIT_REFUSED : 0;
}

int cmd_migrate_import(struct cli *cli, const struct cli_args *a)
{
    const char *in = a->argv[0], *out = cli_value(a, "out");
    if (!out)
        return cli_usage_error(a->verb, "--out RECEIPT is required (the receipt, or a signed refusal)");
    _cleanup_free_ char *abs_in = NULL;
    if (in[0] != '/') {
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        if (!cwd || asprintf(&abs_in, "%s/%s", cwd, in) < 0)
            return cli_fail("out of memory");
        in = abs_in;
    }
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    mr.verb = cli_flag(a, "receipt-again") ? "receipt" : "import";
    mr.path = (char *)in;
    Trustme__Response *resp = NULL;
    int r = call(cli, &mr, &resp);
    if (r)
        return r;
    if (resp->body_case != TRUSTME__RESPONSE__BODY_MIGRATE || !resp->migrate->bundle_id) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("unexpected answer from trustmed");
    }
    const Trustme__MigrateMessage *m = resp->migrate;
    if ((r = write_message(out, m)) == 0) {
        if (m->refused && m->refused[0]) {
            fprintf(stderr,
                    "trustme migrate import: refused: %s\n(the signed refusal is in %s: the source may abort "
                    "with it)\n",
                    m->refused, out);
            r = EXIT_REFUSED;
        } else {
            printf("%s %s (%s); receipt written to %s. Set its PIN with change-pin, then start it.\n",
                   cli_flag(a, "receipt-again") ? "installed from this bundle already:" : "imported",
                   m->name ? m->name : "?", m->uuid ? m->uuid : "?", out);
        }
    }
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

static int commit_or_abort(struct cli *cli, const struct cli_args *a, const char *verb, const char *file)
{
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    mr.verb = (char *)verb;
    mr.id = a->argv[0];
    _cleanup_free_ char *data = NULL;
    if (file) {
        size_t len = 0;
        tm_err err;
        if (read_file(file, OFFER_MAX, &data, &len, &err) < 0)
            return cli_fail("%s", err.msg);
        mr.has_receipt = true;
        mr.receipt = (ProtobufCBinaryData){.len = len, .data = (uint8_t *)data};
    }
    Trustme__Response *resp = NULL;
    int r = call(cli, &mr, &resp);
    if (r)
        return r;
    printf("%s: %s\n", a->argv[0],
           strcmp(verb, "commit") == 0 ? "committed: its keys and data are erased here, the tombstone is signed"
                                       : "migration aborted: it may start here again");
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_migrate_commit(struct cli *cli, const struct cli_args *a)
{
    const char *receipt = cli_value(a, "receipt");
    if (!receipt)
        return cli_usage_error(a->verb, "--receipt RECEIPT is required (the target's, from migrate import)");
    return commit_or_abort(cli, a, "commit", receipt);
}

int cmd_migrate_abort(struct cli *cli, const struct cli_args *a)
{
    return commit_or_abort(cli, a, "abort", cli_value(a, "refusal"));
}

/* ---- send: the same steps over the target's migration endpoint --------------------------------- */

#define NET_STEP_MS 60000 /* connecting, each request and each chunk */
#define NET_CHUNK (1024u * 1024) /* MIGRATE_NET_CHUNK of the endpoint */

static int net_send(int fd, const Trustme__MigrateNetRequest *rq, int64_t deadline, tm_err *err)
{
    size_t len = trustme__migrate_net_request__get_packed_size(rq);
    _cleanup_free_ uint8_t *buf = malloc(4 + len);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    buf[0] = (uint8_t)(len >> 24);
    buf[1] = (uint8_t)(len >> 16);
    buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    trustme__migrate_net_request__pack(rq, buf + 4);
    int r = tm_send_all(fd, buf, 4 + len, deadline);
    if (r < 0)
        return tm_err_set(err, -r, "cannot send to the target: %s", strerror(-r));
    return 0;
}

/* The endpoint's answer; an error it sent is returned as such (err: its message). */
static int net_recv(int fd, int64_t deadline, Trustme__MigrateNetResponse **ret, tm_err *err)
{
    uint8_t hdr[4];
    int r = tm_recv_all(fd, hdr, sizeof(hdr), deadline);
    if (r < 0)
        return tm_err_set(err, -r, "no answer from the target: %s",
                          r == -EPIPE ? "it closed the connection" : strerror(-r));
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > OFFER_MAX)
        return tm_err_set(err, EMSGSIZE, "the target's answer announces %u bytes, more than any answer has", len);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = tm_recv_all(fd, buf, len, deadline)) < 0)
        return tm_err_set(err, -r, "the target's answer was cut short: %s", strerror(-r));
    Trustme__MigrateNetResponse *resp = trustme__migrate_net_response__unpack(NULL, len, buf);
    if (!resp)
        return tm_err_set(err, EBADMSG, "the target's answer does not decode");
    if (resp->error || resp->has_code) {
        r = tm_err_set(err, resp->has_code && resp->code > 0 ? resp->code : EIO, "the target refused: %s",
                       resp->error ? resp->error : "no reason given");
        trustme__migrate_net_response__free_unpacked(resp, NULL);
        return r;
    }
    *ret = resp;
    return 0;
}

/* The PCRs the offer's quote must cover: those the verification will check (--pcr, else the
 * reference values'). */
static int send_pcrs(const struct cli_args *a, uint32_t *pcrs, size_t *ret_n)
{
    struct attest_opts o = {0};
    tm_err err = {0};
    for (size_t g = 0; g < a->ngiven; g++)
        if (a->given[g].opt < ATTEST_OPTS &&
            attest_opts_take(&o, (enum attest_option)a->given[g].opt, a->given[g].value, &err) < 0)
            return cli_usage_error(a->verb, "%s", err.msg);
    if (!o.reference)
        return cli_usage_error(a->verb, "--reference REFS.json is required: the target must run approved "
                                        "software with an approved device config");
    _cleanup_(attest_inputs_done) struct attest_inputs in = {0};
    struct attest_inputs_files files = attest_opts_files(&o);
    if (attest_inputs_load(&files, &in, &err) < 0) {
        fprintf(stderr, "trustme migrate send: %s\n", err.msg);
        return EXIT_USAGE;
    }
    *ret_n = attest_inputs_pcrs(&in, o.pcrs, o.npcrs, pcrs);
    return 0;
}

#define CHALLENGE_LEN 32 /* MIGRATE_CHALLENGE_LEN of the endpoint */

/* This device's trustmed has its AK sign the announcement of name's exported bundle for the
 * target's challenge (docs/MIGRATION.md "The announcement"). 0 or the exit status. */
static int announce(struct cli *cli, const char *name, const uint8_t *challenge, uint64_t size, Trustme__Response **ret)
{
    Trustme__MigrateRequest mr = TRUSTME__MIGRATE_REQUEST__INIT;
    mr.verb = "announce";
    mr.id = (char *)name;
    mr.has_challenge = mr.has_size = true;
    mr.challenge = (ProtobufCBinaryData){.len = CHALLENGE_LEN, .data = (uint8_t *)challenge};
    mr.size = size;
    int r = call(cli, &mr, ret);
    if (r)
        return r;
    if ((*ret)->body_case != TRUSTME__RESPONSE__BODY_MIGRATE || !(*ret)->migrate->upload) {
        trustme__response__free_unpacked(*ret, NULL);
        *ret = NULL;
        return cli_fail("unexpected answer from trustmed");
    }
    return 0;
}

int cmd_migrate_announce(struct cli *cli, const struct cli_args *a)
{
    uint8_t challenge[CHALLENGE_LEN];
    const char *hex = cli_value(a, "challenge"), *size_s = cli_value(a, "size");
    uint64_t size = 0;
    if (!hex || tm_hex_decode_str(hex, challenge, sizeof(challenge), TM_HEX_ANY_CASE, NULL) < 0)
        return cli_usage_error(a->verb, "--challenge HEX: the target's challenge, %zu hex digits",
                               2 * sizeof(challenge));
    if (!size_s || attest_parse_u64(size_s, UINT64_MAX, &size) < 0 || size == 0)
        return cli_usage_error(a->verb, "--size BYTES: the bundle's size");
    Trustme__Response *resp = NULL;
    int r = announce(cli, a->argv[0], challenge, size, &resp);
    if (r)
        return r;
    const Trustme__MigrateUpload *u = resp->migrate->upload;
    size_t len = trustme__migrate_upload__get_packed_size(u);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
    _cleanup_free_ char *out = malloc(2 * len + 1);
    if (!buf || !out) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("out of memory");
    }
    trustme__migrate_upload__pack(u, buf);
    tm_hex(buf, len, out);
    printf("%s\n", out);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* Stream the bundle at path, announced by this device's AK (the target reserves nothing for an
 * unauthenticated peer); the target's answer (receipt or refusal) in *ret. A bundle whose offer
 * the target used already is not sent: the answer comes at once. */
static int send_bundle(struct cli *cli, const char *name, const char *to, const char *path, int64_t answer_ms,
                       Trustme__MigrateNetResponse **ret, tm_err *err)
{
    _cleanup_close_ int bfd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (bfd < 0 || fstat(bfd, &st) < 0)
        return tm_err_sys(err, "%s", path);
    _cleanup_close_ int fd = tm_dial(to, tm_now_ms() + NET_STEP_MS, err);
    if (fd < 0)
        return fd;
    /* The connection's challenge, then the announcement our AK signed for it. */
    Trustme__MigrateNetRequest rq = TRUSTME__MIGRATE_NET_REQUEST__INIT;
    rq.has_version = rq.has_challenge = true;
    rq.version = 1;
    rq.challenge = true;
    Trustme__MigrateNetResponse *resp = NULL;
    int r = net_send(fd, &rq, tm_now_ms() + NET_STEP_MS, err);
    if (r < 0 || (r = net_recv(fd, tm_now_ms() + NET_STEP_MS, &resp, err)) < 0)
        return r;
    uint8_t challenge[CHALLENGE_LEN];
    bool have_challenge = resp->has_challenge && resp->challenge.len == CHALLENGE_LEN;
    if (have_challenge)
        memcpy(challenge, resp->challenge.data, CHALLENGE_LEN);
    trustme__migrate_net_response__free_unpacked(resp, NULL);
    if (!have_challenge)
        return tm_err_set(err, EPROTO, "the target sent no challenge");
    Trustme__Response *signed_ = NULL;
    if (announce(cli, name, challenge, (uint64_t)st.st_size, &signed_))
        return tm_err_set(err, EPERM, "this device's trustmed did not announce the bundle");
    Trustme__MigrateNetRequest up = TRUSTME__MIGRATE_NET_REQUEST__INIT;
    up.has_version = true;
    up.version = 1;
    up.upload = signed_->migrate->upload;
    r = net_send(fd, &up, tm_now_ms() + NET_STEP_MS, err);
    trustme__response__free_unpacked(signed_, NULL);
    /* The target checks the chain with its trust anchors and asks its TPM about the offer. */
    if (r < 0 || (r = net_recv(fd, tm_now_ms() + NET_STEP_MS, &resp, err)) < 0)
        return r;
    if (resp->message) {
        /* The offer was used: its receipt again, or its signed refusal, without the bytes. */
        *ret = resp;
        return 0;
    }
    bool ready = resp->has_ready && resp->ready;
    trustme__migrate_net_response__free_unpacked(resp, NULL);
    if (!ready)
        return tm_err_set(err, EPROTO, "the target did not take the bundle");
    _cleanup_free_ uint8_t *chunk = malloc(NET_CHUNK);
    if (!chunk)
        return tm_err_set(err, ENOMEM, "out of memory");
    uint64_t sent = 0, total = (uint64_t)st.st_size;
    int64_t last = tm_now_ms();
    while (sent < total) {
        size_t want = total - sent < NET_CHUNK ? (size_t)(total - sent) : NET_CHUNK;
        size_t got = 0;
        while (got < want) {
            ssize_t n = read(bfd, chunk + got, want - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? tm_err_sys(err, "cannot read %s", path)
                             : tm_err_set(err, EIO, "%s became shorter while it was sent", path);
            got += (size_t)n;
        }
        Trustme__MigrateNetRequest c = TRUSTME__MIGRATE_NET_REQUEST__INIT;
        c.has_chunk = true;
        c.chunk = (ProtobufCBinaryData){.len = want, .data = chunk};
        if ((r = net_send(fd, &c, tm_now_ms() + NET_STEP_MS, err)) < 0)
            return r;
        sent += want;
        if (tm_now_ms() - last >= 1000 || sent == total) {
            fprintf(stderr, "trustme: bundle: %llu of %llu MiB sent\n", (unsigned long long)(sent >> 20),
                    (unsigned long long)((total + (1 << 20) - 1) >> 20));
            last = tm_now_ms();
        }
    }
    /* The target syncs it, checks it and imports it: that takes a while. */
    return net_recv(fd, tm_now_ms() + answer_ms, ret, err);
}

/* Steps 1 and 2 of send: the target's offer for a fresh nonce, verified, and the export to out. */
static int offer_and_export(struct cli *cli, const struct cli_args *a, const char *name, const char *to,
                            const char *out)
{
    tm_err err = {0};
    Trustme__MigrateNetResponse *resp = NULL;
    int r;
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = 0;
    if ((r = send_pcrs(a, pcrs, &npcrs)))
        return r;
    uint8_t ak_name[34];
    const char *expect = cli_value(a, "expect-ak");
    if (expect && tm_hex_decode_str(expect, ak_name, sizeof(ak_name), TM_HEX_ANY_CASE, NULL) < 0)
        return cli_usage_error(a->verb, "--expect-ak: expected the AK name, %zu hex digits", 2 * sizeof(ak_name));
    /* The address names no device: without the target's AK name, a man in the middle can hand on
     * the offer of any device of the PKI that runs approved software (docs/MIGRATION.md "Over
     * TCP"). So the owner names the target, or says in so many words that any such device will do. */
    if (!expect && !cli_flag(a, "any-trusted-target"))
        return cli_usage_error(a->verb, "--expect-ak NAME is required: the target's AK name (`trustme device info` "
                                        "there); or --any-trusted-target to let any device of the PKI that runs "
                                        "approved software take the container");
    if (expect && cli_flag(a, "any-trusted-target"))
        return cli_usage_error(a->verb, "--expect-ak and --any-trusted-target exclude each other");
    /* 1. The offer, for a fresh nonce that names this device's AK (the target binds the offer to
     * it): as `migrate offer` writes it on the target. */
    uint8_t nonce[ATTEST_NONCE_LEN];
    if ((r = source_nonce(cli, nonce)))
        return r;
    {
        _cleanup_close_ int fd = tm_dial(to, tm_now_ms() + NET_STEP_MS, &err);
        if (fd < 0)
            return cli_fail("%s", err.msg);
        Trustme__MigrateNetRequest rq = TRUSTME__MIGRATE_NET_REQUEST__INIT;
        rq.has_version = rq.has_nonce = true;
        rq.version = 1;
        rq.nonce = (ProtobufCBinaryData){.len = sizeof(nonce), .data = nonce};
        rq.n_pcrs = npcrs;
        rq.pcrs = pcrs;
        /* The target quotes and certifies a key: a few TPM commands. */
        if (net_send(fd, &rq, tm_now_ms() + NET_STEP_MS, &err) < 0 ||
            net_recv(fd, tm_now_ms() + NET_STEP_MS, &resp, &err) < 0)
            return cli_fail("offer: %s", err.msg);
    }
    if (!resp->message || !resp->message->offer_id) {
        trustme__migrate_net_response__free_unpacked(resp, NULL);
        return cli_fail("offer: the target's answer is no offer");
    }
    size_t raw_len = trustme__migrate_message__get_packed_size(resp->message);
    _cleanup_free_ uint8_t *raw = malloc(raw_len ? raw_len : 1);
    if (!raw) {
        trustme__migrate_net_response__free_unpacked(resp, NULL);
        return cli_fail("out of memory");
    }
    trustme__migrate_message__pack(resp->message, raw);
    fprintf(stderr, "trustme: offer %s from %s\n", resp->message->offer_id, to);
    /* 2. Verified and exported exactly as `migrate export` does; the bundle stays here until the
     * commit, so a lost connection can still be carried by hand. */
    r = verify_and_export(cli, a, name, resp->message, (ProtobufCBinaryData){.len = raw_len, .data = raw}, nonce, out);
    trustme__migrate_net_response__free_unpacked(resp, NULL);
    return r;
}

int cmd_migrate_send(struct cli *cli, const struct cli_args *a)
{
    const char *name = a->argv[0], *to = cli_value(a, "to"), *out = cli_value(a, "bundle");
    if (!to || !out)
        return cli_usage_error(a->verb, "--to HOST:PORT and --bundle BUNDLE are required");
    uint64_t timeout_s = 600;
    const char *timeout = cli_value(a, "timeout");
    if (timeout && (attest_parse_u64(timeout, 24 * 3600, &timeout_s) < 0 || timeout_s == 0))
        return cli_usage_error(a->verb, "--timeout: 1..86400 seconds");
    _cleanup_free_ char *abs_out = NULL, *receipt = NULL;
    if (out[0] != '/') {
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        if (!cwd || asprintf(&abs_out, "%s/%s", cwd, out) < 0)
            return cli_fail("out of memory");
        out = abs_out;
    }
    const char *receipt_path = cli_value(a, "receipt");
    if (!receipt_path) {
        if (asprintf(&receipt, "%s.answer", out) < 0)
            return cli_fail("out of memory");
        receipt_path = receipt;
    }
    int r;
    /* --resend: the bundle of an earlier send, whose answer never came. */
    if (!cli_flag(a, "resend") && (r = offer_and_export(cli, a, name, to, out)))
        return r;
    tm_err err = {0};
    Trustme__MigrateNetResponse *resp = NULL;
    /* 3. The bundle to the target, its signed answer back. */
    if (send_bundle(cli, name, to, out, (int64_t)timeout_s * 1000, &resp, &err) < 0 || !resp->message) {
        if (resp)
            trustme__migrate_net_response__free_unpacked(resp, NULL);
        return cli_fail("%s\n%s stays locked (migrating) with its bundle in %s: send it again (the same "
                        "command with --resend), or carry it to the target (`trustme migrate import` there), "
                        "then commit or abort with the answer",
                        err.msg[0] ? err.msg : "the target's answer is no receipt", name, out);
    }
    const Trustme__MigrateMessage *m = resp->message;
    r = write_message(receipt_path, m);
    if (r) {
        trustme__migrate_net_response__free_unpacked(resp, NULL);
        return EXIT_REFUSED;
    }
    if (m->refused && m->refused[0]) {
        fprintf(stderr,
                "trustme migrate send: the target refused the bundle: %s\n(its signed refusal is in %s: `trustme "
                "migrate abort %s --refusal %s` releases the lock)\n",
                m->refused, receipt_path, name, receipt_path);
        trustme__migrate_net_response__free_unpacked(resp, NULL);
        return EXIT_REFUSED;
    }
    printf("%s imported by the target as %s; its receipt is in %s\n", name, m->uuid ? m->uuid : "?", receipt_path);
    trustme__migrate_net_response__free_unpacked(resp, NULL);
    /* 4. The commit, with the receipt, as `migrate commit` runs it. */
    return commit_or_abort(cli, a, "commit", receipt_path);
}
