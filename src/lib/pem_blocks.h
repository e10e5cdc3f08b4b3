/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Walking the PEM blocks of an untrusted text (the AK enrollment bundles, src/lib/enrollment.h):
 * trustme-pki reads the device's CSR bundle (src/tools/pki/enroll.c), trustme-tpmd the Device
 * CA's answer (src/tpmd/enroll_bundle.c). Built into its own small library (libtrustme does not
 * link OpenSSL). */
#pragma once

#include <openssl/bio.h>

#include "error.h"

/* One block: its type ("CERTIFICATE", ...) and its decoded bytes. fn may keep the bytes by taking
 * *data (setting it to NULL; they are OPENSSL_malloc'ed). A negative result ends the walk with it. */
typedef int (*tm_pem_block_fn)(const char *name, unsigned char **data, long len, void *userdata, tm_err *err);

/* Calls fn for each block of in, in order, until no further BEGIN line. -EINVAL: a block that
 * does not parse ("PEM block N does not parse") or more than max blocks. OpenSSL's error queue is
 * left empty. */
int tm_pem_each_block(BIO *in, int max, tm_pem_block_fn fn, void *userdata, tm_err *err);
