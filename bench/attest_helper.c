/* SPDX-License-Identifier: GPL-2.0-or-later */
/* For bench/attestation.sh: the attestation costs measured in-process, without a process start.
 *
 *   ANCHORS.pem holds the roots of both roles (AK certificates, reference values' signer),
 *   CAS.pem the Device CA and the CA of the reference values' signer: both are used as the pins
 *   of either role, which costs what trustme-verify's separate options cost.
 *
 *   attest_helper roundtrip HOST:PORT ANCHORS.pem CAS.pem CRLS.pem REFS.json RUNS
 *       RUNS times what trustme-verify does after its start: a fresh nonce, attest_fetch (connect,
 *       request, tpmd quotes, response read) and attest_check_response (every check, with the
 *       CRLs), the reference values loaded once before the loop. One line per run:
 *       "FETCH_MS CHECK_MS TOTAL_MS EVENTS TRUSTED". Exit 1 if any run is not trusted.
 *
 *   attest_helper verify RESPONSE NONCE_HEX ANCHORS.pem CAS.pem CRLS.pem REFS.json SECONDS
 *       bench/verify_helper's first mode (reference values loaded once) with the CRLs, as
 *       trustme-verify runs with --crl: verifications per second on a saved response.
 *       Prints "N_PER_S N SECONDS EVENTS N_PER_CPU_S" (the last per second of this process's
 *       CPU time). Exit 1 unless trusted.
 *
 *   attest_helper measure TPMD DATA_DIR RUN_DIR USER RUNS
 *       Starts trustme-tpmd as USER (its dirs must be USER's) with a SOCK_SEQPACKET socketpair as
 *       fd 3, as trustmed does, with its embedded swtpm, and times Measure requests round trip
 *       (send until the answer is read). Per run, in turn: a batch of 1 new event, of 3 (guestos.json,
 *       one image, the container config), of 4 (two images), and the 4 of that batch again
 *       (already logged: skipped, what starting the same container again costs). New events have
 *       random hashes, so each is logged and extended. Then RUNS AnchorRequests getting two
 *       names (what a start on a GuestOS sends besides its Measure: its GuestOS's and its
 *       config's anchored versions, read from tpmd's memory; kind "counter", after the per-name
 *       NV counters it replaced). One line per request: "KIND MS ADDED SKIPPED"
 *       (KIND new1, new3, new4, again4, counter). Stops tpmd with SIGTERM at the end (it stops
 *       its swtpm).
 *
 *   attest_helper extend TCTI RUNS
 *       Bare Esys_PCR_Extend of PCR 16 (SHA-256 bank) through TCTI, one line per call: "MS".
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "attest_check.h"
#include "client.h"
#include "fileio.h"
#include "tpmd.pb-c.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fill_random(void *p, size_t n)
{
    if (getrandom(p, n, 0) != (ssize_t)n) {
        perror("getrandom");
        exit(1);
    }
}

/* The trust inputs of both subcommands: anchors, CA pins, CRLs, reference values. */
struct trust {
    char *anchors, *crls;
    size_t anchors_len, crls_len;
    struct ca_pins cas;
    struct refvalues *refs;
};

static int trust_load(const char *anchors, const char *cas, const char *crls, const char *refs, struct trust *t,
                      tm_err *err)
{
    struct refvalues_files rf;
    char *cas_pem;
    size_t cas_len;
    int r;
    if ((r = read_file(anchors, VERIFY_PEM_MAX, &t->anchors, &t->anchors_len, err)) < 0 ||
        (r = read_file(cas, VERIFY_PEM_MAX, &cas_pem, &cas_len, err)) < 0 ||
        (r = ca_pins_parse(cas_pem, cas_len, cas, &t->cas, err)) < 0 ||
        (r = read_file(crls, VERIFY_PEM_MAX, &t->crls, &t->crls_len, err)) < 0 ||
        (r = refvalues_read_files(refs, &rf, err)) < 0)
        return r;
    struct refvalues_trust rt = {.anchors_pem = t->anchors,
                                 .anchors_len = t->anchors_len,
                                 .cas = &t->cas,
                                 .crls_pem = t->crls,
                                 .crls_len = t->crls_len};
    return refvalues_load(&rf, &rt, &t->refs, err);
}

