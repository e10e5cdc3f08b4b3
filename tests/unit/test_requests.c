/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The request table (src/daemon/api/requests.c) against the protocol and the docs:
 *  - every body of trustme.Request's oneof has exactly one row, and every row is such a body, so a
 *    request cannot be added without deciding who may send it;
 *  - targets and secrets name real fields of the body, every PIN/PUK/key-like bytes field is a
 *    secret, and requests_wipe_secrets() zeroes exactly those;
 *  - what a restricted socket may send is pinned here, as a second, independent statement;
 *  - the audit events named exist in docs/AUDIT.md, and docs/ROLES.md's table is this table.
 *
 * `test_requests --markdown` prints the table for docs/ROLES.md. */
#include "unit.h"

#include <stdio.h>

#include "requests.h"

#define ROLES_BEGIN "<!-- BEGIN requests table: build/tests/unit/test_requests --markdown -->\n"
#define ROLES_END "<!-- END requests table -->\n"

static const ProtobufCFieldDescriptor *body_case_field(unsigned number)
{
    return protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, number);
}

/* The fields of trustme.Request that are members of its oneof body. */
static bool in_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->quantifier_offset == offsetof(Trustme__Request, body_case);
}

static const ProtobufCMessageDescriptor *body_descriptor(const struct request_row *row)
{
    const ProtobufCFieldDescriptor *f = body_case_field((unsigned)row->body);
    assert_non_null(f);
    assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
    return f->descriptor;
}

static void every_body_has_exactly_one_row(void **state)
{
    (void)state;
    size_t bodies = 0;
    for (unsigned i = 0; i < trustme__request__descriptor.n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &trustme__request__descriptor.fields[i];
        if (!in_oneof(f))
            continue;
        bodies++;
        size_t rows = 0;
        for (size_t r = 0; r < request_table_len; r++)
            rows += request_table[r].body == (Trustme__Request__BodyCase)f->id;
        if (rows != 1)
            print_error("request body %s (field %u) has %zu rows in src/daemon/api/requests.c\n", f->name, f->id, rows);
        assert_int_equal(rows, 1);
        assert_int_equal(requests_row((Trustme__Request__BodyCase)f->id)->body, f->id);
    }
    /* ... and no row for a body the protocol does not have. */
    for (size_t r = 0; r < request_table_len; r++) {
        const ProtobufCFieldDescriptor *f = body_case_field((unsigned)request_table[r].body);
        if (!f || !in_oneof(f))
            print_error("row %zu (body %d) is not a body of trustme.Request\n", r, (int)request_table[r].body);
        assert_true(f && in_oneof(f));
    }
    assert_int_equal(request_table_len, bodies);
    assert_null(requests_row(TRUSTME__REQUEST__BODY__NOT_SET));
    assert_null(requests_row((Trustme__Request__BodyCase)9999));
}

static void targets_and_secrets_are_fields(void **state)
{
    (void)state;
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        const ProtobufCMessageDescriptor *md = body_descriptor(row);
        if (row->target) {
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(md, row->target);
            if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
                print_error("%s: target \"%s\" is not a string field\n", md->name, row->target);
            assert_true(f && f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED);
        }
        for (size_t i = 0; i < REQUEST_MAX_SECRETS && row->secrets[i]; i++) {
            const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(md, row->secrets[i]);
            if (!f || f->type != PROTOBUF_C_TYPE_BYTES || f->label == PROTOBUF_C_LABEL_REPEATED)
                print_error("%s: secret \"%s\" is not a bytes field\n", md->name, row->secrets[i]);
            assert_true(f && f->type == PROTOBUF_C_TYPE_BYTES && f->label != PROTOBUF_C_LABEL_REPEATED);
        }
        /* Nothing restricted may be about a container without saying which. */
        if (row->admin == REQ_OWN || row->restricted == REQ_OWN || row->admin == REQ_NOT_LOCKOUT ||
            row->restricted == REQ_NOT_LOCKOUT)
            assert_non_null(row->target);
    }
}

