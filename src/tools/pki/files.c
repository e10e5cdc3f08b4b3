/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reading certificates, writing files atomically. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
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

/* A new file (never an existing one) in dirfd holding what mem holds, synced. */
int pki_write_new(int dirfd, const char *name, BIO *mem, mode_t mode, tm_err *err)
{
    char *data;
    long len = BIO_get_mem_data(mem, &data);
    _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return tm_err_sys(err, "cannot create %s", name);
    for (long off = 0; off < len;) {
        ssize_t n = write(fd, data + off, (size_t)(len - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "cannot write %s", name);
        off += n;
    }
    if (fsync(fd) < 0)
        return tm_err_sys(err, "cannot fsync %s", name);
    return 0;
}
