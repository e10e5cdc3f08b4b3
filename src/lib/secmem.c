/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "secmem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <unistd.h>

/* The largest is a vTPM's TPM state in the clear (libtpms's NVRAM: some KiB, at most about 150). */
#define SECRET_MAX (1024 * 1024)

int secure_random(void *buf, size_t len, tm_err *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tm_err_sys(err, "getrandom");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int secret_new(size_t len, struct secret **ret, tm_err *err)
{
    if (len == 0 || len > SECRET_MAX)
        return tm_err_set(err, EINVAL, "secret of %zu bytes: allowed 1..%d", len, SECRET_MAX);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t map_len = (len + sizeof(struct secret) + page - 1) / page * page;
    void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return tm_err_sys(err, "cannot map memory for a secret");
    if (mlock(map, map_len) < 0) {
        int r = tm_err_sys(err, "cannot lock memory for a secret (RLIMIT_MEMLOCK?)");
        munmap(map, map_len);
        return r;
    }
    /* Best effort: a kernel without these still keeps the memory locked. */
    (void)madvise(map, map_len, MADV_DONTDUMP);
    (void)madvise(map, map_len, MADV_WIPEONFORK);
    /* The header lives in the same locked page, so one mapping is the whole object. */
    struct secret *s = map;
    s->data = (uint8_t *)map + sizeof(struct secret);
    s->len = len;
    s->map_len = map_len;
    *ret = s;
    return 0;
}

int secret_random(size_t len, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_new(len, &s, err);
    if (r < 0 || (r = secure_random(s->data, len, err)) < 0)
        return r;
    *ret = steal_ptr(s);
    return 0;
}

void secret_free(struct secret *s)
{
    if (!s)
        return;
    size_t map_len = s->map_len;
    explicit_bzero(s, map_len);
    munlock(s, map_len);
    munmap(s, map_len);
}

void secmem_no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);
    (void)prctl(PR_SET_DUMPABLE, 0);
}
