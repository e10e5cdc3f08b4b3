/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki issue: a certificate for a CSR, from one of the PKI's issuing CAs.
 *
 * From the CSR only the subject and the public key are taken, after its self-signature
 * verified (the requester holds the key); the extensions are the profile's, never the CSR's. */
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "pki.h"

static int read_csr(const char *path, X509_REQ **ret, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    _cleanup_(X509_REQ_freep) X509_REQ *req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    if (!req)
        return ossl_fail(err, EINVAL, "%s holds no PEM certificate request", path);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (!pub)
        return ossl_fail(err, EINVAL, "%s: the public key cannot be read", path);
    if (X509_REQ_verify(req, pub) != 1)
        return ossl_fail(err, EKEYREJECTED, "%s: the request's self-signature does not verify", path);
    int id = EVP_PKEY_get_base_id(pub);
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t len;
        if (EVP_PKEY_get_group_name(pub, group, sizeof(group), &len) != 1 || strcmp(group, "prime256v1") != 0)
            return tm_err_set(err, EOPNOTSUPP, "%s: EC key not on P-256", path);
    } else if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
        if (EVP_PKEY_get_bits(pub) < 2048)
            return tm_err_set(err, EOPNOTSUPP, "%s: RSA key of %d bits, at least 2048 needed", path,
                              EVP_PKEY_get_bits(pub));
    } else {
        return tm_err_set(err, EOPNOTSUPP, "%s: key type %s, only EC P-256 and RSA", path, OBJ_nid2sn(id));
    }
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0)
        return tm_err_set(err, EINVAL, "%s: the request's subject is empty", path);
    *ret = steal_ptr(req);
    return 0;
}

/* Every CRL (PEM) in path, appended to crls: a manufacturer's CRL file may hold several. */
static int read_crls(const char *path, STACK_OF(X509_CRL) * crls, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "--ek-crl: cannot open %s", path);
    int n = 0;
    for (;; n++) {
        X509_CRL *crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL);
        if (!crl) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                return 0;
            return tm_err_set(err, EINVAL, "--ek-crl: %s: %s", path,
                              n ? "a block after the CRLs does not parse" : "no PEM CRL");
        }
        if (n >= 64 || !sk_X509_CRL_push(crls, crl)) {
            X509_CRL_free(crl);
            return tm_err_set(err, n >= 64 ? EINVAL : ENOMEM, "--ek-crl: %s: %s", path,
                              n >= 64 ? "more than 64 CRLs" : "out of memory");
        }
    }
}

