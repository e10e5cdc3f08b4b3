/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The daemon object's own services to every subsystem: the audit log, the helper binaries and
 * their users, the end of a shutdown. */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "daemon.h"
#include "log.h"
#include "version.h"

void daemon_audit(struct daemon *d, const char *event, const char *result, const struct container *c, const char *actor,
                  const char *fmt, ...)
{
    char detail[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (!actor)
        actor = c && c->actor[0] ? c->actor : "trustmed";
    tm_err err;
    if (tm_audit_append(&d->audit, event, result, c ? container_label(c) : NULL, actor, detail, &err) < 0)
        log_error("audit: %s (event %s lost)", err.msg, event);
    if (d->audit.tamper[0]) {
        char what[sizeof(d->audit.tamper)];
        memcpy(what, d->audit.tamper, sizeof(what));
        d->audit.tamper[0] = '\0';
        log_warn("audit log: %s", what);
        if (tm_audit_append(&d->audit, "audit.tampered", "fail", NULL, "trustmed", what, &err) < 0)
            log_error("audit: %s", err.msg);
    }
}

void daemon_observe(struct daemon *d, const struct container_observer *o)
{
    assert(d->nobservers < DAEMON_OBSERVERS_MAX);
    d->observers[d->nobservers++] = o;
}

static bool any_active(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (state_is_active(c->state))
            return true;
    return false;
}

void daemon_hold_exit(struct daemon *d, daemon_exit_ready_fn *ready)
{
    assert(d->nexit_ready < DAEMON_EXIT_HOLDS_MAX);
    d->exit_ready[d->nexit_ready++] = ready;
}

void daemon_maybe_exit(struct daemon *d)
{
    if (!d->shutting_down || any_active(d))
        return;
    /* Every hold is asked (none short-circuits), so each starts its final work at once. */
    bool ready = true;
    for (size_t i = 0; i < d->nexit_ready; i++)
        ready &= d->exit_ready[i](d);
    if (ready)
        tm_loop_quit(d->loop, 0);
}

/* Where a helper binary is: given; for an installed trustmed (the one in TRUSTME_SBINDIR) only
 * TRUSTME_LIBEXECDIR, fixed at build time, so that an installation never runs a helper from
 * a build tree or from whatever lies next to it; any other trustmed is a build tree's, and
 * takes the helper from that tree's src/<build_dir>. */
int daemon_find_helper(const char *given, const char *name, const char *build_dir, char *out, size_t size, tm_err *err)
{
    if (given[0]) {
        snprintf(out, size, "%s", given);
        return access(out, X_OK) == 0 ? 0 : tm_err_sys(err, "%s", out);
    }
    char exe[PATH_MAX], installed[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return tm_err_sys(err, "cannot find trustmed's own path");
    exe[n] = '\0';
    bool is_installed = realpath(TRUSTME_SBINDIR, installed) &&
                        strlen(installed) + sizeof("/trustmed") <= sizeof(installed) &&
                        strcmp(strcat(installed, "/trustmed"), exe) == 0;
    *strrchr(exe, '/') = '\0';
    if (is_installed)
        snprintf(out, size, "%s/%s", TRUSTME_LIBEXECDIR, name);
    else
        snprintf(out, size, "%s%s/%s", exe, build_dir, name);
    if (access(out, X_OK) == 0)
        return 0;
    return tm_err_sys(err, "cannot find %s (%s trustmed looks for %s)", name,
                      is_installed ? "an installed" : "a build tree's", out);
}

/* The helper services' users are system users (useradd --system; scripts/install-deps.sh), so
 * they are read from /etc/passwd and /etc/group themselves: getpwnam and getgrouplist would load
 * the NSS modules of nsswitch.conf (libnss_systemd and libm here), which stay mapped in trustmed
 * for good, about 600 KiB of its resident memory. */
static const struct passwd *files_user(const char *user)
{
    _cleanup_fclose_ FILE *f = fopen("/etc/passwd", "re");
    const struct passwd *pw;
    while (f && (pw = fgetpwent(f)))
        if (strcmp(pw->pw_name, user) == 0)
            return pw; /* fgetpwent's static buffer: valid until its next call */
    return NULL;
}

/* gid first, then every group of /etc/group that lists user, as getgrouplist would. */
static int files_groups(const char *user, gid_t gid, gid_t *groups, int *ngroups)
{
    int max = *ngroups, n = 0;
    if (max < 1)
        return -E2BIG;
    groups[n++] = gid;
    _cleanup_fclose_ FILE *f = fopen("/etc/group", "re");
    const struct group *gr;
    while (f && (gr = fgetgrent(f))) {
        if (gr->gr_gid == gid)
            continue;
        for (char **m = gr->gr_mem; m && *m; m++) {
            if (strcmp(*m, user) != 0)
                continue;
            if (n == max)
                return -E2BIG;
            groups[n++] = gr->gr_gid;
            break;
        }
    }
    *ngroups = n;
    return 0;
}

/* A helper service's system user: it must exist in /etc/passwd and not be root. */
int daemon_helper_user(const char *user, const char *what, uid_t *ret_uid, gid_t *ret_gid, gid_t *groups, int *ngroups,
                       tm_err *err)
{
    const struct passwd *pw = files_user(user);
    if (!pw)
        return tm_err_set(err, ENOENT,
                          "%s's user \"%s\" is not in /etc/passwd (create it with systemd-sysusers, "
                          "from trustme's sysusers.d/trustme.conf; scripts/install-deps.sh does)",
                          what, user);
    if (pw->pw_uid == 0)
        return tm_err_set(err, EINVAL, "%s must not run as root", what);
    *ret_uid = pw->pw_uid;
    *ret_gid = pw->pw_gid;
    int max = *ngroups;
    if (files_groups(user, pw->pw_gid, groups, ngroups) < 0)
        return tm_err_set(err, E2BIG, "%s's user is in more than %d groups", what, max);
    return 0;
}
