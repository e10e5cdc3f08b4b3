/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PKCS#11 tokens against SoftHSM2: pairing, keys, PIN counting and lock, unlock with the SO PIN,
 * PIN change, wipe (the key object is gone), the key object's attributes, and modules or tokens
 * that are not there. Each test initialises its own SoftHSM token in a private directory
 * (SOFTHSM2_CONF) and removes it afterwards. Skipped, with the reason printed, only when the
 * SoftHSM2 module is not installed. */
#include "test_token_common.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/wait.h>

#include "token_pkcs11.h"

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define LABEL "trustme-test"
#define SO_PIN "87654321"

static bool have_softhsm;

struct fixture {
    char *dir;
    char state[PATH_MAX];
    struct token_ctx ctx;
    struct token_spec spec;
};

static int run(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int setup(void **state)
{
    if (!have_softhsm)
        return 0;
    struct fixture *f = calloc(1, sizeof(*f));
    char conf[PATH_MAX], tokens[PATH_MAX], text[PATH_MAX + 128];
    f->dir = tt_mkdtemp();
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", f->dir);
    snprintf(tokens, sizeof(tokens), "%s/softhsm", f->dir);
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    assert_int_equal(mkdir(tokens, 0700), 0);
    snprintf(text, sizeof(text), "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    tt_write(conf, text);
    setenv("SOFTHSM2_CONF", conf, 1);
    const char *const init[] = {"softhsm2-util", "--init-token", "--free",   "--label", LABEL,
                                "--pin",         T_PIN,          "--so-pin", SO_PIN,    NULL};
    if (run(init) != 0) {
        fprintf(stderr, "softhsm2-util --init-token failed\n");
        return -1;
    }
    f->ctx = (struct token_ctx){.state_dir = f->state};
    f->spec = (struct token_spec){.type = TOKEN_PKCS11, .pkcs11_module = SOFTHSM_MODULE, .pkcs11_label = LABEL};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    rm_rf(f->dir);
    unsetenv("SOFTHSM2_CONF");
    free(f->dir);
    free(f);
    return 0;
}

#define NEED_SOFTHSM()     \
    do {                   \
        if (!have_softhsm) \
            skip();        \
    } while (0)

static void pair(struct fixture *f, const char *uuid)
{
    tm_err err = {0};
    assert_rc(token_pair(&f->ctx, uuid, &f->spec, T_PIN, NULL, &err), 0, &err);
}

static void new_key(struct fixture *f, struct secret **key, uint8_t blob[KEYWRAP_BLOB_LEN])
{
    tm_err err = {0};
    assert_rc(token_new_key(&f->ctx, T_UUID, T_PIN, NULL, 0, key, blob, &err), 0, &err);
}

static int unwrap_expect(struct fixture *f, const char *pin, const uint8_t *blob, const struct secret *want,
                         tm_err *err)
{
    struct secret *key = NULL;
    int r = token_unwrap(&f->ctx, T_UUID, pin, blob, KEYWRAP_BLOB_LEN, &key, err);
    if (r == 0) {
        assert_non_null(key);
        if (want)
            assert_memory_equal(key->data, want->data, KEYWRAP_KEY_LEN);
        secret_free(key);
    } else {
        assert_null(key);
    }
    return r;
}

/* A logged-in session of our own, to look at the token beside the API. */
static struct p11 *session(const char *pin)
{
    struct p11_config cfg = {.module = SOFTHSM_MODULE, .label = LABEL};
    struct p11 *p = NULL;
    tm_err err = {0};
    assert_rc(p11_open(&cfg, &p, &err), 0, &err);
    assert_rc(p11_login(p, false, pin, &err), 0, &err);
    return p;
}

static bool kek_exists(const char *uuid)
{
    struct p11 *p = session(T_PIN);
    CK_OBJECT_HANDLE h;
    tm_err err = {0};
    int r = p11_find_kek(p, uuid, &h, &err);
    p11_close(p);
    if (r != 0 && r != -ENOKEY)
        fail_msg("%s", err.msg);
    return r == 0;
}

/* pkcs11-tool (OpenSC) as an independent witness of what is on the token. */
static bool listed_by_pkcs11_tool(const char *uuid)
{
    char cmd[1024], line[512];
    snprintf(cmd, sizeof(cmd),
             "pkcs11-tool --module %s --token-label %s --login --pin %s "
             "--list-objects --type secrkey 2>&1",
             SOFTHSM_MODULE, LABEL, T_PIN);
    FILE *fp = popen(cmd, "r");
    assert_non_null(fp);
    bool found = false, any_output = false;
    while (fgets(line, sizeof(line), fp)) {
        any_output = true;
        if (strstr(line, "label:") && strstr(line, uuid))
            found = true;
    }
    int status = pclose(fp);
    if (WEXITSTATUS(status) != 0)
        fail_msg("pkcs11-tool failed (status %d)", status);
    (void)any_output;
    return found;
}

/* --- pairing and keys --- */

static void pair_and_round_trip(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    assert_true(kek_exists(T_UUID));
    assert_true(listed_by_pkcs11_tool(T_UUID));
    char path[PATH_MAX];
    tt_path(path, f->state, T_UUID, ".token");
    _cleanup_free_ char *record = tt_read(path);
    assert_string_equal(record, "{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"" SOFTHSM_MODULE
                                "\",\"label\":\"" LABEL "\"}}");
    assert_int_equal(tt_status(&f->ctx, T_UUID).type, TOKEN_PKCS11);
    new_key(f, &key, blob);
    assert_memory_equal(blob, "TMWK\x01\x00\x02\x00", 8);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    /* Another container on the same token has its own key object. */
    pair(f, T_UUID2);
    assert_true(kek_exists(T_UUID2));
    struct secret *out = NULL;
    assert_rc(token_unwrap(&f->ctx, T_UUID2, T_PIN, blob, sizeof(blob), &out, &err), -EBADMSG, &err);
    assert_err_contains(&err, "does not authenticate");
    secret_free(key);
}

/* With the TPM's device secret the token wraps an inner key and the container key is derived
 * from both (keywrap.h): the blob is marked bound, only the secret opens it, and the key the
 * container gets is not what the token holds. */
static void device_bound_round_trip(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *ds = NULL, *other = NULL, *key = NULL, *inner = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &ds, &err), 0, &err);
    assert_rc(secret_random(KEYWRAP_DEVICE_SECRET_LEN, &other, &err), 0, &err);
    pair(f, T_UUID);
    f->ctx.device_secret = ds;
    new_key(f, &key, blob);
    assert_int_equal(blob[5], KEYWRAP_FLAG_DEVICE_BOUND);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    /* Another device's secret gives another key. */
    f->ctx.device_secret = other;
    assert_rc(token_unwrap(&f->ctx, T_UUID, T_PIN, blob, sizeof(blob), &inner, &err), 0, &err);
    assert_memory_not_equal(inner->data, key->data, KEYWRAP_KEY_LEN);
    secret_free(inner);
    /* Without a secret the bound blob is refused, not opened to the inner key. */
    f->ctx.device_secret = NULL;
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "bound to a device secret");
    secret_free(ds);
    secret_free(other);
    secret_free(key);
}

