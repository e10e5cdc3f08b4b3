/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-fleet: fleet attestation on PostgreSQL (docs/FLEET.md). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "attest_tls.h"
#include "push_client.h"
#include "attest_opts.h"
#include "cleanup.h"
#include "db.h"
#include "fileio.h"
#include "fleet.h"
#include "json_cleanup.h"
#include "inputs.h"
#include "jsonutil.h"
#include "log.h"
#include "verify.h"

static const char usage[] =
    "usage: trustme-fleet [--db CONNINFO] COMMAND [OPTIONS]\n"
    "  migrate                          create or upgrade the schema\n"
    "  trust --ak-anchor ROOT.pem --device-ca CA.pem --rim-anchor ROOT.pem --rim-ca CA.pem\n"
    "        (--crl CRL.pem ... | --no-crl)  set what the fleet trusts (each option repeatable)\n"
    "  group NAME --reference REFS.json --interval S [--pcr N ...] [--no-pin-ak] [--min-version N]\n"
    "                                   create a device group or roll out its new reference values\n"
    "  enroll NAME --group G --info INFO.json [--address HOST:PORT] [--tls-cert CERT.pem]\n"
    "                                   enroll a device (INFO.json: `trustme device info --json`);\n"
    "                                   without --address it pushes its evidence; with --tls-cert\n"
    "                                   it must push, or be pulled, over TLS with that certificate\n"
    "                                   (key in TPM; pulled: its address is attest-tls's)\n"
    "  remove NAME                      remove a device and its history\n"
    "  vtpm-enroll NAME UUID/ek-KIND EKNAME\n"
    "                                   enroll a container's vTPM under device NAME by its EK\n"
    "                                   (EKNAME: `trustme vtpm info`'s TPM name)\n"
    "  vtpm-key NAME UUID/ek-ecc --key KEY.json --ek-cert CERTS.pem\n"
    "                                   pin the vTPM's attestation key (KEY.json: trustme-owner take\n"
    "                                   --fleet-key; CERTS.pem: its EK certificate, then the device's\n"
    "                                   vTPM issuer chain): workers then attest the vTPM's own quotes\n"
    "  vtpms                            the vTPMs, whether the devices' logs vouch for them, and\n"
    "                                   the last verdict on their own quotes\n"
    "  devices | groups | alerts        list, as JSON\n"
    "  history NAME                     a device's verdicts, newest first, as JSON\n"
    "  worker [--name W] [--alert-command CMD] [--batch N] [--poll-ms MS] [--threads N] [--once]\n"
    "                                   verify due devices until SIGTERM (N threads: N workers\n"
    "                                   W.1 .. W.N, each with its own connection)\n"
    "  serve [--listen ADDR:PORT] [--alert-command CMD] [--retention-days N]\n"
    "        [--tls-cert CERT.pem --tls-key KEY.pem\n"
    "        [--client-ca CA.pem [--viewer-ca VCA.pem]]]\n"
    "                                   the HTTP+JSON API and status page; alerts on missing devices\n"
    "                                   and workers; with --client-ca only operators with a\n"
    "                                   certificate of CA.pem (admins) or VCA.pem (viewers: reading\n"
    "                                   only) reach any endpoint but push\n"
    "  sweep [--alert-command CMD]      raise the alerts due now, once\n"
    "  prune --days N                   delete verdicts and alerts older than N days (serve does\n"
    "                                   it every minute: --retention-days N, default 30, 0 never)\n"
    "  stats                            history size: verdicts, bytes, bytes per device per day\n"
    "  push --server HOST:PORT --device NAME --attest HOST:PORT [--tls-ca CA.pem\n"
    "       [--tls-cert CERT.pem [--control SOCKET]]]\n"
    "                                   on a device behind NAT: a nonce from the fleet, a quote\n"
    "                                   from its tpmd, the evidence to the fleet (exit 0 trusted,\n"
    "                                   1 untrusted or refused); needs no database. HTTPS with\n"
    "                                   --tls-ca; --tls-cert: the device's TLS certificate, its\n"
    "                                   key in the TPM, used through trustmed at SOCKET\n"
    "  attest-tls --listen HOST:PORT --attest HOST:PORT --tls-cert CERT.pem [--control SOCKET]\n"
    "                                   on a device: its attestation endpoint over TLS, for workers\n"
    "                                   pulling a device enrolled with --tls-cert and --address; the\n"
    "                                   TLS key in the TPM, used through trustmed at SOCKET; requests\n"
    "                                   go on to the device's tpmd at --attest; needs no database\n"
    "CONNINFO is a libpq connection string (default: PGHOST, PGDATABASE, ... of the environment).\n";

