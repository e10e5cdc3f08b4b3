/* SPDX-License-Identifier: GPL-2.0-or-later */
/* config_parse(): every rejection names the JSON path it is about; accepted configs carry the
 * documented defaults and every field given.
 *
 * The documents are written with single quotes for readability; sq() turns them into JSON. */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/capability.h>

#include "config.h"

static int parse_sq(const char *text, struct container_config **cfg, tm_err *err)
{
    char *json = sq(text);
    int r = config_parse(json, strlen(json), cfg, err);
    free(json);
    return r;
}

static void assert_rejected(const char *text, const char *path)
{
    struct container_config *cfg = NULL;
    tm_err err = {0};
    int r = parse_sq(text, &cfg, &err);
    if (r >= 0) {
        print_error("accepted: %s\n", text);
        config_free(cfg);
        fail();
    }
    assert_int_equal(err.code, -r);
    assert_null(cfg); /* ret is written only on success */
    assert_err_at(&err, path);
}

static struct container_config *parse_ok(const char *text)
{
    struct container_config *cfg = NULL;
    tm_err err = {0};
    int r = parse_sq(text, &cfg, &err);
    if (r < 0)
        print_error("rejected: %s\n  with: %s\n", text, err.msg);
    assert_int_equal(r, 0);
    assert_non_null(cfg);
    return cfg;
}

#define HEAD "{'name':'demo','rootfs':{'path':'/srv/demo'}"
#define NAMED(n) "{'name':" n ",'rootfs':{'path':'/srv/demo'}}"
#define ROOTFS(r) "{'name':'demo','rootfs':" r "}"
#define DEVICE(fields) ",'devices':[{" fields "}]"
#define NULL_DEV "'path':'/dev/null','type':'c','major':1,'minor':3"

