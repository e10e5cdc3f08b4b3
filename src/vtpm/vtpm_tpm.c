/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libtpms in trustme-vtpm's own process (docs/VTPM.md "Who hosts it"). libtpms asks its platform
 * for three things: its NVRAM (load and store of the "permall" blob), the locality of the
 * command, and physical presence. The NVRAM is the state vtpm_state.c commits: each store is
 * encrypted here (AES-256-GCM, a fresh nonce) and handed over whole; the locality is always 0,
 * the only one the guest's control channel may set. */
/* RAND_set_rand_method (OpenSSL 3 deprecates it; there is no other way to give RAND_bytes a
 * source without OpenSSL's DRBG): below, getrandom_method. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "vtpm_tpm.h"

#include <assert.h>
#include <errno.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_memory.h>
#include <libtpms/tpm_nvfilename.h>
#include <libtpms/tpm_tis.h>

#include "secmem.h"
#include "vtpm_state.h"
#include "vtpm_wire.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define OVERHEAD (VTPM_STATE_MAGIC_LEN + NONCE_LEN + TAG_LEN)

/* The state key, and the permanent state in the clear (what libtpms loads at its start, and what
 * it stored last: a store of the same bytes is not encrypted and committed again), each in a
 * mapping of its own: locked (never swapped), left out of core dumps, wiped when freed
 * (secmem.h; docs/VTPM.md "Secrets in memory"). */
static struct secret *state_key, *plain;
static size_t plain_len;
static bool started;

/* plain holds len bytes: a larger mapping when it does not, the old one wiped. */
static int plain_reserve(size_t len)
{
    if (plain && plain->len >= len)
        return 0;
    struct secret *s = NULL;
    tm_err err = {0};
    /* Room to grow (an NV index or a persistent object more) without a new mapping each time. */
    if (secret_new(len + 4096, &s, &err) < 0)
        return -ENOMEM;
    if (plain)
        memcpy(s->data, plain->data, plain_len);
    secret_free(plain);
    plain = s;
    return 0;
}

/* The state's AES-256-GCM and its nonce: nettle and getrandom, not OpenSSL's EVP. OpenSSL 3's
 * first EVP use (its name map, the provider's method store, the DRBG) was about 8 of the 13
 * million instructions of a vTPM's whole run, all of it on the start's critical path (callgrind,
 * docs/BENCHMARKS.md "Per-container vTPM"); nettle's AES-GCM (AES-NI where the CPU has it) has no
 * such set-up. The key schedule lives on the stack only while it is used and is wiped. */
static int seal(const uint8_t *in, size_t len, uint8_t *out)
{
    memcpy(out, VTPM_STATE_MAGIC, VTPM_STATE_MAGIC_LEN);
    uint8_t *nonce = out + VTPM_STATE_MAGIC_LEN, *ct = nonce + NONCE_LEN;
    if (getrandom(nonce, NONCE_LEN, 0) != NONCE_LEN)
        return -EIO;
    struct gcm_aes256_ctx ctx;
    gcm_aes256_set_key(&ctx, state_key->data);
    gcm_aes256_set_iv(&ctx, NONCE_LEN, nonce);
    gcm_aes256_update(&ctx, VTPM_STATE_MAGIC_LEN, out);
    gcm_aes256_encrypt(&ctx, len, ct, in);
    gcm_aes256_digest(&ctx, TAG_LEN, ct + len);
    explicit_bzero(&ctx, sizeof(ctx));
    return 0;
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
    uint8_t tag[TAG_LEN];
    struct gcm_aes256_ctx ctx;
    gcm_aes256_set_key(&ctx, state_key->data);
    gcm_aes256_set_iv(&ctx, NONCE_LEN, nonce);
    gcm_aes256_update(&ctx, VTPM_STATE_MAGIC_LEN, in);
    gcm_aes256_decrypt(&ctx, ct_len, out, ct);
    gcm_aes256_digest(&ctx, TAG_LEN, tag);
    explicit_bzero(&ctx, sizeof(ctx));
    if (!memeql_sec(tag, ct + ct_len, TAG_LEN)) {
        explicit_bzero(out, ct_len); /* nothing of a forgery is used */
        *why = "the state does not decrypt under this vTPM's key";
        return -EBADMSG;
    }
    return 0;
}

