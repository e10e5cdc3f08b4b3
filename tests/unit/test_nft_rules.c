/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nft_ruleset(): the text of trustme's nftables tables for a device config and a set of bridged
 * containers. The rules are checked line by line (what an admin reads with nft list), and, as
 * root, the kernel itself checks that it would take the whole script (libnftables' dry run, as
 * `nft -c -f` does). */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nft_batch.h"
#include "nft_rules.h"

static char allow_pairs[2][2][64] = {{"web", "db"}, {"db", "absent"}};

struct fixture {
    struct net_device_config dev;
    struct net_config web, db, other;
    struct nft_member m[3];
};

static void setup_fixture(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    strcpy(f->dev.bridge, "trustme0");
    inet_pton(AF_INET, "10.223.0.0", &f->dev.subnet);
    f->dev.prefix = 24;
    f->dev.nat = true;
    f->dev.allow = allow_pairs;
    f->dev.nallow = 2;
    f->web = (struct net_config){.mode = NET_BRIDGED,
                                 .nports = 2,
                                 .ports = {{8080, 80, IPPROTO_TCP}, {5353, 53, IPPROTO_UDP}},
                                 .nhost_ports = 2,
                                 .host_ports = {53, 8443}};
    f->db = (struct net_config){.mode = NET_BRIDGED};
    f->other = (struct net_config){
        .mode = NET_BRIDGED, .nports = 1, .ports = {{8081, 80, IPPROTO_TCP}}, .nhost_ports = 1, .host_ports = {22}};
    f->m[0] = (struct nft_member){"web", "tm1a2b3c4d5e", {0}, &f->web};
    f->m[1] = (struct nft_member){"db", "tm2a2b3c4d5e", {0}, &f->db};
    f->m[2] = (struct nft_member){"other", "tm3a2b3c4d5e", {0}, &f->other};
    inet_pton(AF_INET, "10.223.0.20", &f->m[0].address);
    inet_pton(AF_INET, "10.223.0.21", &f->m[1].address);
    inet_pton(AF_INET, "10.223.0.22", &f->m[2].address);
}

static char *ruleset_ok(const struct fixture *f, size_t n)
{
    char *text = NULL;
    tm_err err = {0};
    if (nft_ruleset(&f->dev, f->m, n, &text, &err) < 0) {
        print_error("nft_ruleset: %s\n", err.msg);
        fail();
    }
    assert_non_null(text);
    return text;
}

/* line occurs in text as a whole line, leading tabs aside. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        while (*p == '\t')
            p++;
        if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
            return true;
    }
    return false;
}

#define assert_line(text, line) assert_line_((text), (line), true, __FILE__, __LINE__)
#define assert_no_line(text, line) assert_line_((text), (line), false, __FILE__, __LINE__)
static void assert_line_(const char *text, const char *line, bool want, const char *file, int l)
{
    if (has_line(text, line) != want) {
        print_error("%s line \"%s\" in:\n%s\n", want ? "no" : "unexpected", line, text);
        _fail(file, l);
    }
}

/* Whether the kernel's nftables interface (an nfnetlink socket) can be had. qemu-user has none
 * (its netlink covers route, audit and uevent sockets: the arm64 run of scripts/cross-test.sh),
 * nor has a kernel without nf_tables: the dry runs are skipped there, saying so once, and the
 * text checks still run. Any other error is left to the dry run to report. */
static bool have_nfnetlink(void)
{
    static int have = -1;
    if (have < 0) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
        int e = errno;
        have = fd >= 0 || e != EPROTONOSUPPORT;
        if (fd >= 0)
            close(fd);
        if (!have)
            printf("SKIP: the kernel's dry runs: no nfnetlink socket (%s)\n", strerror(e));
    }
    return have;
}

/* As root: would the kernel take it? (Dry run: checked, then the transaction is aborted.) */
static void assert_kernel_accepts(const char *text)
{
    if (geteuid() != 0 || !have_nfnetlink())
        return;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    assert_non_null(ctx);
    assert_int_equal(nft_ctx_buffer_error(ctx), 0);
    nft_ctx_set_dry_run(ctx, true);
    if (nft_run_cmd_from_buffer(ctx, text) != 0) {
        print_error("nft refused:\n%s\n%s\n", nft_ctx_get_error_buffer(ctx), text);
        nft_ctx_free(ctx);
        fail();
    }
    nft_ctx_free(ctx);
}

