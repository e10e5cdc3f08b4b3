/* SPDX-License-Identifier: GPL-2.0-or-later */
/* SHA-256 block compression with the x86 SHA extensions (SHA-NI), selected at run time by
 * sha256.c when the CPU has them. Only this file is compiled for those instructions, through the
 * target attribute below, so the rest of trustme still runs on any x86-64.
 *
 * How the instructions split the work (Intel SDM, SHA256RNDS2 / SHA256MSG1 / SHA256MSG2):
 *   - the eight working variables live in two registers, one holding A, B, E, F and the other
 *     C, D, G, H (A and C in the top lane, F and H in the bottom one);
 *   - SHA256RNDS2 does two rounds: it takes the CDGH and ABEF registers and W[t] + K[t] for the two
 *     rounds in the low two lanes of a third, and returns the new ABEF. The new CDGH is the old
 *     ABEF (two rounds shift A->C, B->D, E->G, F->H), so the two registers simply swap roles
 *     between the two halves of every group of four rounds;
 *   - SHA256MSG1 and SHA256MSG2 compute four words of the message schedule: MSG1 adds sigma0 of
 *     the following word to each of W[t-16..t-13], and MSG2 adds sigma1 of the word two places
 *     back, including the two words it has just produced itself. W[t-7], the remaining term, is
 *     added in between with an ordinary vector add. */
#include "sha256_impl.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define TARGET __attribute__((target("sha,sse4.1")))

/* Four message words, byte-swapped from big endian: lane i = W[t + i]. */
static inline TARGET __m128i load_words(const uint8_t *p)
{
    const __m128i bswap32 = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), bswap32);
}

/* Four rounds with the message words w (lane i = W[t + i]) and the constants from K[t]. */
#define FOUR_ROUNDS(w, t)                                                                       \
    do {                                                                                        \
        __m128i wk = _mm_add_epi32((w), _mm_loadu_si128((const __m128i *)&tm_sha256_k[(t)]));   \
        /* cdgh receives the new ABEF, and abef, the old ABEF, is the new CDGH; */              \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);                                           \
        /* the next two rounds put the roles back, with W + K of rounds t+2, t+3 moved down. */ \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_unpackhi_epi64(wk, wk));                   \
    } while (0)

/* The next four schedule words from the last sixteen, w0 = W[t-16..t-13] ... w3 = W[t-4..t-1]. */
#define NEXT_WORDS(w0, w1, w2, w3) \
    _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32((w0), (w1)), _mm_alignr_epi8((w3), (w2), 4)), (w3))

TARGET void tm_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
    /* _mm_set_epi32 lists the lanes from the top one down. Done once per call, not per block. */
    __m128i abef = _mm_set_epi32((int)h[0], (int)h[1], (int)h[4], (int)h[5]);
    __m128i cdgh = _mm_set_epi32((int)h[2], (int)h[3], (int)h[6], (int)h[7]);

    for (; n > 0; n--, p += 64) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        /* w0..w3 always hold the last sixteen schedule words, oldest first, rotating. */
        __m128i w0 = load_words(p), w1 = load_words(p + 16), w2 = load_words(p + 32), w3 = load_words(p + 48);
        FOUR_ROUNDS(w0, 0);
        FOUR_ROUNDS(w1, 4);
        FOUR_ROUNDS(w2, 8);
        FOUR_ROUNDS(w3, 12);
        for (int t = 16; t < 64; t += 16) {
            w0 = NEXT_WORDS(w0, w1, w2, w3);
            FOUR_ROUNDS(w0, t);
            w1 = NEXT_WORDS(w1, w2, w3, w0);
            FOUR_ROUNDS(w1, t + 4);
            w2 = NEXT_WORDS(w2, w3, w0, w1);
            FOUR_ROUNDS(w2, t + 8);
            w3 = NEXT_WORDS(w3, w0, w1, w2);
            FOUR_ROUNDS(w3, t + 12);
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }

    uint32_t v[4];
    _mm_storeu_si128((__m128i *)v, abef); /* v[3] = A, v[2] = B, v[1] = E, v[0] = F */
    h[0] = v[3];
    h[1] = v[2];
    h[4] = v[1];
    h[5] = v[0];
    _mm_storeu_si128((__m128i *)v, cdgh);
    h[2] = v[3];
    h[3] = v[2];
    h[6] = v[1];
    h[7] = v[0];
}

#endif
