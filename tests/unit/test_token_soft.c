/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Soft tokens through the public API: pairing, keys, PIN and PUK counting with lock and block,
 * PIN change and unlock, wipe, and token, tries and record files that were tampered with. Every
 * test gets its own state directory. scrypt runs with N = 2^10 except where the default is the
 * point. */
#include "test_token_common.h"

#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <jansson.h>
#include <time.h>

#include "b64.h"
#include "kdf_aead.h"
#include "token_carry.h"
#include "token_soft.h"

struct fixture {
    char *dir;
    struct token_ctx ctx;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = tt_mkdtemp();
    f->ctx = (struct token_ctx){.state_dir = f->dir, .soft_kdf_n = 1 << 10};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const struct token_spec soft_spec = {.type = TOKEN_SOFT};

static void pair(struct fixture *f, const char *uuid)
{
    tm_err err = {0};
    assert_rc(token_pair(&f->ctx, uuid, &soft_spec, T_PIN, T_PUK, &err), 0, &err);
}

/* A new key and its blob, for a token paired with T_PIN. */
static void new_key(struct fixture *f, const char *pin, struct secret **key, uint8_t blob[KEYWRAP_BLOB_LEN])
{
    tm_err err = {0};
    assert_rc(token_new_key(&f->ctx, T_UUID, pin, NULL, 0, key, blob, &err), 0, &err);
}

static int unwrap_expect(struct fixture *f, const char *pin, const uint8_t *blob, const struct secret *want,
                         tm_err *err)
{
    struct secret *key = NULL;
    int r = token_unwrap(&f->ctx, T_UUID, pin, blob, KEYWRAP_BLOB_LEN, &key, err);
    if (r == 0) {
        assert_non_null(key);
        assert_int_equal(key->len, KEYWRAP_KEY_LEN);
        if (want)
            assert_memory_equal(key->data, want->data, KEYWRAP_KEY_LEN);
        secret_free(key);
    } else {
        assert_null(key);
    }
    return r;
}

static int pin_failures_on_disk(struct fixture *f)
{
    /* A fresh context: what is on disk, not what some process remembers. */
    struct token_ctx fresh = {.state_dir = f->dir};
    return (int)tt_status(&fresh, T_UUID).pin_failures;
}

/* --- pairing --- */

static void pair_creates_private_files(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    pair(f, T_UUID);
    snprintf(path, sizeof(path), "%s/tokens", f->dir);
    assert_int_equal(tt_mode(path), 0700);
    tt_path(path, f->dir, T_UUID, ".token");
    assert_int_equal(tt_mode(path), 0600);
    _cleanup_free_ char *record = tt_read(path);
    assert_string_equal(record, "{\"version\":1,\"type\":\"soft\"}");
    tt_path(path, f->dir, T_UUID, ".soft");
    assert_int_equal(tt_mode(path), 0600);
    _cleanup_free_ char *soft = tt_read(path);
    assert_non_null(strstr(soft, "\"kdf\":{\"alg\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1}"));
    /* Neither PIN nor PUK is written anywhere. */
    assert_null(strstr(soft, T_PIN));
    struct token_status st = tt_status(&f->ctx, T_UUID);
    assert_true(st.paired);
    assert_int_equal(st.type, TOKEN_SOFT);
    assert_false(st.locked);
    assert_false(st.blocked);
    assert_int_equal(st.pin_failures, 0);
    assert_int_equal(st.pin_tries_left, 3);
    assert_int_equal(st.puk_tries_left, 10);
}

static void pair_twice_refused(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    pair(f, T_UUID);
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, T_PIN2, T_PUK, &err), -EEXIST, &err);
    assert_err_contains(&err, "already has a token");
    /* Another container is another matter. */
    pair(f, T_UUID2);
}

static void pair_checks_arguments(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, "123", T_PUK, &err), -EINVAL, &err);
    assert_err_contains(&err, "PIN too short: at least 4");
    char long_pin[66];
    memset(long_pin, '7', 65);
    long_pin[65] = '\0';
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, long_pin, T_PUK, &err), -EINVAL, &err);
    assert_err_contains(&err, "PIN too long: at most 64");
    long_pin[64] = '\0';
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, T_PIN, "1234567", &err), -EINVAL, &err);
    assert_err_contains(&err, "PUK too short: at least 8");
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, T_PIN, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "no PUK given");
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, "12345678", "12345678", &err), -EINVAL, &err);
    assert_err_contains(&err, "PUK must differ from the PIN");
    assert_rc(token_pair(&f->ctx, "../../etc/x", &soft_spec, T_PIN, T_PUK, &err), -EINVAL, &err);
    assert_err_contains(&err, "not a container UUID");
    struct token_spec bad_n = {.type = TOKEN_SOFT, .soft_kdf_n = 3000};
    assert_rc(token_pair(&f->ctx, T_UUID, &bad_n, T_PIN, T_PUK, &err), -EINVAL, &err);
    assert_err_contains(&err, "power of two");
    bad_n.soft_kdf_n = 1 << 9;
    assert_rc(token_pair(&f->ctx, T_UUID, &bad_n, T_PIN, T_PUK, &err), -EINVAL, &err);
    bad_n.soft_kdf_n = 1 << 21;
    assert_rc(token_pair(&f->ctx, T_UUID, &bad_n, T_PIN, T_PUK, &err), -EINVAL, &err);
    struct token_spec bad_type = {.type = 7};
    assert_rc(token_pair(&f->ctx, T_UUID, &bad_type, T_PIN, T_PUK, &err), -EINVAL, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    /* The longest PIN is fine. */
    assert_rc(token_pair(&f->ctx, T_UUID, &soft_spec, long_pin, T_PUK, &err), 0, &err);
}

static void secret_bytes_checked(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_rc(token_check_secret_bytes("12\0"
                                       "34",
                                       5, &err),
              -EINVAL, &err);
    assert_err_contains(&err, "NUL byte");
    assert_rc(token_check_secret_bytes("1234", 4, &err), 0, &err);
    char big[65];
    memset(big, 'x', sizeof(big));
    assert_rc(token_check_secret_bytes(big, sizeof(big), &err), -EINVAL, &err);
}

