/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libtpms in trustme-vtpm's own process (docs/VTPM.md "Who hosts it"). libtpms asks its platform
 * for three things: its NVRAM (load and store of the "permall" blob), the locality of the
 * command, and physical presence. The NVRAM is the state vtpm_state.c commits: each store is
 * encrypted here (AES-256-GCM, a fresh nonce) and handed over whole; the locality is always 0,
 * the only one the guest's control channel may set. */
#include "vtpm_tpm.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>
#include <libtpms/tpm_nvfilename.h>
#include <libtpms/tpm_tis.h>

#include "vtpm_state.h"
#include "vtpm_wire.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define OVERHEAD (VTPM_STATE_MAGIC_LEN + NONCE_LEN + TAG_LEN)

static uint8_t state_key[VTPM_KEY_LEN];
/* The permanent state in the clear: what libtpms loads at its start, and what it stored last
 * (a store of the same bytes is not encrypted and committed again). */
static uint8_t *plain;
static size_t plain_len;
static bool started;

static int seal(const uint8_t *in, size_t len, uint8_t *out)
{
    memcpy(out, VTPM_STATE_MAGIC, VTPM_STATE_MAGIC_LEN);
    uint8_t *nonce = out + VTPM_STATE_MAGIC_LEN, *ct = nonce + NONCE_LEN;
    if (RAND_bytes(nonce, NONCE_LEN) != 1)
        return -EIO;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0,
        ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, state_key, nonce) == 1 &&
             EVP_EncryptUpdate(ctx, NULL, &n, out, VTPM_STATE_MAGIC_LEN) == 1 &&
             EVP_EncryptUpdate(ctx, ct, &n, in, (int)len) == 1 && EVP_EncryptFinal_ex(ctx, ct + n, &m) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -EIO;
}

/* out holds len - OVERHEAD bytes. */
static int unseal(const uint8_t *in, size_t len, uint8_t *out, const char **why)
{
    if (len < OVERHEAD || memcmp(in, VTPM_STATE_MAGIC, VTPM_STATE_MAGIC_LEN) != 0) {
        *why = "the state is not in trustme-vtpm's format (swtpm's, from before trustme-vtpm hosted libtpms "
               "itself?)";
        return -EBADMSG;
    }
    const uint8_t *nonce = in + VTPM_STATE_MAGIC_LEN, *ct = nonce + NONCE_LEN;
    size_t ct_len = len - OVERHEAD;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, state_key, nonce) == 1 &&
                    EVP_DecryptUpdate(ctx, NULL, &n, in, VTPM_STATE_MAGIC_LEN) == 1 &&
                    EVP_DecryptUpdate(ctx, out, &n, ct, (int)ct_len) == 1 &&
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(ct + ct_len)) == 1 &&
                    EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        *why = "the state does not decrypt under this vTPM's key";
        return -EBADMSG;
    }
    return 0;
}

static TPM_RESULT nv_init(void)
{
    return TPM_SUCCESS;
}

/* Only the permanent state is kept: every start is a power-on with TPM2_Startup(CLEAR), so
 * there is no volatile or saved state to resume. TPM_RETRY tells libtpms there is none. */
static TPM_RESULT nv_load(unsigned char **data, uint32_t *length, uint32_t tpm_number, const char *name)
{
    (void)tpm_number;
    if (strcmp(name, TPM_PERMANENT_ALL_NAME) != 0 || plain_len == 0)
        return TPM_RETRY;
    if (TPM_Malloc(data, (uint32_t)plain_len) != TPM_SUCCESS)
        return TPM_FAIL;
    memcpy(*data, plain, plain_len);
    *length = (uint32_t)plain_len;
    return TPM_SUCCESS;
}

static TPM_RESULT nv_store(const unsigned char *data, uint32_t length, uint32_t tpm_number, const char *name)
{
    (void)tpm_number;
    if (strcmp(name, TPM_PERMANENT_ALL_NAME) != 0)
        return TPM_SUCCESS;
    if (length == plain_len && memcmp(data, plain, length) == 0)
        return TPM_SUCCESS;
    uint8_t *copy = malloc(length ? length : 1), *sealed = malloc(length + OVERHEAD);
    int r = copy && sealed ? seal(data, length, sealed) : -ENOMEM;
    /* A state that cannot be committed fails the command (TPM_FAIL): its response must not
     * leave as if what it wrote were kept. */
    if (r == 0)
        r = vtpm_state_put(sealed, length + OVERHEAD);
    free(sealed);
    if (r < 0) {
        free(copy);
        return TPM_FAIL;
    }
    memcpy(copy, data, length);
    free(plain);
    plain = copy;
    plain_len = length;
    return TPM_SUCCESS;
}

