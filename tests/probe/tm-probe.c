/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tm-probe: a static helper the integration tests copy into the guest root file system, to ask
 * the kernel things busybox cannot (raw system calls, fork limits, fd tables). Each subcommand
 * prints plain "key: value" lines that the tests parse. Not part of trustme itself. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kexec.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        perror("opendir");
        return 1;
    }
    struct dirent *e;
    printf("fds:");
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        printf(" %s", e->d_name);
    }
    printf("\n");
    closedir(d);
    return 0;
}

/* Touch `mb` MiB page by page, reporting every 8 MiB, so an OOM kill shows how far it got. */
static int alloc(long mb)
{
    for (long i = 0; i < mb; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("alloc: malloc failed at %ld MiB\n", i);
            return 1;
        }
        memset(p, 0x5a, 1 << 20);
        if (i % 8 == 7) {
            printf("allocated: %ld MiB\n", i + 1);
            fflush(stdout);
        }
    }
    printf("alloc: done %ld MiB\n", mb);
    return 0;
}

/* Fork children that just sleep until `max` or a failure; report how many, then clean up. */
static int forkbomb(long max)
{
    pid_t *pids = calloc((size_t)max, sizeof(pid_t));
    long n = 0;
    int err = 0;
    for (; n < max; n++) {
        pid_t p = fork();
        if (p < 0) {
            err = errno;
            break;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        pids[n] = p;
    }
    printf("forked: %ld\n", n);
    printf("fork_error: %s\n", err ? strerror(err) : "none");
    for (long i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    for (long i = 0; i < n; i++)
        waitpid(pids[i], NULL, 0);
    return 0;
}

static void report(const char *name, long r)
{
    printf("%s: %s\n", name, r < 0 ? strerrorname_np(errno) : "ok");
}

/* The system calls the seccomp filter must answer with EPERM (with harmless arguments). */
static int syscalls(void)
{
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("finit_module", syscall(SYS_finit_module, -1, "", 0));
    report("delete_module", syscall(SYS_delete_module, "nonexistent", 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", KEXEC_FILE_UNLOAD));
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
    report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    report("add_key", syscall(SYS_add_key, "user", "x", "y", 1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("swapon", syscall(SYS_swapon, "/nonexistent", 0));
    report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    report("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
    char c = 'x';
    report("tiocsti", ioctl(0, TIOCSTI, &c));
    return 0;
}

static int mknod_test(const char *path, const char *type, int major, int minor)
{
    mode_t mode = (type[0] == 'b' ? S_IFBLK : S_IFCHR) | 0600;
    report("mknod", mknod(path, mode, makedev(major, minor)));
    return 0;
}

static int open_test(const char *path)
{
    int fd = open(path, O_RDWR);
    report("open", fd);
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Increment a counter in `path` every 10 ms, forever (for freeze tests). */
static _Noreturn void counter(const char *path)
{
    for (unsigned long i = 0;; i++) {
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%lu\n", i);
            fclose(f);
        }
        usleep(10000);
    }
}

static int write_test(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        report("write", -1);
        return 0;
    }
    report("write", write(fd, data, strlen(data)));
    close(fd);
    return 0;
}

static int tty(void)
{
    printf("stdin_tty: %d\nstdout_tty: %d\n", isatty(0), isatty(1));
    return 0;
}

/* A hostile client of a control socket from inside a container: n connections, each left idle,
 * in the middle of a header, in the middle of a frame, or after a frame of random bytes (seeded),
 * held for hold_s seconds. Prints how many connected and how many the daemon closed. */
static int ctlflood(const char *path, int n, int hold_s, unsigned seed)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int *fds = calloc((size_t)n, sizeof(int));
    int opened = 0, failed = 0;
    srandom(seed);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int r = -1;
        for (int tries = 0; fd >= 0 && tries < 200; tries++) {
            r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
            if (r == 0 || errno != EAGAIN)
                break;
            usleep(5000); /* the listen queue is full: the daemon is busy accepting */
        }
        if (r < 0) {
            if (fd >= 0)
                close(fd);
            failed++;
            continue;
        }
        unsigned char buf[600];
        size_t len = 0;
        switch (i % 4) {
        case 0: break; /* idle */
        case 1: buf[0] = 0, buf[1] = 0, len = 2; break; /* half a header */
        case 2: /* a header announcing 1 MiB, then 10 bytes */
            buf[0] = 0, buf[1] = 0x10, buf[2] = 0, buf[3] = 0;
            memset(buf + 4, 'x', 10);
            len = 14;
            break;
        case 3: { /* a whole frame of random bytes */
            size_t m = (size_t)(random() % 512);
            buf[0] = 0, buf[1] = 0, buf[2] = (unsigned char)(m >> 8), buf[3] = (unsigned char)m;
            for (size_t k = 0; k < m; k++)
                buf[4 + k] = (unsigned char)random();
            len = 4 + m;
            break;
        }
        }
        if (len && write(fd, buf, len) < 0) {
            /* refused at once: counted below as closed */
        }
        fds[opened++] = fd;
    }
    printf("opened: %d\nfailed: %d\n", opened, failed);
    sleep((unsigned)hold_s);
    int closed = 0;
    for (int i = 0; i < opened; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
            closed++;
        close(fds[i]);
    }
    printf("closed_by_daemon: %d\n", closed);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "fds") == 0)
        return fds();
    if (argc >= 3 && strcmp(argv[1], "alloc") == 0)
        return alloc(atol(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "forkbomb") == 0)
        return forkbomb(atol(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "syscalls") == 0)
        return syscalls();
    if (argc >= 6 && strcmp(argv[1], "mknod") == 0)
        return mknod_test(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    if (argc >= 3 && strcmp(argv[1], "open") == 0)
        return open_test(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "counter") == 0)
        counter(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "write") == 0)
        return write_test(argv[2], argv[3]);
    if (argc >= 2 && strcmp(argv[1], "tty") == 0)
        return tty();
    if (argc >= 5 && strcmp(argv[1], "ctlflood") == 0)
        return ctlflood(argv[2], atoi(argv[3]), atoi(argv[4]), argc >= 6 ? (unsigned)atoi(argv[5]) : 1);
    fprintf(stderr, "usage: tm-probe fds | alloc MB | forkbomb N | syscalls | mknod PATH b|c MAJ MIN |"
                    " open PATH | counter FILE | write PATH DATA | tty | ctlflood SOCKET N SECONDS [SEED]\n");
    return 2;
}
