/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key attestation in the keystore service: see attest.h. */
#include "attest.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "keyattest.h"
#include "log.h"
#include "secmem.h"
#include "tpmd.pb-c.h"

#define E(x) TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_##x
#define REPLY_MAX (256u * 1024)
#define CHAIN_MAX 8

struct ks_attest {
    int link_fd;
    EVP_PKEY *key; /* the container's attestation key: this process's memory only */
    X509 *cert; /* its certificate from tpmd, once asked for */
    uint8_t *cert_der;
    size_t cert_der_len;
    uint8_t *chain_der[CHAIN_MAX]; /* the AK's chain */
    size_t chain_len[CHAIN_MAX];
    size_t nchain;
    Trustme__Keystore__KsContainerIdentity *identity; /* from the certificate's extension */
    uint64_t next_id;
};

static inline void x509_freep(X509 **x)
{
    X509_free(*x);
}

static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

static inline void osslfreep(unsigned char **p)
{
    OPENSSL_free(*p);
}

int ks_attest_new(int link_fd, struct ks_attest **ret, tm_err *err)
{
    struct ks_attest *a = calloc(1, sizeof(*a));
    if (!a)
        return tm_err_set(err, ENOMEM, "out of memory");
    a->link_fd = link_fd;
    a->next_id = (uint64_t)getpid() << 32 | 1u << 30; /* apart from the secure store's ids */
    *ret = a;
    return 0;
}

static void forget_cert(struct ks_attest *a)
{
    X509_free(a->cert);
    a->cert = NULL;
    free(a->cert_der);
    a->cert_der = NULL;
    for (size_t i = 0; i < a->nchain; i++)
        free(a->chain_der[i]);
    a->nchain = 0;
    if (a->identity)
        trustme__keystore__ks_container_identity__free_unpacked(a->identity, NULL);
    a->identity = NULL;
}

void ks_attest_free(struct ks_attest *a)
{
    if (!a)
        return;
    forget_cert(a);
    EVP_PKEY_free(a->key);
    free(a);
}

/* One tpmd request over the link to trustmed, which checks and forwards it; blocking (60 s). */
static int link_call(struct ks_attest *a, Trustme__Tpmd__Request *req, Trustme__Tpmd__Response **ret, tm_err *err)
{
    req->has_version = true;
    req->version = 1;
    req->has_id = true;
    req->id = a->next_id++;
    size_t len = trustme__tpmd__request__get_packed_size(req);
    _cleanup_free_ uint8_t *out = malloc(len + 4);
    _cleanup_free_ uint8_t *in = malloc(REPLY_MAX);
    if (!out || !in)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    out[0] = (uint8_t)(len >> 24), out[1] = (uint8_t)(len >> 16), out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    trustme__tpmd__request__pack(req, out + 4);
    if (send(a->link_fd, out, len + 4, MSG_NOSIGNAL) != (ssize_t)(len + 4))
        return tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "cannot reach trustmed");
    for (int stale = 0; stale < 16; stale++) {
        struct pollfd pfd = {.fd = a->link_fd, .events = POLLIN};
        int pr;
        do
            pr = poll(&pfd, 1, 60000);
        while (pr < 0 && errno == EINTR);
        if (pr <= 0)
            return tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "trustmed did not answer");
        ssize_t n = recv(a->link_fd, in, REPLY_MAX, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 4)
            return tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "trustmed closed the link");
        Trustme__Tpmd__Response *resp = trustme__tpmd__response__unpack(NULL, (size_t)n - 4, in + 4);
        if (resp && resp->id == req->id) {
            *ret = resp;
            return 0;
        }
        if (resp)
            trustme__tpmd__response__free_unpacked(resp, NULL); /* a late answer to an earlier call */
    }
    return tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "trustmed answers other requests");
}

