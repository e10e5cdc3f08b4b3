/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtpm_wire.h"

#include <string.h>

#define TPM_ST_NO_SESSIONS 0x8001
#define TPM_ST_SESSIONS 0x8002
#define TPM_RS_PW 0x40000009u
#define TPM_RH_PLATFORM 0x4000000Cu
#define TPM_RH_OWNER 0x40000001u
#define TPM_RH_ENDORSEMENT 0x4000000Bu
#define TPM_ALG_SHA256 0x000B

#define CC_HIERARCHY_CONTROL 0x121u
#define CC_EVICT_CONTROL 0x120u
#define CC_CREATE_PRIMARY 0x131u
#define CC_HMAC_START 0x15Bu
#define CC_LOAD 0x157u
#define CC_CONTEXT_LOAD 0x161u
#define CC_FLUSH_CONTEXT 0x165u
#define CC_LOAD_EXTERNAL 0x167u
#define CC_START_AUTH_SESSION 0x176u
#define CC_PCR_EXTEND 0x182u
#define CC_HASH_SEQUENCE_START 0x186u
#define CC_CREATE_LOADED 0x191u
#define CC_NV_DEFINE_SPACE 0x12Au
#define CC_NV_WRITE 0x137u
#define CC_NV_WRITE_LOCK 0x138u
#define CC_NV_UNDEFINE_SPACE 0x122u

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Header, one handle, and an empty password session: the shape of both commands below. */
static size_t begin(uint8_t *out, uint32_t cc, uint32_t handle)
{
    put16(out, TPM_ST_SESSIONS);
    vtpm_put_be32(out + 6, cc);
    vtpm_put_be32(out + 10, handle);
    vtpm_put_be32(out + 14, 9); /* authorizationSize */
    vtpm_put_be32(out + 18, TPM_RS_PW);
    put16(out + 22, 0); /* nonce */
    out[24] = 0; /* sessionAttributes */
    put16(out + 25, 0); /* hmac: the empty auth value */
    return 27;
}

/* The same with two handles (an authorisation handle, then the object), e.g. an NV index. */
static size_t begin2(uint8_t *out, uint32_t cc, uint32_t auth, uint32_t handle)
{
    put16(out, TPM_ST_SESSIONS);
    vtpm_put_be32(out + 6, cc);
    vtpm_put_be32(out + 10, auth);
    vtpm_put_be32(out + 14, handle);
    vtpm_put_be32(out + 18, 9);
    vtpm_put_be32(out + 22, TPM_RS_PW);
    put16(out + 26, 0);
    out[28] = 0;
    put16(out + 29, 0);
    return 31;
}