static void tampered_blob_fails(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    /* Nonce, ciphertext and tag: each authenticated by the token's GCM. */
    static const size_t at[] = {KEYWRAP_NONCE_OFFSET, KEYWRAP_CT_OFFSET, KEYWRAP_CT_OFFSET + 63, KEYWRAP_TAG_OFFSET,
                                KEYWRAP_BLOB_LEN - 1};
    for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
        blob[at[i]] ^= 0x01;
        assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EBADMSG, &err);
        blob[at[i]] ^= 0x01;
    }
    blob[7] = 1;
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EINVAL, &err);
    blob[7] = 0;
    blob[6] = KEYWRAP_TOKEN_SOFT;
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "wrapped by a soft token, but container");
    blob[6] = KEYWRAP_TOKEN_PKCS11;
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    secret_free(key);
}

static void key_object_is_not_extractable(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    pair(f, T_UUID);
    struct p11 *p = session(T_PIN);
    CK_OBJECT_HANDLE h;
    tm_err err = {0};
    assert_rc(p11_find_kek(p, T_UUID, &h, &err), 0, &err);
    uint8_t value[64];
    CK_ATTRIBUTE get_value = {CKA_VALUE, value, sizeof(value)};
    CK_RV rv = p->f->C_GetAttributeValue(p->session, h, &get_value, 1);
    assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal((long)get_value.ulValueLen, (long)CK_UNAVAILABLE_INFORMATION);
    CK_BBOOL token, priv, sensitive, extractable, never_extractable, wrap, encrypt;
    CK_ULONG len;
    CK_KEY_TYPE type;
    CK_ATTRIBUTE attrs[] = {
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &priv, sizeof(priv)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable)},
        {CKA_WRAP, &wrap, sizeof(wrap)},
        {CKA_ENCRYPT, &encrypt, sizeof(encrypt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
    };
    assert_int_equal(p->f->C_GetAttributeValue(p->session, h, attrs, ARRAY_SIZE(attrs)), CKR_OK);
    assert_true(token && priv && sensitive && never_extractable && encrypt);
    assert_false(extractable || wrap);
    assert_int_equal(len, 32);
    assert_int_equal(type, CKK_AES);
    /* Nor can it be made extractable afterwards. */
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE set = {CKA_EXTRACTABLE, &yes, sizeof(yes)};
    assert_int_not_equal(p->f->C_SetAttributeValue(p->session, h, &set, 1), CKR_OK);
    p11_close(p);
    /* Private: without a login it is not even visible. */
    struct p11_config cfg = {.module = SOFTHSM_MODULE, .label = LABEL};
    assert_rc(p11_open(&cfg, &p, &err), 0, &err);
    assert_rc(p11_find_kek(p, T_UUID, &h, &err), -ENOKEY, &err);
    p11_close(p);
}

