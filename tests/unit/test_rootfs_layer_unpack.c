/* Unpack durability: an unpacked dir is trusted only when its mark names the
 * current boot; anything else is moved aside and unpacked again. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "rootfs_internal.h"
#include "sbx_common.h"
#include "testutil.h"

/* A tar with dir "sub/" (carrying a forged mark when forge_mark is set, plus
 * a harmless user xattr) and the file "sub/f" = "data". */
static char *write_layer(const char *dir, const char *forge_mark)
{
    char *path = tu_path(dir, "in.tar");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "sub/");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    archive_entry_xattr_add_entry(e, "user.keep", "k", 1);
    if (forge_mark) {
        archive_entry_xattr_add_entry(e, SBX_UNPACK_MARK_XATTR, forge_mark, strlen(forge_mark));
        archive_entry_xattr_add_entry(e, SBX_UNPACK_MARK_XATTR_USER, forge_mark,
                                      strlen(forge_mark));
    }
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    archive_entry_clear(e);
    archive_entry_set_pathname(e, "sub/f");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 4);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "data", 4), 4);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return path;
}

static int unpack_file(const char *tar, const char *dest, sbx_error *err)
{
    int fd = open(tar, O_RDONLY);
    assert_true(fd >= 0);
    int r = sbx_rootfs_unpack_tar_fd(fd, dest, err);
    close(fd);
    return r;
}

static void boot_id(char *out, size_t len)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, out, len - 1);
    close(fd);
    assert_true(n > 1);
    out[n - 1] = '\0'; /* the newline */
}

static bool no_tmp_left(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -q '\\.tmp-'", dir);
    return system(cmd) != 0;
}

/* dest is a complete unpack of write_layer's tar, marked with this boot. */
static void assert_fresh(const char *dest)
{
    char boot[64], v[64] = "";
    boot_id(boot, sizeof(boot));
    ssize_t n = getxattr(dest, SBX_UNPACK_MARK_XATTR, v, sizeof(v) - 1);
    assert_int_equal(n, (ssize_t)strlen(boot));
    assert_string_equal(v, boot);
    assert_true(sbx_rootfs_layer_is_current(dest));
    char *f = tu_path(dest, "sub/f"), *stale = tu_path(dest, "stale");
    struct stat st;
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(lstat(stale, &st), -1); /* the old tree is gone */
    free(f), free(stale);
}

/* What an older boot (or an interrupted unpacker) left: the tree with an
 * extra file, so a re-unpack is visible. */
static void make_stale(const char *dest, const char *mark)
{
    char *stale = tu_path(dest, "stale");
    tu_write_file(stale, "old");
    free(stale);
    if (mark)
        assert_int_equal(setxattr(dest, SBX_UNPACK_MARK_XATTR, mark, strlen(mark), 0), 0);
    else
        assert_int_equal(removexattr(dest, SBX_UNPACK_MARK_XATTR), 0);
    assert_false(sbx_rootfs_layer_is_current(dest));
}

static void test_unpack_marks_boot(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *tar = write_layer(d, NULL);
    char *dest = tu_path(d, "u/layer");
    sbx_error err = SBX_ERROR_INIT;
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(dest);
    /* a current dir is kept as is */
    char *extra = tu_path(dest, "extra");
    tu_write_file(extra, "x");
    assert_int_equal(unpack_file(tar, dest, &err), 0);
    struct stat st;
    assert_int_equal(lstat(extra, &st), 0);
    free(extra), free(tar), free(dest);
    tu_tmpdir_free(d);
}

static void test_unpack_other_boot_redone(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *tar = write_layer(d, NULL);
    char *dest = tu_path(d, "u/layer"), *u = tu_path(d, "u");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(tar, dest, &err), 0);
    make_stale(dest, "00000000-0000-0000-0000-000000000000");
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(dest);
    assert_true(no_tmp_left(u));
    free(u), free(tar), free(dest);
    tu_tmpdir_free(d);
}