/* --- keys --- */

static void new_key_unwraps(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_int_equal(blob[6], KEYWRAP_TOKEN_SOFT);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    /* Twice, from a fresh context: nothing lives in memory between calls. */
    struct token_ctx fresh = {.state_dir = f->dir};
    struct secret *again = NULL;
    assert_rc(token_unwrap(&fresh, T_UUID, T_PIN, blob, sizeof(blob), &again, &err), 0, &err);
    assert_memory_equal(again->data, key->data, KEYWRAP_KEY_LEN);
    secret_free(again);
    /* Another new key is another key. */
    struct secret *key2 = NULL;
    uint8_t blob2[KEYWRAP_BLOB_LEN];
    new_key(f, T_PIN, &key2, blob2);
    assert_memory_not_equal(key->data, key2->data, KEYWRAP_KEY_LEN);
    secret_free(key);
    secret_free(key2);
}

static void unwrap_of_another_container_fails(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL, *out = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    pair(f, T_UUID2);
    new_key(f, T_PIN, &key, blob);
    assert_rc(token_unwrap(&f->ctx, T_UUID2, T_PIN, blob, sizeof(blob), &out, &err), -EBADMSG, &err);
    assert_null(out);
    secret_free(key);
}

static void malformed_blob_costs_no_attempt(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    struct secret *out = NULL;
    assert_rc(token_unwrap(&f->ctx, T_UUID, "0000", blob, 99, &out, &err), -EINVAL, &err);
    assert_err_contains(&err, "truncated");
    blob[6] = KEYWRAP_TOKEN_PKCS11;
    assert_rc(token_unwrap(&f->ctx, T_UUID, "0000", blob, sizeof(blob), &out, &err), -EINVAL, &err);
    assert_err_contains(&err, "wrapped by a pkcs11 token, but container");
    assert_int_equal(pin_failures_on_disk(f), 0);
    secret_free(key);
}

static void not_paired_is_enokey(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN] = {0};
    tm_err err = {0};
    assert_rc(token_new_key(&f->ctx, T_UUID, T_PIN, NULL, 0, &key, blob, &err), -ENOKEY, &err);
    assert_err_contains(&err, "has no token");
    pair(f, T_UUID2); /* the directory exists now, the record does not */
    assert_rc(token_unwrap(&f->ctx, T_UUID, T_PIN, blob, sizeof(blob), &key, &err), -ENOKEY, &err);
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, NULL, 0, &rk_unused, &err), -ENOKEY, &err);
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, T_PIN2, NULL, 0, &rk_unused, &err), -ENOKEY, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    assert_int_equal(tt_status(&f->ctx, T_UUID).type, TOKEN_NONE);
}

/* --- PIN counting --- */

static void wrong_pin_counts_and_persists(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 2 tries left");
    assert_int_equal(pin_failures_on_disk(f), 1);
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".tries");
    _cleanup_free_ char *tries = tt_read(path);
    assert_string_equal(tries, "{\"pin_failures\":1,\"puk_failures\":0}\n");
    assert_int_equal(tt_mode(path), 0600);
    assert_rc(unwrap_expect(f, "00000", blob, NULL, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 1 try left");
    assert_int_equal(pin_failures_on_disk(f), 2);
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_tries_left, 1);
    secret_free(key);
}

static void correct_pin_resets(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, "0001", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    assert_int_equal(pin_failures_on_disk(f), 0);
    /* "Consecutive": two more wrong ones do not lock. */
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, "0001", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    secret_free(key);
}

static void lock(struct fixture *f, const uint8_t *blob)
{
    tm_err err = {0};
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_err_contains(&err, "wrong PIN: the token is now locked after 3 wrong PINs");
}

static void three_wrong_pins_lock(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL, *out = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    lock(f, blob);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), -EPERM, &err);
    assert_string_equal(err.msg, "locked after 3 wrong PINs: unlock it with the PUK "
                                 "(trustme token unlock)");
    assert_rc(token_new_key(&f->ctx, T_UUID, T_PIN, NULL, 0, &out, blob, &err), -EPERM, &err);
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, NULL, 0, &rk_unused, &err), -EPERM, &err);
    struct token_status st = tt_status(&f->ctx, T_UUID);
    assert_true(st.locked);
    assert_false(st.blocked);
    assert_int_equal(st.pin_failures, 3);
    assert_int_equal(st.pin_tries_left, 0);
    /* No oracle: a locked token does not even look at the PIN. With the token file destroyed,
     * a PIN check could not run, and the answer is still "locked". */
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    tt_write(path, "garbage");
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EPERM, &err);
    assert_int_equal(pin_failures_on_disk(f), 3);
    secret_free(key);
}

/* Counting is pessimistic: killed in the middle of a PIN check — here a right PIN, which would
 * reset the counter had it finished — the attempt stays counted. */
static void kill_during_check_keeps_the_count(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    f->ctx.soft_kdf_n = 1 << 17; /* a long check: 128 MiB of scrypt */
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_int_equal(pin_failures_on_disk(f), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct secret *k = NULL;
        tm_err e;
        _exit(token_unwrap(&f->ctx, T_UUID, T_PIN, blob, sizeof(blob), &k, &e) == 0 ? 0 : 1);
    }
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".tries");
    bool counted = false;
    for (int i = 0; i < 2000 && !counted; i++) {
        char *data = NULL;
        if (read_file(path, 4096, &data, NULL, NULL) == 0)
            counted = strstr(data, "\"pin_failures\":1") != NULL;
        free(data);
        if (!counted)
            usleep(500);
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(counted);
    assert_true(WIFSIGNALED(status)); /* killed mid-check, not finished */
    assert_int_equal(pin_failures_on_disk(f), 1);
    /* Finishing a check normally settles it. */
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    assert_int_equal(pin_failures_on_disk(f), 0);
    secret_free(key);
}

/* Several processes guessing at once: each attempt is counted (the counters are read, checked
 * and written under one lock), so no more than three PINs are ever tried. */
