/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme CLI: what the verbs (verbs.h, one function each) share. */
#pragma once

#include <stdbool.h>

#include "args.h"
#include "client.h"

struct cli {
    const char *socket_path;
    bool json;
    char **argv; /* the command line as given (the parsers permute argv): crypto_verbs.c */
};

/* Connect to trustmed or print why not. */
int cli_connect(struct cli *cli, struct client *cl);
/* Connect, send req and wait for its final response. On failure the reason is printed and the
 * exit status (1) returned; on success 0, and the caller frees *ret. */
int cli_call(struct cli *cli, Trustme__Request *req, Trustme__Response **ret);
/* Fill req as a request of type body about container id (state, config, freeze, unfreeze,
 * remove); ref provides the storage. */
void container_request(Trustme__Request *req, Trustme__ContainerRef *ref, Trustme__Request__BodyCase body,
                       const char *id);
/* Print "trustme: <msg>" and return the exit status for a failed command. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *state_word(Trustme__ContainerState s);

/* A config file with its detached signature, if it has one (cmd_guestos.c). */
struct signed_config {
    char *json, *sig, *chain;
    size_t json_len, sig_len, chain_len;
};
int signed_config_read(const char *path, struct signed_config *sc);
void signed_config_free(struct signed_config *sc);
void signed_config_to_create(struct signed_config *sc, Trustme__CreateRequest *cr);

/* Tokens and PINs (cmd_token.c). */
struct secret;
bool info_encrypted(const Trustme__ContainerInfo *i);
/* The state of container name (a Response with a ContainerInfo), or the printed failure's status. */
int fetch_info(struct cli *cli, const char *name, Trustme__Response **ret);
/* Set the first PIN (and PUK) of info's token, prompting or reading pin_file. */
int pair_token(struct cli *cli, const Trustme__ContainerInfo *info, const char *pin_file);
/* The PIN a start of name needs, or NULL in *ret if it needs none. */
int start_pin(struct cli *cli, const char *name, const char *pin_file, bool stdin_busy, struct secret **ret);
/* Read the PIN of container name from pin_file, or ask for it (on the terminal when stdin_busy). */
int read_pin(const char *name, const char *pin_file, bool stdin_busy, struct secret **ret);
void set_start_pin(Trustme__StartRequest *sr, const struct secret *pin);
/* Relay stdio for request id until its exit status arrives; returns the exit status. With
 * pin_required not NULL, a refusal that asks for a PIN (Error.pin_required) is not printed: it
 * sets *pin_required and returns 1. */
int relay_session(struct client *cl, uint64_t id, bool tty, bool *pin_required);

/* tpmd's serialized AttestResponse for nonce (32 bytes) through trustmed (cmd_attest.c). 0, or
 * the exit status after printing why not. */
int attest_fetch_evidence(struct cli *cli, const uint8_t nonce[32], const uint32_t *pcrs, size_t npcrs, uint8_t **ret,
                          size_t *ret_len);
