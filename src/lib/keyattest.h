/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key attestation's X.509 extensions (docs/KEYSTORE.md "Key attestation"), shared by tpmd (the
 * container attestation certificate), trustme-keystore (key attestations) and trustme-verify. */
#pragma once

/* Container attestation certificate: a packed trustme.keystore.KsContainerIdentity. */
#define TM_OID_CONTAINER_IDENTITY "2.25.20704862868584675038316440976047001675"
/* Key attestation certificate: a packed trustme.keystore.KsKeyDescription. */
#define TM_OID_KEY_DESCRIPTION "2.25.39619141288605083686793323509539602413"
#define TM_KEY_CHALLENGE_MAX 128
