/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki's pure parts (src/tools/pki): PKCS#11 URIs as the tool reads and writes them,
 * the one time format of its options, and revocation reason names. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "unit.h"

#include "pki.h"

static void uri_parses_token_object_id(void **state)
{
    (void)state;
    struct p11uri u;
    tm_err err = {0};
    assert_int_equal(p11uri_parse("pkcs11:token=my%20token;object=root-ca;id=%01%FF%41;"
                                  "type=private?module-path=/usr/lib/x.so",
                                  &u, &err),
                     0);
    assert_string_equal(u.token, "my token");
    assert_string_equal(u.object, "root-ca");
    assert_int_equal(u.id_len, 3);
    assert_memory_equal(u.id, "\x01\xff\x41", 3);
    assert_string_equal(u.type, "private");
    assert_string_equal(u.module_path, "/usr/lib/x.so");
    /* module-path in the path part is accepted too; empty attributes are skipped */
    assert_int_equal(p11uri_parse("pkcs11:token=t;;module-path=/m.so", &u, &err), 0);
    assert_string_equal(u.module_path, "/m.so");
    /* serial is checked by the token lookup (src/scd/p11_module.c) */
    assert_int_equal(p11uri_parse("pkcs11:token=t;serial=0123abcd;object=k", &u, &err), 0);
    assert_string_equal(u.token, "t");
    assert_string_equal(u.serial, "0123abcd");
    assert_string_equal(u.object, "k");
    assert_int_equal(u.id_len, 0);
    assert_true(p11uri_is("pkcs11:token=x"));
    assert_false(p11uri_is("/etc/key.pem"));
}

static void uri_refuses(void **state)
{
    (void)state;
    struct p11uri u;
    static const char *const bad[] = {
        "pkcs11:object=x", /* no token */
        "pkcs11:token=t;model=SoftHSM", /* attributes not checked: could pick another token */
        "pkcs11:token=t;manufacturer=x",
        "pkcs11:token=t;slot-id=1",
        "pkcs11:token=t;library-description=x",
        "pkcs11:token=t;foo=bar",
        "pkcs11:token=t?module-name=softhsm2",
        "pkcs11:token=t?pin-value=1234", /* PINs never in a URI */
        "pkcs11:token=t?pin-source=file:/p",
        "pkcs11:token=t;type=cert", /* only private keys */
        "pkcs11:token=t;id=%G1", /* bad escape */
        "pkcs11:token=t;id=%1", /* truncated escape */
        "pkcs11:token=%00x", /* NUL in text */
        "pkcs11:token=t;id=", /* empty id */
        "pkcs11:token=t;object=a%00b", /* NUL in text */
        "pkcs11:token=t;type=whatever",
        "pkcs11:token", /* not NAME=VALUE */
        "pkcs11:token=t;object", /* not NAME=VALUE */
        "pkcs11:token=t?module-path=rel.so",
        "file:/x",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        tm_err err = {0};
        assert_int_equal(p11uri_parse(bad[i], &u, &err), -EINVAL);
        assert_true(err.msg[0] != '\0');
    }
    /* a token label longer than CK_TOKEN_INFO's field, an object label longer than ours */
    char longer[400] = "pkcs11:token=";
    memset(longer + strlen(longer), 'a', 33);
    assert_int_equal(p11uri_parse(longer, &u, NULL), -EINVAL);
    snprintf(longer, sizeof(longer), "pkcs11:token=t;object=");
    memset(longer + strlen(longer), 'a', 200);
    assert_int_equal(p11uri_parse(longer, &u, NULL), -EINVAL);
}

static void uri_round_trip(void **state)
{
    (void)state;
    struct p11uri u = {0}, back;
    strcpy(u.token, "tok;en/1");
    strcpy(u.object, "trustme-pki-0a0b-root-ca");
    memcpy(u.id, "\x00\x10\xfe", 3);
    u.id_len = 3;
    char out[512];
    assert_int_equal(p11uri_format(&u, out, sizeof(out)), 0);
    /* p11-kit's order and encoding; every byte of the id encoded */
    assert_string_equal(out, "pkcs11:token=tok%3Ben%2F1;id=%00%10%FE;"
                             "object=trustme-pki-0a0b-root-ca;type=private");
    assert_int_equal(p11uri_parse(out, &back, NULL), 0);
    assert_string_equal(back.token, u.token);
    assert_string_equal(back.object, u.object);
    assert_int_equal(back.id_len, 3);
    assert_memory_equal(back.id, u.id, 3);
    assert_int_equal(p11uri_format(&u, out, 20), -ENAMETOOLONG);
}

static void times(void **state)
{
    (void)state;
    time_t t;
    assert_int_equal(time_parse("19700101000000Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(time_parse("20240229235959Z", &t), 0);
    assert_int_equal(t, 1709251199);
    char s[16];
    time_format(t, s);
    assert_string_equal(s, "20240229235959Z");
    static const char *const bad[] = {"20230229000000Z",     "20241301000000Z",      "20240101240000Z",
                                      "20240101000060Z",     "2024010100000Z",       "20240101000000",
                                      "20240101000000+0100", "2024-01-01T00:00:00Z", ""};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(time_parse(bad[i], &t), -EINVAL);
}

static void reasons(void **state)
{
    (void)state;
    int r;
    assert_int_equal(revoke_reason_parse("keyCompromise", &r), 0);
    assert_int_equal(r, CRL_REASON_KEY_COMPROMISE);
    assert_string_equal(revoke_reason_name(r), "keyCompromise");
    assert_int_equal(revoke_reason_parse("removeFromCRL", &r), -EINVAL);
    assert_int_equal(revoke_reason_parse("KeyCompromise", &r), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uri_parses_token_object_id),
        cmocka_unit_test(uri_refuses),
        cmocka_unit_test(uri_round_trip),
        cmocka_unit_test(times),
        cmocka_unit_test(reasons),
    };
    return cmocka_run_group_tests_name("pki_pure", tests, NULL, NULL);
}