static void pair_refusals(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    tm_err err = {0};
    /* Wrong PIN: nothing is created. */
    assert_rc(token_pair(&f->ctx, T_UUID, &f->spec, "0000", NULL, &err), -EACCES, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    assert_false(kek_exists(T_UUID));
    pair(f, T_UUID);
    assert_rc(token_pair(&f->ctx, T_UUID, &f->spec, T_PIN, NULL, &err), -EEXIST, &err);
    assert_err_contains(&err, "already has a token");
    /* Forgotten without the PIN, the key object stays, and blocks a new pairing on the token. */
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), TOKEN_WIPE_KEY_LEFT, &err);
    assert_true(kek_exists(T_UUID));
    assert_rc(token_pair(&f->ctx, T_UUID, &f->spec, T_PIN, NULL, &err), -EEXIST, &err);
    assert_err_contains(&err, "already holds a key object \"trustme:" T_UUID "\"");
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    struct token_spec bad = f->spec;
    bad.pkcs11_module = "relative.so";
    assert_rc(token_pair(&f->ctx, T_UUID2, &bad, T_PIN, NULL, &err), -EINVAL, &err);
    bad = f->spec;
    bad.pkcs11_label = NULL;
    assert_rc(token_pair(&f->ctx, T_UUID2, &bad, T_PIN, NULL, &err), -EINVAL, &err);
    assert_err_contains(&err, "give its label or its serial");
    bad.pkcs11_label = "123456789012345678901234567890123";
    assert_rc(token_pair(&f->ctx, T_UUID2, &bad, T_PIN, NULL, &err), -EINVAL, &err);
    assert_rc(token_pair(&f->ctx, T_UUID2, &f->spec, "12", NULL, &err), -EINVAL, &err);
}

/* The path the dynamic linker loaded this process's C library from. */
static void own_libc_path(char *buf, size_t size)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    struct link_map *map = NULL;
    assert_non_null(libc);
    assert_int_equal(dlinfo(libc, RTLD_DI_LINKMAP, &map), 0);
    assert_true(map->l_name[0] == '/');
    snprintf(buf, size, "%s", map->l_name);
    dlclose(libc);
}

