/* The report, for people (one aligned line per check) and for scripts (--json, a stable
 * format: docs/ATTESTATION.md). */
#include <errno.h>
#include <json-c/json.h>

#include "attest_check.h"
#include "json_cleanup.h"

void attest_report_print(FILE *out, const struct attest_report *rep)
{
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++) {
        const struct attest_check *c = &rep->checks[i];
        fprintf(out, "%-18s %-4s %s\n", c->name, c->ok ? "ok" : "FAIL", c->detail);
    }
    fprintf(out, "verdict: %s (%zu events)\n", rep->trusted ? "trusted" : "untrusted",
            rep->events);
}

int attest_report_print_json(FILE *out, const struct attest_report *rep)
{
    _cleanup_json_ json_object *o = json_object_new_object();
    json_object *checks = json_object_new_array();
    if (!o || !checks) {
        json_object_put(checks);
        return -ENOMEM;
    }
    json_object_object_add(o, "verdict",
                           json_object_new_string(rep->trusted ? "trusted" : "untrusted"));
    json_object_object_add(o, "checks", checks);
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++) {
        const struct attest_check *c = &rep->checks[i];
        json_object *e = json_object_new_object();
        if (!e || json_object_array_add(checks, e) < 0) {
            json_object_put(e);
            return -ENOMEM;
        }
        json_object_object_add(e, "name", json_object_new_string(c->name));
        json_object_object_add(e, "ok", json_object_new_boolean(c->ok));
        json_object_object_add(e, "detail", json_object_new_string(c->detail));
    }
    json_object_object_add(o, "events", json_object_new_int64((int64_t)rep->events));
    json_object *clock = NULL;
    if (rep->clock.valid) {
        if (!(clock = json_object_new_object()))
            return -ENOMEM;
        json_object_object_add(clock, "clock", json_object_new_int64((int64_t)rep->clock.clock));
        json_object_object_add(clock, "reset_count", json_object_new_int64(rep->clock.reset_count));
        json_object_object_add(clock, "restart_count",
                               json_object_new_int64(rep->clock.restart_count));
        json_object_object_add(clock, "safe", json_object_new_boolean(rep->clock.safe));
    }
    json_object_object_add(o, "clock", clock);
    const char *s = json_object_to_json_string_ext(o, JSON_FORMAT_FLAGS);
    if (!s)
        return -ENOMEM;
    if (fprintf(out, "%s\n", s) < 0)
        return -EIO;
    return 0;
}
