/* SPDX-License-Identifier: GPL-2.0-or-later */
/* guestos_config_parse(): guestos.json (docs/GUESTOS.md) is parsed as strictly as container
 * configs; every rejection names the JSON path it is about; accepted documents carry the
 * documented defaults and every field given.
 *
 * The documents are written with single quotes for readability; sq() turns them into JSON. */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "guestos_config.h"

static int parse_sq(const char *text, struct guestos_config **g, tm_err *err)
{
    char *json = sq(text);
    int r = guestos_config_parse(json, strlen(json), g, err);
    free(json);
    return r;
}

static void assert_rejected(const char *text, const char *path)
{
    struct guestos_config *g = NULL;
    tm_err err = {0};
    int r = parse_sq(text, &g, &err);
    if (r >= 0) {
        print_error("accepted: %s\n", text);
        guestos_config_free(g);
        fail();
    }
    assert_int_equal(err.code, -r);
    assert_null(g); /* ret is written only on success */
    assert_err_at(&err, path);
}

static struct guestos_config *parse_ok(const char *text)
{
    struct guestos_config *g = NULL;
    tm_err err = {0};
    int r = parse_sq(text, &g, &err);
    if (r < 0)
        print_error("rejected: %s\n  with: %s\n", text, err.msg);
    assert_int_equal(r, 0);
    assert_non_null(g);
    return g;
}

#define SHA "9f2c0000000000000000000000000000000000000000000000000000000000ab"
#define SHA2 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define ROOT_MOUNT                                                                                \
    "{'image':'root.img','mount_point':'/','fs_type':'squashfs','kind':'overlay','size':1052672," \
    "'sha256':'" SHA "'}"
#define HEAD "{'name':'busybox','version':3,'architecture':'x86_64'"
/* A minimal valid document with more top-level members. */
#define DOC(members) HEAD members ",'mounts':[" ROOT_MOUNT "]}"
/* A minimal valid document whose mounts array is given whole. */
#define MOUNTS(list) HEAD ",'mounts':[" list "]}"
/* The root mount followed by a second one. */
#define SECOND(m) MOUNTS(ROOT_MOUNT "," m)
/* A root mount with the given members (of kind overlay unless they say otherwise). */
#define IMG(members) "{'mount_point':'/','kind':'overlay'," members "}"
#define IMGKEYS "'fs_type':'squashfs','size':4096,'sha256':'" SHA "'"
#define ROOT_WITH(members) MOUNTS(IMG(members))
#define ROOT_IMAGE(name) ROOT_WITH("'image':" name "," IMGKEYS)
#define ROOT_SHA(h) ROOT_WITH("'image':'root.img','fs_type':'squashfs','size':4096,'sha256':" h)
#define ROOT_FS(f) ROOT_WITH("'image':'root.img','fs_type':" f ",'size':4096,'sha256':'" SHA "'")
#define ROOT_SIZE(n) ROOT_WITH("'image':'root.img','fs_type':'squashfs','size':" n ",'sha256':'" SHA "'")
#define MP(p) SECOND("{'mount_point':" p ",'kind':'data'}")

