/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Device allowlist for cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program generated from the
 * rules (v2 has no devices controller; the kernel asks this program on every open and mknod). */
#pragma once

#include <stddef.h>

#include "config.h"
#include "error.h"

/* Generate and load the program (the kernel verifies it: ~0.7 ms). Returns its fd. */
int bpf_devices_load(const struct device_rule *rules, size_t n, tm_err *err);
/* Attach a loaded program to the cgroup directory cgroup_fd; it goes away with the cgroup. */
int bpf_devices_attach(int cgroup_fd, int prog_fd, tm_err *err);
