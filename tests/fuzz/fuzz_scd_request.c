/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-scd's request path end to end: the input is the payload of one packet from trustmed
 * (the fuzzer adds the 4-byte frame header), which server_run receives, decodes, dispatches
 * against a real token state directory and answers, as trustme-scd does on fd 3.
 *
 * Each run has its own socketpair: first the device secret is sent, as trustmed does once the
 * TPM service unsealed it (without it scd refuses every key request), then the packet; our end
 * is shut for writing, and server_run serves the two packets and returns at the end of the
 * stream. This is the loop of trustme-scd unchanged, with the token_ctx of its main
 * (caller_counts: trustmed counts PIN and PUK attempts), so server.c needs no seam; its Ready
 * message and the device secret's Ok cost two small packets. Then the answers are checked:
 * Ready, Ok, then exactly one response, carrying the request's id, of the kind the request calls
 * for, with a key only for the right PIN of a token that may be used and only when the request
 * carried the digest of the token's files that trustmed anchored (scd_fixture.h: fx_anchor).
 * Beyond what ASan sees, a run must not leave an fd open or a secret (locked memory) mapped.
 *
 * The state directory (scd_fixture.h) is put back before every run. Wrong PINs are counted on
 * disk and Wipe removes tokens: carried over, they would leave every token locked or gone within
 * seconds, so most inputs would stop at the first check, and a crash would depend on the runs
 * before it, which libFuzzer cannot replay. The reset is a few small writes on tmpfs, next to
 * one scrypt of 1 MiB for every input that gets as far as a PIN. Locked and blocked tokens are
 * in the fixture instead. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "packet.h"
#include "proto.h"
#include "scd.pb-c.h"
#include "scd_fixture.h"
#include "server.h"

typedef Trustme__Scd__Request Request;
typedef Trustme__Scd__Response Response;

#define RESPONSE_MAX (4u * 1024 * 1024) /* server.c's SCD_FRAME_MAX */
/* One SOCK_SEQPACKET packet must fit the socket's send buffer (~200 KiB by default). */
#define INPUT_MAX (128u * 1024)
/* Pairing runs scrypt with the N trustmed asks for, up to 2^20 (1 GiB, seconds): a cost the
 * design accepts from trustmed, but one that would starve the fuzzer. */
#define FUZZ_KDF_N_MAX 4096u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *state_dir;
static struct token_ctx ctx;
static int decode_fds[2]; /* a socketpair of our own, to decode requests as scd does */
static uint8_t *secret_frame; /* the DeviceSecret request sent before every input */
static size_t secret_frame_len;
/* The digests trustmed anchored for the soft tokens' files, taken from the fixture before any
 * run (a run may change the files). */
static const char *const soft_uuids[] = {FX_UUID_SOFT, FX_UUID_LASTTRY, FX_UUID_LOCKED, FX_UUID_BLOCKED, FX_UUID_V2};
static uint8_t soft_anchors[5][32];
static bool verbose; /* $FUZZ_SCD_VERBOSE: print each answer (to check the seeds) */

#define fail(...)                                          \
    do {                                                   \
        fprintf(stderr, "fuzz_scd_request: " __VA_ARGS__); \
        fputc('\n', stderr);                               \
        abort();                                           \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* As trustme-scd's main does. */
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    verbose = getenv("FUZZ_SCD_VERBOSE") != NULL;
    if (tm_packet_socketpair(decode_fds) < 0)
        fail("socketpair: %s", strerror(errno));
    state_dir = fx_state_new();
    /* As trustme-scd's main: trustmed counts the attempts. */
    ctx = (struct token_ctx){.state_dir = state_dir, .soft_kdf_n = FX_KDF_N, .caller_counts = true};
    Trustme__Scd__DeviceSecret ds = TRUSTME__SCD__DEVICE_SECRET__INIT;
    ds.has_secret = true;
    ds.secret = (ProtobufCBinaryData){.len = sizeof(fx_device_secret_bytes), .data = (uint8_t *)fx_device_secret_bytes};
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.has_version = rq.has_id = true;
    rq.version = TM_PROTOCOL_VERSION;
    rq.id = UINT64_MAX;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET;
    rq.device_secret = &ds;
    size_t len = trustme__scd__request__get_packed_size(&rq);
    if (!(secret_frame = malloc(len + 4)))
        abort();
    secret_frame[0] = (uint8_t)(len >> 24);
    secret_frame[1] = (uint8_t)(len >> 16);
    secret_frame[2] = (uint8_t)(len >> 8);
    secret_frame[3] = (uint8_t)len;
    trustme__scd__request__pack(&rq, secret_frame + 4);
    secret_frame_len = len + 4;
    for (size_t i = 0; i < sizeof(soft_uuids) / sizeof(soft_uuids[0]); i++)
        fx_anchor(state_dir, soft_uuids[i], soft_anchors[i]);
    return 0;
}