static struct attest_policy trust_policy(const struct trust *t, const uint8_t *nonce)
{
    return (struct attest_policy){.nonce = nonce,
                                  .nonce_len = ATTEST_NONCE_LEN,
                                  .pcrs = t->refs->pcrs,
                                  .npcrs = t->refs->npcrs,
                                  .ak_anchors_pem = t->anchors,
                                  .ak_anchors_len = t->anchors_len,
                                  .device_cas = &t->cas,
                                  .crls_pem = t->crls,
                                  .crls_len = t->crls_len,
                                  .refs = t->refs};
}

/* ---- roundtrip ---------------------------------------------------------------------------- */

static int roundtrip(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: attest_helper roundtrip HOST:PORT ANCHORS.pem CAS.pem CRLS.pem REFS.json RUNS\n");
        return 2;
    }
    tm_err err = {0};
    struct trust t = {0};
    if (trust_load(argv[3], argv[4], argv[5], argv[6], &t, &err) < 0) {
        fprintf(stderr, "attest_helper: %s\n", err.msg);
        return 1;
    }
    int runs = atoi(argv[7]);
    bool all_trusted = true;
    for (int i = 0; i < runs; i++) {
        uint8_t nonce[ATTEST_NONCE_LEN];
        uint64_t id;
        fill_random(nonce, sizeof(nonce));
        fill_random(&id, sizeof(id));
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        double t0 = now_ms();
        if (attest_fetch(argv[2], 10000, id, nonce, sizeof(nonce), t.refs->pcrs, t.refs->npcrs, &resp, &resp_len,
                         &err) < 0) {
            fprintf(stderr, "attest_helper: %s\n", err.msg);
            return 1;
        }
        double t1 = now_ms();
        struct attest_policy pol = trust_policy(&t, nonce);
        struct attest_report rep;
        if (attest_check_response(resp, resp_len, &pol, &rep, &err) < 0) {
            fprintf(stderr, "attest_helper: %s\n", err.msg);
            return 1;
        }
        double t2 = now_ms();
        printf("%.4f %.4f %.4f %zu %s\n", t1 - t0, t2 - t1, t2 - t0, rep.events, rep.trusted ? "trusted" : "UNTRUSTED");
        if (!rep.trusted) {
            attest_report_print(stderr, &rep);
            all_trusted = false;
        }
        free(resp);
    }
    refvalues_free(t.refs);
    return all_trusted ? 0 : 1;
}

static int verify(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr,
                "usage: attest_helper verify RESPONSE NONCE_HEX ANCHORS.pem CAS.pem CRLS.pem REFS.json SECONDS\n");
        return 2;
    }
    tm_err err = {0};
    char *resp;
    size_t resp_len;
    struct trust t = {0};
    uint8_t nonce[ATTEST_NONCE_LEN];
    if (strlen(argv[3]) != 2 * sizeof(nonce)) {
        fprintf(stderr, "attest_helper: NONCE_HEX: expected %zu hex digits\n", 2 * sizeof(nonce));
        return 2;
    }
    for (size_t i = 0; i < sizeof(nonce); i++)
        sscanf(argv[3] + 2 * i, "%2hhx", &nonce[i]);
    if (read_file(argv[2], ATTEST_RESPONSE_MAX, &resp, &resp_len, &err) < 0 ||
        trust_load(argv[4], argv[5], argv[6], argv[7], &t, &err) < 0) {
        fprintf(stderr, "attest_helper: %s\n", err.msg);
        return 1;
    }
    struct attest_policy pol = trust_policy(&t, nonce);
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double seconds = atof(argv[8]), start = now_ms(), elapsed;
    long n = 0;
    struct attest_report rep;
    do {
        if (attest_check_response((uint8_t *)resp, resp_len, &pol, &rep, &err) < 0 || !rep.trusted) {
            fprintf(stderr, "attest_helper: %s\n", rep.trusted ? err.msg : "untrusted");
            return 1;
        }
        n++;
    } while ((elapsed = (now_ms() - start) / 1e3) < seconds);
    /* The last field: per second of this process's CPU time (the core may be shared). */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("%.0f %ld %.2f %zu %.0f\n", (double)n / elapsed, n, elapsed, rep.events, (double)n / cpu);
    refvalues_free(t.refs);
    return 0;
}

/* ---- measure ------------------------------------------------------------------------------ */

static int tpmd_sock = -1;
static uint64_t next_id = 1;