static void no_members_removes_both_tables(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    char *text = ruleset_ok(&f, 0);
    /* add before delete: removing tables that do not exist is no error */
    assert_string_equal(text, "add table inet trustme-trustme0\n"
                              "delete table inet trustme-trustme0\n"
                              "add table bridge trustme-trustme0\n"
                              "delete table bridge trustme-trustme0\n");
    assert_kernel_accepts(text);
    free(text);

    tm_err err = {0};
    assert_int_equal(nft_ruleset_remove("trustme0", &text, &err), 0);
    assert_line(text, "delete table bridge trustme-trustme0");
    free(text);
}

static void full_ruleset(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    char *t = ruleset_ok(&f, 3);

    /* replaced as a whole, in one script */
    assert_line(t, "delete table inet trustme-trustme0");
    assert_line(t, "delete table bridge trustme-trustme0");
    assert_true(strstr(t, "delete table inet trustme-trustme0") < strstr(t, "table inet trustme-trustme0 {"));
    /* NAT out through anything but the bridge */
    assert_line(t, "ip saddr 10.223.0.0/24 oifname != \"trustme0\" masquerade comment \"containers to the outside\"");
    /* forwards: not from the bridge, not loopback, from elsewhere and from the host itself */
    assert_line(t, "iifname != \"trustme0\" ip daddr != 127.0.0.0/8 fib daddr type local jump port_forwards");
    assert_line(t, "ip daddr != 127.0.0.0/8 fib daddr type local jump port_forwards");
    assert_line(t, "tcp dport 8080 dnat ip to 10.223.0.20:80 comment \"web\"");
    assert_line(t, "udp dport 5353 dnat ip to 10.223.0.20:53 comment \"web\"");
    assert_line(t, "tcp dport 8081 dnat ip to 10.223.0.22:80 comment \"other\"");
    assert_line(t, "ip daddr 10.223.0.20 tcp dport 80 ct status dnat accept comment \"web\"");
    assert_line(t, "ip daddr 10.223.0.20 udp dport 53 ct status dnat accept comment \"web\"");
    /* forward: out allowed with NAT; between containers only the allowed pair, both ways */
    assert_line(t, "ip saddr 10.223.0.0/24 accept comment \"containers to the outside\"");
    assert_line(t, "ip saddr 10.223.0.20 ip daddr 10.223.0.21 accept comment \"web to db\"");
    assert_line(t, "ip saddr 10.223.0.21 ip daddr 10.223.0.20 accept comment \"db to web\"");
    assert_false(strstr(t, "ip daddr 10.223.0.22 accept"));
    assert_false(strstr(t, "ip saddr 10.223.0.22 ip daddr 10.223.0.2"));
    assert_false(strstr(t, "absent"));
    /* input: host_ports only to the bridge address, from the member's own address */
    assert_line(t, "iifname \"trustme0\" jump input_from_bridge");
    assert_line(t, "ip saddr 10.223.0.20 ip daddr 10.223.0.1 meta l4proto { tcp, udp } th dport { 53, 8443 } accept "
                   "comment \"web\"");
    assert_line(
        t,
        "ip saddr 10.223.0.22 ip daddr 10.223.0.1 meta l4proto { tcp, udp } th dport { 22 } accept comment \"other\"");
    assert_false(strstr(t, "ip saddr 10.223.0.21 ip daddr 10.223.0.1")); /* db has none */
    /* layer 2: the members in sets; own address only, allowed pair by port, everything else
     * between ports dropped */
    assert_line(t, "iifname @ports ether type != { ip, arp, ip6 } drop comment \"untagged IPv4, ARP and IPv6 only\"");
    assert_line(t, "ether type ip iifname @ports iifname . ip saddr != @addrs drop comment \"not its address\"");
    assert_line(t, "ether type arp iifname @ports arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @addrs drop "
                   "comment \"not its address\"");
    assert_line(t, "iifname . oifname @pairs accept comment \"an allowed pair\"");
    assert_line(t, "iifname @ports drop comment \"from a container\"");
    assert_line(t, "oifname @ports drop comment \"to a container\"");
    assert_line(t, "elements = { \"tm1a2b3c4d5e\" comment \"web\", \"tm2a2b3c4d5e\" comment \"db\", "
                   "\"tm3a2b3c4d5e\" comment \"other\" }");
    assert_line(t, "elements = { \"tm1a2b3c4d5e\" . 10.223.0.20 comment \"web\", \"tm2a2b3c4d5e\" . 10.223.0.21 "
                   "comment \"db\", \"tm3a2b3c4d5e\" . 10.223.0.22 comment \"other\" }");
    assert_line(t, "elements = { \"tm1a2b3c4d5e\" . \"tm2a2b3c4d5e\" comment \"web to db\", \"tm2a2b3c4d5e\" . "
                   "\"tm1a2b3c4d5e\" comment \"db to web\" }");
    /* no chain named like an nft keyword: "fwd" is one on Debian 12's nftables */
    assert_false(strstr(t, "chain fwd"));
    assert_kernel_accepts(t);
    free(t);
}