/* X(test name, members appended to a minimal valid document, JSON path the error must name) */
#define REJECT_MEMBERS(X)                                                                                             \
    X(unknown_top_key, ",'bogus':1", "$.bogus")                                                                       \
    X(unknown_top_key_wrong_case, ",'Hostname':'web'", "$.Hostname")                                                  \
    X(init_not_string, ",'init':['/bin/sh']", "$.init")                                                               \
    X(args_not_array, ",'args':'-v'", "$.args")                                                                       \
    X(args_element_not_string, ",'args':['-v',2]", "$.args[1]")                                                       \
    X(args_element_null, ",'args':[null]", "$.args[0]")                                                               \
    X(env_not_object, ",'env':['A=1']", "$.env")                                                                      \
    X(env_value_number, ",'env':{'A':1}", "$.env.A")                                                                  \
    X(env_value_null, ",'env':{'A':null}", "$.env.A")                                                                 \
    X(env_value_bool, ",'env':{'A':true}", "$.env.A")                                                                 \
    X(env_value_object, ",'env':{'A':{}}", "$.env.A")                                                                 \
    X(env_value_array, ",'env':{'A':['x']}", "$.env.A")                                                               \
    X(env_value_nul, ",'env':{'A':'x\\u0000y'}", "$.env.A")                                                           \
    X(env_key_digit_first, ",'env':{'1A':'x'}", "$.env.1A")                                                           \
    X(env_key_dash, ",'env':{'A-B':'x'}", "$.env.A-B")                                                                \
    X(env_key_equals, ",'env':{'A=B':'x'}", "$.env.A=B")                                                              \
    X(env_key_space, ",'env':{'A B':'x'}", "$.env.A B")                                                               \
    X(env_key_empty, ",'env':{'':'x'}", "$.env.")                                                                     \
    X(hostname_not_string, ",'hostname':1", "$.hostname")                                                             \
    X(hostname_empty, ",'hostname':''", "$.hostname")                                                                 \
    X(hostname_leading_dash, ",'hostname':'-web'", "$.hostname")                                                      \
    X(hostname_leading_dot, ",'hostname':'.web'", "$.hostname")                                                       \
    X(hostname_underscore, ",'hostname':'web_1'", "$.hostname")                                                       \
    X(hostname_space, ",'hostname':'web 1'", "$.hostname")                                                            \
    X(init_relative, ",'init':'sbin/init'", "$.init")                                                                 \
    X(init_dotdot, ",'init':'/sbin/../bin/sh'", "$.init")                                                             \
    X(init_dot, ",'init':'/sbin/./init'", "$.init")                                                                   \
    X(init_empty, ",'init':''", "$.init")                                                                             \
    X(memory_string, ",'memory_limit_mb':'512'", "$.memory_limit_mb")                                                 \
    X(memory_fraction, ",'memory_limit_mb':512.5", "$.memory_limit_mb")                                               \
    X(memory_exponent, ",'memory_limit_mb':1e3", "$.memory_limit_mb")                                                 \
    X(memory_1, ",'memory_limit_mb':1", "$.memory_limit_mb")                                                          \
    X(memory_3, ",'memory_limit_mb':3", "$.memory_limit_mb")                                                          \
    X(memory_negative, ",'memory_limit_mb':-1", "$.memory_limit_mb")                                                  \
    X(memory_above_max, ",'memory_limit_mb':16777217", "$.memory_limit_mb")                                           \
    X(memory_beyond_int64, ",'memory_limit_mb':99999999999999999999", "$")                                            \
    X(pids_bool, ",'pids_limit':true", "$.pids_limit")                                                                \
    X(pids_negative, ",'pids_limit':-1", "$.pids_limit")                                                              \
    X(pids_above_max, ",'pids_limit':4194305", "$.pids_limit")                                                        \
    X(cpus_number, ",'cpus':0", "$.cpus")                                                                             \
    X(cpus_empty, ",'cpus':''", "$.cpus")                                                                             \
    X(cpus_open_range, ",'cpus':'1-'", "$.cpus")                                                                      \
    X(cpus_descending, ",'cpus':'3-1'", "$.cpus")                                                                     \
    X(cpus_empty_item, ",'cpus':'0,,1'", "$.cpus")                                                                    \
    X(cpus_1024, ",'cpus':'1024'", "$.cpus")                                                                          \
    X(cpus_range_to_1024, ",'cpus':'0-1024'", "$.cpus")                                                               \
    X(cpus_letter, ",'cpus':'a'", "$.cpus")                                                                           \
    X(cpus_trailing_comma, ",'cpus':'0,'", "$.cpus")                                                                  \
    X(cpus_leading_comma, ",'cpus':',0'", "$.cpus")                                                                   \
    X(cpus_negative, ",'cpus':'-1'", "$.cpus")                                                                        \
    X(cpus_space, ",'cpus':' 0'", "$.cpus")                                                                           \
    X(cpus_double_range, ",'cpus':'0-1-2'", "$.cpus")                                                                 \
    X(data_string, ",'data_size_mb':'64'", "$.data_size_mb")                                                          \
    X(data_1, ",'data_size_mb':1", "$.data_size_mb")                                                                  \
    X(data_7, ",'data_size_mb':7", "$.data_size_mb")                                                                  \
    X(data_negative, ",'data_size_mb':-8", "$.data_size_mb")                                                          \
    X(data_above_max, ",'data_size_mb':16777217", "$.data_size_mb")                                                   \
    X(devices_not_array, ",'devices':{}", "$.devices")                                                                \
    X(device_not_object, ",'devices':['/dev/null']", "$.devices[0]")                                                  \
    X(device_unknown_key, DEVICE(NULL_DEV ",'mode':'0666'"), "$.devices[0].mode")                                     \
    X(device_missing_path, DEVICE("'type':'c','major':1,'minor':3"), "$.devices[0].path")                             \
    X(device_missing_type, DEVICE("'path':'/dev/null','major':1,'minor':3"), "$.devices[0].type")                     \
    X(device_missing_major, DEVICE("'path':'/dev/null','type':'c','minor':3"), "$.devices[0].major")                  \
    X(device_missing_minor, DEVICE("'path':'/dev/null','type':'c','major':1"), "$.devices[0].minor")                  \
    X(device_path_not_string, DEVICE("'path':1,'type':'c','major':1,'minor':3"), "$.devices[0].path")                 \
    X(device_path_outside_dev, DEVICE("'path':'/tmp/null','type':'c','major':1,'minor':3"), "$.devices[0].path")      \
    X(device_path_dev_itself, DEVICE("'path':'/dev/','type':'c','major':1,'minor':3"), "$.devices[0].path")           \
    X(device_path_dev_prefix, DEVICE("'path':'/devnull','type':'c','major':1,'minor':3"), "$.devices[0].path")        \
    X(device_path_relative, DEVICE("'path':'dev/null','type':'c','major':1,'minor':3"), "$.devices[0].path")          \
    X(device_path_dotdot, DEVICE("'path':'/dev/../etc/shadow','type':'c','major':1,'minor':3"), "$.devices[0].path")  \
    X(device_path_dot, DEVICE("'path':'/dev/./null','type':'c','major':1,'minor':3"), "$.devices[0].path")            \
    X(device_path_double_slash, DEVICE("'path':'/dev//null','type':'c','major':1,'minor':3"), "$.devices[0].path")    \
    X(device_type_not_string, DEVICE("'path':'/dev/null','type':99,'major':1,'minor':3"), "$.devices[0].type")        \
    X(device_type_unknown, DEVICE("'path':'/dev/null','type':'x','major':1,'minor':3"), "$.devices[0].type")          \
    X(device_type_uppercase, DEVICE("'path':'/dev/null','type':'C','major':1,'minor':3"), "$.devices[0].type")        \
    X(device_type_empty, DEVICE("'path':'/dev/null','type':'','major':1,'minor':3"), "$.devices[0].type")             \
    X(device_type_two_letters, DEVICE("'path':'/dev/null','type':'cb','major':1,'minor':3"), "$.devices[0].type")     \
    X(device_major_string, DEVICE("'path':'/dev/null','type':'c','major':'1','minor':3"), "$.devices[0].major")       \
    X(device_major_negative, DEVICE("'path':'/dev/null','type':'c','major':-1,'minor':3"), "$.devices[0].major")      \
    X(device_major_too_big, DEVICE("'path':'/dev/null','type':'c','major':4096,'minor':3"), "$.devices[0].major")     \
    X(device_minor_fraction, DEVICE("'path':'/dev/null','type':'c','major':1,'minor':3.0"), "$.devices[0].minor")     \
    X(device_minor_negative, DEVICE("'path':'/dev/null','type':'c','major':1,'minor':-1"), "$.devices[0].minor")      \
    X(device_minor_too_big, DEVICE("'path':'/dev/null','type':'c','major':1,'minor':1048576"), "$.devices[0].minor")  \
    X(device_access_not_string, DEVICE(NULL_DEV ",'access':7"), "$.devices[0].access")                                \
    X(device_access_repeated, DEVICE(NULL_DEV ",'access':'rr'"), "$.devices[0].access")                               \
    X(device_access_invalid_letter, DEVICE(NULL_DEV ",'access':'rx'"), "$.devices[0].access")                         \
    X(device_access_empty, DEVICE(NULL_DEV ",'access':''"), "$.devices[0].access")                                    \
    X(device_access_too_long, DEVICE(NULL_DEV ",'access':'rwmr'"), "$.devices[0].access")                             \
    X(device_access_uppercase, DEVICE(NULL_DEV ",'access':'R'"), "$.devices[0].access")                               \
    X(device_duplicate_path, ",'devices':[{" NULL_DEV "},{" NULL_DEV ",'access':'r'}]", "$.devices[1].path")          \
    X(device_second_entry_bad,                                                                                        \
      ",'devices':[{" NULL_DEV "},{'path':'/dev/zero','type':'c',"                                                    \
      "'major':-5,'minor':5}]",                                                                                       \
      "$.devices[1].major")                                                                                           \
    X(caps_not_array, ",'capabilities':'CAP_NET_RAW'", "$.capabilities")                                              \
    X(cap_not_string, ",'capabilities':[13]", "$.capabilities[0]")                                                    \
    X(cap_lowercase, ",'capabilities':['cap_net_raw']", "$.capabilities[0]")                                          \
    X(cap_mixed_case, ",'capabilities':['CAP_Net_Raw']", "$.capabilities[0]")                                         \
    X(cap_unknown, ",'capabilities':['CAP_BOGUS']", "$.capabilities[0]")                                              \
    X(cap_missing_prefix, ",'capabilities':['NET_RAW']", "$.capabilities[0]")                                         \
    X(cap_prefix_only, ",'capabilities':['CAP_']", "$.capabilities[0]")                                               \
    X(cap_trailing_space, ",'capabilities':['CAP_NET_RAW ']", "$.capabilities[0]")                                    \
    X(cap_number, ",'capabilities':['CAP_13']", "$.capabilities[0]")                                                  \
    X(cap_second_bad, ",'capabilities':['CAP_NET_RAW','CAP_NOPE']", "$.capabilities[1]")                              \
    X(user_namespace_int, ",'user_namespace':1", "$.user_namespace")                                                  \
    X(user_namespace_string, ",'user_namespace':'true'", "$.user_namespace")                                          \
    X(autostart_null, ",'autostart':null", "$.autostart")                                                             \
    X(duplicate_top_key, ",'memory_limit_mb':4,'memory_limit_mb':8", "$")                                             \
    X(duplicate_device_key, DEVICE(NULL_DEV ",'major':2"), "$")                                                       \
    X(token_other_string, ",'token':'soft'", "$.token")                                                               \
    X(token_number, ",'token':1", "$.token")                                                                          \
    X(token_missing_type, ",'token':{}", "$.token.type")                                                              \
    X(token_unknown_type, ",'token':{'type':'tpm'}", "$.token.type")                                                  \
    X(token_unknown_key, ",'token':{'type':'soft','pin':'1234'}", "$.token.pin")                                      \
    X(token_kdf_not_power_of_two, ",'token':{'type':'soft','kdf_n':3000}", "$.token.kdf_n")                           \
    X(token_kdf_too_small, ",'token':{'type':'soft','kdf_n':512}", "$.token.kdf_n")                                   \
    X(token_kdf_too_large, ",'token':{'type':'soft','kdf_n':2097152}", "$.token.kdf_n")                               \
    X(token_soft_with_module, ",'token':{'type':'soft','module':'/m.so'}", "$.token.module")                          \
    X(token_pkcs11_no_module, ",'token':{'type':'pkcs11','label':'t'}", "$.token.module")                             \
    X(token_pkcs11_relative, ",'token':{'type':'pkcs11','module':'m.so','label':'t'}", "$.token.module")              \
    X(token_pkcs11_no_label, ",'token':{'type':'pkcs11','module':'/m.so'}", "$.token")                                \
    X(token_pkcs11_with_kdf, ",'token':{'type':'pkcs11','module':'/m.so','label':'t','kdf_n':1024}", "$.token.kdf_n") \
    X(token_pkcs11_long_label,                                                                                        \
      ",'token':{'type':'pkcs11','module':'/m.so','label':'123456789012345678901234567890123'}", "$.token.label")     \
    X(token_on_tmpfs_data, ",'data_size_mb':0,'token':{'type':'soft'}", "$.token")                                    \
    X(doc_trailing_garbage, "} x", "$")                                                                               \
    X(doc_second_object, "}{}", "$")                                                                                  \
    X(doc_trailing_comma, ",}", "$")