static void wrong_module_or_token(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    tm_err err = {0};
    struct token_spec s = f->spec;
    s.pkcs11_module = "/nonexistent/libpkcs11.so";
    assert_rc(token_pair(&f->ctx, T_UUID, &s, T_PIN, NULL, &err), -ENOENT, &err);
    assert_err_contains(&err, "PKCS#11 module /nonexistent/libpkcs11.so");
    s.pkcs11_module = "/etc/passwd";
    assert_rc(token_pair(&f->ctx, T_UUID, &s, T_PIN, NULL, &err), -ELIBBAD, &err);
    assert_err_contains(&err, "cannot load PKCS#11 module /etc/passwd");
    /* A shared library, but not a PKCS#11 module: our own C library, where this architecture
     * keeps it (a fixed x86_64 path was not there on arm64, and under qemu-user it was the build
     * machine's library, which cannot load at all). */
    char libc_path[PATH_MAX];
    own_libc_path(libc_path, sizeof(libc_path));
    s.pkcs11_module = libc_path;
    assert_rc(token_pair(&f->ctx, T_UUID, &s, T_PIN, NULL, &err), -ELIBBAD, &err);
    assert_err_contains(&err, "is not a PKCS#11 module (no C_GetFunctionList)");
    s = f->spec;
    s.pkcs11_label = "no-such-token";
    assert_rc(token_pair(&f->ctx, T_UUID, &s, T_PIN, NULL, &err), -ENODEV, &err);
    assert_err_contains(&err, "no PKCS#11 token labelled \"no-such-token\" is initialised");
    assert_err_contains(&err, "tokens present: \"" LABEL "\"");
    /* A label is matched whole, not as a prefix. */
    s.pkcs11_label = "trustme";
    assert_rc(token_pair(&f->ctx, T_UUID, &s, T_PIN, NULL, &err), -ENODEV, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
}

static void pair_by_serial(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct p11 *p = session(T_PIN);
    CK_TOKEN_INFO ti;
    assert_int_equal(p->f->C_GetTokenInfo(p->slot, &ti), CKR_OK);
    p11_close(p);
    char serial[17];
    memcpy(serial, ti.serialNumber, 16);
    serial[16] = '\0';
    for (int i = 15; i >= 0 && serial[i] == ' '; i--)
        serial[i] = '\0';
    f->spec.pkcs11_label = NULL;
    f->spec.pkcs11_serial = serial;
    pair(f, T_UUID);
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    new_key(f, &key, blob);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    f->spec.pkcs11_serial = "0000000000000000";
    assert_rc(token_pair(&f->ctx, T_UUID2, &f->spec, T_PIN, NULL, &err), -ENODEV, &err);
    assert_err_contains(&err, "with serial \"0000000000000000\"");
    secret_free(key);
}

/* --- PINs --- */

static void wrong_pins_lock(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 2 tries left");
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 1);
    assert_rc(unwrap_expect(f, T_PIN, blob, key, &err), 0, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, "0001", blob, NULL, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 1 try left");
    assert_rc(unwrap_expect(f, "0002", blob, NULL, &err), -EACCES, &err);
    assert_err_contains(&err, "now locked after 3 wrong PINs");
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EPERM, &err);
    assert_string_equal(err.msg, "locked after 3 wrong PINs: unlock it with the PUK "
                                 "(trustme token unlock)");
    assert_true(tt_status(&f->ctx, T_UUID).locked);
    /* A locked token is refused before its module is even loaded. */
    char path[PATH_MAX];
    tt_path(path, f->state, T_UUID, ".token");
    _cleanup_free_ char *record = tt_read(path);
    tt_write(path, "{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":\"/nonexistent.so\","
                   "\"label\":\"" LABEL "\"}}");
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EPERM, &err);
    /* An unreachable module is not a wrong PIN, and costs no attempt. */
    assert_rc(token_unlock(&f->ctx, T_UUID, SO_PIN, T_PIN2, NULL, 0, &rk_unused, &err), -ENOENT, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).puk_failures, 0);
    tt_write(path, record);
    secret_free(key);
}

