/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-sstore-tool: one store, driven from the command line, anchored through a tpmd link
 * that the caller holds (fd --tpmd-fd). For the tests and the benchmark; not installed.
 *
 *   trustme-sstore-tool --dir D --store ID --key-file F --tpmd-fd N COMMAND ...
 *     commit [+ID=VALUE | !ID=VALUE | -ID]...   one transaction: put, create, delete
 *     get ID | list | status | verify
 *     tp-write ID VALUE | tp-read ID | tp-delete ID
 *     wipe                   remove the directory and the store's anchor (tamper-proof objects stay)
 *     batch DIR2 STORE2 KEYFILE2 [+ID=VALUE | -ID]...
 *                            the same changes to this store and a second one, in one batch
 *                            (one anchor update for both)
 *     serve                  framed proto/sstore.proto Requests on stdin, Responses on stdout
 *     bench N SIZE PLAINDIR [K]
 *                            N commits of one SIZE-byte object (into K stores as one batch)
 *                            vs the same write to K plain files with fsync and rename in
 *                            PLAINDIR, interleaved; JSON lines
 * A refusal (tamper, rollback) is printed as "sstore.refused: <errno name>: <why>" on stderr,
 * as a host would audit it. Exit 0 on success, 1 on failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "hex.h"
#include "sstore.h"
#include "sstore_serve.h"

static void report(void *ctx, const char *store_id, int code, const char *msg)
{
    fprintf(stderr, "sstore.refused: %s: store %s: %s\n", strerrorname_np(code) ? strerrorname_np(code) : "?", store_id,
            msg);
}

static int die(const tm_err *err)
{
    fprintf(stderr, "trustme-sstore-tool: %s (%s)\n", err->msg, strerrorname_np(err->code) ?: "?");
    return 1;
}

static int add_changes(struct sstore_txn *t, int argc, char **argv, tm_err *err)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        char id[SSTORE_ID_MAX + 2];
        int r;
        if (a[0] == '-')
            r = sstore_txn_delete(t, a + 1, err);
        else if ((a[0] == '+' || a[0] == '!') && eq && (size_t)(eq - a) <= sizeof(id) - 1) {
            snprintf(id, sizeof(id), "%.*s", (int)(eq - a - 1), a + 1);
            r = sstore_txn_put(t, id, (const uint8_t *)eq + 1, strlen(eq + 1), a[0] == '!', err);
        } else
            r = tm_err_set(err, EINVAL, "+ID=VALUE, !ID=VALUE or -ID, not %s", a);
        if (r < 0)
            return r;
    }
    return 0;
}

static int cmd_commit(struct sstore *s, int argc, char **argv)
{
    tm_err err = {0};
    struct sstore_txn *t = NULL;
    int r = sstore_txn_new(s, &t, &err);
    if (r >= 0)
        r = add_changes(t, argc, argv, &err);
    if (r < 0) {
        sstore_txn_free(t);
        return die(&err);
    }
    uint64_t v;
    if (sstore_commit(t, &v, &err) < 0)
        return die(&err);
    printf("version %llu\n", (unsigned long long)v);
    return 0;
}

static int cmd_batch(struct sstore *s, const struct sstore_anchor_ops *anchor, int argc, char **argv)
{
    tm_err err = {0};
    if (argc < 3)
        return tm_err_set(&err, EINVAL, "batch: DIR2 STORE2 KEYFILE2 CHANGES..."), die(&err);
    _cleanup_free_ char *key = NULL;
    size_t key_len = 0;
    struct sstore *s2 = NULL;
    if (read_file(argv[2], SSTORE_KEY_MAX, &key, &key_len, &err) < 0 ||
        sstore_open(argv[0], argv[1], (const uint8_t *)key, key_len, anchor, report, NULL, &s2, &err) < 0)
        return die(&err);
    struct sstore_txn *t[2] = {NULL, NULL};
    int r = 0;
    if ((r = sstore_txn_new(s, &t[0], &err)) < 0 || (r = sstore_txn_new(s2, &t[1], &err)) < 0 ||
        (r = add_changes(t[0], argc - 3, argv + 3, &err)) < 0 ||
        (r = add_changes(t[1], argc - 3, argv + 3, &err)) < 0) {
        sstore_txn_free(t[0]);
        sstore_txn_free(t[1]);
    } else {
        r = sstore_commit_batch(t, 2, &err);
    }
    sstore_close(s2);
    return r < 0 ? die(&err) : 0;
}

