/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtpm_owner.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "vtpm.h"

#define OWNER_RECORD "vtpm-owner"
#define REFS_RECORD "vtpm-owner-refs"

static void record_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" OWNER_RECORD, dir);
}

static void refs_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" REFS_RECORD, dir);
}

int vtpm_owner_read(const struct container *c, struct owner_stmt *ret, tm_err *err)
{
    char path[PATH_MAX + 16];
    record_path(c, path, sizeof(path));
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return -ENOENT;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = read_file(path, OWNER_STMT_MAX, &data, &len, err);
    if (r < 0)
        return r;
    return owner_stmt_parse(data, len, NULL, 0, ret, err);
}

int vtpm_owner_digest(const struct container *c, uint8_t out[32])
{
    char path[PATH_MAX + 16];
    record_path(c, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err err = {0};
    int r = read_file(path, OWNER_STMT_MAX, &data, &len, &err);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    tm_sha256(data, len, out);
    return 1;
}

static int current_ek(const struct container *c, uint8_t out[34], tm_err *err)
{
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    if (vtpm_eks(c, eks, &n) < 0)
        return tm_err_set(err, EIO, "the vTPM's EK record is unreadable");
    for (size_t i = 0; i < n; i++)
        if (strcmp(eks[i].kind, "ecc") == 0) {
            memcpy(out, eks[i].name, 34);
            return 0;
        }
    return tm_err_set(err, ENOENT, "%s's vTPM has no EKs yet (start it once)", c->cfg->name);
}

/* The owner's reference values: signed by the recorded owner, for this container and EK. */
static int install_refs(struct container *c, const uint8_t *text, size_t len, struct owner_stmt *ret, tm_err *err)
{
    struct owner_stmt owner;
    tm_err oerr = {0};
    int r = vtpm_owner_read(c, &owner, &oerr);
    if (r < 0)
        return tm_err_set(err, EPERM, "reference values need a recorded owner (trustme vtpm owner): %s", oerr.msg);
    if ((r = owner_stmt_parse((const char *)text, len, owner.key, owner.key_len, ret, err)) < 0)
        return r;
    if (strcmp(ret->container, c->uuid) != 0 || memcmp(ret->ek, owner.ek, sizeof(owner.ek)) != 0)
        return tm_err_set(err, EINVAL, "the reference values name another container or EK than its owner's");
    char path[PATH_MAX + 16];
    refs_path(c, path, sizeof(path));
    return write_file_atomic(path, text, len, 0600, err);
}

int vtpm_owner_install(struct container *c, const uint8_t *text, size_t len, struct owner_stmt *ret, tm_err *err)
{
    struct owner_stmt s, old;
    uint8_t ek[34];
    if (len > 21 && memcmp(text, "trustme-vtpm-refs-v1\n", 21) == 0)
        return install_refs(c, text, len, ret, err);
    int r = owner_stmt_parse((const char *)text, len, NULL, 0, &s, err);
    if (r < 0)
        return r;
    if (s.type != OWNER_STMT_OWNER)
        return tm_err_set(err, EINVAL, "a release statement is given to `trustme vtpm reset --release`");
    if (strcmp(s.container, c->uuid) != 0)
        return tm_err_set(err, EINVAL, "the statement names another container (%s)", s.container);
    if ((r = current_ek(c, ek, err)) < 0)
        return r;
    if (memcmp(s.ek, ek, sizeof(ek)) != 0)
        return tm_err_set(err, EINVAL, "the statement names another EK than %s's vTPM has", c->cfg->name);
    tm_err rerr = {0};
    r = vtpm_owner_read(c, &old, &rerr);
    if (r == 0 && old.mandatory && (old.key_len != s.key_len || memcmp(old.key, s.key, s.key_len) != 0))
        return tm_err_set(err, EPERM, "%s's vTPM has a mandatory owner; only that owner's key replaces its statement",
                          c->cfg->name);
    char path[PATH_MAX + 16];
    record_path(c, path, sizeof(path));
    if ((r = write_file_atomic(path, text, len, 0600, err)) < 0)
        return r;
    *ret = s;
    return 0;
}

int vtpm_owner_may_destroy(const struct container *c, const uint8_t *release, size_t len, tm_err *err)
{
    struct owner_stmt owner, rel;
    tm_err rerr = {0};
    int r = vtpm_owner_read(c, &owner, &rerr);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        /* An owner record that does not verify any more is not taken as "no owner". */
        return tm_err_set(err, EPERM, "%s's vTPM owner record is unreadable (%s): nothing destroys it", c->cfg->name,
                          rerr.msg);
    if (!owner.mandatory)
        return 0;
    if (!release)
        return tm_err_set(err, EPERM,
                          "%s's vTPM has a mandatory owner: destroying it needs a release statement signed "
                          "by that owner (trustme-owner release; trustme vtpm reset --release FILE)",
                          c->cfg->name);
    if (owner_stmt_parse((const char *)release, len, owner.key, owner.key_len, &rel, &rerr) < 0)
        return tm_err_set(err, EPERM, "the release is refused: %s", rerr.msg);
    if (rel.type != OWNER_STMT_RELEASE || strcmp(rel.container, c->uuid) != 0 ||
        memcmp(rel.ek, owner.ek, sizeof(rel.ek)) != 0)
        return tm_err_set(err, EPERM, "the release is refused: it is not a release of this container's vTPM");
    return 0;
}

void vtpm_owner_forget(const struct container *c)
{
    char path[PATH_MAX + 16];
    record_path(c, path, sizeof(path));
    unlink(path);
    refs_path(c, path, sizeof(path));
    unlink(path);
}

int vtpm_owner_check_events(const struct container *c, const char *log, tm_err *err)
{
    char path[PATH_MAX + 16];
    refs_path(c, path, sizeof(path));
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return 0;
    struct owner_stmt owner, refs;
    tm_err rerr = {0};
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    /* Recorded values that no longer verify refuse the start: they are never skipped. */
    if (vtpm_owner_read(c, &owner, &rerr) < 0 || read_file(path, OWNER_STMT_MAX, &data, &len, &rerr) < 0 ||
        owner_stmt_parse(data, len, owner.key, owner.key_len, &refs, &rerr) < 0)
        return tm_err_set(err, EPERM, "the vTPM owner's reference values do not verify: %s", rerr.msg);
    for (const char *p = log ? log : ""; *p;) {
        const char *eol = strchr(p, '\n');
        char line[TM_EVENT_TYPE_MAX + TM_EVENT_NAME_MAX + 80], type[TM_EVENT_TYPE_MAX + 2], hex[66];
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        unsigned pcr;
        uint8_t sha[32];
        int off = 0;
        if (n >= sizeof(line))
            return tm_err_set(err, EINVAL, "a measurement line is too long");
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (eol ? 1 : 0);
        if (sscanf(line, "%u %32s %65s %n", &pcr, type, hex, &off) != 3 || off <= 0 ||
            tm_hex_decode_str(hex, sha, 32, 0, NULL) < 0)
            return tm_err_set(err, EINVAL, "a measurement is malformed");
        bool ok = false;
        for (size_t i = 0; i < refs.nrefs && !ok; i++)
            ok = strcmp(refs.refs[i].type, type) == 0 && memcmp(refs.refs[i].sha256, sha, 32) == 0;
        if (!ok)
            return tm_err_set(err, EPERM,
                              "the measurement %s %s (%s) is not one of the vTPM owner's reference values: "
                              "not started",
                              type, line + off, hex);
    }
    return 0;
}
