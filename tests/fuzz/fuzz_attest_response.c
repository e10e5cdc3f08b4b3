/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-verify's checks on an untrusted AttestResponse: the bytes are the response as read
 * from the network, checked with a fixed nonce and selection against a throwaway root (made at
 * start) and reference values marked verified, so that every check's code runs. The seed is a
 * real response of trustme-tpmd with an swtpm. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *anchors;
static size_t anchors_len;
static struct ca_pins pins;
static struct refvalues *refs;

static void init(void)
{
    setenv("TSS2_LOG", "all+NONE", 1);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    if (!key || !x || !name)
        abort();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz root", -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, name);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    /* A CA: ca_pins_parse takes CA certificates only (the roles' CAs are pinned as whole CAs). */
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
    if (!bc || X509_add_ext(x, bc, -1) != 1)
        abort();
    X509_EXTENSION_free(bc);
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        abort();
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    char *p;
    anchors_len = (size_t)BIO_get_mem_data(bio, &p);
    anchors = malloc(anchors_len);
    memcpy(anchors, p, anchors_len);
    BIO_free(bio);
    tm_err e = {0};
    if (ca_pins_parse(anchors, anchors_len, "fuzz root", &pins, &e) < 0)
        abort();
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
    static const char json[] = "{\"format\": \"trustme-reference-values\", \"version\": 2, \"rim_version\": 1, "
                               "\"not_before\": \"2026-01-01T00:00:00Z\", \"not_after\": \"2036-01-01T00:00:00Z\", "
                               "\"pcrs\": [11, 12], \"required\": [{\"type\": \"binary\", \"name\": \"trustmed\"}], "
                               "\"values\": ["
                               "{\"type\": \"binary\", \"name\": \"trustmed\", \"sha256\": "
                               "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}";
    if (refvalues_parse(json, sizeof(json) - 1, &refs, NULL) < 0)
        abort();
    refs->signature_verified = true; /* the matching code is what is fuzzed here */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!anchors)
        init();
    static const uint8_t nonce[ATTEST_NONCE_LEN] = {1, 2, 3};
    static const uint32_t pcrs[] = {11, 12};
    struct attest_policy pol = {.nonce = nonce,
                                .nonce_len = sizeof(nonce),
                                .pcrs = pcrs,
                                .npcrs = size % 3 ? 2 : 0,
                                .pcrs_explicit = size % 3 == 2,
                                .ak_anchors_pem = anchors,
                                .ak_anchors_len = anchors_len,
                                .device_cas = &pins,
                                .has_last_reset = size % 5 == 0,
                                .last_reset = 7,
                                .refs = refs};
    struct attest_report rep;
    tm_err err = {0};
    if (attest_check_response(data, size, &pol, &rep, &err) == 0) {
        /* A fuzzer cannot forge a quote the throwaway root vouches for. */
        if (rep.trusted || rep.checks[ATTEST_CHECK_CHAIN].ok)
            abort();
        for (int i = 0; i < ATTEST_CHECK_COUNT; i++)
            if (!rep.checks[i].name || !rep.checks[i].detail[0])
                abort();
    }
    return 0;
}
