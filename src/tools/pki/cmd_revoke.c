/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki revoke and crl: revocations and the CRLs that publish them. */
#include <errno.h>
#include <getopt.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "pki.h"

/* The PKI's CA that issued cert: same name as the certificate's issuer, same key id as its
 * AKI (if it has one), and its key verifies the certificate's signature. */
static int find_issuer(struct pki *p, X509 *cert, const struct pki_entity **ret, tm_err *err)
{
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(cert);
    for (size_t i = 0; i < pki_entities_count; i++) {
        const struct pki_entity *e = &pki_entities[i];
        if (!pki_entity_is_ca(e))
            continue;
        _cleanup_(X509_freep) X509 *ca = NULL;
        int r = pki_load_cert(p, e, &ca, err);
        if (r < 0)
            return r;
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
        if (X509_NAME_cmp(X509_get_subject_name(ca), X509_get_issuer_name(cert)) != 0 ||
            (akid && (!ski || ASN1_OCTET_STRING_cmp(akid, ski) != 0)) || X509_verify(cert, X509_get0_pubkey(ca)) != 1)
            continue;
        *ret = e;
        return 0;
    }
    tm_err_clear(err);
    return tm_err_set(err, ENOENT, "the certificate was not issued by any CA of %s", p->dir);
}

int cmd_revoke(int argc, char **argv)
{
    enum { OPT_PKI = 256, OPT_REASON, OPT_DAYS };
    static const struct option opts[] = {{"pki", required_argument, NULL, OPT_PKI},
                                         {"reason", required_argument, NULL, OPT_REASON},
                                         {"days", required_argument, NULL, OPT_DAYS},
                                         KEYRING_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pki_dir = NULL;
    int reason = CRL_REASON_NONE, days = 30;
    _cleanup_(keyring_done) struct keyring kr = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PKI: pki_dir = optarg; break;
        case OPT_REASON:
            if (revoke_reason_parse(optarg, &reason) < 0)
                return usage_error("revoke", "unknown reason \"%s\"", optarg);
            break;
        case OPT_DAYS:
            if (parse_days(optarg, &days) < 0)
                return usage_error("revoke", "--days wants a number of days, 1..36500");
            break;
        case 'h': pki_usage(stdout); return 0;
        default:
            if (keyring_option(&kr, c, optarg))
                break;
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !pki_dir)
        return usage_error("revoke", "--pki DIR and one certificate expected");
    tm_err err = {0};
    _cleanup_(pki_close) struct pki p = {.lock_fd = -1};
    _cleanup_(X509_freep) X509 *cert = NULL;
    const struct pki_entity *ca = NULL;
    int r;
    if ((r = pem_read_cert(argv[optind], &cert, &err)) < 0 || (r = pki_open(pki_dir, &p, &err)) < 0 ||
        (r = find_issuer(&p, cert, &ca, &err)) < 0 || (r = pki_record_revoked(&p, ca, cert, reason, &err)) < 0 ||
        (r = pki_write_crl(&p, &kr, ca, days, &err)) < 0 || (r = pki_save(&p, &err)) < 0 ||
        (r = pki_write_crl_bundle(p.dir, &err)) < 0)
        return verb_fail("revoke", &err);
    char subject[512];
    name_string(X509_get_subject_name(cert), subject, sizeof(subject));
    printf("%s: %s revoked, CRL of %s renewed\n", argv[optind], subject, ca->name);
    return 0;
}

int cmd_crl(int argc, char **argv)
{
    enum { OPT_PKI = 256, OPT_CA, OPT_DAYS };
    static const struct option opts[] = {{"pki", required_argument, NULL, OPT_PKI},
                                         {"ca", required_argument, NULL, OPT_CA},
                                         {"days", required_argument, NULL, OPT_DAYS},
                                         KEYRING_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pki_dir = NULL;
    const struct pki_entity *only = NULL;
    int days = 30;
    _cleanup_(keyring_done) struct keyring kr = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PKI: pki_dir = optarg; break;
        case OPT_CA:
            if (!(only = pki_ca_find(optarg)))
                return usage_error("crl", "unknown CA \"%s\"", optarg);
            break;
        case OPT_DAYS:
            if (parse_days(optarg, &days) < 0)
                return usage_error("crl", "--days wants a number of days, 1..36500");
            break;
        case 'h': pki_usage(stdout); return 0;
        default:
            if (keyring_option(&kr, c, optarg))
                break;
            return EXIT_USAGE;
        }
    }
    if (optind != argc || !pki_dir)
        return usage_error("crl", "--pki DIR expected");
    tm_err err = {0};
    _cleanup_(pki_close) struct pki p = {.lock_fd = -1};
    int r = pki_open(pki_dir, &p, &err);
    if (r < 0)
        return verb_fail("crl", &err);
    for (size_t i = 0; i < pki_entities_count; i++) {
        const struct pki_entity *e = &pki_entities[i];
        if (!pki_entity_is_ca(e) || (only && only != e))
            continue;
        /* saved after each CRL: a CRL number that went out is never used again */
        if ((r = pki_write_crl(&p, &kr, e, days, &err)) < 0 || (r = pki_save(&p, &err)) < 0)
            return verb_fail("crl", &err);
        printf("%s/crl/%s.pem renewed\n", p.dir, e->name);
    }
    if ((r = pki_write_crl_bundle(p.dir, &err)) < 0)
        return verb_fail("crl", &err);
    return 0;
}
