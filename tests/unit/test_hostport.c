/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HOST:PORT parsing (src/lib/hostport.c), shared by trustme-verify, trustme-owner and tpmd's
 * attestation listener: brackets for IPv6, a decimal port in range, and a message naming the
 * input for everything else, without writing the outputs. */
#include <errno.h>

#include "unit.h"

#include "hostport.h"

static void splits_names_and_addresses(void **state)
{
    (void)state;
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    tm_err err;
    assert_int_equal(tm_split_hostport("device.example:7000", 1, host, port, &err), 0);
    assert_string_equal(host, "device.example");
    assert_string_equal(port, "7000");
    assert_int_equal(tm_split_hostport("127.0.0.1:65535", 1, host, port, &err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "65535");
    assert_int_equal(tm_split_hostport("[::1]:1", 1, host, port, &err), 0);
    assert_string_equal(host, "::1");
    assert_string_equal(port, "1");
    /* a listener may ask for any free port */
    assert_int_equal(tm_split_hostport("[fe80::1%lo]:0", 0, host, port, &err), 0);
    assert_string_equal(host, "fe80::1%lo");
    assert_string_equal(port, "0");
}

static void refuses_the_rest(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        unsigned min;
        const char *why;
    } bad[] = {
        {"::1:80", 1, "IPv6 address in []"}, {"[::1]80", 1, "expected [IPv6]:PORT"},
        {"[::1", 1, "expected [IPv6]:PORT"}, {"host", 1, "expected HOST:PORT"},
        {":80", 1, "port 1..65535"},         {"[]:80", 1, "port 1..65535"},
        {"host:", 1, "port 1..65535"},       {"host:0", 1, "port 1..65535"},
        {"host:65536", 0, "port 0..65535"},  {"host:123456", 0, "port 0..65535"},
        {"host:http", 1, "port 1..65535"},   {"host:-1", 0, "port 0..65535"},
        {"host: 80", 1, "port 1..65535"},    {"host:80 ", 1, "port 1..65535"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[TM_HOST_MAX] = "unchanged", port[TM_PORT_MAX] = "x";
        tm_err err;
        assert_int_equal(tm_split_hostport(bad[i].s, bad[i].min, host, port, &err), -EINVAL);
        assert_err_contains(&err, bad[i].s);
        assert_err_contains(&err, bad[i].why);
        assert_string_equal(host, "unchanged");
        assert_string_equal(port, "x");
    }
    char long_host[TM_HOST_MAX + 8];
    memset(long_host, 'a', TM_HOST_MAX);
    strcpy(long_host + TM_HOST_MAX, ":80");
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    tm_err err;
    assert_int_equal(tm_split_hostport(long_host, 1, host, port, &err), -EINVAL);
    long_host[TM_HOST_MAX - 1] = '\0';
    memcpy(long_host + TM_HOST_MAX - 1, ":80", 4);
    assert_int_equal(tm_split_hostport(long_host, 1, host, port, &err), 0);
    assert_int_equal(strlen(host), TM_HOST_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splits_names_and_addresses),
        cmocka_unit_test(refuses_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
