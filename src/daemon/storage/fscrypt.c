/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "fscrypt.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fscrypt.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "cleanup.h"

static int add_key(int rootfd, const struct secret *key, uint8_t id[FSCRYPT_KEY_IDENTIFIER_SIZE], tm_err *err)
{
    if (key->len != FSCRYPT_MAX_KEY_SIZE)
        return tm_err_set(err, EINVAL, "the data key has %zu bytes, not %d", key->len, FSCRYPT_MAX_KEY_SIZE);
    /* The ioctl takes the key inside its argument: build that in locked memory too. */
    _cleanup_secret_ struct secret *buf = NULL;
    /* The argument ends in the key (raw[]): room for the 64 bytes behind it. */
    int r = secret_new(sizeof(struct fscrypt_add_key_arg) + FSCRYPT_MAX_KEY_SIZE, &buf, err);
    if (r < 0)
        return r;
    struct fscrypt_add_key_arg *a = (struct fscrypt_add_key_arg *)buf->data;
    a->key_spec.type = FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER;
    a->raw_size = (uint32_t)key->len;
    memcpy(a->raw, key->data, key->len);
    if (ioctl(rootfd, FS_IOC_ADD_ENCRYPTION_KEY, a) < 0)
        return tm_err_sys(err, "cannot add the data key to the file system");
    memcpy(id, a->key_spec.u.identifier, FSCRYPT_KEY_IDENTIFIER_SIZE);
    return 0;
}

/* An empty directory gets the policy; one that has a policy must name this key. */
static int ensure_policy(int dirfd, const uint8_t id[FSCRYPT_KEY_IDENTIFIER_SIZE], tm_err *err)
{
    struct fscrypt_get_policy_ex_arg got = {.policy_size = sizeof(got.policy)};
    if (ioctl(dirfd, FS_IOC_GET_ENCRYPTION_POLICY_EX, &got) == 0) {
        const struct fscrypt_policy_v2 *p = &got.policy.v2;
        if (got.policy.version != FSCRYPT_POLICY_V2 ||
            memcmp(p->master_key_identifier, id, FSCRYPT_KEY_IDENTIFIER_SIZE) != 0)
            return tm_err_set(err, EKEYREJECTED,
                              "the data volume is encrypted under another key "
                              "than this container's (a wrapped key from elsewhere?); 'trustme wipe' "
                              "starts it afresh");
        return 0;
    }
    if (errno != ENODATA)
        return tm_err_sys(err, "cannot read the encryption policy of the data volume");
    struct fscrypt_policy_v2 pol = {
        .version = FSCRYPT_POLICY_V2,
        .contents_encryption_mode = FSCRYPT_MODE_AES_256_XTS,
        .filenames_encryption_mode = FSCRYPT_MODE_AES_256_CTS,
        .flags = FSCRYPT_POLICY_FLAGS_PAD_32,
    };
    memcpy(pol.master_key_identifier, id, FSCRYPT_KEY_IDENTIFIER_SIZE);
    if (ioctl(dirfd, FS_IOC_SET_ENCRYPTION_POLICY, &pol) < 0)
        return tm_err_sys(err, "cannot encrypt the data volume's directory");
    return 0;
}

int fscrypt_unlock(int rootfd, const struct secret *key, tm_err *err)
{
    struct statfs sfs;
    if (fstatfs(rootfd, &sfs) < 0)
        return tm_err_sys(err, "cannot inspect the data volume");
    if (sfs.f_type != EXT4_SUPER_MAGIC)
        return tm_err_set(err, EINVAL, "the data volume is not ext4");
    uint8_t id[FSCRYPT_KEY_IDENTIFIER_SIZE];
    int r = add_key(rootfd, key, id, err);
    if (r < 0)
        return r;
    if (mkdirat(rootfd, FSCRYPT_DIR, 0755) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create the encrypted directory");
    _cleanup_close_ int dirfd = openat(rootfd, FSCRYPT_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0)
        return tm_err_sys(err, "cannot open the encrypted directory");
    return ensure_policy(dirfd, id, err);
}