/* nft.c sends only the table whose text changed: a member without ports, host_ports or an allowed
 * pair changes the bridge table alone; one in an allowed pair changes the inet table too. Each
 * table's script replaces that table by itself. */
static void tables_separately(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    struct nft_member m[3] = {f.m[0], {"plain", "tm4a2b3c4d5e", {0}, &f.db}, f.m[1]};
    inet_pton(AF_INET, "10.223.0.23", &m[1].address);
    char *inet1, *bridge1, *inet2, *bridge2, *inet3, *bridge3;
    tm_err err = {0};
    assert_int_equal(nft_ruleset_tables(&f.dev, m, 1, &inet1, &bridge1, &err), 0);
    assert_int_equal(nft_ruleset_tables(&f.dev, m, 2, &inet2, &bridge2, &err), 0);
    assert_int_equal(nft_ruleset_tables(&f.dev, m, 3, &inet3, &bridge3, &err), 0);
    assert_string_equal(inet1, inet2);
    assert_string_not_equal(bridge1, bridge2);
    assert_non_null(strstr(bridge2, "tm4a2b3c4d5e"));
    assert_string_not_equal(inet2, inet3); /* web and db may talk */
    assert_non_null(strstr(inet3, "ip saddr 10.223.0.21 ip daddr 10.223.0.20 accept"));
    assert_true(strstr(inet1, "delete table inet trustme-trustme0") < strstr(inet1, "table inet trustme-trustme0 {"));
    assert_null(strstr(inet1, "table bridge"));
    assert_true(strstr(bridge1, "delete table bridge trustme-trustme0") <
                strstr(bridge1, "table bridge trustme-trustme0 {"));
    assert_null(strstr(bridge1, "table inet"));
    assert_kernel_accepts(bridge2);
    assert_kernel_accepts(inet3);
    free(inet1), free(bridge1), free(inet2), free(bridge2), free(inet3), free(bridge3);
}

static void without_nat(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    f.dev.nat = false;
    char *t = ruleset_ok(&f, 2);
    assert_false(strstr(t, "masquerade"));
    assert_false(strstr(t, "postrouting"));
    assert_no_line(t, "ip saddr 10.223.0.0/24 accept comment \"containers to the outside\"");
    assert_line(t, "tcp dport 8080 dnat ip to 10.223.0.20:80 comment \"web\"");
    assert_kernel_accepts(t);
    free(t);
}

static void other_subnet_and_bridge(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    strcpy(f.dev.bridge, "tmn7");
    inet_pton(AF_INET, "10.207.0.0", &f.dev.subnet);
    f.dev.prefix = 16;
    inet_pton(AF_INET, "10.207.3.9", &f.m[0].address);
    char *t = ruleset_ok(&f, 1);
    assert_line(t, "table inet trustme-tmn7 {");
    assert_line(t, "table bridge trustme-tmn7 {");
    assert_line(t, "ip saddr 10.207.0.0/16 oifname != \"tmn7\" masquerade comment \"containers to the outside\"");
    assert_line(t, "ip saddr 10.207.3.9 ip daddr 10.207.0.1 meta l4proto { tcp, udp } th dport { 53, 8443 } accept "
                   "comment \"web\"");
    assert_false(strstr(t, "trustme0"));
    assert_kernel_accepts(t);
    free(t);
}