static void concurrent_attempts_all_count(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    enum { N = 8 };
    pid_t pids[N];
    int go[2];
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) < 0) /* start together */
                _exit(100);
            struct secret *k = NULL;
            tm_err e;
            int r = token_unwrap(&f->ctx, T_UUID, "0000", blob, sizeof(blob), &k, &e);
            _exit(r == -EACCES ? 1 : r == -EPERM ? 2 : 3);
        }
    }
    close(go[0]);
    close(go[1]); /* EOF releases them all */
    int wrong = 0, locked = 0;
    for (int i = 0; i < N; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        wrong += WEXITSTATUS(status) == 1;
        locked += WEXITSTATUS(status) == 2;
    }
    assert_int_equal(wrong, 3);
    assert_int_equal(locked, N - 3);
    assert_int_equal(pin_failures_on_disk(f), 3);
    secret_free(key);
}

/* A token file scd may not read is an I/O error: not a wrong PIN (-EACCES means exactly that to
 * callers), and not counted. Run as an unprivileged user, since root reads everything. */
static void unreadable_file_is_not_a_wrong_pin(void **state)
{
    if (geteuid() != 0) {
        printf("SKIP: needs root to make a file its owner cannot read\n");
        skip();
    }
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    char tokens[PATH_MAX], path[PATH_MAX];
    snprintf(tokens, sizeof(tokens), "%s/tokens", f->dir);
    tt_path(path, f->dir, T_UUID, ".token");
    assert_int_equal(chown(f->dir, 65534, 65534), 0);
    assert_int_equal(chown(tokens, 65534, 65534), 0);
    assert_int_equal(chown(path, 65534, 65534), 0); /* the record is readable, the token not */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(100);
        struct secret *k = NULL;
        tm_err e = {0};
        int r = token_unwrap(&f->ctx, T_UUID, T_PIN, blob, sizeof(blob), &k, &e);
        if (r != -EIO || !strstr(e.msg, "Permission denied"))
            fprintf(stderr, "child: %d %s\n", r, e.msg);
        _exit(r == -EIO && strstr(e.msg, "Permission denied") ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(pin_failures_on_disk(f), 0);
    secret_free(key);
}

/* --- PUK --- */

static void unlock_with_puk(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    lock(f, blob);
    struct token_rekeyed rk;
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    assert_true(rk.has_wrapped);
    assert_false(rk.pending); /* no caller that anchors: in place at once */
    struct token_status st = tt_status(&f->ctx, T_UUID);
    assert_false(st.locked);
    assert_int_equal(st.pin_failures, 0);
    /* Re-keyed: the old blob is useless, the re-wrapped one holds the same key. */
    assert_rc(unwrap_expect(f, T_PIN2, blob, NULL, &err), -EBADMSG, &err);
    memcpy(blob, rk.wrapped, sizeof(blob));
    assert_rc(unwrap_expect(f, T_PIN2, blob, key, &err), 0, &err);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 2 tries left");
    /* A forgotten PIN can be reset without a lock too. */
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, "4321", blob, sizeof(blob), &rk, &err), 0, &err);
    memcpy(blob, rk.wrapped, sizeof(blob));
    assert_rc(unwrap_expect(f, "4321", blob, key, &err), 0, &err);
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, "12", NULL, 0, &rk_unused, &err), -EINVAL, &err);
    secret_free(key);
}

static void wrong_puks_block_for_good(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    lock(f, blob);
    for (int i = 1; i <= 10; i++) {
        assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
        char want[64];
        snprintf(want, sizeof(want), "wrong PUK: %d %s left", 10 - i, 10 - i == 1 ? "try" : "tries");
        if (i < 10)
            assert_string_equal(err.msg, want);
        assert_int_equal(tt_status(&f->ctx, T_UUID).puk_failures, i);
    }
    assert_err_contains(&err, "wrong PUK: the token is now blocked for good after 10 wrong PUKs");
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, T_PIN2, NULL, 0, &rk_unused, &err), -EKEYREVOKED, &err);
    assert_err_contains(&err, "blocked for good after 10 wrong PUKs: only a wipe helps");
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EKEYREVOKED, &err);
    struct token_status st = tt_status(&f->ctx, T_UUID);
    assert_true(st.blocked);
    assert_int_equal(st.puk_tries_left, 0);
    /* Only a wipe helps, and then a new pairing. */
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), 0, &err);
    pair(f, T_UUID);
    assert_false(tt_status(&f->ctx, T_UUID).blocked);
    assert_int_equal(tt_status(&f->ctx, T_UUID).puk_failures, 0);
    secret_free(key);
}

static void blocked_without_pin_lock(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    for (int i = 0; i < 10; i++)
        assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
    /* The PIN was never wrong, but a blocked token is blocked for every use. */
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EKEYREVOKED, &err);
    secret_free(key);
}

static void correct_puk_resets_its_counter(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    pair(f, T_UUID);
    for (int i = 0; i < 9; i++)
        assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PUK: 1 try left");
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, T_PIN2, NULL, 0, &rk_unused, &err), 0, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).puk_failures, 0);
    /* The PIN is not a PUK. */
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PIN2, "5555", NULL, 0, &rk_unused, &err), -EACCES, &err);
}

/* --- PIN change --- */

static void change_pin(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    struct token_rekeyed rk;
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    assert_true(rk.has_wrapped);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EACCES, &err);
    /* A new KEK: the old blob does not open under it, the re-wrapped one has the same key. */
    assert_rc(unwrap_expect(f, T_PIN2, blob, NULL, &err), -EBADMSG, &err);
    memcpy(blob, rk.wrapped, sizeof(blob));
    assert_rc(unwrap_expect(f, T_PIN2, blob, key, &err), 0, &err);
    /* A wrong old PIN is a counted wrong PIN. */
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, "5555", NULL, 0, &rk_unused, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 2 tries left");
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN2, "12", NULL, 0, &rk_unused, &err), -EINVAL, &err);
    assert_err_contains(&err, "new PIN too short");
    /* The PUK still opens the token after a PIN change: the new KEK was sealed to it. */
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, T_PIN, blob, sizeof(blob), &rk, &err), 0, &err);
    memcpy(blob, rk.wrapped, sizeof(blob));
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    secret_free(key);
}

