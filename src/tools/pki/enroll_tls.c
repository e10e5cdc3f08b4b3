/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A device's TLS client key on the Device CA's side (docs/FLEET.md "Device identity on the
 * wire"): `trustme device csr --tls`'s bundle proves, on the word of an AK this Device CA
 * certified, that the requested key was made in that AK's TPM and cannot leave it. */
#include <errno.h>

#include "certified_key.h"
#include "enrollment.h"
#include "pki.h"

static const struct certified_key_format tls_format = {
    .public_label = ENROLL_PEM_TLS_PUBLIC,
    .attest_label = ENROLL_PEM_TLS_CERTIFY,
    .sig_label = ENROLL_PEM_TLS_CERTIFY_SIG,
    .qualify_whole_request = false,
    .not_a_bundle = "not a TLS key bundle (`trustme device csr --tls`: the request, the key's public area, the AK's "
                    "certification of it and the AK certificate): no proof that the key lives in a TPM",
};

int enroll_tls_read(const char *path, X509 *device_ca, X509_REQ **ret, tm_err *err)
{
    TPMT_PUBLIC pub;
    _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
    int r = certified_key_read(path, &tls_format, device_ca, &req, &pub, err);
    if (r < 0)
        return r;
    /* The key: made in the TPM, never outside it, signing only; not restricted (TLS needs a
     * signature over any digest). */
    const TPMA_OBJECT need =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_SIGN_ENCRYPT;
    if ((pub.objectAttributes & need) != need ||
        (pub.objectAttributes & (TPMA_OBJECT_DECRYPT | TPMA_OBJECT_RESTRICTED)))
        return tm_err_set(err, EKEYREJECTED,
                          "%s: the TLS key's attributes (0x%08x) are not fixedTPM fixedParent sensitiveDataOrigin "
                          "sign (not restricted, not decrypt) on ECC P-256",
                          path, pub.objectAttributes);
    *ret = steal_ptr(req);
    return 0;
}