/* X(test name, document, JSON path the error must name) */
#define REJECT(X)                                                                                                      \
    /* unknown keys */                                                                                                 \
    X(unknown_top_key, DOC(",'bogus':1"), "$.bogus")                                                                   \
    X(unknown_top_key_wrong_case, DOC(",'Name':'x'"), "$.Name")                                                        \
    X(container_config_key, DOC(",'data_size_mb':8"), "$.data_size_mb")                                                \
    X(unknown_mount_key, MOUNTS(IMG("'image':'root.img'," IMGKEYS ",'options':'ro'")), "$.mounts[0].options")          \
    X(unknown_key_in_data_mount, SECOND("{'mount_point':'/srv','kind':'data','size_mb':1}"), "$.mounts[1].size_mb")    \
    X(unknown_key_in_second_mount, SECOND("{'mount_point':'/tmp','kind':'tmpfs','mode':'1777'}"), "$.mounts[1].mode")  \
    /* missing required keys */                                                                                        \
    X(missing_name, "{'version':3,'architecture':'x86_64','mounts':[" ROOT_MOUNT "]}", "$.name")                       \
    X(missing_version, "{'name':'b','architecture':'x86_64','mounts':[" ROOT_MOUNT "]}", "$.version")                  \
    X(missing_architecture, "{'name':'b','version':3,'mounts':[" ROOT_MOUNT "]}", "$.architecture")                    \
    X(missing_mounts, HEAD "}", "$.mounts")                                                                            \
    X(missing_kind, MOUNTS("{'mount_point':'/','image':'root.img'," IMGKEYS "}"), "$.mounts[0].kind")                  \
    X(missing_mount_point, MOUNTS("{'kind':'overlay','image':'root.img'," IMGKEYS "}"), "$.mounts[0].mount_point")     \
    X(missing_image, ROOT_WITH(IMGKEYS), "$.mounts[0].image")                                                          \
    X(missing_fs_type, ROOT_WITH("'image':'r.img','size':1,'sha256':'" SHA "'"), "$.mounts[0].fs_type")                \
    X(missing_size, ROOT_WITH("'image':'r.img','fs_type':'ext4','sha256':'" SHA "'"), "$.mounts[0].size")              \
    X(missing_sha256, ROOT_WITH("'image':'r.img','fs_type':'ext4','size':1"), "$.mounts[0].sha256")                    \
    /* wrong types */                                                                                                  \
    X(name_not_string, "{'name':7,'version':3,'architecture':'x86_64','mounts':[" ROOT_MOUNT "]}", "$.name")           \
    X(version_string, "{'name':'b','version':'3','architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")          \
    X(version_fraction, "{'name':'b','version':3.0,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")        \
    X(version_exponent, "{'name':'b','version':3e0,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")        \
    X(version_bool, "{'name':'b','version':true,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")           \
    X(architecture_not_string, "{'name':'b','version':3,'architecture':['x86_64'],'mounts':[" ROOT_MOUNT "]}",         \
      "$.architecture")                                                                                                \
    X(init_not_string, DOC(",'init':['/bin/sh']"), "$.init")                                                           \
    X(args_not_array, DOC(",'args':'-c'"), "$.args")                                                                   \
    X(args_element_not_string, DOC(",'args':['-c',1]"), "$.args[1]")                                                   \
    X(env_not_object, DOC(",'env':['A=1']"), "$.env")                                                                  \
    X(env_value_not_string, DOC(",'env':{'A':1}"), "$.env.A")                                                          \
    X(description_not_string, DOC(",'description':1"), "$.description")                                                \
    X(mounts_not_array, HEAD ",'mounts':" ROOT_MOUNT "}", "$.mounts")                                                  \
    X(mount_not_object, MOUNTS("'root.img'"), "$.mounts[0]")                                                           \
    X(second_mount_null, SECOND("null"), "$.mounts[1]")                                                                \
    X(kind_not_string, MOUNTS("{'mount_point':'/','kind':1}"), "$.mounts[0].kind")                                     \
    X(mount_point_not_string, SECOND("{'mount_point':['/srv'],'kind':'data'}"), "$.mounts[1].mount_point")             \
    X(image_not_string, ROOT_IMAGE("1"), "$.mounts[0].image")                                                          \
    X(fs_type_not_string, ROOT_FS("['squashfs']"), "$.mounts[0].fs_type")                                              \
    X(size_string, ROOT_SIZE("'4096'"), "$.mounts[0].size")                                                            \
    X(size_fraction, ROOT_SIZE("4096.5"), "$.mounts[0].size")                                                          \
    X(size_zero, ROOT_SIZE("0"), "$.mounts[0].size")                                                                   \
    X(size_negative, ROOT_SIZE("-4096"), "$.mounts[0].size")                                                           \
    X(size_beyond_int64, ROOT_SIZE("18446744073709551616"), "$")                                                       \
    X(sha256_not_string, ROOT_SHA("1"), "$.mounts[0].sha256")                                                          \
    X(size_mb_string, SECOND("{'mount_point':'/tmp','kind':'tmpfs','size_mb':'64'}"), "$.mounts[1].size_mb")           \
    /* the keys of an imported OCI image */                                                                            \
    X(working_dir_relative, DOC(",'working_dir':'app'"), "$.working_dir")                                              \
    X(working_dir_dotdot, DOC(",'working_dir':'/app/../etc'"), "$.working_dir")                                        \
    X(user_not_object, DOC(",'user':'1000:1000'"), "$.user")                                                           \
    X(user_without_gid, DOC(",'user':{'uid':1000}"), "$.user.gid")                                                     \
    X(user_negative_uid, DOC(",'user':{'uid':-1,'gid':0}"), "$.user.uid")                                              \
    X(user_uid_minus_one, DOC(",'user':{'uid':4294967295,'gid':0}"), "$.user.uid")                                     \
    X(user_unknown_key, DOC(",'user':{'uid':1,'gid':1,'groups':[]}"), "$.user.groups")                                 \
    X(port_without_protocol, DOC(",'ports':['80']"), "$.ports[0]")                                                     \
    X(port_zero, DOC(",'ports':['0/tcp']"), "$.ports[0]")                                                              \
    X(port_too_high, DOC(",'ports':['65536/udp']"), "$.ports[0]")                                                      \
    X(port_not_string, DOC(",'ports':[80]"), "$.ports[0]")                                                             \
    X(oci_without_config, DOC(",'oci':{'manifest':'sha256:" SHA "'}"), "$.oci.config")                                 \
    X(oci_bad_digest, DOC(",'oci':{'config':'sha256:" SHA "0'}"), "$.oci.config")                                      \
    X(oci_unknown_key, DOC(",'oci':{'config':'sha256:" SHA "','ref':'x'}"), "$.oci.ref")                               \
    X(size_mb_zero, SECOND("{'mount_point':'/tmp','kind':'tmpfs','size_mb':0}"), "$.mounts[1].size_mb")                \
    X(size_mb_too_big, SECOND("{'mount_point':'/tmp','kind':'tmpfs','size_mb':1048577}"), "$.mounts[1].size_mb")       \
    /* version */                                                                                                      \
    X(version_zero, "{'name':'b','version':0,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")              \
    X(version_negative, "{'name':'b','version':-1,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.version")         \
    X(version_above_2_53, "{'name':'b','version':9007199254740993,'architecture':'x','mounts':[" ROOT_MOUNT "]}",      \
      "$.version")                                                                                                     \
    X(version_int64_max, "{'name':'b','version':9223372036854775807,'architecture':'x','mounts':[" ROOT_MOUNT "]}",    \
      "$.version")                                                                                                     \
    X(version_beyond_int64,                                                                                            \
      "{'name':'b','version':99999999999999999999,'architecture':'x',"                                                 \
      "'mounts':[" ROOT_MOUNT "]}",                                                                                    \
      "$")                                                                                                             \
    /* names */                                                                                                        \
    X(name_empty, "{'name':'','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")                    \
    X(name_slash, "{'name':'a/b','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")                 \
    X(name_dotdot, "{'name':'..','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")                 \
    X(name_leading_dash, "{'name':'-b','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")           \
    X(name_leading_dot, "{'name':'.b','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")            \
    X(name_space, "{'name':'a b','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$.name")                 \
    X(name_uuid,                                                                                                       \
      "{'name':'6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f','version':3,'architecture':'x',"                                 \
      "'mounts':[" ROOT_MOUNT "]}",                                                                                    \
      "$.name")                                                                                                        \
    X(architecture_empty, "{'name':'b','version':3,'architecture':'','mounts':[" ROOT_MOUNT "]}", "$.architecture")    \
    /* init, args, env, description */                                                                                 \
    X(init_relative, DOC(",'init':'bin/sh'"), "$.init")                                                                \
    X(init_empty, DOC(",'init':''"), "$.init")                                                                         \
    X(init_dotdot, DOC(",'init':'/bin/../sbin/init'"), "$.init")                                                       \
    X(init_trailing_slash, DOC(",'init':'/sbin/init/'"), "$.init")                                                     \
    X(env_key_digit_first, DOC(",'env':{'1A':'x'}"), "$.env.1A")                                                       \
    X(env_key_equals, DOC(",'env':{'A=B':'x'}"), "$.env.A=B")                                                          \
    X(env_value_nul, DOC(",'env':{'A':'x\\u0000y'}"), "$.env.A")                                                       \
    X(arg_nul, DOC(",'args':['x\\u0000y']"), "$.args[0]")                                                              \
    /* mount points */                                                                                                 \
    X(mount_point_relative, MP("'srv'"), "$.mounts[1].mount_point")                                                    \
    X(mount_point_empty, MP("''"), "$.mounts[1].mount_point")                                                          \
    X(mount_point_trailing_slash, MP("'/srv/'"), "$.mounts[1].mount_point")                                            \
    X(mount_point_double_slash, MP("'/srv//app'"), "$.mounts[1].mount_point")                                          \
    X(mount_point_double_slash_root, MP("'//'"), "$.mounts[1].mount_point")                                            \
    X(mount_point_dot, MP("'/srv/./app'"), "$.mounts[1].mount_point")                                                  \
    X(mount_point_dotdot, MP("'/srv/../etc'"), "$.mounts[1].mount_point")                                              \
    X(mount_point_ends_dotdot, MP("'/srv/..'"), "$.mounts[1].mount_point")                                             \
    X(mount_point_nul, MP("'/srv\\u0000x'"), "$.mounts[1].mount_point")                                                \
    /* image names */                                                                                                  \
    X(image_empty, ROOT_IMAGE("''"), "$.mounts[0].image")                                                              \
    X(image_slash, ROOT_IMAGE("'img/root.img'"), "$.mounts[0].image")                                                  \
    X(image_absolute, ROOT_IMAGE("'/root.img'"), "$.mounts[0].image")                                                  \
    X(image_dotdot, ROOT_IMAGE("'..'"), "$.mounts[0].image")                                                           \
    X(image_dotdot_slash, ROOT_IMAGE("'../root.img'"), "$.mounts[0].image")                                            \
    X(image_dot, ROOT_IMAGE("'.'"), "$.mounts[0].image")                                                               \
    X(image_leading_dot, ROOT_IMAGE("'.root.img'"), "$.mounts[0].image")                                               \
    X(image_leading_dash, ROOT_IMAGE("'-root.img'"), "$.mounts[0].image")                                              \
    X(image_leading_underscore, ROOT_IMAGE("'_root.img'"), "$.mounts[0].image")                                        \
    X(image_space, ROOT_IMAGE("'root img'"), "$.mounts[0].image")                                                      \
    X(image_non_ascii, ROOT_IMAGE("'r\\u00f6ot.img'"), "$.mounts[0].image")                                            \
    X(image_guestos_json, ROOT_IMAGE("'guestos.json'"), "$.mounts[0].image")                                           \
    X(image_guestos_json_sig, ROOT_IMAGE("'guestos.json.sig'"), "$.mounts[0].image")                                   \
    X(image_install_json, ROOT_IMAGE("'install.json'"), "$.mounts[0].image")                                           \
    X(image_guestos_json_chain, ROOT_IMAGE("'guestos.json.chain.pem'"), "$.mounts[0].image")                           \
    X(image_nul, ROOT_IMAGE("'root\\u0000.img'"), "$.mounts[0].image")                                                 \
    /* sha256 */                                                                                                       \
    X(sha256_upper_case, ROOT_SHA("'9F2C0000000000000000000000000000000000000000000000000000000000AB'"),               \
      "$.mounts[0].sha256")                                                                                            \
    X(sha256_one_upper_case, ROOT_SHA("'9f2c0000000000000000000000000000000000000000000000000000000000aB'"),           \
      "$.mounts[0].sha256")                                                                                            \
    X(sha256_short, ROOT_SHA("'9f2c00000000000000000000000000000000000000000000000000000000000'"),                     \
      "$.mounts[0].sha256")                                                                                            \
    X(sha256_long, ROOT_SHA("'" SHA "0'"), "$.mounts[0].sha256")                                                       \
    X(sha256_empty, ROOT_SHA("''"), "$.mounts[0].sha256")                                                              \
    X(sha256_not_hex, ROOT_SHA("'9g2c0000000000000000000000000000000000000000000000000000000000ab'"),                  \
      "$.mounts[0].sha256")                                                                                            \
    X(sha256_prefixed, ROOT_SHA("'sha256:9f2c000000000000000000000000000000000000000000000000000000'"),                \
      "$.mounts[0].sha256")                                                                                            \
    /* fs_type */                                                                                                      \
    X(fs_type_ext3, ROOT_FS("'ext3'"), "$.mounts[0].fs_type")                                                          \
    X(fs_type_upper_case, ROOT_FS("'SQUASHFS'"), "$.mounts[0].fs_type")                                                \
    X(fs_type_empty, ROOT_FS("''"), "$.mounts[0].fs_type")                                                             \
    X(fs_type_overlay, ROOT_FS("'overlay'"), "$.mounts[0].fs_type")                                                    \
    X(fs_type_prefix, ROOT_FS("'squash'"), "$.mounts[0].fs_type")                                                      \
    X(fs_type_too_long, ROOT_FS("'squashfsssssssssss'"), "$.mounts[0].fs_type")                                        \
    /* kinds and the mount at "/" */                                                                                   \
    X(kind_unknown, MOUNTS("{'mount_point':'/','kind':'bind'}"), "$.mounts[0].kind")                                   \
    X(kind_upper_case, MOUNTS("{'mount_point':'/','kind':'OVERLAY'}"), "$.mounts[0].kind")                             \
    X(mounts_empty, HEAD ",'mounts':[]}", "$.mounts")                                                                  \
    X(no_root_mount, MOUNTS("{'mount_point':'/srv','kind':'shared','image':'s.img'," IMGKEYS "}"), "$.mounts")         \
    X(no_root_mount_only_data, MOUNTS("{'mount_point':'/srv','kind':'data'}"), "$.mounts")                             \
    X(root_not_first, MOUNTS("{'mount_point':'/tmp','kind':'tmpfs'}," ROOT_MOUNT), "$.mounts[1]")                      \
    X(root_of_kind_data, MOUNTS("{'mount_point':'/','kind':'data'}"), "$.mounts[0]")                                   \
    X(root_of_kind_tmpfs, MOUNTS("{'mount_point':'/','kind':'tmpfs'}"), "$.mounts[0]")                                 \
    X(second_root, SECOND("{'mount_point':'/','kind':'shared','image':'r2.img'," IMGKEYS "}"), "$.mounts[1]")          \
    X(overlay_elsewhere, SECOND("{'mount_point':'/srv','kind':'overlay','image':'s.img'," IMGKEYS "}"), "$.mounts[1]") \
    /* duplicates */                                                                                                   \
    X(duplicate_mount_point,                                                                                           \
      MOUNTS(ROOT_MOUNT ",{'mount_point':'/srv','kind':'data'},"                                                       \
                        "{'mount_point':'/srv','kind':'tmpfs'}"),                                                      \
      "$.mounts[2].mount_point")                                                                                       \
    X(duplicate_image, SECOND("{'mount_point':'/srv','kind':'shared','image':'root.img'," IMGKEYS "}"),                \
      "$.mounts[1].image")                                                                                             \
    /* image keys on a mount without an image */                                                                       \
    X(image_on_tmpfs, SECOND("{'mount_point':'/tmp','kind':'tmpfs','image':'t.img'}"), "$.mounts[1].image")            \
    X(sha256_on_tmpfs, SECOND("{'mount_point':'/tmp','kind':'tmpfs','sha256':'" SHA "'}"), "$.mounts[1].sha256")       \
    X(fs_type_on_tmpfs, SECOND("{'mount_point':'/tmp','kind':'tmpfs','fs_type':'ext4'}"), "$.mounts[1].fs_type")       \
    X(size_on_tmpfs, SECOND("{'mount_point':'/tmp','kind':'tmpfs','size':4096}"), "$.mounts[1].size")                  \
    X(image_on_data, SECOND("{'mount_point':'/srv','kind':'data','image':'d.img'}"), "$.mounts[1].image")              \
    X(size_mb_on_image_mount, MOUNTS(IMG("'image':'root.img'," IMGKEYS ",'size_mb':64")), "$.mounts[0].size_mb")       \
    /* duplicate JSON keys (a lenient parser would keep the last) */                                                   \
    X(duplicate_top_key,                                                                                               \
      "{'name':'busybox','name':'evil','version':3,'architecture':'x',"                                                \
      "'mounts':[" ROOT_MOUNT "]}",                                                                                    \
      "$")                                                                                                             \
    X(duplicate_version, "{'name':'b','version':3,'version':4,'architecture':'x','mounts':[" ROOT_MOUNT "]}", "$")     \
    X(duplicate_mount_key, MOUNTS(IMG("'image':'root.img','image':'evil.img'," IMGKEYS)), "$")                         \
    X(duplicate_sha256, MOUNTS(IMG("'image':'root.img'," IMGKEYS ",'sha256':'" SHA2 "'")), "$")                        \
    X(duplicate_env_key, DOC(",'env':{'A':'1','A':'2'}"), "$")                                                         \
    /* not JSON, or not an object */                                                                                   \
    X(top_level_array, "[" ROOT_MOUNT "]", "$")                                                                        \
    X(trailing_garbage, DOC("") "x", "$")                                                                              \
    X(truncated, HEAD, "$")                                                                                            \
    X(empty_document, "", "$")

