/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The sealed device storage secret and the anchor table of trustme-tpmd, against a real swtpm
 * this test starts in a private directory (and kills, and removes, in the group teardown, also
 * after a failed assertion). Covers: create and unseal, a changed boot PCR refused, reseal with a
 * wrong and the right recovery key, corrupt blobs, persistence across an swtpm restart, the
 * anchor table; after every call no transient object or session is left loaded.
 * Skipped, with the reason printed, only when swtpm is not installed. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include "anchor.h"
#include "fileio.h"
#include "seal.h"
#include "secmem.h"

#define PCR 16 /* the debug PCR: resettable at locality 0, so each test starts from zeros */

#define assert_rc(expr, want, err)                                                     \
    do {                                                                               \
        int rc_ = (expr);                                                              \
        if (rc_ != (want)) {                                                           \
            print_error("%s returned %d (%s), expected %d; message: %s\n", #expr, rc_, \
                        rc_ < 0 ? strerror(-rc_) : "ok", (want), (err)->msg);          \
            fail();                                                                    \
        }                                                                              \
    } while (0)
#define assert_tss(expr)                                 \
    do {                                                 \
        TSS2_RC trc_ = (expr);                           \
        if (trc_ != TSS2_RC_SUCCESS)                     \
            fail_msg("%s: 0x%x", #expr, (unsigned)trc_); \
    } while (0)

static struct {
    char dir[64];
    char sock[PATH_MAX];
    pid_t swtpm;
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR srk;
    int n; /* data dirs handed out */
} g = {.swtpm = -1, .srk = ESYS_TR_NONE};

static bool have_swtpm;

/* --- swtpm and the ESAPI context --- */

static int run_quiet(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* swtpm runs as our child (not --daemon) with a parent-death signal: it dies with this test
 * even when the test dies before its teardown. */
static int swtpm_start(void)
{
    char server[PATH_MAX + 32], ctrl[PATH_MAX + 32], state[PATH_MAX + 16];
    snprintf(server, sizeof(server), "type=unixio,path=%s", g.sock);
    /* The swtpm TCTI always opens "<path>.ctrl" too. */
    snprintf(ctrl, sizeof(ctrl), "type=unixio,path=%s.ctrl", g.sock);
    snprintf(state, sizeof(state), "dir=%s", g.dir);
    const char *const argv[] = {"swtpm",
                                "socket",
                                "--tpm2",
                                "--server",
                                server,
                                "--ctrl",
                                ctrl,
                                "--tpmstate",
                                state,
                                "--flags",
                                "not-need-init,startup-clear",
                                NULL};
    unlink(g.sock);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        /* It reports every connection (the swtpm TCTI connects per command): to a log. */
        char log[PATH_MAX];
        snprintf(log, sizeof(log), "%s/swtpm.log", g.dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    g.swtpm = pid;
    /* Ready when the server socket accepts a connection. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g.sock);
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (r == 0)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g.swtpm = -1;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

static void swtpm_stop(void)
{
    if (g.swtpm <= 0)
        return;
    kill(g.swtpm, SIGTERM);
    waitpid(g.swtpm, NULL, 0);
    g.swtpm = -1;
}

/* The TCG SRK template, ECC P-256: the key is the same every time for the same owner seed. */
static int connect_tpm(void)
{
    char conf[PATH_MAX + 16];
    snprintf(conf, sizeof(conf), "swtpm:path=%s", g.sock);
    if (Tss2_TctiLdr_Initialize(conf, &g.tcti) != TSS2_RC_SUCCESS ||
        Esys_Initialize(&g.esys, g.tcti, NULL) != TSS2_RC_SUCCESS ||
        Esys_Startup(g.esys, TPM2_SU_CLEAR) != TSS2_RC_SUCCESS)
        return -1;
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_PUBLIC tmpl = {
        .publicArea =
            {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                                    TPMA_OBJECT_DECRYPT,
                .parameters.eccDetail =
                    {
                        .symmetric = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB},
                        .scheme.scheme = TPM2_ALG_NULL,
                        .curveID = TPM2_ECC_NIST_P256,
                        .kdf.scheme = TPM2_ALG_NULL,
                    },
                .unique.ecc = {.x.size = 32, .y.size = 32},
            },
    };
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION none = {0};
    return Esys_CreatePrimary(g.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                              &outside, &none, &g.srk, NULL, NULL, NULL, NULL) == TSS2_RC_SUCCESS
               ? 0
               : -1;
}

static void disconnect_tpm(void)
{
    if (g.esys && g.srk != ESYS_TR_NONE)
        Esys_FlushContext(g.esys, g.srk);
    g.srk = ESYS_TR_NONE;
    if (g.esys)
        Esys_Finalize(&g.esys);
    if (g.tcti)
        Tss2_TctiLdr_Finalize(&g.tcti);
    g.esys = NULL;
    g.tcti = NULL;
}

static int group_setup(void **state)
{
    if (!have_swtpm)
        return 0;
    snprintf(g.dir, sizeof(g.dir), "/tmp/trustme-seal-XXXXXX");
    if (!mkdtemp(g.dir))
        return -1;
    snprintf(g.sock, sizeof(g.sock), "%s/s", g.dir);
    if (swtpm_start() < 0 || connect_tpm() < 0) {
        fprintf(stderr, "cannot start swtpm in %s\n", g.dir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    disconnect_tpm();
    swtpm_stop();
    if (g.dir[0])
        rm_rf(g.dir);
    return 0;
}

/* --- helpers --- */

/* A fresh data dir, and PCR 16 back to zeros. */
static void fresh(char dir[PATH_MAX])
{
    snprintf(dir, PATH_MAX, "%s/data%d", g.dir, g.n++);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_tss(Esys_PCR_Reset(g.esys, ESYS_TR_PCR0 + PCR, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
}

static void extend(const char *what)
{
    TPML_DIGEST_VALUES d = {.count = 1};
    d.digests[0].hashAlg = TPM2_ALG_SHA256;
    SHA256((const unsigned char *)what, strlen(what), d.digests[0].digest.sha256);
    assert_tss(Esys_PCR_Extend(g.esys, ESYS_TR_PCR0 + PCR, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d));
}

static uint32_t handle_count(TPM2_HANDLE first)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    assert_tss(Esys_GetCapability(g.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first,
                                  TPM2_MAX_CAP_HANDLES, NULL, &cap));
    uint32_t n = 0;
    for (uint32_t i = 0; i < cap->data.handles.count; i++)
        if ((cap->data.handles.handle[i] >> TPM2_HR_SHIFT) == (first >> TPM2_HR_SHIFT))
            n++;
    Esys_Free(cap);
    return n;
}

/* Only the SRK stays loaded; every session is flushed. */
static void assert_nothing_loaded(void)
{
    /* not TPM2_TRANSIENT_FIRST: it shifts an int into its sign bit (undefined behaviour) */
    assert_int_equal(handle_count((TPM2_HC)TPM2_HT_TRANSIENT << TPM2_HR_SHIFT), 1);
    assert_int_equal(handle_count(TPM2_LOADED_SESSION_FIRST), 0);
    assert_int_equal(handle_count(TPM2_ACTIVE_SESSION_FIRST), 0);
}

static int get(const char *dir, struct secret **s, bool *created, tm_err *err)
{
    char path[PATH_MAX] = "unset";
    *s = NULL;
    int r = sealed_secret_get(g.esys, g.srk, dir, PCR, s, created, path, sizeof(path), err);
    assert_nothing_loaded();
    if (r < 0) {
        assert_null(*s);
        assert_string_equal(path, "unset"); /* outputs only on success */
    }
    return r;
}

static struct secret *create(const char *dir)
{
    struct secret *s = NULL;
    bool created = false;
    tm_err err = {0};
    assert_rc(get(dir, &s, &created, &err), 0, &err);
    assert_true(created);
    assert_int_equal(s->len, SEALED_SECRET_LEN);
    return s;
}

static struct secret *recovery_key(const char *dir)
{
    char path[PATH_MAX], *text = NULL;
    snprintf(path, sizeof(path), "%s/recovery-key", dir);
    tm_err err = {0};
    assert_rc(read_file(path, 4096, &text, NULL, &err), 0, &err);
    struct secret *k = NULL;
    assert_rc(secret_new(RECOVERY_KEY_LEN, &k, &err), 0, &err);
    assert_int_equal(strlen(text), 2 * RECOVERY_KEY_LEN + 1);
    assert_int_equal(text[2 * RECOVERY_KEY_LEN], '\n');
    for (int i = 0; i < RECOVERY_KEY_LEN; i++) {
        unsigned v;
        assert_int_equal(sscanf(text + 2 * i, "%2x", &v), 1);
        k->data[i] = (uint8_t)v;
    }
    explicit_bzero(text, strlen(text));
    free(text);
    return k;
}

static char *blob_path(const char *dir, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/secret.blob", dir);
    return out;
}

static char *slurp(const char *path, size_t *len)
{
    char *data = NULL;
    tm_err err = {0};
    assert_rc(read_file(path, 1 << 16, &data, len, &err), 0, &err);
    return data;
}

static void put(const char *path, const void *data, size_t len)
{
    tm_err err = {0};
    assert_rc(write_file_atomic(path, data, len, 0600, &err), 0, &err);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* --- the sealed secret --- */

static void create_then_unseal(void **state)
{
    char dir[PATH_MAX], path[PATH_MAX] = "", expect[PATH_MAX];
    fresh(dir);
    assert_false(sealed_secret_exists(dir));
    struct secret *s = NULL, *again = NULL;
    bool created = false;
    tm_err err = {0};
    assert_rc(sealed_secret_get(g.esys, g.srk, dir, PCR, &s, &created, path, sizeof(path), &err), 0, &err);
    assert_nothing_loaded();
    assert_true(created);
    snprintf(expect, sizeof(expect), "%s/recovery-key", dir);
    assert_string_equal(path, expect);
    assert_true(sealed_secret_exists(dir));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0400);
    secret_free(recovery_key(dir));

    assert_rc(sealed_secret_get(g.esys, g.srk, dir, PCR, &again, &created, path, sizeof(path), &err), 0, &err);
    assert_nothing_loaded();
    assert_false(created);
    assert_string_equal(path, "");
    assert_memory_equal(s->data, again->data, SEALED_SECRET_LEN);

    /* A recovery key without a blob (a crash between the two writes) is replaced. */
    char bp[PATH_MAX];
    struct secret *k1 = recovery_key(dir), *fresh_secret = NULL;
    assert_int_equal(unlink(blob_path(dir, bp)), 0);
    assert_rc(sealed_secret_get(g.esys, g.srk, dir, PCR, &fresh_secret, &created, path, sizeof(path), &err), 0, &err);
    assert_true(created);
    struct secret *k2 = recovery_key(dir);
    assert_memory_not_equal(k1->data, k2->data, RECOVERY_KEY_LEN);
    assert_memory_not_equal(s->data, fresh_secret->data, SEALED_SECRET_LEN);
    secret_free(k1);
    secret_free(k2);
    secret_free(fresh_secret);

    /* Two devices (data dirs) never share a secret. */
    char other[PATH_MAX];
    fresh(other);
    struct secret *o = create(other);
    assert_memory_not_equal(s->data, o->data, SEALED_SECRET_LEN);
    secret_free(o);
    secret_free(s);
    secret_free(again);
}

static void other_boot_state_refused(void **state)
{
    char dir[PATH_MAX];
    fresh(dir);
    extend("trustmed v1");
    struct secret *s = create(dir), *t = NULL;
    extend("trustmed v2");
    bool created = true;
    tm_err err = {0};
    assert_rc(get(dir, &t, &created, &err), -EACCES, &err);
    assert_err_contains(&err, "the device storage secret is sealed to another boot state: PCR 16 "
                              "differs from its value when sealed");
    assert_err_contains(&err, "trustme device reseal --recovery-key-file");
    assert_true(created); /* untouched on failure */
    /* Back in the sealed state (reset, same extend): it opens again. */
    assert_tss(Esys_PCR_Reset(g.esys, ESYS_TR_PCR0 + PCR, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
    extend("trustmed v1");
    assert_rc(get(dir, &t, &created, &err), 0, &err);
    assert_memory_equal(s->data, t->data, SEALED_SECRET_LEN);
    secret_free(s);
    secret_free(t);
}

static void reseal_with_wrong_key_changes_nothing(void **state)
{
    char dir[PATH_MAX], bp[PATH_MAX];
    fresh(dir);
    struct secret *s = create(dir), *wrong = NULL, *t = NULL;
    size_t len0, len1;
    char *before = slurp(blob_path(dir, bp), &len0);
    extend("update");
    tm_err err = {0};
    assert_rc(secret_random(RECOVERY_KEY_LEN, &wrong, &err), 0, &err);
    for (int i = 0; i < 5; i++) { /* noda: wrong keys never lock the TPM out */
        assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, wrong, &t, &err), -EACCES, &err);
        assert_string_equal(err.msg, "wrong recovery key");
        assert_null(t);
        assert_nothing_loaded();
    }
    char *after = slurp(bp, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    /* Too short a key is refused before the TPM sees it. */
    struct secret *short_key = NULL;
    assert_rc(secret_random(16, &short_key, &err), 0, &err);
    assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, short_key, &t, &err), -EINVAL, &err);
    /* The right key still works: no lockout. */
    struct secret *k = recovery_key(dir);
    assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, k, &t, &err), 0, &err);
    assert_memory_equal(s->data, t->data, SEALED_SECRET_LEN);
    free(before);
    free(after);
    secret_free(short_key);
    secret_free(wrong);
    secret_free(k);
    secret_free(s);
    secret_free(t);
}

static void reseal_with_recovery_key(void **state)
{
    char dir[PATH_MAX];
    fresh(dir);
    extend("trustmed v1");
    struct secret *s = create(dir), *k = recovery_key(dir), *t = NULL, *u = NULL;
    extend("trustmed v2");
    tm_err err = {0};
    bool created = true;
    assert_rc(get(dir, &t, &created, &err), -EACCES, &err);
    assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, k, &t, &err), 0, &err);
    assert_nothing_loaded();
    assert_memory_equal(s->data, t->data, SEALED_SECRET_LEN);
    secret_free(t);
    t = NULL;
    /* Opens at the new value without the key, created = false, same recovery key. */
    assert_rc(get(dir, &t, &created, &err), 0, &err);
    assert_false(created);
    assert_memory_equal(s->data, t->data, SEALED_SECRET_LEN);
    struct secret *k2 = recovery_key(dir);
    assert_memory_equal(k->data, k2->data, RECOVERY_KEY_LEN);
    /* The same key reseals again (twice in one state is harmless). */
    assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, k, &u, &err), 0, &err);
    assert_memory_equal(s->data, u->data, SEALED_SECRET_LEN);
    secret_free(u);
    u = NULL;
    /* The old state no longer opens it. */
    assert_tss(Esys_PCR_Reset(g.esys, ESYS_TR_PCR0 + PCR, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
    extend("trustmed v1");
    assert_rc(get(dir, &u, &created, &err), -EACCES, &err);
    secret_free(k);
    secret_free(k2);
    secret_free(s);
    secret_free(t);
}

static void corrupt_blobs_refused(void **state)
{
    char dir[PATH_MAX], bp[PATH_MAX];
    fresh(dir);
    secret_free(create(dir));
    size_t len;
    char *good = slurp(blob_path(dir, bp), &len);
    char *bad = malloc(len + 1);
    struct secret *t = NULL;
    bool created;
    tm_err err = {0};

    /* Every single bit flip of every byte position's low bit and high bit. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            memcpy(bad, good, len);
            bad[i] ^= (char)(1 << bit);
            put(bp, bad, len);
            int r = get(dir, &t, &created, &err);
            if (r != -EBADMSG) {
                print_error("flip of bit %d at byte %zu of %zu: %d, %s\n", bit, i, len, r, err.msg);
                fail();
            }
        }
    }
    /* Truncated, lengthened, empty, garbage. */
    put(bp, good, len - 1);
    assert_rc(get(dir, &t, &created, &err), -EBADMSG, &err);
    assert_err_contains(&err, "secret.blob is corrupt");
    memcpy(bad, good, len);
    bad[len] = 0;
    put(bp, bad, len + 1);
    assert_rc(get(dir, &t, &created, &err), -EBADMSG, &err);
    put(bp, "", 0);
    assert_rc(get(dir, &t, &created, &err), -EBADMSG, &err);
    put(bp, "\xff\xff garbage", 10);
    assert_rc(get(dir, &t, &created, &err), -EBADMSG, &err);
    /* A corrupt blob is never replaced by a new secret. */
    assert_true(sealed_secret_exists(dir));

    put(bp, good, len);
    assert_rc(get(dir, &t, &created, &err), 0, &err);
    secret_free(t);
    free(good);
    free(bad);
}

static void bad_arguments(void **state)
{
    char dir[PATH_MAX];
    fresh(dir);
    struct secret *t = NULL, *k = NULL;
    bool created;
    tm_err err = {0};
    assert_rc(sealed_secret_get(g.esys, g.srk, dir, 24, &t, &created, NULL, 0, &err), -EINVAL, &err);
    assert_rc(secret_random(RECOVERY_KEY_LEN, &k, &err), 0, &err);
    assert_rc(sealed_secret_reseal(g.esys, g.srk, dir, PCR, k, &t, &err), -ENOENT, &err);
    assert_err_contains(&err, "there is no sealed device storage secret");
    assert_false(sealed_secret_exists(dir));
    assert_nothing_loaded();
    secret_free(k);
}

/* Not a check: the latencies of the report, printed. */
static void timings(void **state)
{
    char dir[PATH_MAX];
    fresh(dir);
    struct secret *t = NULL, *k = NULL;
    bool created;
    tm_err err = {0};
    enum { N = 20 };
    double create_ms = 0, unseal_ms = 0, reseal_ms = 0;
    for (int i = 0; i < N; i++) {
        char d[PATH_MAX];
        snprintf(d, sizeof(d), "%s/%d", dir, i);
        assert_int_equal(mkdir(d, 0700), 0);
        double t0 = now_ms();
        assert_rc(sealed_secret_get(g.esys, g.srk, d, PCR, &t, &created, NULL, 0, &err), 0, &err);
        create_ms += now_ms() - t0;
        secret_free(t);
        t0 = now_ms();
        assert_rc(sealed_secret_get(g.esys, g.srk, d, PCR, &t, &created, NULL, 0, &err), 0, &err);
        unseal_ms += now_ms() - t0;
        secret_free(t);
        k = recovery_key(d);
        t0 = now_ms();
        assert_rc(sealed_secret_reseal(g.esys, g.srk, d, PCR, k, &t, &err), 0, &err);
        reseal_ms += now_ms() - t0;
        secret_free(t);
        secret_free(k);
    }
    printf("  seal (first get, incl. 2 fsyncs) %.2f ms, unseal (get) %.2f ms, reseal %.2f ms "
           "(mean of %d)\n",
           create_ms / N, unseal_ms / N, reseal_ms / N, N);
}

static void define_nv(uint32_t index, TPMA_NV attrs, uint16_t size, ESYS_TR *tr)
{
    TPM2B_AUTH no_auth = {0};
    TPM2B_NV_PUBLIC pub = {
        .nvPublic = {.nvIndex = index, .nameAlg = TPM2_ALG_SHA256, .attributes = attrs, .dataSize = size}};
    assert_tss(Esys_NV_DefineSpace(g.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &no_auth,
                                   &pub, tr));
}

static void undefine_nv(ESYS_TR *tr)
{
    assert_tss(Esys_NV_UndefineSpace(g.esys, ESYS_TR_RH_OWNER, *tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
    *tr = ESYS_TR_NONE;
}

/* NV and the sealed secret survive an swtpm restart with the same state; the PCRs are reset. */
static void survives_swtpm_restart(void **state)
{
    char dir[PATH_MAX];
    fresh(dir); /* PCR 16 = zeros, its value after a restart */
    struct secret *s = create(dir), *t = NULL;
    tm_err err = {0};
    disconnect_tpm();
    swtpm_stop();
    assert_int_equal(swtpm_start(), 0);
    assert_int_equal(connect_tpm(), 0);
    bool created = true;
    assert_rc(get(dir, &t, &created, &err), 0, &err);
    assert_false(created);
    assert_memory_equal(s->data, t->data, SEALED_SECRET_LEN);
    secret_free(s);
    secret_free(t);
}

/* --- the anchor table --- */

static void anchor_set(const char *dir, struct anchor_table *t, const char *name, const char *value, int want)
{
    tm_err err = {0};
    struct anchor_change c = {
        .name = name, .value = (const uint8_t *)value, .len = value ? strlen(value) : 0, .remove = !value};
    assert_rc(anchor_update(g.esys, dir, t, &c, 1, &err), want, &err);
    assert_nothing_loaded();
}

static void assert_value(const struct anchor_table *t, const char *name, const char *value)
{
    const struct anchor_entry *e = anchor_find(t, name);
    if (!value) {
        assert_null(e);
        return;
    }
    assert_non_null(e);
    assert_int_equal(e->len, strlen(value));
    assert_memory_equal(e->value, value, e->len);
}

static void anchor_reload(const char *dir, struct anchor_table *t, int want, const char *msg)
{
    tm_err err = {0};
    assert_rc(anchor_load(g.esys, dir, t, &err), want, &err);
    if (msg)
        assert_err_contains(&err, msg);
    assert_true(t->loaded == (want == 0));
    assert_nothing_loaded();
}

/* The path of the slot of version v of the table in dir. */
static const char *anchor_slot(const char *dir, uint64_t v, char buf[PATH_MAX])
{
    snprintf(buf, PATH_MAX, "%s/anchor.table.%d", dir, (int)(v % 2));
    return buf;
}

static void assert_same_file(const char *path, const char *data, size_t len)
{
    size_t l;
    char *got = slurp(path, &l);
    assert_int_equal(l, len);
    assert_memory_equal(got, data, len);
    free(got);
}

static void anchor_table(void **state)
{
    char dir[PATH_MAX], other[PATH_MAX], s0[PATH_MAX], s1[PATH_MAX], legacy[PATH_MAX], legacy_new[PATH_MAX];
    fresh(dir);
    fresh(other);
    anchor_slot(dir, 0, s0);
    anchor_slot(dir, 1, s1);
    snprintf(legacy, sizeof(legacy), "%s/anchor.table", dir);
    snprintf(legacy_new, sizeof(legacy_new), "%s/anchor.table.new", dir);
    struct anchor_table t = {0};
    tm_err err = {0};
    /* Nothing anchored yet: an empty table, version 0. */
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 0);
    assert_int_equal(t.n, 0);
    anchor_set(dir, &t, "guestos/core", "\x01", 0);
    anchor_set(dir, &t, "token/abc/tries", "\x02", 0);
    assert_int_equal(t.version, 2);
    /* What a start's Measure.expect compares: exact bytes, or absence. */
    assert_true(anchor_holds(&t, "guestos/core", (const uint8_t *)"\x01", 1, false));
    assert_false(anchor_holds(&t, "guestos/core", (const uint8_t *)"\x02", 1, false));
    assert_false(anchor_holds(&t, "guestos/core", (const uint8_t *)"\x01\x00", 2, false));
    assert_false(anchor_holds(&t, "guestos/core", NULL, 0, true));
    assert_true(anchor_holds(&t, "config/none", NULL, 0, true));
    assert_false(anchor_holds(&t, "config/none", (const uint8_t *)"", 0, false));
    size_t old_len;
    char *old = slurp(s0, &old_len); /* version 2, in slot 0 */
    /* A batch is one version. */
    struct anchor_change batch[] = {{.name = "config/x", .value = (const uint8_t *)"cfg", .len = 3},
                                    {.name = "guestos/core", .remove = true},
                                    {.name = "token/abc/tries", .value = (const uint8_t *)"", .len = 0}};
    assert_rc(anchor_update(g.esys, dir, &t, batch, 3, &err), 0, &err);
    assert_int_equal(t.version, 3);
    assert_value(&t, "config/x", "cfg");
    assert_value(&t, "guestos/core", NULL);
    assert_value(&t, "token/abc/tries", "");
    /* Loaded again: the same. */
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 3);
    assert_value(&t, "config/x", "cfg");
    assert_value(&t, "token/abc/tries", "");
    /* Bad names and values change nothing. */
    anchor_set(dir, &t, "has space", "v", -EINVAL);
    anchor_set(dir, &t, "", "v", -EINVAL);
    char longname[ANCHOR_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    anchor_set(dir, &t, longname, "v", -EINVAL);
    longname[ANCHOR_NAME_MAX] = '\0';
    anchor_set(dir, &t, longname, "v", 0); /* 128 is fine */
    char bigval[ANCHOR_VALUE_MAX + 2];
    memset(bigval, 'v', sizeof(bigval) - 1);
    bigval[sizeof(bigval) - 1] = '\0';
    anchor_set(dir, &t, "x", bigval, -EINVAL);
    assert_int_equal(t.version, 4);
    size_t cur_len, v3_len;
    char *cur = slurp(s0, &cur_len); /* version 4 went into slot 0 in place, over version 2 */
    char *v3 = slurp(s1, &v3_len);
    assert_non_null(strstr(cur, "version 4\n"));
    assert_non_null(strstr(v3, "version 3\n"));
    /* No other file: no temporary file, no .new. */
    assert_int_equal(access(legacy, F_OK), -1);
    assert_int_equal(access(legacy_new, F_OK), -1);

    /* An older table restored (the data dir from version 3: slot 0 back at version 2): refused,
     * and nothing in it believed. */
    put(s0, old, old_len);
    anchor_reload(dir, &t, -ESTALE, "older (claims version 3) than version 4");
    anchor_set(dir, &t, "x", "1", -EIO);
    /* Deleted: refused. */
    unlink(s0);
    unlink(s1);
    anchor_reload(dir, &t, -ENOENT, "is missing, but the TPM anchors version 4");
    /* Edited (one value changed, version kept): refused. */
    char *edited = strdup(cur);
    char *at = strstr(edited, "config/x 636667");
    assert_non_null(at);
    at[strlen("config/x 63")] = '7';
    put(s0, edited, cur_len);
    anchor_reload(dir, &t, -EBADMSG, "does not match the digest of version 4");
    /* The edited table claiming a higher version: refused too. */
    free(edited);
    edited = strdup(cur);
    at = strstr(edited, "version 4");
    at[8] = '9';
    put(s0, edited, cur_len);
    anchor_reload(dir, &t, -EBADMSG, "does not match");
    free(edited);
    /* The right one back: accepted. */
    put(s0, cur, cur_len);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    /* The table only in the other slot (copied there, its own slot deleted): it is the same
     * bytes, so it is the table, and it is written into its own slot before the next update
     * overwrites the other one in place. */
    unlink(s0);
    put(s1, cur, cur_len);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    assert_same_file(s0, cur, cur_len);

    /* A data dir from before the slots: anchor.table (and a crash between the NV write and the
     * rename: anchor.table.new) is adopted into its slot, and the old names removed. */
    unlink(s0);
    unlink(s1);
    put(legacy, cur, cur_len);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    assert_same_file(s0, cur, cur_len);
    assert_int_equal(access(legacy, F_OK), -1);
    unlink(s0);
    put(legacy, v3, v3_len);
    put(legacy_new, cur, cur_len);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    assert_same_file(s0, cur, cur_len);
    assert_int_equal(access(legacy, F_OK), -1);
    assert_int_equal(access(legacy_new, F_OK), -1);
    /* A forged .new, an older anchor.table next to the slots: dropped, never the table. */
    char stale[] = "trustme-anchor 1\nversion 6\nconfig/z 7a\n";
    put(legacy_new, stale, strlen(stale));
    put(legacy, v3, v3_len);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    assert_value(&t, "config/z", NULL);
    assert_int_equal(access(legacy, F_OK), -1);
    assert_int_equal(access(legacy_new, F_OK), -1);

    /* Crash before the NV write: the next version in its slot, unanchored, is dead; so is a slot
     * torn mid-write. */
    put(s1, stale, strlen(stale));
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    assert_value(&t, "config/z", NULL);
    put(s1, stale, 10);
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 4);
    /* The update writes that slot in place (longer or shorter than the dead contents). */
    anchor_set(dir, &t, "config/y", "y", 0);
    assert_int_equal(t.version, 5);
    size_t v5_len;
    char *v5 = slurp(s1, &v5_len);
    assert_non_null(strstr(v5, "version 5\n"));
    anchor_reload(dir, &t, 0, NULL);
    assert_value(&t, "config/y", "y");
    /* Older copies in both slots (restored) do not help. */
    put(s1, v3, v3_len);
    anchor_reload(dir, &t, -ESTALE, "older");
    put(s1, v5, v5_len);
    anchor_reload(dir, &t, 0, NULL);

    /* A second table dir on the same TPM (another data dir copied elsewhere) holds no anchor
     * of its own: its copy of the table is refused once the first moves on. */
    char opath[PATH_MAX];
    put(anchor_slot(other, 5, opath), v5, v5_len);
    struct anchor_table o = {0};
    anchor_reload(other, &o, 0, NULL); /* the same version: indistinguishable, and harmless */
    anchor_set(dir, &t, "config/y", "yy", 0);
    anchor_set(other, &o, "config/y", "zz", -ESTALE);
    anchor_reload(other, &o, -ESTALE, "older");

    /* A TPM that anchors nothing (cleared, or another device's) refuses an existing table. */
    ESYS_TR tr = ESYS_TR_NONE;
    assert_tss(Esys_TR_FromTPMPublic(g.esys, ANCHOR_NV_INDEX, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr));
    undefine_nv(&tr);
    anchor_reload(dir, &t, -EBADMSG, "holds no anchor for it");
    /* Someone else's index at our number: left alone. */
    define_nv(ANCHOR_NV_INDEX, TPMA_NV_OWNERREAD | TPMA_NV_OWNERWRITE, 40, &tr);
    unlink(s0);
    unlink(s1);
    anchor_reload(dir, &t, -EEXIST, "not by trustme");
    assert_tss(Esys_TR_FromTPMPublic(g.esys, ANCHOR_NV_INDEX, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr));
    undefine_nv(&tr);
    /* Nothing anchored, and a first update that stopped before its NV write: dropped. */
    char first[] = "trustme-anchor 1\nversion 1\nconfig/a 61\n";
    put(s1, first, strlen(first));
    anchor_reload(dir, &t, 0, NULL);
    assert_int_equal(t.version, 0);
    assert_int_equal(access(s1, F_OK), -1);
    anchor_free(&t);
    anchor_free(&o);
    free(old);
    free(cur);
    free(v3);
    free(v5);
}

int main(void)
{
    const char *const version[] = {"swtpm", "--version", NULL};
    have_swtpm = run_quiet(version) == 0;
    /* ESYS logs every TPM error to stderr, and this test provokes many; TSS2_LOG=all+warning
     * brings them back. The messages the tests check carry the response codes anyway. */
    setenv("TSS2_LOG", "all+none", 0);
    if (!have_swtpm) {
        printf("SKIP: swtpm is not installed (apt-get install swtpm; scripts/install-deps.sh)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_then_unseal),
        cmocka_unit_test(other_boot_state_refused),
        cmocka_unit_test(reseal_with_wrong_key_changes_nothing),
        cmocka_unit_test(reseal_with_recovery_key),
        cmocka_unit_test(corrupt_blobs_refused),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(survives_swtpm_restart),
        cmocka_unit_test(timings),
        cmocka_unit_test(anchor_table),
    };
    return cmocka_run_group_tests_name("seal", tests, group_setup, group_teardown);
}