static Trustme__Tpmd__Response *tpmd_recv(void)
{
    static uint8_t buf[1 << 20];
    ssize_t n = recv(tpmd_sock, buf, sizeof(buf), 0);
    if (n < 4) {
        fprintf(stderr, "attest_helper: tpmd: %s\n", n < 0 ? strerror(errno) : "connection closed");
        exit(1);
    }
    uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (len != (size_t)n - 4) {
        fprintf(stderr, "attest_helper: tpmd: bad frame\n");
        exit(1);
    }
    Trustme__Tpmd__Response *r = trustme__tpmd__response__unpack(NULL, len, buf + 4);
    if (!r) {
        fprintf(stderr, "attest_helper: tpmd: undecodable response\n");
        exit(1);
    }
    return r;
}

/* One request (version and id filled in here), timed from before the send until the answer
 * is decoded; exits unless the answer is of body want. */
static Trustme__Tpmd__Response *tpmd_call(Trustme__Tpmd__Request *rq, int want, double *ms)
{
    static uint8_t buf[1 << 16];
    rq->has_version = rq->has_id = true;
    rq->version = 1;
    rq->id = next_id++;
    double t0 = now_ms();
    size_t len = trustme__tpmd__request__pack(rq, buf + 4);
    buf[0] = (uint8_t)(len >> 24), buf[1] = (uint8_t)(len >> 16), buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    if (send(tpmd_sock, buf, len + 4, 0) != (ssize_t)(len + 4)) {
        perror("attest_helper: send to tpmd");
        exit(1);
    }
    Trustme__Tpmd__Response *r = tpmd_recv();
    *ms = now_ms() - t0;
    if (r->id != rq->id || (int)r->body_case != want) {
        fprintf(stderr, "attest_helper: request failed: %s\n",
                r->body_case == TRUSTME__TPMD__RESPONSE__BODY_ERROR && r->error->message ? r->error->message
                                                                                         : "unexpected answer");
        exit(1);
    }
    return r;
}

static double tpmd_measure(Trustme__Attest__Event **items, size_t n, unsigned *added, unsigned *skipped)
{
    Trustme__Tpmd__Measure m = TRUSTME__TPMD__MEASURE__INIT;
    m.items = items;
    m.n_items = n;
    Trustme__Tpmd__Request rq = TRUSTME__TPMD__REQUEST__INIT;
    rq.body_case = TRUSTME__TPMD__REQUEST__BODY_MEASURE;
    rq.measure = &m;
    double t;
    Trustme__Tpmd__Response *r = tpmd_call(&rq, TRUSTME__TPMD__RESPONSE__BODY_MEASURED, &t);
    *added = r->measured->added;
    *skipped = r->measured->skipped;
    trustme__tpmd__response__free_unpacked(r, NULL);
    return t;
}

/* What a start on a GuestOS sends besides its Measure (src/daemon/lifecycle/measure.c): an anchor get of
 * its GuestOS's and its config's entries (no NV access). */
static double tpmd_anchor_get(void)
{
    static const char *names[] = {"guestos/bench", "config/bench"};
    Trustme__Tpmd__AnchorRequest ar = TRUSTME__TPMD__ANCHOR_REQUEST__INIT;
    ar.n_get = 2;
    ar.get = (char **)names;
    Trustme__Tpmd__Request rq = TRUSTME__TPMD__REQUEST__INIT;
    rq.body_case = TRUSTME__TPMD__REQUEST__BODY_ANCHOR;
    rq.anchor = &ar;
    double t;
    Trustme__Tpmd__Response *r = tpmd_call(&rq, TRUSTME__TPMD__RESPONSE__BODY_ANCHOR, &t);
    trustme__tpmd__response__free_unpacked(r, NULL);
    return t;
}

