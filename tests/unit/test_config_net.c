/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The "network"/"control" parts of the container config and device.json's "network"
 * (config_net.c): rejections name their JSON path, defaults are the documented ones, and
 * config_net_check holds a container's fixed address and ports to the device's subnet. */
#include "unit.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>

#include "config.h"
#include "config_net.h"

static json_t *doc(const char *text)
{
    char *json = sq(text);
    json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
    free(json);
    assert_non_null(o);
    return o;
}

static int parse(const char *text, struct net_config *net, enum control_role *role, tm_err *err)
{
    json_t *o = doc(text);
    int r = config_net_parse(o, net, role, err);
    json_decref(o);
    return r;
}

static void reject(const char *text, const char *path)
{
    struct net_config net;
    enum control_role role;
    tm_err err = {0};
    int r = parse(text, &net, &role, &err);
    if (r >= 0)
        print_error("accepted: %s\n", text);
    assert_true(r < 0);
    assert_int_equal(err.code, -r);
    assert_err_at(&err, path);
}

static void net_ok(const char *text, struct net_config *net, enum control_role *role)
{
    tm_err err = {0};
    int r = parse(text, net, role, &err);
    if (r < 0)
        print_error("rejected: %s\n  with: %s\n", text, err.msg);
    assert_int_equal(r, 0);
}

static void test_defaults(void **state)
{
    (void)state;
    struct net_config net;
    enum control_role role;
    net_ok("{}", &net, &role);
    assert_int_equal(net.mode, NET_NONE);
    assert_int_equal(role, CONTROL_NONE);
    net_ok("{'network':{},'control':'none'}", &net, &role);
    assert_int_equal(net.mode, NET_NONE);
    net_ok("{'control':'restricted','network':{'interfaces':['eth1']}}", &net, &role);
    assert_int_equal(role, CONTROL_RESTRICTED);
    assert_int_equal(net.nifaces, 1);
    assert_string_equal(net.ifaces[0], "eth1");
}

static void test_full(void **state)
{
    (void)state;
    struct net_config net;
    enum control_role role;
    net_ok("{'network':{'mode':'bridged','address':'10.223.0.20','mac':'02:54:4d:00:00:14',"
           "'dns':['10.223.0.1','9.9.9.9'],'search':['lan','example.org'],"
           "'ports':[{'host':8080,'container':80},{'host':53,'container':53,'protocol':'udp'},"
           "{'host':53,'container':53,'protocol':'tcp'}],"
           "'host_ports':[53,67],'interfaces':['eth1','wlan0']}}",
           &net, &role);
    assert_int_equal(net.mode, NET_BRIDGED);
    assert_true(net.has_address);
    assert_int_equal(net.address.s_addr, inet_addr("10.223.0.20"));
    assert_true(net.has_mac);
    assert_int_equal(net.mac[0], 0x02);
    assert_int_equal(net.mac[5], 0x14);
    assert_int_equal(net.ndns, 2);
    assert_int_equal(net.dns[1].s_addr, inet_addr("9.9.9.9"));
    assert_int_equal(net.nsearch, 2);
    assert_string_equal(net.search[1], "example.org");
    assert_int_equal(net.nports, 3);
    assert_int_equal(net.ports[0].host, 8080);
    assert_int_equal(net.ports[0].container, 80);
    assert_int_equal(net.ports[0].proto, IPPROTO_TCP);
    assert_int_equal(net.ports[1].proto, IPPROTO_UDP);
    assert_int_equal(net.nhost_ports, 2);
    assert_int_equal(net.host_ports[1], 67);
    assert_int_equal(net.nifaces, 2);
}

