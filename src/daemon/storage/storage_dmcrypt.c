/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "storage_dmcrypt.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libcryptsetup.h>
#include <linux/dm-ioctl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "syncmsg.h"

#define LIBCRYPTSETUP "libcryptsetup.so.12"
#define DM_CONTROL "/dev/mapper/control"
#define CIPHER_KEY_LEN 64 /* AES-256-XTS: the container's data key itself */
#define INTEGRITY_KEY_LEN 32 /* HMAC-SHA256 */
#define WIPE_BLOCK (1024 * 1024)
#define INTEGRITY_LABEL "trustme dm-integrity key"

/* The few libcryptsetup calls we make, resolved at run time. */
struct cryptsetup {
    void *lib;
    __typeof__(crypt_init) *init;
    __typeof__(crypt_free) *free;
    __typeof__(crypt_load) *load;
    __typeof__(crypt_format) *format;
    __typeof__(crypt_activate_by_volume_key) *activate;
    __typeof__(crypt_wipe) *wipe;
    __typeof__(crypt_set_log_callback) *set_log;
};

static int load_cryptsetup(struct cryptsetup *cs, tm_err *err)
{
    cs->lib = dlopen(LIBCRYPTSETUP, RTLD_NOW | RTLD_LOCAL);
    if (!cs->lib)
        return tm_err_set(err, ELIBACC, "cannot load %s (install libcryptsetup12): %s", LIBCRYPTSETUP, dlerror());
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"crypt_init", (void **)&cs->init},
        {"crypt_free", (void **)&cs->free},
        {"crypt_load", (void **)&cs->load},
        {"crypt_format", (void **)&cs->format},
        {"crypt_activate_by_volume_key", (void **)&cs->activate},
        {"crypt_wipe", (void **)&cs->wipe},
        {"crypt_set_log_callback", (void **)&cs->set_log},
    };
    for (size_t i = 0; i < ARRAY_SIZE(syms); i++)
        if (!(*syms[i].slot = dlsym(cs->lib, syms[i].name)))
            return tm_err_set(err, ELIBBAD, "%s lacks %s", LIBCRYPTSETUP, syms[i].name);
    return 0;
}

int dmcrypt_available(tm_err *err)
{
    if (access(DM_CONTROL, F_OK) < 0)
        return tm_err_set(err, ENODEV,
                          "this kernel has no device-mapper (%s is missing), so dm-crypt "
                          "cannot be used; use \"fscrypt\"",
                          DM_CONTROL);
    void *lib = dlopen(LIBCRYPTSETUP, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return tm_err_set(err, ELIBACC, "cannot load %s (install libcryptsetup12)", LIBCRYPTSETUP);
    dlclose(lib);
    return 0;
}

void dmcrypt_name(const char *uuid, char *out, size_t size)
{
    snprintf(out, size, "trustme-%s", uuid);
}

/* libcryptsetup's last error, for our message (its own logging would go to stderr). */
static void on_log(int level, const char *msg, void *userdata)
{
    char *last = userdata;
    if (level == CRYPT_LOG_ERROR) {
        snprintf(last, 256, "%s", msg);
        last[strcspn(last, "\n")] = '\0';
    }
}

struct wipe_progress {
    int sync_fd;
    unsigned last_pct;
};

static int on_wipe(uint64_t size, uint64_t offset, void *userdata)
{
    struct wipe_progress *p = userdata;
    unsigned pct = size ? (unsigned)(offset * 100 / size) : 100;
    if (pct >= p->last_pct + 10) {
        char msg[96];
        snprintf(msg, sizeof(msg), "initialising the integrity tags of the data volume: %u%%", pct);
        tm_sync_send_text(p->sync_fd, TM_SYNC_PROGRESS, msg);
        p->last_pct = pct;
    }
    return 0;
}

/* dm-integrity needs a key of its own: derived from the data key, so that one secret is all the
 * token wraps. The volume key is data key || SHA-256(label || data key). */
static int volume_key(const struct secret *key, struct secret **ret, tm_err *err)
{
    if (key->len != CIPHER_KEY_LEN)
        return tm_err_set(err, EINVAL, "the data key has %zu bytes, not %d", key->len, CIPHER_KEY_LEN);
    _cleanup_secret_ struct secret *buf = NULL;
    struct secret *vk;
    int r = secret_new(sizeof(INTEGRITY_LABEL) + key->len, &buf, err);
    if (r < 0 || (r = secret_new(CIPHER_KEY_LEN + INTEGRITY_KEY_LEN, &vk, err)) < 0)
        return r;
    memcpy(buf->data, INTEGRITY_LABEL, sizeof(INTEGRITY_LABEL));
    memcpy(buf->data + sizeof(INTEGRITY_LABEL), key->data, key->len);
    memcpy(vk->data, key->data, CIPHER_KEY_LEN);
    tm_sha256(buf->data, buf->len, vk->data + CIPHER_KEY_LEN);
    *ret = vk;
    return 0;
}

static int wipe_mapped(struct cryptsetup *cs, struct crypt_device *cd, const char *name, int sync_fd, tm_err *err)
{
    char path[128];
    snprintf(path, sizeof(path), "/dev/mapper/%s", name);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t size = 0;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0)
        return tm_err_sys(err, "cannot size %s", path);
    struct wipe_progress p = {.sync_fd = sync_fd};
    int r = cs->wipe(cd, path, CRYPT_WIPE_ZERO, 0, size, WIPE_BLOCK, 0, on_wipe, &p);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot initialise %s", path);
    }
    return 0;
}

