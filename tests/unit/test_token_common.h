/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared by the token tests: a private state directory per test, and small file helpers. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "token.h"
#include "unit.h"

#define T_UUID "0d2b6c61-8c55-4d8e-9a0b-7f3e2c1d4a5b"
#define T_UUID2 "0d2b6c61-8c55-4d8e-9a0b-7f3e2c1d4a5c"
#define T_PIN "1234"
#define T_PIN2 "98765"
#define T_PUK "12345678"

/* token_change_pin/token_unlock results the test does not look at. */
static struct token_rekeyed rk_unused __attribute__((unused));

/* Expect r == want; on a mismatch, show the message before failing. */
#define assert_rc(expr, want, err)                                                     \
    do {                                                                               \
        int rc_ = (expr);                                                              \
        if (rc_ != (want)) {                                                           \
            print_error("%s returned %d (%s), expected %d; message: %s\n", #expr, rc_, \
                        rc_ < 0 ? strerror(-rc_) : "ok", (want), (err)->msg);          \
            fail();                                                                    \
        }                                                                              \
    } while (0)

static inline char *tt_mkdtemp(void)
{
    char tmpl[] = "/tmp/trustme-token-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static inline void tt_path(char out[PATH_MAX], const char *state_dir, const char *uuid, const char *suffix)
{
    snprintf(out, PATH_MAX, "%s/tokens/%s%s", state_dir, uuid, suffix);
}

static inline bool tt_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static inline char *tt_read(const char *path)
{
    char *data = NULL;
    tm_err err = {0};
    if (read_file(path, 1 << 20, &data, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    return data;
}

static inline void tt_write(const char *path, const char *data)
{
    tm_err err = {0};
    if (write_file_atomic(path, data, strlen(data), 0600, &err) < 0)
        fail_msg("%s", err.msg);
}

static inline mode_t tt_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static inline struct token_status tt_status(const struct token_ctx *ctx, const char *uuid)
{
    struct token_status st;
    tm_err err = {0};
    assert_rc(token_status(ctx, uuid, &st, &err), 0, &err);
    return st;
}