static void forwarding_needed(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    assert_false(nft_needs_forwarding(&f.dev, f.m, 0));
    assert_true(nft_needs_forwarding(&f.dev, &f.m[1], 1)); /* NAT */
    f.dev.nat = false;
    assert_false(nft_needs_forwarding(&f.dev, &f.m[1], 1)); /* db: no forwards */
    assert_true(nft_needs_forwarding(&f.dev, f.m, 2)); /* web forwards ports */
}

static void same_host_port_twice(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    char *text = NULL;
    tm_err err = {0};
    f.other.ports[0].host = 8080;
    assert_int_equal(nft_ruleset(&f.dev, f.m, 3, &text, &err), -EADDRINUSE);
    assert_null(text);
    assert_err_contains(&err, "tcp 8080");
    assert_err_contains(&err, "web and other");

    /* the same number for udp is another port */
    f.other.ports[0].proto = IPPROTO_UDP;
    text = ruleset_ok(&f, 3);
    free(text);
    /* and one container cannot forward it twice either */
    f.web.ports[1] = f.web.ports[0];
    assert_int_equal(nft_ruleset(&f.dev, f.m, 1, &text, &err), -EADDRINUSE);
}

static void names_nft_could_misread(void **state)
{
    (void)state;
    struct fixture f;
    char *text = NULL;
    tm_err err = {0};

    setup_fixture(&f);
    strcpy(f.dev.bridge, "br\"0");
    assert_int_equal(nft_ruleset(&f.dev, f.m, 1, &text, &err), -EINVAL);
    assert_int_equal(nft_ruleset_remove("a b", &text, &err), -EINVAL);
    setup_fixture(&f);
    f.m[1].host_if = "tm x";
    assert_int_equal(nft_ruleset(&f.dev, f.m, 2, &text, &err), -EINVAL);
    setup_fixture(&f);
    f.m[0].name = "web\" accept #";
    assert_int_equal(nft_ruleset(&f.dev, f.m, 1, &text, &err), -EINVAL);
    assert_null(text);
}

/* The batch of set elements nft.c sends on a start or stop, encoded by hand (nft_batch.c): its
 * messages, and, as root, what the kernel makes of it in a real table of this test's own. */
