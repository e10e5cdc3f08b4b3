/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The role check (src/daemon/api/roles.c roles_permit) applied to every row of the request table,
 * with fake containers: the admin may send everything (but not stop or freeze c0 while c0 is
 * the only way in), a restricted socket only its allowance, and what it is refused is answered
 * EPERM and audited as control.denied, naming the request and its target. */
#include "unit.h"

#include <errno.h>
#include <stdio.h>

#include "container.h"
#include "core_container.h"
#include "requests.h"
#include "roles.h"

/* ---- fakes of what roles.c calls ---- */

static struct container_config cfg_c0 = {.name = "c0"}, cfg_r = {.name = "r"}, cfg_x = {.name = "x"};
static struct container c0 = {.uuid = "00000000-0000-4000-8000-0000000000c0", .cfg = &cfg_c0};
static struct container r = {.uuid = "00000000-0000-4000-8000-00000000000a", .cfg = &cfg_r};
static struct container x = {.uuid = "00000000-0000-4000-8000-00000000000b", .cfg = &cfg_x};
static struct daemon d;

static int sent_code;
static char sent_msg[1024];
static int audits;
static char audit_event[64], audit_detail[1024];
static const struct container *audit_subject;

struct container *container_find(struct daemon *dm, const char *id)
{
    struct container *all[] = {&c0, &r, &x};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(all[i]->cfg->name, id) == 0 || strcmp(all[i]->uuid, id) == 0)
            return all[i];
    return NULL;
}

bool core_is(const struct container *c)
{
    return c == &c0;
}
bool control_audit_due(struct conn *c, enum control_audit_kind kind)
{
    return true;
}
const char *conn_role_name(enum conn_role role)
{
    return role == ROLE_RESTRICTED ? "restricted" : "admin";
}

void conn_send_error(struct conn *c, uint64_t req_id, int code, const char *fmt, ...)
{
    sent_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sent_msg, sizeof(sent_msg), fmt, ap);
    va_end(ap);
}

void daemon_audit(struct daemon *dm, const char *event, const char *result, const struct container *c,
                  const char *actor, const char *fmt, ...)
{
    audits++;
    snprintf(audit_event, sizeof(audit_event), "%s", event);
    audit_subject = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(audit_detail, sizeof(audit_detail), fmt, ap);
    va_end(ap);
}

/* ---- requests ---- */

/* A request with the row's body, every string field of the body set to target. */
static Trustme__Request *make_request(Trustme__Request__BodyCase body, const char *target)
{
    Trustme__Request *req = calloc(1, sizeof(*req));
    assert_non_null(req);
    trustme__request__init(req);
    req->id = 7;
    req->body_case = body;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, (unsigned)body);
    if (!f)
        return req;
    const ProtobufCMessageDescriptor *md = f->descriptor;
    ProtobufCMessage *m = calloc(1, md->sizeof_message);
    assert_non_null(m);
    md->message_init(m);
    for (unsigned i = 0; i < md->n_fields; i++)
        if (md->fields[i].type == PROTOBUF_C_TYPE_STRING && md->fields[i].label != PROTOBUF_C_LABEL_REPEATED)
            *(const char **)((char *)m + md->fields[i].offset) = target;
    *(ProtobufCMessage **)((char *)req + f->offset) = m;
    return req;
}

static void free_request(Trustme__Request *req)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, (unsigned)req->body_case);
    if (f)
        free(*(ProtobufCMessage **)((char *)req + f->offset));
    free(req);
}

static struct conn admin = {.d = &d, .role = ROLE_ADMIN, .actor = "uid=0 pid=1"};
static struct conn restricted = {.d = &d, .role = ROLE_RESTRICTED, .actor = "uid=100000 pid=2 in r"};

/* Permit? Resets what was answered and audited first. */
static bool permit(struct conn *conn, Trustme__Request__BodyCase body, const char *target)
{
    sent_code = 0;
    sent_msg[0] = audit_event[0] = audit_detail[0] = '\0';
    audits = 0;
    audit_subject = NULL;
    Trustme__Request *req = make_request(body, target);
    bool ok = roles_permit(conn, req);
    free_request(req);
    /* An allowed request is not answered here; a refused one is answered and audited once. */
    assert_int_equal(sent_code, ok ? 0 : EPERM);
    assert_int_equal(audits, ok ? 0 : 1);
    if (!ok)
        assert_string_equal(audit_event, "control.denied");
    return ok;
}

static const char *name_of(Trustme__Request__BodyCase body)
{
    return protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, (unsigned)body)->name;
}

