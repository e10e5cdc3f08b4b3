/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki: makes and runs the development PKI (docs/PKI.md). Offline, one verb per run. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki.h"
#include "version.h"

void pki_usage(FILE *out)
{
    fprintf(out, "Usage: trustme-pki VERB [OPTIONS]\n"
                 "\n"
                 "  init DIR [--algorithm ecdsa-p256|rsa-pss-3072] [--days N]\n"
                 "           [--passphrase-file F | --pkcs11 URI [--pin-file F] [--pkcs11-module PATH]]\n"
                 "      Make a development PKI in DIR (which must not exist): the Software Signing\n"
                 "      hierarchy (root CA, sub-CA, signing certificate) and the Customer hierarchy\n"
                 "      (General root CA, GuestOS signing CA and certificate, Device CA), with an empty\n"
                 "      CRL of each CA. Keys are encrypted PKCS#8 files under one passphrase, or are\n"
                 "      generated on the PKCS#11 token of URI (pkcs11:token=LABEL) and never leave it.\n"
                 "\n"
                 "  sign FILE (--pki DIR --signer software|guestos | --key KEY --cert CERT [--chain PEM])\n"
                 "           [--passphrase-file F] [--pin-file F] [--pkcs11-module PATH]\n"
                 "      Write FILE.sig (detached signature over FILE: ECDSA P-256/SHA-256 DER, or\n"
                 "      RSA-PSS/SHA-256 with a 32-byte salt) and FILE.chain.pem (signer, intermediates).\n"
                 "      KEY is a key file or a pkcs11: URI.\n"
                 "\n"
                 "  verify FILE --anchor ROOT.pem [--anchor ...] [--crl CRL.pem ...] [--eku NAME|OID]\n"
                 "      Check FILE.sig with FILE.chain.pem against the anchors only (default EKU\n"
                 "      codeSigning; with CRLs, every CA of the chain needs one).\n"
                 "\n"
                 "  issue --pki DIR --ca software|guestos|device|general-root --csr CSR.pem --out CERT.pem\n"
                 "           [--ek-anchor MANUFACTURER.pem ...] [--ek-crl CRL.pem ...]\n"
                 "           [--profile signing|device|guestos-ca|vtpm-issuer]\n"
                 "           [--days N | --not-before T --not-after T]\n"
                 "           [--passphrase-file F] [--pin-file F] [--pkcs11-module PATH]\n"
                 "      Issue a certificate for a CSR (T is YYYYMMDDHHMMSSZ, UTC; default 365 days).\n"
                 "      --ca device: CSR.pem is `trustme device csr`'s bundle; its EK certificate must\n"
                 "      chain to an --ek-anchor (required), be an endorsement key's (keyAgreement, not\n"
                 "      a CA, not for signing) and, with --ek-crl, not be revoked; its AK must be a TPM\n"
                 "      attestation key, and\n"
                 "      CERT.pem is the certificate encrypted under a credential only that TPM can\n"
                 "      activate (TPM2_MakeCredential to the EK, bound to the AK's name).\n"
                 "      --ca general-root --profile guestos-ca: another vendor's GuestOS Signing CA.\n"
                 "      --ca device --profile vtpm-issuer: CSR.pem is `trustme device csr --vtpm-issuer`'s\n"
                 "      bundle; the AK certificate in it (issued by this Device CA) must certify the\n"
                 "      vTPM-issuing key in the TPM; CERT.pem is a CA for the device's vTPM EK\n"
                 "      certificates (docs/VTPM.md).\n"
                 "\n"
                 "  ek-cert --ek EK.pem --key KEY --cert CA.pem --out EKCERT.pem [--cn NAME] [--days N]\n"
                 "           [--passphrase-file F] [--pin-file F] [--pkcs11-module PATH]\n"
                 "      As a TPM manufacturer CA (KEY, CA.pem): certify an endorsement key (EK.pem, the\n"
                 "      ek_public_pem of `trustme device info --json`) for an embedded swtpm.\n"
                 "\n"
                 "  revoke --pki DIR CERT.pem [--reason REASON] [--days N] [secret options]\n"
                 "      Revoke a certificate issued by one of the PKI's CAs and renew that CA's CRL.\n"
                 "      REASON: unspecified keyCompromise cACompromise affiliationChanged superseded\n"
                 "      cessationOfOperation certificateHold privilegeWithdrawn aACompromise.\n"
                 "\n"
                 "  crl --pki DIR [--ca NAME] [--days N] [secret options]\n"
                 "      Renew the CRL of one CA (root-ca, sub-ca, general-root-ca, guestos-ca,\n"
                 "      device-ca, or software|guestos|device) or of all five; next update in N days\n"
                 "      (default 30). DIR/crls.pem holds all current CRLs in one file.\n"
                 "\n"
                 "  verify-ek EKCERT.pem --anchor ROOT.pem [--anchor ...] [--chain CA.pem ...]\n"
                 "           [--crl CRL.pem ...]\n"
                 "      Check a container vTPM's EK certificate (docs/VTPM.md): it chains to an anchor\n"
                 "      through --chain (the device's vTPM issuer and the Device CA, `trustme device\n"
                 "      info`), its issuer is a vTPM issuer and it is an EK certificate; prints the\n"
                 "      container's UUID and GuestOS.\n"
                 "\n"
                 "  rim --out REFS.json --version N [--valid-days D | --not-before T --not-after T]\n"
                 "           [--binary FILE ...] [--guestos DIR ...] [--pcr N ...]\n"
                 "           [--config device-config=FILE|container-config=FILE ...]\n"
                 "           [--vtpm-ek UUID/ek-rsa|UUID/ek-ecc=NAME ...]\n"
                 "           [--vtpm-owner UUID=STATEMENT ...]\n"
                 "      Write the reference values trustme-verify accepts: the SHA-256 of release\n"
                 "      binaries, of a GuestOS directory's guestos.json and the images it declares\n"
                 "      (checked against the image files), of config files; and the verifier's policy:\n"
                 "      version N (rim_version), valid D days (default 365) from now, the PCRs to\n"
                 "      quote (the device config's boot and runtime PCR, default 12 and 11; --pcr\n"
                 "      replaces them), each --binary and the device config as required events. Sign\n"
                 "      it with trustme-pki sign REFS.json --pki DIR --signer software.\n"
                 "\n"
                 "Exit status: 0 ok, 1 failure (the reason on stderr), 2 usage error.\n");
}