static void test_unpack_unmarked_redone(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *tar = write_layer(d, NULL);
    char *dest = tu_path(d, "u/layer"), *u = tu_path(d, "u");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(tar, dest, &err), 0);
    make_stale(dest, NULL);
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(dest);
    assert_true(no_tmp_left(u));

    /* not even a dir (an older tool, a stray file): replaced as well */
    assert_int_equal(sbx__rm_rf(dest, &err), 0);
    tu_write_file(dest, "junk");
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(dest);
    assert_true(no_tmp_left(u));
    free(u), free(tar), free(dest);
    tu_tmpdir_free(d);
}

/* Several unpackers find the same stale dir: one fresh dir results, and
 * none of them removes the dir another one put in place. */
static void test_unpack_stale_concurrent(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *tar = write_layer(d, NULL);
    char *dest = tu_path(d, "u/layer"), *u = tu_path(d, "u");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(tar, dest, &err), 0);
    make_stale(dest, "another-boot");
    pid_t kids[6];
    for (int i = 0; i < 6; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            sbx_error e = SBX_ERROR_INIT;
            if (unpack_file(tar, dest, &e) != 0 || !sbx_rootfs_layer_is_current(dest))
                _exit(1);
            char *f = tu_path(dest, "sub/f");
            struct stat st;
            _exit(stat(f, &st) == 0 ? 0 : 1); /* still there after it returned */
        }
    }
    for (int i = 0; i < 6; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_fresh(dest);
    assert_int_equal(tu_count_files(u), 1);
    assert_true(no_tmp_left(u));
    free(u), free(tar), free(dest);
    tu_tmpdir_free(d);
}

/* A layer cannot carry the mark (on any dir), so it cannot make a later
 * reader trust a half-written tree. */
static void test_unpack_drops_forged_mark(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char boot[64];
    boot_id(boot, sizeof(boot));
    char *tar = write_layer(d, boot);
    char *dest = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    char *sub = tu_path(dest, "sub");
    char v[64];
    assert_int_equal(getxattr(sub, SBX_UNPACK_MARK_XATTR, v, sizeof(v)), -1);
    assert_int_equal(errno, ENODATA);
    assert_int_equal(getxattr(sub, SBX_UNPACK_MARK_XATTR_USER, v, sizeof(v)), -1);
    assert_int_equal(getxattr(sub, "user.keep", v, sizeof(v)), 1); /* others kept */
    assert_false(sbx_rootfs_layer_is_current(sub));
    assert_fresh(dest);
    free(sub), free(tar), free(dest);
    tu_tmpdir_free(d);
}

/* The builder's path: a stored layer's cached dir from another boot is
 * unpacked again by sbx_rootfs_layer_unpack. */