/* X(test name, whole document, JSON path the error must name) */
#define REJECT_DOCS(X)                                                                     \
    X(missing_name, "{'rootfs':{'path':'/srv/demo'}}", "$.name")                           \
    X(missing_rootfs, "{'name':'demo'}", "$")                                              \
    X(name_not_string, NAMED("5"), "$.name")                                               \
    X(name_null, NAMED("null"), "$.name")                                                  \
    X(name_empty, NAMED("''"), "$.name")                                                   \
    X(name_space, NAMED("'my box'"), "$.name")                                             \
    X(name_slash, NAMED("'a/b'"), "$.name")                                                \
    X(name_leading_dash, NAMED("'-demo'"), "$.name")                                       \
    X(name_leading_dot, NAMED("'.demo'"), "$.name")                                        \
    X(name_leading_underscore, NAMED("'_demo'"), "$.name")                                 \
    X(name_non_ascii, NAMED("'d\xc3\xabmo'"), "$.name")                                    \
    X(name_nul, NAMED("'de\\u0000mo'"), "$.name")                                          \
    X(name_uuid, NAMED("'123e4567-e89b-42d3-a456-426614174000'"), "$.name")                \
    X(name_uuid_uppercase, NAMED("'123E4567-E89B-42D3-A456-426614174000'"), "$.name")      \
    X(rootfs_not_object, ROOTFS("'/srv/demo'"), "$.rootfs")                                \
    X(rootfs_missing_path, ROOTFS("{}"), "$.rootfs.path")                                  \
    X(rootfs_unknown_key, ROOTFS("{'path':'/srv/demo','ro':true}"), "$.rootfs.ro")         \
    X(rootfs_path_not_string, ROOTFS("{'path':1}"), "$.rootfs.path")                       \
    X(rootfs_path_relative, ROOTFS("{'path':'srv/demo'}"), "$.rootfs.path")                \
    X(rootfs_path_empty, ROOTFS("{'path':''}"), "$.rootfs.path")                           \
    X(rootfs_path_dotdot, ROOTFS("{'path':'/srv/../etc'}"), "$.rootfs.path")               \
    X(rootfs_path_trailing_dotdot, ROOTFS("{'path':'/srv/demo/..'}"), "$.rootfs.path")     \
    X(rootfs_path_dot, ROOTFS("{'path':'/srv/./demo'}"), "$.rootfs.path")                  \
    X(rootfs_path_double_slash, ROOTFS("{'path':'/srv//demo'}"), "$.rootfs.path")          \
    X(rootfs_type_not_string, ROOTFS("{'path':'/srv/demo','type':true}"), "$.rootfs.type") \
    X(rootfs_type_unknown, ROOTFS("{'path':'/srv/demo','type':'ext4'}"), "$.rootfs.type")  \
    X(rootfs_type_uppercase, ROOTFS("{'path':'/srv/demo','type':'DIR'}"), "$.rootfs.type") \
    X(rootfs_type_empty, ROOTFS("{'path':'/srv/demo','type':''}"), "$.rootfs.type")        \
    X(rootfs_duplicate_key, ROOTFS("{'path':'/srv/demo','path':'/srv/other'}"), "$")       \
    X(doc_array, "[]", "$")                                                                \
    X(doc_string, "'demo'", "$")                                                           \
    X(doc_number, "42", "$")                                                               \
    X(doc_null, "null", "$")                                                               \
    X(doc_empty, "", "$")                                                                  \
    X(doc_whitespace_only, " \n", "$")                                                     \
    X(doc_unquoted_key, "{name:'demo'}", "$")

