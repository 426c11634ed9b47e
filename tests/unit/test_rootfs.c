/* sbx_rootfs_merge / sbx_rootfs_unpack: overlayfs resolution corner cases on
 * hand-made overlay-form layer dirs, and the errors of unpack. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "testutil.h"
#include "sbx_common.h"
#include "sbx/rootfs.h"
#include "sbx/store.h"

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = tu_tmpdir();
    return g_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_tmpdir_free(g_dir);
    return 0;
}

/* p("layer/rel") under the test dir; returns a static buffer slot. */
static const char *p(const char *rel)
{
    static char bufs[8][4096];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 4096, "%s/%s", g_dir, rel);
    return b;
}

static void mkd(const char *rel) { assert_int_equal(mkdir(p(rel), 0755), 0); }
static void file(const char *rel, const char *content) { tu_write_file(p(rel), content); }
static void whiteout(const char *rel) { assert_int_equal(mknod(p(rel), S_IFCHR | 0, makedev(0, 0)), 0); }
static void opaque(const char *rel)
{
    assert_int_equal(setxattr(p(rel), "trusted.overlay.opaque", "y", 1, 0), 0);
}
static bool exists(const char *rel)
{
    struct stat st;
    return lstat(p(rel), &st) == 0;
}
static void assert_content(const char *rel, const char *want)
{
    char *got = NULL;
    size_t len;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx__read_file(&got, &len, p(rel), 4096, &err) < 0)
        fail_msg("reading '%s': %s", rel, err.msg);
    assert_string_equal(got, want);
    free(got);
}

static int merge3(bool link, sbx_rootfs_stats *st, sbx_error *err)
{
    const char *layers[] = {p("top"), p("mid"), p("low")};
    mkd("out");
    return sbx_rootfs_merge(p("out"), layers, 3, link, st, NULL, err);
}

/* An upper dir over a whiteout in the middle layer hides the lowest layer's
 * contents of that dir; a middle non-dir under an upper dir hides the lower
 * dir; an opaque dir hides what is below it but keeps its own entries. */
static void test_overlay_resolution(void **state)
{
    (void)state;
    mkd("top"), mkd("mid"), mkd("low");
    mkd("top/d"), file("top/d/t", "top");
    whiteout("mid/d");
    mkd("low/d"), file("low/d/hidden", "low");

    mkd("top/e"), file("top/e/t", "top");
    file("mid/e", "file in the middle");
    mkd("low/e"), file("low/e/hidden", "low");

    mkd("mid/o"), opaque("mid/o"), file("mid/o/m", "mid");
    mkd("low/o"), file("low/o/hidden", "low");
    mkd("top/o"), file("top/o/t", "top");

    file("low/gone", "x"), whiteout("top/gone");
    file("low/k", "low"), file("mid/k", "mid");
    mkd("low/merged"), file("low/merged/a", "a"), mkd("top/merged"), file("top/merged/b", "b");

    sbx_error err = SBX_ERROR_INIT;
    sbx_rootfs_stats st;
    assert_int_equal(merge3(false, &st, &err), 0);
    assert_true(exists("out/d/t"));
    assert_false(exists("out/d/hidden"));
    assert_true(exists("out/e/t"));
    assert_false(exists("out/e/hidden"));
    assert_true(exists("out/o/t") && exists("out/o/m"));
    assert_false(exists("out/o/hidden"));
    assert_false(exists("out/gone"));
    assert_content("out/k", "mid");
    assert_true(exists("out/merged/a") && exists("out/merged/b"));
    char v[4];
    assert_true(getxattr(p("out/o"), "trusted.overlay.opaque", v, sizeof v) < 0);
    /* top: d/t e/t o/t merged/b; mid: o/m k; low: merged/a (mid's e, low's k lost) */
    assert_int_equal(st.copied, 7);
    assert_int_equal(st.files, 7);
}

static void test_link_shares_inodes(void **state)
{
    (void)state;
    mkd("top"), mkd("mid"), mkd("low");
    file("low/f", "x");
    assert_int_equal(symlink("f", p("mid/l")), 0);
    sbx_error err = SBX_ERROR_INIT;
    sbx_rootfs_stats st;
    assert_int_equal(merge3(true, &st, &err), 0);
    struct stat a, b;
    assert_int_equal(stat(p("low/f"), &a), 0);
    assert_int_equal(stat(p("out/f"), &b), 0);
    assert_int_equal(a.st_ino, b.st_ino);
    assert_int_equal(st.linked, 2);
    assert_int_equal(st.copied, 0);
    assert_int_equal(st.files, 2);
}

static void test_unpack_errors(void **state)
{
    (void)state;
    sbx_store *s = NULL;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_store_open(&s, p("store"), &err), 0);
    sbx_rootfs_result res;

    assert_int_equal(sbx_rootfs_unpack(&res, s, "nosuch:1", p("new"), NULL, NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "no such image in the store");
    assert_non_null(strstr(err.msg, "sbx-image pull nosuch:1"));
    assert_string_equal(err.where, "nosuch:1");
    assert_false(exists("new"));

    sbx_error_clear(&err);
    mkd("full"), file("full/x", "x");
    assert_int_equal(sbx_rootfs_unpack(&res, s, "nosuch:1", p("full"), NULL, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "is not empty");
    assert_string_equal(err.where, p("full"));
    assert_int_equal(tu_count_files(p("full")), 1);

    sbx_error_clear(&err);
    assert_int_equal(sbx_rootfs_unpack(&res, s, "", p("new"), NULL, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "an image and a directory are needed");
    sbx_store_free(s);
    /* nothing but the store and "full" beside the destinations: no temp dir */
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "store") &&
            strcmp(de->d_name, "full"))
            fail_msg("left behind: '%s'", de->d_name);
    closedir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_overlay_resolution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_shares_inodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