static void unlock_with_so_pin(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    for (int i = 0; i < 3; i++)
        assert_rc(unwrap_expect(f, "0000", blob, NULL, &err), -EACCES, &err);
    assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PUK: 9 tries left");
    assert_rc(token_unlock(&f->ctx, T_UUID, SO_PIN, T_PIN2, NULL, 0, &rk_unused, &err), 0, &err);
    struct token_status st = tt_status(&f->ctx, T_UUID);
    assert_false(st.locked);
    assert_int_equal(st.pin_failures, 0);
    assert_int_equal(st.puk_failures, 0);
    assert_rc(unwrap_expect(f, T_PIN2, blob, key, &err), 0, &err);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EACCES, &err);
    secret_free(key);
}

static void wrong_so_pins_block(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    tm_err err = {0};
    pair(f, T_UUID);
    for (int i = 0; i < 10; i++)
        assert_rc(token_unlock(&f->ctx, T_UUID, "00000000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
    assert_err_contains(&err, "blocked for good after 10 wrong PUKs");
    assert_rc(token_unlock(&f->ctx, T_UUID, SO_PIN, T_PIN2, NULL, 0, &rk_unused, &err), -EKEYREVOKED, &err);
    assert_true(tt_status(&f->ctx, T_UUID).blocked);
    /* Blocked also refuses the PIN, so a wipe with the PIN cannot reach the key object. */
    assert_rc(token_wipe(&f->ctx, T_UUID, T_PIN, &err), -EKEYREVOKED, &err);
    assert_rc(token_wipe(&f->ctx, T_UUID, NULL, &err), TOKEN_WIPE_KEY_LEFT, &err);
    assert_false(tt_status(&f->ctx, T_UUID).paired);
}

static void change_pin(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    assert_rc(token_change_pin(&f->ctx, T_UUID, "0000", T_PIN2, NULL, 0, &rk_unused, &err), -EACCES, &err);
    assert_string_equal(err.msg, "wrong PIN: 2 tries left");
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN, T_PIN2, NULL, 0, &rk_unused, &err), 0, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EACCES, &err);
    assert_rc(unwrap_expect(f, T_PIN2, blob, key, &err), 0, &err);
    /* The token's own rules apply on top of ours: SoftHSM takes 4..255 bytes. */
    assert_rc(token_change_pin(&f->ctx, T_UUID, T_PIN2, "12", NULL, 0, &rk_unused, &err), -EINVAL, &err);
    secret_free(key);
}

/* --- wipe --- */

static void wipe_destroys_the_key_object(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    pair(f, T_UUID2);
    new_key(f, &key, blob);
    /* A wrong PIN wipes nothing, so the user can try again. */
    assert_rc(token_wipe(&f->ctx, T_UUID, "0000", &err), -EACCES, &err);
    assert_true(tt_status(&f->ctx, T_UUID).paired);
    assert_true(kek_exists(T_UUID));
    assert_rc(token_wipe(&f->ctx, T_UUID, T_PIN, &err), 0, &err);
    assert_false(kek_exists(T_UUID));
    assert_false(listed_by_pkcs11_tool(T_UUID));
    assert_true(listed_by_pkcs11_tool(T_UUID2)); /* the witness does see objects */
    assert_false(tt_status(&f->ctx, T_UUID).paired);
    char path[PATH_MAX];
    tt_path(path, f->state, T_UUID, ".tries");
    assert_false(tt_exists(path));
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -ENOKEY, &err);
    assert_rc(token_wipe(&f->ctx, T_UUID, T_PIN, &err), 0, &err);
    /* Paired anew, the old blob is worthless. */
    pair(f, T_UUID);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -EBADMSG, &err);
    secret_free(key);
}

