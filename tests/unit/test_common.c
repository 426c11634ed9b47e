#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "sbx_common.h"
#include "testutil.h"

static void test_sha256_known_vectors(void **state)
{
    (void)state;
    char d[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf("", 0, d);
    assert_string_equal(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sbx__sha256 *h = NULL;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__sha256_new(&h, &err), 0);
    sbx__sha256_update(h, "ab", 2);
    sbx__sha256_update(h, "c", 1);
    sbx__sha256_final(h, d);
    assert_string_equal(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sbx__sha256_free(h);
}

static void test_digest_validation(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    assert_true(sbx__digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(sbx__digest_valid("sha256:E3B0C44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(sbx__digest_valid("sha256:e3b0"));
    assert_false(sbx__digest_valid("md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(sbx__digest_valid(NULL));
    assert_int_equal(sbx__digest_parse(NULL, "sha256:zz", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "parse digest 'sha256:zz'");
}

static void test_error_wrap_and_format(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_error_sys(&err, SBX_EIO, ENOENT, "open '%s'", "x");
    sbx_error_wrap(&err, "pulling '%s'", "node:22");
    sbx_error_where(&err, "recipe.yaml:%d:%d", 3, 5);
    char buf[2048];
    assert_string_equal(sbx_error_format(&err, buf, sizeof buf),
                        "recipe.yaml:3:5: pulling 'node:22': open 'x': No such file or directory");
}

static void test_write_file_atomic_and_read_limit(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *p = tu_path(dir, "f");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__write_file_atomic(p, "hello", 5, 0600, &err), 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(sbx__read_file(&data, &len, p, 100, &err), 0);
    assert_string_equal(data, "hello");
    free(data);
    assert_int_equal(sbx__read_file(&data, &len, p, 4, &err), SBX_ELIMIT);
    tu_assert_error(&err, SBX_ELIMIT, "exceeds the limit of 4");
    assert_int_equal(tu_count_files(dir), 1); /* no temp file left */
    free(p);
    tu_tmpdir_free(dir);
}

static void test_rm_rf_handles_nested_dirs(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *sub = tu_path(dir, "a/b/c");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__mkdir_p(sub, 0755, &err), 0);
    char *f = tu_path(sub, "file");
    tu_write_file(f, "x");
    char *top = tu_path(dir, "a");
    assert_int_equal(sbx__rm_rf(top, &err), 0);
    struct stat st;
    assert_int_equal(lstat(top, &st), -1);
    assert_int_equal(sbx__rm_rf(top, &err), 0); /* missing is fine */
    free(f);
    free(sub);
    free(top);
    tu_tmpdir_free(dir);
}

/* A bind mount of the same filesystem below the tree (same st_dev): rm -rf
 * stops at it, and what it shows survives; sbx__umount_below finds it
 * (with a space in its path, escaped in mountinfo) and unmounts it. */
static void test_rm_rf_stops_at_a_bind_mount(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *precious = tu_path(dir, "precious"), *tree = tu_path(dir, "tree with space");
    char *mp = tu_path(tree, "sub/mnt");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__mkdir_p(precious, 0755, &err), 0);
    assert_int_equal(sbx__mkdir_p(mp, 0755, &err), 0);
    char *keep = tu_path(precious, "keep");
    tu_write_file(keep, "x");
    assert_int_equal(mount(precious, mp, NULL, MS_BIND, NULL), 0);
    assert_true(sbx__mounted_below(tree));
    assert_int_equal(sbx__rm_rf(tree, &err), SBX_EBUSY);
    struct stat st;
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(sbx__umount_below(tree), 0);
    assert_false(sbx__mounted_below(tree));
    assert_int_equal(sbx__rm_rf(tree, &err), 0);
    assert_int_equal(stat(keep, &st), 0);
    free(keep), free(mp), free(tree), free(precious);
    tu_tmpdir_free(dir);
}

static void test_url_redact_hides_credentials_as_pip_does(void **state)
{
    (void)state;
    char b[128];
    assert_string_equal(sbx__url_redact(b, sizeof b, "https://u:p@h:5000/simple", false),
                        "https://u:****@h:5000/simple");
    assert_string_equal(sbx__url_redact(b, sizeof b, "https://tok@h/x?a=1", false),
                        "https://****@h/x?a=1");
    assert_string_equal(sbx__url_redact(b, sizeof b, "https://h/x?sig=s3cr3t", true), "https://h/x");
    assert_string_equal(sbx__url_redact(b, sizeof b, "https://h/a@b", false), "https://h/a@b");
    assert_string_equal(sbx__url_redact(b, sizeof b, "http://u:p@h?x=@y", true), "http://u:****@h");
    assert_string_equal(sbx__url_redact(b, sizeof b, "no-scheme:p@h", false), "no-scheme:p@h");
    assert_string_equal(sbx__url_redact(b, 8, "https://u:p@h/", false), "https:/");
}

static void test_bytes_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {{"0", 0},
                {"512", 512},
                {"512B", 512},
                {"64K", 64u << 10},
                {"64k", 64u << 10},
                {"1.5G", 3ull << 29},
                {"2GiB", 2ull << 30},
                {"2gib", 2ull << 30},
                {"100MB", 100000000},
                {"2GB", 2000000000},
                {"1T", 1ull << 40},
                {"1TB", 1000000000000ull}};
    sbx_error err = SBX_ERROR_INIT;
    for (size_t i = 0; i < SBX_ARRAY_LEN(good); i++) {
        uint64_t v = 1;
        assert_int_equal(sbx_bytes_parse(good[i].s, &v, &err), 0);
        assert_true(v == good[i].v);
    }
    static const char *const bad[] = {"", "M", "-1", "1X", "1GiBB", "1 G", "1e30", "1MiX",
                                      "2BB", "0x10"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(bad); i++) {
        uint64_t v = 7;
        sbx_error_clear(&err);
        assert_int_equal(sbx_bytes_parse(bad[i], &v, &err), SBX_EINVAL);
        assert_true(v == 7);
        assert_non_null(strstr(err.msg, "is not a size"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_vectors),
        cmocka_unit_test(test_digest_validation),
        cmocka_unit_test(test_error_wrap_and_format),
        cmocka_unit_test(test_write_file_atomic_and_read_limit),
        cmocka_unit_test(test_rm_rf_handles_nested_dirs),
        cmocka_unit_test(test_rm_rf_stops_at_a_bind_mount),
        cmocka_unit_test(test_url_redact_hides_credentials_as_pip_does),
        cmocka_unit_test(test_bytes_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