static volatile int stop;

static void on_signal(int sig)
{
    stop = 1;
}

static int fail(const tm_err *err, int r)
{
    fprintf(stderr, "trustme-fleet: %s\n", err->msg[0] ? err->msg : strerror(-r));
    return r == -EINVAL ? 2 : 1;
}

static int cmd_trust(PGconn *c, int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {{"ak-anchor", required_argument, NULL, 'a'},
                                         {"device-ca", required_argument, NULL, 'd'},
                                         {"rim-anchor", required_argument, NULL, 'r'},
                                         {"rim-ca", required_argument, NULL, 'R'},
                                         {"crl", required_argument, NULL, 'c'},
                                         {"no-crl", no_argument, NULL, 'n'},
                                         {0}};
    static const char keys[] = "adrRc";
    char *lists[5][ATTEST_INPUTS_MAX];
    size_t n[5] = {0};
    bool no_crl = false;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'n') {
            no_crl = true;
            continue;
        }
        const char *k = o > 0 ? strchr(keys, o) : NULL;
        if (!k)
            return tm_err_set(err, EINVAL, "trust: unknown option");
        size_t i = (size_t)(k - keys);
        if (n[i] == ATTEST_INPUTS_MAX)
            return tm_err_set(err, EINVAL, "trust: too many files");
        lists[i][n[i]++] = optarg;
    }
    if (!n[0] || !n[1] || !n[2] || !n[3])
        return tm_err_set(err, EINVAL, "trust: --ak-anchor, --device-ca, --rim-anchor and --rim-ca are required");
    if (!n[4] == !no_crl)
        return tm_err_set(err, EINVAL, "trust: --crl CRL.pem or --no-crl (exactly one of them)");
    char *pem[5] = {0};
    size_t len;
    int r = 0;
    for (size_t i = 0; i < 5 && r == 0; i++)
        if (n[i])
            r = attest_read_pems(lists[i], n[i], &pem[i], &len, err);
    if (r == 0)
        r = fleet_trust_set(c, pem[0], pem[1], pem[2], pem[3], pem[4], err);
    for (size_t i = 0; i < 5; i++)
        free(pem[i]);
    return r;
}

static int cmd_group(PGconn *c, int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {
        {"reference", required_argument, NULL, 'r'},   {"interval", required_argument, NULL, 'i'},
        {"pcr", required_argument, NULL, 'p'},         {"no-pin-ak", no_argument, NULL, 'n'},
        {"min-version", required_argument, NULL, 'm'}, {0}};
    struct fleet_group_req g = {.pin_ak = true};
    const char *reference = NULL;
    uint64_t v;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'r': reference = optarg; break;
        case 'i':
            if (attest_parse_u64(optarg, 86400, &v) < 0)
                return tm_err_set(err, EINVAL, "--interval: 1 to 86400 seconds");
            g.interval_s = (int64_t)v;
            break;
        case 'p':
            if (attest_parse_u64(optarg, 23, &v) < 0 || g.npcrs == REFVALUES_PCRS)
                return tm_err_set(err, EINVAL, "--pcr: 0 to 23");
            g.pcrs[g.npcrs++] = (uint32_t)v;
            break;
        case 'n': g.pin_ak = false; break;
        case 'm':
            if (attest_parse_u64(optarg, INT64_MAX, &g.min_version) < 0)
                return tm_err_set(err, EINVAL, "--min-version: a number");
            break;
        default: return tm_err_set(err, EINVAL, "group: unknown option");
        }
    }
    if (optind + 1 != argc || !reference || !g.interval_s)
        return tm_err_set(err, EINVAL, "group NAME --reference REFS.json --interval S");
    g.name = argv[optind];
    _cleanup_(refvalues_files_done) struct refvalues_files f = {0};
    int r = refvalues_read_files(reference, &f, err);
    if (r < 0)
        return r;
    g.refs_json = f.json;
    g.refs_json_len = f.json_len;
    g.refs_sig = (const uint8_t *)f.sig;
    g.refs_sig_len = f.sig_len;
    g.refs_chain = f.chain_pem;
    g.refs_chain_len = f.chain_len;
    return fleet_group_put(c, &g, err);
}