#define DEFINE_REJECT(name, doc, path)      \
    static void reject_##name(void **state) \
    {                                       \
        (void)state;                        \
        assert_rejected(doc, path);         \
    }
REJECT(DEFINE_REJECT)

/* --- rejections that need a generated document ------------------------------------------------ */

static void reject_image_name_too_long(void **state)
{
    (void)state;
    char *name = repeat('a', GUESTOS_IMAGE_NAME_MAX + 1);
    char doc[1024];
    snprintf(doc, sizeof(doc), ROOT_IMAGE("'%s'"), name);
    assert_rejected(doc, "$.mounts[0].image");
    free(name);
}

static void reject_name_too_long(void **state)
{
    (void)state;
    char *name = repeat('b', CONFIG_NAME_MAX + 1);
    char doc[1024];
    snprintf(doc, sizeof(doc), "{'name':'%s','version':3,'architecture':'x','mounts':[" ROOT_MOUNT "]}", name);
    assert_rejected(doc, "$.name");
    free(name);
}

static void reject_description_too_long(void **state)
{
    (void)state;
    char *text = repeat('d', GUESTOS_DESC_MAX + 1);
    char doc[2048];
    snprintf(doc, sizeof(doc), DOC(",'description':'%s'"), text);
    assert_rejected(doc, "$.description");
    free(text);
}

