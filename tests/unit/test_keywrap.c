/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The wrapped-key blob: round trips, the documented construction recomputed independently,
 * every single-bit change refused, and malformed blobs refused with the right message. Also the
 * secret buffers everything else keeps keys in. */
#include "unit.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <stdlib.h>

#include "keywrap.h"
#include "secmem.h"

static const char UUID[] = "6f1c2a4e-3b5d-4c7e-8f90-a1b2c3d4e5f6";
static const char OTHER_UUID[] = "6f1c2a4e-3b5d-4c7e-8f90-a1b2c3d4e5f7";

static struct secret *random_secret(size_t len)
{
    struct secret *s = NULL;
    tm_err err = {0};
    assert_int_equal(secret_random(len, &s, &err), 0);
    return s;
}

struct fixture {
    struct secret *kek, *key;
    uint8_t blob[KEYWRAP_BLOB_LEN];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tm_err err = {0};
    f->kek = random_secret(32);
    f->key = random_secret(KEYWRAP_KEY_LEN);
    if (keywrap_seal_soft(f->kek, NULL, UUID, f->key, f->blob, &err) < 0) {
        fprintf(stderr, "seal: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    secret_free(f->kek);
    secret_free(f->key);
    free(f);
    return 0;
}

static int open_blob(struct fixture *f, const struct secret *ds, const char *uuid, const uint8_t *blob, size_t len,
                     tm_err *err)
{
    struct secret *out = NULL;
    int r = keywrap_open_soft(f->kek, ds, uuid, blob, len, &out, err);
    if (r == 0) {
        assert_non_null(out);
        assert_int_equal(out->len, KEYWRAP_KEY_LEN);
        assert_memory_equal(out->data, f->key->data, KEYWRAP_KEY_LEN);
        secret_free(out);
    } else {
        assert_null(out); /* written only on success */
    }
    return r;
}

/* --- round trips and the construction --- */

static void round_trip(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    assert_int_equal(open_blob(f, NULL, UUID, f->blob, sizeof(f->blob), &err), 0);
    assert_memory_equal(f->blob, "TMWK\x01\x00\x01\x00", 8);
}

static void nonces_are_fresh(void **state)
{
    struct fixture *f = *state;
    uint8_t again[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    assert_int_equal(keywrap_seal_soft(f->kek, NULL, UUID, f->key, again, &err), 0);
    assert_memory_not_equal(again + KEYWRAP_NONCE_OFFSET, f->blob + KEYWRAP_NONCE_OFFSET, KEYWRAP_NONCE_LEN);
    assert_memory_not_equal(again + KEYWRAP_CT_OFFSET, f->blob + KEYWRAP_CT_OFFSET, KEYWRAP_KEY_LEN);
}

/* The format is an on-disk interface: recompute it from its description with other OpenSSL
 * entry points (EVP_PKEY HKDF, one-shot GCM) than the implementation uses. */
static void construction_matches_the_documentation(void **state)
{
    struct fixture *f = *state;
    uint8_t gcm_key[32];
    size_t klen = sizeof(gcm_key);
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    assert_non_null(pctx);
    assert_int_equal(EVP_PKEY_derive_init(pctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(pctx, f->kek->data, 32), 1);
    assert_int_equal(EVP_PKEY_CTX_add1_hkdf_info(pctx, (const unsigned char *)"trustme container key v1", 24), 1);
    assert_int_equal(EVP_PKEY_derive(pctx, gcm_key, &klen), 1);
    EVP_PKEY_CTX_free(pctx);

    uint8_t aad[20 + 36], pt[64];
    memcpy(aad, f->blob, 20);
    memcpy(aad + 20, UUID, 36);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl, finl;
    assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, gcm_key, f->blob + 8), 1);
    assert_int_equal(EVP_DecryptUpdate(c, NULL, &outl, aad, sizeof(aad)), 1);
    assert_int_equal(EVP_DecryptUpdate(c, pt, &outl, f->blob + 20, 64), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, f->blob + 84), 1);
    assert_int_equal(EVP_DecryptFinal_ex(c, pt + outl, &finl), 1);
    EVP_CIPHER_CTX_free(c);
    assert_memory_equal(pt, f->key->data, 64);
}

/* --- what must not open --- */

static void every_bit_flip_fails(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < KEYWRAP_BLOB_LEN; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t b[KEYWRAP_BLOB_LEN];
            memcpy(b, f->blob, sizeof(b));
            b[i] ^= (uint8_t)(1u << bit);
            tm_err err = {0};
            int r = open_blob(f, NULL, UUID, b, sizeof(b), &err);
            if (r == 0)
                fail_msg("flipping bit %d of byte %zu went unnoticed", bit, i);
            if (i < 4)
                assert_err_contains(&err, "not a trustme key blob");
            else if (i == 4)
                assert_int_equal(r, -EOPNOTSUPP);
            else if (i >= KEYWRAP_NONCE_OFFSET)
                assert_int_equal(r, -EBADMSG);
            else
                assert_int_equal(r, -EINVAL);
        }
    }
}