static int cmd_enroll(PGconn *c, int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {{"group", required_argument, NULL, 'g'},
                                         {"info", required_argument, NULL, 'i'},
                                         {"address", required_argument, NULL, 'a'},
                                         {"tls-cert", required_argument, NULL, 't'},
                                         {0}};
    struct fleet_enroll_req e = {0};
    const char *info = NULL, *tls_cert = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'g')
            e.group = optarg;
        else if (o == 'i')
            info = optarg;
        else if (o == 'a')
            e.address = optarg;
        else if (o == 't')
            tls_cert = optarg;
        else
            return tm_err_set(err, EINVAL, "enroll: unknown option");
    }
    if (optind + 1 != argc || !e.group || !info)
        return tm_err_set(err, EINVAL,
                          "enroll NAME --group G --info INFO.json [--address HOST:PORT] [--tls-cert CERT.pem]");
    e.name = argv[optind];
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    int r = read_file(info, 1 << 20, &text, &len, err);
    if (r < 0)
        return r;
    /* `trustme device info --json` has more keys than these: only these two are read. */
    _cleanup_json_ json_t *o2 = NULL;
    if ((r = tm_json_parse_object(text, len, &o2, err)) < 0 ||
        (r = tm_json_get_string(o2, "$", "ak_name", true, 68, &e.ak_name_hex, err)) < 0 ||
        (r = tm_json_get_string(o2, "$", "cert_chain_pem", true, VERIFY_PEM_MAX, &e.cert_chain_pem, err)) < 0) {
        tm_err_prefix(err, "%s", info);
        return -EINVAL;
    }
    _cleanup_free_ char *tls_text = NULL;
    if (tls_cert && (r = read_file(tls_cert, VERIFY_PEM_MAX, &tls_text, &len, err)) < 0)
        return r;
    e.tls_cert_pem = tls_text;
    return fleet_enroll(c, &e, err);
}

static int print_query(PGconn *c, const char *sql, const char *param, tm_err *err)
{
    _cleanup_res_ PGresult *res = NULL;
    int r = fleet_exec(c, &res, err, sql, param ? 1 : 0, param ? (const char *[]){param} : NULL);
    if (r < 0)
        return r;
    printf("%s\n", PQntuples(res) ? PQgetvalue(res, 0, 0) : "[]");
    return 0;
}

struct worker_thread {
    pthread_t t;
    const char *conninfo;
    struct fleet_worker_opts o;
    char name[128];
    int r;
    tm_err err;
};

static void *worker_thread(void *arg)
{
    struct worker_thread *w = arg;
    _cleanup_pq_ PGconn *c = NULL;
    w->r = fleet_db_connect(w->conninfo, &c, &w->err);
    if (w->r == 0)
        w->r = fleet_worker_run(c, &w->o, &stop, &w->err);
    if (w->r < 0) {
        log_error("worker %s: %s", w->name, w->err.msg);
        stop = 1; /* one thread's failure stops the process: it is restarted whole */
    }
    return NULL;
}

