/* SPDX-License-Identifier: GPL-2.0-or-later */
/* SHA-256 (src/lib/sha256.c) against the FIPS 180-4 examples and against OpenSSL for every length
 * across the padding boundaries; each test runs twice, with the implementation chosen for this CPU
 * (trustme's SHA-NI code where it has them) and with nettle forced, so both are covered on any
 * machine. meson runs the suite a second time with NETTLE_FAT_OVERRIDE= (nettle without CPU
 * extensions).
 * And tm_sha256_fd (sha256_fd.c) on a temporary file. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"

#include "crypto.h"

static void expect_hex(const void *data, size_t len, const char *want)
{
    char hex[TM_SHA256_HEX_LEN + 1];
    assert_int_equal(tm_sha256_hex(data, len, hex), 0);
    assert_string_equal(hex, want);
}

static void fips_vectors(void **state)
{
    (void)state;
    expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect_hex(two_blocks, strlen(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void a_million_a(void **state)
{
    (void)state;
    char *m = malloc(1000000);
    memset(m, 'a', 1000000);
    expect_hex(m, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}

static void openssl_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned n;
    assert_int_equal(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
}

/* Deterministic pseudo-random bytes (xorshift), so that a failure can be reproduced. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)next_random();
}

/* Hashes data with update calls of random sizes, from 0 bytes to a few blocks. */
static void sha256_in_pieces(const uint8_t *data, size_t len, size_t max_piece, uint8_t out[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    size_t off = 0;
    while (off < len) {
        size_t piece = (size_t)(next_random() % (max_piece + 1));
        if (piece > len - off)
            piece = len - off;
        tm_sha256_update(&c, data + off, piece);
        off += piece;
    }
    tm_sha256_final(&c, out);
}

static void matches_openssl_at_every_length(void **state)
{
    (void)state;
    uint8_t buf[1000];
    fill_random(buf, sizeof(buf));
    for (size_t len = 0; len <= sizeof(buf); len++) {
        uint8_t ours[32], split[32], theirs[32];
        assert_int_equal(tm_sha256(buf, len, ours), 0);
        sha256_in_pieces(buf, len, 200, split);
        openssl_sha256(buf, len, theirs);
        assert_memory_equal(ours, theirs, 32);
        assert_memory_equal(split, theirs, 32);
    }
}

/* Several MiB, at an odd length and from an unaligned start, whole and in pieces. */
static void matches_openssl_on_megabytes(void **state)
{
    (void)state;
    const size_t len = 5 * 1024 * 1024 + 77;
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    fill_random(buf, len + 1);
    uint8_t ours[32], split[32], theirs[32];
    assert_int_equal(tm_sha256(buf + 1, len, ours), 0);
    sha256_in_pieces(buf + 1, len, 300000, split);
    openssl_sha256(buf + 1, len, theirs);
    assert_memory_equal(ours, theirs, 32);
    assert_memory_equal(split, theirs, 32);
    free(buf);
}

/* A hash in progress keeps the implementation it began with, whatever is forced meanwhile. */
static void switching_between_updates(void **state)
{
    (void)state;
    uint8_t buf[4096], ours[32], theirs[32];
    fill_random(buf, sizeof(buf));
    for (int first = 0; first < 2; first++) {
        tm_sha256_force_nettle(first);
        struct tm_sha256_ctx c;
        tm_sha256_init(&c);
        for (size_t off = 0; off < sizeof(buf); off += 512) {
            tm_sha256_force_nettle(off / 512 % 2 == 0);
            tm_sha256_update(&c, buf + off, 512);
        }
        tm_sha256_final(&c, ours);
        openssl_sha256(buf, sizeof(buf), theirs);
        assert_memory_equal(ours, theirs, 32);
    }
}

struct progress_log {
    unsigned calls;
    uint64_t last;
};

static void log_progress(uint64_t done, void *ud)
{
    struct progress_log *l = ud;
    assert_true(done >= l->last);
    l->calls++;
    l->last = done;
}

static void hashes_a_file(void **state)
{
    (void)state;
    /* Over 32 MiB, so that progress is due twice before the end, and not a multiple of a block. */
    const size_t len = 33 * 1024 * 1024 + 4097;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    fill_random(data, len);
    char path[] = "/tmp/test_sha256.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    /* Somewhere in the middle: tm_sha256_fd must hash from 0 and leave the offset here. */
    assert_int_equal(lseek(fd, 12345, SEEK_SET), 12345);

    uint8_t ours[32], theirs[32];
    uint64_t size = 0;
    struct progress_log l = {0};
    tm_err err = {0};
    assert_int_equal(tm_sha256_fd(fd, ours, &size, log_progress, &l, &err), 0);
    openssl_sha256(data, len, theirs);
    assert_memory_equal(ours, theirs, 32);
    assert_int_equal(size, len);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 12345);
    assert_int_equal(l.calls, 3); /* at 16 MiB, 32 MiB, and the end */
    assert_int_equal(l.last, len);

    /* Without the optional outputs, and an empty file. */
    assert_int_equal(tm_sha256_fd(fd, ours, NULL, NULL, NULL, NULL), 0);
    assert_memory_equal(ours, theirs, 32);
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(tm_sha256_fd(fd, ours, &size, NULL, NULL, &err), 0);
    openssl_sha256("", 0, theirs);
    assert_memory_equal(ours, theirs, 32);
    assert_int_equal(size, 0);
    close(fd);
    free(data);
}

static void file_errors_say_what_failed(void **state)
{
    (void)state;
    uint8_t out[32];
    tm_err err = {0};
    int fd = open("/tmp", O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(tm_sha256_fd(fd, out, NULL, NULL, NULL, &err), -EISDIR);
    assert_err_contains(&err, "cannot read at offset 0");
    close(fd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(tm_sha256_fd(p[0], out, NULL, NULL, NULL, &err), -ESPIPE);
    close(p[0]);
    close(p[1]);
}

static int use_best(void **state)
{
    (void)state;
    tm_sha256_force_nettle(false);
    return 0;
}

static int use_nettle(void **state)
{
    (void)state;
    tm_sha256_force_nettle(true);
    return strcmp(tm_sha256_impl(), "nettle") == 0 ? 0 : -1;
}

#define BOTH(test)                                          \
    {#test " (best)", test, use_best, use_best, NULL},      \
    {                                                       \
#test " (nettle)", test, use_nettle, use_best, NULL \
    }

int main(void)
{
    tm_sha256_force_nettle(false);
    print_message("implementation for this CPU: %s\n", tm_sha256_impl());
    const struct CMUnitTest tests[] = {
        BOTH(fips_vectors),
        BOTH(a_million_a),
        BOTH(matches_openssl_at_every_length),
        BOTH(matches_openssl_on_megabytes),
        cmocka_unit_test_teardown(switching_between_updates, use_best),
        BOTH(hashes_a_file),
        cmocka_unit_test(file_errors_say_what_failed),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
