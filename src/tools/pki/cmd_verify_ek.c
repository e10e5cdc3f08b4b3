/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki verify-ek: a verifier's check of a container vTPM's EK certificate (docs/VTPM.md
 * "EK certificates"): it chains to the anchors through a device's vTPM issuer, which the Device
 * CA marked as one, and it is an EK certificate; the container and GuestOS it names are printed. */
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "enrollment.h"
#include "pki.h"

#define LIST_MAX 16

static inline void store_freep(X509_STORE **s)
{
    X509_STORE_free(*s);
}
static inline void store_ctx_freep(X509_STORE_CTX **c)
{
    X509_STORE_CTX_free(*c);
}

/* Every certificate of a PEM file, appended to out. */
static int read_certs(const char *path, STACK_OF(X509) * out, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    int n = 0;
    for (X509 *x; (x = PEM_read_bio_X509(in, NULL, NULL, NULL)); n++)
        if (n >= LIST_MAX || !sk_X509_push(out, x)) {
            X509_free(x);
            return tm_err_set(err, EINVAL, "%s: more than %d certificates", path, LIST_MAX);
        }
    ERR_clear_error();
    return n ? 0 : tm_err_set(err, EINVAL, "%s holds no PEM certificate", path);
}

static bool has_policy(X509 *x, const char *oid)
{
    CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(x, NID_certificate_policies, NULL, NULL);
    bool found = false;
    for (int i = 0; pols && i < sk_POLICYINFO_num(pols) && !found; i++) {
        char text[128];
        OBJ_obj2txt(text, sizeof(text), sk_POLICYINFO_value(pols, i)->policyid, 1);
        found = strcmp(text, oid) == 0;
    }
    CERTIFICATEPOLICIES_free(pols);
    return found;
}

static bool has_eku(X509 *x, const char *oid)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    bool found = false;
    for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku) && !found; i++) {
        char text[128];
        OBJ_obj2txt(text, sizeof(text), sk_ASN1_OBJECT_value(eku, i), 1);
        found = strcmp(text, oid) == 0;
    }
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

static void entry(X509 *x, int nid, char *out, size_t size)
{
    out[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), nid, out, (int)size);
}

int cmd_verify_ek(int argc, char **argv)
{
    enum { OPT_ANCHOR = 256, OPT_CHAIN, OPT_CRL };
    static const struct option opts[] = {{"anchor", required_argument, NULL, OPT_ANCHOR},
                                         {"chain", required_argument, NULL, OPT_CHAIN},
                                         {"crl", required_argument, NULL, OPT_CRL},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *anchors[LIST_MAX], *chains[LIST_MAX], *crls[LIST_MAX];
    size_t na = 0, nc = 0, nl = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ANCHOR:
        case OPT_CHAIN:
        case OPT_CRL: {
            const char **list = c == OPT_ANCHOR ? anchors : c == OPT_CHAIN ? chains : crls;
            size_t *n = c == OPT_ANCHOR ? &na : c == OPT_CHAIN ? &nc : &nl;
            if (*n == LIST_MAX)
                return usage_error("verify-ek", "at most %d of each option", LIST_MAX);
            list[(*n)++] = optarg;
            break;
        }
        case 'h': pki_usage(stdout); return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || na == 0)
        return usage_error("verify-ek", "one EK certificate and at least one --anchor");
    tm_err err = {0};
    _cleanup_(X509_freep) X509 *leaf = NULL;
    _cleanup_(x509_stack_freep) STACK_OF(X509) *trusted = sk_X509_new_null();
    _cleanup_(x509_stack_freep) STACK_OF(X509) *untrusted = sk_X509_new_null();
    _cleanup_(store_freep) X509_STORE *store = X509_STORE_new();
    _cleanup_(store_ctx_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!trusted || !untrusted || !store || !ctx)
        return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("verify-ek", &err);
    if (pem_read_cert(argv[optind], &leaf, &err) < 0)
        return verb_fail("verify-ek", &err);
    for (size_t i = 0; i < na; i++)
        if (read_certs(anchors[i], trusted, &err) < 0)
            return verb_fail("verify-ek", &err);
    for (size_t i = 0; i < nc; i++)
        if (read_certs(chains[i], untrusted, &err) < 0)
            return verb_fail("verify-ek", &err);
    for (int i = 0; i < sk_X509_num(trusted); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(trusted, i)) != 1)
            return ossl_fail(&err, EINVAL, "cannot use an anchor"), verb_fail("verify-ek", &err);
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    for (size_t i = 0; i < nl; i++) {
        _cleanup_(BIO_freep) BIO *in = BIO_new_file(crls[i], "r");
        if (!in)
            return ossl_fail(&err, ENOENT, "cannot open %s", crls[i]), verb_fail("verify-ek", &err);
        for (X509_CRL *crl; (crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL));) {
            int ok = X509_STORE_add_crl(store, crl);
            X509_CRL_free(crl);
            if (ok != 1)
                return ossl_fail(&err, EINVAL, "cannot use %s", crls[i]), verb_fail("verify-ek", &err);
        }
        ERR_clear_error();
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    }
    X509_STORE_set_flags(store, flags);
    if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
        return ossl_fail(&err, ENOMEM, "cannot set up the verification"), verb_fail("verify-ek", &err);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        tm_err_set(&err, EKEYREJECTED, "%s: the chain does not verify: %s (depth %d)", argv[optind],
                   X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx));
        ERR_clear_error();
        return verb_fail("verify-ek", &err);
    }
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
    /* Only a Device CA's vTPM issuer issues vTPM EK certificates: a certificate from any other
     * CA of the PKI (a device's AK cannot be one: it is no CA) is not a vTPM's EK. */
    if (!issuer || !has_policy(issuer, TM_OID_VTPM_ISSUER))
        return tm_err_set(&err, EKEYREJECTED, "%s was not issued by a vTPM issuer (policy %s)", argv[optind],
                          TM_OID_VTPM_ISSUER),
               verb_fail("verify-ek", &err);
    if (X509_check_ca(leaf) != 0 || !has_eku(leaf, TM_OID_TCG_KP_EK_CERTIFICATE))
        return tm_err_set(&err, EKEYREJECTED, "%s is not an EK certificate (an end entity with EKU %s)", argv[optind],
                          TM_OID_TCG_KP_EK_CERTIFICATE),
               verb_fail("verify-ek", &err);
    char uuid[64], ou[96], issuer_name[512];
    entry(leaf, NID_commonName, uuid, sizeof(uuid));
    entry(leaf, NID_organizationalUnitName, ou, sizeof(ou));
    name_string(X509_get_subject_name(issuer), issuer_name, sizeof(issuer_name));
    printf("%s: EK certificate of container %s, %s, issued by %s: chain OK\n", argv[optind], uuid, ou, issuer_name);
    return 0;
}