#define DEFINE_MEMBERS_TEST(name, members, path) \
    static void reject_##name(void **state)      \
    {                                            \
        (void)state;                             \
        assert_rejected(HEAD members "}", path); \
    }
#define DEFINE_DOC_TEST(name, doc, path)    \
    static void reject_##name(void **state) \
    {                                       \
        (void)state;                        \
        assert_rejected(doc, path);         \
    }
REJECT_MEMBERS(DEFINE_MEMBERS_TEST)
REJECT_DOCS(DEFINE_DOC_TEST)

static void reject_truncated_document(void **state)
{
    (void)state;
    assert_rejected(HEAD, "$");
}

static void truncated_document_is_reported_as_such(void **state)
{
    (void)state;
    struct container_config *cfg = NULL;
    tm_err err = {0};
    assert_true(parse_sq(HEAD, &cfg, &err) < 0);
    assert_err_contains(&err, "ends in the middle");
}

static void reject_nul_byte_in_document(void **state)
{
    (void)state;
    static const char doc[] = "{\"name\":\"demo\",\"rootfs\":{\"path\":\"/srv/demo\"}}\0";
    struct container_config *cfg = NULL;
    tm_err err = {0};
    assert_true(config_parse(doc, sizeof(doc) - 1, &cfg, &err) < 0);
    assert_null(cfg);
    assert_err_at(&err, "$");
}