/* In this protocol a body's string field "id" is always the container it is about: a row that
 * does not name it as its target would leave it out of role checks and control.denied records. */
static void every_id_is_a_target(void **state)
{
    (void)state;
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        const ProtobufCMessageDescriptor *md = body_descriptor(row);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(md, "id");
        bool has_id = f && f->type == PROTOBUF_C_TYPE_STRING;
        if (has_id != (row->target != NULL))
            print_error("%s: %s\n", md->name, has_id ? "has an id but no target" : "a target but no id");
        assert_int_equal(has_id, row->target != NULL);
        if (row->target)
            assert_string_equal(row->target, "id");
    }
}

static bool listed_secret(const struct request_row *row, const char *name)
{
    for (size_t i = 0; i < REQUEST_MAX_SECRETS && row->secrets[i]; i++)
        if (strcmp(row->secrets[i], name) == 0)
            return true;
    return false;
}

/* A bytes field named like a PIN, PUK or key that is not wiped is a forgotten secret. */
static void secret_like_fields_are_secrets(void **state)
{
    (void)state;
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        const ProtobufCMessageDescriptor *md = body_descriptor(row);
        for (unsigned i = 0; i < md->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &md->fields[i];
            bool like = strstr(f->name, "pin") || strstr(f->name, "puk") || strstr(f->name, "key") ||
                        strstr(f->name, "secret") || strstr(f->name, "password");
            if (f->type == PROTOBUF_C_TYPE_BYTES && like && !listed_secret(row, f->name)) {
                print_error("%s.%s looks like a secret but is not wiped\n", md->name, f->name);
                fail();
            }
        }
    }
}

/* A request with the given body, every bytes field filled with 'x' and every string "c1". */
static Trustme__Request *make_request(const struct request_row *row, ProtobufCMessage **ret_body)
{
    const ProtobufCMessageDescriptor *md = body_descriptor(row);
    Trustme__Request *req = calloc(1, sizeof(*req));
    ProtobufCMessage *body = calloc(1, md->sizeof_message);
    assert_non_null(req);
    assert_non_null(body);
    trustme__request__init(req);
    md->message_init(body);
    req->body_case = row->body;
    *(ProtobufCMessage **)((char *)req + body_case_field((unsigned)row->body)->offset) = body;
    for (unsigned i = 0; i < md->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &md->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            continue;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
            *(protobuf_c_boolean *)((char *)body + f->quantifier_offset) = 1;
        if (f->type == PROTOBUF_C_TYPE_BYTES) {
            ProtobufCBinaryData *b = (ProtobufCBinaryData *)((char *)body + f->offset);
            b->len = 8;
            b->data = malloc(8);
            assert_non_null(b->data);
            memset(b->data, 'x', 8);
        } else if (f->type == PROTOBUF_C_TYPE_STRING) {
            *(char **)((char *)body + f->offset) = "c1";
        }
    }
    *ret_body = body;
    return req;
}

static void free_request(Trustme__Request *req, ProtobufCMessage *body)
{
    for (unsigned i = 0; i < body->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &body->descriptor->fields[i];
        if (f->type == PROTOBUF_C_TYPE_BYTES && f->label != PROTOBUF_C_LABEL_REPEATED)
            free(((ProtobufCBinaryData *)((char *)body + f->offset))->data);
    }
    free(body);
    free(req);
}

