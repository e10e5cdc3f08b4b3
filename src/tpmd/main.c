/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-tpmd: the TPM service, the only process that talks to the TPM (docs/ATTESTATION.md).
 * trustmed starts it as its own unprivileged user (no capabilities, no_new_privs) with its data
 * and run dirs already made and owned by that user; the socket to trustmed is fd 3. It measures
 * for trustmed, keeps the measurement log, seals the device storage secret, keeps the
 * anti-rollback counters and answers remote verifiers on its TCP attestation endpoint. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest_server.h"
#include "cleanup.h"
#include "fileio.h"
#include "log.h"
#include "secmem.h"
#include "server.h"
#include "tpmd.h"
#include "version.h"

#define DIR_ARG_MAX 200

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: trustme-tpmd --data-dir DIR --run-dir DIR [OPTIONS]\n"
            "\n"
            "The trustme TPM service. Started by trustmed, which passes the socket to it as fd 3;\n"
            "not meant to be run by hand.\n"
            "\n"
            "  --data-dir DIR          keys and TPM state (ak.pub, ak.priv, ak-chain.pem, secret.blob,\n"
            "                          recovery-key, swtpm/): persistent, owned by tpmd's user\n"
            "  --run-dir DIR           measurements.log, the embedded swtpm's sockets, pid and log:\n"
            "                          lasts as long as the TPM's PCRs (a tmpfs)\n"
            "  --tcti STR|embedded     the TPM as a tpm2-tss TCTI string (device:/dev/tpmrm0,\n"
            "                          swtpm:path=SOCK); embedded (default): run an swtpm of our own\n"
            "  --swtpm PATH            the swtpm binary for the embedded TPM (default: swtpm on PATH)\n"
            "  --swtpm-log             the embedded swtpm logs to <run-dir>/swtpm.log, a line per TPM\n"
            "                          command, emptied beyond 1 MiB (debugging; default: no log)\n"
            "  --recovery-key-out PATH where the recovery key goes when the device secret is first\n"
            "                          sealed (default: RUN-DIR/recovery-key); never the data dir\n"
            "  --swtpm-state DIR       the embedded TPM's state goes to DIR/swtpm (default: the data\n"
            "                          dir); a state left in DATA-DIR/swtpm is moved there\n"
            "  --attest-address H:P    the attestation endpoint (default %s; port 0: any)\n"
            "  --boot-pcr N            PCR of the virtualization layer (default 12)\n"
            "  --runtime-pcr N         PCR of GuestOSes and container configs (default 11)\n"
            "  --log-level LEVEL       error, warn, info (default) or debug\n"
            "  --vtpm-dir DIR          the containers' vTPMs (DIR/UUID/pub/tpm.sock): the attestation\n"
            "                          endpoint relays TPM commands to them (docs/VTPM.md); none: no relay\n"
            "  -h, --help              this text\n",
            ATTEST_DEFAULT_ADDRESS);
}

static int parse_pcr(const char *s, uint32_t *ret)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v >= TPM_PCR_COUNT)
        return -EINVAL;
    *ret = (uint32_t)v;
    return 0;
}

struct options {
    const char *data_dir, *run_dir, *tcti, *swtpm, *attest_address, *swtpm_state, *recovery_out, *vtpm_dir;
    uint32_t boot_pcr, runtime_pcr;
    enum tm_log_level level;
    bool swtpm_log;
};

