/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "scd_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "b64.h"
#include "fileio.h"
#include "kdf_aead.h"
#include "token.h"
#include "token_soft.h"

const uint8_t fx_kek_bytes[32] = {0x4b, 0x45, 0x4b, 0x20, 0x6f, 0x66, 0x20, 0x74, 0x68, 0x65, 0x20,
                                  0x66, 0x75, 0x7a, 0x7a, 0x20, 0x66, 0x69, 0x78, 0x74, 0x75, 0x72,
                                  0x65, 0x2c, 0x20, 0x6e, 0x6f, 0x74, 0x20, 0x61, 0x20, 0x73};
const uint8_t fx_key_bytes[64] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                                  0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
                                  0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                                  0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
                                  0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f};
const uint8_t fx_device_secret_bytes[32] = {0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5,
                                            0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5,
                                            0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5, 0xd5};

/* Must match token_soft.c: the AAD of a part is this prefix, the UUID, ':' and the part's name;
 * a slot's key is HKDF-SHA256(scrypt(secret, salt), salt = the device secret, info). */
#define SOFT_AAD_PREFIX_V2 "trustme soft token v2:"
#define SOFT_AAD_PREFIX_V3 "trustme soft token v3:"
#define SOFT_SLOT_INFO_V2 "trustme soft token slot v2"
#define SOFT_SLOT_INFO_V3 "trustme soft token slot v3"
/* x25519_seal.h: HKDF(shared || epk || pub, salt = the device secret, this info). */
#define SEAL_INFO "trustme x25519 seal v1"

/* The PUK side of every v3 token: its private key, and the ephemeral key of its sealed KEK. */
static const uint8_t puk_priv_bytes[32] = {[0 ... 31] = 0x70};
static const uint8_t eph_priv_bytes[32] = {[0 ... 31] = 0x71};
static const uint8_t sealed_nonce[12] = {[0 ... 11] = 0x63};

static void die(const char *what, const tm_err *err)
{
    fprintf(stderr, "scd fixture: %s: %s\n", what, err ? err->msg : "failed");
    abort();
}

struct secret *fx_secret(const uint8_t *bytes, size_t len)
{
    struct secret *s;
    tm_err err = {0};
    if (secret_new(len, &s, &err) < 0)
        die("secret_new", &err);
    memcpy(s->data, bytes, len);
    return s;
}

struct slot {
    const char *name, *secret;
    uint8_t salt[SOFT_SALT_LEN], nonce[12];
    struct secret *key[2]; /* v2, v3: the same for every UUID */
};

static struct slot slots[2] = {
    {.name = "pin", .secret = FX_PIN, .salt = {[0 ... 15] = 0x51}, .nonce = {[0 ... 11] = 0x61}},
    {.name = "puk", .secret = FX_PUK, .salt = {[0 ... 15] = 0x52}, .nonce = {[0 ... 11] = 0x62}},
};

static void b64(const uint8_t *data, size_t len, char out[B64_MAX_BYTES * 2])
{
    b64_encode(data, len, out);
}

