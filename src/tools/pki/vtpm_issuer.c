/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The Device CA's check of a vTPM-issuing key's request (docs/VTPM.md "EK certificates"): the
 * key is certified only when the device's AK, which this Device CA certified through credential
 * activation, vouches (TPM2_Certify) that it is a TPM key that cannot leave the TPM, made for
 * signing and nothing else, and that it is this request's key. */
#include <errno.h>

#include "certified_key.h"
#include "enrollment.h"
#include "pki.h"

#define ISSUER_ATTRIBUTES                                                                                          \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
     TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT)

static const struct certified_key_format issuer_format = {
    .public_label = VTPM_ISSUER_PEM_PUBLIC,
    .attest_label = VTPM_ISSUER_PEM_ATTEST,
    .sig_label = VTPM_ISSUER_PEM_SIGNATURE,
    .qualify_whole_request = true,
    .not_a_bundle = "not a vTPM-issuer request (`trustme device csr --vtpm-issuer`: the request, the key's public "
                    "area, its certification by the AK and the AK's certificate)",
};

int vtpm_issuer_check(const char *path, X509 *device_ca, X509_REQ **ret_req, tm_err *err)
{
    TPMT_PUBLIC p;
    _cleanup_(X509_REQ_freep) X509_REQ *req = NULL;
    int r = certified_key_read(path, &issuer_format, device_ca, &req, &p, err);
    if (r < 0)
        return r;
    if (p.objectAttributes != ISSUER_ATTRIBUTES || p.authPolicy.size != 0)
        return tm_err_set(err, EKEYREJECTED,
                          "%s: the issuing key's attributes (0x%08x, %s policy) are not those of a key that cannot "
                          "leave its TPM and only signs (fixedTPM fixedParent sensitiveDataOrigin userWithAuth "
                          "noDA sign, no policy)",
                          path, p.objectAttributes, p.authPolicy.size ? "a" : "no");
    *ret_req = steal_ptr(req);
    return 0;
}
