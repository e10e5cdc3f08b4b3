/* Device allowlist for cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program generated from the
 * rules (v2 has no devices controller; the kernel asks this program on every open and mknod). */
#pragma once

#include <stddef.h>

#include "config.h"
#include "error.h"

/* Generate, load and attach the program to the cgroup directory cgroup_fd. */
int bpf_devices_attach(int cgroup_fd, const struct device_rule *rules, size_t n, tm_err *err);