/* A slot of format ver holding payload (32 bytes). */
static void slot_json(struct slot *s, int ver, const char *uuid, const uint8_t *payload, char *out, size_t size)
{
    tm_err err = {0};
    struct secret **key = &s->key[ver == 2 ? 0 : 1];
    if (!*key) {
        _cleanup_secret_ struct secret *ikm = NULL;
        _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
        if (secret_new(AEAD_KEY_LEN, &ikm, &err) < 0 ||
            kdf_scrypt(s->secret, s->salt, sizeof(s->salt), FX_KDF_N, SOFT_KDF_R, SOFT_KDF_P, ikm, &err) < 0)
            die("scrypt", &err);
        if (secret_new(AEAD_KEY_LEN, key, &err) < 0 ||
            kdf_hkdf_sha256(ikm, ds->data, ds->len, ver == 2 ? SOFT_SLOT_INFO_V2 : SOFT_SLOT_INFO_V3, *key, &err) < 0)
            die("hkdf", &err);
    }
    char aad[128];
    uint8_t ct[SOFT_CT_LEN];
    snprintf(aad, sizeof(aad), "%s%s:%s", ver == 2 ? SOFT_AAD_PREFIX_V2 : SOFT_AAD_PREFIX_V3, uuid, s->name);
    if (aead_seal(*key, s->nonce, aad, strlen(aad), payload, SOFT_KEK_LEN, ct, ct + SOFT_KEK_LEN, &err) < 0)
        die("aead_seal", &err);
    char salt[B64_MAX_BYTES * 2], nonce[B64_MAX_BYTES * 2], c[B64_MAX_BYTES * 2];
    b64(s->salt, sizeof(s->salt), salt);
    b64(s->nonce, sizeof(s->nonce), nonce);
    b64(ct, sizeof(ct), c);
    snprintf(out, size, "{\"salt\":\"%s\",\"nonce\":\"%s\",\"ct\":\"%s\"}", salt, nonce, c);
}

static void x25519_public(const uint8_t priv[32], uint8_t pub[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    size_t len = 32;
    if (!k || EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != 32)
        die("X25519 public key", NULL);
    EVP_PKEY_free(k);
}

/* The KEK sealed to puk_pub as x25519_seal.h describes, with a fixed ephemeral key and nonce. */
static void sealed_json(const char *uuid, const uint8_t pub[32], char *out, size_t size)
{
    tm_err err = {0};
    uint8_t epk[32], ct[SOFT_CT_LEN];
    x25519_public(eph_priv_bytes, epk);
    _cleanup_secret_ struct secret *ikm = NULL, *key = NULL;
    _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    if (secret_new(96, &ikm, &err) < 0 || secret_new(AEAD_KEY_LEN, &key, &err) < 0)
        die("secret_new", &err);
    EVP_PKEY *e = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, eph_priv_bytes, 32);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, 32);
    EVP_PKEY_CTX *c = e ? EVP_PKEY_CTX_new(e, NULL) : NULL;
    size_t len = 32;
    if (!c || !peer || EVP_PKEY_derive_init(c) != 1 || EVP_PKEY_derive_set_peer(c, peer) != 1 ||
        EVP_PKEY_derive(c, ikm->data, &len) != 1 || len != 32)
        die("X25519", NULL);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(e);
    EVP_PKEY_free(peer);
    memcpy(ikm->data + 32, epk, 32);
    memcpy(ikm->data + 64, pub, 32);
    char aad[128];
    snprintf(aad, sizeof(aad), SOFT_AAD_PREFIX_V3 "%s:sealed", uuid);
    if (kdf_hkdf_sha256(ikm, ds->data, ds->len, SEAL_INFO, key, &err) < 0 ||
        aead_seal(key, sealed_nonce, aad, strlen(aad), fx_kek_bytes, SOFT_KEK_LEN, ct, ct + SOFT_KEK_LEN, &err) < 0)
        die("seal", &err);
    char e64[B64_MAX_BYTES * 2], n64[B64_MAX_BYTES * 2], c64[B64_MAX_BYTES * 2];
    b64(epk, sizeof(epk), e64);
    b64(sealed_nonce, sizeof(sealed_nonce), n64);
    b64(ct, sizeof(ct), c64);
    snprintf(out, size, "{\"epk\":\"%s\",\"nonce\":\"%s\",\"ct\":\"%s\"}", e64, n64, c64);
}

