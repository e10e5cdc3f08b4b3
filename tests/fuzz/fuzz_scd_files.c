/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The files trustme-scd reads as untrusted input: the wrapped key blob trustmed stores
 * (keywrap.h) and the token state files (token.h): the record <uuid>.token, the soft token
 * <uuid>.soft and the attempt counters <uuid>.tries.
 *
 * Input: one byte choosing the parser (low two bits: 0 blob, 1 record, 2 soft token, 3 tries;
 * bit 2 for a blob: the caller has a device secret), then the bytes. The state files are only
 * read through their loaders, which take a path: the bytes are written to a file in a private
 * directory first. What parses must also make sense: a blob opens only to the key it was made
 * with, and a record or tries file read back after storing what was parsed is the same. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keywrap.h"
#include "scd_fixture.h"
#include "token_record.h"
#include "token_soft.h"
#include "tries.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;
static char file_path[PATH_MAX], copy_path[PATH_MAX];
static struct secret *kek, *device_secret;

#define fail(...)                                        \
    do {                                                 \
        fprintf(stderr, "fuzz_scd_files: " __VA_ARGS__); \
        fputc('\n', stderr);                             \
        abort();                                         \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    umask(077);
    dir = fx_state_new();
    snprintf(file_path, sizeof(file_path), "%s/input", dir);
    snprintf(copy_path, sizeof(copy_path), "%s/stored", dir);
    kek = fx_secret(fx_kek_bytes, sizeof(fx_kek_bytes));
    device_secret = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        fail("cannot write %s: %s", file_path, strerror(errno));
    close(fd);
}

static void blob(const uint8_t *data, size_t size, bool bound)
{
    struct keywrap_info info;
    tm_err err = {0};
    int r = keywrap_parse(data, size, bound, &info, &err);
    if (r < 0) {
        if (r != -EINVAL && r != -EOPNOTSUPP)
            fail("keywrap_parse: %d", r);
        return;
    }
    if (size != KEYWRAP_BLOB_LEN || info.version != KEYWRAP_VERSION ||
        (info.token != KEYWRAP_TOKEN_SOFT && info.token != KEYWRAP_TOKEN_PKCS11) ||
        !(info.flags & KEYWRAP_FLAG_DEVICE_BOUND) != !bound)
        fail("keywrap_parse accepted a malformed blob");
    struct secret *key = NULL;
    r = keywrap_open_soft(kek, bound ? device_secret : NULL, FX_UUID_SOFT, data, size, &key, &err);
    if (r == 0) {
        /* No blob can authenticate under the fixture's KEK but those of the seeds. */
        if (info.token != KEYWRAP_TOKEN_SOFT || key->len != KEYWRAP_KEY_LEN ||
            memcmp(key->data, fx_key_bytes, KEYWRAP_KEY_LEN) != 0)
            fail("keywrap_open_soft returned a key the blob does not hold");
        secret_free(key);
    } else if (key || (r != -EBADMSG && r != -EINVAL)) {
        fail("keywrap_open_soft: %d (%s)", r, err.msg);
    }
}

static void record(const uint8_t *data, size_t size)
{
    struct token_record rec, again;
    tm_err err = {0};
    write_input(data, size);
    if (token_record_load(file_path, FX_UUID_SOFT, &rec, &err) < 0)
        return;
    if (rec.type == TOKEN_PKCS11) {
        if (rec.module[0] != '/' || (!rec.has_label && !rec.has_serial) || strlen(rec.label) > P11_LABEL_MAX ||
            strlen(rec.serial) > P11_SERIAL_MAX)
            fail("token_record_load accepted a bad PKCS#11 record");
    } else if (rec.type != TOKEN_SOFT) {
        fail("token_record_load: type %d", (int)rec.type);
    }
    if (token_record_store(copy_path, &rec, &err) < 0)
        fail("cannot store a record that was read: %s", err.msg);
    if (token_record_load(copy_path, FX_UUID_SOFT, &again, &err) < 0)
        fail("cannot read back a stored record: %s", err.msg);
    if (again.type != rec.type || again.has_label != rec.has_label || again.has_serial != rec.has_serial ||
        (rec.type == TOKEN_PKCS11 &&
         (strcmp(again.module, rec.module) != 0 || (rec.has_label && strcmp(again.label, rec.label) != 0) ||
          (rec.has_serial && strcmp(again.serial, rec.serial) != 0))))
        fail("a stored record reads back differently");
}

static void soft(const uint8_t *data, size_t size)
{
    struct soft_token tok;
    tm_err err = {0};
    write_input(data, size);
    if (soft_token_load(file_path, &tok, &err) < 0)
        return;
    /* Bounded: a file must not make scd spend gigabytes on scrypt. */
    if (tok.kdf_n < SOFT_KDF_N_MIN || tok.kdf_n > SOFT_KDF_N_MAX || (tok.kdf_n & (tok.kdf_n - 1)))
        fail("soft_token_load accepted N = %llu", (unsigned long long)tok.kdf_n);
}

static void tries(const uint8_t *data, size_t size)
{
    struct tries t, again;
    tm_err err = {0};
    write_input(data, size);
    if (tries_load(file_path, &t, &err) < 0)
        return;
    if (t.pin_failures < 0 || t.pin_failures > TRIES_PIN_MAX || t.puk_failures < 0 || t.puk_failures > TRIES_PUK_MAX)
        fail("tries_load accepted %d/%d", t.pin_failures, t.puk_failures);
    if (tries_store(copy_path, &t, &err) < 0 || tries_load(copy_path, &again, &err) < 0)
        fail("tries do not read back: %s", err.msg);
    if (again.pin_failures != t.pin_failures || again.puk_failures != t.puk_failures)
        fail("tries read back differently");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    struct fx_leaks leaks;
    /* Only the blob's path allocates secrets. */
    fx_leaks_begin(&leaks, (sel & 3) == 0);
    switch (sel & 3) {
    case 0: blob(data, size, sel & 4); break;
    case 1: record(data, size); break;
    case 2: soft(data, size); break;
    case 3: tries(data, size); break;
    }
    fx_leaks_check(&leaks);
    return 0;
}
