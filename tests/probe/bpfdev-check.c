/* SPDX-License-Identifier: GPL-2.0-or-later */
/* bpfdev-check: attaches the device program trustmed generates (src/daemon/modules/bpf_devices.c)
 * to a fresh cgroup v2 directory and checks from a process inside it that exactly the listed
 * devices can be opened and made. Run as root by tests/integration/test_bpf_devices.py; on a
 * hybrid host only the program decides there (the process stays in the v1 root cgroups).
 *   bpfdev-check CGROUP2_DIR  -> prints one "PATH ACCESS: ok|EPERM" line per probe */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpf_devices.h"

static void probe(const char *path, int flags, const char *label)
{
    int fd = open(path, flags);
    printf("%s %s: %s\n", path, label, fd >= 0 ? "ok" : strerrorname_np(errno));
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bpfdev-check CGROUP2_DIR\n");
        return 2;
    }
    const struct device_rule rules[] = {
        {'c', 1, 3, "rwm", ""}, /* null: everything */
        {'c', 1, 9, "r", ""}, /* urandom: read only */
        {'c', 136, DEV_WILDCARD, "rw", ""},
    };
    if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
        perror("mkdir");
        return 1;
    }
    int dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tm_err err;
    int prog = bpf_devices_load(rules, 3, &err);
    if (dfd < 0 || prog < 0 || bpf_devices_attach(dfd, prog, &err) < 0) {
        fprintf(stderr, "attach: %s\n", dfd < 0 ? strerror(errno) : err.msg);
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        char procs[4200], me[16];
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", argv[1]);
        snprintf(me, sizeof(me), "%d", getpid());
        int fd = open(procs, O_WRONLY);
        if (fd < 0 || write(fd, me, strlen(me)) < 0)
            _exit(3);
        close(fd);
        probe("/dev/null", O_RDWR, "rw");
        probe("/dev/urandom", O_RDONLY, "r");
        probe("/dev/urandom", O_WRONLY, "w");
        probe("/dev/zero", O_RDONLY, "r");
        probe("/dev/full", O_RDONLY, "r");
        char node[] = "/tmp/bpfdev-check-XXXXXX";
        int t = mkstemp(node);
        close(t);
        unlink(node);
        int r = mknod(node, S_IFCHR | 0600, makedev(1, 3));
        printf("mknod 1:3 m: %s\n", r == 0 ? "ok" : strerrorname_np(errno));
        unlink(node);
        r = mknod(node, S_IFCHR | 0600, makedev(1, 9));
        printf("mknod 1:9 m: %s\n", r == 0 ? "ok" : strerrorname_np(errno));
        unlink(node);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    rmdir(argv[1]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
