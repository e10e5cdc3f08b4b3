/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Finding an image in an OCI image layout (index.json -> manifest -> config + layers), an OCI
 * archive (a tar of a layout) or a docker-archive (`docker save`: manifest.json -> config + layer
 * tars), and checking every blob before it is used: its size and SHA-256 against the descriptor
 * that names it (docker-archive: the config against its file name, each layer against the
 * config's rootfs.diff_ids). A verified blob is read from the very descriptor it was hashed on. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cleanup.h"
#include "crypto.h"
#include "hex.h"
#include "json_cleanup.h"
#include "oci.h"

#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REF_ANNOTATION "org.opencontainers.image.ref.name"

struct platform {
    char os[32], arch[32], variant[32];
};

struct layer {
    int fd;
    char digest[80];
    enum oci_compression comp;
};

static void layers_close(struct layer *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].fd >= 0)
            close(l[i].fd);
}

static bool valid_sha256_digest(const char *d)
{
    if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
        return false;
    for (const char *p = d + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Hash fd from its start and compare; leaves it at offset 0. */
static int check_fd(int fd, const char *what, const char *digest, int64_t size, tm_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "%s", what);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", what);
    if (size >= 0 && st.st_size != size)
        return tm_err_set(err, EINVAL, "%s has %lld bytes, its descriptor says %lld (truncated or replaced)", what,
                          (long long)st.st_size, (long long)size);
    uint8_t d[32];
    uint64_t n;
    char hex[TM_SHA256_HEX_LEN + 1];
    int r = tm_sha256_fd(fd, d, &n, NULL, NULL, err);
    if (r < 0)
        return tm_err_prefix(err, "%s", what);
    tm_hex(d, sizeof(d), hex);
    if (n != (uint64_t)st.st_size || strcmp(hex, digest + 7) != 0)
        return tm_err_set(err, EINVAL, "%s: digest mismatch: its content has sha256:%s, %s was expected", what, hex,
                          digest);
    if (lseek(fd, 0, SEEK_SET) < 0)
        return tm_err_sys(err, "%s", what);
    return 0;
}

/* fd's content in an unnamed file of copy_dir_fd (the import's private 0700 directory), fd closed:
 * whoever can still write the source (a shared or mounted layout directory) could change the
 * bytes after they were hashed and before they are read, through another descriptor of the same
 * inode. Copies at most max + 1 bytes when max >= 0 (the descriptor's size: more is refused
 * anyway). copy_dir_fd < 0: the source is private already (an unpacked archive), fd returned. */
static int private_copy(int fd, int copy_dir_fd, int64_t max, const char *what, tm_err *err)
{
    if (copy_dir_fd < 0)
        return fd;
    _cleanup_close_ int in = fd;
    struct stat st;
    if (fstat(in, &st) < 0)
        return tm_err_sys(err, "%s", what);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", what);
    _cleanup_close_ int out = openat(copy_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (out < 0)
        return tm_err_sys(err, "%s: cannot make a private copy", what);
    _cleanup_free_ char *buf = malloc(1 << 20);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    uint64_t left = max >= 0 ? (uint64_t)max + 1 : UINT64_MAX;
    while (left) {
        ssize_t n = read(in, buf, left < (1 << 20) ? (size_t)left : (1 << 20));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "%s", what);
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t k = write(out, buf + done, (size_t)(n - done));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return tm_err_sys(err, "%s: cannot make a private copy", what);
            done += k;
        }
        left -= (uint64_t)n;
    }
    if (lseek(out, 0, SEEK_SET) < 0)
        return tm_err_sys(err, "%s", what);
    int r = out;
    out = -1;
    return r;
}

/* The blob a descriptor names, checked (on a private copy, see private_copy). */
static int open_blob(int dir_fd, int copy_dir_fd, json_t *desc, const char *what, const char **ret_digest, tm_err *err)
{
    json_t *d = json_object_get(desc, "digest"), *s = json_object_get(desc, "size");
    if (!json_is_string(d) || !json_is_integer(s) || json_integer_value(s) < 0)
        return tm_err_set(err, EINVAL, "%s: descriptor without a digest and size", what);
    const char *digest = json_string_value(d);
    if (!valid_sha256_digest(digest))
        return tm_err_set(err, EINVAL, "%s: digest \"%.80s\" is not sha256:<64 lower-case hex digits>", what, digest);
    char path[128];
    snprintf(path, sizeof(path), "blobs/sha256/%s", digest + 7);
    char w[256];
    snprintf(w, sizeof(w), "%s (%s)", what, digest);
    int fd = oci_open_beneath(dir_fd, path, O_RDONLY, err);
    if (fd >= 0)
        fd = private_copy(fd, copy_dir_fd, json_integer_value(s), w, err);
    if (fd < 0)
        return tm_err_prefix(err, "%s (%s)", what, digest);
    _cleanup_close_ int owned = fd;
    int r = check_fd(fd, w, digest, json_integer_value(s), err);
    if (r < 0)
        return r;
    if (ret_digest)
        *ret_digest = digest;
    return steal_fd(owned);
}

