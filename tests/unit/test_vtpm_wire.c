/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-vtpm's bytes (src/vtpm/vtpm_wire.c): the control channel's allowlist, the handles a
 * client's commands leave, and the commands it sends itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vtpm_wire.h"

static const char *ctrl(uint32_t cmd, const uint8_t *payload, size_t n)
{
    uint8_t buf[64];
    vtpm_put_be32(buf, cmd);
    if (n) /* memcpy from NULL is undefined even for 0 bytes (UBSan stops on it) */
        memcpy(buf + 4, payload, n);
    return vtpm_ctrl_refused(buf, 4 + n);
}

static void control_allowlist(void **state)
{
    uint8_t zero[16] = {0}, four = 4;
    assert_null(ctrl(VTPM_CTRL_GET_CAPABILITY, NULL, 0));
    assert_null(ctrl(VTPM_CTRL_GET_TPMESTABLISHED, NULL, 0));
    assert_null(ctrl(VTPM_CTRL_SET_LOCALITY, zero, 1));
    assert_non_null(ctrl(VTPM_CTRL_SET_LOCALITY, &four, 1)); /* DRTM PCR resets */
    assert_non_null(ctrl(VTPM_CTRL_SET_LOCALITY, zero, 2)); /* trailing bytes */
    assert_non_null(ctrl(VTPM_CTRL_GET_CAPABILITY, zero, 1)); /* trailing bytes */
    assert_non_null(ctrl(VTPM_CTRL_INIT, zero, 4));
    assert_non_null(ctrl(VTPM_CTRL_SHUTDOWN, NULL, 0));
    assert_non_null(ctrl(VTPM_CTRL_STOP, NULL, 0));
    assert_non_null(ctrl(VTPM_CTRL_GET_STATEBLOB, zero, 12));
    assert_non_null(ctrl(VTPM_CTRL_SET_STATEBLOB, zero, 16));
    for (uint32_t c = 6; c < 64; c++)
        if (c != VTPM_CTRL_GET_CAPABILITY && c != VTPM_CTRL_GET_TPMESTABLISHED && c != VTPM_CTRL_SET_LOCALITY)
            assert_non_null(ctrl(c, NULL, 0));
    assert_non_null(vtpm_ctrl_refused(zero, 3)); /* truncated */
}

/* The answers trustme-vtpm gives itself, in swtpm's socket format (what the TCTI parses). */
static void control_answers(void **state)
{
    uint8_t cmd[5] = {0}, out[16];
    vtpm_put_be32(cmd, VTPM_CTRL_GET_CAPABILITY);
    assert_int_equal(vtpm_ctrl_answer(cmd, out, 0), 8);
    assert_int_equal(vtpm_be32(out), 0);
    assert_int_equal(vtpm_be32(out + 4), VTPM_CTRL_CAPS);
    vtpm_put_be32(cmd, VTPM_CTRL_GET_TPMESTABLISHED);
    assert_int_equal(vtpm_ctrl_answer(cmd, out, 1), 8);
    assert_int_equal(vtpm_be32(out), 0);
    assert_int_equal(out[4], 1);
    vtpm_put_be32(cmd, VTPM_CTRL_SET_LOCALITY);
    assert_int_equal(vtpm_ctrl_answer(cmd, out, 0), 4);
    assert_int_equal(vtpm_be32(out), 0);
}

static size_t response(uint8_t *out, uint32_t rc, uint32_t handle)
{
    out[0] = 0x80;
    out[1] = 0x01;
    vtpm_put_be32(out + 2, 14);
    vtpm_put_be32(out + 6, rc);
    vtpm_put_be32(out + 10, handle);
    return 14;
}

static size_t command(uint8_t *out, uint32_t cc, uint32_t handle)
{
    out[0] = 0x80;
    out[1] = 0x01;
    vtpm_put_be32(out + 2, 14);
    vtpm_put_be32(out + 6, cc);
    vtpm_put_be32(out + 10, handle);
    return 14;
}