static int parse_args(int argc, char **argv, struct options *o)
{
    enum {
        OPT_DATA = 256,
        OPT_RUN,
        OPT_TCTI,
        OPT_SWTPM,
        OPT_ATTEST,
        OPT_BOOT,
        OPT_RUNTIME,
        OPT_LOG,
        OPT_SWTPM_LOG,
        OPT_SWTPM_STATE,
        OPT_RECOVERY_OUT,
        OPT_VTPM_DIR
    };
    static const struct option opts[] = {{"data-dir", required_argument, NULL, OPT_DATA},
                                         {"run-dir", required_argument, NULL, OPT_RUN},
                                         {"tcti", required_argument, NULL, OPT_TCTI},
                                         {"swtpm", required_argument, NULL, OPT_SWTPM},
                                         {"attest-address", required_argument, NULL, OPT_ATTEST},
                                         {"boot-pcr", required_argument, NULL, OPT_BOOT},
                                         {"runtime-pcr", required_argument, NULL, OPT_RUNTIME},
                                         {"log-level", required_argument, NULL, OPT_LOG},
                                         {"help", no_argument, NULL, 'h'},
                                         {"swtpm-log", no_argument, NULL, OPT_SWTPM_LOG},
                                         {"swtpm-state", required_argument, NULL, OPT_SWTPM_STATE},
                                         {"recovery-key-out", required_argument, NULL, OPT_RECOVERY_OUT},
                                         {"vtpm-dir", required_argument, NULL, OPT_VTPM_DIR},
                                         {NULL, 0, NULL, 0}};
    *o = (struct options){.tcti = "embedded",
                          .swtpm = "swtpm",
                          .attest_address = ATTEST_DEFAULT_ADDRESS,
                          .boot_pcr = 12,
                          .runtime_pcr = 11,
                          .level = TM_LOG_INFO};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: o->data_dir = optarg; break;
        case OPT_RUN: o->run_dir = optarg; break;
        case OPT_TCTI: o->tcti = optarg; break;
        case OPT_SWTPM: o->swtpm = optarg; break;
        case OPT_SWTPM_LOG: o->swtpm_log = true; break;
        case OPT_SWTPM_STATE: o->swtpm_state = optarg; break;
        case OPT_RECOVERY_OUT: o->recovery_out = optarg; break;
        case OPT_ATTEST: o->attest_address = optarg; break;
        case OPT_VTPM_DIR: o->vtpm_dir = optarg; break;
        case OPT_BOOT:
        case OPT_RUNTIME:
            if (parse_pcr(optarg, c == OPT_BOOT ? &o->boot_pcr : &o->runtime_pcr) < 0) {
                fprintf(stderr, "trustme-tpmd: --%s-pcr: expected 0..23\n", c == OPT_BOOT ? "boot" : "runtime");
                return -EINVAL;
            }
            break;
        case OPT_LOG:
            if (tm_log_parse_level(optarg, &o->level) < 0) {
                fprintf(stderr, "trustme-tpmd: bad --log-level\n");
                return -EINVAL;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "trustme-tpmd: unexpected argument \"%s\"\n", argv[optind]);
        return -EINVAL;
    }
    if (!o->data_dir || !o->run_dir) {
        usage(stderr);
        return -EINVAL;
    }
    if (strlen(o->data_dir) > DIR_ARG_MAX || strlen(o->run_dir) > DIR_ARG_MAX || !*o->tcti ||
        (o->swtpm_state && strlen(o->swtpm_state) > DIR_ARG_MAX) ||
        (o->vtpm_dir && strlen(o->vtpm_dir) > DIR_ARG_MAX)) {
        fprintf(stderr,
                "trustme-tpmd: directory names are limited to %d bytes, the TCTI must "
                "not be empty\n",
                DIR_ARG_MAX);
        return -EINVAL;
    }
    if (o->boot_pcr == o->runtime_pcr) {
        fprintf(stderr, "trustme-tpmd: boot and runtime PCR must differ\n");
        return -EINVAL;
    }
    return 0;
}

/* One tpmd per run dir: two would both extend and append to the same log. */
static int lock_run_dir(const char *run_dir, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tpmd.lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = errno == EWOULDBLOCK ? tm_err_set(err, EBUSY, "another trustme-tpmd uses %s", run_dir)
                                     : tm_err_sys(err, "cannot lock %s", path);
        close(fd);
        return r;
    }
    return fd; /* held until exit */
}

static int load_chain(struct tpmd *d, const char *name, char **ret, size_t *ret_len, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", d->data_dir, name);
    tm_err rerr = {0};
    int r = read_file(path, 1024 * 1024, ret, ret_len, &rerr);
    if (r == -ENOENT)
        return 0; /* not provisioned yet */
    if (r < 0)
        *err = rerr;
    return r;
}

