/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bytes trustme-vtpm reads and writes (vtpm_wire.c): TPM 2.0 command headers, the few
 * commands it sends itself, the handles a client's commands create, and the allowlist of the
 * swtpm TCTI's control channel. Pure functions, unit-tested (tests/unit/test_vtpm_wire.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VTPM_HEADER 10 /* tag u16, size u32, command code / response code u32 */
#define VTPM_MAX_COMMAND 4096
#define VTPM_MAX_HANDLES 64
/* TPM 1.2's TPM_BAD_ORDINAL, as swtpm answers control commands it does not know. */
#define VTPM_CTRL_REFUSED 0x0au

/* swtpm control commands (swtpm's tpm_ioctl.h numbering). */
enum {
    VTPM_CTRL_GET_CAPABILITY = 1,
    VTPM_CTRL_INIT = 2,
    VTPM_CTRL_SHUTDOWN = 3,
    VTPM_CTRL_GET_TPMESTABLISHED = 4,
    VTPM_CTRL_SET_LOCALITY = 5,
    VTPM_CTRL_STOP = 14,
    VTPM_CTRL_GET_STATEBLOB = 12,
    VTPM_CTRL_SET_STATEBLOB = 13,
};

struct vtpm_handles {
    uint32_t h[VTPM_MAX_HANDLES];
    size_t n;
};

static inline uint32_t vtpm_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void vtpm_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Commands into out (VTPM_MAX_COMMAND bytes); each returns its length. */
size_t vtpm_cmd_pcr_extend(uint8_t *out, uint32_t pcr, const uint8_t sha256[32]);
size_t vtpm_cmd_platform_off(uint8_t *out);
size_t vtpm_cmd_flush(uint8_t *out, uint32_t handle);

/* The endorsement keys made at manufacture, with the TCG EK Credential Profile's default
 * templates, persistent at the TCG's handles. */
enum vtpm_ek_kind { VTPM_EK_RSA, VTPM_EK_ECC };
#define VTPM_EK_RSA_HANDLE 0x81010001u
#define VTPM_EK_ECC_HANDLE 0x81010002u
/* The template's TPMT_PUBLIC into out (at most 400 bytes); its length. */
size_t vtpm_ek_template(enum vtpm_ek_kind kind, uint8_t *out);
/* CreatePrimary in the endorsement hierarchy (empty auth: a fresh TPM's) with that template. */
size_t vtpm_cmd_create_ek(uint8_t *out, enum vtpm_ek_kind kind);
/* EvictControl by the owner (empty auth) of a loaded object to a persistent handle. */
size_t vtpm_cmd_evict(uint8_t *out, uint32_t object, uint32_t persistent);
/* A successful CreatePrimary's response: the object's handle and its TPMT_PUBLIC (pointing into
 * rsp); -1 when it failed or is malformed. */
int vtpm_rsp_created(const uint8_t *rsp, size_t len, uint32_t *ret_handle, const uint8_t **ret_public,
                     size_t *ret_public_len);

/* The EK certificates (DER) at the TCG EK Credential Profile's NV indices, written by the
 * platform at manufacture and readable by anyone (docs/VTPM.md "EK certificates"). */
#define VTPM_EK_CERT_RSA_INDEX 0x01c00002u
#define VTPM_EK_CERT_ECC_INDEX 0x01c0000au
#define VTPM_EK_CERT_MAX 2048
/* PPWRITE | WRITEDEFINE | PPREAD | OWNERREAD | AUTHREAD | NO_DA | PLATFORMCREATE: only the platform
 * writes it (and locks it for good after writing), owner and anyone with the empty auth read it,
 * and only the platform can delete it. */
#define VTPM_EK_CERT_NV_ATTRIBUTES 0x42072001u
/* NV_DefineSpace by the platform (empty auth) of an index of size bytes with those attributes. */
size_t vtpm_cmd_nv_define(uint8_t *out, uint32_t index, uint16_t size);
/* NV_Write by the platform of len bytes (at most VTPM_NV_CHUNK) at offset. */
#define VTPM_NV_CHUNK 512
size_t vtpm_cmd_nv_write(uint8_t *out, uint32_t index, const uint8_t *data, uint16_t len, uint16_t offset);
/* NV_WriteLock by the platform: with WRITEDEFINE, locked until the index is deleted. */
size_t vtpm_cmd_nv_write_lock(uint8_t *out, uint32_t index);
/* NV_UndefineSpace by the platform: only an index the platform made (PLATFORMCREATE) goes. */
size_t vtpm_cmd_nv_undefine(uint8_t *out, uint32_t index);
#define VTPM_RC_NV_DEFINED 0x14Cu

/* After a forwarded command and its response: the transient object or session handle it made
 * (CreatePrimary, Load, LoadExternal, CreateLoaded, ContextLoad, StartAuthSession, HMAC_Start,
 * HashSequenceStart), or the one a FlushContext flushed; 0 for none. */
void vtpm_track(const uint8_t *cmd, size_t cmd_len, const uint8_t *rsp, size_t rsp_len, uint32_t *created,
                uint32_t *flushed);
/* A handle left at disconnect is flushed: transient objects, HMAC and policy sessions. */
bool vtpm_flushable(uint32_t handle);
void vtpm_handles_add(struct vtpm_handles *hs, uint32_t h);
void vtpm_handles_remove(struct vtpm_handles *hs, uint32_t h);

/* Why the guest may not send this control command (NULL: allowed). Allowed are only what the
 * tpm2-tss swtpm TCTI needs: the capabilities, the established flag and locality 0. */
const char *vtpm_ctrl_refused(const uint8_t *msg, size_t len);

/* The capabilities the control channel reports: the established flag and the locality (swtpm's
 * PTM_CAP_GET_TPMESTABLISHED | PTM_CAP_SET_LOCALITY), the only commands it answers. */
#define VTPM_CTRL_CAPS 0x0cu
/* The answer to an allowed control command (vtpm_ctrl_refused said NULL) into out (16 bytes),
 * big-endian as swtpm's socket interface: a result code, then the command's data. Returns its
 * length. */
size_t vtpm_ctrl_answer(const uint8_t *msg, uint8_t out[16], uint8_t established);
