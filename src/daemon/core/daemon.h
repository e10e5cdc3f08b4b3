/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed: the daemon object and the container object it manages. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "config.h"
#include "device.h"
#include "event.h"
#include "cgroup_fs.h"
#include "state.h"
#include "uuid.h"

#define TM_IDS_PER_CONTAINER 65536u

struct conn;
struct control_state;
struct sock_fprog;
struct container;
struct lc_state;
struct service;
struct service_events;
struct tpmd_state;
struct service_options;
struct net_host;
struct console;
struct core_state;
struct reply_ops;
struct token_op;
struct container_token;
struct guestos;
struct install_op;
struct container_slot;

/* What a subsystem above core/ keeps per container, tied to the container's life in the store
 * (container.c) and to its state changes (lifecycle.c). main.c registers each subsystem's observer
 * once at start-up (daemon_observe); they are called in that order, releases in reverse. Any hook
 * may be NULL. core/ so never calls up into the subsystems that keep per-container state. */
struct container_observer {
    const char *name;
    /* A container is being created: take what it needs; a failure fails the create. */
    int (*created)(struct container *c, tm_err *err);
    /* Loaded from the data dir at start-up; a failure skips the container (logged). */
    int (*loaded)(struct container *c, tm_err *err);
    /* Deleted for good (its files are gone), or its create was rolled back. */
    void (*removed)(struct container *c);
    /* The object is freed (also a half-made one): release what it holds. */
    void (*freed)(struct container *c);
    /* Every state change (lifecycle.c's container_fire), after its action ran. */
    void (*transition)(struct container *c, enum cstate old, enum cevent ev);
};
#define DAEMON_OBSERVERS_MAX 8
#define CONTAINER_SLOTS_MAX 8 /* subsystems with state of their own per container (container_slots.h) */
struct daemon;
/* A subsystem with work to finish before trustmed exits (daemon_hold_exit): true when it is done;
 * false while it is under way, and it calls daemon_maybe_exit again when it ends. */
typedef bool daemon_exit_ready_fn(struct daemon *d);
#define DAEMON_EXIT_HOLDS_MAX 4
#define DAEMON_SERVICE_EVENTS_MAX 8 /* struct service_events (services/service.h) */

/* The control sockets inside containers: modules/ctlsock.c makes them, api/ serves them. api/
 * supplies these (main.c sets d->ctlsock), so modules/ never calls up into api/. */
struct ctlsock_ops {
    /* Does c get a socket inside, and with which role (its name, for the log)? */
    bool (*wanted)(const struct container *c, const char **ret_role);
    /* Serve fd, a listening socket inside c (taken over, also on failure); replaces c's old one. */
    int (*serve)(struct container *c, int fd, tm_err *err);
    /* Close c's socket and the connections that came through it. */
    void (*forget)(struct container *c);
};

struct container {
    struct container *next;
    struct daemon *d;
    /* The state of subsystems that keep their own per container (container_slots.h): new
     * subsystems attach theirs here instead of adding a field. */
    struct {
        const struct container_slot *slot;
        void *state;
    } slots[CONTAINER_SLOTS_MAX];
    size_t nslots;
    char uuid[TM_UUID_STR_LEN + 1];
    struct container_config *cfg;
    char *config_json; /* the raw bytes it was created from */
    size_t config_len;
    uint32_t uid_base; /* first host uid of its user namespace; persisted */
    uint64_t created_at;

    enum cstate state;
    pid_t pid; /* init, in the host pid namespace; 0 when none */
    int pidfd;
    uint64_t started_at;
    char last_error[1024];
    char last_exit[64];
    int exit_code; /* -1 when unknown (e.g. adopted init) */
    /* lifecycle/'s own state of the current run: timers, the start under way, sessions, waiting
     * clients, the user namespace (lifecycle/lc_state.h); NULL until its observer made it. */
    struct lc_state *lc;
    struct console *console; /* init's console while it is drained (console.c), or NULL */
    char actor[48]; /* who asked for the current operation (for the audit log) */
    struct container_token *token; /* its token as trustmed knows it (tokens.c) */
    uint64_t guestos_version; /* the GuestOS version of the current or last start */
    bool config_signed; /* its config came with a verified signature */
    struct net_state *net; /* its network (net.h), or NULL */
    struct vtpm *vtpm; /* its vTPM while trustmed tracks one (vtpm/vtpm.h), or NULL */
    char privileged_caps[768]; /* caps_privileged() by name, for container_info */
    struct keystore_svc *keystore; /* its keystore service (services/keystore_svc.c), or NULL */
};

struct daemon {
    tm_loop *loop;
    char data_dir[PATH_MAX];
    char run_dir[PATH_MAX];
    char cgroup_parent[256];
    uint32_t id_base; /* first host id handed to containers */
    tm_audit audit;
    struct cg_layout cgroups;
    struct sock_fprog *seccomp; /* compiled once at start-up (modules/seccomp.c) */
    struct container *containers;
    const struct container_observer *observers[DAEMON_OBSERVERS_MAX];
    size_t nobservers;
    daemon_exit_ready_fn *exit_ready[DAEMON_EXIT_HOLDS_MAX]; /* daemon_hold_exit */
    size_t nexit_ready;
    struct control_state *control; /* the control sockets and their clients (api/control.c) */
    const struct ctlsock_ops *ctlsock; /* api/'s side of the sockets in containers */
    const struct reply_ops *reply; /* api/'s side of answers from below it (reply.h) */
    int signal_fd;
    tm_source *signal_src;
    bool shutting_down;
    tm_source *retry_timer; /* cgroup directories still to be removed */
    const struct service_events *service_events[DAEMON_SERVICE_EVENTS_MAX]; /* service.h */
    size_t nservice_events;
    struct service *scd; /* the token service (scd_client.c) */
    struct service *tpmd; /* the TPM service (tpmd_client.c) */
    struct device_config device; /* device.json (device.h) */
    struct guestos *guestos; /* the GuestOS store (guestos.h), sorted by name and version */
    struct install_op *install; /* the GuestOS install under way, if any (guestos_install.c) */
    struct service_options *service_opts; /* scd's and tpmd's options (services/service_options.h) */
    struct tpmd_state *tpm; /* what the TPM part of trustmed knows (tpmd_client.c) */
    const char *log_level;
    struct net_host *net; /* the host side of container networking (net.c) */
    struct core_state *core; /* the core container c0's policy (core_container.c) */
};

/* Record a security-relevant event (docs/AUDIT.md). subject may be NULL. */
void daemon_audit(struct daemon *d, const char *event, const char *result, const struct container *c, const char *actor,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Find a helper binary (daemon.c): given, else an installed trustmed's TRUSTME_LIBEXECDIR or a
 * build tree's src/<build_dir>. */
int daemon_find_helper(const char *given, const char *name, const char *build_dir, char *out, size_t size, tm_err *err);
/* Look up a helper service's system user (not root) and its groups (*ngroups: room in, count out). */
int daemon_helper_user(const char *user, const char *what, uid_t *ret_uid, gid_t *ret_gid, gid_t *groups, int *ngroups,
                       tm_err *err);
/* Add a subsystem's per-container observer (main.c, at start-up). */
void daemon_observe(struct daemon *d, const struct container_observer *o);
/* Let ready hold trustmed's exit at shutdown until it says it is done (main.c, at start-up). */
void daemon_hold_exit(struct daemon *d, daemon_exit_ready_fn *ready);
/* Called when a container reaches STOPPED during shutdown, or a held exit's work ends: exits
 * when no container is active and every hold is ready. */
void daemon_maybe_exit(struct daemon *d);