static void wrong_uuid_fails(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    assert_int_equal(open_blob(f, NULL, OTHER_UUID, f->blob, sizeof(f->blob), &err), -EBADMSG);
    assert_err_contains(&err, "does not authenticate");
    assert_int_equal(open_blob(f, NULL, "not-a-uuid", f->blob, sizeof(f->blob), &err), -EINVAL);
    assert_err_contains(&err, "not a container UUID");
}

static void wrong_kek_fails(void **state)
{
    struct fixture *f = *state;
    struct secret *other = random_secret(32), *out = NULL;
    tm_err err = {0};
    assert_int_equal(keywrap_open_soft(other, NULL, UUID, f->blob, sizeof(f->blob), &out, &err), -EBADMSG);
    assert_null(out);
    secret_free(other);
}

static void truncated_blobs_fail(void **state)
{
    struct fixture *f = *state;
    for (size_t len = 0; len < KEYWRAP_BLOB_LEN; len++) {
        tm_err err = {0};
        assert_int_equal(open_blob(f, NULL, UUID, f->blob, len, &err), -EINVAL);
        assert_err_contains(&err, len < 4 ? "not a trustme key blob" : "truncated");
    }
}

static void oversized_blob_fails(void **state)
{
    struct fixture *f = *state;
    uint8_t b[KEYWRAP_BLOB_LEN + 1];
    memcpy(b, f->blob, KEYWRAP_BLOB_LEN);
    b[KEYWRAP_BLOB_LEN] = 0;
    tm_err err = {0};
    assert_int_equal(open_blob(f, NULL, UUID, b, sizeof(b), &err), -EINVAL);
    assert_err_contains(&err, "too long: 101 bytes, expected 100");
}

static int open_modified(struct fixture *f, size_t at, uint8_t value, tm_err *err)
{
    uint8_t b[KEYWRAP_BLOB_LEN];
    memcpy(b, f->blob, sizeof(b));
    b[at] = value;
    return open_blob(f, NULL, UUID, b, sizeof(b), err);
}

static void header_fields_are_checked(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    assert_int_equal(open_modified(f, 0, 'X', &err), -EINVAL);
    assert_err_contains(&err, "not a trustme key blob (magic is not \"TMWK\")");
    assert_int_equal(open_modified(f, 4, 2, &err), -EOPNOTSUPP);
    assert_err_contains(&err, "key blob version 2 is not supported");
    assert_int_equal(open_modified(f, 4, 0, &err), -EOPNOTSUPP);
    assert_int_equal(open_modified(f, 5, KEYWRAP_FLAG_DEVICE_BOUND, &err), -EINVAL);
    assert_err_contains(&err, "bound to a device secret (TPM), but none is available");
    assert_int_equal(open_modified(f, 5, 0x80, &err), -EINVAL);
    assert_err_contains(&err, "unknown flags 0x80");
    assert_int_equal(open_modified(f, 6, 0, &err), -EINVAL);
    assert_err_contains(&err, "unknown token type 0");
    assert_int_equal(open_modified(f, 6, 3, &err), -EINVAL);
    assert_int_equal(open_modified(f, 6, KEYWRAP_TOKEN_PKCS11, &err), -EINVAL);
    assert_err_contains(&err, "wrapped by a PKCS#11 token");
    assert_int_equal(open_modified(f, 7, 1, &err), -EINVAL);
    assert_err_contains(&err, "reserved byte is 0x01, must be 0");
}

static void parse_reports_fields(void **state)
{
    struct fixture *f = *state;
    struct keywrap_info info;
    tm_err err = {0};
    assert_int_equal(keywrap_parse(f->blob, sizeof(f->blob), false, &info, &err), 0);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.flags, 0);
    assert_int_equal(info.token, KEYWRAP_TOKEN_SOFT);
}

/* --- the device secret of the TPM issue --- */

