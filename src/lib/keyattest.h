/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key attestation's X.509 extensions (docs/KEYSTORE.md "Key attestation"), shared by tpmd (the
 * container attestation certificate), trustme-keystore (key attestations) and trustme-verify. */
#pragma once

/* Container attestation certificate: a packed trustme.keystore.KsContainerIdentity. */
#define TM_OID_CONTAINER_IDENTITY "2.25.20704862868584675038316440976047001675"
/* Key attestation certificate: a packed trustme.keystore.KsKeyDescription. */
#define TM_OID_KEY_DESCRIPTION "2.25.39619141288605083686793323509539602413"
#define TM_KEY_CHALLENGE_MAX 128
/* Key attestation certificate of a TPM-held key: a packed trustme.keystore.KsTpmCertify, the
 * vTPM's TPM2_Certify of the key by the key at TM_VTPM_CERTIFIER_HANDLE. */
#define TM_OID_TPM_CERTIFY "2.25.17508486204022160331953604609801929246"
/* The vTPM's owner-made attestation key (AKv, docs/FLEET.md "vTPM quotes": trustme-owner
 * --fleet-key makes it persistent there, bound to the EK by credential activation). */
#define TM_VTPM_CERTIFIER_HANDLE 0x81018000u