static int cmd_worker(PGconn *c, const char *conninfo, int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {{"name", required_argument, NULL, 'n'},
                                         {"alert-command", required_argument, NULL, 'a'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"poll-ms", required_argument, NULL, 'p'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"threads", required_argument, NULL, 't'},
                                         {0}};
    uint64_t threads = 1;
    char host[64] = "", name[128];
    gethostname(host, sizeof(host) - 1);
    snprintf(name, sizeof(name), "%s-%d", host, (int)getpid());
    struct fleet_worker_opts w = {.name = name, .batch = 8, .poll_ms = 200};
    uint64_t v;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n': w.name = optarg; break;
        case 'a': w.alert_command = optarg; break;
        case 'b':
            if (attest_parse_u64(optarg, 1000, &v) < 0 || v == 0)
                return tm_err_set(err, EINVAL, "--batch: 1 to 1000");
            w.batch = (int)v;
            break;
        case 'p':
            if (attest_parse_u64(optarg, 60000, &v) < 0 || v == 0)
                return tm_err_set(err, EINVAL, "--poll-ms: 1 to 60000");
            w.poll_ms = (int)v;
            break;
        case 'o': w.once = true; break;
        case 't':
            if (attest_parse_u64(optarg, 64, &threads) < 0 || threads == 0)
                return tm_err_set(err, EINVAL, "--threads: 1 to 64");
            break;
        default: return tm_err_set(err, EINVAL, "worker: unknown option");
        }
    }
    if (strlen(w.name) > 100)
        return tm_err_set(err, EINVAL, "--name: at most 100 bytes");
    log_info("worker %s started", w.name);
    if (threads == 1)
        return fleet_worker_run(c, &w, &stop, err);
    /* Each thread is a worker of its own (NAME.1, NAME.2, ...) with its own connection: the
     * database sees them as separate workers, and their claims exclude each other. */
    struct worker_thread *ts = calloc(threads, sizeof(*ts));
    if (!ts)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t started = 0;
    for (; started < threads; started++) {
        struct worker_thread *t = &ts[started];
        snprintf(t->name, sizeof(t->name), "%s.%zu", w.name, started + 1);
        t->conninfo = conninfo;
        t->o = w;
        t->o.name = t->name;
        t->o.no_sweep = started > 0; /* one sweep a second per process is enough */
        if (pthread_create(&t->t, NULL, worker_thread, t) != 0) {
            stop = 1;
            break;
        }
    }
    int r = 0;
    for (size_t i = 0; i < started; i++) {
        pthread_join(ts[i].t, NULL);
        if (ts[i].r < 0 && r == 0) {
            r = ts[i].r;
            *err = ts[i].err;
        }
    }
    free(ts);
    return r;
}

static int cmd_push(int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"attest", required_argument, NULL, 'a'},
                                         {"tls-ca", required_argument, NULL, 'C'},
                                         {"tls-cert", required_argument, NULL, 'c'},
                                         {"control", required_argument, NULL, 'S'},
                                         {0}};
    const char *server = NULL, *device = NULL, *attest = NULL;
    struct fleet_push_tls tls = {.control_socket = getenv("TRUSTME_SOCKET")};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 's')
            server = optarg;
        else if (o == 'd')
            device = optarg;
        else if (o == 'a')
            attest = optarg;
        else if (o == 'C')
            tls.ca_file = optarg;
        else if (o == 'c')
            tls.cert_file = optarg;
        else if (o == 'S')
            tls.control_socket = optarg;
        else
            return tm_err_set(err, EINVAL, "push: unknown option");
    }
    if (!server || !device || !attest || optind != argc)
        return tm_err_set(err, EINVAL,
                          "push --server HOST:PORT --device NAME --attest HOST:PORT [--tls-ca CA.pem "
                          "[--tls-cert CERT.pem [--control SOCKET]]]");
    if (tls.cert_file && !tls.ca_file)
        return tm_err_set(err, EINVAL, "push: --tls-cert needs --tls-ca (the fleet's server CA)");
    if (!tls.control_socket || !*tls.control_socket)
        tls.control_socket = "/run/trustme/control.sock";
    _cleanup_free_ char *answer = NULL;
    int r = fleet_push_run(server, device, attest, &tls, 10000, &answer, err);
    if (answer)
        printf("%s\n", answer);
    return r;
}

static int cmd_attest_tls(int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"attest", required_argument, NULL, 'a'},
                                         {"tls-cert", required_argument, NULL, 'c'},
                                         {"control", required_argument, NULL, 'S'},
                                         {0}};
    struct fleet_attest_tls_opts o = {.control_socket = getenv("TRUSTME_SOCKET")};
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == 'l')
            o.listen = optarg;
        else if (opt == 'a')
            o.attest = optarg;
        else if (opt == 'c')
            o.cert_file = optarg;
        else if (opt == 'S')
            o.control_socket = optarg;
        else
            return tm_err_set(err, EINVAL, "attest-tls: unknown option");
    }
    if (!o.listen || !o.attest || !o.cert_file || optind != argc)
        return tm_err_set(err, EINVAL,
                          "attest-tls --listen HOST:PORT --attest HOST:PORT --tls-cert CERT.pem [--control SOCKET]");
    if (!o.control_socket || !*o.control_socket)
        o.control_socket = "/run/trustme/control.sock";
    return fleet_attest_tls_serve(&o, &stop, err);
}