#define B(x) "{'network':{'mode':'bridged'," x "}}"
static void test_rejections(void **state)
{
    (void)state;
    reject("{'network':[]}", "$.network");
    reject("{'network':{'bogus':1}}", "$.network.bogus");
    reject("{'network':{'mode':'host'}}", "$.network.mode");
    reject("{'network':{'mode':1}}", "$.network.mode");
    reject("{'control':'admin'}", "$.control");
    reject("{'control':true}", "$.control");
    reject(B("'address':'10.223.0'"), "$.network.address");
    reject(B("'address':'10.223.0.256'"), "$.network.address");
    reject(B("'address':' 10.223.0.2'"), "$.network.address");
    reject(B("'address':'::1'"), "$.network.address");
    reject(B("'address':167772161"), "$.network.address");
    reject(B("'mac':'02:54:4d:00:00'"), "$.network.mac");
    reject(B("'mac':'02-54-4d-00-00-14'"), "$.network.mac");
    reject(B("'mac':'02:54:4d:00:00:1g'"), "$.network.mac");
    reject(B("'mac':'01:00:5e:00:00:01'"), "$.network.mac");
    reject(B("'mac':'00:00:00:00:00:00'"), "$.network.mac");
    reject(B("'mac':'2:54:4d:00:00:14:'"), "$.network.mac");
    reject(B("'dns':'10.0.0.1'"), "$.network.dns");
    reject(B("'dns':['10.0.0.1','x']"), "$.network.dns[1]");
    reject(B("'dns':['1.1.1.1','1.1.1.2','1.1.1.3','1.1.1.4']"), "$.network.dns");
    reject(B("'dns':['1.1.1.1'],'search':['a..b']"), "$.network.search[0]");
    reject(B("'dns':['1.1.1.1'],'search':['-a']"), "$.network.search[0]");
    reject(B("'dns':['1.1.1.1'],'search':['a b']"), "$.network.search[0]");
    reject(B("'search':['lan']"), "$.network.search");
    reject(B("'ports':[{'host':80}]"), "$.network.ports[0].container");
    reject(B("'ports':[{'host':0,'container':80}]"), "$.network.ports[0].host");
    reject(B("'ports':[{'host':80,'container':65536}]"), "$.network.ports[0].container");
    reject(B("'ports':[{'host':80,'container':80,'protocol':'sctp'}]"), "$.network.ports[0].protocol");
    reject(B("'ports':[{'host':80,'container':80,'proto':'tcp'}]"), "$.network.ports[0].proto");
    reject(B("'ports':[80]"), "$.network.ports[0]");
    reject(B("'host_ports':[53,'67']"), "$.network.host_ports[1]");
    reject(B("'host_ports':[53,53]"), "$.network.host_ports[1]");
    reject(B("'host_ports':[0]"), "$.network.host_ports[0]");
    reject(B("'interfaces':['eth1','eth1']"), "$.network.interfaces[1]");
    reject(B("'interfaces':['eth0']"), "$.network.interfaces[0]");
    reject(B("'interfaces':['lo']"), "$.network.interfaces[0]");
    reject(B("'interfaces':['a/b']"), "$.network.interfaces[0]");
    reject(B("'interfaces':['..']"), "$.network.interfaces[0]");
    reject(B("'interfaces':['']"), "$.network.interfaces[0]");
    reject(B("'interfaces':['0123456789abcdef']"), "$.network.interfaces[0]");
    /* bridged-only keys in mode none */
    reject("{'network':{'address':'10.223.0.20'}}", "$.network.address");
    reject("{'network':{'mode':'none','ports':[]}}", "$.network.ports");
    reject("{'network':{'dns':['1.1.1.1']}}", "$.network.dns");
}

static int device(const char *text, struct net_device_config *dev, tm_err *err)
{
    json_t *o = text ? doc(text) : NULL;
    int r = config_net_device_parse(o, dev, err);
    json_decref(o);
    return r;
}

static void device_reject(const char *text, const char *path)
{
    struct net_device_config dev;
    tm_err err = {0};
    int r = device(text, &dev, &err);
    if (r >= 0)
        print_error("accepted: %s\n", text);
    assert_true(r < 0);
    assert_err_at(&err, path);
}

