/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Every body is JSON of a bounded size, parsed strictly (duplicate and unknown keys refused),
 * and checked by the same functions as the CLI's arguments; every failure is a 4xx with
 * {"error": "..."} and changes nothing. */
#include "api.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "attest_check.h"
#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"

#define BODY_MAX (64 * 1024) /* every request but these two: */
#define GROUP_BODY_MAX (8 * 1024 * 1024) /* reference values */
#define EVIDENCE_BODY_MAX (6 * 1024 * 1024) /* an AttestResponse of 4 MiB in base64 */
#define API "/api/v1/"

struct fleet_api {
    struct MHD_Daemon *d;
    PGconn *c;
    char *alert_command;
    bool client_certs; /* operators must present a certificate of the client CA */
    /* The admins' CAs (--client-ca) when viewers have their own (--viewer-ca): a client whose
     * chain verifies to these is an admin, else a viewer. NULL: every operator is an admin. */
    gnutls_x509_trust_list_t admins;
};

enum role { ROLE_VIEWER, ROLE_ADMIN };

struct request {
    char *body;
    size_t len, max;
    bool too_big;
};

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type, char *text)
{
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (strncmp(type, "text/html", 9) == 0)
        MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result respond_json(struct MHD_Connection *conn, unsigned status, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return respond(conn, 500, "application/json", strdup("{\"error\":\"out of memory\"}"));
    size_t n = strlen(text);
    char *withnl = realloc(text, n + 2);
    if (withnl) {
        withnl[n] = '\n';
        withnl[n + 1] = '\0';
        text = withnl;
    }
    return respond(conn, status, "application/json", text);
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    return respond_json(conn, status, json_pack("{s:o}", "error", tm_json_text(msg)));
}

static unsigned status_of(int r)
{
    switch (-r) {
    case EINVAL:
    case EPROTO: return 400;
    case EACCES: return 403;
    case ENOENT: return 404;
    case EEXIST:
    case ESTALE: return 409;
    case EFBIG: return 413;
    default: return 500;
    }
}

static enum MHD_Result respond_err(struct MHD_Connection *conn, int r, const tm_err *err)
{
    return respond_error(conn, status_of(r), err->msg[0] ? err->msg : strerror(-r));
}

/* Strict base64 (RFC 4648, padded, no line breaks); -EINVAL otherwise. */
static int b64_decode(const char *in, uint8_t **ret, size_t *ret_len, const char *what, tm_err *err)
{
    size_t n = strlen(in);
    if (n == 0 || n % 4)
        return tm_err_set(err, EINVAL, "%s: not base64", what);
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)in[i]) || in[i] == '+' || in[i] == '/' || (in[i] == '=' && i >= n - 2)))
            return tm_err_set(err, EINVAL, "%s: not base64 (character %zu)", what, i + 1);
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0) {
        free(out);
        return tm_err_set(err, EINVAL, "%s: not base64", what);
    }
    len -= (in[n - 1] == '=') + (in[n - 2] == '=');
    *ret = out;
    *ret_len = (size_t)len;
    return 0;
}

static int parse_body(const struct request *rq, const char *const *allowed, json_t **ret, tm_err *err)
{
    int r = tm_json_parse_object(rq->body ? rq->body : "", rq->len, ret, err);
    if (r < 0)
        return tm_err_set(err, EINVAL, "malformed JSON: %s", err->msg);
    if ((r = tm_json_check_keys(*ret, "$", allowed, err)) < 0) {
        json_decref(*ret);
        *ret = NULL;
        return -EINVAL;
    }
    return 0;
}

static int as_einval(int r)
{
    return r < 0 && r != -ENOMEM ? -EINVAL : r;
}

/* ---- the endpoints ---- */