static bool bytes_are(const ProtobufCBinaryData *b, bool present, const char *s)
{
    return present && b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static bool uuid_is(const char *uuid, const char *want)
{
    return uuid && strcmp(uuid, want) == 0;
}

/* The tokens that open with FX_PIN (and FX_PUK): every soft token of the fixture, as scd
 * ignores the stale tries files (the caller counts). */
static bool pin_usable(const char *uuid)
{
    return uuid_is(uuid, FX_UUID_SOFT) || uuid_is(uuid, FX_UUID_LASTTRY) || uuid_is(uuid, FX_UUID_LOCKED) ||
           uuid_is(uuid, FX_UUID_BLOCKED) || uuid_is(uuid, FX_UUID_V2);
}

/* Whether the request carried the digest trustmed anchored for uuid's token files. */
static bool anchored(const char *uuid, const ProtobufCBinaryData *anchor, bool present)
{
    if (!present || anchor->len != 32)
        return false;
    for (size_t i = 0; i < sizeof(soft_uuids) / sizeof(soft_uuids[0]); i++)
        if (uuid_is(uuid, soft_uuids[i]))
            return memcmp(anchor->data, soft_anchors[i], 32) == 0;
    return false;
}

static bool has_token(const char *uuid)
{
    static const char *const paired[] = {FX_UUID_SOFT, FX_UUID_LASTTRY, FX_UUID_LOCKED, FX_UUID_BLOCKED,
                                         FX_UUID_P11,  FX_UUID_BADREC,  FX_UUID_V2};
    for (size_t i = 0; i < sizeof(paired) / sizeof(paired[0]); i++)
        if (uuid_is(uuid, paired[i]))
            return true;
    return false;
}

static void check_status(const char *uuid, const Trustme__Scd__TokenStatus *st)
{
    bool soft = st->type == TRUSTME__SCD__TOKEN_TYPE__TOKEN_SOFT;
    bool ok;
    /* The caller's count holds: scd reports every token unlocked with all tries left, whatever
     * a tries file says; trustmed overrides that with its own count. */
    if (pin_usable(uuid))
        ok = st->paired && soft && !st->locked && !st->blocked && st->pin_tries_left == 3 && st->puk_tries_left == 10;
    else if (uuid_is(uuid, FX_UUID_P11))
        ok = st->paired && st->type == TRUSTME__SCD__TOKEN_TYPE__TOKEN_PKCS11;
    else
        ok = !st->paired && st->type == TRUSTME__SCD__TOKEN_TYPE__TOKEN_NONE;
    if (!ok)
        fail("wrong status for %s: paired %d type %d locked %d blocked %d pin left %u puk left %u", uuid, st->paired,
             st->type, st->locked, st->blocked, st->pin_tries_left, st->puk_tries_left);
}

/* A re-keyed token's answer: the pending digest, and the key re-wrapped only when a blob came
 * (the fixture's blobs hold fx_key_bytes under its KEK; the new wrap is under a new KEK). */
static void check_rekeyed(const Trustme__Scd__Rekeyed *k, bool had_blob)
{
    if (!k->has_pending_sha256 || k->pending_sha256.len != 32 || k->has_wrapped != had_blob ||
        (had_blob && k->wrapped.len != KEYWRAP_BLOB_LEN))
        fail("malformed re-key answer");
}

/* What the response to a decoded request of the current version may be. An Error is always
 * allowed; anything else only where the request and the fixture allow it. */
static void check_answer(const Request *rq, const Response *resp)
{
    Trustme__Scd__Response__BodyCase got = resp->body_case;
    if (got == TRUSTME__SCD__RESPONSE__BODY_ERROR) {
        if (!resp->error->has_code || resp->error->code <= 0 || !resp->error->message || !resp->error->message[0])
            fail("error without code or message");
        if (rq->body_case == TRUSTME__SCD__REQUEST__BODY__NOT_SET && resp->error->code != EOPNOTSUPP)
            fail("no body answered with code %d", resp->error->code);
        return;
    }
    switch (rq->body_case) {
    case TRUSTME__SCD__REQUEST__BODY_PAIR:
        if (got != TRUSTME__SCD__RESPONSE__BODY_OK || has_token(rq->pair->uuid))
            fail("pair answered with body %d", got);
        return;
    case TRUSTME__SCD__REQUEST__BODY_NEW_KEY:
    case TRUSTME__SCD__REQUEST__BODY_UNWRAP: {
        bool new_key = rq->body_case == TRUSTME__SCD__REQUEST__BODY_NEW_KEY;
        const char *uuid = new_key ? rq->new_key->uuid : rq->unwrap->uuid;
        bool right_pin = new_key ? bytes_are(&rq->new_key->pin, rq->new_key->has_pin, FX_PIN)
                                 : bytes_are(&rq->unwrap->pin, rq->unwrap->has_pin, FX_PIN);
        if (got != TRUSTME__SCD__RESPONSE__BODY_KEY)
            fail("key request answered with body %d", got);
        if (!pin_usable(uuid) || !right_pin)
            fail("a key for %s without its PIN", uuid);
        if (!anchored(uuid, &rq->token_anchor, rq->has_token_anchor))
            fail("a key for %s without the anchored digest of its files", uuid);
        const Trustme__Scd__Key *k = resp->key;
        if (!k->has_key || k->key.len != 64 || k->has_wrapped != new_key ||
            (new_key && k->wrapped.len != KEYWRAP_BLOB_LEN))
            fail("malformed key answer");
        /* The only key ever wrapped under the fixture's KEK is fx_key_bytes. */
        if (!new_key && memcmp(k->key.data, fx_key_bytes, 64) != 0)
            fail("unwrap returned another key than the blob holds");
        return;
    }
    case TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN:
        if (got != TRUSTME__SCD__RESPONSE__BODY_REKEYED || !pin_usable(rq->change_pin->uuid) ||
            !bytes_are(&rq->change_pin->old_pin, rq->change_pin->has_old_pin, FX_PIN) ||
            !anchored(rq->change_pin->uuid, &rq->token_anchor, rq->has_token_anchor))
            fail("change-pin succeeded without the PIN or the anchored digest");
        check_rekeyed(resp->rekeyed, rq->change_pin->has_wrapped);
        return;
    case TRUSTME__SCD__REQUEST__BODY_UNLOCK:
        if (got != TRUSTME__SCD__RESPONSE__BODY_REKEYED || !pin_usable(rq->unlock->uuid) ||
            !bytes_are(&rq->unlock->puk, rq->unlock->has_puk, FX_PUK) ||
            !anchored(rq->unlock->uuid, &rq->token_anchor, rq->has_token_anchor))
            fail("unlock succeeded without the PUK or the anchored digest");
        check_rekeyed(resp->rekeyed, rq->unlock->has_wrapped);
        return;
    case TRUSTME__SCD__REQUEST__BODY_TOKEN_COMMIT: {
        /* No pending file in the fixture: settled only when the files are one of the two
         * generations named (a soft token's are known here; others' digests are not kept). */
        const Trustme__Scd__TokenCommit *tc = rq->token_commit;
        bool soft = pin_usable(tc->uuid);
        if (got != TRUSTME__SCD__RESPONSE__BODY_OK || !rq->has_token_anchor || !tc->has_pending_sha256 ||
            tc->pending_sha256.len != 32 ||
            (soft && !anchored(tc->uuid, &rq->token_anchor, true) && !anchored(tc->uuid, &tc->pending_sha256, true)))
            fail("commit settled files that are neither anchored generation");
        return;
    }
    case TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET: {
        const Trustme__Scd__DeviceSecret *ds = rq->device_secret;
        if (got != TRUSTME__SCD__RESPONSE__BODY_OK ||
            !(ds->has_secret ? ds->secret.len == 32 : ds->unavailable && ds->unavailable[0]))
            fail("device secret answered with body %d", got);
        return;
    }
    case TRUSTME__SCD__REQUEST__BODY_WIPE: {
        const char *uuid = rq->wipe->uuid;
        if (got != TRUSTME__SCD__RESPONSE__BODY_OK)
            fail("wipe answered with body %d", got);
        /* A PKCS#11 token's key object stays when there is no PIN (and with one, the missing
         * module is an error); an unreadable record may have named one. */
        bool left = uuid_is(uuid, FX_UUID_P11) || uuid_is(uuid, FX_UUID_BADREC);
        if (resp->ok->key_left_on_token != left)
            fail("wipe of %s: key_left_on_token %d", uuid, resp->ok->key_left_on_token);
        return;
    }
    case TRUSTME__SCD__REQUEST__BODY_STATUS:
        if (got != TRUSTME__SCD__RESPONSE__BODY_STATUS)
            fail("status answered with body %d", got);
        check_status(rq->status->uuid, resp->status);
        return;
    case TRUSTME__SCD__REQUEST__BODY_VERIFY:
        if (got != TRUSTME__SCD__RESPONSE__BODY_VERIFY || !resp->verify->signer || !resp->verify->anchor ||
            !resp->verify->anchor_sha256 || strlen(resp->verify->anchor_sha256) != 64 || resp->verify->chain_length < 1)
            fail("malformed verify answer");
        return;
    default: fail("request without a body answered with body %d", got);
    }
}

/* The next packet on fd as a Response; the packet keeps it. */
static const Response *next_response(int fd, struct tm_packet *pkt)
{
    int r = tm_packet_recv(fd, RESPONSE_MAX, pkt);
    if (r != 1)
        fail("expected a response packet, got %d (%s)", r, r < 0 ? strerror(-r) : "end of stream");
    const Response *resp = (const Response *)tm_packet_unpack(&trustme__scd__response__descriptor, pkt);
    if (!resp)
        fail("scd sent a response that does not decode");
    if (!resp->has_version || resp->version != TM_PROTOCOL_VERSION || !resp->has_id)
        fail("response without version or id");
    return resp;
}

static bool too_slow(const Request *rq)
{
    return rq->body_case == TRUSTME__SCD__REQUEST__BODY_PAIR && rq->pair->spec &&
           rq->pair->spec->soft_kdf_n > FUZZ_KDF_N_MAX;
}

/* The request as scd decodes it: received and unpacked by packet.c, whose small packets unpack
 * into an arena of bounded size (a message may decode on the heap and still not fit there). */
static const Request *decode(const uint8_t *frame, size_t len, struct tm_packet *pkt)
{
    if (send(decode_fds[0], frame, len, MSG_NOSIGNAL) != (ssize_t)len)
        fail("send: %s", strerror(errno));
    int r = tm_packet_recv(decode_fds[1], RESPONSE_MAX, pkt);
    if (r != 1)
        fail("cannot receive our own packet: %d", r);
    return (const Request *)tm_packet_unpack(&trustme__scd__request__descriptor, pkt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return -1;
    uint8_t *frame = malloc(size + 4);
    if (!frame)
        abort();
    frame[0] = (uint8_t)(size >> 24);
    frame[1] = (uint8_t)(size >> 16);
    frame[2] = (uint8_t)(size >> 8);
    frame[3] = (uint8_t)size;
    if (size)
        memcpy(frame + 4, data, size);
    struct tm_packet rq_pkt;
    const Request *rq = decode(frame, size + 4, &rq_pkt);
    if (rq && too_slow(rq)) {
        tm_packet_free(&rq_pkt);
        free(frame);
        return -1;
    }
    fx_state_reset(state_dir);
    struct fx_leaks leaks;
    fx_leaks_begin(&leaks, true);

    int fds[2];
    if (tm_packet_socketpair(fds) < 0)
        fail("socketpair: %s", strerror(errno));
    if (send(fds[0], secret_frame, secret_frame_len, MSG_NOSIGNAL) != (ssize_t)secret_frame_len ||
        send(fds[0], frame, size + 4, MSG_NOSIGNAL) != (ssize_t)(size + 4))
        fail("send: %s", strerror(errno));
    free(frame);
    if (shutdown(fds[0], SHUT_WR) < 0)
        fail("shutdown: %s", strerror(errno));

    int r = server_run(fds[1], &ctx);
    if (r != 0)
        fail("server_run returned %d", r);
    close(fds[1]);

    struct tm_packet ready_pkt, pkt;
    const Response *ready = next_response(fds[0], &ready_pkt);
    if (ready->body_case != TRUSTME__SCD__RESPONSE__BODY_READY || ready->id != 0)
        fail("the first message is not Ready");
    struct tm_packet ds_pkt;
    const Response *ds_ok = next_response(fds[0], &ds_pkt);
    if (ds_ok->body_case != TRUSTME__SCD__RESPONSE__BODY_OK || ds_ok->id != UINT64_MAX)
        fail("the device secret was not taken");
    tm_packet_free(&ds_pkt);
    const Response *resp = next_response(fds[0], &pkt);
    bool error = resp->body_case == TRUSTME__SCD__RESPONSE__BODY_ERROR;
    if (verbose)
        fprintf(stderr, "request body %d: answer body %d%s%s\n", rq ? (int)rq->body_case : -1, (int)resp->body_case,
                error ? ": " : "", error ? resp->error->message : "");
    uint64_t want_id = rq && rq->has_id ? rq->id : 0;
    if (resp->id != want_id)
        fail("response id %llu, request id %llu", (unsigned long long)resp->id, (unsigned long long)want_id);
    if (!rq) {
        if (!error || resp->error->code != EBADMSG)
            fail("a request that does not decode was answered with body %d", resp->body_case);
    } else if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION) {
        if (!error || resp->error->code != EPROTO)
            fail("a request of version %u was answered with body %d", rq->version, resp->body_case);
    } else {
        check_answer(rq, resp);
    }
    struct tm_packet end;
    if ((r = tm_packet_recv(fds[0], RESPONSE_MAX, &end)) != 0)
        fail("more than one response to one request (%d)", r);
    tm_packet_free(&pkt);
    tm_packet_free(&ready_pkt);
    close(fds[0]);

    fx_leaks_check(&leaks);
    tm_packet_free(&rq_pkt);
    return 0;
}
