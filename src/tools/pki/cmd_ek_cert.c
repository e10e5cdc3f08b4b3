/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki ek-cert: a TPM manufacturer CA certifies an endorsement key. For the embedded swtpm
 * the provisioning station plays the manufacturer (docs/ATTESTATION.md "Enrollment"): it reads
 * the EK from the device once, in a trusted setting, and the Device CA later trusts only EKs its
 * certificate covers. Its key must not be on the device: whoever holds it can certify a software
 * "EK" and so get an AK certificate for a key outside any TPM. */
#include <errno.h>
#include <getopt.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "pki.h"

static int read_ek(const char *path, EVP_PKEY **ret, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
    if (!k)
        return ossl_fail(err, EINVAL, "%s holds no PEM public key", path);
    char group[64] = "";
    size_t len;
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC || EVP_PKEY_get_group_name(k, group, sizeof(group), &len) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        EVP_PKEY_free(k);
        return tm_err_set(err, EOPNOTSUPP, "%s: not an ECC P-256 endorsement key", path);
    }
    *ret = k;
    return 0;
}

int cmd_ek_cert(int argc, char **argv)
{
    enum { OPT_EK = 256, OPT_KEY, OPT_CERT, OPT_OUT, OPT_CN, OPT_DAYS };
    static const struct option opts[] = {{"ek", required_argument, NULL, OPT_EK},
                                         {"key", required_argument, NULL, OPT_KEY},
                                         {"cert", required_argument, NULL, OPT_CERT},
                                         {"out", required_argument, NULL, OPT_OUT},
                                         {"cn", required_argument, NULL, OPT_CN},
                                         {"days", required_argument, NULL, OPT_DAYS},
                                         KEYRING_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *ek_path = NULL, *key_spec = NULL, *cert_path = NULL, *out = NULL;
    const char *cn = "trustme embedded TPM endorsement key";
    int days = 0, c;
    _cleanup_(keyring_done) struct keyring kr = {0};
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_EK: ek_path = optarg; break;
        case OPT_KEY: key_spec = optarg; break;
        case OPT_CERT: cert_path = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_CN: cn = optarg; break;
        case OPT_DAYS:
            if (parse_days(optarg, &days) < 0)
                return usage_error("ek-cert", "--days wants a number of days, 1..36500");
            break;
        case 'h': pki_usage(stdout); return 0;
        default:
            if (keyring_option(&kr, c, optarg))
                break;
            return EXIT_USAGE;
        }
    }
    if (optind != argc || !ek_path || !key_spec || !cert_path || !out)
        return usage_error("ek-cert", "--ek, --key, --cert and --out are required");
    if (!*cn || strlen(cn) > 64)
        return usage_error("ek-cert", "--cn wants 1..64 bytes");
    tm_err err = {0};
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL, *ca_key = NULL;
    _cleanup_(X509_freep) X509 *ca = NULL, *cert = NULL;
    _cleanup_(X509_NAME_freep) X509_NAME *subject = NULL;
    _cleanup_(BIO_freep) BIO *mem = BIO_new(BIO_s_mem());
    int r;
    if (!mem)
        return tm_err_set(&err, ENOMEM, "out of memory"), verb_fail("ek-cert", &err);
    if ((r = read_ek(ek_path, &ek, &err)) < 0 || (r = pem_read_cert(cert_path, &ca, &err)) < 0 ||
        (r = keyring_load(&kr, key_spec, NULL, &ca_key, &err)) < 0 || (r = name_make(cn, &subject, &err)) < 0)
        return verb_fail("ek-cert", &err);
    if (X509_check_private_key(ca, ca_key) != 1)
        return tm_err_set(&err, EINVAL, "%s is not the key of %s", key_spec, cert_path), verb_fail("ek-cert", &err);
    time_t now = time(NULL);
    struct cert_spec spec = {
        .subject = subject,
        .pubkey = ek,
        .profile = PROFILE_EK,
        .not_before = now,
        .not_after = now + (time_t)(days ? days : 3650) * 86400,
        .issuer = ca,
        .issuer_key = ca_key,
    };
    if ((r = cert_make(&spec, &cert, &err)) < 0 || (r = pem_write_cert(mem, cert, &err)) < 0 ||
        (r = bio_write_atomic(mem, out, 0644, &err)) < 0)
        return verb_fail("ek-cert", &err);
    printf("%s: endorsement key certificate \"%s\"\n", out, cn);
    return 0;
}