/* A pending SIGTERM or SIGINT: trustmed's clean stop. */
static bool take_stop_signal(struct tpmd *d)
{
    struct signalfd_siginfo si;
    if (read(d->signal_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return false;
    log_info("stopping on signal %u", si.ssi_signo);
    return true;
}

static void on_signal(tm_source *src, uint32_t events, void *userdata)
{
    struct tpmd *d = userdata;
    if (!take_stop_signal(d))
        return;
    d->stop_clean = true;
    tm_loop_quit(d->loop, 0);
}

static void on_trim(tm_source *src, void *userdata)
{
    struct tpmd *d = userdata;
    swtpm_trim_log(&d->swtpm);
    tm_loop_timer(d->loop, SWTPM_LOG_CHECK_MS, on_trim, d); /* freed with the loop */
}

/* Failures counted against the TPM's dictionary-attack protection (each unclean stop of a TPM
 * that used a DA-protected key counts as one) would, at the limit, lock every DA-protected
 * object. tpmd's own objects are noda, but a device provisioned before that has a DA-protected
 * AK, and other users of the TPM may have more: clear the count where the lockout hierarchy's
 * auth allows (it is empty on swtpm). trustmed audits what the Ready message reports. */
static void clear_da_lockout(struct tpmd *d)
{
    struct tpm_da da;
    tm_err e = {0};
    if (tpm_da_read(&d->tpm, &da, &e) < 0) {
        snprintf(d->da_reset.error, sizeof(d->da_reset.error), "%s", e.msg);
        log_warn("%s", e.msg);
        return;
    }
    if (da.failures == 0 && !da.in_lockout)
        return;
    if (tpm_da_reset(&d->tpm, &e) < 0) {
        snprintf(d->da_reset.error, sizeof(d->da_reset.error), "%s", e.msg);
        log_warn("the TPM counts %u dictionary-attack failures (of %u)%s; %s", da.failures, da.max_tries,
                 da.in_lockout ? " and is in lockout" : "", e.msg);
        return;
    }
    d->da_reset.failures = da.failures;
    d->da_reset.lockout = da.in_lockout;
    log_warn("cleared the TPM's dictionary-attack failure count (%u of %u%s)", da.failures, da.max_tries,
             da.in_lockout ? ", in lockout" : "");
}

/* The emulator's state used to live in the data dir, where a copy of the disk took the TPM
 * along (docs/STORAGE.md): move a state found there to the state dir, once. */
static int move_old_state(const char *data_dir, const char *state_dir, tm_err *err)
{
    char old[PATH_MAX], new[PATH_MAX];
    snprintf(old, sizeof(old), "%s/swtpm", data_dir);
    snprintf(new, sizeof(new), "%s/swtpm", state_dir);
    struct stat st;
    if (strcmp(old, new) == 0 || stat(old, &st) < 0 || stat(new, &st) == 0)
        return 0;
    if (rename(old, new) < 0)
        return tm_err_sys(err,
                          "the embedded TPM's state is in %s, but its place is %s now, and "
                          "moving it failed (move it by hand, trustmed stopped)",
                          old, new);
    log_warn("moved the embedded TPM's state from %s to %s", old, new);
    return 0;
}

static int run(struct tpmd *d, const struct options *o, tm_err *err)
{
    int r;
    if (d->embedded) {
        const char *state = o->swtpm_state ? o->swtpm_state : d->data_dir;
        if ((r = move_old_state(d->data_dir, state, err)) < 0 ||
            (r = swtpm_start(&d->swtpm, o->swtpm, state, d->run_dir, o->swtpm_log, err)) < 0)
            return r;
        log_warn("the TPM is the embedded swtpm, an emulator: its state (%s/swtpm) is files, and "
                 "whoever copies them together with the data dir has this device's TPM; see "
                 "docs/STORAGE.md \"The embedded TPM\"",
                 state);
        d->tcti = d->swtpm.tcti;
    }
    if ((r = tpm_open(&d->tpm, d->tcti, d->data_dir, err)) < 0)
        return r;
    clear_da_lockout(d);
    uint8_t values[TPM_PCR_COUNT][32];
    if ((r = tpm_pcr_read(&d->tpm, (1u << TPM_PCR_COUNT) - 1, values, err)) < 0 ||
        (r = mlog_open(&d->log, d->run_dir, tpmd_base_mask(d), values, err)) < 0 ||
        (r = load_chain(d, "ak-chain.pem", &d->chain_pem, &d->chain_len, err)) < 0 ||
        (r = load_chain(d, "ek-chain.pem", &d->ek_chain_pem, &d->ek_chain_len, err)) < 0 ||
        (r = load_chain(d, "vtpm-issuer-chain.pem", &d->issuer_chain_pem, &d->issuer_chain_len, err)) < 0)
        return r;
    d->quotes_held = d->log.restarted;
    char moved[PATH_MAX];
    tm_err aerr = {0};
    /* A recovery key left in the data dir (a crash after the first seal, or an older trustme). */
    if (recovery_key_move(d, moved, sizeof(moved), &aerr) < 0)
        log_error("%s", aerr.msg);
    else if (moved[0])
        log_warn("moved the recovery key out of the data dir to %s: move it off the device", moved);
    if (anchor_load(d->tpm.esys, d->data_dir, &d->anchor, &aerr) < 0)
        log_error("anchor table refused (every anchored value is unavailable): %s", aerr.msg);
    if (!(d->loop = tm_loop_new()))
        return tm_err_set(err, ENOMEM, "out of memory");
    d->signal_src = tm_loop_io(d->loop, d->signal_fd, EPOLLIN, on_signal, d);
    if (!d->signal_src)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (d->embedded) {
        swtpm_trim_log(&d->swtpm);
        tm_loop_timer(d->loop, SWTPM_LOG_CHECK_MS, on_trim, d);
    }
    if ((r = attest_server_start(d, o->attest_address, err)) < 0 || (r = server_start(d, err)) < 0)
        return r;
    log_info("trustme-tpmd %s ready, pid %d: TPM %s (%s), %zu events in the log, boot PCR %u, "
             "runtime PCR %u",
             TRUSTME_VERSION, getpid(), d->tpm.manufacturer, d->embedded ? d->swtpm.tcti : d->tcti, d->log.n,
             d->boot_pcr, d->runtime_pcr);
    if ((r = tm_loop_run(d->loop)) < 0)
        return tm_err_set(err, -r, "stopped: the connection to the TPM broke");
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    tm_log_init("trustme-tpmd", false, o.level);
    /* A vanished trustmed or verifier must not kill us in the middle of a write. */
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    secmem_no_core_dumps(); /* it holds keys or PINs: a crash must not write them out */
    if (fcntl(3, F_GETFD) < 0) {
        log_error("no socket to trustmed on fd 3 (tpmd is started by trustmed)");
        return 2;
    }
    /* fd 3 came without close-on-exec; no child (swtpm) may inherit it. */
    fcntl(3, F_SETFD, FD_CLOEXEC);
    char recovery_out[PATH_MAX];
    snprintf(recovery_out, sizeof(recovery_out), "%s/recovery-key", o.run_dir);
    struct tpmd d = {.data_dir = o.data_dir,
                     .run_dir = o.run_dir,
                     .vtpm_dir = o.vtpm_dir,
                     .boot_pcr = o.boot_pcr,
                     .recovery_out = o.recovery_out ? o.recovery_out : recovery_out,
                     .runtime_pcr = o.runtime_pcr,
                     .link_fd = 3,
                     .embedded = strcmp(o.tcti, "embedded") == 0,
                     .tcti = o.tcti};
    tm_err err = {0};
    int lock_fd = lock_run_dir(d.run_dir, &err);
    if (lock_fd < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    d.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (d.signal_fd < 0) {
        log_error("signalfd: %m");
        return 1;
    }
    int r = run(&d, &o, &err);
    if (r < 0)
        log_error("%s", err.msg);
    /* trustmed sends SIGTERM, then closes the link: the EOF may be seen first, but the signal
     * is pending by then. */
    if (!d.stop_clean && take_stop_signal(&d))
        d.stop_clean = true;
    server_stop(&d);
    tm_source_free(d.signal_src);
    attest_server_stop(d.attest);
    mlog_close(&d.log);
    /* trustmed's stop (SIGTERM) powers the embedded TPM off, like a reboot: the next start has
     * fresh PCRs and a fresh log. Without it (the link closed: trustmed died; or a failed start
     * with a reused swtpm) the swtpm stays, so the next tpmd finds the PCRs as they were. */
    bool power_off = d.embedded && (d.stop_clean || (r < 0 && !d.swtpm.reused));
    tpm_close(&d.tpm, power_off && d.stop_clean);
    if (power_off)
        swtpm_stop(&d.swtpm);
    else
        swtpm_release(&d.swtpm);
    free(d.chain_pem);
    free(d.ek_chain_pem);
    free(d.issuer_chain_pem);
    anchor_free(&d.anchor);
    tm_loop_free(d.loop);
    close(d.signal_fd);
    close(lock_fd);
    log_info("stopped%s", power_off && d.stop_clean ? " (embedded TPM powered off)" : "");
    return r < 0 ? 1 : 0;
}