/* The attacker with TPM access (he has the device secret, here none) who knew
 * the old PIN and kept the old .soft: after a PIN change, and after a PUK unlock, the old file
 * and old PIN give the old KEK, which opens nothing wrapped since. */
static void old_file_and_pin_after_rekey_open_nothing(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    _cleanup_free_ char *old = tt_read(path);
    struct token_rekeyed rk;
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    _cleanup_free_ char *cur = tt_read(path);
    tt_write(path, old);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err); /* the old pair, as before */
    assert_rc(unwrap_expect(f, T_PIN, rk.wrapped, NULL, &err), -EBADMSG, &err);
    /* nor does the old PUK side reach the new KEK: the old file + PUK gives the old KEK */
    struct token_rekeyed rk2;
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, "5555", rk.wrapped, sizeof(rk.wrapped), &rk2, &err), -EBADMSG, &err);
    tt_write(path, cur);
    /* after a PUK unlock, likewise */
    _cleanup_free_ char *before_unlock = tt_read(path);
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, "5555", rk.wrapped, sizeof(rk.wrapped), &rk2, &err), 0, &err);
    assert_rc(unwrap_expect(f, "5555", rk2.wrapped, key, &err), 0, &err);
    tt_write(path, before_unlock);
    assert_rc(unwrap_expect(f, T_PIN2, rk2.wrapped, NULL, &err), -EBADMSG, &err);
    secret_free(key);
}

/* A version 2 file, as an older trustme wrote it: both slots hold kek. */
static void write_v2(const char *path, const char *pin, const char *puk, const struct secret *kek)
{
    const char *secrets[] = {pin, puk}, *names[] = {"pin", "puk"};
    char slots[2][400];
    tm_err err = {0};
    for (int i = 0; i < 2; i++) {
        uint8_t salt[16], nonce[12], ct[48];
        char aad[128], bs[64], bn[64], bc[128];
        struct secret *sk = NULL, *k = NULL;
        assert_rc(secure_random(salt, sizeof(salt), &err), 0, &err);
        assert_rc(secure_random(nonce, sizeof(nonce), &err), 0, &err);
        assert_rc(secret_new(32, &sk, &err), 0, &err);
        assert_rc(secret_new(32, &k, &err), 0, &err);
        assert_rc(kdf_scrypt(secrets[i], salt, sizeof(salt), 1024, 8, 1, sk, &err), 0, &err);
        assert_rc(kdf_hkdf_sha256(sk, NULL, 0, "trustme soft token slot v2", k, &err), 0, &err);
        snprintf(aad, sizeof(aad), "trustme soft token v2:%s:%s", T_UUID, names[i]);
        assert_rc(aead_seal(k, nonce, aad, strlen(aad), kek->data, 32, ct, ct + 32, &err), 0, &err);
        b64_encode(salt, sizeof(salt), bs);
        b64_encode(nonce, sizeof(nonce), bn);
        b64_encode(ct, sizeof(ct), bc);
        snprintf(slots[i], sizeof(slots[i]), "{\"salt\":\"%s\",\"nonce\":\"%s\",\"ct\":\"%s\"}", bs, bn, bc);
        secret_free(sk);
        secret_free(k);
    }
    char file[1024];
    snprintf(file, sizeof(file),
             "{\"version\":2,\"kdf\":{\"alg\":\"scrypt\",\"N\":1024,\"r\":8,"
             "\"p\":1},\"pin\":%s,\"puk\":%s}",
             slots[0], slots[1]);
    tt_write(path, file);
}

/* A v2 token still works, becomes v3 at its next PIN change without the PUK (keeping its PUK
 * slot: the legacy "puk_key"), and a plain v3 at the PUK unlock after that. */
static void v2_token_works_and_migrates(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    pair(f, T_UUID);
    struct secret *kek = NULL, *key = NULL;
    assert_rc(secret_random(32, &kek, &err), 0, &err);
    assert_rc(secret_random(KEYWRAP_KEY_LEN, &key, &err), 0, &err);
    write_v2(path, T_PIN, T_PUK, kek);
    uint8_t blob[KEYWRAP_BLOB_LEN];
    assert_rc(keywrap_seal_soft(kek, NULL, T_UUID, key, blob, &err), 0, &err);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    _cleanup_free_ char *v2 = tt_read(path);

    struct token_rekeyed rk;
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    struct soft_token tok;
    assert_rc(soft_token_load(path, &tok, &err), 0, &err);
    assert_int_equal(tok.version, 3);
    assert_true(tok.puk_legacy);
    assert_rc(unwrap_expect(f, T_PIN2, rk.wrapped, key, &err), 0, &err);
    /* a second change keeps the legacy PUK slot and still re-keys */
    struct token_rekeyed rk2;
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN2, "2580", rk.wrapped, sizeof(rk.wrapped), &rk2, &err), 0, &err);
    assert_rc(unwrap_expect(f, "2580", rk2.wrapped, key, &err), 0, &err);
    _cleanup_free_ char *migrated = tt_read(path);
    /* the PUK opens the migrated file (v2 slot -> old KEK -> private key -> new KEK) */
    struct token_rekeyed rk3;
    assert_rc(token_unlock(&f->ctx, T_UUID, T_PUK, "1470", rk2.wrapped, sizeof(rk2.wrapped), &rk3, &err), 0, &err);
    assert_rc(unwrap_expect(f, "1470", rk3.wrapped, key, &err), 0, &err);
    assert_rc(soft_token_load(path, &tok, &err), 0, &err);
    assert_int_equal(tok.version, 3);
    assert_false(tok.puk_legacy);
    assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", "1470", NULL, 0, &rk_unused, &err), -EACCES, &err);
    /* the v2 file and its PIN open nothing wrapped since the PUK unlock */
    tt_write(path, v2);
    assert_rc(unwrap_expect(f, T_PIN, rk3.wrapped, NULL, &err), -EBADMSG, &err);
    (void)migrated;
    secret_free(kek);
    secret_free(key);
}

/* With a caller that anchors (ctx->anchor), the change is pending until token_commit; a pending
 * file that is not the anchored one is removed, never used. */