static void key_object_gone_from_the_token(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    struct p11 *p = session(T_PIN);
    assert_rc(p11_destroy_kek(p, T_UUID, &err), 0, &err);
    p11_close(p);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -ENOKEY, &err);
    assert_err_contains(&err, "holds no key object \"trustme:" T_UUID "\"");
    /* The PIN was right. */
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    /* Wiping a record whose object is gone is fine. */
    assert_rc(token_wipe(&f->ctx, T_UUID, T_PIN, &err), 0, &err);
    secret_free(key);
}

static void token_removed(void **state)
{
    NEED_SOFTHSM();
    struct fixture *f = *state;
    struct secret *key = NULL;
    uint8_t blob[KEYWRAP_BLOB_LEN];
    tm_err err = {0};
    pair(f, T_UUID);
    new_key(f, &key, blob);
    char tokens[PATH_MAX];
    snprintf(tokens, sizeof(tokens), "%s/softhsm", f->dir);
    assert_int_equal(rm_rf(tokens), 0);
    assert_int_equal(mkdir(tokens, 0700), 0);
    assert_rc(unwrap_expect(f, T_PIN, blob, NULL, &err), -ENODEV, &err);
    assert_int_equal(tt_status(&f->ctx, T_UUID).pin_failures, 0);
    secret_free(key);
}

/* --- what SoftHSM offers --- */

static void softhsm_mechanisms(void **state)
{
    NEED_SOFTHSM();
    (void)state;
    struct p11 *p = session(T_PIN);
    static const struct {
        CK_MECHANISM_TYPE m;
        const char *name;
    } mechs[] = {
        {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN"},   {CKM_AES_GCM, "CKM_AES_GCM"},
        {CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP"}, {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
        {CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(mechs); i++) {
        /* Zeroed: for CKM_AES_GCM, SoftHSM 2.6.1 ORs its flags into whatever the caller's
         * structure held instead of setting them. */
        CK_MECHANISM_INFO mi = {0};
        CK_RV rv = p->f->C_GetMechanismInfo(p->slot, mechs[i].m, &mi);
        if (rv != CKR_OK) {
            printf("  %-22s %s\n", mechs[i].name, p11_rv_name(rv));
            continue;
        }
        printf("  %-22s keys %lu..%lu bytes, flags 0x%lx%s%s%s%s%s\n", mechs[i].name, (unsigned long)mi.ulMinKeySize,
               (unsigned long)mi.ulMaxKeySize, (unsigned long)mi.flags, mi.flags & CKF_ENCRYPT ? " encrypt" : "",
               mi.flags & CKF_DECRYPT ? " decrypt" : "", mi.flags & CKF_WRAP ? " wrap" : "",
               mi.flags & CKF_UNWRAP ? " unwrap" : "", mi.flags & CKF_GENERATE ? " generate" : "");
    }
    CK_MECHANISM_INFO gcm = {0};
    assert_int_equal(p->f->C_GetMechanismInfo(p->slot, CKM_AES_GCM, &gcm), CKR_OK);
    assert_true((gcm.flags & CKF_ENCRYPT) && (gcm.flags & CKF_DECRYPT));
    p11_close(p);
}

int main(void)
{
    have_softhsm = access(SOFTHSM_MODULE, R_OK) == 0;
    if (!have_softhsm)
        printf("SKIP: %s is missing (apt-get install softhsm2; scripts/install-deps.sh)\n", SOFTHSM_MODULE);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(pair_and_round_trip),
        T(device_bound_round_trip),
        T(tampered_blob_fails),
        T(key_object_is_not_extractable),
        T(pair_refusals),
        T(wrong_module_or_token),
        T(pair_by_serial),
        T(wrong_pins_lock),
        T(unlock_with_so_pin),
        T(wrong_so_pins_block),
        T(change_pin),
        T(wipe_destroys_the_key_object),
        T(key_object_gone_from_the_token),
        T(token_removed),
        T(softhsm_mechanisms),
    };
    return cmocka_run_group_tests_name("token_pkcs11", tests, NULL, NULL);
}
