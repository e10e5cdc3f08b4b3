/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed: the trustme container management daemon. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_anchor.h"
#include "cleanup.h"
#include "config.h"
#include "container.h"
#include "control.h"
#include "daemon.h"
#include "fileio.h"
#include "lifecycle.h"
#include "measure.h"
#include "migrate_net.h"
#include "guestos.h"
#include "guestos_install.h"
#include "guestos_revocation.h"
#include "log.h"
#include "service.h"
#include "secmem.h"
#include "net.h"
#include "notify.h"
#include "ctlsock.h"
#include "ctlsock_ops.h"
#include "reply_ops.h"
#include "seccomp_filter.h"
#include "storage_dmcrypt.h"
#include "core_container.h"
#include "reaper.h"
#include "runtime.h"
#include "scd_client.h"
#include "service_options.h"
#include "tpmd_client.h"
#include "tokens.h"
#include "keystore_svc.h"
#include "migrate.h"
#include "lock_anchor.h"
#include "vtpm.h"
#include "version.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustmed [OPTIONS]\n"
                 "\n"
                 "The trustme container management daemon. It runs in the foreground; stop it with\n"
                 "SIGTERM (running containers are stopped first), or with SIGQUIT leaving them running\n"
                 "(a restart); if it dies or leaves them, the next trustmed re-adopts the containers\n"
                 "that are still running. Under systemd it reports readiness through $NOTIFY_SOCKET\n"
                 "and logs for the journal when $JOURNAL_STREAM is its stderr.\n"
                 "\n"
                 "Options:\n"
                 "  --data-dir DIR       persistent state: containers, data volumes, audit log\n"
                 "                       (default /var/lib/trustme)\n"
                 "  --run-dir DIR        runtime state and the control socket (default /run/trustme)\n"
                 "  --cgroup-parent NAME cgroup below which container cgroups are made (default trustme)\n"
                 "  --id-base N          first host uid/gid given to container user namespaces; each\n"
                 "                       container gets its own 65536 ids (default 100000)\n"
                 "  --scd-user NAME      system user of the token service (default trustme-scd)\n"
                 "  --scd-binary PATH    trustme-scd (default: " TRUSTME_LIBEXECDIR "/trustme-scd,\n"
                 "                       or the build tree's for a trustmed run from one)\n"
                 "  --scd-bind PATH      a host path the token service may use, e.g. a SoftHSM2 token\n"
                 "                       dir or /run/pcscd (repeatable, up to 8)\n"
                 "  --scd-kdf-n N        scrypt cost N for new soft tokens (power of two, default 32768)\n"
                 "  --tpmd-user NAME     system user of the TPM service (default trustme-tpm)\n"
                 "  --keystore-user NAME system user of the containers' keystores (default trustme-keystore)\n"
                 "  --tpmd-binary PATH   trustme-tpmd (default: " TRUSTME_LIBEXECDIR "/trustme-tpmd,\n"
                 "                       or the build tree's)\n"
                 "  --swtpm-state-dir DIR  the embedded swtpm's state, kept out of the data dir so a\n"
                 "                       copy of it does not carry the TPM along (default\n"
                 "                       /var/lib/trustme-swtpm; docs/STORAGE.md \"The embedded TPM\")\n"
                 "  --recovery-key-file PATH  where the recovery key is written when the device\n"
                 "                       secret is first sealed (a directory the TPM service's user\n"
                 "                       can write); default RUN-DIR/tpm/recovery-key, a tmpfs: it is\n"
                 "                       never kept in the data dir (docs/ATTESTATION.md)\n"
                 "  --log-level LEVEL    error, warn, info or debug (default info)\n"
                 "  --syslog             log to syslog instead of stderr\n"
                 "  --version            print the version\n"
                 "  -h, --help           show this help\n");
}

static void begin_shutdown(struct daemon *d, bool force)
{
    if (d->shutting_down && !force)
        return;
    log_info(force ? "stopping all containers now (SIGKILL)" : "shutting down: stopping containers");
    d->shutting_down = true;
    tm_notify("STOPPING=1\nSTATUS=%s", force ? "killing the containers" : "stopping the containers");
    struct stop_args args = {.timeout_s = STOP_TIMEOUT_DEFAULT_S, .kill = force};
    for (struct container *c = d->containers; c; c = c->next) {
        if (!force && core_stops_last(c))
            continue; /* c0 once the others are stopped (core_on_transition) */
        if (state_is_active(c->state) && (c->state != CS_STOPPING || force))
            container_fire(c, EV_STOP, &args, NULL);
    }
    daemon_maybe_exit(d);
}

/* SIGQUIT: a restart (systemd's RestartKillSignal). The containers keep running and the next
 * trustmed re-adopts them, as after a crash: main ends the helpers and leaves at once. */
static bool detaching;