static void device_secret_binds(void **state)
{
    struct fixture *f = *state;
    struct secret *ds = random_secret(KEYWRAP_DEVICE_SECRET_LEN);
    struct secret *other = random_secret(KEYWRAP_DEVICE_SECRET_LEN);
    uint8_t bound[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    assert_int_equal(keywrap_seal_soft(f->kek, ds, UUID, f->key, bound, &err), 0);
    assert_int_equal(bound[5], KEYWRAP_FLAG_DEVICE_BOUND);
    assert_int_equal(open_blob(f, ds, UUID, bound, sizeof(bound), &err), 0);
    assert_int_equal(open_blob(f, NULL, UUID, bound, sizeof(bound), &err), -EINVAL);
    assert_err_contains(&err, "bound to a device secret (TPM), but none is available");
    assert_int_equal(open_blob(f, other, UUID, bound, sizeof(bound), &err), -EBADMSG);
    /* Clearing the flag cannot strip the binding: the flag is authenticated. */
    bound[5] = 0;
    assert_int_equal(open_blob(f, NULL, UUID, bound, sizeof(bound), &err), -EBADMSG);
    /* And an unbound blob is no stand-in for a bound one. */
    assert_int_equal(open_blob(f, ds, UUID, f->blob, sizeof(f->blob), &err), -EINVAL);
    assert_err_contains(&err, "not bound to the device secret");
    struct secret *short_ds = random_secret(16);
    assert_int_equal(keywrap_seal_soft(f->kek, short_ds, UUID, f->key, bound, &err), -EINVAL);
    assert_err_contains(&err, "device secret of 16 bytes, expected 32");
    secret_free(short_ds);
    secret_free(ds);
    secret_free(other);
}

static void wrong_sizes_refused(void **state)
{
    struct fixture *f = *state;
    struct secret *k32 = random_secret(32), *out = NULL;
    uint8_t b[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    assert_int_equal(keywrap_seal_soft(f->kek, NULL, UUID, k32, b, &err), -EINVAL);
    assert_err_contains(&err, "container key of 32 bytes, expected 64");
    assert_int_equal(keywrap_seal_soft(f->key, NULL, UUID, f->key, b, &err), -EINVAL);
    assert_err_contains(&err, "token KEK of 64 bytes");
    assert_int_equal(keywrap_open_soft(f->key, NULL, UUID, f->blob, sizeof(f->blob), &out, &err), -EINVAL);
    secret_free(k32);
}

/* --- secrets --- */

static long vm_locked_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "re");
    char line[256];
    long kb = -1;
    while (fp && fgets(line, sizeof(line), fp))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    if (fp)
        fclose(fp);
    return kb;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_ASAN 1
#endif
#endif
#ifndef HAS_ASAN
#define HAS_ASAN 0
#endif

static void secrets_are_locked_and_zeroed(void **state)
{
    (void)state;
    long before = vm_locked_kb();
    struct secret *s = NULL;
    tm_err err = {0};
    assert_int_equal(secret_new(100, &s, &err), 0);
    assert_int_equal(s->len, 100);
    for (size_t i = 0; i < s->len; i++)
        assert_int_equal(s->data[i], 0);
        /* AddressSanitizer turns mlock into a no-op (gcc says so with __SANITIZE_ADDRESS__, clang 14
     * only with __has_feature) */
#if !defined(__SANITIZE_ADDRESS__) && !HAS_ASAN
    /* Locked: a new mapping, or one kept locked since an earlier secret of this size was freed. */
    assert_true(vm_locked_kb() >= 4 && vm_locked_kb() >= before);
#endif
    secret_free(s);
    /* Unlocked, or kept (wiped, still locked) for the next secret: one page at most. */
    assert_true(vm_locked_kb() <= before + 4);
    secret_free(NULL);
    assert_int_equal(secret_new(0, &s, &err), -EINVAL);
    assert_int_equal(secret_new((1 << 20) + 1, &s, &err), -EINVAL); /* SECRET_MAX: a TPM state */
}

static void random_secrets_differ(void **state)
{
    (void)state;
    struct secret *a = random_secret(64), *b = random_secret(64);
    assert_memory_not_equal(a->data, b->data, 64);
    secret_free(a);
    secret_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(nonces_are_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(construction_matches_the_documentation, setup, teardown),
        cmocka_unit_test_setup_teardown(every_bit_flip_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_uuid_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_kek_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_blobs_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(oversized_blob_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(header_fields_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(parse_reports_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(device_secret_binds, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_sizes_refused, setup, teardown),
        cmocka_unit_test(secrets_are_locked_and_zeroed),
        cmocka_unit_test(random_secrets_differ),
    };
    return cmocka_run_group_tests_name("keywrap", tests, NULL, NULL);
}