/* Documents with generated long or numerous members. */
static void reject_generated(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject_generated(const char *path, const char *fmt, ...)
{
    char *doc;
    va_list ap;
    va_start(ap, fmt);
    assert_true(vasprintf(&doc, fmt, ap) > 0);
    va_end(ap);
    assert_rejected(doc, path);
    free(doc);
}

/* n comma-separated items; item(i) writes item i into buf. */
static char *json_list(size_t n, void (*item)(char *buf, size_t size, size_t i))
{
    size_t cap = n * 80 + 1, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            s[len++] = ',';
        item(s + len, cap - len, i);
        len += strlen(s + len);
    }
    return s;
}

static void arg_item(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "'a%zu'", i);
}
static void env_item(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "'V%zu':'x'", i);
}
static void cap_item(char *buf, size_t size, size_t i)
{
    (void)i;
    snprintf(buf, size, "'CAP_CHOWN'");
}
static void device_item(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "{'path':'/dev/d%zu','type':'c','major':1,'minor':1}", i);
}

static void reject_name_too_long(void **state)
{
    (void)state;
    char *name = repeat('a', CONFIG_NAME_MAX + 1);
    reject_generated("$.name", NAMED("'%s'"), name);
    free(name);
}

static void reject_name_far_too_long(void **state)
{
    (void)state;
    char *name = repeat('a', 300);
    reject_generated("$.name", NAMED("'%s'"), name);
    free(name);
}

static void reject_hostname_too_long(void **state)
{
    (void)state;
    char *host = repeat('h', CONFIG_HOSTNAME_MAX + 1);
    reject_generated("$.hostname", HEAD ",'hostname':'%s'}", host);
    free(host);
}

static void reject_arg_too_long(void **state)
{
    (void)state;
    char *arg = repeat('x', CONFIG_ARG_MAX + 1);
    reject_generated("$.args[0]", HEAD ",'args':['%s']}", arg);
    free(arg);
}

static void reject_env_value_too_long(void **state)
{
    (void)state;
    char *value = repeat('x', CONFIG_ARG_MAX + 1);
    reject_generated("$.env.A", HEAD ",'env':{'A':'%s'}}", value);
    free(value);
}

static void reject_env_key_too_long(void **state)
{
    (void)state;
    char *key = repeat('K', 257), *doc;
    assert_true(asprintf(&doc, HEAD ",'env':{'%s':'x'}}", key) > 0);
    struct container_config *cfg = NULL;
    tm_err err = {0};
    assert_true(parse_sq(doc, &cfg, &err) < 0);
    /* The path itself is cut at TM_JSON_PATH_MAX; it still starts with the key. */
    assert_int_equal(strncmp(err.msg, "$.env.KKKK", 10), 0);
    free(doc);
    free(key);
}

static void reject_cpus_too_long(void **state)
{
    (void)state;
    char *cpus = repeat('1', 128);
    reject_generated("$.cpus", HEAD ",'cpus':'%s'}", cpus);
    free(cpus);
}

static void reject_cap_too_long(void **state)
{
    (void)state;
    char *cap = repeat('A', 41);
    memcpy(cap, "CAP_", 4);
    reject_generated("$.capabilities[0]", HEAD ",'capabilities':['%s']}", cap);
    free(cap);
}

static void reject_too_many_args(void **state)
{
    (void)state;
    char *list = json_list(CONFIG_MAX_ARGS + 1, arg_item);
    reject_generated("$.args", HEAD ",'args':[%s]}", list);
    free(list);
}

static void reject_too_many_env(void **state)
{
    (void)state;
    char *list = json_list(CONFIG_MAX_ENV + 1, env_item);
    reject_generated("$.env", HEAD ",'env':{%s}}", list);
    free(list);
}

static void reject_too_many_devices(void **state)
{
    (void)state;
    char *list = json_list(CONFIG_MAX_DEVICES + 1, device_item);
    reject_generated("$.devices", HEAD ",'devices':[%s]}", list);
    free(list);
}

static void reject_too_many_capabilities(void **state)
{
    (void)state;
    char *list = json_list(65, cap_item);
    reject_generated("$.capabilities", HEAD ",'capabilities':[%s]}", list);
    free(list);
}

/* --- accepted documents --- */

