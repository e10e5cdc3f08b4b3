/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tries.h"

#include <errno.h>
#include <stdio.h>

#include "cleanup.h"
#include "fileio.h"
#include "fs_err.h"
#include "jsonutil.h"

#define TRIES_FILE_MAX 4096

int tries_load(const char *path, struct tries *ret, tm_err *err)
{
    static const char *const keys[] = {"pin_failures", "puk_failures", NULL};
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = fs_err(read_file(path, TRIES_FILE_MAX, &data, &len, err), err);
    if (r == -ENOENT) {
        *ret = (struct tries){0, 0};
        return 0;
    }
    if (r < 0)
        return r;
    json_t *obj;
    if ((r = tm_json_parse_object(data, len, &obj, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    int64_t pin, puk;
    if ((r = tm_json_check_keys(obj, "$", keys, err)) < 0 ||
        (r = tm_json_get_int(obj, "$", "pin_failures", true, 0, TRIES_PIN_MAX, &pin, err)) < 0 ||
        (r = tm_json_get_int(obj, "$", "puk_failures", true, 0, TRIES_PUK_MAX, &puk, err)) < 0) {
        json_decref(obj);
        return tm_err_prefix(err, "%s", path);
    }
    json_decref(obj);
    *ret = (struct tries){(int)pin, (int)puk};
    return 0;
}

int tries_store(const char *path, const struct tries *t, tm_err *err)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "{\"pin_failures\":%d,\"puk_failures\":%d}\n", t->pin_failures, t->puk_failures);
    return fs_err(write_file_atomic(path, buf, (size_t)n, 0600, err), err);
}

int tries_check(const struct tries *t, enum tries_kind kind, tm_err *err)
{
    if (t->puk_failures >= TRIES_PUK_MAX)
        return tm_err_set(err, EKEYREVOKED,
                          "token blocked for good after %d wrong PUKs: only a "
                          "wipe helps (trustme token wipe), and the container's data is lost",
                          TRIES_PUK_MAX);
    if (kind == TRIES_PIN && t->pin_failures >= TRIES_PIN_MAX)
        return tm_err_set(err, EPERM,
                          "locked after %d wrong PINs: unlock it with the PUK "
                          "(trustme token unlock)",
                          TRIES_PIN_MAX);
    return 0;
}

int tries_begin(const char *path, enum tries_kind kind, struct tries *t, tm_err *err)
{
    int r = tries_load(path, t, err);
    if (r < 0 || (r = tries_check(t, kind, err)) < 0)
        return r;
    struct tries counted = *t;
    if (kind == TRIES_PIN)
        counted.pin_failures++;
    else
        counted.puk_failures++;
    if ((r = tries_store(path, &counted, err)) < 0)
        return tm_err_prefix(err, "cannot record the attempt, so it is not made");
    return 0;
}

static int wrong(enum tries_kind kind, int failures, tm_err *err)
{
    const char *what = kind == TRIES_PIN ? "PIN" : "PUK";
    int left = (kind == TRIES_PIN ? TRIES_PIN_MAX : TRIES_PUK_MAX) - failures;
    if (left > 0)
        return tm_err_set(err, EACCES, "wrong %s: %d %s left", what, left, left == 1 ? "try" : "tries");
    if (kind == TRIES_PIN)
        return tm_err_set(err, EACCES,
                          "wrong PIN: the token is now locked after %d wrong PINs: "
                          "unlock it with the PUK (trustme token unlock)",
                          TRIES_PIN_MAX);
    return tm_err_set(err, EACCES,
                      "wrong PUK: the token is now blocked for good after %d wrong "
                      "PUKs: only a wipe helps, and the container's data is lost",
                      TRIES_PUK_MAX);
}

int tries_end(const char *path, enum tries_kind kind, struct tries *t, enum tries_outcome outcome, tm_err *err)
{
    int *counter = kind == TRIES_PIN ? &t->pin_failures : &t->puk_failures;
    switch (outcome) {
    case TRIES_WRONG:
        /* Already on disk since tries_begin. */
        (*counter)++;
        return wrong(kind, *counter, err);
    case TRIES_VERIFIED: *counter = 0; break;
    case TRIES_UNTRIED: break; /* *t still holds the counts from before the attempt */
    }
    return tries_store(path, t, err);
}
