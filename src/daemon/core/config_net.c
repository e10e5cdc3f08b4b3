/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The network part of the container and device configs (docs/NETWORK.md), parsed strictly: every
 * error names its JSON path, nothing unknown is accepted.
 *
 * Bridged mode without a user namespace is allowed: the container still gets a network namespace
 * of its own, and what its root may do there (change eth0's address or MAC) is bounded by its
 * capabilities (CAP_NET_ADMIN is dropped unless the config keeps it) and by the bridge rules
 * (nft.c), which match a container's traffic on its veth and address. */
#include "config_net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config.h"
#include "jsonutil.h"

#define NET_DEFAULT_BRIDGE "trustme0"
#define NET_DEFAULT_SUBNET "10.223.0.0"
#define NET_DEFAULT_PREFIX 24

/* A dotted quad, strictly (inet_pton refuses leading zeros' octal ambiguity and short forms). */
static int parse_ipv4(json_t *v, const char *path, struct in_addr *ret, tm_err *err)
{
    const char *s;
    int r = tm_json_expect_string(v, path, 15, &s, err);
    if (r < 0)
        return r;
    if (inet_pton(AF_INET, s, ret) != 1)
        return tm_err_set(err, EINVAL, "%s: \"%s\" is not an IPv4 address such as \"10.223.0.20\"", path, s);
    return 0;
}

/* Interface names as the kernel takes them (dev_valid_name), minus what would confuse us. */
bool config_net_ifname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= IF_NAMESIZE || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == ':' || *p == '%' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
            return false;
    return true;
}

static int parse_mac(json_t *v, const char *path, uint8_t mac[6], tm_err *err)
{
    const char *s;
    int r = tm_json_expect_string(v, path, 17, &s, err);
    if (r < 0)
        return r;
    unsigned b[6];
    char tail;
    if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
        return tm_err_set(err, EINVAL,
                          "%s: \"%s\" is not a MAC address such as "
                          "\"02:54:4d:00:00:14\"",
                          path, s);
    for (size_t i = 0; i < 17; i++)
        if ((i % 3 == 2) ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
            return tm_err_set(err, EINVAL,
                              "%s: \"%s\" is not a MAC address such as "
                              "\"02:54:4d:00:00:14\"",
                              path, s);
    if (b[0] & 1)
        return tm_err_set(err, EINVAL,
                          "%s: \"%s\" is a multicast address; eth0 needs a unicast "
                          "one",
                          path, s);
    bool zero = true;
    for (int i = 0; i < 6; i++) {
        mac[i] = (uint8_t)b[i];
        zero = zero && !b[i];
    }
    if (zero)
        return tm_err_set(err, EINVAL, "%s: the all-zero MAC is not an address", path);
    return 0;
}

/* DNS search domains: labels of letters, digits and '-', separated by single dots. */
static bool domain_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NET_SEARCH_NAME_MAX || s[0] == '.' || s[0] == '-' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && !(s[i] == '.' && s[i + 1] != '.'))
            return false;
    return true;
}

static int parse_port_number(json_t *obj, const char *path, const char *key, uint16_t *ret, tm_err *err)
{
    int64_t n;
    int r = tm_json_get_int(obj, path, key, true, 1, 65535, &n, err);
    if (r < 0)
        return r;
    *ret = (uint16_t)n;
    return 0;
}

static int parse_ports(json_t *net, struct net_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"host", "container", "protocol", NULL};
    json_t *arr;
    int r = tm_json_get_array(net, "$.network", "ports", false, NET_PORTS_MAX, &arr, err);
    if (r <= 0)
        return r;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.network.ports", i);
        json_t *p = json_array_get(arr, i);
        if (!json_is_object(p))
            return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path, tm_json_type_name(p));
        struct net_port *port = &cfg->ports[i];
        const char *proto = "tcp";
        if ((r = tm_json_check_keys(p, path, keys, err)) < 0 ||
            (r = parse_port_number(p, path, "host", &port->host, err)) < 0 ||
            (r = parse_port_number(p, path, "container", &port->container, err)) < 0 ||
            (r = tm_json_get_string(p, path, "protocol", false, 8, &proto, err)) < 0)
            return r;
        if (strcmp(proto, "tcp") == 0)
            port->proto = IPPROTO_TCP;
        else if (strcmp(proto, "udp") == 0)
            port->proto = IPPROTO_UDP;
        else
            return tm_err_set(err, EINVAL, "%s.protocol: must be \"tcp\" or \"udp\", got \"%s\"", path, proto);
        cfg->nports++;
    }
    return 0;
}

/* The items of an optional array (arr NULL when absent), each with its JSON path. */
#define FOR_EACH_ITEM(key, arr, i, path) \
    for (size_t i = 0;                   \
         i < ((arr) ? json_array_size(arr) : 0) && (tm_json_path_index(path, "$.network." key, i), true); i++)

