/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "verify_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

struct pem_entry {
    uint8_t hash[32];
    enum vcache_kind kind; /* 0: free */
    STACK_OF(X509) * certs;
    STACK_OF(X509_CRL) * crls;
    uint64_t used;
};

struct chain_entry {
    uint8_t key[96];
    bool set;
    time_t lo, hi;
    struct vcache_chain c;
    uint64_t used;
};

struct sig_entry {
    uint8_t key[96];
    enum verify_alg alg; /* 0: free */
    uint64_t used;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pem_entry pems[VCACHE_PEM_ENTRIES];
static struct chain_entry chains[VCACHE_CHAIN_ENTRIES];
static struct sig_entry sigs[VCACHE_SIG_ENTRIES];
static uint64_t tick;
static struct vcache_stats stats;

static STACK_OF(X509_CRL) * crl_stack_up_ref(STACK_OF(X509_CRL) * sk)
{
    STACK_OF(X509_CRL) *out = sk_X509_CRL_dup(sk);
    for (int i = 0; out && i < sk_X509_CRL_num(out); i++)
        X509_CRL_up_ref(sk_X509_CRL_value(out, i));
    return out;
}

static void pem_entry_clear(struct pem_entry *e)
{
    if (e->certs)
        sk_X509_pop_free(e->certs, X509_free);
    if (e->crls)
        sk_X509_CRL_pop_free(e->crls, X509_CRL_free);
    memset(e, 0, sizeof(*e));
}

static struct pem_entry *pem_find(const uint8_t hash[32], enum vcache_kind kind)
{
    for (size_t i = 0; i < VCACHE_PEM_ENTRIES; i++)
        if (pems[i].kind == kind && memcmp(pems[i].hash, hash, 32) == 0) {
            pems[i].used = ++tick;
            stats.pem_hits++;
            return &pems[i];
        }
    stats.pem_misses++;
    return NULL;
}

/* A free entry, or the least recently used one emptied. */
static struct pem_entry *pem_slot(void)
{
    struct pem_entry *oldest = &pems[0];
    for (size_t i = 0; i < VCACHE_PEM_ENTRIES; i++) {
        if (!pems[i].kind)
            return &pems[i];
        if (pems[i].used < oldest->used)
            oldest = &pems[i];
    }
    pem_entry_clear(oldest);
    return oldest;
}

int vcache_certs_get(const uint8_t hash[32], STACK_OF(X509) * *ret)
{
    pthread_mutex_lock(&lock);
    struct pem_entry *e = pem_find(hash, VCACHE_CERTS);
    STACK_OF(X509) *out = e ? X509_chain_up_ref(e->certs) : NULL;
    pthread_mutex_unlock(&lock);
    if (!out)
        return 0;
    *ret = out;
    return 1;
}

int vcache_leaf(const uint8_t hash[32], X509 **ret)
{
    pthread_mutex_lock(&lock);
    struct pem_entry *e = pem_find(hash, VCACHE_CERTS);
    X509 *x = e && sk_X509_num(e->certs) > 0 ? sk_X509_value(e->certs, 0) : NULL;
    if (x && !X509_up_ref(x))
        x = NULL;
    pthread_mutex_unlock(&lock);
    if (!x)
        return 0;
    *ret = x;
    return 1;
}

int vcache_crls_get(const uint8_t hash[32], STACK_OF(X509_CRL) * *ret)
{
    pthread_mutex_lock(&lock);
    struct pem_entry *e = pem_find(hash, VCACHE_CRLS);
    STACK_OF(X509_CRL) *out = e ? crl_stack_up_ref(e->crls) : NULL;
    pthread_mutex_unlock(&lock);
    if (!out)
        return 0;
    *ret = out;
    return 1;
}

void vcache_certs_put(const uint8_t hash[32], STACK_OF(X509) * sk)
{
    STACK_OF(X509) *copy = X509_chain_up_ref(sk);
    if (!copy)
        return; /* not kept: only slower */
    pthread_mutex_lock(&lock);
    struct pem_entry *e = pem_slot();
    memcpy(e->hash, hash, 32);
    e->kind = VCACHE_CERTS;
    e->certs = copy;
    e->used = ++tick;
    pthread_mutex_unlock(&lock);
}

void vcache_crls_put(const uint8_t hash[32], STACK_OF(X509_CRL) * sk)
{
    STACK_OF(X509_CRL) *copy = crl_stack_up_ref(sk);
    if (!copy)
        return;
    pthread_mutex_lock(&lock);
    struct pem_entry *e = pem_slot();
    memcpy(e->hash, hash, 32);
    e->kind = VCACHE_CRLS;
    e->crls = copy;
    e->used = ++tick;
    pthread_mutex_unlock(&lock);
}

static void chain_entry_clear(struct chain_entry *e)
{
    if (e->c.verified)
        sk_X509_pop_free(e->c.verified, X509_free);
    memset(e, 0, sizeof(*e));
}

int vcache_chain_get(const uint8_t key[96], time_t t, struct vcache_chain *out)
{
    int hit = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < VCACHE_CHAIN_ENTRIES; i++) {
        struct chain_entry *e = &chains[i];
        if (!e->set || memcmp(e->key, key, sizeof(e->key)) != 0)
            continue;
        /* Only strictly inside the interval: on a date itself a comparison could go the other
         * way. Elsewhere the entry is stale for this moment, not wrong: verified again. */
        if (e->lo < t && t < e->hi) {
            STACK_OF(X509) *v = X509_chain_up_ref(e->c.verified);
            if (v) {
                *out = e->c;
                out->verified = v;
                e->used = ++tick;
                hit = 1;
            }
        }
        break;
    }
    if (hit)
        stats.chain_hits++;
    else
        stats.chain_misses++;
    pthread_mutex_unlock(&lock);
    return hit;
}