static void reject_architecture_too_long(void **state)
{
    (void)state;
    char *arch = repeat('x', GUESTOS_ARCH_MAX + 1);
    char doc[1024];
    snprintf(doc, sizeof(doc), "{'name':'b','version':3,'architecture':'%s','mounts':[" ROOT_MOUNT "]}", arch);
    assert_rejected(doc, "$.architecture");
    free(arch);
}

/* A document with the root mount and n - 1 tmpfs mounts /t0, /t1, ... */
static char *doc_with_mounts(size_t n)
{
    size_t cap = 512 + n * 64;
    char *doc = malloc(cap);
    assert_non_null(doc);
    size_t len = (size_t)snprintf(doc, cap, HEAD ",'mounts':[" ROOT_MOUNT);
    for (size_t i = 1; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len, ",{'mount_point':'/t%zu','kind':'tmpfs'}", i);
    snprintf(doc + len, cap - len, "]}");
    return doc;
}

static void sixteen_mounts_are_accepted(void **state)
{
    (void)state;
    char *doc = doc_with_mounts(GUESTOS_MOUNTS_MAX);
    struct guestos_config *g = parse_ok(doc);
    assert_int_equal(g->nmounts, GUESTOS_MOUNTS_MAX);
    assert_string_equal(g->mounts[GUESTOS_MOUNTS_MAX - 1].mount_point, "/t15");
    guestos_config_free(g);
    free(doc);
}

