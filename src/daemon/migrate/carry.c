/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM's and the keystore's parts of a migration bundle (carry.h, docs/MIGRATION.md). */
#include "carry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "crypto.h"
#include "tpmd_client.h"
#include "uuid.h"

/* The anchor names of the vTPM (vtpm/vtpm.h's VTPM_ANCHOR_PREFIX) and of the keystore's secure
 * store and key index (services/keystore_svc.c); migrate/ may not call vtpm/. */
size_t carry_anchor_names(const char *uuid, char names[CARRY_ANCHORS][CARRY_ANCHOR_NAME_MAX],
                          const char *kinds[CARRY_ANCHORS])
{
    snprintf(names[0], CARRY_ANCHOR_NAME_MAX, "vtpm/%s", uuid);
    snprintf(names[1], CARRY_ANCHOR_NAME_MAX, "sstore/%s", uuid);
    snprintf(names[2], CARRY_ANCHOR_NAME_MAX, "sstore/%s.keys", uuid);
    kinds[0] = "vtpm";
    kinds[1] = "sstore";
    kinds[2] = "sstore-keys";
    return CARRY_ANCHORS;
}

void carry_tp_index_name(const char *uuid, char out[CARRY_ANCHOR_NAME_MAX])
{
    snprintf(out, CARRY_ANCHOR_NAME_MAX, "sstore-tp/%s", uuid);
}

int carry_tp_names(const char *uuid, const ProtobufCBinaryData *v, char names[BUNDLE_TP_MAX][CARRY_ANCHOR_NAME_MAX],
                   tm_err *err)
{
    char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1];
    int n = bundle_tp_ids(v->data, v->len, ids);
    if (v->len > BUNDLE_TP_INDEX_MAX || n < 0)
        return tm_err_set(err, EBADMSG,
                          "the secure store's tamper-proof index in this device's TPM table is malformed or lists "
                          "more than %d objects",
                          BUNDLE_TP_MAX);
    for (int i = 0; i < n; i++)
        snprintf(names[i], CARRY_ANCHOR_NAME_MAX, "sstore-tp/%s/%s", uuid, ids[i]);
    return n;
}

/* The tamper-proof objects: values of the anchor table, not files. They are carried as manifest
 * lines, which the GCM tag and the source's signature cover; each is sealed under the store's
 * TP key already (it derives from the carried seed and the UUID, so it opens on the target). */
static int add_tp(const struct container *c, const Trustme__Tpmd__Response *resp, struct bundle_header *h, tm_err *err)
{
    char index[CARRY_ANCHOR_NAME_MAX], names[BUNDLE_TP_MAX][CARRY_ANCHOR_NAME_MAX];
    carry_tp_index_name(c->uuid, index);
    const ProtobufCBinaryData *v = tpmd_anchor_value(resp, index);
    if (!v || v->len == 0)
        return 0;
    int n = carry_tp_names(c->uuid, v, names, err);
    if (n < 0)
        return n;
    h->has_tp_index = true;
    memcpy(h->tp_index, v->data, v->len);
    h->tp_index_len = v->len;
    size_t prefix = strlen(index) + 1;
    for (int i = 0; i < n; i++) {
        const ProtobufCBinaryData *o = tpmd_anchor_value(resp, names[i]);
        if (!o || o->len < BUNDLE_TP_VALUE_MIN || o->len > BUNDLE_TP_VALUE_MAX)
            return tm_err_set(err, EBADMSG, "tamper-proof object %s: this device's TPM table lists it and holds %s",
                              names[i] + prefix, o ? "a malformed value" : "no value");
        struct bundle_tp *t = &h->tp[h->ntp++];
        snprintf(t->id, sizeof(t->id), "%s", names[i] + prefix);
        memcpy(t->value, o->data, o->len);
        t->len = o->len;
    }
    return 0;
}

static int add_part(struct bundle_header *h, const char *name, const char *src, char (*srcs)[PATH_MAX], size_t nsrcs,
                    tm_err *err)
{
    if (h->nparts == BUNDLE_PARTS_MAX || (src && h->nparts >= nsrcs))
        return tm_err_set(err, E2BIG, "more than %d files to carry (the keystore holds too many keys)",
                          BUNDLE_PARTS_MAX);
    if (strlen(name) >= BUNDLE_PART_NAME_MAX)
        return tm_err_set(err, ENAMETOOLONG, "%s: the name is too long to carry", name);
    struct bundle_part *p = &h->parts[h->nparts];
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->src = NULL;
    if (src) {
        snprintf(srcs[h->nparts], PATH_MAX, "%s", src);
        p->src = srcs[h->nparts];
    }
    h->nparts++;
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Every regular file below dir (rel: its name in the bundle), depth first; a link or another
 * kind of file refuses the export (the keystore service writes none). */
static int add_tree(struct bundle_header *h, const char *dir, const char *rel, int depth, char (*srcs)[PATH_MAX],
                    size_t nsrcs, tm_err *err)
{
    __attribute__((cleanup(closedirp))) DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT && depth == 0 ? 0 : tm_err_sys(err, "cannot read %s", dir);
    struct dirent *e;
    int r;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[PATH_MAX], name[BUNDLE_PART_NAME_MAX + 8];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        snprintf(name, sizeof(name), "%s/%s", rel, e->d_name);
        struct stat st;
        if (lstat(path, &st) < 0)
            return tm_err_sys(err, "cannot stat %s", path);
        if (S_ISDIR(st.st_mode) && depth < 2)
            r = add_tree(h, path, name, depth + 1, srcs, nsrcs, err);
        else if (S_ISREG(st.st_mode) && e->d_name[0] != '.')
            r = add_part(h, name, path, srcs, nsrcs, err);
        else
            r = tm_err_set(err, EINVAL, "%s: not a file the keystore keeps (a link, a dot file, or too deep)", path);
        if (r < 0)
            return r;
    }
    return 0;
}