static int store_cert(struct ks_attest *a, const Trustme__Tpmd__ContainerCertReply *cr, tm_err *err)
{
    const uint8_t *p = cr->cert_der.data;
    a->cert = cr->has_cert_der ? d2i_X509(NULL, &p, (long)cr->cert_der.len) : NULL;
    if (!a->cert || X509_check_private_key(a->cert, a->key) != 1)
        return tm_err_set(err, E(INTERNAL), "tpmd's container certificate is not for our attestation key");
    if (!(a->cert_der = malloc(cr->cert_der.len)))
        return tm_err_set(err, E(INTERNAL), "out of memory");
    memcpy(a->cert_der, cr->cert_der.data, cr->cert_der.len);
    a->cert_der_len = cr->cert_der.len;
    ASN1_OBJECT *oid = OBJ_txt2obj(TM_OID_CONTAINER_IDENTITY, 1);
    int at = oid ? X509_get_ext_by_OBJ(a->cert, oid, -1) : -1;
    ASN1_OBJECT_free(oid);
    const ASN1_OCTET_STRING *os = at >= 0 ? X509_EXTENSION_get_data(X509_get_ext(a->cert, at)) : NULL;
    if (!os || !(a->identity = trustme__keystore__ks_container_identity__unpack(NULL, (size_t)os->length, os->data)))
        return tm_err_set(err, E(INTERNAL), "tpmd's container certificate names no container");
    BIO *bio = BIO_new_mem_buf(cr->chain_pem.data, (int)cr->chain_pem.len);
    X509 *c;
    while (bio && a->nchain < CHAIN_MAX && (c = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        unsigned char *der = NULL;
        int l = i2d_X509(c, &der);
        X509_free(c);
        if (l <= 0 || !(a->chain_der[a->nchain] = malloc((size_t)l))) {
            OPENSSL_free(der);
            break;
        }
        memcpy(a->chain_der[a->nchain], der, (size_t)l);
        a->chain_len[a->nchain++] = (size_t)l;
        OPENSSL_free(der);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (a->nchain == 0)
        return tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "the device has no AK certificate chain");
    return 0;
}

/* The attestation key and its certificate, at the first attestation (the device may be enrolled
 * after the container started). */
static int ensure_cert(struct ks_attest *a, tm_err *err)
{
    if (a->cert)
        return 0;
    if (!a->key && !(a->key = EVP_EC_gen("P-256")))
        return tm_err_set(err, E(INTERNAL), "cannot make the attestation key");
    _cleanup_(osslfreep) unsigned char *spki = NULL;
    int len = i2d_PUBKEY(a->key, &spki);
    if (len <= 0)
        return tm_err_set(err, E(INTERNAL), "cannot encode the attestation key");
    Trustme__Tpmd__ContainerCert cc = TRUSTME__TPMD__CONTAINER_CERT__INIT;
    cc.has_spki_der = true;
    cc.spki_der = (ProtobufCBinaryData){(size_t)len, spki};
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_CONTAINER_CERT;
    req.container_cert = &cc;
    Trustme__Tpmd__Response *resp = NULL;
    int r = link_call(a, &req, &resp, err);
    if (r < 0)
        return r;
    if (resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_ERROR) {
        r = tm_err_set(err, E(ATTESTATION_UNAVAILABLE), "no container attestation certificate: %s",
                       resp->error->message ? resp->error->message : "refused");
    } else if (resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_CONTAINER_CERT) {
        r = tm_err_set(err, E(INTERNAL), "trustmed answered with something else");
    } else if ((r = store_cert(a, resp->container_cert, err)) < 0) {
        forget_cert(a);
    } else {
        log_info("container attestation key certified by the device's AK");
    }
    trustme__tpmd__response__free_unpacked(resp, NULL);
    return r;
}

static int add_ext_nid(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static int add_ext_data(X509 *x, const char *oid_txt, const uint8_t *data, size_t len)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(oid_txt, 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *e = NULL;
    int ok = oid && os && ASN1_OCTET_STRING_set(os, data, (int)len) == 1 &&
             (e = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) && X509_add_ext(x, e, -1) == 1;
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(os);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static int key_cert(struct ks_attest *a, const uint8_t *spki, size_t spki_len,
                    const Trustme__Keystore__KsKeyCharacteristics *ch, const uint8_t *challenge, size_t challenge_len,
                    const ProtobufCBinaryData *tpm_certify, uint8_t **ret, size_t *ret_len, tm_err *err)
{
    const uint8_t *p = spki;
    _cleanup_(pkey_freep) EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
    if (!pub)
        return tm_err_set(err, E(INTERNAL), "cannot read the key's public key");
    Trustme__Keystore__KsKeyDescription kd = TRUSTME__KEYSTORE__KS_KEY_DESCRIPTION__INIT;
    kd.has_version = true;
    kd.version = 1;
    kd.has_challenge = true;
    kd.challenge = (ProtobufCBinaryData){challenge_len, (uint8_t *)challenge};
    /* The lowest of its tags': a TPM-held key's digests, validity and usage count are the
     * service's (characteristics.enforcement names each tag's). */
    bool all_tpm = ch->n_enforcement > 0;
    for (size_t i = 0; i < ch->n_enforcement; i++)
        all_tpm = all_tpm && ch->enforcement[i]->level == TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM;
    kd.has_security_level = true;
    kd.security_level = all_tpm ? TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_TPM
                                : TRUSTME__KEYSTORE__KS_SECURITY_LEVEL__KS_SECURITY_SOFTWARE;
    kd.characteristics = (Trustme__Keystore__KsKeyCharacteristics *)ch;
    kd.identity = a->identity;
    size_t kdl = trustme__keystore__ks_key_description__get_packed_size(&kd);
    _cleanup_free_ uint8_t *kdb = malloc(kdl ? kdl : 1);
    uint8_t serial[16];
    if (!kdb || secure_random(serial, sizeof(serial), err) < 0)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    trustme__keystore__ks_key_description__pack(&kd, kdb);
    serial[0] &= 0x7f;
    _cleanup_(x509_freep) X509 *x = X509_new();
    BIGNUM *sn = BN_bin2bn(serial, sizeof(serial), NULL);
    ASN1_INTEGER *asn = sn ? BN_to_ASN1_INTEGER(sn, NULL) : NULL;
    BN_free(sn);
    bool ok = x && asn && X509_set_version(x, X509_VERSION_3) == 1 && X509_set_serialNumber(x, asn) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(a->cert)) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                         (const unsigned char *)(ch->alias ? ch->alias : "key"), -1, -1, 0) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), -300) &&
              X509_set1_notAfter(x, X509_get0_notAfter(a->cert)) == 1 && X509_set_pubkey(x, pub) == 1 &&
              add_ext_nid(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
              add_ext_data(x, TM_OID_KEY_DESCRIPTION, kdb, kdl) == 0 &&
              (!tpm_certify->len || add_ext_data(x, TM_OID_TPM_CERTIFY, tpm_certify->data, tpm_certify->len) == 0) &&
              X509_sign(x, a->key, EVP_sha256()) > 0;
    ASN1_INTEGER_free(asn);
    unsigned char *der = NULL;
    int dl = ok ? i2d_X509(x, &der) : -1;
    if (dl <= 0) {
        ERR_clear_error();
        return tm_err_set(err, E(INTERNAL), "cannot make the attestation certificate");
    }
    *ret = malloc((size_t)dl);
    if (*ret)
        memcpy(*ret, der, (size_t)dl);
    OPENSSL_free(der);
    if (!*ret)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    *ret_len = (size_t)dl;
    return 0;
}