void vcache_chain_put(const uint8_t key[96], time_t lo, time_t hi, const struct vcache_chain *c)
{
    STACK_OF(X509) *v = X509_chain_up_ref(c->verified);
    if (!v)
        return;
    pthread_mutex_lock(&lock);
    struct chain_entry *slot = NULL, *oldest = &chains[0];
    for (size_t i = 0; i < VCACHE_CHAIN_ENTRIES && !slot; i++) {
        if (chains[i].set && memcmp(chains[i].key, key, sizeof(chains[i].key)) == 0)
            slot = &chains[i]; /* the same inputs verified at another moment: replaced */
        else if (!chains[i].set)
            slot = &chains[i];
        else if (chains[i].used < oldest->used)
            oldest = &chains[i];
    }
    if (!slot)
        slot = oldest;
    chain_entry_clear(slot);
    memcpy(slot->key, key, sizeof(slot->key));
    slot->set = true;
    slot->lo = lo;
    slot->hi = hi;
    slot->c = *c;
    slot->c.verified = v;
    slot->used = ++tick;
    pthread_mutex_unlock(&lock);
}

int vcache_sig_get(const uint8_t key[96], enum verify_alg *ret_alg)
{
    int hit = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < VCACHE_SIG_ENTRIES && !hit; i++)
        if (sigs[i].alg && memcmp(sigs[i].key, key, sizeof(sigs[i].key)) == 0) {
            sigs[i].used = ++tick;
            *ret_alg = sigs[i].alg;
            hit = 1;
        }
    if (hit)
        stats.sig_hits++;
    else
        stats.sig_misses++;
    pthread_mutex_unlock(&lock);
    return hit;
}

void vcache_sig_put(const uint8_t key[96], enum verify_alg alg)
{
    pthread_mutex_lock(&lock);
    struct sig_entry *slot = &sigs[0];
    for (size_t i = 0; i < VCACHE_SIG_ENTRIES; i++) {
        if (!sigs[i].alg) {
            slot = &sigs[i];
            break;
        }
        if (sigs[i].used < slot->used)
            slot = &sigs[i];
    }
    memcpy(slot->key, key, sizeof(slot->key));
    slot->alg = alg;
    slot->used = ++tick;
    pthread_mutex_unlock(&lock);
}

/* Narrow (lo, hi) so that it excludes the date d; false if d cannot be read or is t. */
static bool narrow(const ASN1_TIME *d, time_t t, time_t *lo, time_t *hi)
{
    if (!d)
        return true; /* an absent date (a CRL without nextUpdate) is no boundary */
    struct tm tm;
    if (ASN1_TIME_to_tm(d, &tm) != 1)
        return false;
    /* Whole seconds: a date with a fraction lies between b and b + 1, and t (whole seconds)
     * compares with it as with b unless t == b, which is refused. */
    time_t b = timegm(&tm);
    if (b == (time_t)-1 || b == t) /* -1: not representable (or 1969-12-31T23:59:59Z): not kept */
        return false;
    if (b < t && b > *lo)
        *lo = b;
    if (b > t && b < *hi)
        *hi = b;
    return true;
}

bool vcache_interval(const STACK_OF(X509) *const *certs, size_t ncerts, const STACK_OF(X509_CRL) * crls, time_t t,
                     time_t *ret_lo, time_t *ret_hi)
{
    time_t lo = INT64_MIN, hi = INT64_MAX;
    for (size_t s = 0; s < ncerts; s++)
        for (int i = 0; certs[s] && i < sk_X509_num(certs[s]); i++) {
            const X509 *x = sk_X509_value(certs[s], i);
            if (!narrow(X509_get0_notBefore(x), t, &lo, &hi) || !narrow(X509_get0_notAfter(x), t, &lo, &hi))
                return false;
        }
    for (int i = 0; crls && i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *c = sk_X509_CRL_value(crls, i);
        if (!narrow(X509_CRL_get0_lastUpdate(c), t, &lo, &hi) || !narrow(X509_CRL_get0_nextUpdate(c), t, &lo, &hi))
            return false;
        STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(c);
        for (int k = 0; rev && k < sk_X509_REVOKED_num(rev); k++)
            if (!narrow(X509_REVOKED_get0_revocationDate(sk_X509_REVOKED_value(rev, k)), t, &lo, &hi))
                return false;
    }
    *ret_lo = lo;
    *ret_hi = hi;
    return true;
}

void vcache_stats(struct vcache_stats *ret)
{
    pthread_mutex_lock(&lock);
    *ret = stats;
    pthread_mutex_unlock(&lock);
}

void vcache_flush(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < VCACHE_PEM_ENTRIES; i++)
        pem_entry_clear(&pems[i]);
    for (size_t i = 0; i < VCACHE_CHAIN_ENTRIES; i++)
        chain_entry_clear(&chains[i]);
    memset(sigs, 0, sizeof(sigs));
    stats = (struct vcache_stats){0};
    pthread_mutex_unlock(&lock);
}
