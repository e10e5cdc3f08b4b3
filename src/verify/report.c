/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The report, for people (one aligned line per check) and for scripts (--json, a stable
 * format: docs/ATTESTATION.md). */
#include <errno.h>
#include <jansson.h>

#include "attest_check.h"
#include "json_cleanup.h"
#include "jsonutil.h"

void attest_report_add(struct attest_report *rep, const struct attest_check *c)
{
    if (rep->n_extra >= ATTEST_EXTRA_MAX) {
        rep->trusted = false;
        return;
    }
    rep->extra[rep->n_extra++] = *c;
    rep->trusted &= c->ok;
}

/* The eight checks, then the extra ones. */
static const struct attest_check *nth_check(const struct attest_report *rep, size_t i)
{
    return i < ATTEST_CHECK_COUNT ? &rep->checks[i] : &rep->extra[i - ATTEST_CHECK_COUNT];
}

void attest_report_print(FILE *out, const struct attest_report *rep)
{
    for (size_t i = 0; i < ATTEST_CHECK_COUNT + rep->n_extra; i++) {
        const struct attest_check *c = nth_check(rep, i);
        fprintf(out, "%-18s %-4s %s\n", c->name, c->ok ? "ok" : "FAIL", c->detail);
    }
    fprintf(out, "verdict: %s (%zu events)\n", rep->trusted ? "trusted" : "untrusted", rep->events);
}

int attest_report_print_json(FILE *out, const struct attest_report *rep)
{
    _cleanup_json_ json_t *o = json_object();
    json_t *checks = json_array();
    if (!o || !checks) {
        json_decref(checks);
        return -ENOMEM;
    }
    json_object_set_new(o, "verdict", json_string(rep->trusted ? "trusted" : "untrusted"));
    json_object_set_new(o, "checks", checks);
    for (size_t i = 0; i < ATTEST_CHECK_COUNT + rep->n_extra; i++) {
        const struct attest_check *c = nth_check(rep, i);
        json_t *e = json_object();
        if (!e || json_array_append_new(checks, e) < 0) /* takes e even when it fails */
            return -ENOMEM;
        json_object_set_new(e, "name", json_string(c->name));
        json_object_set_new(e, "ok", json_boolean(c->ok));
        /* A detail may quote what the device sent. */
        json_object_set_new(e, "detail", tm_json_text(c->detail));
    }
    json_object_set_new(o, "events", json_integer((int64_t)rep->events));
    json_t *clock = NULL;
    if (rep->clock.valid) {
        if (!(clock = json_object()))
            return -ENOMEM;
        json_object_set_new(clock, "clock", json_integer((int64_t)rep->clock.clock));
        json_object_set_new(clock, "reset_count", json_integer(rep->clock.reset_count));
        json_object_set_new(clock, "restart_count", json_integer(rep->clock.restart_count));
        json_object_set_new(clock, "safe", json_boolean(rep->clock.safe));
    }
    json_object_set_new(o, "clock", clock);
    _cleanup_free_ char *s = json_dumps(o, JSON_FORMAT_FLAGS);
    if (!s)
        return -ENOMEM;
    if (fprintf(out, "%s\n", s) < 0)
        return -EIO;
    return 0;
}
