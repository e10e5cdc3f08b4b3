/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki sign: FILE.sig and FILE.chain.pem, in the formats src/scd/verify.h accepts.
 *
 * FILE is hashed once, in chunks (GuestOS images are large), and the digest is signed; the
 * signature is then checked against the certificate's public key before anything is written,
 * so a key that does not belong to the certificate (a wrong file, a wrong token object) fails
 * here and not at the verifier. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "pki.h"

OSSL_DEFINE_FREEP(EVP_PKEY_CTX, EVP_PKEY_CTX_free)

static int hash_file(const char *path, unsigned char dgst[32], tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        return ossl_fail(err, EIO, "cannot set up SHA-256");
    _cleanup_free_ unsigned char *buf = malloc(1 << 16);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 16);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "cannot read %s", path);
        if (n == 0)
            break;
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
            return ossl_fail(err, EIO, "SHA-256 failed");
    }
    if (EVP_DigestFinal_ex(md, dgst, NULL) != 1)
        return ossl_fail(err, EIO, "SHA-256 failed");
    return 0;
}

/* sign (key, sig, sig_len) or verify (cert's key, sig) a SHA-256 digest with the algorithm of
 * the key's type: ECDSA, or RSA-PSS with MGF1-SHA-256 and a 32-byte salt */
static int pkey_op(EVP_PKEY *key, bool sign, const unsigned char dgst[32], unsigned char *sig, size_t *sig_len,
                   tm_err *err)
{
    _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    int id = EVP_PKEY_get_base_id(key);
    bool rsa = id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
    if (!rsa && id != EVP_PKEY_EC)
        return tm_err_set(err, EOPNOTSUPP, "key of type %s: only EC P-256 and RSA", OBJ_nid2sn(id));
    if (!ctx || (sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
        (rsa &&
         (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1 || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) != 1)))
        return ossl_fail(err, EIO, "cannot set up %s", rsa ? "RSA-PSS" : "ECDSA");
    if (sign) {
        if (EVP_PKEY_sign(ctx, sig, sig_len, dgst, 32) != 1)
            return ossl_fail(err, EIO, "signing failed");
    } else if (EVP_PKEY_verify(ctx, sig, *sig_len, dgst, 32) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED,
                          "the signature does not verify with the "
                          "certificate's public key: the key does not belong to the certificate");
    }
    return 0;
}

/* Intermediates from a PEM file, without self-signed certificates (roots are anchors, never
 * sent) and without the leaf itself. */
static int add_chain(BIO *out, const char *path, X509 *leaf, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    int n = 0;
    for (;;) {
        _cleanup_(X509_freep) X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                break;
            }
            return ossl_fail(err, EINVAL, "%s: certificate %d is malformed", path, n + 1);
        }
        n++;
        if ((X509_get_extension_flags(x) & EXFLAG_SS) || X509_cmp(x, leaf) == 0)
            continue;
        int r = pem_write_cert(out, x, err);
        if (r < 0)
            return r;
    }
    if (n == 0)
        return tm_err_set(err, EINVAL, "%s holds no certificate", path);
    return 0;
}

int cmd_sign(int argc, char **argv)
{
    enum { OPT_PKI = 256, OPT_SIGNER, OPT_KEY, OPT_CERT, OPT_CHAIN };
    static const struct option opts[] = {{"pki", required_argument, NULL, OPT_PKI},
                                         {"signer", required_argument, NULL, OPT_SIGNER},
                                         {"key", required_argument, NULL, OPT_KEY},
                                         {"cert", required_argument, NULL, OPT_CERT},
                                         {"chain", required_argument, NULL, OPT_CHAIN},
                                         KEYRING_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pki_dir = NULL, *signer = NULL, *key_spec = NULL, *cert_path = NULL, *chain_path = NULL;
    _cleanup_(keyring_done) struct keyring kr = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PKI: pki_dir = optarg; break;
        case OPT_SIGNER: signer = optarg; break;
        case OPT_KEY: key_spec = optarg; break;
        case OPT_CERT: cert_path = optarg; break;
        case OPT_CHAIN: chain_path = optarg; break;
        case 'h': pki_usage(stdout); return 0;
        default:
            if (keyring_option(&kr, c, optarg))
                break;
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage_error("sign", "one file to sign expected");
    const char *file = argv[optind];
    if (pki_dir ? (!signer || key_spec || cert_path || chain_path) : (signer || !key_spec || !cert_path))
        return usage_error("sign", "give either --pki DIR --signer software|guestos, or --key "
                                   "KEY --cert CERT [--chain PEM]");
    const struct pki_entity *leaf_e = NULL;
    if (signer) {
        if (strcmp(signer, "software") == 0)
            leaf_e = pki_entity_find("signing");
        else if (strcmp(signer, "guestos") == 0)
            leaf_e = pki_entity_find("guestos-signing");
        else
            return usage_error("sign", "--signer is software or guestos");
    }
    if (strlen(file) > PATH_MAX - 32)
        return usage_error("sign", "file name too long");

    tm_err err = {0};
    _cleanup_(pki_close) struct pki p = {.lock_fd = -1};
    _cleanup_(X509_freep) X509 *cert = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
    _cleanup_(BIO_freep) BIO *chain = BIO_new(BIO_s_mem());
    if (!chain)
        return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("sign", &err);
    int r;
    if (pki_dir) {
        char issuer_path[PATH_MAX];
        if ((r = pki_open(pki_dir, &p, &err)) < 0 || (r = pki_load_cert(&p, leaf_e, &cert, &err)) < 0 ||
            (r = pki_load_key(&p, &kr, leaf_e, &key, &err)) < 0 || (r = pem_write_cert(chain, cert, &err)) < 0)
            return verb_fail("sign", &err);
        pki_cert_path(&p, pki_entity_find(leaf_e->issuer), issuer_path);
        if ((r = add_chain(chain, issuer_path, cert, &err)) < 0)
            return verb_fail("sign", &err);
        pki_close(&p); /* nothing to record: let other runs have the lock */
    } else {
        if ((r = pem_read_cert(cert_path, &cert, &err)) < 0 ||
            (r = keyring_load(&kr, key_spec, NULL, &key, &err)) < 0 || (r = pem_write_cert(chain, cert, &err)) < 0 ||
            (chain_path && (r = add_chain(chain, chain_path, cert, &err)) < 0))
            return verb_fail("sign", &err);
    }
    unsigned char dgst[32], sig[1024];
    size_t sig_len = sizeof(sig);
    if ((r = hash_file(file, dgst, &err)) < 0 || (r = pkey_op(key, true, dgst, sig, &sig_len, &err)) < 0 ||
        (r = pkey_op(X509_get0_pubkey(cert), false, dgst, sig, &sig_len, &err)) < 0)
        return verb_fail("sign", &err);
    char sig_path[PATH_MAX], chain_out[PATH_MAX];
    snprintf(sig_path, sizeof(sig_path), "%s.sig", file);
    snprintf(chain_out, sizeof(chain_out), "%s.chain.pem", file);
    if ((r = write_file_atomic(sig_path, sig, sig_len, 0644, &err)) < 0 ||
        (r = bio_write_atomic(chain, chain_out, 0644, &err)) < 0)
        return verb_fail("sign", &err);
    char subject[512];
    name_string(X509_get_subject_name(cert), subject, sizeof(subject));
    printf("%s: signed by %s\n", file, subject);
    return 0;
}
