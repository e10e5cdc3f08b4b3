/* SHA-256 (FIPS 180-4), for the audit chain.
 *
 * trustmed and the CLI hash only small records; linking OpenSSL's libcrypto for that cost 3.4 MiB
 * of resident memory in the daemon and 0.6 ms per CLI start (docs/BENCHMARKS.md). Cryptography
 * proper (keys, signatures, certificates) lives in trustme-scd, with OpenSSL. The unit tests check
 * this code against the FIPS test vectors and against OpenSSL.
 *
 * trustmed also hashes every GuestOS image (hundreds of MiB) before a container starts, so the
 * block function matters there: on x86-64 CPUs with the SHA extensions sha256_x86.c does it
 * (about five times the portable code's speed, docs/BENCHMARKS.md), chosen once at the first use;
 * everywhere else the portable C below. tm_sha256_force_portable() pins the portable code, so
 * that the tests and the benchmark exercise it on any machine. */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "crypto.h"

#include <stdbool.h>
#include <string.h>

#include "sha256_impl.h"

const uint32_t tm_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, unsigned n) { return x >> n | x << (32 - n); }

static void compress(uint32_t h[8], const uint8_t block[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ w[i - 15] >> 3;
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ w[i - 2] >> 10;
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + tm_sha256_k[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void tm_sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t n)
{
    for (; n > 0; n--, p += 64)
        compress(h, p);
}

typedef void blocks_fn(uint32_t h[8], const uint8_t *p, size_t n);

/* NULL until the first use, then the implementation for this CPU. Accessed atomically because
 * hashing may run in several threads; they would all choose the same one anyway. */
static blocks_fn *blocks_impl;

static blocks_fn *best_impl(void)
{
#if defined(__x86_64__)
    /* sha256_x86.c also uses SSSE3's byte shuffle and SSE4.1's lane operations; every CPU with
     * the SHA extensions has them, but a hypervisor may mask flags one by one. */
    /* cpuid rather than __builtin_cpu_supports("sha"), which clang 14 does not know:
     * leaf 7 EBX bit 29 is SHA, leaf 1 ECX bits 9 and 19 are SSSE3 and SSE4.1. */
    unsigned a, b, c, d;
    bool sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
    bool sse = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 9)) && (c & (1u << 19));
    if (sha && sse)
        return tm_sha256_blocks_shani;
#endif
    return tm_sha256_blocks_portable;
}

static blocks_fn *chosen_impl(void)
{
    blocks_fn *f = __atomic_load_n(&blocks_impl, __ATOMIC_RELAXED);
    if (!f) {
        f = best_impl();
        __atomic_store_n(&blocks_impl, f, __ATOMIC_RELAXED);
    }
    return f;
}

void tm_sha256_force_portable(bool portable)
{
    __atomic_store_n(&blocks_impl, portable ? tm_sha256_blocks_portable : best_impl(),
                     __ATOMIC_RELAXED);
}

const char *tm_sha256_impl(void)
{
    return chosen_impl() == tm_sha256_blocks_portable ? "portable" : "sha-ni";
}

/* Hashes n whole blocks. */
static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
    if (n > 0)
        chosen_impl()(h, p, n);
}

void tm_sha256_init(struct tm_sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof(iv));
    c->len = 0;
    c->buf_len = 0;
}

void tm_sha256_update(struct tm_sha256_ctx *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->len += len;
    if (c->buf_len > 0) {
        size_t take = 64 - c->buf_len < len ? 64 - c->buf_len : len;
        memcpy(c->buf + c->buf_len, p, take);
        c->buf_len += take;
        p += take;
        len -= take;
        if (c->buf_len < 64)
            return;
        compress_blocks(c->h, c->buf, 1);
        c->buf_len = 0;
    }
    compress_blocks(c->h, p, len / 64);
    p += len / 64 * 64;
    len %= 64;
    memcpy(c->buf, p, len);
    c->buf_len = len;
}

void tm_sha256_final(struct tm_sha256_ctx *c, uint8_t out[32])
{
    /* Padding: 0x80, zeros, and the length in bits as a 64-bit big-endian number. */
    uint8_t tail[128] = {0};
    memcpy(tail, c->buf, c->buf_len);
    tail[c->buf_len] = 0x80;
    size_t tail_len = c->buf_len + 9 <= 64 ? 64 : 128;
    uint64_t bits = c->len * 8;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress_blocks(c->h, tail, tail_len / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
    explicit_bzero(c, sizeof(*c));
}

int tm_sha256(const void *data, size_t len, uint8_t out[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, data, len);
    tm_sha256_final(&c, out);
    return 0;
}
