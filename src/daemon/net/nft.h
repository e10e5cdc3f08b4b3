/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme's nftables tables (nft.c, docs/NETWORK.md "nftables"): NAT, port forwards, the host's
 * input from the bridge, and isolation between containers, rebuilt from the running bridged
 * containers in one atomic transaction. */
#pragma once

#include <stdint.h>

#include "daemon.h"
#include "nft_rules.h" /* struct nft_member */

/* Replace the daemon's tables with rules for exactly these members (n may be 0: then the tables
 * are removed). Sets net.ipv4.ip_forward=1 when NAT or a forward needs it. */
int nft_sync(struct daemon *d, const struct nft_member *members, size_t n, tm_err *err);
/* The same in two steps, so that a start need not wait for the kernel in trustmed's prepare:
 * begin builds the script, checks it (a bad member fails here) and hands it to the helper;
 * *ret_ticket (0: nothing to wait for) is then given to nft_sync_wait, which returns once the
 * rules are applied (or why not). Another sync meanwhile waits for this one's answer first. */
int nft_sync_begin(struct daemon *d, const struct nft_member *members, size_t n, uint64_t *ret_ticket, tm_err *err);
int nft_sync_wait(struct daemon *d, uint64_t ticket, tm_err *err);
/* Remove the daemon's tables (trustmed's start, for what a killed trustmed left; shutdown). */
void nft_remove(struct daemon *d);
