/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The options trustme-verify and `trustme attest` share, defined once (docs/ATTESTATION.md):
 * what the verifier trusts (the roots and CAs of each role, the CRLs), the signed reference
 * values, the PCRs to quote and the report's form. trustme-verify's getopt table and --help,
 * the CLI's verb table (src/cli/verbs.c, and from it its --help, man page and completions) are
 * all made from this list, and attest_opts.c parses the values for both: the two programs
 * cannot drift apart. No includes: the CLI's documentation generator, a build-machine program,
 * reads it too. */
#pragma once

/* X(ID, long name, value name (NULL: a flag), help (NULL: hidden, kept to explain a refusal)) */
#define ATTEST_OPTIONS(X)                                                                                  \
    X(AK_ANCHOR, "ak-anchor", "ROOT.pem", "the root of AK certificates (the Customer root)")               \
    X(DEVICE_CA, "device-ca", "CA.pem",                                                                    \
      "the CA that issues AK certificates (the Device CA): an AK certificate of another CA "               \
      "under the root fails")                                                                              \
    X(RIM_ANCHOR, "rim-anchor", "ROOT.pem", "the root of the reference values' signer (Software Signing)") \
    X(RIM_CA, "rim-ca", "CA.pem", "the CA that issues their signer (the Software Signing sub-CA)")         \
    X(CRL, "crl", "CRL.pem", "CRLs: every CA of both chains needs one (the PKI's crls.pem)")               \
    X(NO_CRL, "no-crl", NULL, "check nothing for revocation (required without --crl)")                     \
    X(REFERENCE, "reference", "REFS.json",                                                                 \
      "signed reference values (REFS.json.sig, REFS.json.chain.pem): the approved hashes, the "            \
      "PCRs to quote, the required events (required)")                                                     \
    X(MIN_VERSION, "min-version", "N", "refuse reference values whose rim_version is below N")             \
    X(PCR, "pcr", "N",                                                                                     \
      "quote PCR N (0..23) instead of the reference values' PCRs; events on other PCRs are then "          \
      "not checked")                                                                                       \
    X(JSON, "json", NULL,                                                                                  \
      "print the report as JSON: {\"verdict\", \"checks\": [{\"name\", \"ok\", \"detail\"}], "             \
      "\"events\", \"clock\"}")                                                                            \
    X(ANCHOR, "anchor", "ROOT.pem", NULL)

/* The first ATTEST_LISTS options are lists of files: repeatable, each value one more file. */
enum attest_option {
#define ATTEST_OPTION_ENUM(id, name, value, help) ATTEST_OPT_##id,
    ATTEST_OPTIONS(ATTEST_OPTION_ENUM)
#undef ATTEST_OPTION_ENUM
        ATTEST_OPTS
};
#define ATTEST_LISTS (ATTEST_OPT_CRL + 1)
/* --pcr is repeatable too; the others take their last value. */
#define ATTEST_OPTION_REPEATABLE(o) ((o) < ATTEST_LISTS || (o) == ATTEST_OPT_PCR)