static int cmd_serve(PGconn *c, const char *conninfo, int argc, char **argv, tm_err *err)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},         {"alert-command", required_argument, NULL, 'a'},
        {"tls-cert", required_argument, NULL, 'c'},       {"tls-key", required_argument, NULL, 'k'},
        {"client-ca", required_argument, NULL, 'C'},      {"viewer-ca", required_argument, NULL, 'V'},
        {"retention-days", required_argument, NULL, 'r'}, {0}};
    int retention = 30;
    const char *listen_on = "127.0.0.1:9510", *alert = NULL, *files[4] = {NULL, NULL, NULL, NULL};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'l')
            listen_on = optarg;
        else if (o == 'a')
            alert = optarg;
        else if (o == 'r') {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 36500)
                return tm_err_set(err, EINVAL, "serve: --retention-days 0..36500 (0: keep everything)");
            retention = (int)v;
        } else if (o == 'c' || o == 'k' || o == 'C' || o == 'V')
            files[o == 'c' ? 0 : o == 'k' ? 1 : o == 'C' ? 2 : 3] = optarg;
        else
            return tm_err_set(err, EINVAL, "serve: unknown option");
    }
    if (!files[0] != !files[1] || (files[2] && !files[0]) || (files[3] && !files[2]))
        return tm_err_set(err, EINVAL,
                          "serve: --tls-cert and --tls-key go together; --client-ca needs them, --viewer-ca "
                          "needs --client-ca");
    _cleanup_free_ char *cert = NULL, *key = NULL, *client_ca = NULL, *viewer_ca = NULL;
    char **pem[4] = {&cert, &key, &client_ca, &viewer_ca};
    for (int i = 0; i < 4; i++) {
        size_t len;
        int rr = files[i] ? read_file(files[i], VERIFY_PEM_MAX, pem[i], &len, err) : 0;
        if (rr < 0)
            return rr;
    }
    struct fleet_api_tls tls = {cert, key, client_ca, viewer_ca};
    char addr[64];
    const char *colon = strrchr(listen_on, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - listen_on) >= sizeof(addr) || attest_parse_u64(colon + 1, 65535, &port) < 0)
        return tm_err_set(err, EINVAL, "--listen: ADDR:PORT");
    snprintf(addr, sizeof(addr), "%.*s", (int)(colon - listen_on), listen_on);
    struct fleet_api *a = NULL;
    uint16_t bound = 0;
    int r = fleet_api_start(addr, (uint16_t)port, conninfo, alert, &tls, &a, &bound, err);
    if (r < 0)
        return r;
    /* The line the tests and scripts wait for: the port when 0 was asked for. */
    printf("listening on %s:%u\n", addr, bound);
    fflush(stdout);
    for (unsigned tick = 0; !stop; tick++) {
        tm_err serr = {0};
        if (fleet_sweep(c, alert, &serr) < 0)
            log_warn("sweep: %s", serr.msg);
        long nv = 0, na = 0;
        /* the retention, once a minute (and at start): any number of serve processes may */
        if (retention && tick % 60 == 0 && fleet_prune(c, retention, &nv, &na, &serr) < 0)
            log_warn("prune: %s", serr.msg);
        else if (nv || na)
            log_info("pruned %ld verdicts and %ld alerts older than %d days", nv, na, retention);
        sleep(1);
    }
    fleet_api_stop(a);
    return 0;
}

