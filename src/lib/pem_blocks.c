/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "pem_blocks.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cleanup.h"

static inline void osslfreep(unsigned char **p)
{
    OPENSSL_free(*p);
}
static inline void osslstrfreep(char **p)
{
    OPENSSL_free(*p);
}

int tm_pem_each_block(BIO *in, int max, tm_pem_block_fn fn, void *userdata, tm_err *err)
{
    for (int i = 0;; i++) {
        _cleanup_(osslstrfreep) char *name = NULL, *header = NULL;
        _cleanup_(osslfreep) unsigned char *data = NULL;
        long n = 0;
        if (PEM_read_bio(in, &name, &header, &data, &n) != 1) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            /* the end: no further block, only text */
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                return 0;
            return tm_err_set(err, EINVAL, "PEM block %d does not parse", i + 1);
        }
        if (i >= max)
            return tm_err_set(err, EINVAL, "more than %d PEM blocks", max);
        int r = fn(name, &data, n, userdata, err);
        if (r < 0)
            return r;
    }
}
