/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "requests.h"

#include <string.h>

#include "commands.h"
#include "commands_exec.h"
#include "commands_guestos.h"
#include "commands_migrate.h"
#include "commands_net.h"
#include "commands_tpm.h"
#include "commands_vtpm.h"

/* The unit test (tests/unit/test_requests.c) builds the table without the daemon's handlers. */
#ifdef REQUESTS_WITHOUT_HANDLERS
#define H(fn) NULL
#else
#define H(fn) fn
#endif

#define B(name) TRUSTME__REQUEST__BODY_##name

/* One row per request. Adding a request to proto/control.proto needs a row here (the unit test
 * fails without one), and with it a decision on who may send it. */
const struct request_row request_table[] = {
    /* body                  handler                    admin           restricted  target */
    {B(LIST), H(cmd_list), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(STATE), H(cmd_state), REQ_YES, REQ_OWN, "id", {0}, ""},
    {B(CREATE), H(cmd_create), REQ_YES, REQ_NO, NULL, {0}, "container.create config.reject container.privileged"},
    {B(CONFIG), H(cmd_config), REQ_YES, REQ_NO, "id", {0}, ""},
    {B(START),
     H(cmd_start),
     REQ_YES,
     REQ_NO,
     "id",
     {"pin"},
     "container.start container.privileged guestos.corrupted token.unlock token.lockout"},
    {B(STOP), H(cmd_stop), REQ_NOT_LOCKOUT, REQ_NO, "id", {0}, "container.stop"},
    {B(FREEZE), H(cmd_freeze), REQ_NOT_LOCKOUT, REQ_NO, "id", {0}, "container.freeze"},
    {B(UNFREEZE), H(cmd_unfreeze), REQ_YES, REQ_NO, "id", {0}, "container.unfreeze"},
    {B(RUN), H(cmd_run), REQ_YES, REQ_NO, "id", {0}, "exec.start exec.end"},
    {B(REMOVE), H(cmd_remove), REQ_YES, REQ_NO, "id", {0}, "container.wipe container.remove"},
    {B(AUDIT), H(cmd_audit), REQ_YES, REQ_NO, NULL, {0}, ""},
    /* Session input: about the session of this connection the request's id names. */
    {B(STDIN), H(cmd_stdin), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(RESIZE), H(cmd_resize), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(SIGNAL), H(cmd_signal), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(LOGS), H(cmd_logs), REQ_YES, REQ_NO, "id", {0}, ""},
    {B(CHANGE_PIN),
     H(cmd_change_pin),
     REQ_YES,
     REQ_NO,
     "id",
     {"old_pin", "new_pin", "puk"},
     "token.pair token.pin_change"},
    {B(TOKEN_UNLOCK), H(cmd_token_unlock), REQ_YES, REQ_NO, "id", {"puk", "new_pin"}, "token.puk_unlock"},
    {B(WIPE), H(cmd_wipe), REQ_YES, REQ_NO, "id", {"pin"}, "container.wipe vtpm.reset"},
    {B(UPDATE), H(cmd_update), REQ_YES, REQ_NO, "id", {0}, "container.update config.reject"},
    {B(GUESTOS_INSTALL), H(cmd_guestos_install), REQ_YES, REQ_YES, NULL, {0}, "guestos.install"},
    {B(GUESTOS_REMOVE), H(cmd_guestos_remove), REQ_YES, REQ_NO, NULL, {0}, "guestos.remove"},
    {B(GUESTOS_LIST), H(cmd_guestos_list), REQ_YES, REQ_YES, NULL, {0}, ""},
    {B(CA_REGISTER), H(cmd_ca_register), REQ_YES, REQ_NO, NULL, {0}, "ca.register"},
    {B(MEASUREMENTS), H(cmd_measurements), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(DEVICE_CSR), H(cmd_device_csr), REQ_YES, REQ_NO, NULL, {0}, "device.csr"},
    {B(DEVICE_TLS_SIGN), H(cmd_device_tls_sign), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(DEVICE_CERT_INSTALL), H(cmd_device_cert_install), REQ_YES, REQ_NO, NULL, {0}, "device.cert.install"},
    {B(DEVICE_INFO), H(cmd_device_info), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(DEVICE_RESEAL), H(cmd_device_reseal), REQ_YES, REQ_NO, NULL, {"recovery_key"}, "device.reseal"},
    {B(ATTEST), H(cmd_attest), REQ_YES, REQ_NO, NULL, {0}, ""},
    {B(IFACE_ASSIGN), H(cmd_iface_assign), REQ_YES, REQ_NO, "id", {0}, "net.iface.assign"},
    {B(IFACE_UNASSIGN), H(cmd_iface_unassign), REQ_YES, REQ_NO, "id", {0}, "net.iface.unassign"},
    {B(EXEC_LIST), H(cmd_exec_list), REQ_YES, REQ_NO, "id", {0}, ""},
    {B(EXEC_KILL), H(cmd_exec_kill), REQ_YES, REQ_NO, "id", {0}, "exec.kill"},
    {B(CA_UNREGISTER), H(cmd_ca_unregister), REQ_YES, REQ_NO, NULL, {0}, "ca.unregister"},
    {B(VTPM_INFO), H(cmd_vtpm_info), REQ_YES, REQ_NO, "id", {0}, ""},
    {B(VTPM_RESET), H(cmd_vtpm_reset), REQ_YES, REQ_NO, "id", {0}, "vtpm.reset"},
    {B(VTPM_OWNER), H(cmd_vtpm_owner), REQ_YES, REQ_NO, "id", {0}, "vtpm.owner"},
    {B(VTPM_RESET_RELEASED), H(cmd_vtpm_reset_released), REQ_YES, REQ_NO, "id", {0}, "vtpm.reset"},
    {B(MIGRATE),
     H(cmd_migrate),
     REQ_YES,
     REQ_NO,
     "id",
     {"pin", "puk"},
     "migrate.offer migrate.export migrate.import migrate.commit migrate.abort container.wipe token.unlock "
     "token.lockout"},
};

