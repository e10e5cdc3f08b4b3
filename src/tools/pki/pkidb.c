/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pki.json: what a PKI directory holds beyond its PEM files (docs/PKI.md "pki.json"): the
 * algorithm, where each key is, what each CA issued and revoked, and its CRL number.
 *
 * Verbs that change it (issue, revoke, crl) hold an exclusive flock on the PKI directory from
 * reading pki.json to replacing it, so two runs cannot lose each other's records. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "pki.h"

#define PKI_JSON_MAX (4 << 20)
#define PKI_FORMAT 1

static json_t *get(json_t *o, const char *key, json_type type)
{
    json_t *v = NULL;
    if (!o || !(v = json_object_get(o, key)) || json_typeof(v) != type)
        return NULL;
    return v;
}

static const char *get_str(json_t *o, const char *key)
{
    json_t *v = get(o, key, JSON_STRING);
    return v ? json_string_value(v) : NULL;
}

static int add_str(json_t *o, const char *key, const char *value)
{
    /* json_object_set_new takes v even when it fails, and fails for a NULL v. */
    return json_object_set_new(o, key, json_string(value)) != 0 ? -ENOMEM : 0;
}

int pki_open(const char *dir, struct pki *p, tm_err *err)
{
    memset(p, 0, sizeof(*p));
    p->lock_fd = -1;
    if (strlen(dir) >= sizeof(p->dir) - 64)
        return tm_err_set(err, ENAMETOOLONG, "PKI directory name too long");
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    if ((p->lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return tm_err_sys(err, "cannot open the PKI directory %s", dir);
    if (flock(p->lock_fd, LOCK_EX) < 0)
        return tm_err_sys(err, "cannot lock %s", dir);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/pki.json", dir);
    _cleanup_free_ char *text = NULL;
    size_t len;
    int r = read_file(path, PKI_JSON_MAX, &text, &len, err);
    if (r < 0)
        return r;
    json_error_t je;
    p->db = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!p->db)
        return tm_err_set(err, EINVAL, "%s: line %d, column %d: %s", path, je.line, je.column, je.text);
    json_t *fmt = get(p->db, "format", JSON_INTEGER);
    if (!json_is_object(p->db))
        return tm_err_set(err, EINVAL, "%s is not a JSON object", path);
    if (!fmt || json_integer_value(fmt) != PKI_FORMAT)
        return tm_err_set(err, EINVAL, "%s: format is not %d", path, PKI_FORMAT);
    const char *alg = get_str(p->db, "algorithm");
    if (!alg || pki_alg_parse(alg, &p->alg) < 0)
        return tm_err_set(err, EINVAL, "%s: unknown algorithm", path);
    const char *module = get_str(p->db, "pkcs11_module");
    snprintf(p->module, sizeof(p->module), "%s", module ? module : "");
    if (!get(p->db, "keys", JSON_OBJECT) || !get(p->db, "cas", JSON_OBJECT))
        return tm_err_set(err, EINVAL, "%s: \"keys\" or \"cas\" missing", path);
    return 0;
}

int pki_new(struct pki *p, const char *dir, enum pki_alg alg, const char *module, tm_err *err)
{
    memset(p, 0, sizeof(*p));
    p->lock_fd = -1;
    p->alg = alg;
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    snprintf(p->module, sizeof(p->module), "%s", module ? module : "");
    char now[16];
    time_format(time(NULL), now);
    json_t *keys, *cas;
    if (!(p->db = json_object()) || json_object_set_new(p->db, "format", json_integer(PKI_FORMAT)) != 0 ||
        add_str(p->db, "algorithm", pki_alg_name(alg)) < 0 || add_str(p->db, "created", now) < 0 ||
        (module && add_str(p->db, "pkcs11_module", module) < 0) ||
        json_object_set_new(p->db, "keys", keys = json_object()) != 0 || !keys ||
        json_object_set_new(p->db, "cas", cas = json_object()) != 0 || !cas)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < pki_entities_count; i++) {
        const struct pki_entity *e = &pki_entities[i];
        char cert[128];
        snprintf(cert, sizeof(cert), "%s/%s.pem", e->dir, e->name);
        json_t *k = json_object();
        if (!k || json_object_set_new(keys, e->name, k) != 0 || add_str(k, "cert", cert) < 0 ||
            (e->issuer && add_str(k, "issuer", e->issuer) < 0))
            return tm_err_set(err, ENOMEM, "out of memory");
        if (!pki_entity_is_ca(e))
            continue;
        char crl[128];
        snprintf(crl, sizeof(crl), "crl/%s.pem", e->name);
        json_t *c = json_object();
        if (!c || json_object_set_new(cas, e->name, c) != 0 || add_str(c, "crl", crl) < 0 ||
            json_object_set_new(c, "crl_number", json_integer(0)) != 0 ||
            json_object_set_new(c, "issued", json_array()) != 0 || json_object_set_new(c, "revoked", json_array()) != 0)
            return tm_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

int pki_set_key(struct pki *p, const struct pki_entity *e, const char *spec, tm_err *err)
{
    json_t *k = get(get(p->db, "keys", JSON_OBJECT), e->name, JSON_OBJECT);
    if (!k || add_str(k, "key", spec) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    return 0;
}

void pki_close(struct pki *p)
{
    if (p->db)
        json_decref(p->db);
    p->db = NULL;
    close_and_reset(p->lock_fd);
}

int pki_save(struct pki *p, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/pki.json", p->dir);
    _cleanup_free_ char *text = json_dumps(p->db, JSON_PRETTY_FLAGS);
    _cleanup_free_ char *with_nl = NULL;
    if (!text || asprintf(&with_nl, "%s\n", text) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    return write_file_atomic(path, with_nl, strlen(with_nl), 0644, err);
}

void pki_cert_path(const struct pki *p, const struct pki_entity *e, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s/%s.pem", p->dir, e->dir, e->name);
}

int pki_load_cert(const struct pki *p, const struct pki_entity *e, X509 **ret, tm_err *err)
{
    char path[PATH_MAX];
    pki_cert_path(p, e, path);
    return pem_read_cert(path, ret, err);
}

int pki_load_key(struct pki *p, struct keyring *kr, const struct pki_entity *e, EVP_PKEY **ret, tm_err *err)
{
    const char *spec = get_str(get(get(p->db, "keys", JSON_OBJECT), e->name, JSON_OBJECT), "key");
    if (!spec)
        return tm_err_set(err, EINVAL, "pki.json: no key recorded for %s", e->name);
    if (!kr->module && p->module[0])
        kr->module = p->module;
    int r = keyring_load(kr, spec, p->dir, ret, err);
    return r < 0 ? tm_err_prefix(err, "key of %s", e->name) : 0;
}

static json_t *ca_record(struct pki *p, const struct pki_entity *ca, tm_err *err)
{
    json_t *rec = get(get(p->db, "cas", JSON_OBJECT), ca->name, JSON_OBJECT);
    if (!rec)
        tm_err_set(err, EINVAL, "pki.json: no record of CA %s", ca->name);
    return rec;
}

static char *serial_hex(X509 *x)
{
    _cleanup_(BN_freep) BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    return bn ? BN_bn2hex(bn) : NULL;
}

int pki_record_issued(struct pki *p, const struct pki_entity *ca, X509 *cert, tm_err *err)
{
    json_t *rec = ca_record(p, ca, err);
    json_t *issued = get(rec, "issued", JSON_ARRAY);
    if (!rec)
        return -EINVAL;
    if (!issued)
        return tm_err_set(err, EINVAL, "pki.json: CA %s has no \"issued\" list", ca->name);
    char *hex = serial_hex(cert);
    char subject[512], not_after[16];
    name_string(X509_get_subject_name(cert), subject, sizeof(subject));
    time_t t;
    /* ASN1_TIME_to_tm keeps the moment; our time_t is what pki.json records, in one format */
    struct tm tm;
    if (!hex || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) {
        OPENSSL_free(hex);
        return tm_err_set(err, EINVAL, "cannot read the certificate's serial or notAfter");
    }
    t = timegm(&tm);
    time_format(t, not_after);
    _cleanup_json_ json_t *entry = json_object();
    int r = entry ? 0 : -ENOMEM;
    if (r == 0)
        r = add_str(entry, "serial", hex);
    if (r == 0)
        r = add_str(entry, "subject", subject);
    if (r == 0)
        r = add_str(entry, "not_after", not_after);
    OPENSSL_free(hex);
    if (r < 0 || json_array_append_new(issued, entry) != 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    entry = NULL;
    return 0;
}

int pki_record_revoked(struct pki *p, const struct pki_entity *ca, X509 *cert, int reason, tm_err *err)
{
    json_t *rec = ca_record(p, ca, err);
    if (!rec)
        return -EINVAL;
    json_t *revoked = get(rec, "revoked", JSON_ARRAY);
    if (!revoked)
        return tm_err_set(err, EINVAL, "pki.json: CA %s has no \"revoked\" list", ca->name);
    char *hex = serial_hex(cert);
    if (!hex)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(revoked); i++) {
        const char *s = get_str(json_array_get(revoked, i), "serial");
        if (s && strcasecmp(s, hex) == 0) {
            tm_err_set(err, EEXIST, "serial %s is already revoked by %s", hex, ca->name);
            OPENSSL_free(hex);
            return -EEXIST;
        }
    }
    char now[16];
    time_format(time(NULL), now);
    _cleanup_json_ json_t *entry = json_object();
    int r = entry ? 0 : -ENOMEM;
    if (r == 0)
        r = add_str(entry, "serial", hex);
    if (r == 0)
        r = add_str(entry, "date", now);
    if (r == 0 && reason != CRL_REASON_NONE)
        r = add_str(entry, "reason", revoke_reason_name(reason));
    OPENSSL_free(hex);
    if (r < 0 || json_array_append_new(revoked, entry) != 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    entry = NULL;
    return 0;
}

/* Sign and write the next CRL of ca with key. */
static int write_crl_with(struct pki *p, const struct pki_entity *ca, X509 *ca_cert, EVP_PKEY *key, int days,
                          tm_err *err)
{
    json_t *rec = ca_record(p, ca, err);
    if (!rec)
        return -EINVAL;
    json_t *revoked = get(rec, "revoked", JSON_ARRAY);
    json_t *num = get(rec, "crl_number", JSON_INTEGER);
    if (!revoked || !num)
        return tm_err_set(err, EINVAL, "pki.json: CA %s lacks \"revoked\" or \"crl_number\"", ca->name);
    size_t n = json_array_size(revoked);
    _cleanup_free_ struct revoked_entry *entries = calloc(n ? n : 1, sizeof(*entries));
    if (!entries)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(revoked, i);
        const char *serial = get_str(e, "serial"), *date = get_str(e, "date");
        const char *reason = get_str(e, "reason");
        entries[i].serial_hex = serial;
        entries[i].reason = CRL_REASON_NONE;
        if (!serial || !date || time_parse(date, &entries[i].date) < 0 ||
            (reason && revoke_reason_parse(reason, &entries[i].reason) < 0))
            return tm_err_set(err, EINVAL, "pki.json: revoked entry %zu of %s is malformed", i + 1, ca->name);
    }
    int64_t number = json_integer_value(num) + 1;
    time_t now = time(NULL);
    _cleanup_(X509_CRL_freep) X509_CRL *crl = NULL;
    int r = crl_make(ca_cert, key, entries, n, (long)number, now, now + (time_t)days * 86400, &crl, err);
    if (r < 0)
        return tm_err_prefix(err, "CRL of %s", ca->name);
    _cleanup_(BIO_freep) BIO *mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_X509_CRL(mem, crl) != 1)
        return ossl_fail(err, ENOMEM, "cannot encode the CRL of %s", ca->name);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/crl/%s.pem", p->dir, ca->name);
    if ((r = bio_write_atomic(mem, path, 0644, err)) < 0)
        return r;
    json_integer_set(num, number);
    return 0;
}

int pki_write_crl(struct pki *p, struct keyring *kr, const struct pki_entity *ca, int days, tm_err *err)
{
    _cleanup_(X509_freep) X509 *cert = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
    int r = pki_load_cert(p, ca, &cert, err);
    if (r < 0 || (r = pki_load_key(p, kr, ca, &key, err)) < 0)
        return r;
    return write_crl_with(p, ca, cert, key, days, err);
}

int pki_write_crl_initial(struct pki *p, const struct pki_entity *ca, X509 *cert, EVP_PKEY *key, int days, tm_err *err)
{
    return write_crl_with(p, ca, cert, key, days, err);
}

int pki_write_crl_bundle(const char *dir, tm_err *err)
{
    _cleanup_(BIO_freep) BIO *mem = BIO_new(BIO_s_mem());
    if (!mem)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < pki_entities_count; i++) {
        if (!pki_entity_is_ca(&pki_entities[i]))
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/crl/%s.pem", dir, pki_entities[i].name);
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_file(path, (1 << 20), &text, &len, err);
        if (r < 0)
            return r;
        if (BIO_write(mem, text, (int)len) != (int)len)
            return tm_err_set(err, ENOMEM, "out of memory");
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/crls.pem", dir);
    return bio_write_atomic(mem, path, 0644, err);
}