int dmcrypt_open(const char *loopdev, const char *name, const struct secret *key, bool fresh, int sync_fd, tm_err *err)
{
    struct cryptsetup cs = {0};
    _cleanup_secret_ struct secret *vk = NULL;
    struct crypt_device *cd = NULL;
    char last[256] = "";
    int r;
    if ((r = load_cryptsetup(&cs, err)) < 0 || (r = volume_key(key, &vk, err)) < 0)
        return r;
    if ((r = cs.init(&cd, loopdev)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot open %s for dm-crypt", loopdev);
    }
    cs.set_log(cd, on_log, last);
    if (fresh) {
        struct crypt_params_luks2 params = {.integrity = "hmac(sha256)", .sector_size = 4096, .label = "trustme-data"};
        tm_sync_send_text(sync_fd, TM_SYNC_PROGRESS, "formatting the data volume (LUKS2, dm-integrity)...");
        r = cs.format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, (const char *)vk->data, vk->len, &params);
        if (r < 0)
            tm_err_set(err, -r, "cannot format the data volume: %s", last[0] ? last : strerror(-r));
    } else if ((r = cs.load(cd, CRYPT_LUKS2, NULL)) < 0) {
        tm_err_set(err, -r,
                   "the data volume is not a LUKS2 volume (made with another storage "
                   "backend?): %s",
                   last[0] ? last : strerror(-r));
    }
    if (r >= 0 && (r = cs.activate(cd, name, (const char *)vk->data, vk->len, 0)) < 0)
        tm_err_set(err, -r, "cannot open the data volume%s: %s",
                   r == -EPERM ? " (its key is not this container's)" : "", last[0] ? last : strerror(-r));
    if (r >= 0 && fresh)
        r = wipe_mapped(&cs, cd, name, sync_fd, err);
    cs.free(cd);
    /* The library stays loaded: this process is short-lived, and unloading OpenSSL is unsafe. */
    return r < 0 ? r : 0;
}

static void dm_remove_deferred(int control, const char *name)
{
    struct dm_ioctl io = {.version = {DM_VERSION_MAJOR, 0, 0}, .data_size = sizeof(io), .flags = DM_DEFERRED_REMOVE};
    snprintf(io.name, sizeof(io.name), "%s", name);
    (void)ioctl(control, DM_DEV_REMOVE, &io); /* ENXIO: never made, or gone already */
}

void dmcrypt_remove(const char *name)
{
    _cleanup_close_ int control = open(DM_CONTROL, O_RDWR | O_CLOEXEC);
    if (control < 0)
        return;
    char dif[DM_NAME_LEN];
    snprintf(dif, sizeof(dif), "%s_dif", name);
    /* The crypt device sits on the integrity device: remove it first. */
    dm_remove_deferred(control, name);
    dm_remove_deferred(control, dif);
}