static bool strv_contains(char **v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

static void minimal_config_gets_defaults(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD "}");
    assert_string_equal(cfg->name, "demo");
    assert_string_equal(cfg->rootfs, "/srv/demo");
    assert_int_equal(cfg->rootfs_type, ROOTFS_AUTO);
    assert_string_equal(cfg->init, "/sbin/init");
    assert_string_equal(cfg->hostname, "demo");
    assert_int_equal(cfg->memory_limit_mb, CONFIG_DEFAULT_MEMORY_MB);
    assert_int_equal(cfg->memory_limit_mb, 1024);
    assert_int_equal(cfg->pids_limit, 4096);
    assert_int_equal(cfg->data_size_mb, 64);
    assert_string_equal(cfg->cpus, "");
    assert_true(cfg->user_namespace);
    assert_false(cfg->autostart);
    assert_int_equal(cfg->caps_keep, 0);
    assert_int_equal(cfg->ndevices, 0);
    config_free(cfg);
}

static void minimal_config_has_empty_vectors(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD "}");
    /* Callers hand args and env to execve without checking for NULL. */
    assert_non_null(cfg->args);
    assert_null(cfg->args[0]);
    assert_int_equal(cfg->nargs, 0);
    assert_non_null(cfg->env);
    assert_null(cfg->env[0]);
    assert_int_equal(cfg->nenv, 0);
    config_free(cfg);
}

static const char full_config[] = "{'name':'web-1.prod',"
                                  " 'rootfs':{'path':'/var/lib/images/web.squashfs','type':'squashfs'},"
                                  " 'init':'/usr/bin/server',"
                                  " 'args':['--port','8080',''],"
                                  " 'env':{'PATH':'/usr/bin:/bin','EMPTY':'','_X1':'a=b'},"
                                  " 'hostname':'web',"
                                  " 'memory_limit_mb':512,"
                                  " 'pids_limit':100,"
                                  " 'cpus':'0-1,3',"
                                  " 'data_size_mb':0,"
                                  " 'devices':[{'path':'/dev/net/tun','type':'c','major':10,'minor':200,'access':'rw'},"
                                  "            {'path':'/dev/loop0','type':'b','major':7,'minor':0}],"
                                  " 'capabilities':['CAP_NET_ADMIN','CAP_SYS_TIME'],"
                                  " 'user_namespace':false,"
                                  " 'autostart':true}\n";

static void full_config_scalars(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(full_config);
    assert_string_equal(cfg->name, "web-1.prod");
    assert_string_equal(cfg->rootfs, "/var/lib/images/web.squashfs");
    assert_int_equal(cfg->rootfs_type, ROOTFS_SQUASHFS);
    assert_string_equal(cfg->init, "/usr/bin/server");
    assert_string_equal(cfg->hostname, "web");
    assert_int_equal(cfg->memory_limit_mb, 512);
    assert_int_equal(cfg->pids_limit, 100);
    assert_string_equal(cfg->cpus, "0-1,3");
    assert_int_equal(cfg->data_size_mb, 0);
    assert_false(cfg->user_namespace);
    assert_true(cfg->autostart);
    config_free(cfg);
}

static void full_config_args_in_order(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(full_config);
    assert_int_equal(cfg->nargs, 3);
    assert_string_equal(cfg->args[0], "--port");
    assert_string_equal(cfg->args[1], "8080");
    assert_string_equal(cfg->args[2], "");
    assert_null(cfg->args[3]);
    config_free(cfg);
}

static void env_becomes_key_value_strings(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(full_config);
    assert_int_equal(cfg->nenv, 3);
    assert_true(strv_contains(cfg->env, "PATH=/usr/bin:/bin"));
    assert_true(strv_contains(cfg->env, "EMPTY="));
    assert_true(strv_contains(cfg->env, "_X1=a=b"));
    assert_null(cfg->env[3]);
    config_free(cfg);
}

static void full_config_devices(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(full_config);
    assert_int_equal(cfg->ndevices, 2);
    const struct device_rule *tun = &cfg->devices[0], *loop = &cfg->devices[1];
    assert_string_equal(tun->path, "/dev/net/tun");
    assert_int_equal(tun->type, 'c');
    assert_int_equal(tun->major, 10);
    assert_int_equal(tun->minor, 200);
    assert_string_equal(tun->access, "rw");
    assert_string_equal(loop->path, "/dev/loop0");
    assert_int_equal(loop->type, 'b');
    assert_int_equal(loop->major, 7);
    assert_int_equal(loop->minor, 0);
    assert_string_equal(loop->access, "rwm"); /* the default */
    config_free(cfg);
}

static void caps_keep_bits_are_set(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(full_config);
    assert_int_equal(cfg->caps_keep, (1ULL << CAP_NET_ADMIN) | (1ULL << CAP_SYS_TIME));
    config_free(cfg);
}

static void duplicate_capability_sets_one_bit(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'capabilities':['CAP_NET_RAW','CAP_NET_RAW','CAP_CHOWN']}");
    assert_int_equal(cfg->caps_keep, (1ULL << CAP_NET_RAW) | (1ULL << CAP_CHOWN));
    config_free(cfg);
}