const size_t request_table_len = sizeof(request_table) / sizeof(request_table[0]);

const struct request_row *requests_row(Trustme__Request__BodyCase body)
{
    for (size_t i = 0; i < request_table_len; i++)
        if (request_table[i].body == body)
            return &request_table[i];
    return NULL;
}

enum request_access requests_access(const struct request_row *row, enum conn_role role)
{
    switch (role) {
    case ROLE_ADMIN: return row->admin;
    case ROLE_RESTRICTED: return row->restricted;
    }
    return REQ_NO;
}

const char *requests_name(const Trustme__Request *req)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, (unsigned)req->body_case);
    return f ? f->name : "unknown";
}

/* The body message of the request's oneof, and the descriptor of its field name. */
static const ProtobufCFieldDescriptor *body_field(const Trustme__Request *req, const char *name, ProtobufCType type,
                                                  ProtobufCMessage **ret_body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&trustme__request__descriptor, (unsigned)req->body_case);
    if (!name || !f || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    ProtobufCMessage *body = *(ProtobufCMessage *const *)((const char *)req + f->offset);
    if (!body)
        return NULL;
    const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field_by_name(body->descriptor, name);
    if (!bf || bf->type != type || bf->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    *ret_body = body;
    return bf;
}

const char *requests_target(const Trustme__Request *req)
{
    const struct request_row *row = requests_row(req->body_case);
    ProtobufCMessage *body;
    const ProtobufCFieldDescriptor *f = row ? body_field(req, row->target, PROTOBUF_C_TYPE_STRING, &body) : NULL;
    const char *id = f ? *(const char *const *)((const char *)body + f->offset) : NULL;
    return id ? id : "";
}

void requests_wipe_secrets(Trustme__Request *req)
{
    const struct request_row *row = requests_row(req->body_case);
    for (size_t i = 0; row && i < REQUEST_MAX_SECRETS && row->secrets[i]; i++) {
        ProtobufCMessage *body;
        const ProtobufCFieldDescriptor *f = body_field(req, row->secrets[i], PROTOBUF_C_TYPE_BYTES, &body);
        if (!f)
            continue;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
            !*(const protobuf_c_boolean *)((const char *)body + f->quantifier_offset))
            continue;
        ProtobufCBinaryData *b = (ProtobufCBinaryData *)((char *)body + f->offset);
        if (b->data)
            explicit_bzero(b->data, b->len);
    }
}
