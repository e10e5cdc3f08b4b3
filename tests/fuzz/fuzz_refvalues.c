/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The reference-values parser (src/verify/refvalues.c): strict JSON from a file the verifier
 * reads only after its signature verified, fuzzed anyway since the parser runs on whatever a
 * signer produced. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "refvalues.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct refvalues *r = NULL;
    tm_err err = {0};
    if (refvalues_parse((const char *)data, size, &r, &err) == 0) {
        uint8_t h[32] = {0};
        for (size_t i = 0; i < r->n; i++)
            if (!refvalues_contains(r, r->v[i].type, r->v[i].sha256))
                abort();
        (void)refvalues_contains(r, "binary", h);
        refvalues_free(r);
    } else if (r || !err.msg[0]) {
        abort();
    }
    return 0;
}