static void tracking(void **state)
{
    uint8_t cmd[16], rsp[16];
    uint32_t created, flushed;
    /* CreatePrimary, Load, StartAuthSession: their handle is the client's. */
    size_t cl = command(cmd, 0x131, 0x40000001), rl = response(rsp, 0, 0x80000000);
    vtpm_track(cmd, cl, rsp, rl, &created, &flushed);
    assert_int_equal(created, 0x80000000);
    assert_int_equal(flushed, 0);
    cl = command(cmd, 0x176, 0x40000007);
    rl = response(rsp, 0, 0x03000000);
    vtpm_track(cmd, cl, rsp, rl, &created, &flushed);
    assert_int_equal(created, 0x03000000);
    /* A failed command creates nothing. */
    rl = response(rsp, 0x902, 0x80000001);
    vtpm_track(cmd, cl, rsp, rl, &created, &flushed);
    assert_int_equal(created, 0);
    /* EvictControl's persistent handle is not flushed; FlushContext drops one. */
    cl = command(cmd, 0x120, 0x40000001);
    rl = response(rsp, 0, 0x81000001);
    vtpm_track(cmd, cl, rsp, rl, &created, &flushed);
    assert_int_equal(created, 0);
    cl = command(cmd, 0x165, 0x80000000);
    rl = response(rsp, 0, 0);
    vtpm_track(cmd, cl, rsp, rl, &created, &flushed);
    assert_int_equal(flushed, 0x80000000);
    /* Short messages are ignored. */
    vtpm_track(cmd, 6, rsp, rl, &created, &flushed);
    assert_int_equal(created | flushed, 0);
    assert_false(vtpm_flushable(0x81000001));
    assert_false(vtpm_flushable(0x40000001));
}

static void handle_set(void **state)
{
    struct vtpm_handles hs = {0};
    for (uint32_t i = 0; i < VTPM_MAX_HANDLES + 8; i++)
        vtpm_handles_add(&hs, 0x80000000 + i);
    assert_int_equal(hs.n, VTPM_MAX_HANDLES);
    vtpm_handles_add(&hs, 0x80000000); /* no duplicates */
    assert_int_equal(hs.n, VTPM_MAX_HANDLES);
    vtpm_handles_remove(&hs, 0x80000000);
    vtpm_handles_remove(&hs, 0x80000000);
    assert_int_equal(hs.n, VTPM_MAX_HANDLES - 1);
}

static void own_commands(void **state)
{
    uint8_t out[VTPM_MAX_COMMAND], d[32];
    memset(d, 0xab, sizeof(d));
    size_t n = vtpm_cmd_pcr_extend(out, 11, d);
    assert_int_equal(n, 65);
    assert_int_equal(vtpm_be32(out + 2), 65);
    assert_int_equal(vtpm_be32(out + 6), 0x182);
    assert_int_equal(vtpm_be32(out + 10), 11);
    assert_memory_equal(out + 33, d, 32);
    n = vtpm_cmd_platform_off(out);
    assert_int_equal(n, 32);
    assert_int_equal(vtpm_be32(out + 6), 0x121);
    assert_int_equal(vtpm_be32(out + 10), 0x4000000C);
    assert_int_equal(vtpm_be32(out + 27), 0x4000000C);
    assert_int_equal(out[31], 0);
    n = vtpm_cmd_flush(out, 0x02000001);
    assert_int_equal(n, 14);
    assert_int_equal(vtpm_be32(out + 10), 0x02000001);
}

