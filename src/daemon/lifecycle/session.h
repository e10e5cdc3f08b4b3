/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Sessions: the stdio of an attached init (start --attach) or of an exec session (run), relayed
 * between the process and the client's connection as protocol messages. trustmed holds the pipe
 * or pty ends; no host fd of the client ever reaches the container. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "daemon.h"
#include "error.h"

struct session {
    struct session *next; /* in container_sessions(c) */
    struct daemon *d;
    struct container *c;
    uint64_t conn_id; /* 0 once the client is gone */
    uint64_t req_id;
    bool attach; /* relays init; its exit is the container's */
    bool tty;
    bool pty_set; /* the pty master has arrived from the container */
    unsigned rows, cols; /* last window size asked for */
    uint64_t number; /* trustme exec list/kill name it by this (unique per trustmed) */
    uint64_t started_at; /* unix time */
    char what[80]; /* the command, for logs and audit */
    char actor[48]; /* the client who opened it, for the audit log */
    /* exec sessions only (exec.c) */
    pid_t pid;
    int pidfd;
    tm_source *pidfd_src;
    int helper_pidfd;
    tm_source *helper_src;
    int sync_fd;
    tm_source *sync_src;
    bool failed; /* the exec never happened; error says why */
    char error[512];
    /* stdio */
    int in_fd;
    tm_source *in_src;
    tm_buf in_buf;
    bool in_eof;
    /* Stdin credit (docs/PROTOCOL.md): the client sends input only within what was granted. */
    bool credit;
    uint64_t in_window; /* granted and not yet received */
    int out_fd, err_fd; /* for a tty both are the pty master (err_fd = -1) */
    tm_source *out_src, *err_src;
    bool paused;
};

/* c's attach and exec sessions, the newest first (NULL: none). */
struct session *container_sessions(const struct container *c);
struct session *session_new(struct container *c, uint64_t conn_id, uint64_t req_id, bool attach, bool tty,
                            const char *what);
/* Create stdin/stdout/stderr pipes; child_fds gets the ends for the process (caller closes them
 * after the fork). */
int session_pipes(struct session *s, int child_fds[3], tm_err *err);
/* Use a pty master received from the process (tty sessions). Takes ownership of master. */
int session_set_pty(struct session *s, int master, unsigned rows, unsigned cols);
/* The client asked for stdin credit: grant it its first window (StdinCredit replies). */
void session_use_credit(struct session *s);
void session_input(struct session *s, const uint8_t *data, size_t len, bool eof);
void session_resize(struct session *s, unsigned rows, unsigned cols);
/* Send the remaining output, then the exit status (or error), and free the session. */
void session_finish(struct session *s, int wait_status);
void session_fail(struct session *s, int code, const char *msg);
void session_free(struct session *s);
struct session *session_find(struct daemon *d, uint64_t conn_id, uint64_t req_id);
struct session *session_attached(struct container *c);
void sessions_conn_closed(struct daemon *d, uint64_t conn_id);
void sessions_resume(struct daemon *d, uint64_t conn_id);
/* "exited 3", "killed by SIGKILL" */
void describe_wait_status(int status, char *out, size_t size, int *ret_code, int *ret_signal);