static int parse_lists(json_t *net, struct net_config *cfg, tm_err *err)
{
    json_t *arr = NULL;
    char path[TM_JSON_PATH_MAX];
    const char *s;
    int r;

    if ((r = tm_json_get_array(net, "$.network", "dns", false, NET_DNS_MAX, &arr, err)) < 0)
        return r;
    FOR_EACH_ITEM("dns", arr, i, path)
    {
        if ((r = parse_ipv4(json_array_get(arr, i), path, &cfg->dns[i], err)) < 0)
            return r;
        cfg->ndns++;
    }

    arr = NULL;
    if ((r = tm_json_get_array(net, "$.network", "search", false, NET_SEARCH_MAX, &arr, err)) < 0)
        return r;
    FOR_EACH_ITEM("search", arr, i, path)
    {
        if ((r = tm_json_expect_string(json_array_get(arr, i), path, 255, &s, err)) < 0)
            return r;
        if (!domain_valid(s))
            return tm_err_set(err, EINVAL,
                              "%s: \"%s\" is not a domain name (letters, digits, '-' "
                              "and '.', at most %d bytes)",
                              path, s, NET_SEARCH_NAME_MAX);
        snprintf(cfg->search[i], sizeof(cfg->search[i]), "%s", s);
        cfg->nsearch++;
    }
    if (cfg->nsearch && !cfg->ndns)
        return tm_err_set(err, EINVAL,
                          "$.network.search: needs \"dns\" (no resolv.conf is "
                          "written without name servers)");

    arr = NULL;
    if ((r = tm_json_get_array(net, "$.network", "host_ports", false, NET_HOST_PORTS_MAX, &arr, err)) < 0)
        return r;
    FOR_EACH_ITEM("host_ports", arr, i, path)
    {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v))
            return tm_err_set(err, EINVAL, "%s: expected an integer, got %s", path, tm_json_type_name(v));
        int64_t n = json_integer_value(v);
        if (n < 1 || n > 65535)
            return tm_err_set(err, ERANGE, "%s: %lld out of range (allowed 1..65535)", path, (long long)n);
        for (size_t j = 0; j < i; j++)
            if (cfg->host_ports[j] == n)
                return tm_err_set(err, EINVAL, "%s: port %lld is listed twice", path, (long long)n);
        cfg->host_ports[i] = (uint16_t)n;
        cfg->nhost_ports++;
    }

    arr = NULL;
    if ((r = tm_json_get_array(net, "$.network", "interfaces", false, NET_IFACES_MAX, &arr, err)) < 0)
        return r;
    FOR_EACH_ITEM("interfaces", arr, i, path)
    {
        if ((r = tm_json_expect_string(json_array_get(arr, i), path, 64, &s, err)) < 0)
            return r;
        if (!config_net_ifname_valid(s))
            return tm_err_set(err, EINVAL,
                              "%s: \"%s\" is not an interface name (1-%d bytes, no "
                              "'/', ':' or spaces)",
                              path, s, IF_NAMESIZE - 1);
        if (strcmp(s, "lo") == 0)
            return tm_err_set(err, EINVAL, "%s: the loopback interface cannot be moved", path);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->ifaces[j], s) == 0)
                return tm_err_set(err, EINVAL, "%s: \"%s\" is listed twice", path, s);
        snprintf(cfg->ifaces[i], sizeof(cfg->ifaces[i]), "%s", s);
        cfg->nifaces++;
    }
    return 0;
}

static int parse_control(json_t *root, enum control_role *ret, tm_err *err)
{
    const char *s;
    int r = tm_json_get_string(root, "$", "control", false, 16, &s, err);
    *ret = CONTROL_NONE;
    if (r <= 0)
        return r;
    if (strcmp(s, "restricted") == 0)
        *ret = CONTROL_RESTRICTED;
    else if (strcmp(s, "none") != 0)
        return tm_err_set(err, EINVAL, "$.control: must be \"none\" or \"restricted\", got \"%s\"", s);
    return 0;
}

