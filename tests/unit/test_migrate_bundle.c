/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration bundle (src/daemon/migrate/bundle.c, docs/MIGRATION.md "Bundle"): a bundle written
 * for an RSA key opens, its keys unseal with K and not with another key, and the manifest, which
 * is read before anything authenticates it, refuses part names that leave the container's
 * directory, parts named twice, truncation and a version 1 bundle. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <cmocka.h>

#include "bundle.h"
#include "fileio.h"

static char dir[] = "/tmp/test-migrate-bundle-XXXXXX";

static void write_raw(const char *name, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    tm_err err;
    assert_int_equal(write_file_atomic(p, data, len, 0600, &err), 0);
}

/* A bundle whose manifest says text (in place of the real one), with the parts' bytes after. */
static int open_with_manifest(const char *text, const char *tail, size_t tail_len, tm_err *err)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/forged", dir);
    unlink(p);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    uint32_t n = (uint32_t)strlen(text);
    uint8_t len4[4] = {n >> 24, n >> 16, n >> 8, n}, w4[4] = {0, 0, 1, 0},
            pad[256 + 12 + BUNDLE_SECRETS_LEN + 16] = {0};
    fwrite(BUNDLE_MAGIC, 1, 8, f);
    fwrite(len4, 1, 4, f);
    fwrite(text, 1, n, f);
    fwrite(w4, 1, 4, f);
    fwrite(pad, 1, sizeof(pad), f);
    fwrite(tail, 1, tail_len, f);
    fclose(f);
    struct bundle_in b;
    int r = bundle_open(p, &b, err);
    bundle_close(&b);
    return r;
}

#define HEAD                                                                                                      \
    "trustme-migrate-bundle 1\nbundle 00112233445566778899aabbccddeeff\noffer 00112233445566778899aabbccddeeff\n" \
    "target-ak 000b0000000000000000000000000000000000000000000000000000000000000000\n"                            \
    "uuid 0b7c9f1e-0000-4000-8000-000000000000\nname m\nguestos -\nuid-base 100000\n"
/* SHA-256 of "{}" */
#define CFG_SHA "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

static void manifest_refusals(void **state)
{
    (void)state;
    tm_err err;
    assert_int_equal(open_with_manifest(HEAD "part config.json 2 " CFG_SHA "\n", "{}", 2, &err), 0);
    const char *bad[] = {
        HEAD "part ../config.json 2 " CFG_SHA "\n", /* leaves the directory */
        HEAD "part config.json 2 " CFG_SHA "\npart a/b 0 " CFG_SHA "\n", /* a path */
        HEAD "part .hidden 2 " CFG_SHA "\n", /* a dot file, first not config */
        HEAD "part config.json 2 " CFG_SHA "\npart config.json 0 " CFG_SHA "\n", /* twice */
        HEAD "part config.json 3 " CFG_SHA "\n", /* runs past the end */
        "trustme-migrate-bundle 2\n", /* another version */
        HEAD, /* no parts */
        /* carried parts: only below vtpm/ or keystore/, no dot components, at most four deep */
        HEAD "part config.json 2 " CFG_SHA "\npart etc/x 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart keystore/../x 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart keystore/.x 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart keystore//x 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart keystore/ 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart keystore/a/b/c/d 0 " CFG_SHA "\n",
        HEAD "part config.json 2 " CFG_SHA "\npart vtpm/a b 0 " CFG_SHA "\n",
        /* anchor lines: a known kind once, hex, after the parts */
        HEAD "part config.json 2 " CFG_SHA "\nanchor other 00\n",
        HEAD "part config.json 2 " CFG_SHA "\nanchor vtpm 0\n",
        HEAD "part config.json 2 " CFG_SHA "\nanchor vtpm zz\n",
        HEAD "part config.json 2 " CFG_SHA "\nanchor vtpm 00\nanchor vtpm 00\n",
        HEAD "part config.json 2 " CFG_SHA "\nanchor vtpm 00\npart data.img 0 " CFG_SHA "\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = open_with_manifest(bad[i], "{}", 2, &err);
        if (r == 0)
            print_error("manifest %zu was accepted\n", i);
        assert_int_equal(r, -EBADMSG);
    }
    /* A carried part and the anchor lines parse. */
    assert_int_equal(open_with_manifest(HEAD "part config.json 2 " CFG_SHA
                                             "\nanchor vtpm 0a0b\nanchor sstore-keys ff\n",
                                        "{}", 2, &err),
                     0);
    assert_int_equal(open_with_manifest(HEAD "part config.json 2 " CFG_SHA "\npart keystore/index/Key.key 2 " CFG_SHA
                                             "\n",
                                        "{}{}", 4, &err),
                     0);
    /* Bytes after the last part are the source's signature: source_auth.c reads (and refuses)
     * them, bundle_open only notes where they start. */
    assert_int_equal(open_with_manifest(HEAD "part config.json 2 " CFG_SHA "\n", "{}x", 3, &err), 0);
    /* A version 1 bundle (no source signature) is refused by name. */
    write_raw("v1", BUNDLE_MAGIC_V1 "\0\0\0\0", 12);
    char p[512];
    snprintf(p, sizeof(p), "%s/v1", dir);
    struct bundle_in b;
    assert_int_equal(bundle_open(p, &b, &err), -EBADMSG);
    bundle_close(&b);
    assert_non_null(strstr(err.msg, "version 1 bundle"));
    /* The part's bytes are not the manifest's. */
    assert_int_equal(open_with_manifest(HEAD "part config.json 2 " CFG_SHA "\n", "{x", 2, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "part config.json: its SHA-256"));
}