static void wipes_exactly_the_secrets(void **state)
{
    (void)state;
    size_t wiped = 0;
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        ProtobufCMessage *body;
        Trustme__Request *req = make_request(row, &body);
        requests_wipe_secrets(req);
        for (unsigned i = 0; i < body->descriptor->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &body->descriptor->fields[i];
            if (f->type != PROTOBUF_C_TYPE_BYTES || f->label == PROTOBUF_C_LABEL_REPEATED)
                continue;
            const ProtobufCBinaryData *b = (const ProtobufCBinaryData *)((char *)body + f->offset);
            static const uint8_t zero[8], xs[8] = "xxxxxxxx";
            bool secret = listed_secret(row, f->name);
            if (memcmp(b->data, secret ? zero : xs, 8) != 0)
                print_error("%s.%s: %s\n", body->descriptor->name, f->name,
                            secret ? "a secret left unwiped" : "wiped but not a secret");
            assert_memory_equal(b->data, secret ? zero : xs, 8);
            wiped += secret;
        }
        free_request(req, body);
    }
    assert_int_equal(wiped, 10); /* start, wipe: pin; migrate: pin, puk; change_pin: 3; token_unlock: 2; reseal: 1 */
}

static void absent_secrets_are_left_alone(void **state)
{
    (void)state;
    /* has_pin false: the data pointer may be anything protobuf-c left; it must not be touched. */
    uint8_t pin[4] = "1234";
    Trustme__StartRequest start = TRUSTME__START_REQUEST__INIT;
    start.pin.data = pin;
    start.pin.len = sizeof(pin);
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_START;
    req.start = &start;
    requests_wipe_secrets(&req);
    assert_memory_equal(pin, "1234", 4);
    start.has_pin = true;
    requests_wipe_secrets(&req);
    assert_memory_equal(pin, "\0\0\0\0", 4);
}

static void targets_are_read(void **state)
{
    (void)state;
    for (size_t r = 0; r < request_table_len; r++) {
        ProtobufCMessage *body;
        Trustme__Request *req = make_request(&request_table[r], &body);
        assert_string_equal(requests_target(req), request_table[r].target ? "c1" : "");
        free_request(req, body);
    }
    Trustme__ContainerRef ref = TRUSTME__CONTAINER_REF__INIT; /* id unset */
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_STATE;
    req.state = &ref;
    assert_string_equal(requests_target(&req), "");
    assert_string_equal(requests_name(&req), "state");
    req.body_case = (Trustme__Request__BodyCase)9999;
    assert_string_equal(requests_target(&req), "");
    assert_string_equal(requests_name(&req), "unknown");
}

/* The restricted role's whole allowance, stated again: widening it must change this test too
 * (and docs/ROLES.md, and roles.c's refusal message). */
static void restricted_allowance(void **state)
{
    (void)state;
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        enum request_access want = REQ_NO;
        if (row->body == TRUSTME__REQUEST__BODY_STATE)
            want = REQ_OWN;
        else if (row->body == TRUSTME__REQUEST__BODY_GUESTOS_LIST ||
                 row->body == TRUSTME__REQUEST__BODY_GUESTOS_INSTALL)
            want = REQ_YES;
        assert_int_equal(requests_access(row, ROLE_RESTRICTED), want);
        /* The admin may send everything; c0 is protected from stop and freeze only. */
        enum request_access admin =
            row->body == TRUSTME__REQUEST__BODY_STOP || row->body == TRUSTME__REQUEST__BODY_FREEZE ? REQ_NOT_LOCKOUT
                                                                                                   : REQ_YES;
        assert_int_equal(requests_access(row, ROLE_ADMIN), admin);
    }
    assert_int_equal(requests_access(&request_table[0], (enum conn_role)7), REQ_NO);
}