static void test_layer_unpack_other_boot_redone(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *tar = write_layer(d, NULL), *root = tu_path(d, "store");
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) != 0)
        fail_msg("store: %s", err.msg);
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, s, NULL, &err), 0);
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(sbx__read_file(&bytes, &len, tar, 1 << 20, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, bytes, len, &err), 0);
    char diff_id[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_layer_writer_commit(w, diff_id, &err), 0);
    char path[1024];
    if (sbx_rootfs_layer_unpack(path, sizeof(path), s, diff_id, NULL, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(path);
    make_stale(path, "00000000-0000-0000-0000-000000000001");
    if (sbx_rootfs_layer_unpack(path, sizeof(path), s, diff_id, NULL, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    assert_fresh(path);
    char *parent = strdup(path);
    *strrchr(parent, '/') = '\0';
    assert_true(no_tmp_left(parent));
    sbx_store_free(s);
    free(parent), free(bytes), free(root), free(tar);
    tu_tmpdir_free(d);
}

static void store_tar(char diff_id[SBX_DIGEST_BUFSZ], sbx_store *s, const char *tar)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_writer *w = NULL;
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(sbx__read_file(&bytes, &len, tar, 1 << 20, &err), 0);
    assert_int_equal(sbx_store_layer_begin(&w, s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, bytes, len, &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, diff_id, &err), 0);
    free(bytes);
}

/* A stored layer whose file was replaced by another valid zstd stream (its
 * frame checksum fine, its content not the layer's) never reaches a
 * sandbox: unpack hashes what it feeds the extractor and refuses it. */
/* A directory a layer's tar does not list (the parent of one of its
 * entries) is made 0755, as Docker's unpacker makes it, whatever the
 * process's umask; every listed entry keeps its exact mode. */
static void test_unpack_implicit_parents_0755(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *path = tu_path(d, "in.tar");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    static const struct { const char *name; mode_t type, perm; } ents[] = {
        {"implicit/deeper/f", AE_IFREG, 0666}, {"open/", AE_IFDIR, 0777},
        {"open/f", AE_IFREG, 0777}, {"tight/", AE_IFDIR, 0700}, {"sticky/", AE_IFDIR, 01777}};
    for (size_t i = 0; i < sizeof ents / sizeof *ents; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, ents[i].name);
        archive_entry_set_filetype(e, ents[i].type);
        archive_entry_set_perm(e, ents[i].perm);
        archive_entry_set_size(e, 0);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    }
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    char *dest = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(path, dest, &err), 0);
    static const struct { const char *name; mode_t perm; } want[] = {
        {"implicit", 0755}, {"implicit/deeper", 0755}, {"implicit/deeper/f", 0666},
        {"open", 0777}, {"open/f", 0777}, {"tight", 0700}, {"sticky", 01777}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char *p = tu_path(dest, want[i].name);
        struct stat st;
        assert_int_equal(lstat(p, &st), 0);
        if ((st.st_mode & 07777) != want[i].perm)
            fail_msg("%s: mode %o, want %o", want[i].name, st.st_mode & 07777, want[i].perm);
        free(p);
    }
    free(dest);
    free(path);
    tu_tmpdir_free(d);
}

static void test_layer_unpack_checks_diff_id(void **state)
{
    (void)state;
    char *d = tu_tmpdir(), *root = tu_path(d, "store");
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    assert_int_equal(sbx_store_open(&s, root, &err), 0);
    char good[SBX_DIGEST_BUFSZ], other[SBX_DIGEST_BUFSZ];
    char *tar = write_layer(d, NULL);
    store_tar(good, s, tar);
    free(tar);
    tar = write_layer(d, "forged");
    store_tar(other, s, tar);
    assert_string_not_equal(good, other);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp %s/layers/sha256/%s.zst %s/layers/sha256/%s.zst", root,
             other + 7, root, good + 7);
    assert_int_equal(system(cmd), 0);
    char path[1024];
    assert_int_equal(sbx_rootfs_layer_unpack(path, sizeof(path), s, good, NULL, &err),
                     SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "does not match");
    assert_non_null(strstr(err.msg, good));
    struct stat st;
    char *cached = NULL;
    assert_int_equal(sbx_store_layer_unpacked_path(s, good, path, sizeof path, &err), 0);
    cached = path;
    assert_int_equal(lstat(cached, &st), -1);
    char *tmp = tu_path(root, "tmp");
    assert_int_equal(tu_count_files(tmp), 0);
    sbx_store_free(s);
    free(tmp), free(tar), free(root);
    tu_tmpdir_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unpack_marks_boot),
        cmocka_unit_test(test_unpack_other_boot_redone),
        cmocka_unit_test(test_unpack_unmarked_redone),
        cmocka_unit_test(test_unpack_stale_concurrent),
        cmocka_unit_test(test_unpack_drops_forged_mark),
        cmocka_unit_test(test_layer_unpack_other_boot_redone),
        cmocka_unit_test(test_layer_unpack_checks_diff_id),
        cmocka_unit_test(test_unpack_implicit_parents_0755),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