int verb_fail(const char *verb, const tm_err *err)
{
    fprintf(stderr, "trustme-pki: %s: %s\n", verb, err->msg[0] ? err->msg : "failed");
    return 1;
}

int usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trustme-pki: %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see trustme-pki --help)\n");
    va_end(ap);
    return EXIT_USAGE;
}

int parse_days(const char *s, int *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    /* 100 years is more than any certificate of this PKI should live */
    if (errno || end == s || *end || v < 1 || v > 36500)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } verbs[] = {{"init", cmd_init},   {"sign", cmd_sign},       {"verify", cmd_verify},
                 {"issue", cmd_issue}, {"revoke", cmd_revoke},   {"crl", cmd_crl},
                 {"rim", cmd_rim},     {"ek-cert", cmd_ek_cert}, {"verify-ek", cmd_verify_ek}};
    if (argc < 2) {
        pki_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        pki_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("trustme-pki %s\n", TRUSTME_VERSION);
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        if (strcmp(argv[1], verbs[i].name) == 0) {
            /* getopt_long in the verb sees the verb as its argv[0] */
            int r = verbs[i].fn(argc - 1, argv + 1);
            fflush(stdout);
            return r;
        }
    fprintf(stderr, "trustme-pki: unknown verb \"%s\" (see trustme-pki --help)\n", argv[1]);
    return EXIT_USAGE;
}
