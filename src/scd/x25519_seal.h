/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Sealing a small secret to an X25519 public key (ECIES-style), for the PUK side of a soft token
 * (token_soft.h, format 3): whoever holds only the public key can seal a new KEK for the PUK,
 * which a PIN change needs, while only the PUK opens it.
 *
 * A box is an ephemeral public key, a nonce and AES-256-GCM ciphertext + tag:
 *   shared = X25519(ephemeral private, recipient public)   (an all-zero result is refused)
 *   key    = HKDF-SHA256(ikm = shared || ephemeral public || recipient public,
 *                        salt = the device secret (NULL: none, unit tests only),
 *                        info = "trustme x25519 seal v1")
 *   ct     = AES-256-GCM(key, nonce, aad, plaintext)
 * The ephemeral key is new for every box, so one key never encrypts twice. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define X25519_KEY_LEN 32
#define X25519_SEAL_PT_LEN 32 /* a KEK */

struct x25519_box {
    uint8_t epk[X25519_KEY_LEN];
    uint8_t nonce[12];
    uint8_t ct[X25519_SEAL_PT_LEN + 16];
};

/* A new key pair: the private key in a secret, the public key in pub. */
int x25519_keygen(struct secret **ret_priv, uint8_t pub[X25519_KEY_LEN], tm_err *err);
/* Seal pt (X25519_SEAL_PT_LEN bytes) to pub. */
int x25519_seal(const uint8_t pub[X25519_KEY_LEN], const struct secret *device_secret, const char *aad,
                const struct secret *pt, struct x25519_box *box, tm_err *err);
/* Open a box with the private key. -EBADMSG when it does not authenticate (another key, an
 * altered box or AAD, another device secret). ret_pt (X25519_SEAL_PT_LEN bytes) only on success. */
int x25519_open(const struct secret *priv, const struct secret *device_secret, const char *aad,
                const struct x25519_box *box, struct secret **ret_pt, tm_err *err);
