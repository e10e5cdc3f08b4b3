/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Where a verb's private keys come from: encrypted files (one passphrase for all, asked once) or
 * one PKCS#11 token (one PIN, one session for the whole run). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pki.h"

static int token_for(struct keyring *kr, const struct p11uri *u, tm_err *err)
{
    if (kr->tok) {
        if (strcmp(kr->tok_label, u->token) != 0)
            return tm_err_set(err, EINVAL, "keys on two tokens (\"%s\", \"%s\") in one run", kr->tok_label, u->token);
        return 0;
    }
    const char *module = kr->module ? kr->module : u->module_path[0] ? u->module_path : SOFTHSM_MODULE;
    if (!kr->pin) {
        char prompt[P11URI_FIELD_MAX + 32];
        snprintf(prompt, sizeof(prompt), "PIN of token \"%s\"", u->token);
        int r = secret_read(kr->pin_file, prompt, false, &kr->pin, err);
        if (r < 0)
            return r;
    }
    int r = p11tok_open(module, u->token, u->serial[0] ? u->serial : NULL, kr->pin, false, &kr->tok, err);
    if (r < 0)
        return r;
    snprintf(kr->tok_label, sizeof(kr->tok_label), "%s", u->token);
    return 0;
}

bool keyring_option(struct keyring *kr, int c, const char *arg)
{
    switch (c) {
    case KEYRING_OPT_PASS: kr->passphrase_file = arg; return true;
    case KEYRING_OPT_PIN: kr->pin_file = arg; return true;
    case KEYRING_OPT_MODULE: kr->module = arg; return true;
    default: return false;
    }
}

int keyring_load(struct keyring *kr, const char *spec, const char *base_dir, EVP_PKEY **ret, tm_err *err)
{
    if (p11uri_is(spec)) {
        struct p11uri u;
        int r = p11uri_parse(spec, &u, err);
        if (r < 0 || (r = token_for(kr, &u, err)) < 0)
            return r;
        if ((r = p11tok_load(kr->tok, &u, ret, err)) < 0)
            return tm_err_prefix(err, "%s", spec);
        return 0;
    }
    char path[PATH_MAX];
    if (base_dir && spec[0] != '/')
        snprintf(path, sizeof(path), "%s/%s", base_dir, spec);
    else
        snprintf(path, sizeof(path), "%s", spec);
    bool encrypted;
    int r = key_file_kind(path, &encrypted, err);
    if (r < 0)
        return r;
    if (!encrypted && base_dir)
        return tm_err_set(err, EINVAL,
                          "%s is not encrypted: the PKI's keys always are (was it "
                          "replaced?)",
                          path);
    if (encrypted && !kr->pass && (r = secret_read(kr->passphrase_file, "passphrase", false, &kr->pass, err)) < 0)
        return r;
    return key_read(path, encrypted ? kr->pass : NULL, ret, err);
}

void keyring_done(struct keyring *kr)
{
    secret_text_freep(&kr->pass);
    secret_text_freep(&kr->pin);
    if (kr->tok)
        p11tok_close(kr->tok);
    kr->tok = NULL;
}