static int cmd_status(struct sstore *s)
{
    struct sstore_status st;
    char root[65];
    sstore_get_status(s, &st);
    tm_hex(st.root, 32, root);
    printf("version %llu\nobjects %zu\ntamper_proof %zu\nroot %s\n", (unsigned long long)st.version, st.objects,
           st.tp_objects, root);
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, (const char *)p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = read(fd, (char *)p + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static int cmd_serve(struct sstore *s)
{
    for (;;) {
        uint8_t hdr[4];
        if (read_all(0, hdr, 4) < 0)
            return 0;
        uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (len > 2u * SSTORE_OBJECT_MAX)
            return 1;
        _cleanup_free_ uint8_t *in = malloc(len ? len : 1);
        if (!in || read_all(0, in, len) < 0)
            return 1;
        Trustme__Sstore__Request *req = trustme__sstore__request__unpack(NULL, len, in);
        Trustme__Sstore__Response resp;
        sstore_serve(s, req, &resp);
        trustme__sstore__request__free_unpacked(req, NULL);
        size_t olen = trustme__sstore__response__get_packed_size(&resp);
        _cleanup_free_ uint8_t *out = malloc(olen + 4);
        if (!out)
            return 1;
        out[0] = (uint8_t)(olen >> 24), out[1] = (uint8_t)(olen >> 16), out[2] = (uint8_t)(olen >> 8);
        out[3] = (uint8_t)olen;
        trustme__sstore__response__pack(&resp, out + 4);
        sstore_response_clear(&resp);
        if (write_all(1, out, olen + 4) < 0)
            return 1;
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The baseline: what an application does to replace a file safely. */
static int plain_write(const char *dir, const uint8_t *data, size_t len, tm_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/object", dir);
    return write_file_atomic(path, data, len, 0600, err);
}

/* The bench's anchor: tpmd's, timed, so that the report can split a commit into the store's own
 * share and the anchor update's. */
static struct sstore_anchor_ops bench_inner;
static double bench_anchor_ms;

static int bench_set(void *ctx, const struct sstore_anchor_entry *e, size_t n, tm_err *err)
{
    double t0 = now_ms();
    int r = bench_inner.set(bench_inner.ctx, e, n, err);
    bench_anchor_ms += now_ms() - t0;
    return r;
}

/* N rounds; each commits one SIZE-byte object into each of K stores (this one and K-1 more in
 * <dir>-bK, with the same key) as one batch (one anchor update), then writes the same bytes to
 * K plain files with fsync and rename. Times per round, both sides interleaved so that they
 * see the same disk and the same load. */
static int cmd_bench(struct sstore *s, int n, size_t size, const char *plain_dir, int k, const char *dir,
                     const uint8_t *key, size_t key_len, const struct sstore_anchor_ops *anchor)
{
    tm_err err = {0};
    struct sstore *st[64] = {s};
    _cleanup_free_ uint8_t *data = malloc(size ? size : 1);
    if (!data || k < 1 || k > 64)
        return 1;
    for (int j = 1; j < k; j++) {
        char d[4096], id[64];
        snprintf(d, sizeof(d), "%s-b%d", dir, j);
        snprintf(id, sizeof(id), "bench-batch-%d-%zu", j, size);
        if (sstore_open(d, id, key, key_len, anchor, report, NULL, &st[j], &err) < 0)
            return die(&err);
    }
    memset(data, 0xa5, size);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        data[0] = (uint8_t)i;
        struct sstore_txn *t[64] = {NULL};
        double t0 = now_ms();
        for (int j = 0; j < k && rc == 0; j++)
            if (sstore_txn_new(st[j], &t[j], &err) < 0 || sstore_txn_put(t[j], "bench", data, size, false, &err) < 0)
                rc = die(&err);
        if (rc == 0 && sstore_commit_batch(t, (size_t)k, &err) < 0)
            rc = die(&err);
        double t1 = now_ms(), anchor_ms = bench_anchor_ms;
        bench_anchor_ms = 0;
        for (int j = 0; j < k && rc == 0; j++) {
            char pd[4096];
            snprintf(pd, sizeof(pd), "%s/%d", plain_dir, j);
            if (mkdir(pd, 0700) < 0 && errno != EEXIST)
                rc = 1;
            else if (plain_write(pd, data, size, &err) < 0)
                rc = die(&err);
        }
        double t2 = now_ms();
        printf("{\"i\":%d,\"size\":%zu,\"batch\":%d,\"sstore_ms\":%.3f,\"anchor_ms\":%.3f,\"plain_ms\":%.3f}\n", i,
               size, k, t1 - t0, anchor_ms, t2 - t1);
    }
    for (int j = 1; j < k; j++)
        sstore_close(st[j]);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *store = NULL, *key_file = NULL;
    int tpmd_fd = -1, i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--store") == 0)
            store = argv[i + 1];
        else if (strcmp(argv[i], "--key-file") == 0)
            key_file = argv[i + 1];
        else if (strcmp(argv[i], "--tpmd-fd") == 0)
            tpmd_fd = atoi(argv[i + 1]);
        else
            break;
    }
    if (!dir || !store || !key_file || tpmd_fd < 0 || i >= argc) {
        fprintf(stderr, "usage: trustme-sstore-tool --dir D --store ID --key-file F --tpmd-fd N COMMAND ...\n");
        return 2;
    }
    const char *cmd = argv[i++];
    tm_err err = {0};
    _cleanup_free_ char *key = NULL;
    size_t key_len = 0;
    if (read_file(key_file, SSTORE_KEY_MAX, &key, &key_len, &err) < 0)
        return die(&err);
    struct sstore_anchor_ops anchor;
    sstore_anchor_tpmd_fd(tpmd_fd, &anchor);
    if (strcmp(cmd, "bench") == 0) {
        bench_inner = anchor;
        anchor.set = bench_set;
    }

    if (strcmp(cmd, "wipe") == 0) {
        struct sstore_anchor_entry e = {.remove = true};
        if (sstore_anchor_name(store, e.name, &err) < 0 || anchor.set(anchor.ctx, &e, 1, &err) < 0)
            return die(&err);
        rm_rf(dir);
        return 0;
    }
    struct sstore *s = NULL;
    if (sstore_open(dir, store, (const uint8_t *)key, key_len, &anchor, report, NULL, &s, &err) < 0)
        return die(&err);
    uint8_t bench_key[SSTORE_KEY_MAX];
    size_t bench_key_len = key_len;
    memcpy(bench_key, key, key_len);
    explicit_bzero(key, key_len);
    int rc = 0;
    if (strcmp(cmd, "commit") == 0) {
        rc = cmd_commit(s, argc - i, argv + i);
    } else if (strcmp(cmd, "get") == 0 && i < argc) {
        uint8_t *d = NULL;
        size_t len;
        uint64_t v;
        if (sstore_read(s, argv[i], &d, &len, &v, &err) < 0)
            rc = die(&err);
        else
            fwrite(d, 1, len, stdout);
        free(d);
    } else if (strcmp(cmd, "list") == 0) {
        struct sstore_object_info *o = NULL;
        size_t n = 0;
        if (sstore_list(s, &o, &n, &err) < 0)
            rc = die(&err);
        for (size_t k = 0; k < n; k++)
            printf("%s %llu %u\n", o[k].id, (unsigned long long)o[k].version, o[k].size);
        free(o);
    } else if (strcmp(cmd, "status") == 0) {
        rc = cmd_status(s);
    } else if (strcmp(cmd, "verify") == 0) {
        rc = sstore_verify(s, &err) < 0 ? die(&err) : 0;
    } else if (strcmp(cmd, "tp-write") == 0 && i + 1 < argc) {
        rc = sstore_tp_write(s, argv[i], (const uint8_t *)argv[i + 1], strlen(argv[i + 1]), &err) < 0 ? die(&err) : 0;
    } else if (strcmp(cmd, "tp-read") == 0 && i < argc) {
        uint8_t d[SSTORE_TP_DATA_MAX];
        size_t len;
        if (sstore_tp_read(s, argv[i], d, &len, &err) < 0)
            rc = die(&err);
        else
            fwrite(d, 1, len, stdout);
    } else if (strcmp(cmd, "tp-delete") == 0 && i < argc) {
        rc = sstore_tp_delete(s, argv[i], &err) < 0 ? die(&err) : 0;
    } else if (strcmp(cmd, "batch") == 0) {
        rc = cmd_batch(s, &anchor, argc - i, argv + i);
    } else if (strcmp(cmd, "serve") == 0) {
        rc = cmd_serve(s);
    } else if (strcmp(cmd, "bench") == 0 && i + 2 < argc) {
        rc = cmd_bench(s, atoi(argv[i]), (size_t)atol(argv[i + 1]), argv[i + 2], i + 3 < argc ? atoi(argv[i + 3]) : 1,
                       dir, bench_key, bench_key_len, &anchor);
    } else {
        fprintf(stderr, "trustme-sstore-tool: unknown command or missing arguments: %s\n", cmd);
        rc = 2;
    }
    sstore_close(s);
    return rc;
}
