/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A token state directory with known contents, shared by the scd fuzzers and by gen_scd_seeds,
 * which writes their seeds: the seeds name these UUIDs and carry key blobs made with this KEK
 * and bound to this device secret, and the digest of the token's files that trustmed would have
 * anchored (fx_anchor), so Unwrap, ChangePin, Unlock and Wipe reach their real work, success
 * included.
 *
 * Every soft token here holds the same fixed KEK under FX_PIN and, through its PUK side, FX_PUK
 * (scrypt N = FX_KDF_N, slot keys HKDF-salted with fx_device_secret_bytes), written in the format
 * of token_soft.h (v3; FX_UUID_V2's in v2) with fixed salts, nonces and X25519 keys: the files,
 * their digests, and so the fuzzers, are the same in every run. token_pair would draw a random KEK, which no committed seed blob could match.
 *
 * trustme-scd leaves the counting of PIN and PUK attempts to trustmed (token_ctx.caller_counts),
 * so the .tries files of LASTTRY, LOCKED and BLOCKED are leftovers that scd must ignore: their
 * tokens open with FX_PIN and FX_PUK like FX_UUID_SOFT's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secmem.h"

#define FX_UUID_SOFT "5c0f7e1a-9b2d-4c3e-8f10-000000000001" /* soft, no failures */
#define FX_UUID_LASTTRY "5c0f7e1a-9b2d-4c3e-8f10-000000000002" /* soft, stale tries: 2 PINs */
#define FX_UUID_LOCKED "5c0f7e1a-9b2d-4c3e-8f10-000000000003" /* soft, stale tries: locked */
#define FX_UUID_BLOCKED "5c0f7e1a-9b2d-4c3e-8f10-000000000004" /* soft, stale tries: blocked */
#define FX_UUID_P11 "5c0f7e1a-9b2d-4c3e-8f10-000000000005" /* PKCS#11, module missing */
#define FX_UUID_BADREC "5c0f7e1a-9b2d-4c3e-8f10-000000000006" /* a record that does not parse */
#define FX_UUID_FREE "5c0f7e1a-9b2d-4c3e-8f10-000000000007" /* no token */
#define FX_UUID_V2 "5c0f7e1a-9b2d-4c3e-8f10-000000000008" /* soft, format 2 */
#define FX_PIN "1234"
#define FX_PUK "12345678"
#define FX_KDF_N 1024u
#define FX_P11_MODULE "/nonexistent/trustme-fuzz-pkcs11.so"

/* The KEK of every soft token of the fixture, and the container key the seed blobs wrap. */
extern const uint8_t fx_kek_bytes[32];
extern const uint8_t fx_key_bytes[64];
/* The device secret that device-bound seed blobs are bound to. */
extern const uint8_t fx_device_secret_bytes[32];

/* A secret holding bytes; aborts on failure (fixtures have no error path worth keeping). */
struct secret *fx_secret(const uint8_t *bytes, size_t len);

/* The soft token file of the fixture for uuid (format 3), NUL-terminated, into buf. Returns its
 * length. fx_soft_file_v2: the same token as an older trustme wrote it (format 2). */
size_t fx_soft_file(const char *uuid, char *buf, size_t size);
size_t fx_soft_file_v2(const char *uuid, char *buf, size_t size);

/* What ASan cannot see leak: fds, and secrets (secmem.h), which are mlock'ed mappings rather
 * than heap blocks. Taken around one run (libFuzzer opens fds of its own between runs: the
 * symbolizer's pipes, when it first prints a new function); fx_leaks_check aborts on a leak. */
struct fx_leaks {
    int free_fd; /* the lowest free fd */
    long locked_kb; /* VmLck, or -1: not checked */
};
/* secrets: check locked memory too (reading /proc/self/status costs ~20 us). */
void fx_leaks_begin(struct fx_leaks *l, bool secrets);
void fx_leaks_check(const struct fx_leaks *l);

/* Make a private state directory (under $TMPDIR, else /dev/shm, else /tmp) holding the fixture;
 * it lives as long as the process and is removed at exit. The files are computed once per
 * process and kept. Aborts on failure. */
char *fx_state_new(void);
/* Put the state directory back to the fixture: everything in tokens/ is replaced. */
void fx_state_reset(const char *dir);
/* The digest of uuid's token files in dir (token_files_digest) as trustmed anchors it and sends
 * it with every request that uses the token. Aborts on failure. */
void fx_anchor(const char *dir, const char *uuid, uint8_t out[32]);