static enum MHD_Result enroll(struct fleet_api *a, struct MHD_Connection *conn, const struct request *rq)
{
    static const char *const keys[] = {"name", "group", "address", "ak_name", "cert_chain_pem", "tls_cert_pem", NULL};
    _cleanup_json_ json_t *o = NULL;
    tm_err err = {0};
    struct fleet_enroll_req e = {0};
    int r = parse_body(rq, keys, &o, &err);
    if (r == 0)
        r = as_einval(tm_json_get_string(o, "$", "name", true, FLEET_NAME_MAX, &e.name, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "group", true, FLEET_NAME_MAX, &e.group, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "address", false, FLEET_ADDRESS_MAX, &e.address, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "ak_name", true, 68, &e.ak_name_hex, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "cert_chain_pem", true, 60000, &e.cert_chain_pem, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "tls_cert_pem", false, 60000, &e.tls_cert_pem, &err));
    if (r >= 0)
        r = fleet_enroll(a->c, &e, &err);
    if (r < 0)
        return respond_err(conn, r, &err);
    return respond_json(conn, 201, json_pack("{s:s}", "enrolled", e.name));
}

static enum MHD_Result enroll_vtpm(struct fleet_api *a, struct MHD_Connection *conn, const struct request *rq)
{
    static const char *const keys[] = {"device", "ek", "name", NULL};
    _cleanup_json_ json_t *o = NULL;
    tm_err err = {0};
    const char *device = NULL, *ek = NULL, *name = NULL;
    int r = parse_body(rq, keys, &o, &err);
    if (r == 0)
        r = as_einval(tm_json_get_string(o, "$", "device", true, FLEET_NAME_MAX, &device, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "ek", true, FLEET_VTPM_NAME_MAX, &ek, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "name", true, 68, &name, &err));
    if (r >= 0)
        r = fleet_vtpm_enroll(a->c, device, ek, name, &err);
    if (r < 0)
        return respond_err(conn, r, &err);
    return respond_json(conn, 201, json_pack("{s:s,s:s}", "device", device, "vtpm", ek));
}

