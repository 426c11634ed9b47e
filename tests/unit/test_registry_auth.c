/* WWW-Authenticate parsing, token answers and cache, base64, Docker config
 * credentials and credential helpers.  No network. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "registry_internal.h"
#include "testutil.h"

static void test_challenge_bearer(void **state)
{
    (void)state;
    reg_challenge c;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(reg_challenge_parse(&c,
                                         "Bearer realm=\"https://auth.docker.io/token\","
                                         "service=\"registry.docker.io\","
                                         "scope=\"repository:library/node:pull\"",
                                         &err),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/node:pull");

    /* case-insensitive scheme and names, spaces around '=', token values, escapes */
    assert_int_equal(reg_challenge_parse(&c, "BEARER Realm = \"http://127.0.0.1:9/t\" , "
                                             "SERVICE=svc ,scope=\"a\\\"b\"",
                                         &err),
                     0);
    assert_string_equal(c.realm, "http://127.0.0.1:9/t");
    assert_string_equal(c.service, "svc");
    assert_string_equal(c.scope, "a\"b");

    /* error= carried, unknown params ignored */
    assert_int_equal(reg_challenge_parse(&c, "Bearer realm=\"r\",error=\"insufficient_scope\","
                                             "foo=bar,scope=\"repository:x:pull,push\"",
                                         &err),
                     0);
    assert_string_equal(c.error, "insufficient_scope");
    assert_string_equal(c.scope, "repository:x:pull,push");
}

static void test_challenge_multiple_and_basic(void **state)
{
    (void)state;
    reg_challenge c;
    sbx_error err = SBX_ERROR_INIT;
    /* Bearer preferred over Basic, whatever the order */
    assert_int_equal(reg_challenge_parse(&c, "Basic realm=\"x\", Bearer realm=\"y\",service=\"s\"",
                                         &err),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "y");
    assert_string_equal(c.service, "s");
    assert_int_equal(reg_challenge_parse(&c, "Basic realm=\"Registry Realm\"", &err), 0);
    assert_string_equal(c.scheme, "basic");
    assert_string_equal(c.realm, "Registry Realm");
    /* a token68 challenge before */
    assert_int_equal(reg_challenge_parse(&c, "Negotiate abc==, Basic realm=\"x\"", &err), 0);
    assert_string_equal(c.scheme, "basic");
}