static void change_is_pending_until_committed(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN], cur[32], now[32];
    tm_err err = {0};
    char path[PATH_MAX], pending[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    tt_path(pending, f->dir, T_UUID, ".soft.new");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_rc(token_files_digest(&f->ctx, T_UUID, cur, &err), 0, &err);
    f->ctx.anchor = cur;
    struct token_rekeyed rk;
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    assert_true(rk.pending);
    assert_true(tt_exists(pending));
    assert_rc(token_files_digest(&f->ctx, T_UUID, now, &err), 0, &err);
    assert_memory_equal(now, cur, 32); /* nothing in place yet */
    /* not anchored (the caller died before): the next use removes it */
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    assert_false(tt_exists(pending));
    /* again, and this time committed */
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, blob, sizeof(blob), &rk, &err), 0, &err);
    _cleanup_free_ char *pending_bytes = tt_read(pending);
    tt_write(pending, "{\"version\":3}"); /* someone else's pending file: not the anchored one */
    assert_rc(token_commit(&f->ctx, T_UUID, rk.pending_sha256, &err), 0, &err);
    assert_false(tt_exists(pending));
    assert_rc(token_files_digest(&f->ctx, T_UUID, now, &err), 0, &err);
    assert_memory_equal(now, cur, 32); /* rolled back: the current generation stays */
    tt_write(pending, pending_bytes);
    assert_rc(token_commit(&f->ctx, T_UUID, rk.pending_sha256, &err), 0, &err);
    assert_rc(token_files_digest(&f->ctx, T_UUID, now, &err), 0, &err);
    assert_memory_equal(now, rk.pending_sha256, 32);
    assert_rc(token_commit(&f->ctx, T_UUID, rk.pending_sha256, &err), 0, &err); /* idempotent */
    memcpy(cur, now, 32);
    assert_rc(unwrap_expect(f, T_PIN2, rk.wrapped, key, &err), 0, &err);
    /* files that are neither generation */
    uint8_t other[32] = {1};
    f->ctx.anchor = other;
    assert_rc(token_commit(&f->ctx, T_UUID, other, &err), -ESTALE, &err);
    f->ctx.anchor = NULL;
    secret_free(key);
}

/* --- wipe --- */

static void wipe_erases(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    char soft[PATH_MAX], record[PATH_MAX], tries[PATH_MAX];
    tt_path(soft, f->dir, T_UUID, ".soft");
    tt_path(record, f->dir, T_UUID, ".token");
    tt_path(tries, f->dir, T_UUID, ".tries");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_true(tt_exists(tries));
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), 0, &err);
    assert_false(tt_exists(soft));
    assert_false(tt_exists(record));
    assert_false(tt_exists(tries));
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -ENOKEY, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    /* Idempotent, also for containers that never had a token, or no tokens directory. */
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), 0, &err);
    assert_rc(token_wipe(&f->ctx, T_UUID2, T_PIN, &err), 0, &err);
    struct token_ctx nowhere = {.state_dir = "/nonexistent/trustme-test"};
    assert_rc(token_wipe(&nowhere, T_UUID, NULL, &err), 0, &err);
    assert_rc(token_wipe(&f->ctx, "x", NULL, &err), -EINVAL, &err);
    secret_free(key);
}

static void wipe_finishes_an_interrupted_wipe(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    char soft[PATH_MAX];
    tt_path(soft, f->dir, T_UUID, ".soft");
    pair(f, T_UUID);
    /* As if the last wipe died after erasing the token file: the record still claims a token. */
    assert_int_equal(unlink(soft), 0);
    assert_true(tt_status(&f->ctx, T_UUID).paired);
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    assert_rc(token_new_key(&f->ctx, T_UUID, T_PIN, NULL, 0, &key, blob, &err), -ENOKEY, &err);
    assert_err_contains(&err, "is missing");
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), 0, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
}

static void old_blob_fails_with_a_new_pairing(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), 0, &err);
    pair(f, T_UUID); /* same container, same PIN, new KEK */
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EBADMSG, &err);
    assert_err_contains(&err, "does not authenticate");
    /* The PIN was right: the failure is the blob's, not a wrong PIN. */
    assert_int_equal(pin_failures_on_disk(f), 0);
    secret_free(key);
}

/* --- the device secret of the TPM issue --- */

static void device_secret_is_passed_through(void **state)
{
    struct fixture *f = *state;
    struct secret *ds = NULL, *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &ds, &err), 0, &err);
    f->ctx.device_secret = ds;
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    assert_int_equal(blob[5], KEYWRAP_FLAG_DEVICE_BOUND);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    f->ctx.device_secret = NULL;
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "bound to a device secret");
    secret_free(ds);
    secret_free(key);
}

/* The token file alone is no PIN oracle. The right PIN does not open a slot
 * without the device secret it was made with, nor with another one: a guess loop over a copy of
 * the file cannot tell the right PIN from a wrong one. */
static void file_alone_is_no_pin_oracle(void **state)
{
    struct fixture *f = *state;
    struct secret *ds = NULL, *other = NULL, *kek = NULL;
    tm_err err = {0};
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &ds, &err), 0, &err);
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &other, &err), 0, &err);
    f->ctx.device_secret = ds;
    pair(f, T_UUID);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tokens/%s.soft", f->dir, T_UUID);
    struct soft_token tok;
    assert_rc(soft_token_load(path, &tok, &err), 0, &err);
    const char *guesses[] = {"0000", "1111", T_PIN, "9999"};
    for (size_t i = 0; i < ARRAY_SIZE(guesses); i++) {
        assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, guesses[i], NULL, &kek, &err), -EACCES, &err);
        assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, guesses[i], other, &kek, &err), -EACCES, &err);
    }
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PUK, T_PUK, NULL, &kek, &err), -EACCES, &err);
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, T_PIN, ds, &kek, &err), 0, &err);
    secret_free(kek);
    f->ctx.device_secret = NULL;
    secret_free(ds);
    secret_free(other);
}

/* A migration's carried token (token_carry.h): made on one device (secret ds), rebuilt on another
 * (secret other) with the same PIN and PUK; a wrong PUK is refused at the carry as a wrong PUK. */