static int read_json_fd(int fd, const char *what, json_t **ret, tm_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "%s", what);
    if (st.st_size > OCI_JSON_MAX)
        return tm_err_set(err, EFBIG, "%s is larger than %d bytes", what, OCI_JSON_MAX);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t k = pread(fd, buf + n, (size_t)st.st_size - n, (off_t)n);
        if (k <= 0)
            return k < 0 ? tm_err_sys(err, "%s", what) : tm_err_set(err, EIO, "%s: short read", what);
        n += (size_t)k;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return tm_err_set(err, EINVAL, "%s: not JSON: %s (line %d)", what, je.text, je.line);
    *ret = j;
    return 0;
}

static int read_json_blob(int dir_fd, int copy_dir_fd, json_t *desc, const char *what, const char **ret_digest,
                          json_t **ret, tm_err *err)
{
    _cleanup_close_ int fd = open_blob(dir_fd, copy_dir_fd, desc, what, ret_digest, err);
    if (fd < 0)
        return fd;
    return read_json_fd(fd, what, ret, err);
}

static int read_json_file(int dir_fd, const char *name, json_t **ret, tm_err *err)
{
    _cleanup_close_ int fd = oci_open_beneath(dir_fd, name, O_RDONLY, err);
    if (fd < 0)
        return fd;
    return read_json_fd(fd, name, ret, err);
}

static const char *str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool platform_matches(json_t *p, const struct platform *want)
{
    const char *os = str(p, "os"), *arch = str(p, "architecture"), *variant = str(p, "variant");
    if (!os || !arch || strcmp(os, want->os) || strcmp(arch, want->arch))
        return false;
    return !want->variant[0] || (variant && !strcmp(variant, want->variant));
}

/* Follow an index to the manifest for the platform; nested indexes up to a small depth. */
static int pick_manifest(int dir_fd, int copy_dir_fd, json_t *index, const char *what, const struct platform *want,
                         const char *ref, int depth, json_t **ret_desc, tm_err *err)
{
    json_t *list = json_object_get(index, "manifests");
    if (!json_is_array(list))
        return tm_err_set(err, EINVAL, "%s: no \"manifests\" array", what);
    json_t *found = NULL, *desc;
    size_t i, n = 0;
    json_array_foreach(list, i, desc)
    {
        const char *mt = str(desc, "mediaType");
        json_t *ann = json_object_get(desc, "annotations");
        if (ref && depth == 0 && (!str(ann, REF_ANNOTATION) || strcmp(str(ann, REF_ANNOTATION), ref)))
            continue;
        json_t *p = json_object_get(desc, "platform");
        if (mt && (!strcmp(mt, MT_INDEX) || !strcmp(mt, MT_DOCKER_LIST))) {
            if (p && !platform_matches(p, want))
                continue;
            if (depth >= 3)
                return tm_err_set(err, ELOOP, "%s: image indexes nested too deeply", what);
            _cleanup_json_ json_t *sub = NULL;
            char w[64];
            snprintf(w, sizeof(w), "image index %zu", i);
            int r = read_json_blob(dir_fd, copy_dir_fd, desc, w, NULL, &sub, err);
            if (r < 0)
                return r;
            json_t *d;
            if ((r = pick_manifest(dir_fd, copy_dir_fd, sub, w, want, NULL, depth + 1, &d, err)) < 0)
                return r;
            found = d;
            n++;
            continue;
        }
        if (mt && strcmp(mt, MT_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST))
            continue; /* artifacts, attestations */
        if (p && !platform_matches(p, want))
            continue;
        found = json_incref(desc);
        n++;
    }
    if (n == 0)
        return tm_err_set(err, ENOENT, "%s: no image for %s/%s%s%s%s%s", what, want->os, want->arch,
                          want->variant[0] ? "/" : "", want->variant, ref ? " named " : "", ref ? ref : "");
    if (n > 1) {
        json_decref(found);
        return tm_err_set(err, EINVAL, "%s: %zu images for %s/%s: choose one with --ref", what, n, want->os,
                          want->arch);
    }
    *ret_desc = found;
    return 0;
}

