/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The two enrollment bundles, both untrusted where they are parsed (docs/ATTESTATION.md
 * "Enrollment"), on the same arbitrary bytes:
 *   - the device's CSR bundle (CSR, the AK's TPMT_PUBLIC, the EK chain) as `trustme-pki`'s
 *     Device CA reads it: enroll_parse_bundle (src/tools/pki/enroll.c);
 *   - what the CA sends back, as `trustme device cert install` hands it to tpmd: enroll_parse
 *     (src/tpmd/enroll_bundle.c), everything enroll_unwrap does before TPM2_ActivateCredential.
 * No crash, no leak, and what parses holds what the next step relies on. */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll.h"
#include "pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verbose; /* $FUZZ_VERBOSE: print what each input ends as (to check the seeds) */

#define fail(...)                                            \
    do {                                                     \
        fprintf(stderr, "fuzz_enroll_bundle: " __VA_ARGS__); \
        fputc('\n', stderr);                                 \
        abort();                                             \
    } while (0)

static void device_side(const uint8_t *data, size_t size)
{
    struct enroll_blocks b;
    tm_err err = {0};
    int r = enroll_parse(data, size, &b, &err);
    if (r < 0) {
        if (r != -err.code || !err.msg[0])
            fail("enroll_parse: %d \"%s\"", r, err.msg);
    } else {
        if (!b.clear || (b.cert && b.cert_len < 0) ||
            (b.have_blob || b.have_secret || b.cert) != (b.have_blob && b.have_secret && b.cert))
            fail("enroll_parse accepted without its output, or an incomplete encrypted cert");
        char *p;
        long n = BIO_get_mem_data(b.clear, &p);
        if (n < 0 || (n > 0 && !memmem(p, (size_t)n, "-----BEGIN CERTIFICATE-----", 27)))
            fail("enroll_parse: clear holds no certificate block");
    }
    if (verbose)
        fprintf(stderr, "tpmd: %s\n", r < 0 ? err.msg : "accepted");
    enroll_blocks_free(&b);
}

static void ca_side(const uint8_t *data, size_t size)
{
    BIO *in = BIO_new_mem_buf(data, (int)size);
    if (!in)
        fail("out of memory");
    struct enroll_bundle b;
    tm_err err = {0};
    int r = enroll_parse_bundle(in, "bundle", &b, &err);
    if (r < 0) {
        if (r != -err.code || !err.msg[0])
            fail("enroll_parse_bundle: %d \"%s\"", r, err.msg);
    } else if (!b.csr || sk_X509_num(b.ek_chain) < 1 || b.ak_public_len == 0 ||
               b.ak_public_len > sizeof(b.ak_public_raw)) {
        fail("enroll_parse_bundle accepted an incomplete bundle");
    }
    if (verbose)
        fprintf(stderr, "pki: %s\n", r < 0 ? err.msg : "accepted");
    enroll_bundle_free(&b);
    BIO_free(in);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    device_side(data, size);
    ca_side(data, size);
    return 0;
}