static void carried_token_keeps_pin_and_puk(void **state)
{
    struct fixture *f = *state;
    struct secret *ds = NULL, *other = NULL, *kek = NULL, *kek2 = NULL;
    struct token_carry c = {0};
    tm_err err = {0};
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &ds, &err), 0, &err);
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &other, &err), 0, &err);
    f->ctx.device_secret = ds;
    pair(f, T_UUID);
    assert_rc(token_carry_out(&f->ctx, T_UUID, T_PIN, "87654321", &c, &err), -EACCES, &err);
    assert_err_contains(&err, "wrong PUK");
    assert_null(c.pin.ikm);
    assert_rc(token_carry_out(&f->ctx, T_UUID, T_PIN, T_PUK, &c, &err), 0, &err);
    assert_int_equal(c.kdf_n, 1 << 10);
    assert_int_equal(c.pin.ikm->len, 32);
    assert_memory_not_equal(c.pin.ikm->data, c.puk.ikm->data, 32);
    /* The target: another state dir and device secret. */
    char *dir2 = tt_mkdtemp();
    struct token_ctx t = {.state_dir = dir2, .soft_kdf_n = 1 << 10, .device_secret = other};
    assert_rc(token_import(&t, T_UUID, &c, &err), 0, &err);
    assert_true(tt_status(&t, T_UUID).paired);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tokens/%s.soft", dir2, T_UUID);
    struct soft_token tok;
    assert_rc(soft_token_load(path, &tok, &err), 0, &err);
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, "9999", other, &kek, &err), -EACCES, &err);
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, T_PIN, ds, &kek, &err), -EACCES, &err);
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, T_PIN, other, &kek, &err), 0, &err);
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PUK, T_PUK, other, &kek2, &err), 0, &err);
    assert_memory_equal(kek->data, kek2->data, SOFT_KEK_LEN);
    /* An import replaces leftovers of an earlier one: a new KEK. */
    assert_rc(token_import(&t, T_UUID, &c, &err), 0, &err);
    assert_rc(soft_token_load(path, &tok, &err), 0, &err);
    secret_free(kek2);
    kek2 = NULL;
    assert_rc(soft_token_open(&tok, T_UUID, SOFT_SLOT_PIN, T_PIN, other, &kek2, &err), 0, &err);
    assert_memory_not_equal(kek->data, kek2->data, SOFT_KEK_LEN);
    secret_free(kek);
    secret_free(kek2);
    token_carry_done(&c);
    rm_rf(dir2);
    free(dir2);
    f->ctx.device_secret = NULL;
    secret_free(ds);
    secret_free(other);
}

/* Root puts a FIFO where a token file was: opening it for reading blocked until a writer came,
 * and scd (one thread, every container's tokens) hung with it. It must fail at once. */
static void fifo_in_place_of_a_file_fails_at_once(void **state)
{
    struct fixture *f = *state;
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    pair(f, T_UUID);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10); /* the old code blocks here: SIGALRM ends the test as a failure */
    struct soft_token tok;
    int r = soft_token_load(path, &tok, &err);
    alarm(0);
    assert_true(r < 0);
    assert_non_null(strstr(err.msg, "not a regular file"));
    uint8_t digest[32];
    alarm(10);
    r = token_files_digest(&f->ctx, T_UUID, digest, &err);
    alarm(0);
    assert_true(r < 0);
    unlink(path);
}

/* --- files tampered with --- */

struct tamper_case {
    const char *from, *to; /* replace the first from in the file, or the whole file (from NULL) */
    int rc;
    const char *msg;
};

