/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "secmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <unistd.h>

/* The largest is a vTPM's TPM state in the clear (libtpms's NVRAM: some KiB, at most about 150). */
#define SECRET_MAX (1024 * 1024)

/* Freed mappings kept for the next secret_new of the same size: wiped, still locked, still
 * excluded from dumps and wiped in a forked child. A request to tpmd or scd allocates and frees
 * a few packet buffers each (packet.c), and six system calls per buffer (mmap, mlock, two
 * madvise, munlock, munmap, each munmap a TLB flush) were most of tpmd's calls per request. Only
 * small mappings, a few of them: what stays locked is bounded (CACHE_SLOTS * CACHE_MAP_MAX). */
#define CACHE_SLOTS 8
#define CACHE_MAP_MAX (16 * 1024)

static struct {
    pthread_mutex_t lock;
    pid_t owner; /* a forked child inherits the slots unlocked and zeroed: it must not use them */
    size_t n;
    struct secret *slot[CACHE_SLOTS];
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* With cache.lock held: forget the slots if they are a parent's (mlock is not inherited). */
static void cache_check_owner(void)
{
    pid_t self = getpid();
    if (cache.owner != self) {
        cache.owner = self;
        cache.n = 0;
    }
}

static struct secret *cache_take(size_t map_len)
{
    struct secret *s = NULL;
    pthread_mutex_lock(&cache.lock);
    cache_check_owner();
    for (size_t i = cache.n; i-- > 0;)
        if (cache.slot[i]->map_len == map_len) {
            s = cache.slot[i];
            cache.slot[i] = cache.slot[--cache.n];
            break;
        }
    pthread_mutex_unlock(&cache.lock);
    return s;
}

/* Keep s (wiped already, map_len in its header) if there is room. */
static bool cache_put(struct secret *s)
{
    bool kept = false;
    pthread_mutex_lock(&cache.lock);
    cache_check_owner();
    /* map_len 0: a parent's secret freed in a forked child (its pages were wiped at the fork and
     * are not locked here): not for reuse. */
    if (s->map_len > 0 && s->map_len <= CACHE_MAP_MAX && cache.n < CACHE_SLOTS) {
        cache.slot[cache.n++] = s;
        kept = true;
    }
    pthread_mutex_unlock(&cache.lock);
    return kept;
}

/* Unlock and unmap every kept mapping (their lock budget is needed for a new one). */
static void cache_flush(void)
{
    pthread_mutex_lock(&cache.lock);
    cache_check_owner();
    while (cache.n > 0) {
        struct secret *s = cache.slot[--cache.n];
        size_t map_len = s->map_len;
        munlock(s, map_len);
        munmap(s, map_len);
    }
    pthread_mutex_unlock(&cache.lock);
}

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
    struct secret *kept = cache_take(map_len);
    if (kept) {
        /* Wiped in full when it was freed: zero, as a fresh mapping. */
        kept->data = (uint8_t *)kept + sizeof(struct secret);
        kept->len = len;
        kept->map_len = map_len;
        *ret = kept;
        return 0;
    }
    void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return tm_err_sys(err, "cannot map memory for a secret");
    if (mlock(map, map_len) < 0) {
        /* The kept mappings may hold the lock budget: give it back and try once more. */
        cache_flush();
        if (mlock(map, map_len) < 0) {
            int r = tm_err_sys(err, "cannot lock memory for a secret (RLIMIT_MEMLOCK?)");
            munmap(map, map_len);
            return r;
        }
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
    if (map_len == 0)
        return; /* a parent's secret in a forked child: zero pages, WIPEONFORK did the wiping */
    explicit_bzero(s, map_len);
    /* The header again, so that the kept mapping knows its size (nothing secret in it). */
    s->map_len = map_len;
    if (cache_put(s))
        return;
    munlock(s, map_len);
    munmap(s, map_len);
}

void secmem_no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);
    (void)prctl(PR_SET_DUMPABLE, 0);
}