static void test_device(void **state)
{
    (void)state;
    struct net_device_config dev;
    tm_err err = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(device(i ? "{}" : NULL, &dev, &err), 0);
        assert_string_equal(dev.bridge, "trustme0");
        assert_int_equal(dev.subnet.s_addr, inet_addr("10.223.0.0"));
        assert_int_equal(dev.prefix, 24);
        assert_true(dev.nat);
        assert_int_equal(dev.nallow, 0);
        config_net_device_clear(&dev);
    }
    assert_int_equal(device("{'network':{'bridge':'tmt1','subnet':'10.201.0.0/16','nat':false,"
                            "'allow':[['web','db'],['a','b']]}}",
                            &dev, &err),
                     0);
    assert_string_equal(dev.bridge, "tmt1");
    assert_int_equal(dev.subnet.s_addr, inet_addr("10.201.0.0"));
    assert_int_equal(dev.prefix, 16);
    assert_false(dev.nat);
    assert_int_equal(dev.nallow, 2);
    assert_string_equal(dev.allow[0][1], "db");
    assert_string_equal(dev.allow[1][0], "a");
    assert_int_equal(config_net_bridge_address(&dev).s_addr, inet_addr("10.201.0.1"));
    config_net_device_clear(&dev);

    device_reject("{'network':{'bogus':1}}", "$.network.bogus");
    device_reject("{'network':{'bridge':''}}", "$.network.bridge");
    device_reject("{'network':{'bridge':'a:b'}}", "$.network.bridge");
    device_reject("{'network':{'bridge':'abcdefghijklmnop'}}", "$.network.bridge");
    device_reject("{'network':{'subnet':'10.0.0.0'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0.0/7'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0.0/31'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0.0/024'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0.0/24x'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0.1/24'}}", "$.network.subnet");
    device_reject("{'network':{'subnet':'10.0.0/24'}}", "$.network.subnet");
    device_reject("{'network':{'nat':'yes'}}", "$.network.nat");
    device_reject("{'network':{'allow':[['web']]}}", "$.network.allow[0]");
    device_reject("{'network':{'allow':[['web','web']]}}", "$.network.allow[0]");
    device_reject("{'network':{'allow':[['web',1]]}}", "$.network.allow[0][1]");
    device_reject("{'network':{'allow':[['web','no/pe']]}}", "$.network.allow[0][1]");
}

static void check(const char *net_text, const char *dev_text, const char *path)
{
    struct net_config net;
    enum control_role role;
    struct net_device_config dev;
    tm_err err = {0};
    net_ok(net_text, &net, &role);
    assert_int_equal(device(dev_text, &dev, &err), 0);
    int r = config_net_check(&net, &dev, &err);
    config_net_device_clear(&dev);
    if (!path) {
        if (r < 0)
            print_error("refused: %s\n  with: %s\n", net_text, err.msg);
        assert_int_equal(r, 0);
        return;
    }
    if (r >= 0)
        print_error("passed: %s\n", net_text);
    assert_true(r < 0);
    assert_err_at(&err, path);
}

static void test_check(void **state)
{
    (void)state;
    const char *d30 = "{'network':{'subnet':'10.9.9.4/30'}}";
    check(B("'address':'10.223.0.20'"), NULL, NULL);
    check(B("'address':'10.223.0.254'"), NULL, NULL);
    check(B("'address':'10.223.1.20'"), NULL, "$.network.address");
    check(B("'address':'10.223.0.0'"), NULL, "$.network.address");
    check(B("'address':'10.223.0.255'"), NULL, "$.network.address");
    check(B("'address':'10.223.0.1'"), NULL, "$.network.address");
    check(B("'address':'10.9.9.6'"), d30, NULL);
    check(B("'address':'10.9.9.5'"), d30, "$.network.address");
    check(B("'address':'10.9.9.7'"), d30, "$.network.address");
    check(B("'ports':[{'host':80,'container':80},{'host':80,'container':81,'protocol':'udp'}]"), NULL, NULL);
    check(B("'ports':[{'host':80,'container':80},{'host':80,'container':81}]"), NULL, "$.network.ports[1].host");
    check(B("'interfaces':['trustme0']"), NULL, "$.network.interfaces[0]");
    check("{'network':{'interfaces':['tm0123456789']}}", NULL, "$.network.interfaces[0]");
    check("{'network':{'interfaces':['tmpnet']}}", NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_full),  cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_device),   cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests_name("config_net", tests, NULL, NULL);
}