int cmd_issue(int argc, char **argv)
{
    enum { OPT_PKI = 256, OPT_CA, OPT_CSR, OPT_OUT, OPT_PROFILE, OPT_DAYS, OPT_NB, OPT_NA, OPT_EK_ANCHOR, OPT_EK_CRL };
    static const struct option opts[] = {{"pki", required_argument, NULL, OPT_PKI},
                                         {"ca", required_argument, NULL, OPT_CA},
                                         {"csr", required_argument, NULL, OPT_CSR},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"profile", required_argument, NULL, OPT_PROFILE},
                                         {"days", required_argument, NULL, OPT_DAYS},
                                         {"not-before", required_argument, NULL, OPT_NB},
                                         {"not-after", required_argument, NULL, OPT_NA},
                                         KEYRING_OPTIONS,
                                         {"ek-anchor", required_argument, NULL, OPT_EK_ANCHOR},
                                         {"ek-crl", required_argument, NULL, OPT_EK_CRL},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pki_dir = NULL, *ca_name = NULL, *csr_path = NULL, *out = NULL, *profile = NULL;
    const char *nb = NULL, *na = NULL;
    int days = 0;
    const char *ek_anchors[8], *ek_crls[8];
    size_t n_ek_anchors = 0, n_ek_crls = 0;
    _cleanup_(keyring_done) struct keyring kr = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PKI: pki_dir = optarg; break;
        case OPT_CA: ca_name = optarg; break;
        case OPT_CSR: csr_path = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_PROFILE: profile = optarg; break;
        case OPT_DAYS:
            if (parse_days(optarg, &days) < 0)
                return usage_error("issue", "--days wants a number of days, 1..36500");
            break;
        case OPT_NB: nb = optarg; break;
        case OPT_NA: na = optarg; break;
        case OPT_EK_ANCHOR:
            if (n_ek_anchors == sizeof(ek_anchors) / sizeof(ek_anchors[0]))
                return usage_error("issue", "at most 8 --ek-anchor");
            ek_anchors[n_ek_anchors++] = optarg;
            break;
        case OPT_EK_CRL:
            if (n_ek_crls == sizeof(ek_crls) / sizeof(ek_crls[0]))
                return usage_error("issue", "at most 8 --ek-crl");
            ek_crls[n_ek_crls++] = optarg;
            break;
        case 'h': pki_usage(stdout); return 0;
        default:
            if (keyring_option(&kr, c, optarg))
                break;
            return EXIT_USAGE;
        }
    }
    if (optind != argc || !pki_dir || !ca_name || !csr_path || !out)
        return usage_error("issue", "--pki, --ca, --csr and --out are required");
    const struct pki_entity *ca = NULL;
    if (strcmp(ca_name, "software") == 0 || strcmp(ca_name, "guestos") == 0 || strcmp(ca_name, "device") == 0 ||
        strcmp(ca_name, "general-root") == 0)
        ca = pki_ca_find(strcmp(ca_name, "general-root") == 0 ? "general-root-ca" : ca_name);
    if (!ca)
        return usage_error("issue", "--ca is software, guestos, device or general-root");
    bool from_root = strcmp(ca_name, "general-root") == 0;
    enum cert_profile prof = strcmp(ca_name, "device") == 0 ? PROFILE_DEVICE : PROFILE_SIGNING;
    if (profile && strcmp(profile, "signing") == 0)
        prof = PROFILE_SIGNING;
    else if (profile && strcmp(profile, "device") == 0)
        prof = PROFILE_DEVICE;
    else if (profile && strcmp(profile, "guestos-ca") == 0)
        prof = PROFILE_GUESTOS_CA;
    else if (profile && strcmp(profile, "tls") == 0 && strcmp(ca_name, "device") == 0)
        prof = PROFILE_DEVICE; /* a device's TLS client key: the same extensions as its AK's */
    else if (profile && strcmp(profile, "vtpm-issuer") == 0)
        prof = PROFILE_VTPM_ISSUER;
    else if (profile)
        return usage_error("issue", "--profile is signing, device, guestos-ca, vtpm-issuer, or tls with --ca device");
    /* A TLS client key is certified on the word of an AK this Device CA certified (TPM2_Certify:
     * docs/FLEET.md "Device identity on the wire"), not through credential activation; so is a
     * device's vTPM-issuing key (docs/VTPM.md "EK certificates"). */
    bool tls = profile && strcmp(profile, "tls") == 0;
    bool vtpm_issuer = prof == PROFILE_VTPM_ISSUER;
    if (vtpm_issuer && strcmp(ca_name, "device") != 0)
        return usage_error("issue", "--profile vtpm-issuer goes with --ca device");
    /* The General root issues only GuestOS Signing CAs (one per vendor), and only it does. */
    if (from_root != (prof == PROFILE_GUESTOS_CA))
        return usage_error("issue", "--profile guestos-ca goes with --ca general-root, and "
                                    "--ca general-root with --profile guestos-ca");
    if (days && (nb || na))
        return usage_error("issue", "--days excludes --not-before/--not-after");
    time_t not_before = time(NULL), not_after;
    if (nb && time_parse(nb, &not_before) < 0)
        return usage_error("issue", "--not-before wants YYYYMMDDHHMMSSZ");
    if (na && time_parse(na, &not_after) < 0)
        return usage_error("issue", "--not-after wants YYYYMMDDHHMMSSZ");
    if (!na)
        not_after = not_before + (time_t)(days ? days : 365) * 86400;
    if (not_after <= not_before)
        return usage_error("issue", "the validity must end after it begins");

    /* An attestation key is certified only when it is proven to live in a TPM (docs/ATTESTATION.md "Enrollment"):
     * an ordinary CSR, from a key anyone may hold, is refused. */
    bool enroll = strcmp(ca_name, "device") == 0 && !tls && !vtpm_issuer;
    if (enroll && n_ek_anchors == 0)
        return usage_error("issue", "--ca device needs --ek-anchor (the TPM manufacturer CA that "
                                    "certifies endorsement keys): attestation keys are certified only "
                                    "through credential activation");
    if (!enroll && (n_ek_anchors || n_ek_crls))
        return usage_error("issue", "--ek-anchor and --ek-crl are for --ca device (AK enrollment) only");

    tm_err err = {0};
    _cleanup_(pki_close) struct pki p = {.lock_fd = -1};
    _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
    _cleanup_(X509_freep) X509 *ca_cert = NULL, *cert = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
    _cleanup_(enroll_bundle_free) struct enroll_bundle bundle = {0};
    _cleanup_(x509_stack_freep) STACK_OF(X509) *anchors = sk_X509_new_null();
    _cleanup_(crl_stack_freep) STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    int r;
    if (!anchors || !crls)
        return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("issue", &err);
    if (enroll) {
        for (size_t i = 0; i < n_ek_anchors; i++) {
            X509 *a = NULL;
            if ((r = pem_read_cert(ek_anchors[i], &a, &err)) < 0)
                return verb_fail("issue", &err);
            if (!sk_X509_push(anchors, a)) {
                X509_free(a);
                return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("issue", &err);
            }
        }
        for (size_t i = 0; i < n_ek_crls; i++)
            if ((r = read_crls(ek_crls[i], crls, &err)) < 0)
                return verb_fail("issue", &err);
        if ((r = enroll_read_bundle(csr_path, &bundle, &err)) < 0 ||
            (r = enroll_check(&bundle, anchors, n_ek_crls ? crls : NULL, &err)) < 0)
            return tm_err_prefix(&err, "%s", csr_path), verb_fail("issue", &err);
        req = steal_ptr(bundle.csr);
    }
    if ((!req && !tls && !vtpm_issuer && (r = read_csr(csr_path, &req, &err)) < 0) ||
        (r = pki_open(pki_dir, &p, &err)) < 0 || (r = pki_load_cert(&p, ca, &ca_cert, &err)) < 0)
        return verb_fail("issue", &err);
    if ((tls && (r = enroll_tls_read(csr_path, ca_cert, &req, &err)) < 0) ||
        (vtpm_issuer && (r = vtpm_issuer_check(csr_path, ca_cert, &req, &err)) < 0))
        return tm_err_prefix(&err, "%s", csr_path), verb_fail("issue", &err);
    if ((r = pki_load_key(&p, &kr, ca, &ca_key, &err)) < 0)
        return verb_fail("issue", &err);
    struct cert_spec spec = {
        .subject = X509_REQ_get_subject_name(req),
        .pubkey = X509_REQ_get0_pubkey(req),
        .profile = prof,
        .not_before = not_before,
        .not_after = not_after,
        .issuer = ca_cert,
        .issuer_key = ca_key,
    };
    _cleanup_(BIO_freep) BIO *mem = BIO_new(BIO_s_mem());
    if (!mem)
        return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("issue", &err);
    /* the record first: a certificate that exists is always in pki.json */
    if ((r = cert_make(&spec, &cert, &err)) < 0 || (r = pki_record_issued(&p, ca, cert, &err)) < 0 ||
        (r = pki_save(&p, &err)) < 0 ||
        (r = enroll ? enroll_write(mem, bundle.ek, bundle.ak_name, cert, &err) : pem_write_cert(mem, cert, &err)) < 0 ||
        (r = bio_write_atomic(mem, out, 0644, &err)) < 0)
        return verb_fail("issue", &err);
    char subject[512];
    name_string(X509_get_subject_name(cert), subject, sizeof(subject));
    printf("%s: %s issued by %s (%s profile)%s\n", out, subject, ca->name,
           prof == PROFILE_DEVICE        ? "device"
           : prof == PROFILE_GUESTOS_CA  ? "guestos-ca"
           : prof == PROFILE_VTPM_ISSUER ? "vtpm-issuer"
                                         : "signing",
           enroll ? ", encrypted to the TPM's EK for credential activation"
           : tls  ? ", a TLS client key the AK certified in its TPM"
                  : "");
    return 0;
}