static size_t soft_file(int ver, const char *uuid, char *buf, size_t size)
{
    char pin[256], puk[256], tail[512] = "";
    slot_json(&slots[0], ver, uuid, fx_kek_bytes, pin, sizeof(pin));
    if (ver == 2) {
        slot_json(&slots[1], 2, uuid, fx_kek_bytes, puk, sizeof(puk));
    } else {
        uint8_t pub[32];
        char pub64[B64_MAX_BYTES * 2], sealed[256];
        slot_json(&slots[1], 3, uuid, puk_priv_bytes, puk, sizeof(puk));
        x25519_public(puk_priv_bytes, pub);
        b64(pub, sizeof(pub), pub64);
        sealed_json(uuid, pub, sealed, sizeof(sealed));
        snprintf(tail, sizeof(tail), ",\"puk_pub\":\"%s\",\"sealed\":%s", pub64, sealed);
    }
    int n = snprintf(buf, size,
                     "{\"version\":%d,\"kdf\":{\"alg\":\"scrypt\",\"N\":%u,\"r\":%d,"
                     "\"p\":%d},\"pin\":%s,\"puk\":%s%s}\n",
                     ver, FX_KDF_N, SOFT_KDF_R, SOFT_KDF_P, pin, puk, tail);
    if (n < 0 || (size_t)n >= size)
        die("soft token file too long", NULL);
    return (size_t)n;
}

size_t fx_soft_file(const char *uuid, char *buf, size_t size)
{
    return soft_file(3, uuid, buf, size);
}

size_t fx_soft_file_v2(const char *uuid, char *buf, size_t size)
{
    return soft_file(2, uuid, buf, size);
}

/* --- leaks --- */

static int lowest_free_fd(void)
{
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        die("F_DUPFD", NULL);
    close(fd);
    return fd;
}

static long vm_locked_kb(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        die("cannot read /proc/self/status", NULL);
    buf[n] = '\0';
    const char *p = strstr(buf, "\nVmLck:");
    if (!p)
        die("no VmLck in /proc/self/status", NULL);
    return strtol(p + 7, NULL, 10);
}

void fx_leaks_begin(struct fx_leaks *l, bool secrets)
{
    l->free_fd = lowest_free_fd();
    l->locked_kb = secrets ? vm_locked_kb() : -1;
}

void fx_leaks_check(const struct fx_leaks *l)
{
    int fd = lowest_free_fd();
    long kb = l->locked_kb < 0 ? -1 : vm_locked_kb();
    if (fd != l->free_fd) {
        fprintf(stderr, "fd leak: the lowest free fd was %d before the run, %d after it\n", l->free_fd, fd);
        abort();
    }
    if (kb != l->locked_kb) {
        fprintf(stderr,
                "locked memory was %ld kB before the run, %ld kB after it: a secret was "
                "not freed\n",
                l->locked_kb, kb);
        abort();
    }
}

/* --- the state directory --- */

#define SOFT_RECORD "{\"version\":1,\"type\":\"soft\"}\n"

struct file {
    char name[64];
    char *data;
};

static struct file files[24];
static size_t n_files;

static void add(const char *uuid, const char *suffix, const char *data)
{
    if (n_files == sizeof(files) / sizeof(files[0]))
        die("too many fixture files", NULL);
    struct file *f = &files[n_files++];
    snprintf(f->name, sizeof(f->name), "%s%s", uuid, suffix);
    if (!(f->data = strdup(data)))
        die("strdup", NULL);
}

static void add_soft(const char *uuid, int pin_failures, int puk_failures)
{
    char soft[2048];
    if (strcmp(uuid, FX_UUID_V2) == 0)
        fx_soft_file_v2(uuid, soft, sizeof(soft));
    else
        fx_soft_file(uuid, soft, sizeof(soft));
    add(uuid, ".token", SOFT_RECORD);
    add(uuid, ".soft", soft);
    if (pin_failures || puk_failures) {
        char tries[64];
        snprintf(tries, sizeof(tries), "{\"pin_failures\":%d,\"puk_failures\":%d}\n", pin_failures, puk_failures);
        add(uuid, ".tries", tries);
    }
}

