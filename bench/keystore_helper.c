/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ECDSA P-256 signatures per second three ways (bench/keystore.sh):
 *
 *   keystore_helper socket PATH SECONDS DEPTH   one-shot signs through a container's keystore
 *                                               socket, DEPTH requests in flight (1: one round
 *                                               trip at a time)
 *   keystore_helper socket-tpm PATH SECONDS DEPTH
 *                                               the same with a TPM-held key (in the
 *                                               container's vTPM; docs/KEYSTORE.md)
 *   keystore_helper openssl SECONDS             EVP_DigestSign in this process
 *   keystore_helper pkcs11 MODULE LABEL PIN SECONDS [token]
 *                                               C_Sign (CKM_ECDSA over a SHA-256 digest made
 *                                               here) with a session key on a PKCS#11 token
 *                                               (SoftHSM2); with "token", a token key made and
 *                                               destroyed here (libtrustme-pkcs11 in front of a
 *                                               keystore socket: its keys are the keystore's,
 *                                               $TRUSTME_KEYSTORE_SOCKET names the socket)
 *
 * Each signs the same 32-byte message for SECONDS of wall time and prints
 * "<mode> <signatures> <seconds> <per second> <client CPU us per signature>" (this process's
 * user + system time over the signing loop: with the service's, the load-independent cost). */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "keystore.pb-c.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static double cpu0; /* at the start of the signing loop */

static void report(const char *mode, unsigned long n, double secs)
{
    double cpu = cpu_now() - cpu0;
    printf("%s %lu %.3f %.0f %.1f\n", mode, n, secs, (double)n / secs, n ? cpu / (double)n * 1e6 : 0.0);
}

static const uint8_t msg[32] = "trustme keystore benchmark msg!";

/* ---- through the socket ------------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_req(int fd, Trustme__Keystore__KsRequest *req)
{
    uint8_t buf[4096];
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    if (len + 4 > sizeof(buf))
        return -1;
    buf[0] = (uint8_t)(len >> 24), buf[1] = (uint8_t)(len >> 16), buf[2] = (uint8_t)(len >> 8), buf[3] = (uint8_t)len;
    protobuf_c_message_pack(&req->base, buf + 4);
    return write_all(fd, buf, len + 4);
}

/* Answers read but not yet parsed: one read takes what the socket holds (with one request at a
 * time, exactly one answer), as a client that cares for its cost would. */
static uint8_t rbuf[65536 + 4];
static size_t rstart, rlen;

/* At least n bytes of answers in rbuf (from rstart), or -1. */
static int fill(int fd, size_t n)
{
    if (rlen == 0)
        rstart = 0;
    if (rstart + n > sizeof(rbuf)) {
        memmove(rbuf, rbuf + rstart, rlen);
        rstart = 0;
    }
    while (rlen < n) {
        ssize_t r = read(fd, rbuf + rstart + rlen, sizeof(rbuf) - rstart - rlen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        rlen += (size_t)r;
    }
    return 0;
}

/* The error code of the next answer, or -1. */
static int recv_resp(int fd)
{
    if (fill(fd, 4) < 0)
        return -1;
    const uint8_t *hdr = rbuf + rstart;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > sizeof(rbuf) - 4 || fill(fd, 4 + (size_t)len) < 0)
        return -1;
    Trustme__Keystore__KsResponse *resp = trustme__keystore__ks_response__unpack(NULL, len, rbuf + rstart + 4);
    rstart += 4 + len;
    rlen -= 4 + len;
    if (!resp)
        return -1;
    int code = resp->error;
    if (code)
        fprintf(stderr, "keystore: %s\n", resp->message ? resp->message : "?");
    trustme__keystore__ks_response__free_unpacked(resp, NULL);
    return code;
}

static int bench_socket(const char *path, double secs, unsigned depth, bool tpm)
{
    const char *alias = tpm ? "bench-tpm-p256" : "bench-p256";
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror(path);
        return 1;
    }
    /* The key: made once, kept (the benchmark measures signing, not generation). */
    Trustme__Keystore__KsKeyRef ref = TRUSTME__KEYSTORE__KS_KEY_REF__INIT;
    ref.alias = (char *)alias;
    Trustme__Keystore__KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.has_version = req.has_id = true;
    req.version = 1;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_DELETE_KEY;
    req.delete_key = &ref;
    if (send_req(fd, &req) < 0)
        return 1;
    recv_resp(fd); /* none there is fine */
    Trustme__Keystore__KsPurpose purposes[] = {TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_SIGN};
    Trustme__Keystore__KsDigest digests[] = {TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_SHA256};
    Trustme__Keystore__KsAuthorizations auths = TRUSTME__KEYSTORE__KS_AUTHORIZATIONS__INIT;
    auths.n_purposes = 1, auths.purposes = purposes, auths.n_digests = 1, auths.digests = digests;
    Trustme__Keystore__KsGenerateKey gen = TRUSTME__KEYSTORE__KS_GENERATE_KEY__INIT;
    gen.alias = (char *)alias;
    gen.has_algorithm = gen.has_key_size = true;
    gen.algorithm = TRUSTME__KEYSTORE__KS_ALGORITHM__KS_ALG_EC;
    gen.key_size = 256;
    gen.auths = &auths;
    gen.has_security_level = tpm; /* held by the container's vTPM (docs/KEYSTORE.md) */
    gen.security_level = TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_GENERATE_KEY;
    req.generate_key = &gen;
    if (send_req(fd, &req) < 0 || recv_resp(fd) != 0)
        return 1;
    Trustme__Keystore__KsOperationParams params = TRUSTME__KEYSTORE__KS_OPERATION_PARAMS__INIT;
    params.has_purpose = params.has_digest = true;
    params.purpose = TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_SIGN;
    params.digest = TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_SHA256;
    Trustme__Keystore__KsOneShot os = TRUSTME__KEYSTORE__KS_ONE_SHOT__INIT;
    os.alias = (char *)alias;
    os.params = &params;
    os.has_input = true;
    os.input = (ProtobufCBinaryData){sizeof(msg), (uint8_t *)msg};
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_ONE_SHOT;
    req.one_shot = &os;
    unsigned long sent = 0, done = 0;
    cpu0 = cpu_now();
    double t0 = now(), end = t0 + secs;
    while (sent < depth) {
        req.id = ++sent;
        if (send_req(fd, &req) < 0)
            return 1;
    }
    for (;;) {
        if (recv_resp(fd) != 0)
            return 1;
        done++;
        if (now() >= end)
            break;
        req.id = ++sent;
        if (send_req(fd, &req) < 0)
            return 1;
    }
    double t = now() - t0;
    unsigned long counted = done; /* answered within the time */
    while (done < sent && recv_resp(fd) >= 0) /* drain */
        done++;
    char mode[32];
    snprintf(mode, sizeof(mode), "%s-depth%u", tpm ? "tpm" : "socket", depth);
    report(mode, counted, t);
    close(fd);
    return 0;
}

/* ---- OpenSSL in process ------------------------------------------------------------------ */

static int bench_openssl(double secs)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!pkey || !md)
        return 1;
    unsigned long n = 0;
    cpu0 = cpu_now();
    double t0 = now(), end = t0 + secs, t;
    do {
        for (int i = 0; i < 64; i++) {
            uint8_t sig[80];
            size_t len = sizeof(sig);
            if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
                EVP_DigestSign(md, sig, &len, msg, sizeof(msg)) != 1)
                return 1;
            n++;
        }
    } while ((t = now()) < end);
    report("openssl", n, t - t0);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return 0;
}