int ks_attest_key(struct ks_attest *a, const uint8_t *spki, size_t spki_len,
                  const Trustme__Keystore__KsKeyCharacteristics *ch, const uint8_t *challenge, size_t challenge_len,
                  const ProtobufCBinaryData *tpm_certify, Trustme__Keystore__KsCertChain *ret, tm_err *err)
{
    if (challenge_len > TM_KEY_CHALLENGE_MAX)
        return tm_err_set(err, E(INVALID_ARGUMENT), "the challenge has %zu bytes, at most %d", challenge_len,
                          TM_KEY_CHALLENGE_MAX);
    int r = ensure_cert(a, err);
    if (r < 0)
        return r;
    trustme__keystore__ks_cert_chain__init(ret);
    ret->certs = calloc(2 + a->nchain, sizeof(*ret->certs));
    if (!ret->certs)
        return tm_err_set(err, E(INTERNAL), "out of memory");
    uint8_t *leaf = NULL;
    size_t leaf_len = 0;
    if ((r = key_cert(a, spki, spki_len, ch, challenge, challenge_len, tpm_certify, &leaf, &leaf_len, err)) < 0) {
        free(ret->certs);
        ret->certs = NULL;
        return r;
    }
    ret->certs[ret->n_certs++] = (ProtobufCBinaryData){leaf_len, leaf};
    ret->certs[ret->n_certs++] = (ProtobufCBinaryData){a->cert_der_len, a->cert_der};
    for (size_t i = 0; i < a->nchain; i++)
        ret->certs[ret->n_certs++] = (ProtobufCBinaryData){a->chain_len[i], a->chain_der[i]};
    return 0;
}

void ks_attest_chain_free(Trustme__Keystore__KsCertChain *c)
{
    if (c->n_certs)
        free(c->certs[0].data); /* only the leaf is the answer's own */
    free(c->certs);
    c->certs = NULL;
    c->n_certs = 0;
}
