/* SPDX-License-Identifier: GPL-2.0-or-later */
/* bench/sha256_libs.sh: SHA-256 throughput of trustme's tm_sha256 (src/lib/sha256*.c: its own
 * SHA-NI code where the CPU has the extensions, else nettle) against nettle called directly and
 * OpenSSL, in one process, on buffers in memory (no file, no page cache: the hash alone).
 * NETTLE_FAT_OVERRIDE= in the environment makes nettle use its C code.
 *
 *   sha256_libs [RUNS]   prints one line per implementation and size:
 *                        "<impl> <size> <median MiB/s> <min> <max> <digest>"
 *
 * Each run hashes the buffer repeatedly for at least 100 ms of CPU time (4 KiB: ~ tens of thousands of
 * one-shot hashes, init and final included, as a short file or a request would be hashed;
 * 16 MiB: one update of the whole buffer per hash, as an image is hashed) and gives MiB/s; the
 * median, minimum and maximum over RUNS runs (default 15) are printed, the implementations
 * interleaved run by run so that a busy moment of the machine hits all of them alike. Every
 * implementation's digest of each buffer is checked equal before timing. */
#include <nettle/sha2.h>
#include <nettle/version.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"

enum impl { TM_BEST, NETTLE, OPENSSL, N_IMPL };
static const char *const names[N_IMPL] = {"trustme", "nettle", "openssl"};

static void digest(enum impl i, const uint8_t *buf, size_t len, uint8_t out[32])
{
    switch (i) {
    case TM_BEST: {
        struct tm_sha256_ctx c;
        tm_sha256_init(&c);
        tm_sha256_update(&c, buf, len);
        tm_sha256_final(&c, out);
        break;
    }
    case NETTLE: {
        struct sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, len, buf);
        sha256_digest(&c, SHA256_DIGEST_SIZE, out);
        break;
    }
    case OPENSSL: {
        unsigned int n = 32;
        if (EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) != 1) {
            fprintf(stderr, "EVP_Digest failed\n");
            exit(1);
        }
        break;
    }
    default: abort();
    }
}

/* The thread's CPU time, not the wall clock: on a machine others share, time spent waiting for a
 * core is not hashing (each run is still long enough, 100 ms, for the clock's resolution). */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mibs(enum impl i, const uint8_t *buf, size_t len)
{
    uint8_t md[32];
    size_t n = 0;
    double t0 = now(), t;
    do {
        digest(i, buf, len, md);
        n++;
    } while ((t = now() - t0) < 0.1);
    return (double)n * (double)len / (1024.0 * 1024.0) / t;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 15;
    if (runs < 1 || runs > 1000) {
        fprintf(stderr, "usage: %s [RUNS 1..1000]\n", argv[0]);
        return 2;
    }
    static const size_t sizes[] = {4096, 16u << 20};
    uint8_t *buf = malloc(sizes[1]);
    if (!buf)
        return 1;
    /* a fixed pseudo-random pattern (xorshift), so every run hashes the same bytes */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t k = 0; k < sizes[1]; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[k] = (uint8_t)x;
    }
    printf("# trustme's SHA-256 on this CPU: %s; OpenSSL %s; nettle %d.%d\n", tm_sha256_impl(),
           OpenSSL_version(OPENSSL_VERSION_STRING), nettle_version_major(), nettle_version_minor());
    for (size_t s = 0; s < 2; s++) {
        uint8_t want[32], got[32];
        digest(OPENSSL, buf, sizes[s], want);
        char hex[65];
        tm_hex(want, 32, hex);
        for (int i = 0; i < N_IMPL; i++) {
            digest((enum impl)i, buf, sizes[s], got);
            if (memcmp(got, want, 32) != 0) {
                fprintf(stderr, "%s disagrees with OpenSSL on %zu bytes\n", names[i], sizes[s]);
                return 1;
            }
        }
        double *r[N_IMPL];
        for (int i = 0; i < N_IMPL; i++)
            if (!(r[i] = calloc((size_t)runs, sizeof(double))))
                return 1;
        for (int k = 0; k < runs; k++)
            for (int j = 0; j < N_IMPL; j++) {
                int i = (j + k) % N_IMPL; /* rotate the order run by run */
                r[i][k] = mibs((enum impl)i, buf, sizes[s]);
            }
        for (int i = 0; i < N_IMPL; i++) {
            qsort(r[i], (size_t)runs, sizeof(double), cmp);
            double med = runs % 2 ? r[i][runs / 2] : (r[i][runs / 2 - 1] + r[i][runs / 2]) / 2;
            printf("%s %zu %.1f %.1f %.1f %s\n", names[i], sizes[s], med, r[i][0], r[i][runs - 1], hex);
            free(r[i]);
        }
    }
    free(buf);
    return 0;
}