size_t vtpm_cmd_nv_define(uint8_t *out, uint32_t index, uint16_t size)
{
    size_t n = begin(out, CC_NV_DEFINE_SPACE, TPM_RH_PLATFORM);
    put16(out + n, 0); /* auth: empty (AUTHREAD with the empty auth: anyone may read) */
    put16(out + n + 2, 14); /* TPM2B_NV_PUBLIC.size */
    vtpm_put_be32(out + n + 4, index);
    put16(out + n + 8, TPM_ALG_SHA256);
    vtpm_put_be32(out + n + 10, VTPM_EK_CERT_NV_ATTRIBUTES);
    put16(out + n + 14, 0); /* authPolicy: none */
    put16(out + n + 16, size);
    n += 18;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_nv_write(uint8_t *out, uint32_t index, const uint8_t *data, uint16_t len, uint16_t offset)
{
    size_t n = begin2(out, CC_NV_WRITE, TPM_RH_PLATFORM, index);
    put16(out + n, len);
    memcpy(out + n + 2, data, len);
    put16(out + n + 2 + len, offset);
    n += 4 + (size_t)len;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_nv_write_lock(uint8_t *out, uint32_t index)
{
    size_t n = begin2(out, CC_NV_WRITE_LOCK, TPM_RH_PLATFORM, index);
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_nv_undefine(uint8_t *out, uint32_t index)
{
    size_t n = begin2(out, CC_NV_UNDEFINE_SPACE, TPM_RH_PLATFORM, index);
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_pcr_extend(uint8_t *out, uint32_t pcr, const uint8_t sha256[32])
{
    size_t n = begin(out, CC_PCR_EXTEND, pcr);
    vtpm_put_be32(out + n, 1); /* TPML_DIGEST_VALUES.count */
    put16(out + n + 4, TPM_ALG_SHA256);
    memcpy(out + n + 6, sha256, 32);
    n += 38;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_platform_off(uint8_t *out)
{
    size_t n = begin(out, CC_HIERARCHY_CONTROL, TPM_RH_PLATFORM);
    vtpm_put_be32(out + n, TPM_RH_PLATFORM); /* enable: the platform hierarchy... */
    out[n + 4] = 0; /* ...state: NO */
    n += 5;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_flush(uint8_t *out, uint32_t handle)
{
    put16(out, TPM_ST_NO_SESSIONS);
    vtpm_put_be32(out + 2, 14);
    vtpm_put_be32(out + 6, CC_FLUSH_CONTEXT);
    vtpm_put_be32(out + 10, handle);
    return 14;
}

/* The TCG EK Credential Profile's default templates L-1 (RSA 2048) and L-2 (ECC NIST P-256):
 * nameAlg SHA-256; fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt;
 * authPolicy PolicySecret(TPM_RH_ENDORSEMENT); AES-128-CFB; unique zero-filled (256 bytes of
 * modulus, 32 bytes each of x and y). Any tool that recreates the EK from the templates
 * (tpm2_createek) gets the same key. */
static const uint8_t ek_policy[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                      0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                      0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

size_t vtpm_ek_template(enum vtpm_ek_kind kind, uint8_t *out)
{
    size_t n = 0;
    put16(out, kind == VTPM_EK_RSA ? 0x0001 : 0x0023); /* TPM_ALG_RSA / TPM_ALG_ECC */
    put16(out + 2, TPM_ALG_SHA256);
    vtpm_put_be32(out + 4, 0x000300b2u);
    put16(out + 8, 32);
    memcpy(out + 10, ek_policy, 32);
    n = 42;
    put16(out + n, 0x0006); /* AES */
    put16(out + n + 2, 128);
    put16(out + n + 4, 0x0043); /* CFB */
    put16(out + n + 6, 0x0010); /* scheme: TPM_ALG_NULL */
    n += 8;
    if (kind == VTPM_EK_RSA) {
        put16(out + n, 2048);
        vtpm_put_be32(out + n + 2, 0); /* exponent: the default 65537 */
        put16(out + n + 6, 256);
        memset(out + n + 8, 0, 256);
        n += 8 + 256;
    } else {
        put16(out + n, 0x0003); /* TPM_ECC_NIST_P256 */
        put16(out + n + 2, 0x0010); /* kdf: TPM_ALG_NULL */
        put16(out + n + 4, 32);
        memset(out + n + 6, 0, 32);
        put16(out + n + 38, 32);
        memset(out + n + 40, 0, 32);
        n += 72;
    }
    return n;
}

size_t vtpm_cmd_create_ek(uint8_t *out, enum vtpm_ek_kind kind)
{
    size_t n = begin(out, CC_CREATE_PRIMARY, TPM_RH_ENDORSEMENT);
    put16(out + n, 4); /* inSensitive: empty userAuth and data */
    put16(out + n + 2, 0);
    put16(out + n + 4, 0);
    n += 6;
    size_t t = vtpm_ek_template(kind, out + n + 2);
    put16(out + n, (uint16_t)t);
    n += 2 + t;
    put16(out + n, 0); /* outsideInfo */
    vtpm_put_be32(out + n + 2, 0); /* creationPCR: none */
    n += 6;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

size_t vtpm_cmd_evict(uint8_t *out, uint32_t object, uint32_t persistent)
{
    put16(out, TPM_ST_SESSIONS);
    vtpm_put_be32(out + 6, CC_EVICT_CONTROL);
    vtpm_put_be32(out + 10, TPM_RH_OWNER);
    vtpm_put_be32(out + 14, object);
    size_t n = 18;
    vtpm_put_be32(out + n, 9);
    vtpm_put_be32(out + n + 4, TPM_RS_PW);
    put16(out + n + 8, 0);
    out[n + 10] = 0;
    put16(out + n + 11, 0);
    n += 13;
    vtpm_put_be32(out + n, persistent);
    n += 4;
    vtpm_put_be32(out + 2, (uint32_t)n);
    return n;
}

int vtpm_rsp_created(const uint8_t *rsp, size_t len, uint32_t *ret_handle, const uint8_t **ret_public,
                     size_t *ret_public_len)
{
    /* tag, size, rc; objectHandle; parameterSize; outPublic (TPM2B_PUBLIC) ... */
    if (len < VTPM_HEADER + 10 || vtpm_be32(rsp + 6) != 0)
        return -1;
    size_t pub = (size_t)rsp[VTPM_HEADER + 8] << 8 | rsp[VTPM_HEADER + 9];
    if (pub == 0 || VTPM_HEADER + 10 + pub > len)
        return -1;
    *ret_handle = vtpm_be32(rsp + VTPM_HEADER);
    *ret_public = rsp + VTPM_HEADER + 10;
    *ret_public_len = pub;
    return 0;
}

bool vtpm_flushable(uint32_t handle)
{
    uint8_t type = (uint8_t)(handle >> 24);
    return type == 0x80 || type == 0x02 || type == 0x03; /* transient, HMAC/loaded, policy session */
}

void vtpm_track(const uint8_t *cmd, size_t cmd_len, const uint8_t *rsp, size_t rsp_len, uint32_t *created,
                uint32_t *flushed)
{
    *created = *flushed = 0;
    if (cmd_len < VTPM_HEADER || rsp_len < VTPM_HEADER || vtpm_be32(rsp + 6) != 0)
        return;
    switch (vtpm_be32(cmd + 6)) {
    case CC_CREATE_PRIMARY:
    case CC_LOAD:
    case CC_LOAD_EXTERNAL:
    case CC_CREATE_LOADED:
    case CC_CONTEXT_LOAD:
    case CC_START_AUTH_SESSION:
    case CC_HMAC_START:
    case CC_HASH_SEQUENCE_START:
        if (rsp_len >= VTPM_HEADER + 4 && vtpm_flushable(vtpm_be32(rsp + VTPM_HEADER)))
            *created = vtpm_be32(rsp + VTPM_HEADER);
        break;
    case CC_FLUSH_CONTEXT:
        if (cmd_len >= VTPM_HEADER + 4)
            *flushed = vtpm_be32(cmd + VTPM_HEADER);
        break;
    default: break;
    }
}

void vtpm_handles_add(struct vtpm_handles *hs, uint32_t h)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i] == h)
            return;
    if (hs->n < VTPM_MAX_HANDLES)
        hs->h[hs->n++] = h;
}

void vtpm_handles_remove(struct vtpm_handles *hs, uint32_t h)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i] == h) {
            hs->h[i] = hs->h[--hs->n];
            return;
        }
}

const char *vtpm_ctrl_refused(const uint8_t *msg, size_t len)
{
    if (len < 4)
        return "a truncated command";
    switch (vtpm_be32(msg)) {
    case VTPM_CTRL_GET_CAPABILITY:
    case VTPM_CTRL_GET_TPMESTABLISHED: return len == 4 ? NULL : "trailing bytes";
    case VTPM_CTRL_SET_LOCALITY: return len == 5 && msg[4] == 0 ? NULL : "a locality other than 0";
    case VTPM_CTRL_INIT: return "CMD_INIT (a power cycle)";
    case VTPM_CTRL_SHUTDOWN: return "CMD_SHUTDOWN";
    case VTPM_CTRL_STOP: return "CMD_STOP";
    case VTPM_CTRL_GET_STATEBLOB: return "CMD_GET_STATEBLOB (reading the state out)";
    case VTPM_CTRL_SET_STATEBLOB: return "CMD_SET_STATEBLOB (replacing the state)";
    default: return "a control command the guest does not need";
    }
}

size_t vtpm_ctrl_answer(const uint8_t *msg, uint8_t out[16], uint8_t established)
{
    memset(out, 0, 16);
    switch (vtpm_be32(msg)) {
    case VTPM_CTRL_GET_CAPABILITY: vtpm_put_be32(out + 4, VTPM_CTRL_CAPS); return 8;
    case VTPM_CTRL_GET_TPMESTABLISHED: out[4] = established; return 8; /* the bit, 3 reserved bytes */
    default: return 4; /* SET_LOCALITY 0: done */
    }
}