static enum MHD_Result put_group(struct fleet_api *a, struct MHD_Connection *conn, const struct request *rq)
{
    static const char *const keys[] = {"name", "interval", "pcrs", "pin_ak", "min_version", "reference", NULL};
    static const char *const ref_keys[] = {"json", "sig", "chain", NULL};
    _cleanup_json_ json_t *o = NULL;
    tm_err err = {0};
    struct fleet_group_req g = {.pin_ak = true};
    json_t *pcrs = NULL, *ref = NULL;
    int64_t interval = 0, minv = 0;
    const char *sig64 = NULL;
    int r = parse_body(rq, keys, &o, &err);
    if (r == 0)
        r = as_einval(tm_json_get_string(o, "$", "name", true, FLEET_NAME_MAX, &g.name, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_int(o, "$", "interval", true, 1, 86400, &interval, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_bool(o, "$", "pin_ak", false, &g.pin_ak, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_int(o, "$", "min_version", false, 0, INT64_MAX, &minv, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_array(o, "$", "pcrs", false, REFVALUES_PCRS, &pcrs, &err));
    for (size_t i = 0; r >= 0 && pcrs && i < json_array_size(pcrs); i++) {
        json_t *v = json_array_get(pcrs, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 23)
            r = tm_err_set(&err, EINVAL, "$.pcrs[%zu]: a PCR index 0..23", i);
        else
            g.pcrs[g.npcrs++] = (uint32_t)json_integer_value(v);
    }
    if (r >= 0)
        r = as_einval(tm_json_get_object(o, "$", "reference", true, 3, &ref, &err));
    if (r >= 0)
        r = as_einval(tm_json_check_keys(ref, "$.reference", ref_keys, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(ref, "$.reference", "json", true, REFVALUES_JSON_MAX, &g.refs_json, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(ref, "$.reference", "sig", true, 2 * REFVALUES_SIG_MAX, &sig64, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(ref, "$.reference", "chain", true, 1 << 20, &g.refs_chain, &err));
    _cleanup_free_ uint8_t *sig = NULL;
    if (r >= 0)
        r = b64_decode(sig64, &sig, &g.refs_sig_len, "$.reference.sig", &err);
    if (r >= 0) {
        g.interval_s = interval;
        g.min_version = (uint64_t)minv;
        g.refs_json_len = strlen(g.refs_json);
        g.refs_chain_len = strlen(g.refs_chain);
        g.refs_sig = sig;
        r = fleet_group_put(a->c, &g, &err);
    }
    if (r < 0)
        return respond_err(conn, r, &err);
    return respond_json(conn, 200, json_pack("{s:s}", "group", g.name));
}

/* The chain a TLS client presented, as PEM (malloc'ed), or NULL: none (or not TLS). */
static char *peer_chain_pem(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    unsigned n = 0;
    const gnutls_datum_t *certs = ci && ci->tls_session ? gnutls_certificate_get_peers(ci->tls_session, &n) : NULL;
    char *out = NULL;
    size_t len = 0;
    for (unsigned i = 0; certs && i < n && i < 8; i++) {
        gnutls_datum_t pem = {0};
        if (gnutls_pem_base64_encode2("CERTIFICATE", &certs[i], &pem) != GNUTLS_E_SUCCESS)
            break;
        char *grown = realloc(out, len + pem.size + 1);
        if (grown) {
            memcpy(grown + len, pem.data, pem.size);
            len += pem.size;
            grown[len] = '\0';
            out = grown;
        }
        gnutls_free(pem.data);
        if (!grown)
            break;
    }
    return out;
}

/* A push names its device: with a TLS client certificate, it must be that device's
 * (docs/FLEET.md "Device identity on the wire"). */
static int push_tls_check(struct fleet_api *a, struct MHD_Connection *conn, const char *device, tm_err *err)
{
    _cleanup_free_ char *chain = peer_chain_pem(conn);
    return fleet_device_tls_check(a->c, device, chain, err);
}

static enum MHD_Result push_nonce(struct fleet_api *a, struct MHD_Connection *conn, const struct request *rq)
{
    static const char *const keys[] = {"device", NULL};
    _cleanup_json_ json_t *o = NULL;
    tm_err err = {0};
    const char *device = NULL;
    uint8_t nonce[32];
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = 0;
    int r = parse_body(rq, keys, &o, &err);
    if (r == 0)
        r = as_einval(tm_json_get_string(o, "$", "device", true, FLEET_NAME_MAX, &device, &err));
    if (r >= 0)
        r = push_tls_check(a, conn, device, &err);
    if (r >= 0)
        r = fleet_push_nonce(a->c, device, nonce, pcrs, &npcrs, &err);
    if (r < 0)
        return respond_err(conn, r, &err);
    char hex[65];
    tm_hex(nonce, sizeof(nonce), hex);
    json_t *list = json_array();
    for (size_t i = 0; list && i < npcrs; i++)
        json_array_append_new(list, json_integer(pcrs[i]));
    return respond_json(conn, 200,
                        json_pack("{s:s,s:o,s:i}", "nonce", hex, "pcrs", list, "expires_in", FLEET_NONCE_TTL_S));
}

static enum MHD_Result push_evidence(struct fleet_api *a, struct MHD_Connection *conn, const struct request *rq)
{
    static const char *const keys[] = {"device", "nonce", "response", NULL};
    _cleanup_json_ json_t *o = NULL;
    tm_err err = {0};
    const char *device = NULL, *noncehex = NULL, *resp64 = NULL;
    uint8_t nonce[32];
    int r = parse_body(rq, keys, &o, &err);
    if (r == 0)
        r = as_einval(tm_json_get_string(o, "$", "device", true, FLEET_NAME_MAX, &device, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "nonce", true, 64, &noncehex, &err));
    if (r >= 0)
        r = as_einval(tm_json_get_string(o, "$", "response", true, EVIDENCE_BODY_MAX, &resp64, &err));
    if (r >= 0 && tm_hex_decode_str(noncehex, nonce, sizeof(nonce), 0, &err) < 0)
        r = tm_err_set(&err, EINVAL, "$.nonce: 64 lower-case hex digits");
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    if (r >= 0)
        r = b64_decode(resp64, &buf, &len, "$.response", &err);
    _cleanup_(fleet_verdict_done) struct fleet_verdict v = {0};
    if (r >= 0)
        r = push_tls_check(a, conn, device, &err);
    if (r >= 0)
        r = fleet_push_evidence(a->c, device, nonce, buf, len, a->alert_command, &v, &err);
    if (r < 0)
        return respond_err(conn, r, &err);
    json_error_t je;
    json_t *report = v.report_json ? json_loads(v.report_json, 0, &je) : NULL;
    return respond_json(conn, 200,
                        json_pack("{s:s,s:o,s:o}", "verdict", v.trusted ? "trusted" : "untrusted", "failed_check",
                                  v.failed_check[0] ? json_string(v.failed_check) : json_null(), "report",
                                  report ? report : json_null()));
}

static json_t *rows_json(PGresult *res)
{
    json_t *list = json_array();
    for (int i = 0; list && i < PQntuples(res); i++) {
        json_t *row = json_object();
        for (int j = 0; row && j < PQnfields(res); j++) {
            json_t *v;
            if (PQgetisnull(res, i, j))
                v = json_null();
            else if (PQftype(res, j) == 16) /* bool */
                v = json_boolean(PQgetvalue(res, i, j)[0] == 't');
            else if (PQftype(res, j) == 20 || PQftype(res, j) == 23) /* int8, int4 */
                v = json_integer(strtoll(PQgetvalue(res, i, j), NULL, 10));
            else if (PQftype(res, j) == 3802) { /* jsonb */
                json_error_t je;
                v = json_loads(PQgetvalue(res, i, j), 0, &je);
            } else
                v = tm_json_text(PQgetvalue(res, i, j));
            json_object_set_new(row, PQfname(res, j), v ? v : json_null());
        }
        json_array_append_new(list, row);
    }
    return list;
}

#define DEVICE_COLUMNS                                                                                       \
    "d.name, g.name AS \"group\", d.address, encode(d.ak_name, 'hex') AS ak_name, d.subject, "               \
    "to_char(d.enrolled_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS enrolled_at, "                              \
    "to_char(d.last_seen, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_seen, "                                  \
    "to_char(d.last_verdict_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_verdict_at, "                      \
    "CASE WHEN d.last_trusted THEN 'trusted' WHEN NOT d.last_trusted THEN 'untrusted' END AS last_verdict, " \
    "d.last_failed_check "

static enum MHD_Result query_json(struct fleet_api *a, struct MHD_Connection *conn, const char *key, const char *sql,
                                  const char *param)
{
    _cleanup_res_ PGresult *res = NULL;
    tm_err err = {0};
    int r = fleet_exec(a->c, &res, &err, sql, param ? 1 : 0, param ? (const char *[]){param} : NULL);
    if (r < 0)
        return respond_err(conn, r, &err);
    return respond_json(conn, 200, json_pack("{s:o}", key, rows_json(res)));
}

static enum MHD_Result get_device(struct fleet_api *a, struct MHD_Connection *conn, const char *name)
{
    if (!fleet_name_ok(name))
        return respond_error(conn, 400, "not a device name");
    _cleanup_res_ PGresult *dev = NULL, *hist = NULL;
    tm_err err = {0};
    int r = FLEET_EXEC(a->c, &dev, &err,
                       "SELECT " DEVICE_COLUMNS "FROM devices d JOIN device_groups g ON g.id = d.group_id "
                       "WHERE d.name = $1",
                       name);
    if (r == 0 && PQntuples(dev) != 1)
        r = tm_err_set(&err, ENOENT, "device %s: not enrolled", name);
    if (r == 0)
        r = FLEET_EXEC(a->c, &hist, &err,
                       "SELECT v.id, to_char(v.at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at, v.mode, v.trusted, "
                       "v.failed_check, v.attempt, v.latency_ms, v.worker, v.report FROM verdicts v JOIN devices d "
                       "ON d.id = v.device_id WHERE d.name = $1 ORDER BY v.id DESC LIMIT 50",
                       name);
    if (r < 0)
        return respond_err(conn, r, &err);
    json_t *list = rows_json(dev);
    json_t *o = json_incref(json_array_get(list, 0));
    json_decref(list);
    if (o)
        json_object_set_new(o, "verdicts", rows_json(hist));
    return respond_json(conn, 200, o);
}

/* ---- the status page ---- */

static void html_text(FILE *f, const char *s)
{
    for (; s && *s; s++)
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
}

static enum MHD_Result status_page(struct fleet_api *a, struct MHD_Connection *conn)
{
    _cleanup_res_ PGresult *devs = NULL, *alerts = NULL, *trend = NULL, *vtpms = NULL;
    tm_err err = {0};
    int r = fleet_exec(a->c, &devs, &err,
                       "SELECT " DEVICE_COLUMNS "FROM devices d JOIN device_groups g ON g.id = d.group_id "
                       "ORDER BY d.last_trusted NULLS FIRST, d.name",
                       0, NULL);
    if (r == 0)
        r = fleet_exec(a->c, &alerts, &err,
                       "SELECT to_char(at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), kind, message FROM alerts "
                       "ORDER BY id DESC LIMIT 20",
                       0, NULL);
    if (r == 0)
        r = fleet_exec(a->c, &trend, &err,
                       "SELECT to_char(date_trunc('minute', at), 'HH24:MI'), count(*) FILTER (WHERE trusted), "
                       "count(*) FILTER (WHERE NOT trusted) FROM verdicts WHERE at > now() - interval '15 minutes' "
                       "GROUP BY 1 ORDER BY 1",
                       0, NULL);
    /* The vTPMs with a pinned key: the verdict on their own quotes (vtpm_attest.c). */
    if (r == 0)
        r = fleet_exec(a->c, &vtpms, &err,
                       "SELECT d.name, v.name, CASE WHEN v.quote_trusted THEN 'trusted' WHEN NOT v.quote_trusted "
                       "THEN 'untrusted' ELSE 'none' END, coalesce(to_char(v.quoted_at, "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'never'), coalesce(v.quote_failed, '') FROM vtpms v "
                       "JOIN devices d ON d.id = v.device_id WHERE v.ak_public IS NOT NULL "
                       "ORDER BY v.quote_trusted NULLS FIRST, d.name, v.name LIMIT 500",
                       0, NULL);
    if (r < 0)
        return respond_err(conn, r, &err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return respond_error(conn, 500, "out of memory");
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>trustme fleet</title>"
          "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
          ".untrusted{background:#fdd}.trusted{background:#dfd}</style></head><body>\n"
          "<h1>trustme fleet</h1>\n",
          f);
    int failing = 0;
    for (int i = 0; i < PQntuples(devs); i++)
        failing += !PQgetisnull(devs, i, 8) && strcmp(PQgetvalue(devs, i, 8), "untrusted") == 0;
    fprintf(f, "<p id=\"summary\">%d devices, %d failing</p>\n", PQntuples(devs), failing);
    fputs("<h2>Devices</h2>\n<table id=\"devices\"><tr><th>device</th><th>group</th><th>mode</th><th>last "
          "seen</th><th>last verdict</th><th>failing check</th></tr>\n",
          f);
    for (int i = 0; i < PQntuples(devs); i++) {
        const char *verdict = PQgetisnull(devs, i, 8) ? "none" : PQgetvalue(devs, i, 8);
        fprintf(f, "<tr class=\"%s\"><td>", verdict);
        html_text(f, PQgetvalue(devs, i, 0));
        fputs("</td><td>", f);
        html_text(f, PQgetvalue(devs, i, 1));
        fprintf(f, "</td><td>%s</td><td>", PQgetisnull(devs, i, 2) ? "push" : "pull");
        html_text(f, PQgetisnull(devs, i, 6) ? "never" : PQgetvalue(devs, i, 6));
        fprintf(f, "</td><td>%s</td><td>", verdict);
        html_text(f, PQgetvalue(devs, i, 9));
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<h2>vTPMs</h2>\n<table id=\"vtpms\"><tr><th>device</th><th>vTPM</th><th>last "
          "verdict</th><th>at</th><th>failing check</th></tr>\n",
          f);
    for (int i = 0; i < PQntuples(vtpms); i++) {
        fprintf(f, "<tr class=\"%s\"><td>", PQgetvalue(vtpms, i, 2));
        html_text(f, PQgetvalue(vtpms, i, 0));
        fputs("</td><td>", f);
        html_text(f, PQgetvalue(vtpms, i, 1));
        fprintf(f, "</td><td>%s</td><td>%s</td><td>", PQgetvalue(vtpms, i, 2), PQgetvalue(vtpms, i, 3));
        html_text(f, PQgetvalue(vtpms, i, 4));
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<h2>Verdicts, last 15 minutes</h2>\n<table id=\"trend\"><tr><th>minute</th><th>trusted</th>"
          "<th>untrusted</th></tr>\n",
          f);
    for (int i = 0; i < PQntuples(trend); i++)
        fprintf(f, "<tr><td>%s</td><td>%s</td><td>%s</td></tr>\n", PQgetvalue(trend, i, 0), PQgetvalue(trend, i, 1),
                PQgetvalue(trend, i, 2));
    fputs("</table>\n<h2>Alerts</h2>\n<table id=\"alerts\"><tr><th>at</th><th>kind</th><th>message</th></tr>\n", f);
    for (int i = 0; i < PQntuples(alerts); i++) {
        fprintf(f, "<tr><td>%s</td><td>%s</td><td>", PQgetvalue(alerts, i, 0), PQgetvalue(alerts, i, 1));
        html_text(f, PQgetvalue(alerts, i, 2));
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n</body></html>\n", f);
    fclose(f);
    return respond(conn, 200, "text/html; charset=utf-8", text);
}

/* ---- dispatch ---- */

static size_t body_max(const char *url)
{
    if (strcmp(url, API "groups") == 0)
        return GROUP_BODY_MAX;
    if (strcmp(url, API "push/evidence") == 0)
        return EVIDENCE_BODY_MAX;
    return BODY_MAX;
}

/* The client's chain (leaf first) verifies to the admins' CAs. */
static bool is_admin(const struct fleet_api *a, gnutls_session_t s)
{
    unsigned n = 0;
    const gnutls_datum_t *der = gnutls_certificate_get_peers(s, &n);
    gnutls_x509_crt_t crts[8];
    unsigned k = 0, status = 1;
    for (; der && k < n && k < 8; k++)
        if (gnutls_x509_crt_init(&crts[k]) < 0 || gnutls_x509_crt_import(crts[k], &der[k], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(crts[k]);
            break;
        }
    bool ok =
        k > 0 && k == n && gnutls_x509_trust_list_verify_crt(a->admins, crts, k, 0, &status, NULL) == 0 && status == 0;
    for (unsigned i = 0; i < k; i++)
        gnutls_x509_crt_deinit(crts[i]);
    return ok;
}

/* The client's certificate verified against the client CAs MHD was given
 * (MHD_OPTION_HTTPS_MEM_TRUST: the admins' and the viewers'): chain, dates, signature. 0, or
 * why not; *role: admin, or viewer when it does not verify to the admins' CAs alone. */
static const char *client_cert_problem(const struct fleet_api *a, struct MHD_Connection *conn, enum role *role)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return "not a TLS connection";
    gnutls_session_t s = ci->tls_session;
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(s, &n) || n == 0)
        return "no client certificate";
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0)
        return "the client certificate does not verify to the fleet's client CA";
    *role = !a->admins || is_admin(a, s) ? ROLE_ADMIN : ROLE_VIEWER;
    return NULL;
}

static bool is_push(const char *url)
{
    return strcmp(url, API "push/nonce") == 0 || strcmp(url, API "push/evidence") == 0;
}

static enum MHD_Result dispatch(struct fleet_api *a, struct MHD_Connection *conn, const char *url, const char *method,
                                const struct request *rq)
{
    /* Push mode authenticates itself (a nonce issued to the name, the enrolled AK pinned, the
     * TPM's signature): devices need no client certificate. Everything else is the operators'. */
    enum role role = ROLE_ADMIN;
    const char *problem = a->client_certs && !is_push(url) ? client_cert_problem(a, conn, &role) : NULL;
    if (problem) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s: this endpoint is the operators'", problem);
        return respond_error(conn, 403, msg);
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    /* Viewers read (status page, devices, verdicts, groups, alerts); enrolling, removing and
     * rolling out reference values are the admins'. Decided by method, before any endpoint. */
    if (role == ROLE_VIEWER && !get && !is_push(url))
        return respond_error(conn, 403,
                             "a viewer's certificate: reading only (enrolling, removing devices and groups' "
                             "reference values are the admins')");
    if (strcmp(url, "/") == 0 && get)
        return status_page(a, conn);
    if (strcmp(url, API "devices") == 0 && get)
        return query_json(a, conn, "devices",
                          "SELECT " DEVICE_COLUMNS "FROM devices d JOIN device_groups g ON g.id = d.group_id "
                          "ORDER BY d.name",
                          NULL);
    if (strncmp(url, API "devices/", strlen(API "devices/")) == 0 && (get || strcmp(method, "DELETE") == 0)) {
        const char *name = url + strlen(API "devices/");
        if (get)
            return get_device(a, conn, name);
        tm_err err = {0};
        int r = fleet_device_remove(a->c, name, &err);
        return r < 0 ? respond_err(conn, r, &err) : respond_json(conn, 200, json_pack("{s:s}", "removed", name));
    }
    if (strcmp(url, API "groups") == 0 && get)
        return query_json(a, conn, "groups",
                          "SELECT name, interval_s AS interval, array_to_json(pcrs)::text AS pcrs, pin_ak, "
                          "min_version, rim_version, (SELECT count(*) FROM devices d WHERE d.group_id = g.id) "
                          "AS devices FROM device_groups g ORDER BY name",
                          NULL);
    if (strcmp(url, API "vtpms") == 0 && get) {
        _cleanup_res_ PGresult *res = NULL;
        tm_err err = {0};
        int r = fleet_exec(a->c, &res, &err, FLEET_VTPMS_SQL, 0, NULL);
        if (r < 0)
            return respond_err(conn, r, &err);
        json_error_t je;
        json_t *list = json_loads(PQgetvalue(res, 0, 0), 0, &je);
        return list ? respond_json(conn, 200, json_pack("{s:o}", "vtpms", list))
                    : respond_error(conn, 500, "vtpms: not JSON");
    }
    if (strcmp(url, API "stats") == 0 && get) {
        _cleanup_res_ PGresult *res = NULL;
        tm_err err = {0};
        int r = fleet_exec(a->c, &res, &err, FLEET_STATS_SQL, 0, NULL);
        if (r < 0)
            return respond_err(conn, r, &err);
        json_error_t je;
        json_t *o = json_loads(PQgetvalue(res, 0, 0), 0, &je);
        return o ? respond_json(conn, 200, o) : respond_error(conn, 500, "stats: not JSON");
    }
    if (strcmp(url, API "alerts") == 0 && get)
        return query_json(a, conn, "alerts",
                          "SELECT id, to_char(at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, kind, device, message "
                          "FROM alerts ORDER BY id DESC LIMIT 200",
                          NULL);
    if (post) {
        const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        if (!type || strncmp(type, "application/json", 16) != 0)
            return respond_error(conn, 415, "the body must be application/json");
        if (strcmp(url, API "devices") == 0)
            return enroll(a, conn, rq);
        if (strcmp(url, API "groups") == 0)
            return put_group(a, conn, rq);
        if (strcmp(url, API "vtpms") == 0)
            return enroll_vtpm(a, conn, rq);
        if (strcmp(url, API "push/nonce") == 0)
            return push_nonce(a, conn, rq);
        if (strcmp(url, API "push/evidence") == 0)
            return push_evidence(a, conn, rq);
    }
    return respond_error(conn, 404, "no such endpoint (or not with this method)");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct fleet_api *a = cls;
    struct request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        rq->max = body_max(url);
        *con_cls = rq;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > rq->max) {
            rq->too_big = true;
            char msg[96];
            snprintf(msg, sizeof(msg), "the body is larger than %zu bytes", rq->max);
            return respond_error(conn, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_big || rq->len + n > rq->max) {
            rq->too_big = true;
            return MHD_YES;
        }
        char *grown = realloc(rq->body, rq->len + n + 1);
        if (!grown)
            return MHD_NO;
        rq->body = grown;
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the body is larger than %zu bytes", rq->max);
        return respond_error(conn, 413, msg);
    }
    return dispatch(a, conn, url, method, rq);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct request *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

int fleet_api_start(const char *addr, uint16_t port, const char *conninfo, const char *alert_command,
                    const struct fleet_api_tls *tls, struct fleet_api **ret, uint16_t *ret_port, tm_err *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return tm_err_set(err, EINVAL, "--listen: %s is not an IPv4 address", addr);
    struct fleet_api *a = calloc(1, sizeof(*a));
    if (!a)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = fleet_db_connect(conninfo, &a->c, err);
    if (r < 0) {
        free(a);
        return r;
    }
    a->alert_command = alert_command ? strdup(alert_command) : NULL;
    /* One thread serves every request in turn on one connection to the database: the API is
     * the operators' and the pushing devices', the pull work is the workers'. */
    bool use_tls = tls && tls->cert_pem;
    a->client_certs = use_tls && tls->client_ca_pem;
    /* Viewers: MHD verifies against both lists, the role is which one (is_admin). */
    _cleanup_free_ char *trust = NULL;
    if (a->client_certs && tls->viewer_ca_pem) {
        gnutls_datum_t admins = {.data = (unsigned char *)tls->client_ca_pem, .size = strlen(tls->client_ca_pem)};
        if (asprintf(&trust, "%s\n%s", tls->client_ca_pem, tls->viewer_ca_pem) < 0 ||
            gnutls_x509_trust_list_init(&a->admins, 0) < 0 ||
            gnutls_x509_trust_list_add_trust_mem(a->admins, &admins, NULL, GNUTLS_X509_FMT_PEM, 0, 0) <= 0) {
            if (a->admins)
                gnutls_x509_trust_list_deinit(a->admins, 1);
            PQfinish(a->c);
            free(a->alert_command);
            free(a);
            return tm_err_set(err, EINVAL, "--client-ca: no usable CA certificate for the admins");
        }
    }
    /* Unused options are passed as MHD_OPTION_ARRAY with nothing in it. */
    struct MHD_OptionItem tls_opts[] = {
        {use_tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, use_tls ? (void *)tls->cert_pem : NULL},
        {use_tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, use_tls ? (void *)tls->key_pem : NULL},
        {a->client_certs ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0,
         a->client_certs ? (void *)(trust ? trust : tls->client_ca_pem) : NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | (use_tls ? MHD_USE_TLS : 0), port, NULL,
                            NULL, handler, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                            completed, a, MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 64u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!a->d) {
        if (a->admins)
            gnutls_x509_trust_list_deinit(a->admins, 1);
        PQfinish(a->c);
        free(a->alert_command);
        free(a);
        return tm_err_set(err, EADDRINUSE, "cannot listen on %s:%u%s", addr, port,
                          use_tls ? " (or the TLS certificate, key or client CA is not usable)" : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    *ret_port = info ? info->port : port;
    *ret = a;
    return 0;
}

void fleet_api_stop(struct fleet_api *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->d);
    if (a->admins)
        gnutls_x509_trust_list_deinit(a->admins, 1);
    PQfinish(a->c);
    free(a->alert_command);
    free(a);
}