static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    char *out = malloc(strlen(s) + strlen(to) + 1);
    size_t pre = (size_t)(at - s);
    memcpy(out, s, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static void tampered_token_file(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    _cleanup_free_ char *orig = tt_read(path);
    json_t *o = json_loads(orig, 0, NULL);
    json_t *pin = json_object_get(o, "pin"), *puk = json_object_get(o, "puk");
    char salt[64], nonce[64], ct[128], puk_slot[512], pin_slot[512];
    snprintf(salt, sizeof(salt), "%s", json_string_value(json_object_get(pin, "salt")));
    snprintf(nonce, sizeof(nonce), "%s", json_string_value(json_object_get(pin, "nonce")));
    snprintf(ct, sizeof(ct), "%s", json_string_value(json_object_get(pin, "ct")));
    /* As the library writes them: without escaping "/". */
    _cleanup_free_ char *pin_text = json_dumps(pin, JSON_COMPACT);
    _cleanup_free_ char *puk_text = json_dumps(puk, JSON_COMPACT);
    snprintf(pin_slot, sizeof(pin_slot), "%s", pin_text);
    snprintf(puk_slot, sizeof(puk_slot), "%s", puk_text);
    json_decref(o);
    assert_int_equal(strlen(salt), 24);
    assert_int_equal(strlen(nonce), 16);
    assert_int_equal(strlen(ct), 64);

    char salt15[64], nonce_nc[64], ct_short[128], salt_bad[64], slot_swap[2048];
    char salt17[64];
    snprintf(salt15, sizeof(salt15), "%.20s", salt); /* 15 bytes */
    snprintf(salt17, sizeof(salt17), "%.20sAAA=", salt); /* 17 bytes in 24 characters */
    snprintf(nonce_nc, sizeof(nonce_nc), "%s", nonce);
    nonce_nc[15] = nonce_nc[15] == 'A' ? 'B' : 'A'; /* last character changes value: fine */
    snprintf(ct_short, sizeof(ct_short), "%.60s", ct);
    char pin_arr[600];
    snprintf(pin_arr, sizeof(pin_arr), "[%s]", pin_slot);
    char ct_quoted[130];
    snprintf(ct_quoted, sizeof(ct_quoted), "\"%s\"", ct);
    snprintf(salt_bad, sizeof(salt_bad), "%s", salt);
    salt_bad[3] = '!';
    _cleanup_free_ char *a = replace(orig, pin_slot, "PINSLOT");
    _cleanup_free_ char *b = replace(a, puk_slot, pin_slot);
    _cleanup_free_ char *swapped = replace(b, "PINSLOT", puk_slot);
    snprintf(slot_swap, sizeof(slot_swap), "%s", swapped);
    /* review 2: more than the file limit (4096 bytes), in valid JSON */
    char padded[4200];
    int plen = snprintf(padded, sizeof(padded), "\"version\":3,");
    memset(padded + plen, ' ', sizeof(padded) - plen - 1);
    padded[sizeof(padded) - 1] = '\0';

    const struct tamper_case cases[] = {
        {NULL, "", -EINVAL, "$: document ends in the middle of a value"},
        {NULL, "not json", -EINVAL, "$: invalid JSON at line 1, column 3 (invalid token"},
        {NULL, "[1]", -EINVAL, "$: expected an object"},
        {NULL, "{}", -EINVAL, "$.version: required key is missing"},
        {"\"version\":3", "\"version\":1", -EOPNOTSUPP, "soft token version 1 is not supported"},
        {"\"version\":3", "\"version\":4", -EOPNOTSUPP, "soft token version 4 is not supported"},
        {"\"version\":3", "\"version\":\"3\"", -EINVAL, "$.version: expected an integer"},
        {"\"version\":3", "\"version\":3,\"extra\":0", -EINVAL, "$.extra: unknown key"},
        /* a v3 file's keys are unknown to version 2 */
        {"\"version\":3", "\"version\":2", -EINVAL, "$.puk_pub: unknown key"},
        {"\"version\":3,", "", -EINVAL, "$.version: required key is missing"},
        {"\"puk_pub\":\"", "\"puk_pub\":\"A", -EINVAL, "$.puk_pub: expected 32 bytes"},
        {"\"sealed\":{", "\"sealed\":{\"k\":1,", -EINVAL, "$.sealed.k: unknown key"},
        {"\"sealed\":{", "\"sealed2\":{", -EINVAL, "$.sealed2: unknown key"},
        /* review 2: the migration's key box, malformed */
        {"\"version\":3,", "\"version\":3,\"puk_key\":null,", -EINVAL, "$.puk_key: expected an object"},
        {"\"version\":3,", "\"version\":3,\"puk_key\":{},", -EINVAL, "$.puk_key.nonce: required key is missing"},
        {"\"version\":3,", "\"version\":3,\"puk_key\":{\"nonce\":\"AAAAAAAAAAAAAAAA\",\"ct\":\"A\"},", -EINVAL,
         "$.puk_key.ct: expected 48 bytes"},
        {"\"version\":3,", padded, -EFBIG, "is too large (4"},
        {"\"epk\":\"", "\"epk\":\"A", -EINVAL, "$.sealed.epk: expected 32 bytes"},
        {"\"alg\":\"scrypt\"", "\"alg\":\"argon2id\"", -EINVAL, "$.kdf.alg: must be \"scrypt\""},
        {"\"N\":1024", "\"N\":3072", -EINVAL, "$.kdf.N: must be a power of two"},
        {"\"N\":1024", "\"N\":1073741824", -ERANGE, "$.kdf.N: 1073741824 out of range"},
        {"\"N\":1024", "\"N\":-1", -ERANGE, "$.kdf.N"},
        {"\"N\":1024", "\"N\":1024.0", -EINVAL, "$.kdf.N: expected an integer"},
        {"\"r\":8", "\"r\":16", -ERANGE, "$.kdf.r"},
        {"\"p\":1", "\"p\":4", -ERANGE, "$.kdf.p"},
        {"\"p\":1", "\"p\":1,\"maxmem\":1", -EINVAL, "$.kdf.maxmem: unknown key"},
        {"\"pin\":", "\"pim\":", -EINVAL, "$.pim: unknown key"},
        {salt, salt15, -EINVAL, "$.pin.salt: expected 16 bytes as 24 base64 characters, got 20"},
        {salt, salt17, -EINVAL, "$.pin.salt: not canonical base64 for 16 bytes"},
        {salt, "", -EINVAL, "$.pin.salt: expected 16 bytes"},
        {salt, salt_bad, -EINVAL, "$.pin.salt: invalid base64 character at offset 3"},
        {nonce, "AAAAAAAAAAAAAAA=", -EINVAL, "$.pin.nonce: not canonical base64"},
        {ct, ct_short, -EINVAL, "$.pin.ct: expected 48 bytes as 64 base64 characters, got 60"},
        {ct_quoted, "1", -EINVAL, "$.pin.ct: expected a string, got an integer"},
        {"\"salt\":", "\"pepper\":1,\"salt\":", -EINVAL, "$.pin.pepper: unknown key"},
        {pin_slot, pin_arr, -EINVAL, "$.pin: expected an object, got an array"},
        {"\"pin\":{", "\"pin\":[{", -EINVAL, "$: invalid JSON at line 1, column 205 (']' expected"},
        /* Intact encodings of other values: these are the PIN-derived key changing, which
         * nothing can tell from a wrong PIN. */
        {NULL, slot_swap, -EACCES, "wrong PIN"},
        {nonce, nonce_nc, -EACCES, "wrong PIN"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct tamper_case *c = &cases[i];
        _cleanup_free_ char *data = c->from ? replace(orig, c->from, c->to) : strdup(c->to);
        tt_write(path, data);
        struct secret *out = NULL;
        tm_err e = {0};
        int r = token_unwrap(&f->ctx, T_UUID, T_PIN, blob, sizeof(blob), &out, &e);
        if (r != c->rc || !strstr(e.msg, c->msg))
            fail_msg("case %zu (%s): got %d \"%s\", expected %d \"%s\"", i, data, r, e.msg, c->rc, c->msg);
        assert_null(out);
        /* A file that does not parse cost no attempt; one that parsed but did not open did. */
        int want = c->rc == -EACCES ? 1 : 0;
        if (pin_failures_on_disk(f) != want)
            fail_msg("case %zu: %d PIN failures counted, expected %d", i, pin_failures_on_disk(f), want);
        tt_write(path, orig);
        assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    }
    /* Too large to be a token file. */
    char big[5000];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tt_write(path, big);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EFBIG, &err);
    /* Not a regular file. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "is not a regular file");
    assert_int_equal(rmdir(path), 0);
    secret_free(key);
}

static void tampered_tries_file(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".tries");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    /* Fail closed: counters that cannot be read are not taken as zero. */
    static const struct {
        const char *data;
        int rc;
        const char *msg;
    } cases[] = {
        {"{\"pin_failures\":7,\"puk_failures\":0}", -ERANGE, "$.pin_failures: 7 out of range"},
        {"{\"pin_failures\":-1,\"puk_failures\":0}", -ERANGE, "$.pin_failures"},
        {"{\"pin_failures\":0,\"puk_failures\":11}", -ERANGE, "$.puk_failures"},
        {"{\"pin_failures\":0}", -EINVAL, "$.puk_failures: required key is missing"},
        {"{\"pin_failures\":0,\"puk_failures\":0,\"x\":1}", -EINVAL, "$.x: unknown key"},
        {"", -EINVAL, "$: document ends in the middle of a value"},
        {"{\"pin_failures\":0,", -EINVAL, "$: document ends"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        tt_write(path, cases[i].data);
        tm_err e = {0};
        assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &e), cases[i].rc, &e);
        assert_err_contains(&e, cases[i].msg);
        assert_err_contains(&e, path);
        struct token_status st;
        assert_rc(token_status(&f->ctx, T_UUID, &st, &e), cases[i].rc, &e);
    }
    tt_write(path, "{\"pin_failures\":3,\"puk_failures\":0}");
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EPERM, &err);
    assert_int_equal(unlink(path), 0);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    secret_free(key);
}