static void reject_seventeen_mounts(void **state)
{
    (void)state;
    char *doc = doc_with_mounts(GUESTOS_MOUNTS_MAX + 1);
    assert_rejected(doc, "$.mounts");
    free(doc);
}

/* A valid document padded with whitespace to len bytes. */
static char *padded_doc(size_t len)
{
    char *doc = sq(DOC(""));
    size_t n = strlen(doc);
    assert_true(n <= len);
    char *out = malloc(len + 1);
    assert_non_null(out);
    memcpy(out, doc, n);
    memset(out + n, ' ', len - n);
    out[len] = '\0';
    free(doc);
    return out;
}

static void document_of_64_kib_is_accepted(void **state)
{
    (void)state;
    char *doc = padded_doc(GUESTOS_JSON_MAX);
    struct guestos_config *g = NULL;
    tm_err err = {0};
    assert_int_equal(guestos_config_parse(doc, GUESTOS_JSON_MAX, &g, &err), 0);
    guestos_config_free(g);
    free(doc);
}

static void reject_document_over_64_kib(void **state)
{
    (void)state;
    char *doc = padded_doc(GUESTOS_JSON_MAX + 1);
    struct guestos_config *g = NULL;
    tm_err err = {0};
    assert_int_equal(guestos_config_parse(doc, GUESTOS_JSON_MAX + 1, &g, &err), -EFBIG);
    assert_int_equal(err.code, EFBIG);
    assert_null(g);
    assert_err_contains(&err, "guestos.json is larger than 65536 bytes");
    free(doc);
}

