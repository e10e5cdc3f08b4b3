/* trustme-pki rim: the reference values a verifier accepts (docs/ATTESTATION.md), from release
 * binaries, GuestOS directories and config files. Output is deterministic (sorted, without
 * duplicates), so two runs over the same release give the same bytes and the same signature
 * input; `trustme-pki sign REFS.json --signer software` signs it.
 *
 * A GuestOS's images are entered with the hash its guestos.json declares, because that is
 * what trustmed measures (docs/ATTESTATION.md); each image file is hashed here too and must
 * match, so a release never vouches for a directory whose images were swapped. */
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
#include "json_cleanup.h"
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
};

static int rim_add(struct rim *r, const char *type, const char *name, const uint8_t sha256[32],
                   tm_err *err)
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

static int add_binary(struct rim *r, const char *path, tm_err *err)
{
    uint8_t h[32];
    int rc = hash_path(path, h, err);
    return rc < 0 ? rc : rim_add(r, TM_EVENT_BINARY, base_name(path), h, err);
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
            return tm_err_set(err, EBADMSG, "%s: SHA-256 %s, but guestos.json declares %s", path,
                              got, want);
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
    else if (tlen == strlen(TM_EVENT_CONTAINER_CONFIG) &&
             !strncmp(spec, TM_EVENT_CONTAINER_CONFIG, tlen))
        type = TM_EVENT_CONTAINER_CONFIG;
    else
        return tm_err_set(err, EINVAL, "--config %s: TYPE is device-config or container-config",
                          spec);
    const char *path = eq + 1;
    uint8_t h[32];
    int rc = hash_path(path, h, err);
    if (rc < 0)
        return rc;
    /* Named as trustmed names the events: the device config by its file name, a container by
     * its name (the config file's name without .json). */
    char name[TM_EVENT_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", base_name(path));
    size_t n = strlen(name);
    if (strcmp(type, TM_EVENT_CONTAINER_CONFIG) == 0 && n > 5 && strcmp(name + n - 5, ".json") == 0)
        name[n - 5] = '\0';
    return rim_add(r, type, name, h, err);
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
    _cleanup_json_ json_object *root = json_object_new_object();
    json_object *values = json_object_new_array();
    if (!root || !values) {
        json_object_put(values);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    json_object_object_add(root, "format", json_object_new_string("trustme-reference-values"));
    json_object_object_add(root, "version", json_object_new_int(1));
    json_object_object_add(root, "values", values);
    for (size_t i = 0; i < r->n; i++) {
        if (i && cmp_value(&r->v[i - 1], &r->v[i]) == 0)
            continue; /* the same binary given twice, two GuestOSes sharing an image */
        char hex[65];
        tm_hex(r->v[i].sha256, 32, hex);
        json_object *o = json_object_new_object();
        if (!o || json_object_array_add(values, o) < 0) {
            json_object_put(o);
            return tm_err_set(err, ENOMEM, "out of memory");
        }
        json_object_object_add(o, "type", json_object_new_string(r->v[i].type));
        json_object_object_add(o, "name", json_object_new_string(r->v[i].name));
        json_object_object_add(o, "sha256", json_object_new_string(hex));
    }
    const char *s = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    _cleanup_free_ char *text = NULL;
    if (asprintf(&text, "%s\n", s) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    return write_file_atomic(out, text, strlen(text), 0644, err);
}

int cmd_rim(int argc, char **argv)
{
    enum { OPT_OUT = 256, OPT_BINARY, OPT_GUESTOS, OPT_CONFIG };
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"binary", required_argument, NULL, OPT_BINARY},
        {"guestos", required_argument, NULL, OPT_GUESTOS},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL;
    struct {
        int kind;
        const char *arg;
    } inputs[RIM_INPUTS_MAX];
    size_t n = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_OUT: out = optarg; break;
        case OPT_BINARY:
        case OPT_GUESTOS:
        case OPT_CONFIG:
            if (n == RIM_INPUTS_MAX)
                return usage_error("rim", "at most %d inputs", RIM_INPUTS_MAX);
            if (c == OPT_CONFIG && strncmp(optarg, "device-config=", 14) != 0 &&
                strncmp(optarg, "container-config=", 17) != 0)
                return usage_error("rim", "--config %s: expected device-config=FILE or "
                                   "container-config=FILE", optarg);
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
        return usage_error("rim", "give at least one --binary, --guestos or --config");
    _cleanup_free_ struct rim_value *values = NULL;
    struct rim r = {0};
    tm_err err = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        if (inputs[i].kind == OPT_BINARY)
            rc = add_binary(&r, inputs[i].arg, &err);
        else if (inputs[i].kind == OPT_GUESTOS)
            rc = add_guestos(&r, inputs[i].arg, &err);
        else
            rc = add_config(&r, inputs[i].arg, &err);
    }
    values = r.v;
    if (rc >= 0)
        rc = rim_write(&r, out, &err);
    if (rc < 0)
        return verb_fail("rim", &err);
    return 0;
}