static void admin_may_send_every_request(void **state)
{
    (void)state;
    d.device.admin_socket_in_root = true;
    for (size_t i = 0; i < request_table_len; i++) {
        assert_true(permit(&admin, request_table[i].body, "c0"));
        assert_true(permit(&admin, request_table[i].body, "x"));
    }
    /* A body this daemon does not know goes on to dispatch, which says so. */
    assert_true(permit(&admin, (Trustme__Request__BodyCase)9999, "x"));
}

static void restricted_may_send_its_allowance_only(void **state)
{
    (void)state;
    snprintf(restricted.role_uuid, sizeof(restricted.role_uuid), "%s", r.uuid);
    size_t allowed = 0;
    for (size_t i = 0; i < request_table_len; i++) {
        const struct request_row *row = &request_table[i];
        bool ok = permit(&restricted, row->body, "r");
        assert_int_equal(ok, row->restricted != REQ_NO);
        allowed += ok;
        if (ok)
            continue;
        char want[512];
        snprintf(want, sizeof(want),
                 "%s is not allowed on this container's control socket "
                 "(restricted role: only its own state, guestos list, guestos install)",
                 name_of(row->body));
        assert_string_equal(sent_msg, want);
        snprintf(want, sizeof(want), "role=restricted request=%s%s", name_of(row->body),
                 row->target ? " target=r" : "");
        assert_string_equal(audit_detail, want);
        assert_ptr_equal(audit_subject, &r);
    }
    assert_int_equal(allowed, 3);
    assert_false(permit(&restricted, (Trustme__Request__BodyCase)9999, "r"));
    assert_string_equal(audit_detail, "role=restricted request=unknown");
}

/* Another container's state is refused with the same words whether it exists or not. */
static void restricted_state_of_another_is_refused_alike(void **state)
{
    (void)state;
    snprintf(restricted.role_uuid, sizeof(restricted.role_uuid), "%s", r.uuid);
    assert_true(permit(&restricted, TRUSTME__REQUEST__BODY_STATE, "r"));
    assert_true(permit(&restricted, TRUSTME__REQUEST__BODY_STATE, r.uuid));
    const char *want = "state of another container is not allowed on this container's control "
                       "socket (restricted role: only its own state, guestos list, guestos install)";
    static const char *const others[] = {"x", "c0", x.uuid, "nosuch", ""};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_false(permit(&restricted, TRUSTME__REQUEST__BODY_STATE, others[i]));
        assert_string_equal(sent_msg, want);
        assert_ptr_equal(audit_subject, &r);
    }
    assert_string_equal(audit_detail, "role=restricted request=state");
}

/* Without an admin socket on the host, c0 cannot be stopped or frozen, from any socket. */
static void c0_is_not_stopped_while_it_is_the_only_way_in(void **state)
{
    (void)state;
    d.device.admin_socket_in_root = false;
    assert_false(permit(&admin, TRUSTME__REQUEST__BODY_STOP, "c0"));
    assert_string_equal(sent_msg, "c0 is the core container and the only way to manage this device "
                                  "(device.json admin_socket_in_root is false): it cannot be stopped");
    assert_string_equal(audit_detail, "role=admin request=stop target=c0");
    assert_ptr_equal(audit_subject, &c0);
    assert_false(permit(&admin, TRUSTME__REQUEST__BODY_FREEZE, c0.uuid));
    assert_string_equal(sent_msg, "c0 is the core container and the only way to manage this device "
                                  "(device.json admin_socket_in_root is false): it cannot be frozen");
    /* Everything else, and stop/freeze of the others, stays allowed. */
    for (size_t i = 0; i < request_table_len; i++) {
        Trustme__Request__BodyCase body = request_table[i].body;
        bool guarded = body == TRUSTME__REQUEST__BODY_STOP || body == TRUSTME__REQUEST__BODY_FREEZE;
        assert_int_equal(permit(&admin, body, "c0"), !guarded);
        assert_true(permit(&admin, body, "x"));
        assert_true(permit(&admin, body, "nosuch"));
    }
    d.device.admin_socket_in_root = true;
    assert_true(permit(&admin, TRUSTME__REQUEST__BODY_STOP, "c0"));
    assert_true(permit(&admin, TRUSTME__REQUEST__BODY_FREEZE, "c0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(admin_may_send_every_request),
        cmocka_unit_test(restricted_may_send_its_allowance_only),
        cmocka_unit_test(restricted_state_of_another_is_refused_alike),
        cmocka_unit_test(c0_is_not_stopped_while_it_is_the_only_way_in),
    };
    return cmocka_run_group_tests_name("roles", tests, NULL, NULL);
}
