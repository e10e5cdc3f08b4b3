/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bridge table's set elements changed in one nfnetlink transaction, without libnftables
 * (docs/NETWORK.md "nftables"): a start or stop of a container adds or deletes its elements, one
 * small batch written here, rather than a script that libnftables parses and checks against the
 * kernel's ruleset, which it reads first (~11 netlink round trips). */
#pragma once

#include <stddef.h>

#include "error.h"
#include "nft_rules.h" /* struct nft_elem */

/* The batch (BEGIN, the deletions, the additions, END) for the sets of table bridge
 * trustme-<bridge>: *ret_buf is malloc'ed, *ret_len its length. Every message but BEGIN and END
 * asks for an acknowledgement. */
int nft_batch_elems(const char *bridge, const struct nft_elem *del, size_t ndel, const struct nft_elem *add,
                    size_t nadd, char **ret_buf, size_t *ret_len, tm_err *err);
/* Send a batch on a NETLINK_NETFILTER socket (its messages are numbered here) and wait for the
 * kernel's answer: 0 once it applied all of it, or the first error (nothing was applied then). */
int nft_batch_send(int s, char *buf, size_t len, tm_err *err);
/* A NETLINK_NETFILTER socket for nft_batch_send (close-on-exec, answers awaited at most 10 s). */
int nft_batch_socket(tm_err *err);
