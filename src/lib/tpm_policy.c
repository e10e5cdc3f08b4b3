/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tpm_policy.h"

#include "crypto.h"

void tm_policy_pcr_sha256(uint32_t pcr, const uint8_t value[32], uint8_t out[32])
{
    /* policyDigest = H(0^32 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(value)); the selection
     * marshalled: count 1, hash TPM_ALG_SHA256 (0x000b), sizeofSelect 3, the bitmap. */
    static const uint8_t zero[32], cc[4] = {0x00, 0x00, 0x01, 0x7f};
    uint8_t sel[10] = {0, 0, 0, 1, 0x00, 0x0b, 3, 0, 0, 0}, vd[32];
    if (pcr < 24)
        sel[7 + pcr / 8] = (uint8_t)(1u << (pcr % 8));
    tm_sha256(value, 32, vd);
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, zero, sizeof(zero));
    tm_sha256_update(&c, cc, sizeof(cc));
    tm_sha256_update(&c, sel, sizeof(sel));
    tm_sha256_update(&c, vd, sizeof(vd));
    tm_sha256_final(&c, out);
}
