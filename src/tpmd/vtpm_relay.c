/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtpm_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "uuid.h"

/* What the take-ownership protocol sends (docs/VTPM.md), nothing else: no Clear, no NV writes
 * of the guest's, no key generation beyond ECC primaries, no persistence but the fleet key's. */
static const uint32_t allowed[] = {
    0x120, /* EvictControl (the fleet key's handle only, below) */
    0x129, /* HierarchyChangeAuth */
    0x131, /* CreatePrimary (ECC only, below) */
    0x147, /* ActivateCredential */
    0x151, /* PolicySecret */
    0x158, /* Quote */
    0x165, /* FlushContext */
    0x173, /* ReadPublic */
    0x176, /* StartAuthSession */
    0x17A, /* GetCapability */
    0x17E, /* PCR_Read */
};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

int vtpm_relay_check_command(const uint8_t *cmd, size_t len, tm_err *err)
{
    if (len < VTPM_HEADER || len > VTPM_MAX_COMMAND || vtpm_be32(cmd + 2) != len)
        return tm_err_set(err, EINVAL, "not a TPM command of at most %d bytes", VTPM_MAX_COMMAND);
    uint32_t cc = vtpm_be32(cmd + 6);
    size_t i;
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i] == cc)
            break;
    if (i == sizeof(allowed) / sizeof(allowed[0]))
        return tm_err_set(err, EPERM, "TPM command 0x%x is not relayed", cc);
    if (cc == 0x120) {
        /* EvictControl: header, auth (the owner), objectHandle, authorization area (its size
         * first), persistentHandle. Only the fleet key's handle: the network must not evict the
         * EKs at 0x81010001/2 or any key of the guest's. */
        size_t off = VTPM_HEADER + 8;
        if (be16(cmd) != 0x8002 || len < off + 4)
            return tm_err_set(err, EINVAL, "EvictControl without an authorization area");
        uint32_t auth = vtpm_be32(cmd + off);
        if (auth > len - off - 4 || len != off + 4 + auth + 4)
            return tm_err_set(err, EINVAL, "EvictControl: bad size");
        uint32_t object = vtpm_be32(cmd + VTPM_HEADER + 4), persistent = vtpm_be32(cmd + off + 4 + auth);
        if (persistent != VTPM_FLEET_KEY_HANDLE || (object >> 24 != 0x80 && object != VTPM_FLEET_KEY_HANDLE))
            return tm_err_set(err, EPERM, "EvictControl is relayed only for the fleet key's handle 0x%x",
                              VTPM_FLEET_KEY_HANDLE);
        return 0;
    }
    if (cc != 0x131)
        return 0;
    /* CreatePrimary: header, primaryHandle, authorization area (its size first), inSensitive
     * (TPM2B), then inPublic (TPM2B) whose TPMT_PUBLIC starts with its type. */
    size_t off = VTPM_HEADER + 4;
    if (be16(cmd) != 0x8002 || len < off + 4)
        return tm_err_set(err, EINVAL, "CreatePrimary without an authorization area");
    uint32_t auth = vtpm_be32(cmd + off);
    if (auth > len - off - 4)
        return tm_err_set(err, EINVAL, "CreatePrimary: bad authorization size");
    off += 4 + auth;
    if (len < off + 2 || be16(cmd + off) > len - off - 2)
        return tm_err_set(err, EINVAL, "CreatePrimary: bad inSensitive");
    off += 2 + be16(cmd + off);
    if (len < off + 4)
        return tm_err_set(err, EINVAL, "CreatePrimary: bad inPublic");
    if (be16(cmd + off + 2) != 0x0023)
        return tm_err_set(err, EPERM, "only ECC primary keys are made through the relay");
    return 0;
}

/* The vTPM's pub directory, as an O_PATH fd: its path may be longer than a socket address
 * holds, so sockets are reached through /proc/self/fd/N/. */
static int open_pub(const char *vtpm_dir, const char *uuid, tm_err *err)
{
    if (!uuid || !tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "not a container UUID");
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s/pub", vtpm_dir, uuid) >= (int)sizeof(path))
        return tm_err_set(err, ENAMETOOLONG, "the vTPM's path is too long");
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return tm_err_set(err, ENOENT, "container %s has no running vTPM", uuid);
    return fd;
}

static int sock_addr(int dirfd, const char *name, struct sockaddr_un *sa)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd, name);
    return 0;
}

int vtpm_relay_connect(const char *vtpm_dir, const char *uuid, tm_err *err)
{
    struct sockaddr_un sa;
    _cleanup_close_ int dirfd = open_pub(vtpm_dir, uuid, err);
    if (dirfd < 0)
        return dirfd;
    sock_addr(dirfd, "tpm.sock", &sa);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tm_err_sys(err, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (e == ENOENT || e == ECONNREFUSED)
            return tm_err_set(err, ENOENT, "container %s has no running vTPM", uuid);
        return tm_err_set(err, e, "cannot reach the vTPM of %s: %s", uuid, strerror(e));
    }
    return steal_fd(fd);
}

int vtpm_relay_event_log(const char *vtpm_dir, const char *uuid, uint8_t **ret, size_t *ret_len, tm_err *err)
{
    _cleanup_close_ int dirfd = open_pub(vtpm_dir, uuid, err);
    if (dirfd < 0)
        return dirfd;
    _cleanup_close_ int fd = openat(dirfd, "event.log", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return tm_err_set(err, ENOENT, "container %s has no running vTPM", uuid);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > VTPM_RELAY_LOG_MAX)
        return tm_err_set(err, EINVAL, "the vTPM's event log is not a file of at most %d bytes", VTPM_RELAY_LOG_MAX);
    _cleanup_free_ uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t have = 0;
    while (have <= (size_t)st.st_size) {
        ssize_t n = read(fd, buf + have, (size_t)st.st_size + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "reading the vTPM's event log");
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (have > (size_t)st.st_size)
        return tm_err_set(err, EINVAL, "the vTPM's event log grew while read");
    *ret = steal_ptr(buf);
    *ret_len = have;
    return 0;
}
