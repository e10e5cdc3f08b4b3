/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libtrustme-pkcs11's handling of its callers (docs/KEYSTORE.md "PKCS#11"), without root and
 * without a keystore service: the PKCS#11 rules for NULL pointers, short buffers and the two-call
 * length convention, invalid handles, unsupported functions. A thread in this test answers the
 * socket with one EC key (its list and its public key, and signatures counted), so that the
 * attribute and signing paths run too, and a length query can be seen not to use the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "keystore.pb-c.h"

static char sock_path[108];
static int listen_fd = -1;
static EVP_PKEY *key;
static int signatures; /* one-shot operations the fake keystore performed */
static CK_FUNCTION_LIST_PTR f;

static int read_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

static void answer(int fd, Trustme__Keystore__KsRequest *req)
{
    Trustme__Keystore__KsResponse resp = TRUSTME__KEYSTORE__KS_RESPONSE__INIT;
    resp.has_id = resp.has_error = true;
    resp.id = req->id;
    Trustme__Keystore__KsPurpose purposes[] = {TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_SIGN};
    Trustme__Keystore__KsAuthorizations auths = TRUSTME__KEYSTORE__KS_AUTHORIZATIONS__INIT;
    auths.n_purposes = 1;
    auths.purposes = purposes;
    Trustme__Keystore__KsKeyCharacteristics ch = TRUSTME__KEYSTORE__KS_KEY_CHARACTERISTICS__INIT;
    ch.alias = "k1";
    ch.has_algorithm = ch.has_key_size = true;
    ch.algorithm = TRUSTME__KEYSTORE__KS_ALGORITHM__KS_ALG_EC;
    ch.key_size = 256;
    ch.auths = &auths;
    Trustme__Keystore__KsKeyCharacteristics *chs[] = {&ch};
    Trustme__Keystore__KsKeyList list = TRUSTME__KEYSTORE__KS_KEY_LIST__INIT;
    Trustme__Keystore__KsPublicKey pub = TRUSTME__KEYSTORE__KS_PUBLIC_KEY__INIT;
    Trustme__Keystore__KsOutput out = TRUSTME__KEYSTORE__KS_OUTPUT__INIT;
    uint8_t *der = NULL, sig[128];
    size_t sig_len = sizeof(sig);
    if (req->body_case == TRUSTME__KEYSTORE__KS_REQUEST__BODY_LIST_KEYS) {
        list.n_keys = 1;
        list.keys = chs;
        resp.body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEYS;
        resp.keys = &list;
    } else if (req->body_case == TRUSTME__KEYSTORE__KS_REQUEST__BODY_EXPORT_PUBLIC_KEY) {
        int n = i2d_PUBKEY(key, &der);
        pub.has_spki_der = true;
        pub.spki_der = (ProtobufCBinaryData){(size_t)n, der};
        resp.body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_PUBLIC_KEY;
        resp.public_key = &pub;
    } else if (req->body_case == TRUSTME__KEYSTORE__KS_REQUEST__BODY_ONE_SHOT) {
        signatures++;
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
        assert_int_equal(EVP_PKEY_sign_init(c), 1);
        assert_true(req->one_shot->params->prehashed);
        assert_int_equal(EVP_PKEY_sign(c, sig, &sig_len, req->one_shot->input.data, req->one_shot->input.len), 1);
        EVP_PKEY_CTX_free(c);
        out.has_output = true;
        out.output = (ProtobufCBinaryData){sig_len, sig};
        resp.body_case = TRUSTME__KEYSTORE__KS_RESPONSE__BODY_OUTPUT;
        resp.output = &out;
    } else {
        resp.error = TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_ARGUMENT;
    }
    size_t n = trustme__keystore__ks_response__get_packed_size(&resp);
    uint8_t *buf = malloc(n + 4);
    buf[0] = (uint8_t)(n >> 24), buf[1] = (uint8_t)(n >> 16), buf[2] = (uint8_t)(n >> 8), buf[3] = (uint8_t)n;
    trustme__keystore__ks_response__pack(&resp, buf + 4);
    assert_int_equal(write(fd, buf, n + 4), (ssize_t)(n + 4));
    free(buf);
    OPENSSL_free(der);
}

static void *serve(void *arg)
{
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        uint8_t hdr[4];
        while (read_all(fd, hdr, 4) == 0) {
            size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
            uint8_t *buf = malloc(n + 1);
            if (read_all(fd, buf, n) < 0) {
                free(buf);
                break;
            }
            Trustme__Keystore__KsRequest *req = trustme__keystore__ks_request__unpack(NULL, n, buf);
            free(buf);
            if (!req)
                break;
            answer(fd, req);
            trustme__keystore__ks_request__free_unpacked(req, NULL);
        }
        close(fd);
    }
}

