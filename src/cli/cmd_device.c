/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verbs about the device's TPM (docs/ATTESTATION.md): measurements, and device info, csr, cert
 * install and reseal. trustmed relays to trustme-tpmd; the certificates it returns are parsed
 * here, in the client, never in root. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "enrollment.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "secmem.h"

#define CERT_FILE_MAX (256 * 1024) /* trustmed's limit for the whole chain */
#define KEY_FILE_MAX 256 /* a recovery key file: 64 hex digits and a newline */
#define RECOVERY_KEY_LEN 32
#define SHORT_HASH 12 /* hex digits of a hash in the table */

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_PRETTY_FLAGS);
    putchar('\n');
    json_decref(o);
}

static json_t *hex_json(const ProtobufCBinaryData *b)
{
    _cleanup_free_ char *hex = malloc(b->len * 2 + 1);
    if (!hex)
        return NULL;
    tm_hex(b->data, b->len, hex);
    return tm_json_text(hex);
}

static json_t *str_json(const char *s)
{
    return tm_json_text(s ? s : "");
}

static json_t *bytes_str_json(protobuf_c_boolean has, const ProtobufCBinaryData *b)
{
    return json_stringn(has && b->data ? (const char *)b->data : "", has ? (int)b->len : 0);
}

/* cli_call, and check that the final answer is the one the request gets. */
static int simple_call(struct cli *cli, Trustme__Request *req, Trustme__Response **resp,
                       Trustme__Response__BodyCase want)
{
    int r = cli_call(cli, req, resp);
    if (r)
        return r;
    Trustme__Response__BodyCase got = (*resp)->body_case;
    if (got != want) {
        trustme__response__free_unpacked(*resp, NULL);
        return cli_fail("unexpected answer from trustmed (body %d): is trustmed older than this "
                        "client?",
                        (int)got);
    }
    return 0;
}

/* ---- measurements ----------------------------------------------------------------------------- */

int cmd_measurements(struct cli *cli, const struct cli_args *a)
{
    Trustme__MeasurementsRequest mr = TRUSTME__MEASUREMENTS_REQUEST__INIT;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_MEASUREMENTS;
    req.measurements = &mr;
    Trustme__Response *resp;
    int r = simple_call(cli, &req, &resp, TRUSTME__RESPONSE__BODY_MEASUREMENTS);
    if (r)
        return r;
    const Trustme__Measurements *m = resp->measurements;
    bool consistent = m->has_consistent && m->consistent;
    const char *why = m->inconsistency && m->inconsistency[0] ? m->inconsistency : "no reason given";
    if (cli->json) {
        json_t *o = json_object(), *events = json_array(), *pcrs = json_array();
        for (size_t i = 0; i < m->n_events; i++) {
            const Trustme__MeasurementEvent *e = m->events[i];
            json_t *ev = json_object();
            json_object_set_new(ev, "seq", json_integer((int64_t)e->seq));
            json_object_set_new(ev, "pcr", json_integer((int)e->pcr));
            json_object_set_new(ev, "type", str_json(e->type));
            json_object_set_new(ev, "name", str_json(e->name));
            json_object_set_new(ev, "sha256", hex_json(&e->sha256));
            json_array_append_new(events, ev);
        }
        for (size_t i = 0; i < m->n_pcrs; i++) {
            json_t *p = json_object();
            json_object_set_new(p, "index", json_integer((int)m->pcrs[i]->index));
            json_object_set_new(p, "sha256", hex_json(&m->pcrs[i]->sha256));
            json_array_append_new(pcrs, p);
        }
        json_object_set_new(o, "events", events);
        json_object_set_new(o, "pcrs", pcrs);
        json_object_set_new(o, "consistent", json_boolean(consistent));
        json_object_set_new(o, "inconsistency", str_json(consistent ? "" : why));
        print_json(o);
    } else {
        printf("%-5s %-4s %-17s %-34s %s\n", "SEQ", "PCR", "TYPE", "NAME", "SHA256");
        for (size_t i = 0; i < m->n_events; i++) {
            const Trustme__MeasurementEvent *e = m->events[i];
            char hex[2 * 32 + 1] = "-";
            if (e->sha256.len == 32) {
                tm_hex(e->sha256.data, 32, hex);
                hex[SHORT_HASH] = '\0';
            }
            printf("%-5llu %-4u %-17s %-34s %s\n", (unsigned long long)e->seq, e->pcr, e->type ? e->type : "",
                   e->name ? e->name : "", hex);
        }
        if (m->n_events == 0)
            printf("(no events)\n");
        printf("\n");
        for (size_t i = 0; i < m->n_pcrs; i++) {
            char hex[2 * 32 + 1] = "?";
            if (m->pcrs[i]->sha256.len == 32)
                tm_hex(m->pcrs[i]->sha256.data, 32, hex);
            printf("PCR %-2u %s\n", m->pcrs[i]->index, hex);
        }
        if (consistent)
            printf("log consistent with the PCRs\n");
        else
            printf("log INCONSISTENT with the PCRs: %s\n", why);
    }
    fflush(stdout);
    /* why points into resp: report before freeing it. */
    r = consistent ? 0
                   : cli_fail("the measurement log does not replay to the PCR values (%s): the TPM "
                              "or the log was changed behind trustme-tpmd; a verifier will fail "
                              "its event log check until the TPM restarts",
                              why);
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

/* ---- certificates, parsed here for display ---------------------------------------------------- */

struct cert_summary {
    char subject[512], issuer[512], not_after[32];
    int certs; /* how many certificates the PEM holds */
};

static void name_text(const X509_NAME *n, char *out, size_t size)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        int len = BIO_read(b, out, (int)size - 1);
        out[len > 0 ? len : 0] = '\0';
    }
    BIO_free(b);
}

