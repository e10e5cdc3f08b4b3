/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key blobs at rest (src/keystore/store.c): a blob opens only under the keystore key, UUID and
 * alias it was sealed for, and any changed byte makes it refuse to open. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "fileio.h"
#include "store.h"

#define UUID_A "0b7d6b2e-7d58-4d1c-9a2f-3f0c5a1e9b11"
#define UUID_B "5e3a8d40-2b7f-4c66-8e0a-6d2c1b9f7a22"

static char dir[] = "/tmp/test-keystore-store-XXXXXX";
static const uint8_t material[] = "an EC key's PKCS#8 would be here";

static void seal(const struct ks_store *st, const char *alias)
{
    Trustme__Keystore__KsKeyCharacteristics ch = TRUSTME__KEYSTORE__KS_KEY_CHARACTERISTICS__INIT;
    ch.alias = (char *)alias;
    Trustme__Keystore__KsKeyBlob blob = TRUSTME__KEYSTORE__KS_KEY_BLOB__INIT;
    blob.characteristics = &ch;
    blob.has_material = true;
    blob.material = (ProtobufCBinaryData){sizeof(material), (uint8_t *)material};
    tm_err err;
    assert_int_equal(ks_store_put(st, alias, &blob, &err), 0);
}

static int opens(const struct ks_store *st, const char *alias)
{
    Trustme__Keystore__KsKeyBlob *blob;
    struct secret *mem;
    tm_err err;
    int r = ks_store_get(st, alias, &blob, &mem, &err);
    if (r < 0)
        return err.code;
    assert_memory_equal(blob->material.data, material, sizeof(material));
    ks_store_blob_free(blob, mem);
    return 0;
}

static void copy(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof(a), "%s/%s.key", dir, from);
    snprintf(b, sizeof(b), "%s/%s.key", dir, to);
    char *data;
    size_t len;
    tm_err err;
    assert_int_equal(read_file(a, 1 << 20, &data, &len, &err), 0);
    assert_int_equal(write_file_atomic(b, data, len, 0600, &err), 0);
    free(data);
}

static void bound_to_key_uuid_and_alias(void **state)
{
    (void)state;
    struct secret *ka, *kb;
    tm_err err;
    assert_int_equal(secret_random(KS_KEY_LEN, &ka, &err), 0);
    assert_int_equal(secret_random(KS_KEY_LEN, &kb, &err), 0);
    struct ks_store a = {.dir = dir, .key = ka, .uuid = UUID_A};
    seal(&a, "k1");
    assert_int_equal(opens(&a, "k1"), 0);
    /* another container's key, the same UUID: another device's keystore */
    struct ks_store other_key = {.dir = dir, .key = kb, .uuid = UUID_A};
    assert_int_equal(opens(&other_key, "k1"), TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB);
    /* the same key, another UUID */
    struct ks_store other_uuid = {.dir = dir, .key = ka, .uuid = UUID_B};
    assert_int_equal(opens(&other_uuid, "k1"), TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB);
    /* another alias */
    copy("k1", "k2");
    assert_int_equal(opens(&a, "k2"), TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB);
    assert_int_equal(opens(&a, "absent"), TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND);
    secret_free(ka);
    secret_free(kb);
}

static void every_changed_byte_is_refused(void **state)
{
    (void)state;
    struct secret *k;
    tm_err err;
    assert_int_equal(secret_random(KS_KEY_LEN, &k, &err), 0);
    struct ks_store st = {.dir = dir, .key = k, .uuid = UUID_A};
    seal(&st, "t");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/t.key", dir);
    char *orig;
    size_t len;
    assert_int_equal(read_file(path, 1 << 20, &orig, &len, &err), 0);
    for (size_t i = 0; i < len; i++) {
        orig[i] ^= 0x01;
        assert_int_equal(write_file_atomic(path, orig, len, 0600, &err), 0);
        assert_int_not_equal(opens(&st, "t"), 0);
        orig[i] ^= 0x01;
    }
    assert_int_equal(write_file_atomic(path, orig, len - 1, 0600, &err), 0); /* truncated */
    assert_int_not_equal(opens(&st, "t"), 0);
    assert_int_equal(write_file_atomic(path, orig, len, 0600, &err), 0);
    assert_int_equal(opens(&st, "t"), 0);
    /* the plaintext is not in the file */
    assert_null(memmem(orig, len, material, sizeof(material) - 1));
    free(orig);
    secret_free(k);
}

static void aliases(void **state)
{
    (void)state;
    assert_true(ks_alias_valid("a"));
    assert_true(ks_alias_valid("key-1_v2.ec"));
    assert_false(ks_alias_valid(""));
    assert_false(ks_alias_valid(NULL));
    assert_false(ks_alias_valid(".hidden"));
    assert_false(ks_alias_valid("../x"));
    assert_false(ks_alias_valid("a/b"));
    assert_false(ks_alias_valid("sp ace"));
    char longer[KS_ALIAS_MAX + 2];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[KS_ALIAS_MAX + 1] = '\0';
    assert_false(ks_alias_valid(longer));
    longer[KS_ALIAS_MAX] = '\0';
    assert_true(ks_alias_valid(longer));
}

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return rm_rf(dir) < 0 ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bound_to_key_uuid_and_alias),
        cmocka_unit_test(every_changed_byte_is_refused),
        cmocka_unit_test(aliases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