static int measure(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: attest_helper measure TPMD DATA_DIR RUN_DIR USER RUNS\n");
        return 2;
    }
    struct passwd *pw = getpwnam(argv[5]);
    if (!pw) {
        fprintf(stderr, "attest_helper: no user %s\n", argv[5]);
        return 1;
    }
    int runs = atoi(argv[6]);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        if (dup2(sv[1], 3) < 0 || setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
            perror("attest_helper: tpmd child");
            _exit(127);
        }
        char *args[] = {"trustme-tpmd",     "--data-dir",  argv[3],       "--run-dir", argv[4],
                        "--attest-address", "127.0.0.1:0", "--log-level", "warn",      NULL};
        char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        execve(argv[2], args, envp);
        perror("attest_helper: exec tpmd");
        _exit(127);
    }
    close(sv[1]);
    tpmd_sock = sv[0];
    Trustme__Tpmd__Response *ready = tpmd_recv();
    if (ready->body_case != TRUSTME__TPMD__RESPONSE__BODY_READY) {
        fprintf(stderr, "attest_helper: tpmd did not send Ready\n");
        kill(pid, SIGTERM);
        return 1;
    }
    trustme__tpmd__response__free_unpacked(ready, NULL);

    /* A batch as a container start on a GuestOS sends it (src/daemon/lifecycle/measure.c): the GuestOS's
     * guestos.json, its images, the container's config; all on the runtime PCR (11). */
    static const char *const types[4] = {"guestos-config", "guestos-image", "container-config", "guestos-image"};
    Trustme__Attest__Event ev[4], *items[4];
    char names[4][64];
    uint8_t sha[4][32];
    for (int i = 0; i < runs; i++) {
        static const size_t sizes[3] = {1, 3, 4};
        static const char *const kinds[3] = {"new1", "new3", "new4"};
        for (int k = 0; k < 3; k++) {
            size_t n = sizes[k];
            /* order of a start: guestos.json, image(s), container config */
            const char *order[4];
            if (n == 1)
                order[0] = types[2];
            else if (n == 3)
                order[0] = types[0], order[1] = types[1], order[2] = types[2];
            else
                order[0] = types[0], order[1] = types[1], order[2] = types[3], order[3] = types[2];
            for (size_t j = 0; j < n; j++) {
                trustme__attest__event__init(&ev[j]);
                if (!strcmp(order[j], "guestos-config"))
                    snprintf(names[j], sizeof(names[j]), "bench%d-%d/guestos.json", k, i);
                else if (!strcmp(order[j], "guestos-image"))
                    snprintf(names[j], sizeof(names[j]), "bench%d-%d/%s.img", k, i, j == 1 ? "root" : "data");
                else
                    snprintf(names[j], sizeof(names[j]), "bench%d-%d", k, i);
                fill_random(sha[j], 32);
                ev[j].has_pcr = true;
                ev[j].pcr = 11;
                ev[j].type = (char *)order[j];
                ev[j].name = names[j];
                ev[j].has_sha256 = true;
                ev[j].sha256.data = sha[j];
                ev[j].sha256.len = 32;
                items[j] = &ev[j];
            }
            unsigned added, skipped;
            double t = tpmd_measure(items, n, &added, &skipped);
            printf("%s %.4f %u %u\n", kinds[k], t, added, skipped);
            if (n == 4) {
                t = tpmd_measure(items, n, &added, &skipped);
                printf("again4 %.4f %u %u\n", t, added, skipped);
            }
        }
    }
    for (int i = 0; i < runs; i++)
        printf("counter %.4f 0 0\n", tpmd_anchor_get());
    fflush(stdout);
    kill(pid, SIGTERM);
    close(tpmd_sock);
    int st;
    waitpid(pid, &st, 0);
    return 0;
}

/* ---- extend ------------------------------------------------------------------------------- */

static int extend(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: attest_helper extend TCTI RUNS\n");
        return 2;
    }
    TSS2_TCTI_CONTEXT *tcti = NULL;
    ESYS_CONTEXT *esys = NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(argv[2], &tcti);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_Initialize(&esys, tcti, NULL);
    if (rc == TSS2_RC_SUCCESS)
        rc = Esys_Startup(esys, TPM2_SU_CLEAR);
    if (rc != TSS2_RC_SUCCESS) {
        fprintf(stderr, "attest_helper: TPM %s: rc 0x%x\n", argv[2], rc);
        return 1;
    }
    int runs = atoi(argv[3]);
    TPML_DIGEST_VALUES v = {.count = 1};
    v.digests[0].hashAlg = TPM2_ALG_SHA256;
    for (int i = 0; i < runs; i++) {
        fill_random(v.digests[0].digest.sha256, 32);
        double t0 = now_ms();
        rc = Esys_PCR_Extend(esys, ESYS_TR_PCR16, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &v);
        double t = now_ms() - t0;
        if (rc != TSS2_RC_SUCCESS) {
            fprintf(stderr, "attest_helper: Esys_PCR_Extend: rc 0x%x\n", rc);
            return 1;
        }
        printf("%.4f\n", t);
    }
    Esys_Finalize(&esys);
    Tss2_TctiLdr_Finalize(&tcti);
    return 0;
}

int main(int argc, char **argv)
{
    setenv("TSS2_LOG", "all+NONE", 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && !strcmp(argv[1], "roundtrip"))
        return roundtrip(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "verify"))
        return verify(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "measure"))
        return measure(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "extend"))
        return extend(argc, argv);
    fprintf(stderr, "usage: attest_helper roundtrip|verify|measure|extend ... (see the source)\n");
    return 2;
}
