/* Image ref grammar and normalization, and platforms: table-driven. */
#include <string.h>

#include "image_internal.h"
#include "testutil.h"

#define D64 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DG "sha256:" D64

typedef struct ref_vec {
    const char *in;
    const char *str;    /* normalized, NULL when invalid */
    const char *domain;
    const char *path;
    const char *tag;
    const char *digest;
    const char *error;  /* substring of the message when invalid */
} ref_vec;

static const ref_vec vectors[] = {
    /* docker.io defaults */
    {"busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", "", NULL},
    {"node:22", "docker.io/library/node:22", "docker.io", "library/node", "22", "", NULL},
    {"library/node:22", "docker.io/library/node:22", "docker.io", "library/node", "22", "", NULL},
    {"docker.io/node", "docker.io/library/node:latest", "docker.io", "library/node", "latest", "", NULL},
    {"index.docker.io/library/node:1", "docker.io/library/node:1", "docker.io", "library/node", "1", "", NULL},
    {"registry-1.docker.io/x/y", "docker.io/x/y:latest", "docker.io", "x/y", "latest", "", NULL},
    {"user/app:v1.2.3-rc_1", "docker.io/user/app:v1.2.3-rc_1", "docker.io", "user/app", "v1.2.3-rc_1", "", NULL},
    {"a/b/c/d", "docker.io/a/b/c/d:latest", "docker.io", "a/b/c/d", "latest", "", NULL},
    /* registry hosts */
    {"127.0.0.1:5000/test/busybox", "127.0.0.1:5000/test/busybox:latest", "127.0.0.1:5000", "test/busybox", "latest", "", NULL},
    {"localhost/foo", "localhost/foo:latest", "localhost", "foo", "latest", "", NULL},
    {"localhost:5000/foo:tag", "localhost:5000/foo:tag", "localhost:5000", "foo", "tag", "", NULL},
    {"ghcr.io/owner/repo:main", "ghcr.io/owner/repo:main", "ghcr.io", "owner/repo", "main", "", NULL},
    {"quay.io/a/b", "quay.io/a/b:latest", "quay.io", "a/b", "latest", "", NULL},
    {"[::1]:5000/img", "[::1]:5000/img:latest", "[::1]:5000", "img", "latest", "", NULL},
    {"my-host.example.com:443/a/b:c", "my-host.example.com:443/a/b:c", "my-host.example.com:443", "a/b", "c", "", NULL},
    {"Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com", "app", "latest", "", NULL},
    /* separators */
    {"a.b_c__d-e---f", "docker.io/library/a.b_c__d-e---f:latest", "docker.io", "library/a.b_c__d-e---f", "latest", "", NULL},
    /* digests */
    {"busybox@" DG, "docker.io/library/busybox@" DG, "docker.io", "library/busybox", "", DG, NULL},
    {"node:22@" DG, "docker.io/library/node:22@" DG, "docker.io", "library/node", "22", DG, NULL},
    {"127.0.0.1:5000/a@" DG, "127.0.0.1:5000/a@" DG, "127.0.0.1:5000", "a", "", DG, NULL},
    /* errors */
    {"", NULL, NULL, NULL, NULL, NULL, "empty reference"},
    {"Node:22", NULL, NULL, NULL, NULL, NULL, "repository name must be lowercase"},
    {"docker.io/Library/node", NULL, NULL, NULL, NULL, NULL, "must be lowercase"},
    {"node:", NULL, NULL, NULL, NULL, NULL, "empty tag"},
    {"node@", NULL, NULL, NULL, NULL, NULL, "empty digest"},
    {"node@sha256:abc", NULL, NULL, NULL, NULL, NULL, "64 lowercase hex"},
    {"node@sha256:" "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", NULL, NULL, NULL, NULL, NULL, "64 lowercase hex"},
    {"node@md5:d41d8cd98f00b204e9800998ecf8427e", NULL, NULL, NULL, NULL, NULL, "unsupported digest algorithm"},
    {"node@abc", NULL, NULL, NULL, NULL, NULL, "digest must be"},
    {"a//b", NULL, NULL, NULL, NULL, NULL, "empty path component"},
    {"a/", NULL, NULL, NULL, NULL, NULL, "empty path component"},
    {"/a", NULL, NULL, NULL, NULL, NULL, "empty path component"},
    {"example.com/", NULL, NULL, NULL, NULL, NULL, "empty repository path"},
    {":tag", NULL, NULL, NULL, NULL, NULL, "empty repository name"},
    {"-a", NULL, NULL, NULL, NULL, NULL, "must start and end"},
    {"a-", NULL, NULL, NULL, NULL, NULL, "must start and end"},
    {"a..b", NULL, NULL, NULL, NULL, NULL, "invalid separator"},
    {"a___b", NULL, NULL, NULL, NULL, NULL, "invalid separator"},
    {"a$b", NULL, NULL, NULL, NULL, NULL, "invalid character in repository name"},
    {"node:-x", NULL, NULL, NULL, NULL, NULL, "tag must start"},
    {"node:a+b", NULL, NULL, NULL, NULL, NULL, "invalid character in tag"},
    {"host:abc/x", NULL, NULL, NULL, NULL, NULL, "registry port must be a number"},
    {"host:/x", NULL, NULL, NULL, NULL, NULL, "empty registry port"},
    {"host:99999999/x", NULL, NULL, NULL, NULL, NULL, "port out of range"},
    {"-host.com/x", NULL, NULL, NULL, NULL, NULL, "invalid registry host"},
    {"host..com/x", NULL, NULL, NULL, NULL, NULL, "empty component in registry host"},
    {"[zz]:5000/x", NULL, NULL, NULL, NULL, NULL, "invalid IPv6"},
    {"node 22", NULL, NULL, NULL, NULL, NULL, "whitespace"},
    {D64, NULL, NULL, NULL, NULL, NULL, "image ID"},
};