static void elements_batch_messages(void **state)
{
    (void)state;
    struct fixture f;
    setup_fixture(&f);
    struct nft_elem *e = NULL;
    size_t ne = 0;
    char *inet, *base, *buf;
    size_t len;
    tm_err err = {0};
    assert_int_equal(nft_ruleset_parts(&f.dev, f.m, 2, &inet, &base, &e, &ne, &err), 0);
    assert_int_equal(ne, 6); /* 2 ports, 2 addresses, web <-> db both ways */
    assert_null(strstr(base, "elements")); /* the table without members */
    assert_int_equal(nft_batch_elems("trustme0", &e[0], 2, &e[2], 4, &buf, &len, &err), 0);
    /* BEGIN, deletions (ports, addrs), additions (ports, addrs, pairs), END */
    uint16_t types[8];
    size_t k = 0;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; (char *)h < buf + len && k < 8;
         h = (struct nlmsghdr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len)))
        types[k++] = h->nlmsg_type;
    assert_int_equal(k, 7);
    assert_int_equal(types[0], NFNL_MSG_BATCH_BEGIN);
    assert_int_equal(types[1], (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM);
    assert_int_equal(types[2], (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM);
    assert_int_equal(types[3], (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM);
    assert_int_equal(types[5], (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM);
    assert_int_equal(types[6], NFNL_MSG_BATCH_END);
    free(buf), free(e), free(inet), free(base);
}

static char kernel_bridge[IF_NAMESIZE];

static int nft_cmd(const char *cmd, char **ret_out)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    assert_non_null(ctx);
    assert_int_equal(nft_ctx_buffer_output(ctx), 0);
    assert_int_equal(nft_ctx_buffer_error(ctx), 0);
    int r = nft_run_cmd_from_buffer(ctx, cmd);
    if (ret_out)
        *ret_out = strdup(nft_ctx_get_output_buffer(ctx));
    nft_ctx_free(ctx);
    return r;
}

static int remove_kernel_table(void **state)
{
    (void)state;
    char cmd[128];
    if (kernel_bridge[0]) {
        snprintf(cmd, sizeof(cmd), "delete table bridge trustme-%s", kernel_bridge);
        (void)nft_cmd(cmd, NULL);
    }
    return 0;
}

static char *list_kernel_table(void)
{
    char cmd[128], *out = NULL;
    snprintf(cmd, sizeof(cmd), "list table bridge trustme-%s", kernel_bridge);
    assert_int_equal(nft_cmd(cmd, &out), 0);
    return out;
}

/* The keys written by hand must be the ones nft writes from the script's text: elements the script
 * put there are deleted by the batch, and the batch's elements read back as the script writes them.
 * A batch that fails changes nothing. */
static void elements_batch_in_the_kernel(void **state)
{
    (void)state;
    if (geteuid() != 0 || !have_nfnetlink())
        skip();
    struct fixture f;
    setup_fixture(&f);
    snprintf(kernel_bridge, sizeof(kernel_bridge), "tmut%d", (int)(getpid() % 100000));
    strcpy(f.dev.bridge, kernel_bridge);
    struct nft_elem *e = NULL;
    size_t ne = 0;
    char *inet, *base, *text, *buf, *out;
    size_t len;
    tm_err err = {0};
    /* web and db: the table as a script (libnftables) */
    assert_int_equal(nft_ruleset_parts(&f.dev, f.m, 2, &inet, &base, &e, &ne, &err), 0);
    assert_int_equal(nft_ruleset_bridge(&f.dev, e, ne, &text, &err), 0);
    if (nft_cmd(text, NULL) != 0)
        fail_msg("nft refused:\n%s", text);
    /* web goes (its port, its address, both pairs), other comes: one batch */
    struct nft_elem del[4] = {e[0], e[1], e[4], e[5]};
    struct nft_elem *e3 = NULL;
    size_t n3 = 0;
    char *inet3, *base3;
    assert_int_equal(nft_ruleset_parts(&f.dev, &f.m[2], 1, &inet3, &base3, &e3, &n3, &err), 0);
    assert_int_equal(n3, 2);
    assert_int_equal(nft_batch_elems(kernel_bridge, del, 4, e3, 2, &buf, &len, &err), 0);
    int s = nft_batch_socket(&err);
    assert_true(s >= 0);
    if (nft_batch_send(s, buf, len, &err) < 0)
        fail_msg("%s", err.msg);
    free(buf);
    out = list_kernel_table();
    assert_null(strstr(out, "tm1a2b3c4d5e"));
    assert_non_null(strstr(out, "\"tm2a2b3c4d5e\" . 10.223.0.21 comment \"db\""));
    assert_non_null(strstr(out, "\"tm3a2b3c4d5e\" . 10.223.0.22 comment \"other\""));
    assert_non_null(strstr(out, "\"tm3a2b3c4d5e\" comment \"other\""));
    free(out);
    /* deleting what is not there fails the batch, and the addition in it is not made either */
    struct nft_elem again = e[0];
    assert_int_equal(nft_batch_elems(kernel_bridge, &again, 1, &e[0], 2, &buf, &len, &err), 0);
    assert_int_equal(nft_batch_send(s, buf, len, &err), -ENOENT);
    free(buf);
    out = list_kernel_table();
    assert_null(strstr(out, "tm1a2b3c4d5e"));
    free(out);
    close(s);
    free(e), free(e3), free(inet), free(base), free(inet3), free(base3), free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_members_removes_both_tables),
        cmocka_unit_test(full_ruleset),
        cmocka_unit_test(tables_separately),
        cmocka_unit_test(without_nat),
        cmocka_unit_test(other_subnet_and_bridge),
        cmocka_unit_test(forwarding_needed),
        cmocka_unit_test(same_host_port_twice),
        cmocka_unit_test(names_nft_could_misread),
        cmocka_unit_test(elements_batch_messages),
        cmocka_unit_test_teardown(elements_batch_in_the_kernel, remove_kernel_table),
    };
    return cmocka_run_group_tests_name("nft_rules", tests, NULL, NULL);
}
