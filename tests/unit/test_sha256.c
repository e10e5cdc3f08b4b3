/* SHA-256 (src/lib/sha256.c) against the FIPS 180-4 examples and against OpenSSL for every length
 * across the padding boundaries. */
#include <openssl/evp.h>
#include <stdlib.h>

#include "unit.h"

#include "crypto.h"

static void expect_hex(const void *data, size_t len, const char *want)
{
    char hex[TM_SHA256_HEX_LEN + 1];
    assert_int_equal(tm_sha256_hex(data, len, hex), 0);
    assert_string_equal(hex, want);
}

static void fips_vectors(void **state)
{
    (void)state;
    expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_hex(two_blocks, strlen(two_blocks),
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void a_million_a(void **state)
{
    (void)state;
    char *m = malloc(1000000);
    memset(m, 'a', 1000000);
    expect_hex(m, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}

static void matches_openssl_at_every_length(void **state)
{
    (void)state;
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len <= sizeof(buf); len++) {
        uint8_t ours[32], theirs[32];
        unsigned n;
        assert_int_equal(tm_sha256(buf, len, ours), 0);
        assert_int_equal(EVP_Digest(buf, len, theirs, &n, EVP_sha256(), NULL), 1);
        assert_memory_equal(ours, theirs, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fips_vectors),
        cmocka_unit_test(a_million_a),
        cmocka_unit_test(matches_openssl_at_every_length),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