static void ek_commands(void **state)
{
    uint8_t out[VTPM_MAX_COMMAND];
    /* The TCG default templates marshal to 314 (RSA 2048) and 122 (ECC P-256) bytes. */
    assert_int_equal(vtpm_ek_template(VTPM_EK_RSA, out), 314);
    assert_int_equal(vtpm_be32(out + 4), 0x000300b2); /* fixedTPM ... restricted decrypt */
    assert_int_equal(vtpm_ek_template(VTPM_EK_ECC, out), 122);
    assert_int_equal(out[0] << 8 | out[1], 0x0023);
    size_t n = vtpm_cmd_create_ek(out, VTPM_EK_ECC);
    assert_int_equal(vtpm_be32(out + 2), n);
    assert_int_equal(vtpm_be32(out + 6), 0x131);
    assert_int_equal(vtpm_be32(out + 10), 0x4000000B); /* the endorsement hierarchy */
    assert_int_equal(n, 27 + 6 + 2 + 122 + 6);
    n = vtpm_cmd_evict(out, 0x80000000, 0x81010002);
    assert_int_equal(n, 35);
    assert_int_equal(vtpm_be32(out + 10), 0x40000001);
    assert_int_equal(vtpm_be32(out + 14), 0x80000000);
    assert_int_equal(vtpm_be32(out + 31), 0x81010002);

    /* A CreatePrimary response: its handle and public area; malformed or failed ones are not. */
    uint8_t rsp[64] = {0x80, 0x02, 0, 0, 0, 30, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 10, 0, 6, 1, 2, 3, 4, 5, 6};
    uint32_t h = 0;
    const uint8_t *pub = NULL;
    size_t pub_len = 0;
    assert_int_equal(vtpm_rsp_created(rsp, 30, &h, &pub, &pub_len), 0);
    assert_int_equal(h, 0x80000000);
    assert_int_equal(pub_len, 6);
    assert_ptr_equal(pub, rsp + 20);
    assert_int_equal(vtpm_rsp_created(rsp, 24, &h, &pub, &pub_len), -1); /* public area cut off */
    rsp[9] = 1;
    assert_int_equal(vtpm_rsp_created(rsp, 30, &h, &pub, &pub_len), -1); /* the TPM failed */
}

static void nv_commands(void **state)
{
    uint8_t out[VTPM_MAX_COMMAND], data[VTPM_NV_CHUNK];
    memset(data, 0x5a, sizeof(data));
    /* NV_DefineSpace by the platform: TPM2B_AUTH (empty), TPM2B_NV_PUBLIC of 14 bytes. */
    size_t n = vtpm_cmd_nv_define(out, VTPM_EK_CERT_ECC_INDEX, 700);
    assert_int_equal(n, 27 + 18);
    assert_int_equal(vtpm_be32(out + 2), n);
    assert_int_equal(vtpm_be32(out + 6), 0x12A);
    assert_int_equal(vtpm_be32(out + 10), 0x4000000C);
    assert_int_equal(out[27] << 8 | out[28], 0);
    assert_int_equal(out[29] << 8 | out[30], 14);
    assert_int_equal(vtpm_be32(out + 31), 0x01c0000a);
    assert_int_equal(out[35] << 8 | out[36], 0x000B);
    /* PPWRITE WRITEDEFINE PPREAD OWNERREAD AUTHREAD NO_DA PLATFORMCREATE, nothing else. */
    assert_int_equal(vtpm_be32(out + 37), 0x1 | 0x2000 | 0x10000 | 0x20000 | 0x40000 | 0x2000000 | 0x40000000);
    assert_int_equal(out[43] << 8 | out[44], 700);
    /* NV_Write: platform and index handles, then the password session, data and offset. */
    n = vtpm_cmd_nv_write(out, VTPM_EK_CERT_RSA_INDEX, data, VTPM_NV_CHUNK, 512);
    assert_int_equal(n, 31 + 2 + VTPM_NV_CHUNK + 2);
    assert_int_equal(vtpm_be32(out + 6), 0x137);
    assert_int_equal(vtpm_be32(out + 10), 0x4000000C);
    assert_int_equal(vtpm_be32(out + 14), 0x01c00002);
    assert_int_equal(vtpm_be32(out + 18), 9);
    assert_int_equal(vtpm_be32(out + 22), 0x40000009);
    assert_int_equal(out[31] << 8 | out[32], VTPM_NV_CHUNK);
    assert_memory_equal(out + 33, data, VTPM_NV_CHUNK);
    assert_int_equal(out[n - 2] << 8 | out[n - 1], 512);
    n = vtpm_cmd_nv_write_lock(out, VTPM_EK_CERT_RSA_INDEX);
    assert_int_equal(n, 31);
    assert_int_equal(vtpm_be32(out + 6), 0x138);
    assert_int_equal(vtpm_be32(out + 14), 0x01c00002);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(control_allowlist), cmocka_unit_test(control_answers), cmocka_unit_test(tracking),
        cmocka_unit_test(handle_set),        cmocka_unit_test(own_commands),    cmocka_unit_test(ek_commands),
        cmocka_unit_test(nv_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