static void highest_capability_is_accepted(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'capabilities':['CAP_CHECKPOINT_RESTORE']}");
    assert_int_equal(cfg->caps_keep, 1ULL << CAP_CHECKPOINT_RESTORE);
    config_free(cfg);
}

static void integer_bounds_are_inclusive(void **state)
{
    (void)state;
    struct container_config *cfg =
        parse_ok(HEAD ",'memory_limit_mb':16777216,'pids_limit':4194304,'data_size_mb':16777216}");
    assert_int_equal(cfg->memory_limit_mb, 1 << 24);
    assert_int_equal(cfg->pids_limit, 4194304);
    assert_int_equal(cfg->data_size_mb, 1 << 24);
    config_free(cfg);
}

static void smallest_limits_are_accepted(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'memory_limit_mb':4,'pids_limit':1,'data_size_mb':8}");
    assert_int_equal(cfg->memory_limit_mb, 4);
    assert_int_equal(cfg->pids_limit, 1);
    assert_int_equal(cfg->data_size_mb, 8);
    config_free(cfg);
}

static void zero_means_no_limit(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'memory_limit_mb':0,'pids_limit':0,'data_size_mb':0}");
    assert_int_equal(cfg->memory_limit_mb, 0);
    assert_int_equal(cfg->pids_limit, 0);
    assert_int_equal(cfg->data_size_mb, 0);
    config_free(cfg);
}

static void device_number_bounds_are_inclusive(void **state)
{
    (void)state;
    struct container_config *cfg =
        parse_ok(HEAD DEVICE("'path':'/dev/x','type':'b','major':4095,'minor':1048575,'access':'m'") "}");
    assert_int_equal(cfg->devices[0].major, 4095);
    assert_int_equal(cfg->devices[0].minor, 1048575);
    assert_string_equal(cfg->devices[0].access, "m");
    config_free(cfg);
}

static void empty_device_list_is_accepted(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'devices':[]}");
    assert_int_equal(cfg->ndevices, 0);
    config_free(cfg);
}

static void longest_name_is_accepted(void **state)
{
    (void)state;
    char *name = repeat('n', CONFIG_NAME_MAX), *doc;
    assert_true(asprintf(&doc, NAMED("'%s'"), name) > 0);
    struct container_config *cfg = parse_ok(doc);
    assert_string_equal(cfg->name, name);
    assert_string_equal(cfg->hostname, name);
    config_free(cfg);
    free(doc);
    free(name);
}

static void longest_hostname_is_accepted(void **state)
{
    (void)state;
    char *host = repeat('h', CONFIG_HOSTNAME_MAX), *doc;
    assert_true(asprintf(&doc, HEAD ",'hostname':'%s'}", host) > 0);
    struct container_config *cfg = parse_ok(doc);
    assert_string_equal(cfg->hostname, host);
    config_free(cfg);
    free(doc);
    free(host);
}

static void every_rootfs_type_is_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        enum rootfs_type type;
    } cases[] = {
        {ROOTFS("{'path':'/r','type':'auto'}"), ROOTFS_AUTO},
        {ROOTFS("{'path':'/r','type':'dir'}"), ROOTFS_DIR},
        {ROOTFS("{'path':'/r','type':'squashfs'}"), ROOTFS_SQUASHFS},
        {ROOTFS("{'path':'/r','type':'erofs'}"), ROOTFS_EROFS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct container_config *cfg = parse_ok(cases[i].doc);
        assert_int_equal(cfg->rootfs_type, cases[i].type);
        config_free(cfg);
    }
}

static void valid_cpu_lists_are_accepted(void **state)
{
    (void)state;
    static const char *const lists[] = {"0", "0-1", "0,2-3", "1023", "3-3", "0-1023", "1,0"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        char *doc;
        assert_true(asprintf(&doc, HEAD ",'cpus':'%s'}", lists[i]) > 0);
        struct container_config *cfg = parse_ok(doc);
        assert_string_equal(cfg->cpus, lists[i]);
        config_free(cfg);
        free(doc);
    }
}

static void trailing_whitespace_is_accepted(void **state)
{
    (void)state;
    config_free(parse_ok(HEAD "} \t\r\n\n"));
}

static void name_with_underscore_needs_no_hostname(void **state)
{
    (void)state;
    /* "web_1" is a valid container name; the default host name derived from it must not turn
     * the minimal config into an error about a key the user never wrote. */
    struct container_config *cfg = parse_ok(NAMED("'web_1'"));
    assert_string_equal(cfg->name, "web_1");
    config_free(cfg);
}

