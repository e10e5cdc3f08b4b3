/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Link-time fakes for test_lifecycle: the modules (same names, same table order as
 * src/daemon/modules/modules.c, every hook recorded), the services a start waits for (tpmd's
 * measurement, scd's data key: answered on the next turn of the event loop, or refused), and
 * the subsystems above core/ that lifecycle.c calls (no sessions, no console, no cgroups). core/
 * itself is the real one, but for the audit log (daemon_audit is wrapped: --wrap at link time).
 * The setup process is a real fork, and init a real CLONE_PARENT child of the test, as in
 * trustmed. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "daemon.h"
#include "module.h"

enum fake_phase { FAKE_PREPARE, FAKE_SETUP, FAKE_CHILD, FAKE_CLEANUP, FAKE_NONE };

#define FAKE_MODULES 10
#define FAKE_LOG_MAX 256

/* Shared with the setup process and init (MAP_SHARED): they record their hooks here too. */
struct fake_world {
    int ncalls;
    struct {
        enum fake_phase phase;
        int module; /* index in fake_modules[] */
    } calls[FAKE_LOG_MAX];
    enum fake_phase fail_phase; /* the hook that fails, FAKE_NONE for none */
    int fail_module;
    enum fake_phase block_phase; /* the hook that never returns (until killed), FAKE_NONE for none */
    int block_module;
    int blocked; /* set once that hook has been entered */
    pid_t setup_pid, init_pid;
    /* the services */
    bool measure_fails, key_fails;
    int freeze_result; /* what cgroups_is_frozen says: 1 frozen, 0 not yet, <0 error */
    bool frozen; /* the fake freezer's state */
    /* trustmed's side */
    enum cstate quit_state; /* fake_observer quits the loop when the container gets here */
    int audits;
    char audit_event[8][32], audit_result[8][16], audit_detail[8][1024];
};

extern struct fake_world *fake;
extern const struct tm_module *const fake_modules[FAKE_MODULES];

/* Map fake (shared) and reset it. */
void fake_reset(void);
const char *fake_phase_name(enum fake_phase p);
/* Reap what cgroups_kill handed to the (fake) reaper. */
void fake_reap_taken(void);
/* Give c the fake tokens' and console's state (opaque outside their own .c files). */
void fake_attach(struct container *c);
/* Is a data key request of c's still pending (the fake tokens' key_op)? */
bool fake_key_pending(const struct container *c);
/* Is c's console open (console_open'd, not yet console_close'd)? */
bool fake_console_open(const struct container *c);
/* Registered with daemon_observe: ends the loop at fake->quit_state. */
extern const struct container_observer fake_observer;
/* What lifecycle.c's daemon_audit calls reach (--wrap=daemon_audit): recorded in fake. */
void __wrap_daemon_audit(struct daemon *d, const char *event, const char *result, const struct container *c,
                         const char *actor, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
