/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "bpf_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(dst, src, off) INSN(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
#define MOV_REG(dst, src) INSN(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_IMM(dst, imm) INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define AND_IMM(dst, imm) INSN(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm)
#define RSH_IMM(dst, imm) INSN(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm)
#define JNE_IMM(dst, imm, off) INSN(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Registers: r1 = ctx, r2 = device type, r3 = requested access, r4 = major, r5 = minor. */
static size_t emit_rule(struct bpf_insn *p, const struct device_rule *r)
{
    size_t n = 0;
    /* Jumps to "next rule" are emitted with off = 0 and patched once the block length is known. */
    size_t jumps[4], nj = 0;
    jumps[nj++] = n;
    p[n++] = JNE_IMM(2, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR, 0);
    int acc = (strchr(r->access, 'm') ? BPF_DEVCG_ACC_MKNOD : 0) | (strchr(r->access, 'r') ? BPF_DEVCG_ACC_READ : 0) |
              (strchr(r->access, 'w') ? BPF_DEVCG_ACC_WRITE : 0);
    if (acc != (BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE)) {
        /* Allowed only if the request asks for nothing outside this rule's access. */
        p[n++] = MOV_REG(6, 3);
        p[n++] = AND_IMM(6, ~acc);
        jumps[nj++] = n;
        p[n++] = JNE_IMM(6, 0, 0);
    }
    if (r->major != DEV_WILDCARD) {
        jumps[nj++] = n;
        p[n++] = JNE_IMM(4, (int)r->major, 0);
    }
    if (r->minor != DEV_WILDCARD) {
        jumps[nj++] = n;
        p[n++] = JNE_IMM(5, (int)r->minor, 0);
    }
    p[n++] = MOV_IMM(0, 1);
    p[n++] = EXIT();
    for (size_t j = 0; j < nj; j++)
        p[jumps[j]].off = (__s16)(n - jumps[j] - 1);
    return n;
}

/* The last program loaded, byte for byte, and trustmed's fd of it: most containers have the same
 * device list, and the kernel's verifier and JIT for each start were about 3 % of trustmed's CPU
 * per start. A loaded program cannot be changed, so an fd of one built from the same instructions
 * is the same program. One fd in all, not one per container. */
static struct bpf_insn *cached_prog;
static size_t cached_len;
static int cached_fd = -1;

static void remember(const struct bpf_insn *prog, size_t len, int pfd)
{
    free(cached_prog);
    cached_prog = NULL;
    close_and_reset(cached_fd);
    _cleanup_close_ int keep = fcntl(pfd, F_DUPFD_CLOEXEC, 3);
    if (keep < 0 || !(cached_prog = malloc(len * sizeof(*prog))))
        return;
    memcpy(cached_prog, prog, len * sizeof(*prog));
    cached_len = len;
    cached_fd = steal_fd(keep);
}

int bpf_devices_load(const struct device_rule *rules, size_t n, tm_err *err)
{
    size_t max = 8 + n * 8;
    _cleanup_free_ struct bpf_insn *prog = calloc(max, sizeof(*prog));
    if (!prog)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t len = 0;
    prog[len++] = LDX_W(2, 1, (short)offsetof(struct bpf_cgroup_dev_ctx, access_type));
    prog[len++] = MOV_REG(3, 2);
    prog[len++] = RSH_IMM(3, 16);
    prog[len++] = AND_IMM(2, 0xffff);
    prog[len++] = LDX_W(4, 1, (short)offsetof(struct bpf_cgroup_dev_ctx, major));
    prog[len++] = LDX_W(5, 1, (short)offsetof(struct bpf_cgroup_dev_ctx, minor));
    for (size_t i = 0; i < n; i++)
        len += emit_rule(prog + len, &rules[i]);
    prog[len++] = MOV_IMM(0, 0); /* nothing matched: deny */
    prog[len++] = EXIT();
    if (cached_fd >= 0 && cached_len == len && memcmp(cached_prog, prog, len * sizeof(*prog)) == 0) {
        int pfd = fcntl(cached_fd, F_DUPFD_CLOEXEC, 3);
        if (pfd >= 0)
            return pfd;
    }

    char log[4096] = "";
    union bpf_attr load = {0};
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)prog;
    load.insn_cnt = (uint32_t)len;
    load.license = (uint64_t)(uintptr_t) "GPL";
    load.log_buf = (uint64_t)(uintptr_t)log;
    load.log_size = sizeof(log);
    load.log_level = 1;
    int pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof(load));
    if (pfd < 0)
        return tm_err_sys(err, "cannot load the device program (%.200s)", log);
    remember(prog, len, pfd);
    return pfd;
}

int bpf_devices_attach(int cgroup_fd, int prog_fd, tm_err *err)
{
    union bpf_attr attach = {0};
    attach.target_fd = (uint32_t)cgroup_fd;
    attach.attach_bpf_fd = (uint32_t)prog_fd;
    attach.attach_type = BPF_CGROUP_DEVICE;
    if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof(attach)) < 0)
        return tm_err_sys(err, "cannot attach the device program");
    return 0;
}
