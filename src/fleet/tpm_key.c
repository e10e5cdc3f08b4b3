/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tpm_key.h. OpenSSL 3 lets a key sign elsewhere through a provider or, shorter, through an
 * EC_KEY_METHOD (deprecated since 3.0 but supported): a key whose method is not OpenSSL's own is
 * "foreign" and every signature with it, the TLS handshake's CertificateVerify included, goes to
 * the method's sign callback. This file keeps the deprecated calls to itself. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tpm_key.h"

#include <errno.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "../cli/client.h"

static const char *control_path;
static EC_KEY_METHOD *method;

/* One DeviceTlsSign exchange with trustmed: r || s. */
static int tpm_sign(const unsigned char *dgst, int dlen, uint8_t sig[64], tm_err *err)
{
    if (dlen != 32)
        return tm_err_set(err, EINVAL, "the TPM's TLS key signs SHA-256 digests only (%d bytes asked)", dlen);
    struct client cl;
    int r = client_connect(&cl, control_path, err);
    if (r < 0)
        return r;
    Trustme__DeviceTlsSignRequest ts = TRUSTME__DEVICE_TLS_SIGN_REQUEST__INIT;
    ts.has_digest = true;
    ts.digest = (ProtobufCBinaryData){.len = 32, .data = (uint8_t *)dgst};
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_DEVICE_TLS_SIGN;
    req.device_tls_sign = &ts;
    Trustme__Response *resp = NULL;
    r = client_call(&cl, &req, &resp, err);
    client_close(&cl);
    if (r < 0)
        return r;
    if (resp->body_case == TRUSTME__RESPONSE__BODY_ERROR)
        r = tm_err_set(err, resp->error->code > 0 ? resp->error->code : EIO, "trustmed: %s",
                       resp->error->message ? resp->error->message : "error");
    else if (resp->body_case != TRUSTME__RESPONSE__BODY_DEVICE_TLS_SIGNATURE ||
             !resp->device_tls_signature->has_signature || resp->device_tls_signature->signature.len != 64)
        r = tm_err_set(err, EPROTO, "trustmed's answer is not a TLS signature");
    else
        memcpy(sig, resp->device_tls_signature->signature.data, 64);
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

static ECDSA_SIG *sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *rp, EC_KEY *key)
{
    uint8_t raw[64];
    tm_err err = {0};
    if (tpm_sign(dgst, dlen, raw, &err) < 0) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "TPM signature: %s", err.msg);
        return NULL;
    }
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return NULL;
    }
    return sig;
}

static int sign(int type, const unsigned char *dgst, int dlen, unsigned char *out, unsigned int *outlen,
                const BIGNUM *kinv, const BIGNUM *r, EC_KEY *key)
{
    ECDSA_SIG *sig = sign_sig(dgst, dlen, kinv, r, key);
    if (!sig)
        return 0;
    unsigned char *p = out;
    int n = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    if (n <= 0)
        return 0;
    *outlen = (unsigned int)n;
    return 1;
}

static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}
static inline void md_ctx_freep(EVP_MD_CTX **c)
{
    EVP_MD_CTX_free(*c);
}

int tpm_key_for_cert(X509 *cert, const char *control_socket, EVP_PKEY **ret, tm_err *err)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    const EC_KEY *ec_pub = pub ? EVP_PKEY_get0_EC_KEY(pub) : NULL;
    if (!ec_pub || EC_GROUP_get_curve_name(EC_KEY_get0_group(ec_pub)) != NID_X9_62_prime256v1) {
        ERR_clear_error();
        return tm_err_set(err, EINVAL, "the device's TLS certificate is not for an EC P-256 key");
    }
    control_path = control_socket;
    if (!method) {
        method = EC_KEY_METHOD_new(EC_KEY_get_default_method());
        if (!method)
            return tm_err_set(err, ENOMEM, "out of memory");
        EC_KEY_METHOD_set_sign(method, sign, NULL, sign_sig);
    }
    EC_KEY *ec = EC_KEY_new();
    _cleanup_(pkey_freep) EVP_PKEY *key = EVP_PKEY_new();
    if (!ec || !key || EC_KEY_set_method(ec, method) != 1 || EC_KEY_set_group(ec, EC_KEY_get0_group(ec_pub)) != 1 ||
        EC_KEY_set_public_key(ec, EC_KEY_get0_public_key(ec_pub)) != 1 || EVP_PKEY_assign_EC_KEY(key, ec) != 1) {
        EC_KEY_free(ec);
        ERR_clear_error();
        return tm_err_set(err, ENOMEM, "cannot make the TPM key handle");
    }
    /* One signature now: a certificate whose key is not this TPM's is told here, with the
     * reason, rather than as a handshake the fleet refuses. */
    static const unsigned char probe[] = "trustme-fleet: is the TLS key in this TPM the certificate's?";
    unsigned char sig[80];
    size_t siglen = sizeof(sig);
    _cleanup_(md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    _cleanup_(md_ctx_freep) EVP_MD_CTX *vmd = EVP_MD_CTX_new();
    if (!md || !vmd || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, probe, sizeof(probe)) != 1) {
        unsigned long e = ERR_peek_last_error();
        char why[256] = "";
        const char *data = NULL;
        int flags = 0;
        ERR_peek_last_error_data(&data, &flags);
        if (e)
            snprintf(why, sizeof(why), "%s", data && (flags & ERR_TXT_STRING) ? data : ERR_reason_error_string(e));
        ERR_clear_error();
        return tm_err_set(err, EIO, "the TPM did not sign (%s)", why[0] ? why : "no reason given");
    }
    if (EVP_DigestVerifyInit(vmd, NULL, EVP_sha256(), NULL, pub) != 1 ||
        EVP_DigestVerify(vmd, sig, siglen, probe, sizeof(probe)) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED,
                          "the device's TPM does not hold the key of this TLS certificate (a certificate of "
                          "another device, or the TLS key was made again: `trustme device csr --tls`)");
    }
    *ret = steal_ptr(key);
    return 0;
}
