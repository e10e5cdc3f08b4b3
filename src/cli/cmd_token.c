/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verbs about a container's token and encrypted data: change-pin (and pairing), token unlock,
 * wipe; and the PIN prompts that start and create use. docs/STORAGE.md has the policy. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "pin_input.h"

#define PIN_MIN 4
#define PUK_MIN 8

static bool is_pkcs11(const Trustme__ContainerInfo *i)
{
    return i->encryption && i->encryption->token && strcmp(i->encryption->token, "pkcs11") == 0;
}

bool info_encrypted(const Trustme__ContainerInfo *i)
{
    return i->encryption && i->encryption->token && strcmp(i->encryption->token, "none") != 0;
}

int fetch_info(struct cli *cli, const char *name, Trustme__Response **ret)
{
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, TRUSTME__REQUEST__BODY_STATE, name);
    return cli_call(cli, &req, ret);
}

static ProtobufCBinaryData bytes(const struct secret *s)
{
    return (ProtobufCBinaryData){.data = s->data, .len = strlen((const char *)s->data)};
}

/* Send a token request and print the container's encryption state from the answer. */
static int token_call(struct cli *cli, Trustme__Request *req, const char *done)
{
    Trustme__Response *resp;
    int r = cli_call(cli, req, &resp);
    if (r)
        return r;
    if (resp->body_case == TRUSTME__RESPONSE__BODY_CONTAINER)
        printf("%s: %s\n", resp->container->name, done);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* A ChangePin request: without old_pin it pairs (with puk for a soft token). */
static int send_change_pin(struct cli *cli, const Trustme__ContainerInfo *info, const struct secret *old_pin,
                           const struct secret *new_pin, const struct secret *puk, const char *done)
{
    Trustme__ChangePinRequest cp = TRUSTME__CHANGE_PIN_REQUEST__INIT;
    cp.id = info->uuid;
    cp.has_new_pin = true;
    cp.new_pin = bytes(new_pin);
    if (old_pin) {
        cp.has_old_pin = true;
        cp.old_pin = bytes(old_pin);
    }
    if (puk) {
        cp.has_puk = true;
        cp.puk = bytes(puk);
    }
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_CHANGE_PIN;
    req.change_pin = &cp;
    return token_call(cli, &req, done);
}

/* Pairing: the first PIN (and for a soft token the PUK) of a container's token. */
int pair_token(struct cli *cli, const Trustme__ContainerInfo *info, const char *pin_file)
{
    struct pin_input in;
    tm_err err;
    _cleanup_secret_ struct secret *pin = NULL, *puk = NULL;
    char prompt[160];
    int r = pin_input_open(&in, pin_file, false, &err);
    if (r == 0) {
        if (is_pkcs11(info)) {
            snprintf(prompt, sizeof(prompt), "PIN of the PKCS#11 token for %s", info->name);
            r = pin_read(&in, prompt, &pin, &err);
        } else {
            snprintf(prompt, sizeof(prompt), "New PIN for %s (%d-%d characters)", info->name, PIN_MIN, PIN_INPUT_MAX);
            r = pin_read_new(&in, prompt, PIN_MIN, &pin, &err);
            snprintf(prompt, sizeof(prompt), "PUK for %s, to unlock it after %s (%d-%d characters)", info->name,
                     "3 wrong PINs", PUK_MIN, PIN_INPUT_MAX);
            if (r == 0)
                r = pin_read_new(&in, prompt, PUK_MIN, &puk, &err);
        }
        pin_input_close(&in);
    }
    if (r < 0)
        return cli_fail("%s", err.msg);
    return send_change_pin(cli, info, NULL, pin, puk,
                           is_pkcs11(info) ? "paired with its PKCS#11 token" : "PIN and PUK set");
}

/* The current PIN and a new one, for a paired token. */
static int change_pin(struct cli *cli, const Trustme__ContainerInfo *info, const char *pin_file)
{
    struct pin_input in;
    tm_err err;
    _cleanup_secret_ struct secret *old_pin = NULL, *new_pin = NULL;
    char prompt[160];
    int r = pin_input_open(&in, pin_file, false, &err);
    if (r == 0) {
        snprintf(prompt, sizeof(prompt), "Current PIN for %s", info->name);
        r = pin_read(&in, prompt, &old_pin, &err);
        snprintf(prompt, sizeof(prompt), "New PIN for %s", info->name);
        if (r == 0)
            r = pin_read_new(&in, prompt, PIN_MIN, &new_pin, &err);
        pin_input_close(&in);
    }
    if (r < 0)
        return cli_fail("%s", err.msg);
    return send_change_pin(cli, info, old_pin, new_pin, NULL, "PIN changed");
}

int cmd_change_pin(struct cli *cli, const struct cli_args *a)
{
    const char *pin_file = cli_value(a, "pin-file");
    Trustme__Response *resp;
    int r = fetch_info(cli, a->argv[0], &resp);
    if (r)
        return r;
    const Trustme__ContainerInfo *info = resp->container;
    if (!info_encrypted(info))
        r = cli_fail("%s has no token (\"token\": \"none\"): its data is not encrypted", info->name);
    else if (!info->encryption->status_known)
        r = cli_fail("the token service has not reported on %s yet; try again", info->name);
    else if (!info->encryption->paired)
        r = pair_token(cli, info, pin_file);
    else
        r = change_pin(cli, info, pin_file);
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

int cmd_token_unlock(struct cli *cli, const struct cli_args *a)
{
    const char *pin_file = cli_value(a, "pin-file");
    Trustme__Response *resp;
    int r = fetch_info(cli, a->argv[0], &resp);
    if (r)
        return r;
    const Trustme__ContainerInfo *info = resp->container;
    struct pin_input in;
    tm_err err;
    _cleanup_secret_ struct secret *puk = NULL, *new_pin = NULL;
    char prompt[160];
    if (!info_encrypted(info)) {
        r = tm_err_set(&err, EINVAL, "%s has no token: its data is not encrypted", info->name);
    } else if ((r = pin_input_open(&in, pin_file, false, &err)) == 0) {
        snprintf(prompt, sizeof(prompt), "%s for %s", is_pkcs11(info) ? "SO PIN of the token" : "PUK", info->name);
        r = pin_read(&in, prompt, &puk, &err);
        snprintf(prompt, sizeof(prompt), "New PIN for %s", info->name);
        if (r == 0)
            r = pin_read_new(&in, prompt, PIN_MIN, &new_pin, &err);
        pin_input_close(&in);
    }
    if (r < 0) {
        trustme__response__free_unpacked(resp, NULL);
        return cli_fail("%s", err.msg);
    }
    Trustme__TokenUnlockRequest ur = TRUSTME__TOKEN_UNLOCK_REQUEST__INIT;
    ur.id = info->uuid;
    ur.has_puk = ur.has_new_pin = true;
    ur.puk = bytes(puk);
    ur.new_pin = bytes(new_pin);
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_TOKEN_UNLOCK;
    req.token_unlock = &ur;
    r = token_call(cli, &req, "unlocked, new PIN set");
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

int cmd_wipe(struct cli *cli, const struct cli_args *a)
{
    const char *pin_file = cli_value(a, "pin-file");
    char *name = a->argv[0];
    int r;
    Trustme__WipeRequest wr = TRUSTME__WIPE_REQUEST__INIT;
    wr.id = name;
    _cleanup_secret_ struct secret *pin = NULL;
    if (pin_file) {
        struct pin_input in;
        tm_err err;
        if ((r = pin_input_open(&in, pin_file, false, &err)) == 0) {
            r = pin_read(&in, "PIN of the PKCS#11 token", &pin, &err);
            pin_input_close(&in);
        }
        if (r < 0)
            return cli_fail("%s", err.msg);
        wr.has_pin = true;
        wr.pin = bytes(pin);
    }
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_WIPE;
    req.wipe = &wr;
    return token_call(cli, &req,
                      "wiped: its data is gone; set a new PIN with change-pin before "
                      "starting it again");
}

/* For start: the PIN, if the container's data is encrypted and it is stopped. *ret stays NULL
 * otherwise. stdin_busy: stdin belongs to an attached session. */
int start_pin(struct cli *cli, const char *name, const char *pin_file, bool stdin_busy, struct secret **ret)
{
    *ret = NULL;
    int r;
    if (!pin_file) {
        Trustme__Response *resp;
        if ((r = fetch_info(cli, name, &resp)))
            return r;
        /* Without a PIN set, or locked, there is nothing to ask: trustmed says what to do. */
        const Trustme__Encryption *e = resp->container->encryption;
        bool needed = info_encrypted(resp->container) && resp->container->state == TRUSTME__CONTAINER_STATE__STOPPED &&
                      (!e->status_known || (e->paired && !e->locked && !e->blocked));
        trustme__response__free_unpacked(resp, NULL);
        if (!needed)
            return 0;
    }
    return read_pin(name, pin_file, stdin_busy, ret);
}

int read_pin(const char *name, const char *pin_file, bool stdin_busy, struct secret **ret)
{
    *ret = NULL;
    struct pin_input in;
    tm_err err;
    int r;
    char prompt[160];
    snprintf(prompt, sizeof(prompt), "PIN for %s", name);
    if ((r = pin_input_open(&in, pin_file, stdin_busy, &err)) == 0) {
        r = pin_read(&in, prompt, ret, &err);
        pin_input_close(&in);
    }
    return r < 0 ? cli_fail("%s", err.msg) : 0;
}

void set_start_pin(Trustme__StartRequest *sr, const struct secret *pin)
{
    if (pin) {
        sr->has_pin = true;
        sr->pin = bytes(pin);
    }
}