static CK_SESSION_HANDLE open_session(void)
{
    CK_SESSION_HANDLE s;
    assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    return s;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "k1", 2}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OK);
    assert_int_equal(f->C_FindObjectsInit(s, t, 2), CKR_OPERATION_ACTIVE);
    assert_int_equal(f->C_FindObjects(s, NULL, 4, &n), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_FindObjects(s, h, 4, &n), CKR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->C_FindObjectsFinal(s), CKR_OK);
    assert_int_equal(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
    return h[0];
}

static void test_before_initialize(void **state)
{
    CK_INFO info;
    assert_int_equal(C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_int_equal(f->C_Encrypt(1, NULL, 0, NULL, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    CK_C_INITIALIZE_ARGS a = {0};
    a.pReserved = &a;
    assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    memset(&a, 0, sizeof(a));
    a.CreateMutex = (CK_CREATEMUTEX)1;
    assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD); /* some but not all */
    a.DestroyMutex = (CK_DESTROYMUTEX)1, a.LockMutex = (CK_LOCKMUTEX)1, a.UnlockMutex = (CK_UNLOCKMUTEX)1;
    assert_int_equal(f->C_Initialize(&a), CKR_CANT_LOCK); /* only the application's mutexes */
    a.flags = CKF_OS_LOCKING_OK;
    assert_int_equal(f->C_Initialize(&a), CKR_OK);
    assert_int_equal(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    assert_int_equal(f->C_Finalize(&a), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void test_general_and_slots(void **state)
{
    assert_int_equal(f->C_Initialize(NULL), CKR_OK);
    CK_INFO info;
    assert_int_equal(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetInfo(&info), CKR_OK);
    assert_int_equal(info.cryptokiVersion.major, 2);
    assert_memory_equal(info.manufacturerID, "trustme ", 8);
    CK_SLOT_ID slots[2];
    CK_ULONG n = 0;
    assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(n, 1);
    assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    assert_int_equal(slots[0], 0);
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    assert_int_equal(f->C_GetSlotInfo(1, &si), CKR_SLOT_ID_INVALID);
    assert_int_equal(f->C_GetSlotInfo(0, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetSlotInfo(0, &si), CKR_OK);
    assert_true(si.flags & CKF_TOKEN_PRESENT);
    assert_int_equal(f->C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetTokenInfo(0, &ti), CKR_OK);
    assert_false(ti.flags & CKF_LOGIN_REQUIRED);
    CK_MECHANISM_TYPE mechs[64];
    CK_ULONG m = 0;
    assert_int_equal(f->C_GetMechanismList(0, mechs, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetMechanismList(0, NULL, &m), CKR_OK);
    assert_true(m > 5 && m < 64);
    CK_ULONG short_m = 2;
    assert_int_equal(f->C_GetMechanismList(0, mechs, &short_m), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(short_m, m);
    assert_int_equal(f->C_GetMechanismList(0, mechs, &m), CKR_OK);
    CK_MECHANISM_INFO mi;
    assert_int_equal(f->C_GetMechanismInfo(0, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID);
    assert_int_equal(f->C_GetMechanismInfo(0, CKM_ECDSA, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetMechanismInfo(0, CKM_ECDSA, &mi), CKR_OK);
    assert_true(mi.flags & CKF_SIGN);
    assert_int_equal(mi.ulMinKeySize, 256);
    /* no socket: the slot is empty, and what needs the token says so */
    char saved[sizeof(sock_path)];
    memcpy(saved, sock_path, sizeof(saved));
    setenv("TRUSTME_KEYSTORE_SOCKET", "/nonexistent/keystore.sock", 1);
    assert_int_equal(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(f->C_GetTokenInfo(0, &ti), CKR_TOKEN_NOT_PRESENT);
    setenv("TRUSTME_KEYSTORE_SOCKET", saved, 1);
    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void test_sessions_and_login(void **state)
{
    assert_int_equal(f->C_Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE s;
    assert_int_equal(f->C_OpenSession(0, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_OpenSession(3, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SLOT_ID_INVALID);
    s = open_session();
    CK_SESSION_INFO info;
    assert_int_equal(f->C_GetSessionInfo(s, NULL), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_GetSessionInfo(s + 1000, &info), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_GetSessionInfo(s, &info), CKR_OK);
    assert_int_equal(info.state, CKS_RO_PUBLIC_SESSION);
    assert_int_equal(f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "1", 1), CKR_USER_TYPE_INVALID);
    assert_int_equal(f->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "1", 1), CKR_OPERATION_NOT_INITIALIZED);
    assert_int_equal(f->C_Login(s, CKU_USER, NULL, 4), CKR_ARGUMENTS_BAD);
    static CK_UTF8CHAR long_pin[300];
    assert_int_equal(f->C_Login(s, CKU_USER, long_pin, sizeof(long_pin)), CKR_PIN_LEN_RANGE);
    assert_int_equal(f->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
    assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "4711", 4), CKR_OK);
    assert_int_equal(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "4711", 4), CKR_USER_ALREADY_LOGGED_IN);
    assert_int_equal(f->C_GetSessionInfo(s, &info), CKR_OK);
    assert_int_equal(info.state, CKS_RO_USER_FUNCTIONS);
    assert_int_equal(f->C_Logout(s), CKR_OK);
    /* every function that takes a session refuses an unknown one */
    CK_SESSION_HANDLE bad = s + 77;
    CK_ULONG n = 0;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    assert_int_equal(f->C_CloseSession(bad), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_FindObjectsInit(bad, NULL, 0), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_FindObjects(bad, NULL, 0, &n), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_SignInit(bad, &mech, 1), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_Sign(bad, NULL, 0, NULL, &n), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_GetAttributeValue(bad, 1, NULL, 0), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_Login(bad, CKU_USER, NULL, 0), CKR_SESSION_HANDLE_INVALID);
    /* what the module does not offer */
    assert_int_equal(f->C_Encrypt(s, NULL, 0, NULL, &n), CKR_FUNCTION_NOT_SUPPORTED);
    assert_int_equal(f->C_GenerateRandom(s, NULL, 0), CKR_FUNCTION_NOT_SUPPORTED);
    assert_int_equal(f->C_InitToken(0, NULL, 0, NULL), CKR_FUNCTION_NOT_SUPPORTED);
    assert_int_equal(f->C_CreateObject(s, NULL, 0, NULL), CKR_FUNCTION_NOT_SUPPORTED);
    assert_int_equal(f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
    assert_int_equal(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void test_objects_and_attributes(void **state)
{
    assert_int_equal(f->C_Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE s = open_session();
    assert_int_equal(f->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
    CK_OBJECT_HANDLE priv = find_one(s, CKO_PRIVATE_KEY), pub = find_one(s, CKO_PUBLIC_KEY);
    assert_int_not_equal(priv, pub);
    uint8_t point[80], params[16];
    CK_BBOOL sensitive = 0, extractable = 1;
    CK_ATTRIBUTE t[] = {{CKA_EC_POINT, NULL, 0},
                        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
                        {CKA_VALUE, params, sizeof(params)},
                        {CKA_EC_PARAMS, params, 2}};
    /* the length query, a secret, a short buffer: each answered, the worst error returned */
    CK_RV rv = f->C_GetAttributeValue(s, priv, t, 5);
    assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_BUFFER_TOO_SMALL);
    assert_int_equal(t[0].ulValueLen, 67); /* DER OCTET STRING of an uncompressed P-256 point */
    assert_int_equal(sensitive, CK_TRUE);
    assert_int_equal(extractable, CK_FALSE);
    assert_int_equal(t[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[4].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    t[0].pValue = point;
    t[0].ulValueLen = sizeof(point);
    assert_int_equal(f->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
    assert_int_equal(point[2], 0x04);
    CK_ATTRIBUTE unknown = {CKA_PRIME_1, params, sizeof(params)};
    assert_int_equal(f->C_GetAttributeValue(s, pub, &unknown, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(f->C_GetAttributeValue(s, priv + 100, t, 1), CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(f->C_GetAttributeValue(s, priv, NULL, 1), CKR_ARGUMENTS_BAD);
    /* keys never leave: no extractable key is made */
    CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};
    CK_ATTRIBUTE kt[] = {{CKA_EXTRACTABLE, &yes, sizeof(yes)}};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE a, b;
    assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 1, kt, 1, &a, &b), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 1, kt, 1, NULL, &b), CKR_ARGUMENTS_BAD);
    p256[9] = 0x08;
    assert_int_equal(f->C_GenerateKeyPair(s, &gen, pt, 1, NULL, 0, &a, &b), CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(f->C_DestroyObject(s, pub), CKR_ACTION_PROHIBITED);
    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void test_sign_two_calls(void **state)
{
    assert_int_equal(f->C_Initialize(NULL), CKR_OK);
    CK_SESSION_HANDLE s = open_session();
    CK_OBJECT_HANDLE priv = find_one(s, CKO_PRIVATE_KEY), pub = find_one(s, CKO_PUBLIC_KEY);
    uint8_t hash[32] = {1, 2, 3}, sig[64];
    CK_ULONG len = 0;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0}, aes = {CKM_AES_CBC, NULL, 0}, rsa = {CKM_RSA_PKCS, NULL, 0};
    assert_int_equal(f->C_Sign(s, hash, 32, NULL, &len), CKR_OPERATION_NOT_INITIALIZED);
    assert_int_equal(f->C_SignInit(s, NULL, priv), CKR_ARGUMENTS_BAD);
    assert_int_equal(f->C_SignInit(s, &aes, priv), CKR_MECHANISM_INVALID);
    assert_int_equal(f->C_SignInit(s, &rsa, priv), CKR_KEY_TYPE_INCONSISTENT);
    assert_int_equal(f->C_SignInit(s, &mech, pub), CKR_KEY_TYPE_INCONSISTENT);
    assert_int_equal(f->C_SignInit(s, &mech, 9999), CKR_KEY_HANDLE_INVALID);
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OK);
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OPERATION_ACTIVE);
    int before = signatures;
    /* length query and short buffer: the operation stays, the key is not used */
    assert_int_equal(f->C_Sign(s, hash, 32, NULL, &len), CKR_OK);
    assert_int_equal(len, 64);
    len = 10;
    assert_int_equal(f->C_Sign(s, hash, 32, sig, &len), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 64);
    assert_int_equal(signatures, before);
    assert_int_equal(f->C_Sign(s, hash, 32, sig, &len), CKR_OK);
    assert_int_equal(signatures, before + 1);
    assert_int_equal(len, 64);
    /* the signature is r || s and verifies */
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    uint8_t *der = NULL;
    int dl = i2d_ECDSA_SIG(es, &der);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
    assert_int_equal(EVP_PKEY_verify_init(c), 1);
    assert_int_equal(EVP_PKEY_verify(c, der, (size_t)dl, hash, 32), 1);
    EVP_PKEY_CTX_free(c);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    /* the operation ended */
    assert_int_equal(f->C_Sign(s, hash, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    /* a raw ECDSA input must be a hash the keystore knows: the operation ends, the key unused */
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OK);
    assert_int_equal(f->C_Sign(s, hash, 20, sig, &len), CKR_DATA_LEN_RANGE);
    assert_int_equal(f->C_Sign(s, hash, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OK);
    assert_int_equal(f->C_Sign(s, NULL, 32, sig, &len), CKR_ARGUMENTS_BAD);
    assert_int_equal(signatures, before + 1);
    /* multi-part of a raw mechanism: gathered, signed once at the end */
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OK);
    assert_int_equal(f->C_SignUpdate(s, hash, 16), CKR_OK);
    assert_int_equal(f->C_SignUpdate(s, hash + 16, 16), CKR_OK);
    len = 0;
    assert_int_equal(f->C_SignFinal(s, NULL, &len), CKR_OK);
    assert_int_equal(len, 64);
    assert_int_equal(f->C_SignFinal(s, sig, &len), CKR_OK);
    assert_int_equal(signatures, before + 2);
    /* a session closed in the middle of an operation */
    assert_int_equal(f->C_SignInit(s, &mech, priv), CKR_OK);
    assert_int_equal(f->C_CloseSession(s), CKR_OK);
    assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static int setup(void **state)
{
    snprintf(sock_path, sizeof(sock_path), "/tmp/tm-p11-unit-%d.sock", (int)getpid());
    unlink(sock_path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 4) < 0)
        return -1;
    setenv("TRUSTME_KEYSTORE_SOCKET", sock_path, 1);
    key = EVP_EC_gen("P-256");
    pthread_t t;
    if (!key || pthread_create(&t, NULL, serve, NULL) != 0)
        return -1;
    pthread_detach(t);
    return C_GetFunctionList(&f) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    unlink(sock_path);
    EVP_PKEY_free(key);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_initialize),  cmocka_unit_test(test_general_and_slots),
        cmocka_unit_test(test_sessions_and_login), cmocka_unit_test(test_objects_and_attributes),
        cmocka_unit_test(test_sign_two_calls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
