/* Reading certificates, writing files atomically. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cleanup.h"
#include "fileio.h"
#include "pki.h"

int pem_read_cert(const char *path, X509 **ret, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    if (!x)
        return ossl_fail(err, EINVAL, "%s holds no PEM certificate", path);
    *ret = x;
    return 0;
}

int pem_write_cert(BIO *bio, X509 *x, tm_err *err)
{
    if (PEM_write_bio_X509(bio, x) != 1)
        return ossl_fail(err, ENOMEM, "cannot encode a certificate");
    return 0;
}

int bio_write_atomic(BIO *bio, const char *path, mode_t mode, tm_err *err)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    if (len < 0)
        return tm_err_set(err, EIO, "%s: nothing to write", path);
    return write_file_atomic(path, data, (size_t)len, mode, err);
}
