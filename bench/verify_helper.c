/* For measuring trustme-verify's checks on a response already received (no network, no TPM):
 * runs verify_core on one saved response (trustme-verify --save-response) for SECONDS and
 * prints verifications per second, with the reference values loaded once (as trustme-verify
 * does per run, and a verifier serving many devices would) and with their signature verified
 * every time as well.
 *
 *   verify_helper RESPONSE NONCE_HEX ANCHORS.pem REFS.json [SECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attest_check.h"
#include "fileio.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s RESPONSE NONCE_HEX ANCHORS.pem REFS.json [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 5 ? atof(argv[5]) : 3;
    tm_err err = {0};
    char *resp, *anchors;
    size_t resp_len, anchors_len;
    struct refvalues_files rf;
    uint8_t nonce[ATTEST_NONCE_LEN];
    for (size_t i = 0; i < sizeof(nonce) && strlen(argv[2]) == 64; i++)
        sscanf(argv[2] + 2 * i, "%2hhx", &nonce[i]);
    if (read_file(argv[1], ATTEST_RESPONSE_MAX, &resp, &resp_len, &err) < 0 ||
        read_file(argv[3], VERIFY_PEM_MAX, &anchors, &anchors_len, &err) < 0 ||
        refvalues_read_files(argv[4], &rf, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    setenv("TSS2_LOG", "all+NONE", 0);
    for (int with_refs = 0; with_refs < 2; with_refs++) {
        struct refvalues *refs = NULL;
        if (refvalues_load(&rf, anchors, anchors_len, NULL, 0, 0, &refs, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        struct attest_policy pol = {.nonce = nonce, .nonce_len = sizeof(nonce),
                                    .anchors_pem = anchors, .anchors_len = anchors_len,
                                    .refs = refs};
        struct attest_report rep;
        long n = 0;
        double start = now(), t;
        bool trusted = true;
        do {
            if (with_refs) {
                refvalues_free(refs);
                if (refvalues_load(&rf, anchors, anchors_len, NULL, 0, 0, &refs, &err) < 0)
                    return 1;
                pol.refs = refs;
            }
            if (attest_check_response((uint8_t *)resp, resp_len, &pol, &rep, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            trusted &= rep.trusted;
            n++;
        } while ((t = now() - start) < seconds);
        printf("%s: %.0f verifications/s (%ld in %.2f s, %s, %zu events)\n",
               with_refs ? "reference values' signature verified each time"
                         : "reference values loaded once",
               (double)n / t, n, t, trusted ? "trusted" : "UNTRUSTED", rep.events);
        refvalues_free(refs);
    }
    return 0;
}
