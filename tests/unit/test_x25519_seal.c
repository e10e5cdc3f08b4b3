/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The X25519 seal of the soft token's PUK side (src/scd/x25519_seal.h): a round trip, the
 * documented construction recomputed independently with OpenSSL's own calls, and every change
 * that must make a box fail: another private key, another device secret, another AAD, any
 * altered byte, and a low-order ephemeral key. */
#include "unit.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <string.h>

#include "kdf_aead.h"
#include "x25519_seal.h"

static const char AAD[] = "trustme soft token v3:6f1c2a4e-3b5d-4c7e-8f90-a1b2c3d4e5f6:sealed";

static struct secret *rnd(size_t len)
{
    struct secret *s = NULL;
    tm_err err = {0};
    assert_int_equal(secret_random(len, &s, &err), 0);
    return s;
}

static void round_trip_and_refusals(void **state)
{
    (void)state;
    tm_err err = {0};
    struct secret *priv = NULL, *other = NULL, *out = NULL;
    uint8_t pub[32], other_pub[32];
    struct secret *kek = rnd(32), *ds = rnd(32), *ds2 = rnd(32);
    assert_int_equal(x25519_keygen(&priv, pub, &err), 0);
    assert_int_equal(x25519_keygen(&other, other_pub, &err), 0);
    assert_memory_not_equal(pub, other_pub, 32);
    struct x25519_box box, box2;
    assert_int_equal(x25519_seal(pub, ds, AAD, kek, &box, &err), 0);
    assert_int_equal(x25519_seal(pub, ds, AAD, kek, &box2, &err), 0);
    assert_memory_not_equal(box.epk, box2.epk, 32); /* a new ephemeral key each time */
    assert_int_equal(x25519_open(priv, ds, AAD, &box, &out, &err), 0);
    assert_memory_equal(out->data, kek->data, 32);
    secret_free(out);
    out = NULL;
    assert_int_equal(x25519_open(other, ds, AAD, &box, &out, &err), -EBADMSG);
    assert_int_equal(x25519_open(priv, ds2, AAD, &box, &out, &err), -EBADMSG);
    assert_int_equal(x25519_open(priv, NULL, AAD, &box, &out, &err), -EBADMSG);
    assert_int_equal(x25519_open(priv, ds, "trustme soft token v3:x:sealed", &box, &out, &err), -EBADMSG);
    /* every byte of the box matters (the epk through the key agreement and the KDF) */
    for (size_t i = 0; i < sizeof(box); i++) {
        struct x25519_box b = box;
        ((uint8_t *)&b)[i] ^= 0x01;
        int r = x25519_open(priv, ds, AAD, &b, &out, &err);
        if (r != -EBADMSG)
            fail_msg("byte %zu flipped: %d", i, r);
    }
    /* a low-order point as the ephemeral key (all zeros): refused, never an all-zero secret */
    struct x25519_box z = box;
    memset(z.epk, 0, sizeof(z.epk));
    assert_int_equal(x25519_open(priv, ds, AAD, &z, &out, &err), -EBADMSG);
    assert_null(out);
    secret_free(priv);
    secret_free(other);
    secret_free(kek);
    secret_free(ds);
    secret_free(ds2);
}

/* The construction as the header documents it, recomputed without x25519_seal.c. */
static void construction_matches_the_documentation(void **state)
{
    (void)state;
    tm_err err = {0};
    struct secret *priv = NULL, *kek = rnd(32), *ds = rnd(32);
    uint8_t pub[32];
    struct x25519_box box;
    assert_int_equal(x25519_keygen(&priv, pub, &err), 0);
    assert_int_equal(x25519_seal(pub, ds, AAD, kek, &box, &err), 0);

    EVP_PKEY *mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv->data, 32);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, box.epk, 32);
    assert_non_null(mine);
    assert_non_null(peer);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(mine, NULL);
    uint8_t ikm[96];
    size_t len = 32;
    assert_int_equal(EVP_PKEY_derive_init(c), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(c, peer), 1);
    assert_int_equal(EVP_PKEY_derive(c, ikm, &len), 1);
    memcpy(ikm + 32, box.epk, 32);
    memcpy(ikm + 64, pub, 32);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);

    uint8_t key[32];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, sizeof(ikm)),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ds->data, ds->len),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)"trustme x25519 seal v1",
                                                        strlen("trustme x25519 seal v1")),
                      OSSL_PARAM_construct_end()};
    assert_int_equal(EVP_KDF_derive(kc, key, sizeof(key), p), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);

    struct secret *k = NULL, *pt = NULL;
    assert_int_equal(secret_new(32, &k, &err), 0);
    assert_int_equal(secret_new(32, &pt, &err), 0);
    memcpy(k->data, key, 32);
    assert_int_equal(aead_open(k, box.nonce, AAD, strlen(AAD), box.ct, 32, box.ct + 32, pt, &err), 0);
    assert_memory_equal(pt->data, kek->data, 32);
    secret_free(k);
    secret_free(pt);
    secret_free(priv);
    secret_free(kek);
    secret_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_and_refusals),
        cmocka_unit_test(construction_matches_the_documentation),
    };
    return cmocka_run_group_tests_name("x25519_seal", tests, NULL, NULL);
}