static void test_challenge_errors(void **state)
{
    (void)state;
    reg_challenge c;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(reg_challenge_parse(&c, "", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "no Bearer or Basic challenge");
    assert_int_equal(reg_challenge_parse(&c, "Bearer service=\"x\"", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "without realm");
    assert_int_equal(reg_challenge_parse(&c, "Bearer realm=\"unterminated", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "bad or too long value of 'realm'");
    assert_int_equal(reg_challenge_parse(&c, "Digest realm=\"x\", nonce=\"y\"", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "no Bearer or Basic");
    assert_int_equal(reg_challenge_parse(&c, "Bearer realm=\"a\" junk", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected ','");
    char big[3000];
    strcpy(big, "Bearer realm=\"");
    memset(big + 14, 'a', 2000);
    strcpy(big + 2014, "\"");
    assert_int_equal(reg_challenge_parse(&c, big, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "too long");
    assert_int_equal(reg_challenge_parse(&c, "=x", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected an auth scheme");
}

static void test_token_answer(void **state)
{
    (void)state;
    char *tok = NULL;
    int64_t exp = 0;
    sbx_error err = SBX_ERROR_INIT;
    const char *a = "{\"token\":\"t1\",\"expires_in\":300,\"issued_at\":\"2024-01-01T00:00:00Z\"}";
    assert_int_equal(reg_token_parse(&tok, &exp, a, strlen(a), &err), 0);
    assert_string_equal(tok, "t1");
    assert_int_equal(exp, 300);
    free(tok);
    const char *b = "{\"access_token\":\"t2\"}";
    assert_int_equal(reg_token_parse(&tok, &exp, b, strlen(b), &err), 0);
    assert_string_equal(tok, "t2");
    assert_int_equal(exp, 60); /* default when absent */
    free(tok);
    const char *c = "{\"expires_in\":10}";
    assert_int_equal(reg_token_parse(&tok, &exp, c, strlen(c), &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "no token");
    assert_int_equal(reg_token_parse(&tok, &exp, "nope", 4, &err), SBX_ENET);
    tu_assert_error(&err, SBX_ENET, "not a JSON object");
}

static void test_token_cache(void **state)
{
    (void)state;
    reg_token_cache_put("sha256:k1", "tokA", 300);
    char *t = reg_token_cache_get("sha256:k1");
    assert_non_null(t);
    assert_string_equal(t, "tokA");
    free(t);
    assert_null(reg_token_cache_get("sha256:k2"));
    reg_token_cache_put("sha256:k1", "tokB", 300); /* replaces */
    t = reg_token_cache_get("sha256:k1");
    assert_string_equal(t, "tokB");
    free(t);
    reg_token_cache_put("sha256:k3", "old", 0); /* already expired */
    assert_null(reg_token_cache_get("sha256:k3"));
    /* many keys: the cache stays bounded and keeps working */
    for (int i = 0; i < 200; i++) {
        char k[32];
        snprintf(k, sizeof k, "sha256:x%d", i);
        reg_token_cache_put(k, "v", 300);
    }
    t = reg_token_cache_get("sha256:x199");
    assert_non_null(t);
    free(t);
}

static void test_base64(void **state)
{
    (void)state;
    char *enc = reg_base64_encode("user:pa:ss", 10);
    assert_string_equal(enc, "dXNlcjpwYTpzcw==");
    char *dec = NULL;
    size_t len = 0;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(reg_base64_decode(&dec, &len, enc, &err), 0);
    assert_int_equal(len, 10);
    assert_string_equal(dec, "user:pa:ss");
    free(dec);
    free(enc);
    assert_int_equal(reg_base64_decode(&dec, &len, "abc", &err), SBX_EINVAL);
    assert_int_equal(reg_base64_decode(&dec, &len, "ab!d", &err), SBX_EINVAL);
}

static void test_docker_config_auths(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *cfg = tu_path(dir, "config.json");
    /* base64("alice:s3cret-A"), username/password, docker.io by its v1 URL */
    tu_write_file(cfg, "{\"auths\":{"
                       "\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6czNjcmV0LUE=\"},"
                       "\"https://reg.example.com/v2/\":{\"username\":\"bob\",\"password\":\"s3cret-B\"},"
                       "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOnMzY3JldC1D\"},"
                       "\"tok.example.com\":{\"identitytoken\":\"s3cret-D\"},"
                       "\"bad.example.com\":{\"auth\":\"bm9jb2xvbg==\"}}}");
    reg_creds c;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(reg_docker_creds(&c, cfg, "127.0.0.1:5000", &err), 0);
    assert_string_equal(c.username, "alice");
    assert_string_equal(c.password, "s3cret-A");
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "reg.example.com", &err), 0);
    assert_string_equal(c.username, "bob");
    assert_string_equal(c.password, "s3cret-B");
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "docker.io", &err), 0);
    assert_string_equal(c.username, "hub");
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "tok.example.com", &err), 0);
    assert_string_equal(c.identity_token, "s3cret-D");
    assert_null(c.username);
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "other.example.com", &err), SBX_ENOTFOUND);
    assert_true(reg_creds_empty(&c));
    /* a port is part of the host */
    assert_int_equal(reg_docker_creds(&c, cfg, "127.0.0.1:5001", &err), SBX_ENOTFOUND);
    /* "nocolon": an error that names the file, not the secret */
    assert_int_equal(reg_docker_creds(&c, cfg, "bad.example.com", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "not base64 of 'user:password'");
    assert_null(strstr(err.msg, "nocolon"));
    assert_non_null(strstr(err.where, "config.json"));
    /* missing file: nothing configured */
    char *missing = tu_path(dir, "nope.json");
    assert_int_equal(reg_docker_creds(&c, missing, "127.0.0.1:5000", &err), SBX_ENOTFOUND);
    /* broken JSON */
    tu_write_file(cfg, "{\"auths\": {");
    assert_int_equal(reg_docker_creds(&c, cfg, "127.0.0.1:5000", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "parsing Docker config");
    free(missing);
    free(cfg);
    tu_tmpdir_free(dir);
}

static void test_docker_config_helpers(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *helper = tu_path(dir, "docker-credential-sbxtest");
    /* echoes the server it was asked about as the username */
    tu_write_file(helper, "#!/bin/sh\n"
                          "read -r server\n"
                          "case \"$server\" in\n"
                          "  missing*) echo 'credentials not found in native keychain'; exit 1;;\n"
                          "  broken*) echo 'boom s3cret-X'; exit 3;;\n"
                          "  token*) printf '{\"Username\":\"<token>\",\"Secret\":\"s3cret-T\"}';;\n"
                          "  *) printf '{\"ServerURL\":\"%s\",\"Username\":\"u-%s\",\"Secret\":\"s3cret-H\"}' "
                          "\"$server\" \"$server\";;\n"
                          "esac\n");
    assert_int_equal(chmod(helper, 0755), 0);
    const char *old = getenv("PATH");
    char *path = sbx__strdup_printf("%s:%s", dir, old ? old : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    char *cfg = tu_path(dir, "config.json");
    tu_write_file(cfg, "{\"credHelpers\":{\"h.example.com\":\"sbxtest\",\"missing.example.com\":"
                       "\"sbxtest\",\"broken.example.com\":\"sbxtest\",\"token.example.com\":"
                       "\"sbxtest\",\"evil.example.com\":\"../../bin/sh\"},"
                       "\"auths\":{\"h.example.com\":{\"auth\":\"eDp5\"}},"
                       "\"credsStore\":\"sbxtest\"}");
    reg_creds c;
    sbx_error err = SBX_ERROR_INIT;
    /* credHelpers wins over auths */
    assert_int_equal(reg_docker_creds(&c, cfg, "h.example.com", &err), 0);
    assert_string_equal(c.username, "u-h.example.com");
    assert_string_equal(c.password, "s3cret-H");
    reg_creds_clear(&c);
    /* credsStore for the rest; docker.io asked by its v1 URL */
    assert_int_equal(reg_docker_creds(&c, cfg, "docker.io", &err), 0);
    assert_string_equal(c.username, "u-https://index.docker.io/v1/");
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "token.example.com", &err), 0);
    assert_string_equal(c.identity_token, "s3cret-T");
    reg_creds_clear(&c);
    assert_int_equal(reg_docker_creds(&c, cfg, "missing.example.com", &err), SBX_ENOTFOUND);
    assert_int_equal(reg_docker_creds(&c, cfg, "broken.example.com", &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "credential helper 'docker-credential-sbxtest' failed");
    assert_null(strstr(err.msg, "s3cret"));
    assert_int_equal(reg_docker_creds(&c, cfg, "evil.example.com", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "bad helper name");
    assert_int_equal(reg_cred_helper_get(&c, "nonexistent-sbx", "x", &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "docker-credential-nonexistent-sbx");
    setenv("PATH", old ? old : "/usr/bin:/bin", 1);
    free(path);
    free(cfg);
    free(helper);
    tu_tmpdir_free(dir);
}

static void test_registries_config(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *p = tu_path(dir, "registries.json");
    reg_config cfg;
    sbx_error err = SBX_ERROR_INIT;
    /* absent: nothing configured */
    assert_int_equal(reg_config_load(&cfg, p, &err), 0);
    assert_int_equal(cfg.ninsecure, 0);
    tu_write_file(p, "{\"insecure\":[\"10.0.0.5:5000\"],\"mirrors\":{\"docker.io\":"
                     "[\"http://127.0.0.1:5001\",\"https://mirror.example.com/\"]}}");
    assert_int_equal(reg_config_load(&cfg, p, &err), 0);
    assert_true(reg_config_is_insecure(&cfg, "10.0.0.5:5000"));
    assert_false(reg_config_is_insecure(&cfg, "10.0.0.5:5001"));
    assert_int_equal(cfg.nmirrors, 2);
    assert_string_equal(cfg.mirrors[0], "http://127.0.0.1:5001");
    reg_config_free(&cfg);
    tu_write_file(p, "{\"mirrors\":{\"quay.io\":[\"http://x\"]}}");
    assert_int_equal(reg_config_load(&cfg, p, &err), SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "mirrors are supported for 'docker.io' only");
    tu_write_file(p, "{\"mirrors\":{\"docker.io\":[\"ftp://x\"]}}");
    assert_int_equal(reg_config_load(&cfg, p, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "must start with http:// or https://");
    tu_write_file(p, "{\"mirrors\":{\"docker.io\":[\"https://u:s3cret@m.example.com\"]}}");
    assert_int_equal(reg_config_load(&cfg, p, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "mirror 1 has credentials in its URL");
    assert_null(strstr(err.msg, "s3cret"));
    tu_write_file(p, "{\"insecure\":\"x\"}");
    assert_int_equal(reg_config_load(&cfg, p, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "'insecure' must be a list");
    tu_write_file(p, "[1,");
    assert_int_equal(reg_config_load(&cfg, p, &err), SBX_EINVAL);
    assert_non_null(strstr(err.where, "registries.json"));
    /* loopback rules */
    assert_true(reg_host_is_loopback("127.0.0.1:5000"));
    assert_true(reg_host_is_loopback("127.3.4.5"));
    assert_true(reg_host_is_loopback("localhost:80"));
    assert_true(reg_host_is_loopback("[::1]:5000"));
    assert_false(reg_host_is_loopback("128.0.0.1"));
    assert_false(reg_host_is_loopback("localhost.example.com"));
    assert_false(reg_host_is_loopback("[::2]:5000"));
    free(p);
    tu_tmpdir_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_bearer),
        cmocka_unit_test(test_challenge_multiple_and_basic),
        cmocka_unit_test(test_challenge_errors),
        cmocka_unit_test(test_token_answer),
        cmocka_unit_test(test_token_cache),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_docker_config_auths),
        cmocka_unit_test(test_docker_config_helpers),
        cmocka_unit_test(test_registries_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