static void round_trip_and_wrong_key(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    uint8_t *spki = NULL;
    int spki_len = i2d_PUBKEY(k, &spki);
    assert_true(spki_len > 0);
    write_raw("config.json", "{\"name\":\"m\"}", 12);
    write_raw("data.img", "ciphertext", 10);
    struct bundle_header h = {.nparts = 2, .uid_base = 100000};
    snprintf(h.bundle_id, sizeof(h.bundle_id), "%s", "00112233445566778899aabbccddeeff");
    snprintf(h.offer_id, sizeof(h.offer_id), "%s", "ffeeddccbbaa99887766554433221100");
    memset(h.target_ak, '0', 68);
    snprintf(h.uuid, sizeof(h.uuid), "%s", "0b7c9f1e-0000-4000-8000-000000000000");
    snprintf(h.name, sizeof(h.name), "m");
    snprintf(h.guestos, sizeof(h.guestos), "bb 1");
    snprintf(h.parts[0].name, sizeof(h.parts[0].name), "config.json");
    snprintf(h.parts[1].name, sizeof(h.parts[1].name), "data.img");
    struct secret *keys = NULL;
    tm_err err;
    assert_int_equal(secret_random(BUNDLE_SECRETS_LEN, &keys, &err), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/bundle", dir);
    assert_int_equal(bundle_write(path, dir, &h, spki, (size_t)spki_len, keys, &err), 0);
    /* A second write to the same path is refused: the file is new or nothing. */
    assert_int_equal(bundle_write(path, dir, &h, spki, (size_t)spki_len, keys, &err), -EEXIST);
    struct bundle_in b;
    assert_int_equal(bundle_open(path, &b, &err), 0);
    assert_int_equal(b.h.nparts, 2);
    assert_int_equal(b.h.uid_base, 100000);
    assert_string_equal(b.h.guestos, "bb 1");
    /* K from the RSA-OAEP blob, as the target's TPM would give it. */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
    uint8_t kk[512];
    size_t kk_len = sizeof(kk);
    assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_decrypt(ctx, kk, &kk_len, b.wrapped, b.wrapped_len), 1);
    EVP_PKEY_CTX_free(ctx);
    assert_int_equal(kk_len, 32);
    struct secret *out = NULL;
    assert_int_equal(bundle_unseal(&b, kk, kk_len, &out, &err), 0);
    assert_memory_equal(out->data, keys->data, BUNDLE_SECRETS_LEN);
    secret_free(out);
    kk[0] ^= 1;
    assert_int_equal(bundle_unseal(&b, kk, kk_len, &out, &err), -EBADMSG);
    char dest[512];
    snprintf(dest, sizeof(dest), "%s/extracted", dir);
    assert_int_equal(bundle_extract(&b, 1, dest, &err), 0);
    bundle_close(&b);
    secret_free(keys);
    OPENSSL_free(spki);
    EVP_PKEY_free(k);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manifest_refusals),
        cmocka_unit_test(round_trip_and_wrong_key),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        r = r ? r : 1;
    return r;
}