int config_net_parse(json_t *root, struct net_config *ret, enum control_role *ret_role, tm_err *err)
{
    static const char *const keys[] = {"mode",  "address",    "mac",        "dns", "search",
                                       "ports", "host_ports", "interfaces", NULL};
    struct net_config cfg = {.mode = NET_NONE};
    enum control_role role;
    json_t *net, *v;
    const char *mode = "none";
    int r;
    if ((r = parse_control(root, &role, err)) < 0)
        return r;
    if ((r = tm_json_get_object(root, "$", "network", false, 16, &net, err)) < 0)
        return r;
    if (r > 0) {
        if ((r = tm_json_check_keys(net, "$.network", keys, err)) < 0 ||
            (r = tm_json_get_string(net, "$.network", "mode", false, 16, &mode, err)) < 0)
            return r;
        if (strcmp(mode, "bridged") == 0)
            cfg.mode = NET_BRIDGED;
        else if (strcmp(mode, "none") != 0)
            return tm_err_set(err, EINVAL,
                              "$.network.mode: must be \"none\" or \"bridged\", got "
                              "\"%s\"",
                              mode);
        if (((v = json_object_get(net, "address")) != NULL)) {
            if ((r = parse_ipv4(v, "$.network.address", &cfg.address, err)) < 0)
                return r;
            cfg.has_address = true;
        }
        if (((v = json_object_get(net, "mac")) != NULL)) {
            if ((r = parse_mac(v, "$.network.mac", cfg.mac, err)) < 0)
                return r;
            cfg.has_mac = true;
        }
        if ((r = parse_lists(net, &cfg, err)) < 0 || (r = parse_ports(net, &cfg, err)) < 0)
            return r;
        /* What only a bridged container can have (the interfaces work in both modes). */
        static const char *const bridged_only[] = {"address", "mac", "dns", "search", "ports", "host_ports"};
        for (size_t i = 0; cfg.mode != NET_BRIDGED && i < ARRAY_SIZE(bridged_only); i++)
            if ((json_object_get(net, bridged_only[i]) != NULL))
                return tm_err_set(err, EINVAL, "$.network.%s: only for \"mode\": \"bridged\"", bridged_only[i]);
        for (size_t i = 0; cfg.mode == NET_BRIDGED && i < cfg.nifaces; i++)
            if (strcmp(cfg.ifaces[i], "eth0") == 0)
                return tm_err_set(err, EINVAL,
                                  "$.network.interfaces[%zu]: \"eth0\" is the bridged "
                                  "container's own veth end inside",
                                  i);
    }
    *ret = cfg;
    *ret_role = role;
    return 0;
}

static uint32_t prefix_mask(unsigned prefix)
{
    return prefix ? 0xffffffffu << (32 - prefix) : 0;
}

static int parse_subnet(const char *s, struct net_device_config *cfg, tm_err *err)
{
    char buf[19];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    char *end;
    if (!slash || !slash[1] || !isdigit((unsigned char)slash[1]) || (slash[1] == '0' && slash[2]))
        goto bad;
    *slash = '\0';
    unsigned long prefix = strtoul(slash + 1, &end, 10);
    if (*end || inet_pton(AF_INET, buf, &cfg->subnet) != 1)
        goto bad;
    if (prefix < 8 || prefix > 30)
        return tm_err_set(err, ERANGE, "$.network.subnet: prefix /%lu out of range (allowed 8..30)", prefix);
    if (ntohl(cfg->subnet.s_addr) & ~prefix_mask((unsigned)prefix))
        return tm_err_set(err, EINVAL,
                          "$.network.subnet: \"%s\" has host bits set (the network "
                          "address of a /%lu)",
                          s, prefix);
    cfg->prefix = (unsigned)prefix;
    return 0;
bad:
    return tm_err_set(err, EINVAL,
                      "$.network.subnet: \"%s\" is not an IPv4 subnet such as "
                      "\"10.223.0.0/24\"",
                      s);
}

static int parse_allow(json_t *net, struct net_device_config *cfg, tm_err *err)
{
    json_t *arr;
    int r = tm_json_get_array(net, "$.network", "allow", false, NET_ALLOW_MAX, &arr, err);
    if (r <= 0)
        return r;
    size_t n = json_array_size(arr);
    if (!n)
        return 0;
    if (!(cfg->allow = calloc(n, sizeof(*cfg->allow))))
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char path[TM_JSON_PATH_MAX], item[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.network.allow", i);
        json_t *pair = json_array_get(arr, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2)
            return tm_err_set(err, EINVAL,
                              "%s: expected a pair of container names such as "
                              "[\"web\", \"db\"]",
                              path);
        for (size_t k = 0; k < 2; k++) {
            const char *s;
            tm_json_path_index(item, path, k);
            if ((r = tm_json_expect_string(json_array_get(pair, k), item, 256, &s, err)) < 0)
                return r;
            if (!config_name_valid(s))
                return tm_err_set(err, EINVAL, "%s: \"%s\" is not a valid container name", item, s);
            snprintf(cfg->allow[i][k], sizeof(cfg->allow[i][k]), "%s", s);
        }
        if (strcmp(cfg->allow[i][0], cfg->allow[i][1]) == 0)
            return tm_err_set(err, EINVAL, "%s: a container with itself", path);
        cfg->nallow++;
    }
    return 0;
}