static void on_signal(tm_source *src, uint32_t events, void *userdata)
{
    struct daemon *d = userdata;
    struct signalfd_siginfo si;
    while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            begin_shutdown(d, d->shutting_down); /* a second signal: kill at once */
        else if (si.ssi_signo == SIGQUIT && !d->shutting_down) {
            detaching = true;
            tm_loop_quit(d->loop, 0);
        }
    }
}

/* Paths end up in overlayfs option strings, where ',' ':' and '\' have meanings. */
static int check_dir_arg(const char *opt, const char *path)
{
    if (path[0] != '/' || strpbrk(path, ",:\\ \t\n") || strlen(path) > 200) {
        fprintf(stderr,
                "trustmed: %s must be an absolute path of at most 200 characters without "
                "',', ':', '\\' or blanks, got \"%s\"\n",
                opt, path);
        return -1;
    }
    return 0;
}

static int lock_dir(const char *dir, const char *what)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "trustmed: %s %s is in use by another trustmed (%s)\n", what, dir, strerror(errno));
        return -1;
    }
    return steal_fd(fd); /* held for the life of the process */
}

static int parse_args(struct daemon *d, int argc, char **argv, enum tm_log_level *level, bool *use_syslog)
{
    enum {
        OPT_DATA = 256,
        OPT_RUN,
        OPT_CG,
        OPT_IDS,
        OPT_LOG,
        OPT_SYSLOG,
        OPT_VERSION,
        OPT_KEYSTORE_USER,
        OPT_SERVICE = 512, /* + enum service_option: the helper services' options */
    };
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA},
        {"run-dir", required_argument, NULL, OPT_RUN},
        {"cgroup-parent", required_argument, NULL, OPT_CG},
        {"id-base", required_argument, NULL, OPT_IDS},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"syslog", no_argument, NULL, OPT_SYSLOG},
        {"scd-user", required_argument, NULL, OPT_SERVICE + SVC_OPT_SCD_USER},
        {"scd-binary", required_argument, NULL, OPT_SERVICE + SVC_OPT_SCD_BINARY},
        {"tpmd-user", required_argument, NULL, OPT_SERVICE + SVC_OPT_TPMD_USER},
        {"keystore-user", required_argument, NULL, OPT_KEYSTORE_USER},
        {"tpmd-binary", required_argument, NULL, OPT_SERVICE + SVC_OPT_TPMD_BINARY},
        {"scd-bind", required_argument, NULL, OPT_SERVICE + SVC_OPT_SCD_BIND},
        {"scd-kdf-n", required_argument, NULL, OPT_SERVICE + SVC_OPT_SCD_KDF_N},
        {"swtpm-state-dir", required_argument, NULL, OPT_SERVICE + SVC_OPT_SWTPM_STATE},
        {"recovery-key-file", required_argument, NULL, OPT_SERVICE + SVC_OPT_RECOVERY_KEY_FILE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    tm_err err;
    if (service_options_init(d, &err) < 0) {
        fprintf(stderr, "trustmed: %s\n", err.msg);
        return -1;
    }
    d->log_level = "info";
    snprintf(d->data_dir, sizeof(d->data_dir), "/var/lib/trustme");
    snprintf(d->run_dir, sizeof(d->run_dir), "/run/trustme");
    snprintf(d->cgroup_parent, sizeof(d->cgroup_parent), "trustme");
    d->id_base = 100000;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        unsigned long long n;
        switch (o) {
        case OPT_DATA: snprintf(d->data_dir, sizeof(d->data_dir), "%s", optarg); break;
        case OPT_RUN: snprintf(d->run_dir, sizeof(d->run_dir), "%s", optarg); break;
        case OPT_CG:
            if (!optarg[0] || strstr(optarg, "..") || strlen(optarg) >= sizeof(d->cgroup_parent) || optarg[0] == '/' ||
                strpbrk(optarg, " \n")) {
                fprintf(stderr,
                        "trustmed: --cgroup-parent must be a relative cgroup path such as "
                        "\"trustme\", got \"%s\"\n",
                        optarg);
                return -1;
            }
            snprintf(d->cgroup_parent, sizeof(d->cgroup_parent), "%s", optarg);
            break;
        case OPT_IDS:
            errno = 0;
            n = strtoull(optarg, &end, 10);
            if (errno || *end || n < 1 || n > 0xFFFFFFFFull - TM_IDS_PER_CONTAINER) {
                fprintf(stderr, "trustmed: --id-base must be a number between 1 and %u\n",
                        0xFFFFFFFFu - TM_IDS_PER_CONTAINER);
                return -1;
            }
            d->id_base = (uint32_t)n;
            break;
        case OPT_KEYSTORE_USER: keystore_svc_options(d, optarg, NULL); break;
        case OPT_LOG:
            d->log_level = optarg;
            if (tm_log_parse_level(optarg, level) < 0) {
                fprintf(stderr, "trustmed: --log-level must be error, warn, info or debug\n");
                return -1;
            }
            break;
        case OPT_SYSLOG: *use_syslog = true; break;
        case OPT_VERSION: printf("trustmed %s\n", TRUSTME_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default:
            if (o < OPT_SERVICE) {
                usage(stderr);
                return -1;
            }
            if (service_option(d, (enum service_option)(o - OPT_SERVICE), optarg, &err) < 0) {
                fprintf(stderr, "trustmed: %s\n", err.msg);
                return -1;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "trustmed: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (check_dir_arg("--data-dir", d->data_dir) < 0 || check_dir_arg("--run-dir", d->run_dir) < 0)
        return -1;
    return 0;
}

static int open_audit(struct daemon *d, tm_err *err)
{
    char log_path[PATH_MAX + 16], head_path[PATH_MAX + 16], warning[512];
    snprintf(log_path, sizeof(log_path), "%s/audit.log", d->data_dir);
    snprintf(head_path, sizeof(head_path), "%s/audit.head", d->data_dir);
    int r = tm_audit_open(&d->audit, log_path, head_path, warning, sizeof(warning), err);
    if (r < 0)
        return r;
    if (warning[0]) {
        log_warn("audit log: %s", warning);
        daemon_audit(d, "audit.tampered", "fail", NULL, "trustmed", "%s", warning);
    }
    return 0;
}

static int setup_signals(struct daemon *d, tm_err *err)
{
    /* SIGPIPE: a vanished client must not kill us; children restore the default. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (d->signal_fd < 0)
        return tm_err_sys(err, "signalfd");
    d->signal_src = tm_loop_io(d->loop, d->signal_fd, EPOLLIN, on_signal, d);
    return d->signal_src ? 0 : tm_err_sys(err, "epoll");
}

static int init_daemon(struct daemon *d, tm_err *err)
{
    char dir[PATH_MAX + 16];
    int r;
    const char *roots[] = {d->data_dir, d->run_dir};
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
        snprintf(dir, sizeof(dir), "%s/containers", roots[i]);
        if ((r = mkdir_p(dir, 0700)) < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot create %s", dir);
        }
        /* Search-only for others: trustme-tpmd's user reaches its own subdirectory by name;
         * nothing here can be listed, and everything inside is 0700 or 0600. */
        if (chmod(roots[i], 0711) < 0)
            return tm_err_sys(err, "cannot restrict %s", roots[i]);
    }
    if (lock_dir(d->data_dir, "data dir") < 0 || lock_dir(d->run_dir, "run dir") < 0)
        return tm_err_set(err, EBUSY, "already running");
    if ((r = open_audit(d, err)) < 0)
        return r;
    daemon_audit(d, "daemon.start", "ok", NULL, "trustmed", "trustmed %s, pid %d", TRUSTME_VERSION, getpid());
    const char *unit = NULL;
    /* $INVOCATION_ID: systemd started it (a service's cgroups are delegated by its unit). */
    if ((r = cg_detect(&d->cgroups, err)) < 0 ||
        (getenv("INVOCATION_ID") && (r = cg_delegate(&d->cgroups, "/proc/self/cgroup", &unit, err)) < 0) ||
        (r = cg_init_parent(&d->cgroups, d->cgroup_parent, err)) < 0)
        return r;
    log_info("cgroups: %s%s%s", cg_mode(&d->cgroups), unit ? ", delegated by " : "", unit ? unit : "");
    if ((r = seccomp_build(d, err)) < 0)
        return r;
    if ((r = device_config_load(d->data_dir, &d->device, err)) < 0)
        return r;
    d->audit.rot = d->device.audit_rotation;
    if (d->device.storage_backend == STORAGE_DMCRYPT && (r = dmcrypt_available(err)) < 0)
        return tm_err_prefix(err, "%s/device.json selects the dm-crypt storage backend, but", d->data_dir);
    if ((r = guestos_store_init(d, err)) < 0)
        return r;
    /* The subsystems' own state, before scd starts and any container is loaded. */
    if ((r = tpmd_init(d, err)) < 0 || (r = core_init(d, err)) < 0 || (r = net_init(d, err)) < 0)
        return r;
    if ((r = control_init(d, err)) < 0)
        return r;
    d->reply = &control_reply_ops;
    d->ctlsock = &control_ctlsock_ops;
    daemon_observe(d, &lifecycle_container_observer);
    daemon_observe(d, &net_container_observer);
    daemon_observe(d, &tokens_container_observer);
    daemon_observe(d, &keystore_container_observer);
    daemon_observe(d, &vtpm_container_observer);
    daemon_observe(d, &migrate_container_observer);
    /* At shutdown the tokens' unused PIN tries reserved in advance are given back first. */
    daemon_hold_exit(d, tokens_release_reservations);
    /* Every vTPM's state is anchored once its container stopped. */
    daemon_hold_exit(d, vtpm_exit_ready);
    /* In this order: a new scd gets the tokens' state asked for, then the device secret, then
     * the GuestOS revocation check. */
    service_events_add(d, &tokens_service_events);
    service_events_add(d, &tpmd_scd_events);
    service_events_add(d, &revocation_service_events);
    service_events_add(d, &measure_service_events);
    service_events_add(d, &audit_anchor_events);
    /* Migration lock files against the TPM's record. */
    service_events_add(d, &migrate_service_events);
    if ((r = setup_signals(d, err)) < 0 || (r = scd_launch(d, err)) < 0 || (r = tpmd_start(d, err)) < 0 ||
        (r = containers_load(d, err)) < 0)
        return r;
    for (struct container *c = d->containers; c; c = c->next) {
        runtime_recover(c);
        ctlsock_readopt(c); /* its old control socket died with the old trustmed */
        vtpm_recover(c); /* its vTPM outlived the old trustmed too */
        migrate_recover(c); /* an export killed before its bundle was complete */
    }
    net_recover(d); /* after re-adoption: what containers that died meanwhile left goes */
    if ((r = core_check(d, err)) < 0)
        return r;
    if ((r = control_listen(d, err)) < 0)
        return r;
    return migrate_net_start(d, err); /* device.json migrate.address: off by default */
}

/* What init_daemon allocated, also when it failed part way, and the loop itself. */
static void daemon_free(struct daemon *d)
{
    control_close_all(d); /* a start-up that failed after control_init; else done already */
    if (d->audit.path) /* opened (its fd is 0 in a daemon never initialised) */
        tm_audit_close(&d->audit);
    while (d->containers) {
        struct container *c = d->containers;
        d->containers = c->next;
        container_free(c);
    }
    revocation_stop(d);
    core_free(d);
    tpmd_free(d);
    service_options_free(d);
    net_free(d);
    guestos_store_free(d);
    device_config_clear(&d->device);
    seccomp_filter_free(d);
    reaper_free_all();
    tm_source_free(d->signal_src); /* freed with the loop's other dead sources */
    if (d->signal_fd >= 0)
        close(d->signal_fd);
    tm_loop_free(d->loop);
}

int main(int argc, char **argv)
{
    struct daemon d = {.signal_fd = -1};
    enum tm_log_level level = TM_LOG_INFO;
    bool use_syslog = false;
    if (parse_args(&d, argc, argv, &level, &use_syslog) < 0) {
        service_options_free(&d); /* parse_args made them before the option it refused */
        return 2;
    }
    tm_notify_init();
    tm_log_init("trustmed", use_syslog, level);
    if (geteuid() != 0) {
        log_error("trustmed must run as root (it creates namespaces, cgroups and mounts)");
        return 1;
    }
    umask(077);
    secmem_no_core_dumps(); /* it holds keys or PINs: a crash must not write them out */
    d.loop = tm_loop_new();
    tm_err err = {0};
    if (!d.loop || init_daemon(&d, &err) < 0) {
        log_error("%s", err.msg[0] ? err.msg : "cannot create the event loop");
        tpmd_stop(&d); /* a check after their start refused (e.g. tpm.boot_chain "ima") */
        scd_stop(&d);
        daemon_free(&d);
        return 1;
    }
    log_info("ready: data %s, run %s, control socket %s/control.sock", d.data_dir, d.run_dir, d.run_dir);
    size_t running = 0;
    for (struct container *c = d.containers; c; c = c->next)
        running += state_is_active(c->state);
    tm_notify("READY=1\nSTATUS=serving %s/control.sock, %zu container%s running", d.run_dir, running,
              running == 1 ? "" : "s");
    core_autostart(&d); /* c0 first, then the others */
    int code = tm_loop_run(d.loop);
    if (detaching) {
        log_info("restart: leaving the running containers to the next trustmed");
        tm_notify("STOPPING=1\nSTATUS=restarting, containers left running");
        control_close_all(&d);
        tpmd_stop(&d);
        scd_stop(&d);
        daemon_audit(&d, "daemon.detach", "ok", NULL, "trustmed", "pid %d", getpid());
        _exit(0); /* nothing of the containers' is torn down: what a crash would leave */
    }
    net_shutdown(&d); /* a bridge still lingering after the last container */
    guestos_install_abort(&d);
    control_close_all(&d);
    tpmd_stop(&d);
    scd_stop(&d);
    cg_remove_parent(&d.cgroups, d.cgroup_parent);
    daemon_audit(&d, "daemon.stop", "ok", NULL, "trustmed", "pid %d", getpid());
    daemon_free(&d);
    log_info("stopped");
    return code;
}