static void test_ref_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < SBX_ARRAY_LEN(vectors); i++) {
        const ref_vec *v = &vectors[i];
        sbx_ref r;
        sbx_error err = SBX_ERROR_INIT;
        int rc = sbx_ref_parse(&r, v->in, &err);
        if (v->str) {
            if (rc != 0)
                fail_msg("'%s': unexpected error: %s", v->in, err.msg);
            if (strcmp(r.str, v->str) || strcmp(r.domain, v->domain) || strcmp(r.path, v->path) ||
                strcmp(r.tag, v->tag) || strcmp(r.digest, v->digest))
                fail_msg("'%s': got str='%s' domain='%s' path='%s' tag='%s' digest='%s'", v->in,
                         r.str, r.domain, r.path, r.tag, r.digest);
        } else {
            if (rc != SBX_EINVAL)
                fail_msg("'%s': accepted as '%s', want error '%s'", v->in, r.str, v->error);
            tu_assert_error(&err, SBX_EINVAL, v->error);
            tu_assert_error(&err, SBX_EINVAL, "parsing image ref");
            if (strncmp(err.where, v->in, strlen(err.where)) != 0)
                fail_msg("'%s': where is '%s'", v->in, err.where);
        }
    }
}

static void test_ref_reference_and_roundtrip(void **state)
{
    (void)state;
    sbx_ref r, r2;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_ref_parse(&r, "node:22@" DG, &err), 0);
    assert_string_equal(sbx_ref_reference(&r), DG); /* the digest wins */
    assert_int_equal(sbx_ref_parse(&r, "node:22", &err), 0);
    assert_string_equal(sbx_ref_reference(&r), "22");
    /* normalizing is idempotent */
    for (size_t i = 0; i < SBX_ARRAY_LEN(vectors); i++) {
        if (!vectors[i].str)
            continue;
        assert_int_equal(sbx_ref_parse(&r, vectors[i].in, &err), 0);
        assert_int_equal(sbx_ref_parse(&r2, r.str, &err), 0);
        assert_string_equal(r.str, r2.str);
    }
}