int config_net_device_parse(json_t *root, struct net_device_config *ret, tm_err *err)
{
    static const char *const keys[] = {"bridge", "subnet", "nat", "allow", NULL};
    struct net_device_config cfg = {.prefix = NET_DEFAULT_PREFIX, .nat = true};
    snprintf(cfg.bridge, sizeof(cfg.bridge), "%s", NET_DEFAULT_BRIDGE);
    inet_pton(AF_INET, NET_DEFAULT_SUBNET, &cfg.subnet);
    json_t *net = NULL;
    const char *s;
    int r = root ? tm_json_get_object(root, "$", "network", false, 8, &net, err) : 0;
    if (r < 0)
        return r;
    if (r > 0) {
        if ((r = tm_json_check_keys(net, "$.network", keys, err)) < 0 ||
            (r = tm_json_get_string(net, "$.network", "bridge", false, 64, &s, err)) < 0)
            return r;
        if (r > 0) {
            if (!config_net_ifname_valid(s))
                return tm_err_set(err, EINVAL,
                                  "$.network.bridge: \"%s\" is not an interface name "
                                  "(1-%d bytes, no '/', ':' or spaces)",
                                  s, IF_NAMESIZE - 1);
            if (strcmp(s, "lo") == 0 || strcmp(s, "eth0") == 0)
                return tm_err_set(err, EINVAL, "$.network.bridge: \"%s\" is taken", s);
            snprintf(cfg.bridge, sizeof(cfg.bridge), "%s", s);
        }
        if ((r = tm_json_get_string(net, "$.network", "subnet", false, 18, &s, err)) < 0)
            return r;
        if (r > 0 && (r = parse_subnet(s, &cfg, err)) < 0)
            return r;
        if ((r = tm_json_get_bool(net, "$.network", "nat", false, &cfg.nat, err)) < 0)
            return r;
        if ((r = parse_allow(net, &cfg, err)) < 0) {
            config_net_device_clear(&cfg);
            return r;
        }
    }
    *ret = cfg;
    return 0;
}

void config_net_device_clear(struct net_device_config *cfg)
{
    free(cfg->allow);
    cfg->allow = NULL;
    cfg->nallow = 0;
}

bool config_net_in_subnet(const struct net_device_config *dev, struct in_addr a)
{
    uint32_t mask = prefix_mask(dev->prefix);
    return (ntohl(a.s_addr) & mask) == ntohl(dev->subnet.s_addr);
}

struct in_addr config_net_bridge_address(const struct net_device_config *dev)
{
    return (struct in_addr){htonl(ntohl(dev->subnet.s_addr) + 1)};
}

/* "tm" + 10 hex digits: the host end of a container's veth. */
bool config_net_is_veth_name(const char *s)
{
    if (strncmp(s, "tm", 2) != 0 || strlen(s) != 12)
        return false;
    for (size_t i = 2; i < 12; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

int config_net_check(const struct net_config *cfg, const struct net_device_config *dev, tm_err *err)
{
    for (size_t i = 0; i < cfg->nifaces; i++)
        if (strcmp(cfg->ifaces[i], dev->bridge) == 0 || config_net_is_veth_name(cfg->ifaces[i]))
            return tm_err_set(err, EINVAL,
                              "$.network.interfaces[%zu]: \"%s\" is the device's "
                              "bridge or one of trustme's veths",
                              i, cfg->ifaces[i]);
    if (cfg->mode != NET_BRIDGED)
        return 0;
    char a[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &dev->subnet, net, sizeof(net));
    if (cfg->has_address) {
        uint32_t h = ntohl(cfg->address.s_addr), n = ntohl(dev->subnet.s_addr);
        uint32_t bcast = n | ~prefix_mask(dev->prefix);
        inet_ntop(AF_INET, &cfg->address, a, sizeof(a));
        if (!config_net_in_subnet(dev, cfg->address))
            return tm_err_set(err, EINVAL,
                              "$.network.address: %s is outside the device's subnet "
                              "%s/%u",
                              a, net, dev->prefix);
        if (h == n || h == bcast)
            return tm_err_set(err, EINVAL, "$.network.address: %s is the %s address of %s/%u", a,
                              h == n ? "network" : "broadcast", net, dev->prefix);
        if (h == n + 1)
            return tm_err_set(err, EINVAL, "$.network.address: %s is the bridge's address", a);
    }
    for (size_t i = 0; i < cfg->nports; i++)
        for (size_t j = 0; j < i; j++)
            if (cfg->ports[i].host == cfg->ports[j].host && cfg->ports[i].proto == cfg->ports[j].proto)
                return tm_err_set(err, EINVAL,
                                  "$.network.ports[%zu].host: %s port %u is forwarded "
                                  "twice",
                                  i, cfg->ports[i].proto == IPPROTO_TCP ? "tcp" : "udp", cfg->ports[i].host);
    return 0;
}
