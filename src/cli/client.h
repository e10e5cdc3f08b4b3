/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The CLI's side of the control protocol: blocking request/response over the control socket. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "error.h"
#include "frame.h"

struct client {
    int fd;
    uint64_t next_id;
    tm_frame_reader rd;
    bool pin_required; /* client_call's last error asked for a PIN (Error.pin_required) */
};

int client_connect(struct client *cl, const char *socket_path, tm_err *err);
void client_close(struct client *cl);
/* Send req (version and a fresh id are filled in); returns the id or -errno. */
int64_t client_send(struct client *cl, Trustme__Request *req, tm_err *err);
/* Send a session message for request id. */
int client_send_for(struct client *cl, uint64_t id, Trustme__Request *req, tm_err *err);
/* Block until one response arrives. Caller frees it with trustme__response__free_unpacked. */
int client_recv(struct client *cl, Trustme__Response **ret, tm_err *err);
/* Send req and wait for its final response, printing progress messages to stderr. */
int client_call(struct client *cl, Trustme__Request *req, Trustme__Response **ret, tm_err *err);
/* True if resp ends a request (anything but progress and output). */
bool response_is_final(const Trustme__Response *resp);
