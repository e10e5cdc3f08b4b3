/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A container's virtual TPM (vtpm.c; docs/VTPM.md): trustmed's side of trustme-vtpm. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "measurement.h"
#include "secmem.h"
#include "tpmd_client.h"

/* Inside every container with a vTPM (a read-only bind of the host's public directory). */
#define VTPM_GUEST_DIR "run/tpm"
#define VTPM_GUEST_SOCKET "/run/tpm/tpm.sock"
/* The anchor table entry of a container's vTPM state: "vtpm/<uuid>" = SHA-256 of the state. */
#define VTPM_ANCHOR_PREFIX "vtpm/"

/* <run>/vtpm/<uuid>/pub: the sockets and the event log the container sees at /run/tpm. */
void vtpm_public_dir(const struct container *c, char *out, size_t size);

/* This start's measurements (measure.c, once tpmd has them): the vTPM's PCRs get the same. Its
 * trustme-vtpm is started here and waits for the key vtpm_start derives (given up with the start,
 * it ends without having read the state). */
void vtpm_set_events(struct container *c, const struct tm_event_item *items, size_t n);

/* Start c's vTPM (c->cfg->vtpm) with a state key derived from its data key: check the state
 * against its TPM anchor, run trustme-vtpm, extend the events; done(c, NULL) once the guest's
 * socket accepts, or done(c, err) with the reason (the start must fail). */
typedef void (*vtpm_done_fn)(struct container *c, const tm_err *err);
int vtpm_start(struct container *c, const struct secret *data_key, vtpm_done_fn done, tm_err *err);

/* Why c cannot have a vTPM (no user namespace, no data key), or 0. */
int vtpm_check(const struct container *c, tm_err *err);

/* State for `trustme vtpm info`: running, the anchored and the current state digest. */
struct vtpm_status {
    bool running;
    pid_t pid;
    unsigned restarts;
    pid_t standby_pid; /* the next start's trustme-vtpm, waiting (docs/VTPM.md "The standby"); 0: none */
    bool standby_waiting; /* it is exec'd and linked, blocked on its key */
    bool state_exists;
    uint8_t state_sha256[32];
};
void vtpm_status(const struct container *c, struct vtpm_status *ret);

/* The endorsement keys made when the vTPM was manufactured (its first start), as trustmed
 * recorded them: TCG default templates, RSA 2048 and ECC P-256. */
#define VTPM_EKS 2
#define VTPM_EK_RSA_HANDLE 0x81010001u /* the TCG's handles, where trustme-vtpm persists them */
#define VTPM_EK_ECC_HANDLE 0x81010002u
#define VTPM_EK_CERT_MAX 2048
struct vtpm_ek {
    char kind[4]; /* "rsa" or "ecc" */
    uint8_t public[400]; /* TPMT_PUBLIC */
    size_t public_len;
    uint8_t name[34]; /* 000b || SHA-256(TPMT_PUBLIC): what is measured */
    uint8_t cert[VTPM_EK_CERT_MAX]; /* its EK certificate (DER) as stored in the vTPM's NV */
    size_t cert_len; /* 0: none issued yet */
};
/* 0 with *ret_n = 0 when none were made yet; negative errno when the record is unreadable. */
int vtpm_eks(const struct container *c, struct vtpm_ek *ret, size_t *ret_n);

/* c's vTPM-EK events for the physical runtime PCR (type vtpm-ek, name "<uuid>/ek-rsa|ecc", SHA-256
 * of the TPMT_PUBLIC), then, when an owner is recorded, its vtpm-owner event ("<uuid>/owner",
 * SHA-256 of the statement file) into items (names holds their names); how many, at most max
 * (VTPM_EKS + 1 for all); 0 before the manufacture. */
size_t vtpm_ek_events(const struct container *c, struct tm_event_item *items, char (*names)[TM_EVENT_NAME_MAX + 1],
                      size_t max);

/* A stopped container's vTPM is deleted: the state and its anchor (fn when the anchor is
 * gone). */
int vtpm_reset(struct container *c, tpmd_reply_fn fn, void *userdata, tm_err *err);
/* The container was wiped (a new data key, from which the state key is derived): its vTPM is
 * reset, so that its next start makes a new one. */
void vtpm_wiped(struct container *c);
/* Its trustme-vtpm still runs (the container stopped, the vTPM is saving its state). A standby
 * (docs/VTPM.md "The standby") is not: it has nothing to save. */
bool vtpm_busy(const struct container *c);
/* c's config was replaced: a standby launched for the old one goes (a new one comes if c still
 * has a vTPM). */
void vtpm_config_changed(struct container *c);
/* c's standby goes (an export: the container is to start elsewhere); a start launches one. */
void vtpm_drop_standby(struct container *c);

/* After c was re-adopted (or found stopped) at trustmed's start: re-adopt the vTPM the last
 * trustmed left running for it (it outlives trustmed), or stop it when c no longer runs. A
 * re-adopted vTPM is anchored when it ends, but not started again after a crash (its key went
 * with the old trustmed). */
void vtpm_recover(struct container *c);

extern const struct container_observer vtpm_container_observer;
/* main.c: hold trustmed's exit until every vTPM has stopped and its state is anchored. */
bool vtpm_exit_ready(struct daemon *d);