static void test_ref_length_limit(void **state)
{
    (void)state;
    char buf[400];
    memset(buf, 'a', 300);
    buf[300] = '\0';
    sbx_ref r;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_ref_parse(&r, buf, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "longer than 255");
    /* tags: 128 characters at most */
    memcpy(buf, "node:", 5);
    memset(buf + 5, 't', 128);
    buf[133] = '\0';
    assert_int_equal(sbx_ref_parse(&r, buf, &err), 0);
    assert_int_equal(strlen(r.tag), 128);
    buf[133] = 't';
    buf[134] = '\0';
    assert_int_equal(sbx_ref_parse(&r, buf, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "tag longer than 128");
}

typedef struct plat_vec {
    const char *in, *out, *error;
} plat_vec;

static void test_platform_parse_normalize(void **state)
{
    (void)state;
    static const plat_vec v[] = {
        {"linux/amd64", "linux/amd64", NULL},
        {"linux/x86_64", "linux/amd64", NULL},
        {"linux/amd64/v1", "linux/amd64", NULL},
        {"linux/amd64/v3", "linux/amd64/v3", NULL},
        {"linux/arm64", "linux/arm64/v8", NULL},
        {"linux/aarch64", "linux/arm64/v8", NULL},
        {"linux/arm64/8", "linux/arm64/v8", NULL},
        {"linux/arm64/v8", "linux/arm64/v8", NULL},
        {"linux/arm", "linux/arm/v7", NULL},
        {"linux/armhf", "linux/arm/v7", NULL},
        {"linux/armel", "linux/arm/v6", NULL},
        {"linux/arm/6", "linux/arm/v6", NULL},
        {"Linux/AMD64", "linux/amd64", NULL},
        {"linux/i386", "linux/386", NULL},
        {"arm64", "linux/arm64/v8", NULL},
        {"", NULL, "empty platform"},
        {"linux/", NULL, "expected os/arch"},
        {"linux/amd64/v1/x", NULL, "expected os/arch"},
        {"linux/am d64", NULL, "invalid character"},
        {"linux/amd64,linux/arm64", NULL, "lists several: give one os/arch[/variant]"},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(v); i++) {
        sbx_platform p;
        sbx_error err = SBX_ERROR_INIT;
        char buf[100];
        int rc = sbx_platform_parse(&p, v[i].in, &err);
        if (v[i].out) {
            if (rc != 0)
                fail_msg("'%s': %s", v[i].in, err.msg);
            if (strcmp(sbx_platform_format(&p, buf, sizeof buf), v[i].out))
                fail_msg("'%s': got '%s', want '%s'", v[i].in, buf, v[i].out);
        } else {
            assert_int_equal(rc, SBX_EINVAL);
            tu_assert_error(&err, SBX_EINVAL, v[i].error);
        }
    }
}

static void test_platform_match(void **state)
{
    (void)state;
    sbx_platform want, have;
    sbx_error err = SBX_ERROR_INIT;
#define P(var, s) assert_int_equal(sbx_platform_parse(&var, s, &err), 0)
    P(want, "linux/arm64");
    P(have, "linux/arm64/v8");
    assert_true(sbx_platform_match(&want, &have)); /* arm64 = arm64/v8 */
    P(have, "linux/amd64");
    assert_false(sbx_platform_match(&want, &have));
    P(want, "linux/arm/v7");
    P(have, "linux/arm/v6");
    assert_true(sbx_platform_match(&want, &have)); /* older variant runs */
    assert_int_equal(img_platform_rank(&want, &have), 1);
    P(want, "linux/arm/v6");
    P(have, "linux/arm/v7");
    assert_false(sbx_platform_match(&want, &have));
    P(want, "linux/amd64");
    P(have, "linux/amd64");
    assert_int_equal(img_platform_rank(&want, &have), 3);
    P(have, "windows/amd64");
    assert_false(sbx_platform_match(&want, &have));
#undef P
    sbx_platform host;
    sbx_platform_host(&host);
    assert_string_equal(host.os, "linux");
    assert_true(host.architecture[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_vectors),
        cmocka_unit_test(test_ref_reference_and_roundtrip),
        cmocka_unit_test(test_ref_length_limit),
        cmocka_unit_test(test_platform_parse_normalize),
        cmocka_unit_test(test_platform_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