static TPM_RESULT nv_delete(uint32_t tpm_number, const char *name, TPM_BOOL must_exist)
{
    (void)tpm_number;
    (void)name;
    (void)must_exist;
    return TPM_SUCCESS;
}

static TPM_RESULT io_init(void)
{
    return TPM_SUCCESS;
}

static TPM_RESULT io_locality(TPM_MODIFIER_INDICATOR *locality, uint32_t tpm_number)
{
    (void)tpm_number;
    *locality = 0;
    return TPM_SUCCESS;
}

static TPM_RESULT io_presence(TPM_BOOL *presence, uint32_t tpm_number)
{
    (void)tpm_number;
    *presence = 0;
    return TPM_SUCCESS;
}

static int power_command(uint32_t cc)
{
    /* TPM2_Startup / TPM2_Shutdown with TPM_SU_CLEAR. */
    uint8_t cmd[VTPM_HEADER + 2] = {0x80, 0x01, 0, 0, 0, VTPM_HEADER + 2}, rsp[VTPM_MAX_COMMAND];
    size_t rlen;
    vtpm_put_be32(cmd + 6, cc);
    int r = vtpm_tpm_process(cmd, sizeof(cmd), rsp, &rlen);
    if (r < 0)
        return r;
    return vtpm_be32(rsp + 6) == 0 ? 0 : -EIO;
}

int vtpm_tpm_start(const uint8_t key[VTPM_KEY_LEN], const uint8_t *state, size_t len, const char **why)
{
    memcpy(state_key, key, VTPM_KEY_LEN);
    *why = NULL;
    if (len > 0) {
        if (len < OVERHEAD) {
            *why = "the state is not in trustme-vtpm's format (swtpm's, from before trustme-vtpm hosted libtpms "
                   "itself?)";
            return -EBADMSG;
        }
        if (!(plain = malloc(len - OVERHEAD + 1)))
            return -ENOMEM;
        int r = unseal(state, len, plain, why);
        if (r < 0)
            return r;
        plain_len = len - OVERHEAD;
    }
    static struct libtpms_callbacks cb = {.sizeOfStruct = sizeof(struct libtpms_callbacks),
                                          .tpm_nvram_init = nv_init,
                                          .tpm_nvram_loaddata = nv_load,
                                          .tpm_nvram_storedata = nv_store,
                                          .tpm_nvram_deletename = nv_delete,
                                          .tpm_io_init = io_init,
                                          .tpm_io_getlocality = io_locality,
                                          .tpm_io_getphysicalpresence = io_presence};
    if (TPMLIB_RegisterCallbacks(&cb) != TPM_SUCCESS || TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) != TPM_SUCCESS) {
        *why = "libtpms refused its set-up";
        return -EIO;
    }
    /* A new TPM is manufactured here (its seeds drawn, its permanent state stored). */
    if (TPMLIB_MainInit() != TPM_SUCCESS) {
        *why = "libtpms did not start (its state is damaged?)";
        return -EIO;
    }
    started = true;
    int r = power_command(0x144); /* TPM2_Startup */
    if (r < 0)
        *why = "TPM2_Startup(CLEAR) failed";
    return r;
}

int vtpm_tpm_process(const uint8_t *cmd, size_t len, uint8_t *rsp, size_t *rsp_len)
{
    static unsigned char *buf;
    static uint32_t buf_size;
    static uint8_t in[VTPM_MAX_COMMAND];
    uint32_t out_len = 0;
    if (len > sizeof(in))
        return -EMSGSIZE;
    memcpy(in, cmd, len); /* libtpms takes a buffer it may write */
    if (TPMLIB_Process(&buf, &out_len, &buf_size, in, (uint32_t)len) != TPM_SUCCESS || out_len < VTPM_HEADER ||
        out_len > VTPM_MAX_COMMAND)
        return -EIO;
    memcpy(rsp, buf, out_len);
    *rsp_len = out_len;
    return 0;
}

uint8_t vtpm_tpm_established(void)
{
    TPM_BOOL established = 0;
    return TPM_IO_TpmEstablished_Get(&established) == TPM_SUCCESS && established ? 1 : 0;
}

void vtpm_tpm_stop(bool orderly)
{
    if (!started)
        return;
    if (orderly)
        power_command(0x145); /* TPM2_Shutdown */
    TPMLIB_Terminate();
    started = false;
}