static void tampered_record(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".token");
    pair(f, T_UUID);
    new_key(f, T_PIN, &key, blob);
    static const struct {
        const char *data;
        int rc;
        const char *msg;
    } cases[] = {
        {"{\"version\":1,\"type\":\"tpm\"}", -EINVAL, "$.type: must be \"soft\" or \"pkcs11\""},
        {"{\"version\":3,\"type\":\"soft\"}", -EOPNOTSUPP, "token record version 3"},
        {"{\"version\":1,\"type\":\"soft\",\"pkcs11\":{}}", -EINVAL, "$.pkcs11: not allowed"},
        {"{\"version\":1,\"type\":\"pkcs11\"}", -EINVAL, "$.pkcs11: required key is missing"},
        {"{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"rel.so\",\"label\":\"a\"}}", -EINVAL,
         "$.pkcs11.module: must be an absolute path"},
        {"{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"/m.so\"}}", -EINVAL,
         "$.pkcs11: needs \"label\" or \"serial\""},
        {"{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"/m.so\",\"label\":"
         "\"123456789012345678901234567890123\"}}",
         -EINVAL, "$.pkcs11.label: string longer"},
        {"{\"version\":1,\"type\":\"soft\"", -EINVAL, "$: document ends"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        tt_write(path, cases[i].data);
        tm_err e = {0};
        assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &e), cases[i].rc, &e);
        assert_err_contains(&e, cases[i].msg);
    }
    /* A record gone bad can still be wiped; since it might have named a PKCS#11 token, the
     * answer says that a key object may be left. */
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), TOKEN_WIPE_KEY_LEFT, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    secret_free(key);
}

/* --- the default cost --- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void default_kdf_cost(void **state)
{
    struct fixture *f = *state;
    struct secret *key = NULL, *k = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN], salt[16] = {0};
    tm_err err = {0};
    f->ctx.soft_kdf_n = 0; /* TOKEN_SOFT_KDF_N_DEFAULT */
    pair(f, T_UUID);
    char path[PATH_MAX];
    tt_path(path, f->dir, T_UUID, ".soft");
    _cleanup_free_ char *soft = tt_read(path);
    assert_non_null(strstr(soft, "\"N\":32768"));
    new_key(f, T_PIN, &key, blob);
    assert_rc(secret_new(32, &k, &err), 0, &err);
    double best = 1e9;
    for (int i = 0; i < 3; i++) {
        double t0 = now_ms();
        assert_rc(kdf_scrypt(T_PIN, salt, sizeof(salt), TOKEN_SOFT_KDF_N_DEFAULT, 8, 1, k, &err), 0, &err);
        double t = now_ms() - t0;
        best = t < best ? t : best;
    }
    double t0 = now_ms();
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    double unwrap = now_ms() - t0;
    printf("scrypt N=2^15 r=8 p=1 (32 MiB): %.1f ms (best of 3); token_unwrap: %.1f ms\n", best, unwrap);
    /* An online attack is bounded by the tries; this only keeps the cost from collapsing. */
    assert_true(best > 5.0);
    secret_free(k);
    secret_free(key);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(pair_creates_private_files),
        T(pair_twice_refused),
        T(pair_checks_arguments),
        T(secret_bytes_checked),
        T(new_key_unwraps),
        T(unwrap_of_another_container_fails),
        T(malformed_blob_costs_no_attempt),
        T(not_paired_is_enokey),
        T(wrong_pin_counts_and_persists),
        T(correct_pin_resets),
        T(three_wrong_pins_lock),
        T(kill_during_check_keeps_the_count),
        T(concurrent_attempts_all_count),
        T(unreadable_file_is_not_a_wrong_pin),
        T(unlock_with_puk),
        T(wrong_puks_block_for_good),
        T(blocked_without_pin_lock),
        T(correct_puk_resets_its_counter),
        T(change_pin),
        T(old_file_and_pin_after_rekey_open_nothing),
        T(v2_token_works_and_migrates),
        T(change_is_pending_until_committed),
        T(wipe_erases),
        T(wipe_finishes_an_interrupted_wipe),
        T(old_blob_fails_with_a_new_pairing),
        T(device_secret_is_passed_through),
        T(file_alone_is_no_pin_oracle),
        T(carried_token_keeps_pin_and_puk),
        T(tampered_token_file),
        T(fifo_in_place_of_a_file_fails_at_once),
        T(tampered_tries_file),
        T(tampered_record),
        T(default_kdf_cost),
    };
    return cmocka_run_group_tests_name("token_soft", tests, NULL, NULL);
}