/* The leaf's subject, issuer and expiry; 0, or -EINVAL if there is no certificate. */
static int cert_summary(const ProtobufCBinaryData *pem, struct cert_summary *s)
{
    *s = (struct cert_summary){0};
    if (!pem->data || pem->len == 0 || pem->len > CERT_FILE_MAX)
        return -EINVAL;
    BIO *b = BIO_new_mem_buf(pem->data, (int)pem->len);
    if (!b)
        return -ENOMEM;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (s->certs++ == 0) {
            name_text(X509_get_subject_name(x), s->subject, sizeof(s->subject));
            name_text(X509_get_issuer_name(x), s->issuer, sizeof(s->issuer));
            struct tm tm;
            if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
                strftime(s->not_after, sizeof(s->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        X509_free(x);
    }
    BIO_free(b);
    return s->certs ? 0 : -EINVAL;
}

/* ---- device info ------------------------------------------------------------------------------ */

static json_t *device_info_json(const Trustme__DeviceInfo *i)
{
    json_t *o = json_object();
    json_object_set_new(o, "tcti", str_json(i->tcti));
    json_object_set_new(o, "embedded", json_boolean(i->embedded));
    json_object_set_new(o, "emulated", json_boolean(i->emulated));
    json_object_set_new(o, "require_hardware", json_boolean(i->require_hardware));
    if (i->swtpm_state_dir)
        json_object_set_new(o, "swtpm_state_dir", tm_json_text(i->swtpm_state_dir));
    json_object_set_new(o, "manufacturer", str_json(i->manufacturer));
    json_object_set_new(o, "attest_address", str_json(i->attest_address));
    json_object_set_new(o, "boot_pcr", json_integer((int)i->boot_pcr));
    json_object_set_new(o, "runtime_pcr", json_integer((int)i->runtime_pcr));
    json_object_set_new(o, "ak_name", hex_json(&i->ak_name));
    json_object_set_new(o, "ak_public_pem", bytes_str_json(i->has_ak_public_pem, &i->ak_public_pem));
    json_object_set_new(o, "cert_chain_pem", bytes_str_json(i->has_cert_chain_pem, &i->cert_chain_pem));
    struct cert_summary s;
    if (i->has_cert_chain_pem && cert_summary(&i->cert_chain_pem, &s) == 0) {
        json_t *c = json_object();
        json_object_set_new(c, "subject", tm_json_text(s.subject));
        json_object_set_new(c, "issuer", tm_json_text(s.issuer));
        json_object_set_new(c, "not_after", tm_json_text(s.not_after));
        json_object_set_new(c, "certificates", json_integer(s.certs));
        json_object_set_new(o, "certificate", c);
    } else {
        json_object_set_new(o, "certificate", json_null());
    }
    json_object_set_new(o, "secret_sealed", json_boolean(i->secret_sealed));
    json_object_set_new(o, "secret_problem", str_json(i->secret_problem));
    json_t *da = json_object();
    json_object_set_new(da, "lockout", json_boolean(i->da_lockout));
    json_object_set_new(da, "failures", json_integer(i->da_failures));
    json_object_set_new(da, "max_tries", json_integer(i->da_max_tries));
    json_object_set_new(da, "recovery_s", json_integer(i->da_recovery_s));
    json_object_set_new(o, "dictionary_attack", i->has_da_failures ? da : json_null());
    json_object_set_new(o, "ek_public_pem", bytes_str_json(i->has_ek_public_pem, &i->ek_public_pem));
    json_object_set_new(o, "ek_cert_pem", bytes_str_json(i->has_ek_cert_pem, &i->ek_cert_pem));
    json_object_set_new(o, "vtpm_issuer_chain_pem",
                        bytes_str_json(i->has_vtpm_issuer_chain_pem, &i->vtpm_issuer_chain_pem));
    if (!i->has_da_failures)
        json_decref(da);
    return o;
}

/* The AK certificate line: who it names, who issued it, until when. */
static void print_certificate(const Trustme__DeviceInfo *i)
{
    struct cert_summary s;
    if (!i->has_cert_chain_pem || i->cert_chain_pem.len == 0) {
        printf("AK certificate:  none; to provision it: trustme device csr --out device.csr, have\n"
               "                 the Device CA issue it, then: trustme device cert install CERT.pem\n");
    } else if (cert_summary(&i->cert_chain_pem, &s) < 0) {
        printf("AK certificate:  present, but not readable as PEM\n");
    } else {
        printf("AK certificate:  %s\n", s.subject);
        printf("  issued by:     %s\n", s.issuer);
        printf("  valid until:   %s\n", s.not_after[0] ? s.not_after : "?");
        printf("  chain:         %d certificate%s\n", s.certs, s.certs == 1 ? "" : "s");
    }
}

static void print_device_info(const Trustme__DeviceInfo *i)
{
    printf("TPM:             %s%s%s%s\n", i->embedded ? "embedded swtpm" : "external",
           i->manufacturer && i->manufacturer[0] ? " (manufacturer " : "", i->manufacturer ? i->manufacturer : "",
           i->manufacturer && i->manufacturer[0] ? ")" : "");
    printf("TCTI:            %s\n", i->tcti ? i->tcti : "");
    if (i->emulated)
        printf("device binding:  EMULATED: no hardware root. The TPM's state is files%s%s; whoever "
               "copies them with the data dir can open encrypted containers with their PINs or "
               "brute-force the PINs offline%s\n",
               i->swtpm_state_dir ? " in " : "", i->swtpm_state_dir ? i->swtpm_state_dir : "",
               i->require_hardware ? ". tpm.require_hardware is set: encrypted containers are "
                                     "refused"
                                   : "");
    else
        printf("device binding:  hardware TPM\n");
    printf("attestation:     %s\n", i->attest_address && i->attest_address[0] ? i->attest_address : "(not listening)");
    printf("PCRs:            boot %u, runtime %u\n", i->boot_pcr, i->runtime_pcr);
    char name[2 * 64 + 1] = "?";
    if (i->has_ak_name && i->ak_name.len > 0 && i->ak_name.len <= 64)
        tm_hex(i->ak_name.data, i->ak_name.len, name);
    printf("AK name:         %s\n", name);
    print_certificate(i);
    struct cert_summary ek;
    if (i->has_ek_cert_pem && i->ek_cert_pem.len && cert_summary(&i->ek_cert_pem, &ek) == 0)
        printf("EK certificate:  %s, issued by %s\n", ek.subject, ek.issuer);
    else
        printf("EK certificate:  none (the manufacturer's; needed to enroll the AK, "
               "docs/ATTESTATION.md \"Enrollment\")\n");
    struct cert_summary vi;
    if (i->has_vtpm_issuer_chain_pem && i->vtpm_issuer_chain_pem.len &&
        cert_summary(&i->vtpm_issuer_chain_pem, &vi) == 0)
        printf("vTPM issuer:     %s, issued by %s, until %s\n", vi.subject, vi.issuer, vi.not_after);
    else
        printf("vTPM issuer:     none (vTPM EK certificates need one: docs/VTPM.md \"EK certificates\")\n");
    if (i->has_da_failures)
        printf("DA lockout:      %s (%u of %u failures; one forgiven every %u s)\n",
               i->da_lockout ? "LOCKED OUT: keys that are not noda refuse every authorization" : "no", i->da_failures,
               i->da_max_tries, i->da_recovery_s);
    if (i->secret_problem && i->secret_problem[0])
        printf("storage secret:  PROBLEM: %s\n", i->secret_problem);
    else
        printf("storage secret:  %s\n", i->secret_sealed ? "sealed to this boot state; containers "
                                                           "can get their keys"
                                                         : "not created yet");
}

int cmd_device_info(struct cli *cli, const struct cli_args *a)
{
    Trustme__DeviceInfoRequest ir = TRUSTME__DEVICE_INFO_REQUEST__INIT;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_DEVICE_INFO;
    req.device_info = &ir;
    Trustme__Response *resp;
    int r = simple_call(cli, &req, &resp, TRUSTME__RESPONSE__BODY_DEVICE_INFO);
    if (r)
        return r;
    if (cli->json)
        print_json(device_info_json(resp->device_info));
    else
        print_device_info(resp->device_info);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- device csr ------------------------------------------------------------------------------- */

int cmd_device_csr(struct cli *cli, const struct cli_args *a)
{
    const char *cn = cli_value(a, "cn"), *out = cli_value(a, "out");
    Trustme__DeviceCsrRequest cr = TRUSTME__DEVICE_CSR_REQUEST__INIT;
    cr.common_name = (char *)cn;
    bool issuer = cli_flag(a, "vtpm-issuer");
    if (issuer && cn)
        return cli_fail("--cn does not go with --vtpm-issuer (its name is fixed)");
    if (issuer && cli_flag(a, "tls"))
        return cli_fail("--tls and --vtpm-issuer ask for the bundles of different keys: choose one");
    cr.has_tls = cr.tls = cli_flag(a, "tls");
    cr.has_vtpm_issuer = cr.vtpm_issuer = issuer;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_DEVICE_CSR;
    req.device_csr = &cr;
    Trustme__Response *resp;
    int r = simple_call(cli, &req, &resp, TRUSTME__RESPONSE__BODY_DEVICE_CSR);
    if (r)
        return r;
    const ProtobufCBinaryData *pem = &resp->device_csr->pem;
    tm_err err;
    if (out) {
        if (write_file_atomic(out, pem->data, pem->len, 0644, &err) < 0)
            r = cli_fail("%s", err.msg);
        else if (cr.tls)
            fprintf(stderr,
                    "wrote %s; have the Device CA issue it (trustme-pki issue --pki DIR --ca device "
                    "--profile tls --csr %s --out tls.pem); tls.pem is the device's TLS client "
                    "certificate, its key stays in the TPM\n",
                    out, out);
        else if (issuer)
            fprintf(stderr,
                    "wrote %s; have the Device CA issue it (trustme-pki issue --pki DIR "
                    "--ca device --profile vtpm-issuer --csr %s --out vtpm-issuer.pem), then: "
                    "trustme device cert install vtpm-issuer.pem --chain device-ca.pem\n",
                    out, out);
        else
            fprintf(stderr,
                    "wrote %s; have the Device CA issue it (trustme-pki issue --pki DIR "
                    "--ca device --csr %s --ek-anchor MANUFACTURER.pem --out device.pem), then: "
                    "trustme device cert install device.pem\n",
                    out, out);
    } else if (fwrite(pem->data, 1, pem->len, stdout) != pem->len || fflush(stdout) != 0) {
        r = cli_fail("cannot write the request: %s", strerror(errno));
    }
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

/* ---- device cert install ---------------------------------------------------------------------- */

/* Append a PEM file to chain, making sure each file starts on a line of its own. */
static int append_file(char **chain, size_t *len, const char *path)
{
    _cleanup_free_ char *data = NULL;
    size_t n;
    tm_err err;
    if (read_file(path, CERT_FILE_MAX, &data, &n, &err) < 0)
        return cli_fail("%s", err.msg);
    if (!memmem(data, n, "-----BEGIN CERTIFICATE-----", 27) &&
        !memmem(data, n, "-----BEGIN " ENROLL_PEM_CERT "-----", strlen(ENROLL_PEM_CERT) + 16))
        return cli_fail("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----) and no "
                        "encrypted AK certificate from the Device CA",
                        path);
    if (*len + n + 1 > CERT_FILE_MAX)
        return cli_fail("the certificates add up to more than %d bytes", CERT_FILE_MAX);
    char *grown = realloc(*chain, *len + n + 2);
    if (!grown)
        return cli_fail("out of memory");
    *chain = grown;
    memcpy(*chain + *len, data, n);
    *len += n;
    if (n && data[n - 1] != '\n')
        (*chain)[(*len)++] = '\n';
    return 0;
}

int cmd_device_cert_install(struct cli *cli, const struct cli_args *a)
{
    const char *leaf = a->argv[0];
    _cleanup_free_ char *chain = NULL;
    size_t len = 0;
    char *cas[16];
    size_t ncas = cli_values(a, "chain", cas, ARRAY_SIZE(cas));
    if (ncas > ARRAY_SIZE(cas))
        return cli_usage_error(a->verb, "at most %zu --chain files", ARRAY_SIZE(cas));
    int r = append_file(&chain, &len, leaf);
    for (size_t i = 0; !r && i < ncas; i++)
        r = append_file(&chain, &len, cas[i]);
    if (r)
        return r;
    Trustme__DeviceCertInstallRequest cr = TRUSTME__DEVICE_CERT_INSTALL_REQUEST__INIT;
    cr.has_chain_pem = true;
    cr.chain_pem.data = (uint8_t *)chain;
    cr.chain_pem.len = len;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_DEVICE_CERT_INSTALL;
    req.device_cert_install = &cr;
    Trustme__Response *resp;
    r = simple_call(cli, &req, &resp, TRUSTME__RESPONSE__BODY_DEVICE_INFO);
    if (r)
        return r;
    if (cli->json) {
        print_json(device_info_json(resp->device_info));
    } else {
        printf("installed the attestation key's certificate\n");
        print_certificate(resp->device_info);
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- device reseal ---------------------------------------------------------------------------- */

/* The recovery key as tpmd wrote it: 64 hex digits on the first line. Read into locked memory
 * and decoded there; nothing of it stays in ordinary memory. */
static int read_recovery_key(const char *path, struct secret **ret)
{
    tm_err err;
    _cleanup_secret_ struct secret *text = NULL, *key = NULL;
    if (secret_new(KEY_FILE_MAX + 1, &text, &err) < 0 || secret_new(RECOVERY_KEY_LEN, &key, &err) < 0)
        return cli_fail("%s", err.msg);
    _cleanup_close_ int fd = strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("cannot open the recovery key file %s: %s", path, strerror(errno));
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, text->data + got, KEY_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cli_fail("cannot read %s: %s", path, strerror(errno));
        if (n == 0 || (got += (size_t)n) > KEY_FILE_MAX)
            break;
    }
    const char *hint = "it must hold the recovery key as tpmd wrote it to <run>/tpm/recovery-key: "
                       "64 hexadecimal digits on the first line";
    if (got > KEY_FILE_MAX)
        return cli_fail("%s is too large for a recovery key file; %s", path, hint);
    size_t line = 0;
    while (line < got && text->data[line] != '\n')
        line++;
    size_t digits = line;
    while (digits > 0 &&
           (text->data[digits - 1] == ' ' || text->data[digits - 1] == '\t' || text->data[digits - 1] == '\r'))
        digits--;
    if (digits != 2 * RECOVERY_KEY_LEN)
        return cli_fail("%s is not a recovery key file (its first line has %zu characters); %s", path, digits, hint);
    for (size_t i = 0; i < RECOVERY_KEY_LEN; i++) {
        int hi = tm_hex_digit((char)text->data[2 * i], TM_HEX_ANY_CASE),
            lo = tm_hex_digit((char)text->data[2 * i + 1], TM_HEX_ANY_CASE);
        if (hi < 0 || lo < 0)
            return cli_fail("%s is not a recovery key file (character %zu is not a hexadecimal "
                            "digit); %s",
                            path, 2 * i + (hi < 0 ? 1 : 2), hint);
        key->data[i] = (uint8_t)(hi << 4 | lo);
    }
    *ret = steal_ptr(key);
    return 0;
}

int cmd_device_reseal(struct cli *cli, const struct cli_args *a)
{
    /* The key is taken from a file only, never from the command line (ps, shell history). */
    const char *file = cli_value(a, "recovery-key-file");
    if (a->argc) /* the verb table lets one through, to say this */
        return cli_usage_error(a->verb,
                               "unexpected %s: the key is taken from a file only, never "
                               "from the command line",
                               a->argv[0]);
    if (!file)
        return cli_usage_error(a->verb, "give --recovery-key-file FILE");
    _cleanup_secret_ struct secret *key = NULL;
    int r = read_recovery_key(file, &key);
    if (r)
        return r;
    Trustme__DeviceResealRequest rr = TRUSTME__DEVICE_RESEAL_REQUEST__INIT;
    rr.has_recovery_key = true;
    rr.recovery_key.data = key->data;
    rr.recovery_key.len = key->len;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_DEVICE_RESEAL;
    req.device_reseal = &rr;
    Trustme__Response *resp;
    r = simple_call(cli, &req, &resp, TRUSTME__RESPONSE__BODY_OK);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("the device storage secret is sealed to the current boot state; containers can get "
           "their keys again (check: trustme device info)\n");
    return 0;
}