static void token_defaults_to_soft_for_a_stored_volume(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD "}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_SOFT);
    assert_int_equal(cfg->token.kdf_n, 0);
    config_free(cfg);
    /* A tmpfs data volume is never stored: nothing to encrypt, no token by default. */
    cfg = parse_ok(HEAD ",'data_size_mb':0}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_NONE);
    config_free(cfg);
    cfg = parse_ok(HEAD ",'data_size_mb':0,'token':'none'}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_NONE);
    config_free(cfg);
}

static void token_kinds_are_parsed(void **state)
{
    (void)state;
    struct container_config *cfg = parse_ok(HEAD ",'token':'none'}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_NONE);
    assert_string_equal(token_kind_name(cfg->token.kind), "none");
    config_free(cfg);
    cfg = parse_ok(HEAD ",'token':{'type':'soft','kdf_n':1024}}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_SOFT);
    assert_int_equal(cfg->token.kdf_n, 1024);
    assert_string_equal(token_kind_name(cfg->token.kind), "soft");
    config_free(cfg);
    cfg = parse_ok(HEAD ",'token':{'type':'pkcs11','module':'/usr/lib/softhsm/libsofthsm2.so',"
                        "'label':'box','serial':'0123456789abcdef'}}");
    assert_int_equal(cfg->token.kind, TOKEN_KIND_PKCS11);
    assert_string_equal(cfg->token.module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(cfg->token.label, "box");
    assert_string_equal(cfg->token.serial, "0123456789abcdef");
    assert_string_equal(token_kind_name(cfg->token.kind), "pkcs11");
    config_free(cfg);
    cfg = parse_ok(HEAD ",'token':{'type':'pkcs11','module':'/m.so','serial':'42'}}");
    assert_string_equal(cfg->token.label, "");
    assert_string_equal(cfg->token.serial, "42");
    config_free(cfg);
}

static void config_free_accepts_null(void **state)
{
    (void)state;
    config_free(NULL);
}

static void name_validation(void **state)
{
    (void)state;
    assert_true(config_name_valid("a"));
    assert_true(config_name_valid("web-1.prod_x"));
    assert_false(config_name_valid(""));
    assert_false(config_name_valid("-a"));
    assert_false(config_name_valid("00000000-0000-0000-0000-000000000000"));
    /* 36 characters but not UUID-shaped: a fine name. */
    assert_true(config_name_valid("00000000x0000-0000-0000-000000000000"));
}

static void rootfs_type_names(void **state)
{
    (void)state;
    assert_string_equal(rootfs_type_name(ROOTFS_AUTO), "auto");
    assert_string_equal(rootfs_type_name(ROOTFS_DIR), "dir");
    assert_string_equal(rootfs_type_name(ROOTFS_SQUASHFS), "squashfs");
    assert_string_equal(rootfs_type_name(ROOTFS_EROFS), "erofs");
}

#define LIST_TEST(name, ...) cmocka_unit_test(reject_##name),

int main(void)
{
    const struct CMUnitTest tests[] = {
        REJECT_MEMBERS(LIST_TEST) REJECT_DOCS(LIST_TEST) cmocka_unit_test(reject_truncated_document),
        cmocka_unit_test(truncated_document_is_reported_as_such),
        cmocka_unit_test(reject_nul_byte_in_document),
        cmocka_unit_test(reject_name_too_long),
        cmocka_unit_test(reject_name_far_too_long),
        cmocka_unit_test(reject_hostname_too_long),
        cmocka_unit_test(reject_arg_too_long),
        cmocka_unit_test(reject_env_value_too_long),
        cmocka_unit_test(reject_env_key_too_long),
        cmocka_unit_test(reject_cpus_too_long),
        cmocka_unit_test(reject_cap_too_long),
        cmocka_unit_test(reject_too_many_args),
        cmocka_unit_test(reject_too_many_env),
        cmocka_unit_test(reject_too_many_devices),
        cmocka_unit_test(reject_too_many_capabilities),
        cmocka_unit_test(minimal_config_gets_defaults),
        cmocka_unit_test(minimal_config_has_empty_vectors),
        cmocka_unit_test(full_config_scalars),
        cmocka_unit_test(full_config_args_in_order),
        cmocka_unit_test(env_becomes_key_value_strings),
        cmocka_unit_test(full_config_devices),
        cmocka_unit_test(caps_keep_bits_are_set),
        cmocka_unit_test(duplicate_capability_sets_one_bit),
        cmocka_unit_test(highest_capability_is_accepted),
        cmocka_unit_test(integer_bounds_are_inclusive),
        cmocka_unit_test(smallest_limits_are_accepted),
        cmocka_unit_test(zero_means_no_limit),
        cmocka_unit_test(device_number_bounds_are_inclusive),
        cmocka_unit_test(empty_device_list_is_accepted),
        cmocka_unit_test(longest_name_is_accepted),
        cmocka_unit_test(longest_hostname_is_accepted),
        cmocka_unit_test(every_rootfs_type_is_accepted),
        cmocka_unit_test(valid_cpu_lists_are_accepted),
        cmocka_unit_test(trailing_whitespace_is_accepted),
        cmocka_unit_test(name_with_underscore_needs_no_hostname),
        cmocka_unit_test(token_defaults_to_soft_for_a_stored_volume),
        cmocka_unit_test(token_kinds_are_parsed),
        cmocka_unit_test(config_free_accepts_null),
        cmocka_unit_test(name_validation),
        cmocka_unit_test(rootfs_type_names),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