int carry_add(const struct container *c, const Trustme__Tpmd__Response *resp, struct bundle_header *h,
              char (*srcs)[PATH_MAX], size_t nsrcs, tm_err *err)
{
    char dir[PATH_MAX], p[PATH_MAX + 64];
    container_data_dir(c, dir, sizeof(dir));
    char names[CARRY_ANCHORS][CARRY_ANCHOR_NAME_MAX];
    const char *kinds[CARRY_ANCHORS];
    carry_anchor_names(c->uuid, names, kinds);
    int r;
    if (c->cfg->vtpm) {
        /* The state (encrypted under a key derived from the data key and the UUID) and root's
         * records: the EKs (MACed under the state key) and the owner's statement and values. The
         * EK certificates stay: they are this device's issuer's, the target issues its own. */
        static const char *const files[] = {"vtpm/tpm2.state", "vtpm-ek", "vtpm-owner", "vtpm-owner-refs"};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
            if (exists(p) && (r = add_part(h, files[i], NULL, srcs, nsrcs, err)) < 0)
                return r;
        }
        const ProtobufCBinaryData *v = tpmd_anchor_value(resp, names[0]);
        snprintf(p, sizeof(p), "%s/vtpm/tpm2.state", dir);
        uint8_t md[32];
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        bool have = fd >= 0 && tm_sha256_fd(fd, md, NULL, NULL, NULL, err) == 0;
        if (have != (v != NULL) || (v && (v->len != 32 || memcmp(v->data, md, 32) != 0)))
            return tm_err_set(err, ESTALE,
                              "the vTPM's state file is not the one anchored in this device's TPM (it would not "
                              "start here either: `trustme vtpm info`)");
    }
    if (c->cfg->keystore) {
        snprintf(p, sizeof(p), "%s/keystore/%s", c->d->data_dir, c->uuid);
        if ((r = add_tree(h, p, "keystore", 0, srcs, nsrcs, err)) < 0 || (r = add_tp(c, resp, h, err)) < 0)
            return r;
    }
    for (size_t i = 0; i < CARRY_ANCHORS; i++) {
        const ProtobufCBinaryData *v = tpmd_anchor_value(resp, names[i]);
        if (!v || (i == 0 && !c->cfg->vtpm) || (i > 0 && !c->cfg->keystore))
            continue;
        if (v->len == 0 || v->len > BUNDLE_ANCHOR_VALUE_MAX || h->nanchors == BUNDLE_ANCHORS_MAX)
            return tm_err_set(err, EOVERFLOW, "anchor %s: a value of %zu bytes", names[i], v->len);
        struct bundle_anchor *a = &h->anchors[h->nanchors++];
        snprintf(a->kind, sizeof(a->kind), "%s", kinds[i]);
        memcpy(a->value, v->data, v->len);
        a->len = v->len;
    }
    return 0;
}

int carry_anchor_entries(const struct bundle_header *h, char names[CARRY_ENTRIES_MAX][CARRY_ANCHOR_NAME_MAX],
                         struct tpmd_anchor_entry *ret, tm_err *err)
{
    if (!h->nanchors && !h->has_tp_index)
        return 0;
    /* The names are made from the manifest's UUID: only a UUID, so that no name can be another
     * container's entry ("sstore/<its uuid>.keys" from a UUID "<its uuid>.keys"). */
    if (!tm_uuid_valid(h->uuid))
        return tm_err_set(err, EINVAL, "bundle format: the manifest's uuid is not a UUID");
    const char *kinds[CARRY_ANCHORS];
    carry_anchor_names(h->uuid, names, kinds);
    int n = 0;
    for (size_t i = 0; i < h->nanchors; i++)
        for (size_t k = 0; k < CARRY_ANCHORS; k++)
            if (strcmp(h->anchors[i].kind, kinds[k]) == 0)
                ret[n++] = (struct tpmd_anchor_entry){
                    .name = names[k], .value = h->anchors[i].value, .len = h->anchors[i].len};
    /* The tamper-proof index and exactly the objects it lists (bundle_open checked the ids and the
     * quota), in the same update: the store's invariant (every value listed in the index, at most
     * the quota) holds on the target as it did on the source. */
    if (h->has_tp_index && h->tp_index_len) {
        carry_tp_index_name(h->uuid, names[CARRY_ANCHORS]);
        ret[n++] =
            (struct tpmd_anchor_entry){.name = names[CARRY_ANCHORS], .value = h->tp_index, .len = h->tp_index_len};
        for (size_t i = 0; i < h->ntp && i < BUNDLE_TP_MAX; i++) {
            snprintf(names[CARRY_ANCHORS + 1 + i], CARRY_ANCHOR_NAME_MAX, "sstore-tp/%s/%s", h->uuid, h->tp[i].id);
            ret[n++] = (struct tpmd_anchor_entry){
                .name = names[CARRY_ANCHORS + 1 + i], .value = h->tp[i].value, .len = h->tp[i].len};
        }
    }
    return n;
}