/* libtpms draws its entropy with OpenSSL's RAND_bytes (TPM2_Startup seeds the TPM's own DRBG,
 * key generation and signatures draw more). OpenSSL's default source is its own DRBG, seeded
 * from getrandom: its first use fetches the DRBG and AES-CTR through OpenSSL 3's provider
 * machinery, about 8 of the 13 million instructions of a whole vTPM run and all of it at the
 * start, in TPM2_Startup (callgrind; docs/BENCHMARKS.md "Per-container vTPM"). The kernel's
 * generator directly is as good a source and costs one system call (seccomp allows getrandom),
 * and no DRBG state of OpenSSL's sits in this process. */
static int getrandom_bytes(unsigned char *buf, int num)
{
    size_t have = 0;
    while (num > 0 && have < (size_t)num) {
        ssize_t n = getrandom(buf + have, (size_t)num - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
    return 1;
}

static int getrandom_status(void)
{
    return 1;
}

static const RAND_METHOD getrandom_method = {
    .bytes = getrandom_bytes, .pseudorand = getrandom_bytes, .status = getrandom_status};

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
    /* libtpms unmarshals this copy and frees it: a short-lived copy in its heap, which we
     * cannot lock (docs/VTPM.md "Secrets in memory"). */
    if (TPM_Malloc(data, (uint32_t)plain_len) != TPM_SUCCESS)
        return TPM_FAIL;
    memcpy(*data, plain->data, plain_len);
    *length = (uint32_t)plain_len;
    return TPM_SUCCESS;
}

static TPM_RESULT nv_store(const unsigned char *data, uint32_t length, uint32_t tpm_number, const char *name)
{
    (void)tpm_number;
    if (strcmp(name, TPM_PERMANENT_ALL_NAME) != 0)
        return TPM_SUCCESS;
    if (plain && length == plain_len && memcmp(data, plain->data, length) == 0)
        return TPM_SUCCESS;
    /* The sealed copy is ciphertext: ordinary memory. */
    uint8_t *sealed = malloc(length + OVERHEAD);
    int r = sealed ? plain_reserve(length) : -ENOMEM;
    if (r == 0)
        r = seal(data, length, sealed);
    /* A state that cannot be committed fails the command (TPM_FAIL): its response must not
     * leave as if what it wrote were kept. */
    if (r == 0)
        r = vtpm_state_put(sealed, length + OVERHEAD);
    free(sealed);
    if (r < 0)
        return TPM_FAIL;
    memcpy(plain->data, data, length);
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

int vtpm_tpm_start(struct secret *key, const uint8_t *state, size_t len, const char **why)
{
    assert(key && key->len == VTPM_KEY_LEN);
    secret_free(state_key);
    state_key = key;
    *why = NULL;
    if (len > 0) {
        if (len < OVERHEAD) {
            *why = "the state is not in trustme-vtpm's format (swtpm's, from before trustme-vtpm hosted libtpms "
                   "itself?)";
            return -EBADMSG;
        }
        int r = plain_reserve(len - OVERHEAD);
        if (r < 0) {
            *why = "no locked memory for the state (RLIMIT_MEMLOCK?)";
            return r;
        }
        if ((r = unseal(state, len, plain->data, why)) < 0)
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
    if (RAND_set_rand_method(&getrandom_method) != 1 || TPMLIB_RegisterCallbacks(&cb) != TPM_SUCCESS ||
        TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) != TPM_SUCCESS) {
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

void vtpm_tpm_prepare(void)
{
    /* OpenSSL's set-up, which the start no longer needs (getrandom_method): its configuration
     * file read before the seccomp filter, not at the guest's first command under it. */
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
}

uint8_t vtpm_tpm_established(void)
{
    TPM_BOOL established = 0;
    return TPM_IO_TpmEstablished_Get(&established) == TPM_SUCCESS && established ? 1 : 0;
}

void vtpm_tpm_stop(bool orderly)
{
    if (started) {
        if (orderly)
            power_command(0x145); /* TPM2_Shutdown */
        TPMLIB_Terminate();
        started = false;
    }
    /* What is left to do (the final write) needs neither. */
    secret_free(plain);
    plain = NULL;
    plain_len = 0;
    secret_free(state_key);
    state_key = NULL;
}