static void build_files(void)
{
    if (n_files)
        return;
    add_soft(FX_UUID_SOFT, 0, 0);
    add_soft(FX_UUID_LASTTRY, 2, 0);
    add_soft(FX_UUID_LOCKED, 3, 9);
    add_soft(FX_UUID_BLOCKED, 3, 10);
    add_soft(FX_UUID_V2, 0, 0);
    add(FX_UUID_P11, ".token",
        "{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"" FX_P11_MODULE "\",\"label\":\"fuzz\"}}\n");
    /* An interrupted write: the record is cut short, a soft token file was left behind. */
    add(FX_UUID_BADREC, ".token", "{\"version\":1,\"ty");
    char soft[2048];
    fx_soft_file(FX_UUID_BADREC, soft, sizeof(soft));
    add(FX_UUID_BADREC, ".soft", soft);
}

static char *state_dir;

static void remove_state(void)
{
    if (state_dir)
        rm_rf(state_dir);
}

/* The fixture writes soft token files itself: make sure token_soft.c still reads them, and
 * opens them to the fixture's KEK with the PIN and with the PUK under the device secret (and
 * not without it). */
static void check_soft_file(const char *dir, const char *uuid)
{
    char path[PATH_MAX];
    struct soft_token tok;
    tm_err err = {0};
    snprintf(path, sizeof(path), "%s/tokens/%s.soft", dir, uuid);
    if (soft_token_load(path, &tok, &err) < 0)
        die("the fixture's soft token file does not load", &err);
    _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    for (int slot = SOFT_SLOT_PIN; slot <= SOFT_SLOT_PUK; slot++) {
        _cleanup_secret_ struct secret *kek = NULL;
        const char *secret = slot == SOFT_SLOT_PIN ? FX_PIN : FX_PUK;
        if (soft_token_open(&tok, uuid, (enum soft_slot)slot, secret, NULL, &kek, &err) != -EACCES)
            die("the fixture's soft token opens without the device secret", NULL);
        if (soft_token_open(&tok, uuid, (enum soft_slot)slot, secret, ds, &kek, &err) < 0)
            die("the fixture's soft token does not open", &err);
        if (kek->len != sizeof(fx_kek_bytes) || memcmp(kek->data, fx_kek_bytes, kek->len) != 0)
            die("the fixture's soft token holds another KEK", NULL);
    }
}

char *fx_state_new(void)
{
    const char *base = getenv("TMPDIR");
    struct stat st;
    /* The token code fsyncs every tries file it writes: on tmpfs that costs nothing. */
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof(tmpl), "%s/trustme-fuzz-scd-XXXXXX", base);
    if (!mkdtemp(tmpl))
        die("mkdtemp", NULL);
    char *dir = strdup(tmpl);
    if (!dir)
        die("strdup", NULL);
    build_files();
    fx_state_reset(dir);
    check_soft_file(dir, FX_UUID_SOFT);
    check_soft_file(dir, FX_UUID_V2);
    /* libFuzzer leaves through exit() after -max_total_time or -runs; a crash leaves the
     * directory behind for a look. */
    if (!state_dir) {
        state_dir = dir;
        atexit(remove_state);
    }
    return dir;
}

void fx_state_reset(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tokens", dir);
    if (rm_rf(path) < 0 || mkdir(path, 0700) < 0)
        die("cannot reset the state directory", NULL);
    for (size_t i = 0; i < n_files; i++) {
        snprintf(path, sizeof(path), "%s/tokens/%s", dir, files[i].name);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        size_t len = strlen(files[i].data);
        if (fd < 0 || write(fd, files[i].data, len) != (ssize_t)len)
            die("cannot write a fixture file", NULL);
        close(fd);
    }
}

void fx_anchor(const char *dir, const char *uuid, uint8_t out[32])
{
    struct token_ctx ctx = {.state_dir = dir};
    tm_err err = {0};
    if (token_files_digest(&ctx, uuid, out, &err) < 0)
        die("token_files_digest", &err);
}