static int cmd_vtpm_key(PGconn *c, const char *device, const char *ek, const char *key, const char *certs, tm_err *err)
{
    _cleanup_free_ char *kt = NULL, *pem = NULL;
    size_t klen = 0, plen = 0;
    int r = read_file(key, 1 << 16, &kt, &klen, err);
    if (r == 0)
        r = read_file(certs, VERIFY_PEM_MAX, &pem, &plen, err);
    return r < 0 ? r : fleet_vtpm_key(c, device, ek, kt, klen, pem, plen, err);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *conninfo = getenv("TRUSTME_FLEET_DB");
    int o;
    tm_log_init("trustme-fleet", false, TM_LOG_INFO);
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (o == 'd')
            conninfo = optarg;
        else if (o == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    argc -= optind;
    argv += optind;
    optind = 0; /* 0: GNU getopt reinitialises (the first scan stopped at COMMAND, "+") */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Alert commands are not waited for (alerts.c). */
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    tm_err err = {0};
    int r;
    /* The device's side: no database. */
    if (strcmp(cmd, "push") == 0) {
        r = cmd_push(argc, argv, &err);
        return r < 0 ? fail(&err, r) : r;
    }
    if (strcmp(cmd, "attest-tls") == 0) {
        r = cmd_attest_tls(argc, argv, &err);
        return r < 0 ? fail(&err, r) : r;
    }
    _cleanup_pq_ PGconn *c = NULL;
    r = fleet_db_connect(conninfo, &c, &err);
    if (r < 0)
        return fail(&err, r);
    if (strcmp(cmd, "migrate") == 0) {
        int v = 0;
        r = fleet_db_migrate(c, &v, &err);
        if (r == 0)
            printf("schema version %d\n", v);
        return r < 0 ? fail(&err, r) : 0;
    }
    if ((r = fleet_db_check_version(c, &err)) < 0)
        return fail(&err, r);
    if (strcmp(cmd, "trust") == 0)
        r = cmd_trust(c, argc, argv, &err);
    else if (strcmp(cmd, "group") == 0)
        r = cmd_group(c, argc, argv, &err);
    else if (strcmp(cmd, "enroll") == 0)
        r = cmd_enroll(c, argc, argv, &err);
    else if (strcmp(cmd, "remove") == 0 && argc == 2)
        r = fleet_device_remove(c, argv[1], &err);
    else if (strcmp(cmd, "devices") == 0 && argc == 1)
        r = print_query(c,
                        "SELECT coalesce(json_agg(x ORDER BY x.name), '[]') FROM (SELECT d.name, g.name AS group, "
                        "d.address, d.subject, d.last_seen, d.last_trusted, d.last_failed_check FROM devices d "
                        "JOIN device_groups g ON g.id = d.group_id) x",
                        NULL, &err);
    else if (strcmp(cmd, "groups") == 0 && argc == 1)
        r = print_query(c,
                        "SELECT coalesce(json_agg(x ORDER BY x.name), '[]') FROM (SELECT name, interval_s, pcrs, "
                        "pin_ak, min_version, rim_version FROM device_groups) x",
                        NULL, &err);
    else if (strcmp(cmd, "alerts") == 0 && argc == 1)
        r = print_query(c,
                        "SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (SELECT id, at, kind, device, "
                        "message FROM alerts) x",
                        NULL, &err);
    else if (strcmp(cmd, "history") == 0 && argc == 2)
        r = print_query(c,
                        "SELECT coalesce(json_agg(x ORDER BY x.id DESC), '[]') FROM (SELECT v.id, v.at, v.mode, "
                        "v.trusted, v.failed_check, v.attempt, v.latency_ms, v.worker FROM verdicts v JOIN devices d "
                        "ON d.id = v.device_id WHERE d.name = $1) x",
                        argv[1], &err);
    else if (strcmp(cmd, "worker") == 0)
        r = cmd_worker(c, conninfo, argc, argv, &err);
    else if (strcmp(cmd, "serve") == 0)
        r = cmd_serve(c, conninfo, argc, argv, &err);
    else if (strcmp(cmd, "vtpm-enroll") == 0 && argc == 4)
        r = fleet_vtpm_enroll(c, argv[1], argv[2], argv[3], &err);
    else if (strcmp(cmd, "vtpm-key") == 0 && argc == 7 && strcmp(argv[3], "--key") == 0 &&
             strcmp(argv[5], "--ek-cert") == 0)
        r = cmd_vtpm_key(c, argv[1], argv[2], argv[4], argv[6], &err);
    else if (strcmp(cmd, "vtpms") == 0 && argc == 1)
        r = print_query(c, FLEET_VTPMS_SQL, NULL, &err);
    else if (strcmp(cmd, "stats") == 0 && argc == 1)
        r = print_query(c, FLEET_STATS_SQL, NULL, &err);
    else if (strcmp(cmd, "prune") == 0 && argc == 3 && strcmp(argv[1], "--days") == 0) {
        long nv = 0, na = 0;
        r = fleet_prune(c, atoi(argv[2]), &nv, &na, &err);
        if (r == 0)
            printf("{\"deleted_verdicts\": %ld, \"deleted_alerts\": %ld}\n", nv, na);
    } else if (strcmp(cmd, "sweep") == 0 && (argc == 1 || (argc == 3 && strcmp(argv[1], "--alert-command") == 0)))
        r = fleet_sweep(c, argc == 3 ? argv[2] : NULL, &err);
    else {
        fputs(usage, stderr);
        return 2;
    }
    return r < 0 ? fail(&err, r) : 0;
}
