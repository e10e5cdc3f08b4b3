/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki rim: the reference values a verifier accepts (docs/ATTESTATION.md), from release
 * binaries, GuestOS directories and config files. Output is deterministic (sorted, without
 * duplicates), so two runs over the same release give the same bytes and the same signature
 * input; `trustme-pki sign REFS.json --signer software` signs it.
 *
 * A GuestOS's images are entered with the hash its guestos.json declares, because that is
 * what trustmed measures (docs/ATTESTATION.md); each image file is hashed here too and must
 * match, so a release never vouches for a directory whose images were swapped.
 *
 * The file is also the verifier's policy (format version 2): its number (--version), validity
 * period, the PCRs a quote must cover (the device config's boot and runtime PCR) and the
 * events a log must hold (each --binary and the device config, by type and name). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "guestos_config.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "measurement.h"
#include "pki.h"

#define RIM_INPUTS_MAX 4096
#define RIM_VALUES_MAX 65536

struct rim_value {
    char type[TM_EVENT_TYPE_MAX + 1];
    char name[TM_EVENT_NAME_MAX + 1];
    uint8_t sha256[32];
};

struct rim {
    struct rim_value *v;
    size_t n, cap;
    /* The policy: required events (type, name) and the PCRs, as a mask. */
    struct rim_value *req;
    size_t n_req;
    uint32_t pcrs;
    uint64_t version;
    time_t not_before, not_after;
};

#define RIM_REQUIRED_MAX 256 /* as the verifier reads (REFVALUES_REQUIRED_MAX) */
#define BOOT_PCR_DEFAULT 12 /* device.json's tpm.boot_pcr and runtime_pcr defaults */
#define RUNTIME_PCR_DEFAULT 11

static int rim_require(struct rim *r, const char *type, const char *name, tm_err *err)
{
    for (size_t i = 0; i < r->n_req; i++)
        if (!strcmp(r->req[i].type, type) && !strcmp(r->req[i].name, name))
            return 0;
    if (r->n_req == RIM_REQUIRED_MAX)
        return tm_err_set(err, E2BIG, "more than %d required events", RIM_REQUIRED_MAX);
    struct rim_value *v = realloc(r->req, (r->n_req + 1) * sizeof(*v));
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    r->req = v;
    v = &r->req[r->n_req++];
    memset(v, 0, sizeof(*v));
    snprintf(v->type, sizeof(v->type), "%s", type);
    snprintf(v->name, sizeof(v->name), "%s", name);
    return 0;
}

static int rim_add(struct rim *r, const char *type, const char *name, const uint8_t sha256[32], tm_err *err)
{
    /* What no event can carry, no verifier can match: refuse it here. */
    tm_err e = {0};
    if (tm_event_check(0, type, name, 32, &e) < 0)
        return tm_err_set(err, EINVAL, "%s \"%s\": %s", type, name, e.msg);
    if (r->n == r->cap) {
        if (r->cap >= RIM_VALUES_MAX)
            return tm_err_set(err, E2BIG, "more than %d reference values", RIM_VALUES_MAX);
        size_t cap = r->cap ? 2 * r->cap : 64;
        struct rim_value *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            return tm_err_set(err, ENOMEM, "out of memory");
        r->v = v;
        r->cap = cap;
    }
    struct rim_value *v = &r->v[r->n++];
    snprintf(v->type, sizeof(v->type), "%s", type);
    snprintf(v->name, sizeof(v->name), "%s", name);
    memcpy(v->sha256, sha256, 32);
    return 0;
}

static int hash_path(const char *path, uint8_t out[32], tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    int r = tm_sha256_fd(fd, out, NULL, NULL, NULL, err);
    return r < 0 ? tm_err_prefix(err, "%s", path) : 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* A binary of the virtualization layer: its hash is approved and an event of its name is
 * required (trustmed measures its binaries under their names at every start). */
static int add_binary(struct rim *r, const char *path, tm_err *err)
{
    uint8_t h[32];
    int rc = hash_path(path, h, err);
    if (rc >= 0)
        rc = rim_add(r, TM_EVENT_BINARY, base_name(path), h, err);
    return rc < 0 ? rc : rim_require(r, TM_EVENT_BINARY, base_name(path), err);
}

/* The boot and runtime PCR of a device.json (tpm.boot_pcr, tpm.runtime_pcr), which the quote
 * must cover. trustmed has checked the file when the device started; here a value out of
 * range is an error too. */
static int device_pcrs(const char *path, uint32_t *mask, tm_err *err)
{
    _cleanup_free_ char *json = NULL;
    size_t len = 0;
    int rc = read_file(path, 1 << 20, &json, &len, err);
    if (rc < 0)
        return rc;
    _cleanup_json_ json_t *root = NULL;
    if ((rc = tm_json_parse_object(json, len, &root, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    json_t *tpm = NULL;
    int64_t boot = BOOT_PCR_DEFAULT, runtime = RUNTIME_PCR_DEFAULT;
    if (((tpm = json_object_get(root, "tpm")) != NULL) &&
        ((rc = tm_json_get_int(tpm, "$.tpm", "boot_pcr", false, 0, TM_PCR_MAX, &boot, err)) < 0 ||
         (rc = tm_json_get_int(tpm, "$.tpm", "runtime_pcr", false, 0, TM_PCR_MAX, &runtime, err)) < 0))
        return tm_err_prefix(err, "%s", path);
    *mask |= 1u << boot | 1u << runtime;
    return 0;
}

static void guestos_config_freep(struct guestos_config **g)
{
    if (*g)
        guestos_config_free(*g);
}

static int add_guestos(struct rim *r, const char *dir, tm_err *err)
{
    char path[PATH_MAX], prefix[TM_EVENT_NAME_MAX + 1], name[2 * PATH_MAX];
    _cleanup_free_ char *json = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/guestos.json", dir);
    int rc = read_file(path, GUESTOS_JSON_MAX, &json, &len, err);
    if (rc < 0)
        return rc;
    /* trustmed's own parser: what it would refuse, no reference value is made for. */
    _cleanup_(guestos_config_freep) struct guestos_config *g = NULL;
    if ((rc = guestos_config_parse(json, len, &g, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    snprintf(prefix, sizeof(prefix), "%s-%llu", g->name, (unsigned long long)g->version);
    uint8_t h[32];
    tm_sha256(json, len, h);
    snprintf(name, sizeof(name), "%s/guestos.json", prefix);
    if ((rc = rim_add(r, TM_EVENT_GUESTOS_CONFIG, name, h, err)) < 0)
        return rc;
    for (size_t i = 0; i < g->nmounts; i++) {
        const struct guestos_mount *m = &g->mounts[i];
        if (m->kind != GMOUNT_SHARED && m->kind != GMOUNT_OVERLAY)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, m->image);
        if ((rc = hash_path(path, h, err)) < 0)
            return rc;
        if (memcmp(h, m->sha256, 32) != 0) {
            char got[65], want[65];
            tm_hex(h, 32, got);
            tm_hex(m->sha256, 32, want);
            return tm_err_set(err, EBADMSG, "%s: SHA-256 %s, but guestos.json declares %s", path, got, want);
        }
        snprintf(name, sizeof(name), "%s/%s", prefix, m->image);
        if ((rc = rim_add(r, TM_EVENT_GUESTOS_IMAGE, name, m->sha256, err)) < 0)
            return rc;
    }
    return 0;
}

static int add_config(struct rim *r, const char *spec, tm_err *err)
{
    const char *eq = strchr(spec, '=');
    if (!eq || !eq[1])
        return tm_err_set(err, EINVAL, "--config %s: expected TYPE=FILE", spec);
    size_t tlen = (size_t)(eq - spec);
    const char *type;
    if (tlen == strlen(TM_EVENT_DEVICE_CONFIG) && !strncmp(spec, TM_EVENT_DEVICE_CONFIG, tlen))
        type = TM_EVENT_DEVICE_CONFIG;
    else if (tlen == strlen(TM_EVENT_CONTAINER_CONFIG) && !strncmp(spec, TM_EVENT_CONTAINER_CONFIG, tlen))
        type = TM_EVENT_CONTAINER_CONFIG;
    else
        return tm_err_set(err, EINVAL, "--config %s: TYPE is device-config or container-config", spec);
    const char *path = eq + 1;
    uint8_t h[32];
    int rc = hash_path(path, h, err);
    if (rc < 0)
        return rc;
    /* trustmed measures its config as "device.json", whatever the file is called here */
    if (strcmp(type, TM_EVENT_DEVICE_CONFIG) == 0) {
        if ((rc = device_pcrs(path, &r->pcrs, err)) < 0 ||
            (rc = rim_require(r, TM_EVENT_DEVICE_CONFIG, "device.json", err)) < 0)
            return rc;
    }
    /* Named as trustmed names the events: the device config by its file name, a container by
     * its name (the config file's name without .json). */
    char name[TM_EVENT_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", base_name(path));
    size_t n = strlen(name);
    if (strcmp(type, TM_EVENT_CONTAINER_CONFIG) == 0 && n > 5 && strcmp(name + n - 5, ".json") == 0)
        name[n - 5] = '\0';
    return rim_add(r, type, name, h, err);
}

/* --vtpm-ek UUID/ek-KIND=HEX: a vTPM endorsement key the verifier approves (docs/VTPM.md "Endorsement
 * keys and deep attestation"), HEX its TPM name as `trustme vtpm info` shows it (000b and the
 * SHA-256 of its public area) or that SHA-256 alone. */
static int add_vtpm_ek(struct rim *r, const char *spec, tm_err *err)
{
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) > TM_EVENT_NAME_MAX)
        return tm_err_set(err, EINVAL, "--vtpm-ek %s: expected UUID/ek-rsa=NAME or UUID/ek-ecc=NAME", spec);
    char name[TM_EVENT_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)(eq - spec), spec);
    const char *hex = eq + 1;
    if (strlen(hex) == 68 && strncmp(hex, "000b", 4) == 0)
        hex += 4;
    uint8_t h[32];
    tm_err e = {0};
    if (strlen(hex) != 64 || tm_hex_decode_str(hex, h, 32, 0, &e) < 0)
        return tm_err_set(err, EINVAL, "--vtpm-ek %s: NAME is the EK's TPM name (000b and 64 hex digits)", spec);
    if (tm_event_check(0, TM_EVENT_VTPM_EK, name, 32, &e) < 0)
        return tm_err_set(err, EINVAL, "--vtpm-ek %s: %s", spec, e.msg);
    return rim_add(r, TM_EVENT_VTPM_EK, name, h, err);
}

/* --vtpm-owner UUID=FILE: the owner statement the verifier approves for that container's vTPM
 * (docs/VTPM.md "Mandatory and discretionary owners"): the device measures the recorded statement
 * as vtpm-owner UUID/owner with the SHA-256 of its bytes, so FILE is the statement as signed, and
 * the event is required: a device that records no owner for it fails. */
static int add_vtpm_owner(struct rim *r, const char *spec, tm_err *err)
{
    const char *eq = strchr(spec, '=');
    char name[TM_EVENT_NAME_MAX + 1];
    if (!eq || eq == spec || (size_t)(eq - spec) + 6 > TM_EVENT_NAME_MAX || !eq[1])
        return tm_err_set(err, EINVAL, "--vtpm-owner %s: expected UUID=STATEMENT", spec);
    snprintf(name, sizeof(name), "%.*s/owner", (int)(eq - spec), spec);
    uint8_t h[32];
    tm_err e = {0};
    int rc = hash_path(eq + 1, h, err);
    if (rc < 0)
        return rc;
    if (tm_event_check(0, TM_EVENT_VTPM_OWNER, name, 32, &e) < 0)
        return tm_err_set(err, EINVAL, "--vtpm-owner %s: %s", spec, e.msg);
    if ((rc = rim_add(r, TM_EVENT_VTPM_OWNER, name, h, err)) < 0)
        return rc;
    return rim_require(r, TM_EVENT_VTPM_OWNER, name, err);
}

static int cmp_value(const void *a, const void *b)
{
    const struct rim_value *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    if (!c)
        c = strcmp(x->name, y->name);
    return c ? c : memcmp(x->sha256, y->sha256, 32);
}

static int rim_write(struct rim *r, const char *out, tm_err *err)
{
    if (r->n)
        qsort(r->v, r->n, sizeof(*r->v), cmp_value);
    if (r->n_req)
        qsort(r->req, r->n_req, sizeof(*r->req), cmp_value); /* (hashes all zero) */
    _cleanup_json_ json_t *root = json_object();
    json_t *values = json_array();
    if (!root || !values) {
        json_decref(values);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    json_t *pcrs = json_array(), *req = json_array();
    if (!pcrs || !req) {
        json_decref(values);
        json_decref(pcrs);
        json_decref(req);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    char nb[21], na[21];
    struct tm tm;
    strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&r->not_before, &tm));
    strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&r->not_after, &tm));
    json_object_set_new(root, "format", json_string("trustme-reference-values"));
    json_object_set_new(root, "version", json_integer(2));
    json_object_set_new(root, "rim_version", json_integer((int64_t)r->version));
    json_object_set_new(root, "not_before", json_string(nb));
    json_object_set_new(root, "not_after", json_string(na));
    json_object_set_new(root, "pcrs", pcrs);
    json_object_set_new(root, "required", req);
    json_object_set_new(root, "values", values);
    for (int i = 0; i <= TM_PCR_MAX; i++)
        if (r->pcrs & (1u << i))
            json_array_append_new(pcrs, json_integer(i));
    for (size_t i = 0; i < r->n_req; i++) {
        json_t *o = json_object();
        if (!o || json_array_append_new(req, o) < 0) /* takes o even when it fails */
            return tm_err_set(err, ENOMEM, "out of memory");
        json_object_set_new(o, "type", json_string(r->req[i].type));
        json_object_set_new(o, "name", json_string(r->req[i].name));
    }
    for (size_t i = 0; i < r->n; i++) {
        if (i && cmp_value(&r->v[i - 1], &r->v[i]) == 0)
            continue; /* the same binary given twice, two GuestOSes sharing an image */
        char hex[65];
        tm_hex(r->v[i].sha256, 32, hex);
        json_t *o = json_object();
        if (!o || json_array_append_new(values, o) < 0) /* takes o even when it fails */
            return tm_err_set(err, ENOMEM, "out of memory");
        json_object_set_new(o, "type", json_string(r->v[i].type));
        json_object_set_new(o, "name", json_string(r->v[i].name));
        json_object_set_new(o, "sha256", json_string(hex));
    }
    _cleanup_free_ char *s = json_dumps(root, JSON_PRETTY_FLAGS);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    _cleanup_free_ char *text = NULL;
    if (asprintf(&text, "%s\n", s) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    return write_file_atomic(out, text, strlen(text), 0644, err);
}

int cmd_rim(int argc, char **argv)
{
    enum {
        OPT_OUT = 256,
        OPT_BINARY,
        OPT_GUESTOS,
        OPT_CONFIG,
        OPT_VERSION,
        OPT_DAYS,
        OPT_NB,
        OPT_NA,
        OPT_PCR,
        OPT_VTPM_EK,
        OPT_VTPM_OWNER
    };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"version", required_argument, NULL, OPT_VERSION},
                                         {"valid-days", required_argument, NULL, OPT_DAYS},
                                         {"not-before", required_argument, NULL, OPT_NB},
                                         {"not-after", required_argument, NULL, OPT_NA},
                                         {"pcr", required_argument, NULL, OPT_PCR},
                                         {"binary", required_argument, NULL, OPT_BINARY},
                                         {"guestos", required_argument, NULL, OPT_GUESTOS},
                                         {"config", required_argument, NULL, OPT_CONFIG},
                                         {"vtpm-ek", required_argument, NULL, OPT_VTPM_EK},
                                         {"vtpm-owner", required_argument, NULL, OPT_VTPM_OWNER},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *nb = NULL, *na = NULL;
    uint64_t version = 0;
    int days = 0;
    uint32_t pcrs = 0;
    char *end;
    struct {
        int kind;
        const char *arg;
    } inputs[RIM_INPUTS_MAX];
    size_t n = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_OUT: out = optarg; break;
        case OPT_VERSION: {
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || v == 0 || v > INT64_MAX)
                return usage_error("rim", "--version %s: expected a number from 1", optarg);
            version = v;
            break;
        }
        case OPT_DAYS:
            if (parse_days(optarg, &days) < 0)
                return usage_error("rim", "--valid-days %s: expected a number of days", optarg);
            break;
        case OPT_NB: nb = optarg; break;
        case OPT_NA: na = optarg; break;
        case OPT_PCR: {
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > TM_PCR_MAX)
                return usage_error("rim", "--pcr %s: expected a PCR index 0..%d", optarg, TM_PCR_MAX);
            pcrs |= 1u << v;
            break;
        }
        case OPT_BINARY:
        case OPT_GUESTOS:
        case OPT_CONFIG:
        case OPT_VTPM_EK:
        case OPT_VTPM_OWNER:
            if (n == RIM_INPUTS_MAX)
                return usage_error("rim", "at most %d inputs", RIM_INPUTS_MAX);
            if (c == OPT_CONFIG && strncmp(optarg, "device-config=", 14) != 0 &&
                strncmp(optarg, "container-config=", 17) != 0)
                return usage_error("rim",
                                   "--config %s: expected device-config=FILE or "
                                   "container-config=FILE",
                                   optarg);
            inputs[n].kind = c;
            inputs[n++].arg = optarg;
            break;
        case 'h': pki_usage(stdout); return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("rim", "unexpected argument \"%s\"", argv[optind]);
    if (!out)
        return usage_error("rim", "--out REFS.json is required");
    if (n == 0)
        return usage_error("rim", "give at least one --binary, --guestos, --config, --vtpm-ek or --vtpm-owner");
    if (!version)
        return usage_error("rim", "--version N is required (the release's number: a verifier "
                                  "refuses older ones with --min-version)");
    if (days && (nb || na))
        return usage_error("rim", "--valid-days excludes --not-before/--not-after");
    struct rim r = {.version = version, .not_before = time(NULL)};
    if (nb && time_parse(nb, &r.not_before) < 0)
        return usage_error("rim", "--not-before wants YYYYMMDDHHMMSSZ");
    if (na && time_parse(na, &r.not_after) < 0)
        return usage_error("rim", "--not-after wants YYYYMMDDHHMMSSZ");
    if (!na)
        r.not_after = r.not_before + (time_t)(days ? days : 365) * 86400;
    if (r.not_after <= r.not_before)
        return usage_error("rim", "--not-after must be after --not-before");
    _cleanup_free_ struct rim_value *values = NULL, *required = NULL;
    tm_err err = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        if (inputs[i].kind == OPT_BINARY)
            rc = add_binary(&r, inputs[i].arg, &err);
        else if (inputs[i].kind == OPT_GUESTOS)
            rc = add_guestos(&r, inputs[i].arg, &err);
        else if (inputs[i].kind == OPT_VTPM_EK)
            rc = add_vtpm_ek(&r, inputs[i].arg, &err);
        else if (inputs[i].kind == OPT_VTPM_OWNER)
            rc = add_vtpm_owner(&r, inputs[i].arg, &err);
        else
            rc = add_config(&r, inputs[i].arg, &err);
    }
    values = r.v;
    required = r.req;
    /* --pcr replaces the PCRs the device configs name (or the defaults). */
    if (pcrs)
        r.pcrs = pcrs;
    else if (!r.pcrs)
        r.pcrs = 1u << BOOT_PCR_DEFAULT | 1u << RUNTIME_PCR_DEFAULT;
    if (rc >= 0)
        rc = rim_write(&r, out, &err);
    if (rc < 0)
        return verb_fail("rim", &err);
    return 0;
}
