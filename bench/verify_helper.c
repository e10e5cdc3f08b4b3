/* SPDX-License-Identifier: GPL-2.0-or-later */
/* For measuring trustme-verify's checks on a response already received (no network, no TPM):
 * runs verify_core on one saved response (trustme-verify --save-response) for SECONDS and
 * prints verifications per second, with the reference values loaded once (as trustme-verify
 * does per run, and a verifier serving many devices would) and with their signature verified
 * every time as well.
 *
 *   verify_helper RESPONSE NONCE_HEX ANCHORS.pem CAS.pem REFS.json [SECONDS]
 *
 * Prints, per mode, verifications per second of wall-clock time and per second of CPU time.
 * ANCHORS.pem holds the roots of both roles, CAS.pem the Device CA and the reference values'
 * signing CA, used as the pins of either role (what trustme-verify's options cost).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attest_check.h"
#include "ca_pin.h"
#include "fileio.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s RESPONSE NONCE_HEX ANCHORS.pem CAS.pem REFS.json [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 6 ? atof(argv[6]) : 3;
    tm_err err = {0};
    char *resp, *anchors, *cas_pem;
    size_t resp_len, anchors_len, cas_len;
    struct ca_pins cas;
    struct refvalues_files rf;
    uint8_t nonce[ATTEST_NONCE_LEN];
    for (size_t i = 0; i < sizeof(nonce) && strlen(argv[2]) == 64; i++)
        sscanf(argv[2] + 2 * i, "%2hhx", &nonce[i]);
    if (read_file(argv[1], ATTEST_RESPONSE_MAX, &resp, &resp_len, &err) < 0 ||
        read_file(argv[3], VERIFY_PEM_MAX, &anchors, &anchors_len, &err) < 0 ||
        read_file(argv[4], VERIFY_PEM_MAX, &cas_pem, &cas_len, &err) < 0 ||
        ca_pins_parse(cas_pem, cas_len, argv[4], &cas, &err) < 0 || refvalues_read_files(argv[5], &rf, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    setenv("TSS2_LOG", "all+NONE", 0);
    struct refvalues_trust rt = {.anchors_pem = anchors, .anchors_len = anchors_len, .cas = &cas};
    for (int with_refs = 0; with_refs < 2; with_refs++) {
        struct refvalues *refs = NULL;
        if (refvalues_load(&rf, &rt, &refs, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        struct attest_policy pol = {.nonce = nonce,
                                    .nonce_len = sizeof(nonce),
                                    .pcrs = refs->pcrs,
                                    .npcrs = refs->npcrs,
                                    .ak_anchors_pem = anchors,
                                    .ak_anchors_len = anchors_len,
                                    .device_cas = &cas,
                                    .refs = refs};
        struct attest_report rep;
        long n = 0;
        double start = now(), cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t;
        bool trusted = true;
        do {
            if (with_refs) {
                refvalues_free(refs);
                if (refvalues_load(&rf, &rt, &refs, &err) < 0)
                    return 1;
                /* the PCR selection lives in refs too: the old one was just freed */
                pol.refs = refs;
                pol.pcrs = refs->pcrs;
                pol.npcrs = refs->npcrs;
            }
            if (attest_check_response((uint8_t *)resp, resp_len, &pol, &rep, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            trusted &= rep.trusted;
            n++;
        } while ((t = now() - start) < seconds);
        /* Per second of this process's CPU time too: on a shared machine the wall-clock rate
         * also counts the time other processes had the core. */
        double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        printf("%s: %.0f verifications/s (%ld in %.2f s, %s, %zu events, %.0f per CPU-second)\n",
               with_refs ? "reference values' signature verified each time" : "reference values loaded once",
               (double)n / t, n, t, trusted ? "trusted" : "UNTRUSTED", rep.events, (double)n / cpu);
        refvalues_free(refs);
    }
    return 0;
}
