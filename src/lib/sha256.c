/* SPDX-License-Identifier: GPL-2.0-or-later */
/* SHA-256 (FIPS 180-4): the audit chain, the measurements, every GuestOS image before a start.
 *
 * trustmed and the CLI do not link OpenSSL's libcrypto (docs/ARCHITECTURE.md, decision 7): that
 * cost 3.4 MiB of resident memory in the daemon and 0.6 ms per CLI start. Two implementations
 * sit behind one API, chosen once per process (docs/ARCHITECTURE.md "Libraries" has the figures):
 *   - on x86-64 CPUs with the SHA extensions, trustme's own block function (sha256_x86.c): about
 *     1.1x nettle 3.8's speed on images there, since nettle 3.8 (Debian 12) calls its SHA-NI code
 *     once per 64-byte block;
 *   - everywhere else nettle (libnettle), which picks its own best code for the CPU at load
 *     (x86-64 assembly, arm64 and others; C at the least): about 1.3x the plain C this file had
 *     on an x86-64 CPU without the SHA extensions.
 * tm_sha256_force_nettle() pins nettle, so that the tests and the benchmark cover it on any
 * machine (NETTLE_FAT_OVERRIDE= in the environment turns off nettle's own use of CPU extensions:
 * on x86-64 its plain assembly then). */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "crypto.h"

#include <stdbool.h>
#include <string.h>

#include "sha256_impl.h"

#if defined(__x86_64__)
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
#endif

/* -1 until the first use, then 1 (own SHA-NI code) or 0 (nettle). Accessed atomically because
 * hashing may run in several threads; they would all choose the same anyway. */
static int use_own = -1;

static int best(void)
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
        return 1;
#endif
    return 0;
}

static bool own_chosen(void)
{
    int v = __atomic_load_n(&use_own, __ATOMIC_RELAXED);
    if (v < 0) {
        v = best();
        __atomic_store_n(&use_own, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}

void tm_sha256_force_nettle(bool nettle)
{
    __atomic_store_n(&use_own, nettle ? 0 : best(), __ATOMIC_RELAXED);
}

const char *tm_sha256_impl(void)
{
    return own_chosen() ? "sha-ni" : "nettle";
}

/* Hashes n whole blocks (own code only). */
static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
    if (n > 0)
        tm_sha256_blocks_shani(h, p, n);
#else
    (void)h, (void)p, (void)n;
    __builtin_unreachable(); /* own_chosen() is false there */
#endif
}

void tm_sha256_init(struct tm_sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    c->own = own_chosen();
    if (!c->own) {
        sha256_init(&c->u.nettle);
        return;
    }
    memcpy(c->u.s.h, iv, sizeof(iv));
    c->u.s.len = 0;
    c->u.s.buf_len = 0;
}

void tm_sha256_update(struct tm_sha256_ctx *ctx, const void *data, size_t len)
{
    if (!ctx->own) {
        sha256_update(&ctx->u.nettle, len, data);
        return;
    }
    __typeof__(ctx->u.s) *c = &ctx->u.s;
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

void tm_sha256_final(struct tm_sha256_ctx *ctx, uint8_t out[32])
{
    if (!ctx->own) {
        sha256_digest(&ctx->u.nettle, SHA256_DIGEST_SIZE, out);
        explicit_bzero(ctx, sizeof(*ctx));
        return;
    }
    __typeof__(ctx->u.s) *c = &ctx->u.s;
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
    explicit_bzero(ctx, sizeof(*ctx));
}

int tm_sha256(const void *data, size_t len, uint8_t out[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, data, len);
    tm_sha256_final(&c, out);
    return 0;
}
