/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small helper for bench/storage.sh, compiled by it at run time (static, so that the same
 * binary also runs inside the busybox containers); not part of trustme.
 *
 *   storage_helper time CMD [ARG...]        runs CMD and prints its wall time in seconds
 *                                           (CLOCK_MONOTONIC, ns resolution) on stderr as
 *                                           "elapsed SECONDS"; exits with CMD's status
 *   storage_helper key-add MNT KEYFILE      adds the 64-byte raw key in KEYFILE to the file
 *                                           system mounted at MNT, prints its identifier (hex)
 *   storage_helper policy DIR IDENTIFIER    sets trustme's fscrypt policy on the empty DIR: v2,
 *                                           AES-256-XTS contents, AES-256-CTS names, PAD_32
 *   storage_helper key-remove MNT IDENTIFIER   removes the key again (every user's claim)
 *
 * The fscrypt calls and policy are those of src/daemon/storage/fscrypt.c, so that the host-side
 * measurement has the same layering as an encrypted container minus trustme. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fscrypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "storage_helper: %s: %s\n", what, strerror(errno));
    return 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_time(char **argv)
{
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0)
        return fail("fork");
    if (pid == 0) {
        execvp(argv[0], argv);
        fail(argv[0]);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return fail("waitpid");
    fprintf(stderr, "elapsed %.6f\n", now() - t0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int parse_id(const char *hex, __u8 id[FSCRYPT_KEY_IDENTIFIER_SIZE])
{
    if (strlen(hex) != 2 * FSCRYPT_KEY_IDENTIFIER_SIZE)
        return -1;
    for (int i = 0; i < FSCRYPT_KEY_IDENTIFIER_SIZE; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        id[i] = (__u8)v;
    }
    return 0;
}

static int cmd_key_add(int fd, const char *keyfile)
{
    struct {
        struct fscrypt_add_key_arg arg;
        __u8 raw[FSCRYPT_MAX_KEY_SIZE];
    } a;
    memset(&a, 0, sizeof(a));
    int kfd = open(keyfile, O_RDONLY | O_CLOEXEC);
    if (kfd < 0)
        return fail(keyfile);
    ssize_t n = read(kfd, a.raw, sizeof(a.raw));
    close(kfd);
    if (n != (ssize_t)sizeof(a.raw)) {
        fprintf(stderr, "storage_helper: %s must hold %d bytes\n", keyfile, FSCRYPT_MAX_KEY_SIZE);
        return 1;
    }
    a.arg.key_spec.type = FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER;
    a.arg.raw_size = FSCRYPT_MAX_KEY_SIZE;
    int r = ioctl(fd, FS_IOC_ADD_ENCRYPTION_KEY, &a.arg);
    memset(a.raw, 0, sizeof(a.raw));
    if (r < 0)
        return fail("FS_IOC_ADD_ENCRYPTION_KEY");
    for (int i = 0; i < FSCRYPT_KEY_IDENTIFIER_SIZE; i++)
        printf("%02x", a.arg.key_spec.u.identifier[i]);
    printf("\n");
    return 0;
}

static int cmd_policy(int fd, const __u8 id[FSCRYPT_KEY_IDENTIFIER_SIZE])
{
    struct fscrypt_policy_v2 pol = {
        .version = FSCRYPT_POLICY_V2,
        .contents_encryption_mode = FSCRYPT_MODE_AES_256_XTS,
        .filenames_encryption_mode = FSCRYPT_MODE_AES_256_CTS,
        .flags = FSCRYPT_POLICY_FLAGS_PAD_32,
    };
    memcpy(pol.master_key_identifier, id, FSCRYPT_KEY_IDENTIFIER_SIZE);
    if (ioctl(fd, FS_IOC_SET_ENCRYPTION_POLICY, &pol) < 0)
        return fail("FS_IOC_SET_ENCRYPTION_POLICY");
    return 0;
}

static int cmd_key_remove(int fd, const __u8 id[FSCRYPT_KEY_IDENTIFIER_SIZE])
{
    struct fscrypt_remove_key_arg r = {.key_spec.type = FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER};
    memcpy(r.key_spec.u.identifier, id, FSCRYPT_KEY_IDENTIFIER_SIZE);
    if (ioctl(fd, FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, &r) < 0)
        return fail("FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS");
    if (r.removal_status_flags & FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY) {
        fprintf(stderr, "storage_helper: key removed, but files are still busy\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "time") == 0)
        return cmd_time(argv + 2);
    if (argc != 4) {
        fprintf(stderr, "usage: storage_helper time CMD [ARG...] | key-add MNT KEYFILE | "
                        "policy DIR ID | key-remove MNT ID\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail(argv[2]);
    if (strcmp(argv[1], "key-add") == 0)
        return cmd_key_add(fd, argv[3]);
    __u8 id[FSCRYPT_KEY_IDENTIFIER_SIZE];
    if (parse_id(argv[3], id) < 0) {
        fprintf(stderr, "storage_helper: bad key identifier %s\n", argv[3]);
        return 2;
    }
    if (strcmp(argv[1], "policy") == 0)
        return cmd_policy(fd, id);
    if (strcmp(argv[1], "key-remove") == 0)
        return cmd_key_remove(fd, id);
    fprintf(stderr, "storage_helper: unknown command %s\n", argv[1]);
    return 2;
}