/* The length given is what is parsed, not up to a NUL (and a NUL inside is refused). */
static void reject_nul_byte_in_document(void **state)
{
    (void)state;
    char *doc = sq(DOC(""));
    size_t n = strlen(doc);
    struct guestos_config *g = NULL;
    tm_err err = {0};
    assert_true(guestos_config_parse(doc, n + 1, &g, &err) < 0);
    assert_null(g);
    assert_err_at(&err, "$");
    free(doc);
}

/* --- accepted documents ------------------------------------------------------------------------ */

/* docs/GUESTOS.md's example, with a real-looking digest. */
static void full_example(void **state)
{
    (void)state;
    struct guestos_config *g =
        parse_ok("{'name':'busybox','version':3,'architecture':'x86_64','init':'/bin/sh',"
                 "'args':['-c','exec sleep infinity'],'env':{'LANG':'C'},"
                 "'description':'busybox demo guest','mounts':["
                 "{'image':'root.img','mount_point':'/','fs_type':'squashfs','kind':'overlay',"
                 "'size':1052672,'sha256':'" SHA2 "'},"
                 "{'mount_point':'/var/lib/app','kind':'data'},"
                 "{'mount_point':'/tmp','kind':'tmpfs','size_mb':64},"
                 "{'image':'opt-tools.img','mount_point':'/opt/tools','fs_type':'erofs','kind':'shared',"
                 "'size':8192,'sha256':'" SHA "'},"
                 "{'image':'extra_1.img','mount_point':'/opt/extra','fs_type':'ext4','kind':'shared',"
                 "'size':9007199254740993,'sha256':'" SHA2 "'}]}");
    assert_string_equal(g->name, "busybox");
    assert_int_equal(g->version, 3);
    assert_string_equal(g->architecture, "x86_64");
    assert_string_equal(g->init, "/bin/sh");
    assert_int_equal(g->nargs, 2);
    assert_string_equal(g->args[0], "-c");
    assert_string_equal(g->args[1], "exec sleep infinity");
    assert_null(g->args[2]);
    assert_int_equal(g->nenv, 1);
    assert_string_equal(g->env[0], "LANG=C");
    assert_null(g->env[1]);
    assert_string_equal(g->description, "busybox demo guest");
    assert_int_equal(g->nmounts, 5);
    assert_int_equal(g->root, 0);

    const struct guestos_mount *m = &g->mounts[0];
    assert_int_equal(m->kind, GMOUNT_OVERLAY);
    assert_string_equal(m->mount_point, "/");
    assert_string_equal(m->image, "root.img");
    assert_string_equal(m->fs_type, "squashfs");
    assert_int_equal(m->size, 1052672);
    static const uint8_t digest[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                       0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                       0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    assert_memory_equal(m->sha256, digest, 32);

    m = &g->mounts[1];
    assert_int_equal(m->kind, GMOUNT_DATA);
    assert_string_equal(m->mount_point, "/var/lib/app");
    assert_string_equal(m->image, "");
    assert_int_equal(m->size, 0);

    m = &g->mounts[2];
    assert_int_equal(m->kind, GMOUNT_TMPFS);
    assert_string_equal(m->mount_point, "/tmp");
    assert_int_equal(m->size_mb, 64);
    assert_string_equal(m->image, "");

    m = &g->mounts[3];
    assert_int_equal(m->kind, GMOUNT_SHARED);
    assert_string_equal(m->image, "opt-tools.img");
    assert_string_equal(m->fs_type, "erofs");
    assert_int_equal(m->size, 8192);
    assert_int_equal(m->sha256[0], 0x9f);
    assert_int_equal(m->sha256[31], 0xab);

    m = &g->mounts[4];
    assert_string_equal(m->fs_type, "ext4");
    assert_string_equal(m->image, "extra_1.img");
    assert_true(m->size == 9007199254740993ULL); /* sizes are not limited to 2^53 */
    guestos_config_free(g);
}

static void defaults(void **state)
{
    (void)state;
    struct guestos_config *g = parse_ok(SECOND("{'mount_point':'/tmp','kind':'tmpfs'}"));
    assert_string_equal(g->init, "/sbin/init");
    assert_non_null(g->args);
    assert_int_equal(g->nargs, 0);
    assert_null(g->args[0]);
    assert_non_null(g->env);
    assert_int_equal(g->nenv, 0);
    assert_null(g->env[0]);
    assert_string_equal(g->description, "");
    assert_int_equal(g->nmounts, 2);
    assert_int_equal(g->mounts[1].kind, GMOUNT_TMPFS);
    assert_int_equal(g->mounts[1].size_mb, GUESTOS_TMPFS_DEFAULT_MB);
    assert_int_equal(GUESTOS_TMPFS_DEFAULT_MB, 64);
    guestos_config_free(g);
}

static void shared_root_is_accepted(void **state)
{
    (void)state;
    struct guestos_config *g = parse_ok(MOUNTS("{'mount_point':'/','kind':'shared','image':'root.img'," IMGKEYS "}"));
    assert_int_equal(g->mounts[0].kind, GMOUNT_SHARED);
    assert_int_equal(g->root, 0);
    guestos_config_free(g);
}

static void version_bounds_are_inclusive(void **state)
{
    (void)state;
    struct guestos_config *g = parse_ok("{'name':'b','version':1,'architecture':'x','mounts':[" ROOT_MOUNT "]}");
    assert_int_equal(g->version, 1);
    guestos_config_free(g);
    g = parse_ok("{'name':'b','version':9007199254740992,'architecture':'x','mounts':[" ROOT_MOUNT "]}");
    assert_true(g->version == (1ULL << 53));
    guestos_config_free(g);
}

static void longest_names_are_accepted(void **state)
{
    (void)state;
    char *image = repeat('i', GUESTOS_IMAGE_NAME_MAX);
    char *name = repeat('n', CONFIG_NAME_MAX);
    char *desc = repeat('d', GUESTOS_DESC_MAX);
    char *arch = repeat('a', GUESTOS_ARCH_MAX);
    char doc[2048];
    snprintf(doc, sizeof(doc),
             "{'name':'%s','version':3,'architecture':'%s','description':'%s','mounts':["
             "{'mount_point':'/','kind':'overlay','image':'%s'," IMGKEYS "}]}",
             name, arch, desc, image);
    struct guestos_config *g = parse_ok(doc);
    assert_string_equal(g->name, name);
    assert_string_equal(g->architecture, arch);
    assert_string_equal(g->description, desc);
    assert_string_equal(g->mounts[0].image, image);
    guestos_config_free(g);
    free(image);
    free(name);
    free(desc);
    free(arch);
}

/* What the rules allow that a stricter reading might refuse. */
static void permitted_image_names(void **state)
{
    (void)state;
    static const char *const ok[] = {"root.img",        "a", "0", "root..img", "r.", "guestos.jsonx", "guestos-json",
                                     "Root_1.squashfs", "x-"};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        assert_true(guestos_image_name_valid(ok[i]));
        char doc[1024];
        snprintf(doc, sizeof(doc), ROOT_IMAGE("'%s'"), ok[i]);
        guestos_config_free(parse_ok(doc));
    }
    static const char *const bad[] = {
        "",    ".",    "..", ".hidden", "a/b", "/a", "guestos.json", "guestos.json.sig", "guestos.json.",
        "a b", "a\\b", "a:b"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_false(guestos_image_name_valid(bad[i]));
}

static void kind_names(void **state)
{
    (void)state;
    assert_string_equal(guestos_mount_kind_name(GMOUNT_SHARED), "shared");
    assert_string_equal(guestos_mount_kind_name(GMOUNT_OVERLAY), "overlay");
    assert_string_equal(guestos_mount_kind_name(GMOUNT_DATA), "data");
    assert_string_equal(guestos_mount_kind_name(GMOUNT_TMPFS), "tmpfs");
    assert_string_equal(guestos_mount_kind_name((enum guestos_mount_kind)99), "?");
}

/* The same image may be mounted nowhere else, but data and tmpfs mounts (no image) never clash. */
static void several_mounts_without_image(void **state)
{
    (void)state;
    struct guestos_config *g = parse_ok(MOUNTS(ROOT_MOUNT ",{'mount_point':'/a','kind':'data'},"
                                                          "{'mount_point':'/b','kind':'data'},"
                                                          "{'mount_point':'/c','kind':'tmpfs'},"
                                                          "{'mount_point':'/a/b','kind':'tmpfs','size_mb':1048576}"));
    assert_int_equal(g->nmounts, 5);
    assert_int_equal(g->mounts[4].size_mb, 1048576);
    guestos_config_free(g);
}

/* Data directories are named by the mount point with '/' as '_': "/a_b" and "/a/b" would share
 * one (and a container's two data mounts would see each other's files). */
static void reject_colliding_data_dirs(void **state)
{
    (void)state;
    assert_rejected(MOUNTS(ROOT_MOUNT ",{'mount_point':'/a_b','kind':'data'},"
                                      "{'mount_point':'/a/b','kind':'data'}"),
                    "$.mounts[2].mount_point");
    assert_rejected(MOUNTS(ROOT_MOUNT ",{'mount_point':'/var/lib/x','kind':'data'},"
                                      "{'mount_point':'/srv','kind':'tmpfs'},"
                                      "{'mount_point':'/var_lib_x','kind':'data'}"),
                    "$.mounts[3].mount_point");
    /* Only data mounts have such a directory; a prefix is a different name. */
    guestos_config_free(parse_ok(MOUNTS(ROOT_MOUNT ",{'mount_point':'/a_b','kind':'data'},"
                                                   "{'mount_point':'/a/b','kind':'tmpfs'},"
                                                   "{'mount_point':'/a','kind':'data'},"
                                                   "{'mount_point':'/a/b/c','kind':'data'}")));
}

static void oci_keys(void **state)
{
    (void)state;
    struct guestos_config *g = parse_ok(DOC(",'working_dir':'/srv/app','user':{'uid':1000,'gid':100},"
                                            "'ports':['80/tcp','53/udp','9/sctp'],"
                                            "'oci':{'manifest':'sha256:" SHA2 "','config':'sha256:" SHA "'}"));
    assert_string_equal(g->working_dir, "/srv/app");
    assert_true(g->has_user);
    assert_int_equal(g->uid, 1000);
    assert_int_equal(g->gid, 100);
    assert_int_equal(g->nports, 3);
    guestos_config_free(g);
    g = parse_ok(DOC(""));
    assert_string_equal(g->working_dir, "");
    assert_false(g->has_user);
    guestos_config_free(g);
}

static void free_accepts_null(void **state)
{
    (void)state;
    guestos_config_free(NULL);
}

#define REJECT_TEST(name, doc, path) cmocka_unit_test(reject_##name),

int main(void)
{
    const struct CMUnitTest tests[] = {
        REJECT(REJECT_TEST) cmocka_unit_test(reject_image_name_too_long),
        cmocka_unit_test(reject_name_too_long),
        cmocka_unit_test(reject_description_too_long),
        cmocka_unit_test(reject_architecture_too_long),
        cmocka_unit_test(reject_seventeen_mounts),
        cmocka_unit_test(reject_document_over_64_kib),
        cmocka_unit_test(reject_nul_byte_in_document),
        cmocka_unit_test(sixteen_mounts_are_accepted),
        cmocka_unit_test(document_of_64_kib_is_accepted),
        cmocka_unit_test(full_example),
        cmocka_unit_test(defaults),
        cmocka_unit_test(shared_root_is_accepted),
        cmocka_unit_test(version_bounds_are_inclusive),
        cmocka_unit_test(longest_names_are_accepted),
        cmocka_unit_test(permitted_image_names),
        cmocka_unit_test(kind_names),
        cmocka_unit_test(several_mounts_without_image),
        cmocka_unit_test(reject_colliding_data_dirs),
        cmocka_unit_test(oci_keys),
        cmocka_unit_test(free_accepts_null),
    };
    return cmocka_run_group_tests_name("guestos_config", tests, NULL, NULL);
}
