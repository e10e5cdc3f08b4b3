/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device config: <data-dir>/device.json, settings of the whole device rather than of one
 * container (docs/CONFIG.md "Device config"). Absent means every default. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "config.h"
#include "error.h"

enum storage_backend {
    STORAGE_FSCRYPT = 0, /* fscrypt v2 on the container's ext4 data image (the default) */
    STORAGE_DMCRYPT = 1, /* dm-crypt + dm-integrity (LUKS2) under it: needs device-mapper */
};

#define DEVICE_MAX_CAS 32
#define DEVICE_MAX_CRLS 32
#define DEVICE_ARCH_MAX 31
#define DEVICE_TCTI_MAX 255
#define DEVICE_ADDRESS_MAX 63

/* Trust anchors and CRLs are named by path and read when they are needed (a GuestOS install, a
 * signed config): replacing a CRL file takes effect without a restart. */
struct device_config {
    enum storage_backend storage_backend;
    char architecture[DEVICE_ARCH_MAX + 1]; /* GuestOSes must be built for it; default uname -m */
    char core_guestos[CONFIG_NAME_MAX + 1]; /* the GuestOS signed by the Software Signing PKI */
    char *software_root; /* Software Signing root CA (PEM path), NULL = none */
    char *general_root; /* Customer PKI's General root CA */
    char *local_root; /* a device-local root: GuestOSes it signs are "locally signed" */
    char *guestos_cas[DEVICE_MAX_CAS]; /* GuestOS Signing sub-CAs, beside <data>/trust/cas/ */
    size_t n_guestos_cas;
    char *crls[DEVICE_MAX_CRLS];
    size_t n_crls;
    /* trust.guestos_owners: a GuestOS name bound to the GuestOS Signing CA (SHA-256 of its DER,
     * lower-case hex) that alone may sign it, whoever signed it before (a vendor handover) */
    struct {
        char name[CONFIG_NAME_MAX + 1];
        char ca_sha256[65];
    } guestos_owners[DEVICE_MAX_CAS];
    size_t n_guestos_owners;
    bool allow_locally_signed;
    bool allow_unsigned; /* development only: unsigned GuestOSes and plain rootfs paths */
    bool signed_configs; /* create/update need a config signed through the GuestOS chain */
    bool allow_privileged; /* containers without a user namespace may keep dangerous capabilities */
    bool require_vtpm; /* every container must have a vTPM (docs/VTPM.md) */
    /* The TPM (docs/ATTESTATION.md): a tpm2-tss TCTI string or "embedded" (tpmd's own swtpm) */
    char tpm_tcti[DEVICE_TCTI_MAX + 1];
    unsigned boot_pcr, runtime_pcr;
    char attest_address[DEVICE_ADDRESS_MAX + 1];
    /* The migration endpoint (docs/MIGRATION.md "Over TCP"): HOST:PORT, "" (the default): none. */
    char migrate_address[DEVICE_ADDRESS_MAX + 1];
    uint64_t migrate_max_bundle; /* bytes a bundle sent to it may have */
    /* Where the measurement chain starts (docs/SECURITY.md "Self-measurement"): trustmed
     * measuring itself (self), or the kernel's IMA having measured trustmed and device.json
     * before they ran (ima: trustmed refuses to start unless the IMA log holds both). */
    enum { BOOT_CHAIN_SELF, BOOT_CHAIN_IMA } boot_chain;
    /* Refuse encrypted containers unless the TPM is a hardware one (not the embedded swtpm). */
    bool tpm_require_hardware;
    /* PIN policy for container tokens (docs/STORAGE.md, "PINs"). */
    unsigned pin_min_length; /* characters (UTF-8 code points), default 4 */
    bool pin_allow_trivial; /* all one character, a run like 1234 or 4321; default false */
    /* Networking and the management boundary (docs/NETWORK.md). */
    struct net_device_config net;
    char core_container[CONFIG_NAME_MAX + 1]; /* c0: started first, stopped last; "" = none */
    bool admin_socket_in_root; /* the admin control socket exists in the root namespace */
    /* audit: when the audit log is rotated and how many rotated files are kept (docs/AUDIT.md) */
    tm_audit_rotation audit_rotation;
    /* SHA-256 of device.json's raw bytes as parsed (of the empty string when absent): measured */
    uint8_t sha256[32];
};

const char *storage_backend_name(enum storage_backend b);
/* Read <data_dir>/device.json strictly (unknown keys, wrong types: an error naming the path)
 * and check that this kernel can do what it asks. */
int device_config_load(const char *data_dir, struct device_config *ret, tm_err *err);
void device_config_clear(struct device_config *cfg);