/* ---- PKCS#11 ----------------------------------------------------------------------------- */

static int bench_pkcs11(const char *module, const char *label, const char *pin, double secs, bool token)
{
    void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    CK_C_GetFunctionList get = h ? (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList") : NULL;
    CK_FUNCTION_LIST_PTR f = NULL;
    if (!get || get(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK) {
        fprintf(stderr, "cannot load %s\n", module);
        return 1;
    }
    CK_SLOT_ID slots[64];
    CK_ULONG nslots = 64;
    CK_SLOT_ID slot = (CK_SLOT_ID)-1;
    f->C_GetSlotList(CK_TRUE, slots, &nslots);
    for (CK_ULONG i = 0; i < nslots; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && strncmp((char *)ti.label, label, strlen(label)) == 0)
            slot = slots[i];
    }
    CK_SESSION_HANDLE s;
    if (slot == (CK_SLOT_ID)-1 ||
        f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK ||
        f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) {
        fprintf(stderr, "no token %s or wrong PIN\n", label);
        return 1;
    }
    /* P-256's OID, DER */
    static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    char key_label[32];
    snprintf(key_label, sizeof(key_label), "bench-p11-%d", (int)getpid());
    CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, p256, sizeof(p256)},
                          {CKA_VERIFY, &yes, sizeof(yes)},
                          {CKA_TOKEN, token ? &yes : &no, sizeof(no)}};
    CK_ATTRIBUTE priv[] = {{CKA_SIGN, &yes, sizeof(yes)},
                           {CKA_TOKEN, token ? &yes : &no, sizeof(no)},
                           {CKA_SENSITIVE, &yes, sizeof(yes)},
                           {CKA_PRIVATE, &yes, sizeof(yes)},
                           {CKA_LABEL, key_label, strlen(key_label)}};
    CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE hpub, hpriv;
    if (f->C_GenerateKeyPair(s, &gen, pub, 3, priv, 5, &hpub, &hpriv) != CKR_OK) {
        fprintf(stderr, "cannot generate a P-256 key on the token\n");
        return 1;
    }
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    unsigned long n = 0;
    cpu0 = cpu_now();
    double t0 = now(), end = t0 + secs, t;
    do {
        for (int i = 0; i < 64; i++) {
            uint8_t digest[32], sig[80];
            unsigned dlen = sizeof(digest);
            CK_ULONG slen = sizeof(sig);
            EVP_Digest(msg, sizeof(msg), digest, &dlen, EVP_sha256(), NULL);
            if (f->C_SignInit(s, &ecdsa, hpriv) != CKR_OK || f->C_Sign(s, digest, dlen, sig, &slen) != CKR_OK)
                return 1;
            n++;
        }
    } while ((t = now()) < end);
    report(token ? "trustme-pkcs11" : "pkcs11", n, t - t0);
    if (token)
        f->C_DestroyObject(s, hpriv);
    f->C_Logout(s);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && (strcmp(argv[1], "socket") == 0 || strcmp(argv[1], "socket-tpm") == 0))
        return bench_socket(argv[2], atof(argv[3]), (unsigned)atoi(argv[4]) ? (unsigned)atoi(argv[4]) : 1,
                            strcmp(argv[1], "socket-tpm") == 0);
    if (argc == 3 && strcmp(argv[1], "openssl") == 0)
        return bench_openssl(atof(argv[2]));
    if ((argc == 6 || (argc == 7 && strcmp(argv[6], "token") == 0)) && strcmp(argv[1], "pkcs11") == 0)
        return bench_pkcs11(argv[2], argv[3], argv[4], atof(argv[5]), argc == 7);
    fprintf(stderr, "usage: keystore_helper socket PATH SECONDS DEPTH | openssl SECONDS | "
                    "pkcs11 MODULE LABEL PIN SECONDS [token]\n");
    return 2;
}