static char *slurp(const char *rel)
{
    const char *root = getenv("TRUSTME_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root ? root : ".", rel);
    FILE *f = fopen(path, "r");
    if (!f)
        print_error("cannot open %s (set TRUSTME_SOURCE_ROOT)\n", path);
    assert_non_null(f);
    char *buf = NULL;
    size_t size = 0;
    FILE *m = open_memstream(&buf, &size);
    assert_non_null(m);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void audit_events_are_documented(void **state)
{
    (void)state;
    char *doc = slurp("docs/AUDIT.md");
    for (size_t r = 0; r < request_table_len; r++) {
        char events[256];
        snprintf(events, sizeof(events), "%s", request_table[r].audit);
        for (char *save, *ev = strtok_r(events, " ", &save); ev; ev = strtok_r(NULL, " ", &save)) {
            char quoted[128];
            snprintf(quoted, sizeof(quoted), "`%s`", ev);
            if (!strstr(doc, quoted))
                print_error("audit event %s is not in docs/AUDIT.md\n", ev);
            assert_non_null(strstr(doc, quoted));
        }
    }
    free(doc);
}

static const char *access_text(enum request_access a)
{
    switch (a) {
    case REQ_NO: return "no";
    case REQ_YES: return "yes";
    case REQ_OWN: return "its own container only";
    case REQ_NOT_LOCKOUT: return "yes, except c0 without a host admin socket";
    }
    return "?";
}

static void print_list(FILE *out, const char *const *names, size_t n)
{
    bool any = false;
    for (size_t i = 0; i < n && names[i]; i++) {
        fprintf(out, "%s`%s`", any ? ", " : "", names[i]);
        any = true;
    }
    if (!any)
        fputs("—", out);
}

static void print_table(FILE *out)
{
    fputs(ROLES_BEGIN, out);
    fputs("| request | admin | restricted | container (field) | secrets wiped | audit events |\n", out);
    fputs("|---|---|---|---|---|---|\n", out);
    for (size_t r = 0; r < request_table_len; r++) {
        const struct request_row *row = &request_table[r];
        fprintf(out, "| `%s` | %s | %s | ", body_case_field((unsigned)row->body)->name, access_text(row->admin),
                access_text(row->restricted));
        print_list(out, &row->target, 1);
        fputs(" | ", out);
        print_list(out, row->secrets, REQUEST_MAX_SECRETS);
        fputs(" | ", out);
        char events[256];
        const char *names[8] = {0};
        size_t n = 0;
        snprintf(events, sizeof(events), "%s", row->audit);
        for (char *save, *ev = strtok_r(events, " ", &save); ev && n < 8; ev = strtok_r(NULL, " ", &save))
            names[n++] = ev;
        print_list(out, names, n);
        fputs(" |\n", out);
    }
    fputs(ROLES_END, out);
}

static void roles_doc_is_the_table(void **state)
{
    (void)state;
    char *doc = slurp("docs/ROLES.md");
    char *want = NULL;
    size_t size = 0;
    FILE *m = open_memstream(&want, &size);
    assert_non_null(m);
    print_table(m);
    fclose(m);
    char *begin = strstr(doc, ROLES_BEGIN);
    char *end = begin ? strstr(begin, ROLES_END) : NULL;
    if (!end)
        print_error("docs/ROLES.md has no generated requests table\n");
    assert_non_null(end);
    end += strlen(ROLES_END);
    if ((size_t)(end - begin) != size || memcmp(begin, want, size) != 0)
        print_error("docs/ROLES.md's requests table differs from src/daemon/api/requests.c: replace it "
                    "with the output of `build/tests/unit/test_requests --markdown`\n");
    assert_int_equal((size_t)(end - begin), size);
    assert_memory_equal(begin, want, size);
    free(want);
    free(doc);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
        print_table(stdout);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_body_has_exactly_one_row),
        cmocka_unit_test(targets_and_secrets_are_fields),
        cmocka_unit_test(every_id_is_a_target),
        cmocka_unit_test(secret_like_fields_are_secrets),
        cmocka_unit_test(wipes_exactly_the_secrets),
        cmocka_unit_test(absent_secrets_are_left_alone),
        cmocka_unit_test(targets_are_read),
        cmocka_unit_test(restricted_allowance),
        cmocka_unit_test(audit_events_are_documented),
        cmocka_unit_test(roles_doc_is_the_table),
    };
    return cmocka_run_group_tests_name("requests", tests, NULL, NULL);
}