static void strv_free_n(char **v, size_t n)
{
    for (size_t i = 0; i < n && v; i++)
        free(v[i]);
    free(v);
}

void oci_image_free(struct oci_image *img)
{
    strv_free_n(img->entrypoint, img->n_entrypoint);
    strv_free_n(img->cmd, img->n_cmd);
    strv_free_n(img->env, img->n_env);
    strv_free_n(img->ports, img->n_ports);
    strv_free_n(img->volumes, img->n_volumes);
    free(img->working_dir);
    free(img->user);
    *img = (struct oci_image){0};
}

static int strv_from_array(json_t *a, const char *what, char ***ret, size_t *ret_n, tm_err *err)
{
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return tm_err_set(err, EINVAL, "image config: %s is not an array", what);
    char **v = calloc(json_array_size(a) + 1, sizeof(char *));
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t i;
    json_t *s;
    json_array_foreach(a, i, s)
    {
        if (!json_is_string(s) || !(v[i] = strdup(json_string_value(s)))) {
            strv_free_n(v, i);
            return tm_err_set(err, EINVAL, "image config: %s[%zu] is not a string", what, i);
        }
    }
    *ret = v;
    *ret_n = json_array_size(a);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Object keys ({"80/tcp": {}}), sorted: jansson's order is the document's, a release's must not be. */
static int strv_from_keys(json_t *o, const char *what, char ***ret, size_t *ret_n, tm_err *err)
{
    if (!o || json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return tm_err_set(err, EINVAL, "image config: %s is not an object", what);
    char **v = calloc(json_object_size(o) + 1, sizeof(char *));
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t n = 0;
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val)
    {
        if (!(v[n] = strdup(k))) {
            strv_free_n(v, n);
            return tm_err_set(err, ENOMEM, "out of memory");
        }
        n++;
    }
    qsort(v, n, sizeof(char *), cmp_str);
    *ret = v;
    *ret_n = n;
    return 0;
}

static const char *uname_arch(const char *oci)
{
    static const char *const map[][2] = {{"amd64", "x86_64"},   {"arm64", "aarch64"},   {"386", "i686"},
                                         {"arm", "armv7l"},     {"ppc64le", "ppc64le"}, {"s390x", "s390x"},
                                         {"riscv64", "riscv64"}};
    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (!strcmp(map[i][0], oci))
            return map[i][1];
    return oci;
}

static int parse_config(json_t *cfg, const struct platform *want, size_t n_layers, bool docker, struct oci_image *img,
                        json_t **ret_diff_ids, tm_err *err)
{
    const char *os = str(cfg, "os"), *arch = str(cfg, "architecture");
    if (!os || !arch)
        return tm_err_set(err, EINVAL, "image config: no os and architecture");
    if (strcmp(os, want->os) || strcmp(arch, want->arch))
        return tm_err_set(err, EINVAL, "image config: the image is for %s/%s, not %s/%s", os, arch, want->os,
                          want->arch);
    snprintf(img->architecture, sizeof(img->architecture), "%s", uname_arch(arch));
    json_t *rootfs = json_object_get(cfg, "rootfs"), *diff_ids = json_object_get(rootfs, "diff_ids");
    if (!json_is_array(diff_ids) || json_array_size(diff_ids) != n_layers)
        return tm_err_set(err, EINVAL, "image config: rootfs.diff_ids does not list the %zu layers", n_layers);
    if (docker)
        for (size_t i = 0; i < n_layers; i++) {
            json_t *d = json_array_get(diff_ids, i);
            if (!json_is_string(d) || !valid_sha256_digest(json_string_value(d)))
                return tm_err_set(err, EINVAL, "image config: rootfs.diff_ids[%zu] is not a sha256 digest", i);
        }
    *ret_diff_ids = diff_ids;
    json_t *c = json_object_get(cfg, "config");
    if (!c || json_is_null(c))
        return 0;
    if (!json_is_object(c))
        return tm_err_set(err, EINVAL, "image config: \"config\" is not an object");
    int r;
    if ((r = strv_from_array(json_object_get(c, "Entrypoint"), "Entrypoint", &img->entrypoint, &img->n_entrypoint,
                             err)) < 0 ||
        (r = strv_from_array(json_object_get(c, "Cmd"), "Cmd", &img->cmd, &img->n_cmd, err)) < 0 ||
        (r = strv_from_array(json_object_get(c, "Env"), "Env", &img->env, &img->n_env, err)) < 0 ||
        (r = strv_from_keys(json_object_get(c, "ExposedPorts"), "ExposedPorts", &img->ports, &img->n_ports, err)) < 0 ||
        (r = strv_from_keys(json_object_get(c, "Volumes"), "Volumes", &img->volumes, &img->n_volumes, err)) < 0)
        return r;
    const char *wd = str(c, "WorkingDir"), *user = str(c, "User");
    if ((wd && *wd && !(img->working_dir = strdup(wd))) || (user && *user && !(img->user = strdup(user))))
        return tm_err_set(err, ENOMEM, "out of memory");
    return 0;
}

static enum oci_compression layer_compression(const char *mt)
{
    size_t n = mt ? strlen(mt) : 0;
    if (n >= 5 && !strcmp(mt + n - 5, "+gzip"))
        return OCI_GZIP;
    if (n >= 5 && !strcmp(mt + n - 5, "+zstd"))
        return OCI_ZSTD;
    if (n >= 9 && !strcmp(mt + n - 9, "tar.gzip")) /* docker's rootfs.diff.tar.gzip */
        return OCI_GZIP;
    return OCI_PLAIN;
}

static bool layer_media_type_ok(const char *mt)
{
    return mt && (!strncmp(mt, "application/vnd.oci.image.layer.", 32) ||
                  !strncmp(mt, "application/vnd.docker.image.rootfs.", 36));
}

/* The default is the machine the tool was built for: an import on an arm64 device takes the
 * arm64 image of a multi-platform index, as a container runtime there would. */
#if defined(__x86_64__)
#define HOST_PLATFORM "linux/amd64"
#elif defined(__aarch64__)
#define HOST_PLATFORM "linux/arm64"
#elif defined(__i386__)
#define HOST_PLATFORM "linux/386"
#elif defined(__arm__)
#define HOST_PLATFORM "linux/arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_PLATFORM "linux/ppc64le"
#elif defined(__s390x__)
#define HOST_PLATFORM "linux/s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define HOST_PLATFORM "linux/riscv64"
#else
#error "no OCI platform name for this architecture: add it here"
#endif

const char *oci_host_platform(void)
{
    return HOST_PLATFORM;
}

static int parse_platform(const char *s, struct platform *p, tm_err *err)
{
    *p = (struct platform){0};
    if (!s)
        s = HOST_PLATFORM;
    const char *a = strchr(s, '/');
    const char *v = a ? strchr(a + 1, '/') : NULL;
    if (!a || a == s || !a[1] || a - s >= (int)sizeof(p->os) || (v && (!v[1] || strlen(v + 1) >= sizeof(p->variant))) ||
        (size_t)((v ? v : a + strlen(a)) - a - 1) >= sizeof(p->arch))
        return tm_err_set(err, EINVAL, "--platform %s: expected OS/ARCH[/VARIANT], like linux/amd64", s);
    snprintf(p->os, sizeof(p->os), "%.*s", (int)(a - s), s);
    snprintf(p->arch, sizeof(p->arch), "%.*s", (int)((v ? v : a + strlen(a)) - a - 1), a + 1);
    if (v)
        snprintf(p->variant, sizeof(p->variant), "%s", v + 1);
    return 0;
}

/* An OCI layout: index.json -> manifest -> config and layers, all checked before any is used. */
static int oci_layout(int dir_fd, int copy_dir_fd, const struct oci_source *src, const struct platform *want,
                      struct oci_image *img, struct layer *layers, size_t *n_layers, tm_err *err)
{
    _cleanup_json_ json_t *index = NULL, *manifest = NULL, *config = NULL, *mdesc = NULL;
    int r = read_json_file(dir_fd, "index.json", &index, err);
    if (r < 0 || (r = pick_manifest(dir_fd, copy_dir_fd, index, "index.json", want, src->ref, 0, &mdesc, err)) < 0)
        return r;
    const char *digest;
    if ((r = read_json_blob(dir_fd, copy_dir_fd, mdesc, "manifest", &digest, &manifest, err)) < 0)
        return r;
    snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", digest);
    const char *mt = str(manifest, "mediaType");
    if (mt && strcmp(mt, MT_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST))
        return tm_err_set(err, EINVAL, "manifest %s: media type %s is not an image manifest", digest, mt);
    json_t *cdesc = json_object_get(manifest, "config"), *ldescs = json_object_get(manifest, "layers");
    if (!json_is_object(cdesc) || !json_is_array(ldescs))
        return tm_err_set(err, EINVAL, "manifest %s: no config or layers", digest);
    if (json_array_size(ldescs) > OCI_LAYERS_MAX)
        return tm_err_set(err, EFBIG, "manifest %s: more than %d layers", digest, OCI_LAYERS_MAX);
    if ((r = read_json_blob(dir_fd, copy_dir_fd, cdesc, "image config", &digest, &config, err)) < 0)
        return r;
    snprintf(img->config_digest, sizeof(img->config_digest), "%s", digest);
    json_t *diff_ids;
    if ((r = parse_config(config, want, json_array_size(ldescs), false, img, &diff_ids, err)) < 0)
        return r;
    size_t i;
    json_t *ld;
    json_array_foreach(ldescs, i, ld)
    {
        char w[64];
        snprintf(w, sizeof(w), "layer %zu", i + 1);
        const char *lmt = str(ld, "mediaType");
        if (!layer_media_type_ok(lmt))
            return tm_err_set(err, EINVAL, "%s: media type %s is not a layer", w, lmt ? lmt : "(none)");
        layers[i].comp = layer_compression(lmt);
        if ((layers[i].fd = open_blob(dir_fd, copy_dir_fd, ld, w, &digest, err)) < 0)
            return layers[i].fd;
        snprintf(layers[i].digest, sizeof(layers[i].digest), "%s", digest);
        *n_layers = i + 1;
    }
    return 0;
}

/* The file a docker-archive's manifest.json names; a name with a SHA-256 in it (<hex>.json,
 * blobs/sha256/<hex>) must be what it says. */
static int docker_config(int dir_fd, int copy_dir_fd, const char *name, struct oci_image *img, json_t **ret,
                         tm_err *err)
{
    int ofd = oci_open_beneath(dir_fd, name, O_RDONLY, err);
    _cleanup_close_ int fd = ofd < 0 ? ofd : private_copy(ofd, copy_dir_fd, OCI_JSON_MAX, "image config", err);
    if (fd < 0)
        return tm_err_prefix(err, "image config");
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    char digest[80];
    snprintf(digest, sizeof(digest), "sha256:%.64s", base);
    if (!valid_sha256_digest(digest))
        return tm_err_set(err, EINVAL, "image config %s: its name holds no SHA-256 to check it against", name);
    int r = check_fd(fd, "image config", digest, -1, err);
    if (r < 0)
        return r;
    snprintf(img->config_digest, sizeof(img->config_digest), "%s", digest);
    return read_json_fd(fd, "image config", ret, err);
}

static int docker_archive(int dir_fd, int copy_dir_fd, const struct oci_source *src, const struct platform *want,
                          struct oci_image *img, struct layer *layers, size_t *n_layers, tm_err *err)
{
    _cleanup_json_ json_t *list = NULL, *config = NULL;
    int r = read_json_file(dir_fd, "manifest.json", &list, err);
    if (r < 0)
        return r;
    if (!json_is_array(list) || json_array_size(list) == 0)
        return tm_err_set(err, EINVAL, "manifest.json: not a list of images");
    json_t *m = NULL, *e;
    size_t i, n = 0;
    json_array_foreach(list, i, e)
    {
        json_t *tags = json_object_get(e, "RepoTags"), *t;
        size_t j;
        bool hit = !src->ref;
        json_array_foreach(tags, j, t)
        {
            hit |= src->ref && json_is_string(t) && !strcmp(json_string_value(t), src->ref);
        }
        if (hit) {
            m = e;
            n++;
        }
    }
    if (n != 1)
        return tm_err_set(err, n ? EINVAL : ENOENT, "manifest.json: %s",
                          n ? "several images: choose one with --ref" : "no image with that tag");
    const char *cname = str(m, "Config");
    json_t *lnames = json_object_get(m, "Layers");
    if (!cname || !json_is_array(lnames))
        return tm_err_set(err, EINVAL, "manifest.json: no Config or Layers");
    if (json_array_size(lnames) > OCI_LAYERS_MAX)
        return tm_err_set(err, EFBIG, "manifest.json: more than %d layers", OCI_LAYERS_MAX);
    json_t *diff_ids;
    if ((r = docker_config(dir_fd, copy_dir_fd, cname, img, &config, err)) < 0 ||
        (r = parse_config(config, want, json_array_size(lnames), true, img, &diff_ids, err)) < 0)
        return r;
    json_t *ln;
    json_array_foreach(lnames, i, ln)
    {
        char w[64];
        snprintf(w, sizeof(w), "layer %zu", i + 1);
        if (!json_is_string(ln))
            return tm_err_set(err, EINVAL, "manifest.json: %s is not a file name", w);
        const char *diff_id = json_string_value(json_array_get(diff_ids, i));
        /* docker save writes layers uncompressed: the file is what diff_ids hashes. */
        layers[i].comp = OCI_PLAIN;
        int fd = oci_open_beneath(dir_fd, json_string_value(ln), O_RDONLY, err);
        if ((layers[i].fd = fd < 0 ? fd : private_copy(fd, copy_dir_fd, -1, w, err)) < 0)
            return tm_err_prefix(err, "%s", w);
        *n_layers = i + 1;
        if ((r = check_fd(layers[i].fd, w, diff_id, -1, err)) < 0)
            return r;
        snprintf(layers[i].digest, sizeof(layers[i].digest), "%s", diff_id);
    }
    return 0;
}

static int open_source(const struct oci_source *src, const char *scratch_dir, struct oci_budget *budget, tm_err *err)
{
    _cleanup_close_ int fd = open(src->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "%s", src->path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "%s", src->path);
    if (S_ISDIR(st.st_mode))
        return steal_fd(fd);
    /* An archive: unpacked into scratch_dir first (regular files and directories only). */
    int afd = fd;
    if (mkdir(scratch_dir, 0700) < 0)
        return tm_err_sys(err, "cannot make %s", scratch_dir);
    _cleanup_close_ int dfd = open(scratch_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return tm_err_sys(err, "%s", scratch_dir);
    char w[PATH_MAX + 16];
    snprintf(w, sizeof(w), "archive %s", src->path);
    size_t n = strlen(scratch_dir);
    budget->max_path = n + 2 < PATH_MAX ? PATH_MAX - 2 - n : 1;
    int r = oci_unpack_archive(dfd, afd, w, budget, err);
    if (r < 0)
        return r;
    budget->bytes = budget->entries = 0;
    return steal_fd(dfd);
}

int oci_import_tree(const struct oci_source *src, const char *scratch_dir, const char *rootfs_dir,
                    struct oci_image *img, tm_err *err)
{
    struct platform want;
    int r = parse_platform(src->platform, &want, err);
    if (r < 0)
        return r;
    struct oci_budget budget = {.max_bytes = src->max_bytes, .max_entries = OCI_ENTRIES_MAX};
    _cleanup_close_ int dir_fd = open_source(src, scratch_dir, &budget, err);
    if (dir_fd < 0)
        return dir_fd;
    /* A layout directory may still be written by others: blobs are copied into the import's
     * private directory (scratch_dir's parent) before they are hashed. An archive was unpacked
     * there already. */
    _cleanup_close_ int copy_dir_fd = -1;
    struct stat sst;
    if (stat(scratch_dir, &sst) < 0) {
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", scratch_dir);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        if ((copy_dir_fd = open(slash ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return tm_err_sys(err, "%s", slash ? parent : ".");
    }
    struct layer layers[OCI_LAYERS_MAX];
    size_t n_layers = 0;
    struct stat st;
    if (fstatat(dir_fd, "index.json", &st, AT_SYMLINK_NOFOLLOW) == 0)
        r = oci_layout(dir_fd, copy_dir_fd, src, &want, img, layers, &n_layers, err);
    else if (fstatat(dir_fd, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0)
        r = docker_archive(dir_fd, copy_dir_fd, src, &want, img, layers, &n_layers, err);
    else
        r = tm_err_set(err, EINVAL,
                       "%s is neither an OCI image layout (index.json) nor a docker-archive "
                       "(manifest.json)",
                       src->path);
    if (r < 0) {
        layers_close(layers, n_layers);
        return r;
    }
    _cleanup_close_ int root_fd = open(rootfs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
        layers_close(layers, n_layers);
        return tm_err_sys(err, "%s", rootfs_dir);
    }
    size_t n = strlen(rootfs_dir);
    budget.max_path = n + 2 < PATH_MAX ? PATH_MAX - 2 - n : 1;
    for (size_t i = 0; i < n_layers && r == 0; i++) {
        char w[128];
        snprintf(w, sizeof(w), "layer %zu (%s)", i + 1, layers[i].digest);
        fprintf(stderr, "trustme-guestos: applying %s\n", w);
        r = oci_apply_layer(root_fd, layers[i].fd, layers[i].comp, w, &budget, err);
    }
    layers_close(layers, n_layers);
    return r;
}
