/* Layer capture and unpack: determinism, whiteouts, hostile tars, races,
 * and a real overlayfs upper. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "rootfs_internal.h"
#include "sbx_common.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct membuf {
    char *data;
    size_t len;
} membuf;

static int mem_sink(void *ud, const void *buf, size_t len, sbx_error *err)
{
    membuf *m = ud;
    char *n = realloc(m->data, m->len + len);
    if (!n)
        return sbx_error_set(err, SBX_ENOMEM, "oom");
    memcpy(n + m->len, buf, len);
    m->data = n;
    m->len += len;
    return 0;
}

static void capture_mem(const char *dir, const sbx_capture_options *o, membuf *m,
                        sbx_capture_result *res)
{
    sbx_error err = SBX_ERROR_INIT;
    m->data = NULL;
    m->len = 0;
    int r = sbx_rootfs_capture_stream(res, dir, o, mem_sink, m, NULL, &err);
    if (r != 0)
        fail_msg("capture: %s", err.msg);
}

/* One tar entry, as "name", type, and content/target. */
typedef struct tspec {
    const char *name;
    int type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, or 1 for a hardlink */
    const char *data;
} tspec;

static char *write_tar(const char *dir, const tspec *specs, size_t n)
{
    char *path = tu_path(dir, "in.tar");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    for (size_t i = 0; i < n; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, specs[i].name);
        archive_entry_set_mtime(e, 1000, 0);
        size_t len = 0;
        if (specs[i].type == 1) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_hardlink(e, specs[i].data);
        } else if (specs[i].type == AE_IFLNK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, specs[i].data);
        } else {
            archive_entry_set_filetype(e, (unsigned)specs[i].type);
            archive_entry_set_perm(e, specs[i].type == AE_IFDIR ? 0755 : 0644);
            len = specs[i].data ? strlen(specs[i].data) : 0;
            archive_entry_set_size(e, (la_int64_t)len);
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (len)
            assert_int_equal(archive_write_data(a, specs[i].data, len), (la_ssize_t)len);
    }
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

/* Names of the entries of a tar in memory, '\n'-joined, with a type letter. */
static char *list_tar(const membuf *m)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_memory(a, m->data, m->len), ARCHIVE_OK);
    size_t cap = 8192, len = 0;
    char *out = calloc(1, cap);
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        char t = archive_entry_hardlink(e) ? 'h'
                 : archive_entry_filetype(e) == AE_IFDIR ? 'd'
                 : archive_entry_filetype(e) == AE_IFLNK ? 'l'
                 : archive_entry_filetype(e) == AE_IFCHR ? 'c'
                                                         : 'f';
        len += (size_t)snprintf(out + len, cap - len, "%c %s\n", t, archive_entry_pathname(e));
        assert_true(len < cap);
        const char *un = archive_entry_uname(e), *gn = archive_entry_gname(e);
        assert_true(!un || !*un);
        assert_true(!gn || !*gn);
        assert_false(archive_entry_atime_is_set(e));
        assert_false(archive_entry_ctime_is_set(e));
    }
    archive_read_free(a);
    return out;
}

static void mkfile(const char *dir, const char *name, const char *content)
{
    char *p = tu_path(dir, name);
    tu_write_file(p, content);
    free(p);
}

static void mkd(const char *dir, const char *name)
{
    char *p = tu_path(dir, name);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
}

static bool no_tmp_left(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -q '\\.tmp-'", dir);
    return system(cmd) != 0;
}

/* ---- capture ------------------------------------------------------------ */

static void test_capture_entries(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *src = tu_path(d, "src");
    assert_int_equal(mkdir(src, 0755), 0);
    mkd(src, "b");
    mkfile(src, "b/z", "zz");
    mkfile(src, "a", "hello");
    mkfile(src, "a.b", "x");
    char *a = tu_path(src, "a"), *hl = tu_path(src, "b/hard");
    assert_int_equal(link(a, hl), 0);
    char *sl = tu_path(src, "sym");
    assert_int_equal(symlink("a", sl), 0);
    assert_int_equal(setxattr(a, "user.keep", "1", 1, 0), 0);
    assert_int_equal(setxattr(a, "trusted.overlay.origin", "x", 1, 0), 0);

    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.epoch = 100;
    o.overlay_upper = false;
    membuf m;
    sbx_capture_result res;
    capture_mem(src, &o, &m, &res);
    assert_true(res.changed);
    assert_true(sbx__digest_valid(res.diff_id));
    assert_int_equal(res.size, m.len);
    char want[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(m.data, m.len, want);
    assert_string_equal(want, res.diff_id);
    char *list = list_tar(&m);
    assert_string_equal(list, "f a\nf a.b\nd b/\nh b/hard\nf b/z\nl sym\n");

    /* xattrs: user.keep kept, overlay-private dropped; mtime clamped */
    struct archive *ar = archive_read_new();
    archive_read_support_format_tar(ar);
    archive_read_open_memory(ar, m.data, m.len);
    struct archive_entry *e;
    assert_int_equal(archive_read_next_header(ar, &e), ARCHIVE_OK);
    assert_int_equal(archive_entry_mtime(e), 100);
    /* libarchive writes (and reads back) both the SCHILY and LIBARCHIVE forms */
    assert_true(archive_entry_xattr_reset(e) >= 1);
    const char *xn;
    const void *xv;
    size_t xl;
    while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK)
        assert_string_equal(xn, "user.keep");
    archive_read_free(ar);

    free(list);
    free(m.data);
    free(a);
    free(hl);
    free(sl);
    free(src);
    tu_tmpdir_free(d);
}

static void build_tree(const char *root, bool reverse)
{
    assert_int_equal(mkdir(root, 0755), 0);
    const char *names[] = {"one", "two", "three", "four"};
    for (size_t k = 0; k < 4; k++) {
        size_t i = reverse ? 3 - k : k;
        mkfile(root, names[i], names[i]);
    }
    mkd(root, "dir");
    mkfile(root, "dir/f", "content");
}

static void test_capture_deterministic(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *t1 = tu_path(d, "t1"), *t2 = tu_path(d, "t2");
    build_tree(t1, false);
    sleep(1); /* different mtimes and creation order must not matter */
    build_tree(t2, true);
    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.overlay_upper = false;
    o.epoch = 0;
    membuf m1, m2, m3;
    sbx_capture_result r1, r2, r3;
    capture_mem(t1, &o, &m1, &r1);
    capture_mem(t2, &o, &m2, &r2);
    capture_mem(t1, &o, &m3, &r3);
    assert_string_equal(r1.diff_id, r2.diff_id);
    assert_string_equal(r1.diff_id, r3.diff_id);
    assert_int_equal(m1.len, m2.len);
    assert_memory_equal(m1.data, m2.data, m1.len);

    /* SOURCE_DATE_EPOCH is the default clamp */
    setenv("SOURCE_DATE_EPOCH", "12345", 1);
    o.epoch = -1;
    membuf m4;
    sbx_capture_result r4;
    capture_mem(t1, &o, &m4, &r4);
    unsetenv("SOURCE_DATE_EPOCH");
    assert_string_not_equal(r4.diff_id, r1.diff_id);

    /* a content change changes the digest */
    mkfile(t2, "dir/f", "contenT");
    membuf m5;
    sbx_capture_result r5;
    capture_mem(t2, &o, &m5, &r5);
    assert_string_not_equal(r5.diff_id, r1.diff_id);

    free(m1.data), free(m2.data), free(m3.data), free(m4.data), free(m5.data);
    free(t1), free(t2);
    tu_tmpdir_free(d);
}

static void test_capture_empty_and_errors(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    membuf m;
    sbx_capture_result res;
    capture_mem(d, &o, &m, &res);
    assert_false(res.changed);
    assert_int_equal(m.len, 0);
    assert_string_equal(res.diff_id, "");

    sbx_error err = SBX_ERROR_INIT;
    char *missing = tu_path(d, "missing");
    assert_int_equal(sbx_rootfs_capture_stream(&res, missing, &o, mem_sink, &m, NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "capturing");
    assert_string_equal(err.where, missing);

    sbx_error_clear(&err);
    o.prefix = "../x";
    assert_int_equal(sbx_rootfs_capture_stream(&res, d, &o, mem_sink, &m, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "bad prefix '../x'");
    assert_int_equal(m.len, 0);
    free(missing);
    tu_tmpdir_free(d);
}

static void test_capture_prefix_owner_mode(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *src = tu_path(d, "src");
    assert_int_equal(mkdir(src, 0700), 0);
    mkfile(src, "f", "x");
    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.overlay_upper = false;
    o.prefix = "app/src";
    o.set_owner = true;
    o.uid = 1000;
    o.gid = 1001;
    o.file_mode = 0600;
    membuf m;
    sbx_capture_result res;
    capture_mem(src, &o, &m, &res);
    char *list = list_tar(&m);
    assert_string_equal(list, "d app/\nd app/src/\nf app/src/f\n");
    struct archive *ar = archive_read_new();
    archive_read_support_format_tar(ar);
    archive_read_open_memory(ar, m.data, m.len);
    struct archive_entry *e;
    int i = 0;
    while (archive_read_next_header(ar, &e) == ARCHIVE_OK) {
        if (i == 0)
            assert_int_equal(archive_entry_uid(e), 0);
        if (i == 2) {
            assert_int_equal(archive_entry_uid(e), 1000);
            assert_int_equal(archive_entry_gid(e), 1001);
            assert_int_equal(archive_entry_perm(e), 0600);
        }
        i++;
    }
    archive_read_free(ar);
    free(list);
    free(m.data);

    /* a single file with a prefix becomes that path */
    char *f = tu_path(src, "f");
    o.prefix = "etc/conf";
    capture_mem(f, &o, &m, &res);
    list = list_tar(&m);
    assert_string_equal(list, "d etc/\nf etc/conf\n");
    free(list);
    free(m.data);
    free(f);
    free(src);
    tu_tmpdir_free(d);
}

/* File capabilities and device nodes survive capture and unpack. */
static void test_caps_and_devices_roundtrip(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *src = tu_path(d, "src"), *out = tu_path(d, "out");
    assert_int_equal(mkdir(src, 0755), 0);
    mkfile(src, "ping", "binary");
    char *ping = tu_path(src, "ping"), *null = tu_path(src, "null");
    /* vfs_cap_data revision 2: effective, permitted CAP_NET_RAW (13) */
    uint32_t cap[5] = {0x02000001, 1u << 13, 0, 0, 0};
    assert_int_equal(setxattr(ping, "security.capability", cap, sizeof(cap), 0), 0);
    assert_int_equal(mknod(null, S_IFCHR | 0666, makedev(1, 3)), 0);

    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.overlay_upper = false;
    membuf m;
    sbx_capture_result res;
    capture_mem(src, &o, &m, &res);
    char *list = list_tar(&m);
    assert_string_equal(list, "c null\nf ping\n");
    /* even as an overlay upper, only 0/0 devices are whiteouts */
    membuf m2;
    sbx_capture_result res2;
    o.overlay_upper = true;
    capture_mem(src, &o, &m2, &res2);
    assert_string_equal(res.diff_id, res2.diff_id);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], m.data, m.len), (ssize_t)m.len);
    close(pfd[1]);
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_rootfs_unpack_tar_fd(pfd[0], out, &err), 0);
    close(pfd[0]);
    char *ping2 = tu_path(out, "ping"), *null2 = tu_path(out, "null");
    uint32_t got[5] = {0};
    assert_int_equal(getxattr(ping2, "security.capability", got, sizeof(got)), sizeof(cap));
    assert_memory_equal(got, cap, sizeof(cap));
    struct stat st;
    assert_int_equal(lstat(null2, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 3));
    free(list), free(m.data), free(m2.data);
    free(ping), free(null), free(ping2), free(null2), free(src), free(out);
    tu_tmpdir_free(d);
}

/* ---- unpack ------------------------------------------------------------- */

static void test_unpack_whiteouts(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    tspec specs[] = {
        {"etc/", AE_IFDIR, NULL},
        {"etc/.wh.passwd", AE_IFREG, NULL},
        {"opq/", AE_IFDIR, NULL},
        {"opq/.wh..wh..opq", AE_IFREG, NULL},
        {"opq/new", AE_IFREG, "new"},
        {"file", AE_IFREG, "data"},
        {"hard", 1, "file"},
        {"link", AE_IFLNK, "file"},
    };
    char *tar = write_tar(d, specs, SBX_ARRAY_LEN(specs));
    char *dest = tu_path(d, "layers/out");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(tar, dest, &err), 0);

    char *wh = tu_path(dest, "etc/passwd");
    struct stat st;
    assert_int_equal(lstat(wh, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(0, 0));
    char *opq = tu_path(dest, "opq");
    char v[8] = "";
    assert_int_equal(getxattr(opq, "trusted.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(v[0], 'y');
    char *marker = tu_path(dest, "opq/.wh..wh..opq");
    assert_int_equal(lstat(marker, &st), -1);
    char *f = tu_path(dest, "file"), *h = tu_path(dest, "hard");
    struct stat st2;
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(stat(h, &st2), 0);
    assert_int_equal(st.st_ino, st2.st_ino);
    assert_int_equal(st.st_mtime, 1000);

    /* capture of the unpacked dir gives the whiteouts back */
    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    membuf m;
    sbx_capture_result res;
    capture_mem(dest, &o, &m, &res);
    char *list = list_tar(&m);
    assert_string_equal(list, "d etc/\nf etc/.wh.passwd\nf file\nh hard\nl link\nd opq/\n"
                              "f opq/.wh..wh..opq\nf opq/new\n");

    /* unpacking again is a no-op success */
    assert_int_equal(unpack_file(tar, dest, &err), 0);
    char *layers = tu_path(d, "layers");
    assert_true(no_tmp_left(layers));
    free(list), free(m.data), free(layers);
    free(wh), free(opq), free(marker), free(f), free(h), free(tar), free(dest);
    tu_tmpdir_free(d);
}

static void expect_refused(const tspec *specs, size_t n, const char *needle)
{
    char *d = tu_tmpdir();
    char *tar = write_tar(d, specs, n);
    char *dest = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(unpack_file(tar, dest, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, needle);
    assert_string_equal(err.where, dest);
    struct stat st;
    assert_int_equal(lstat(dest, &st), -1);
    assert_true(no_tmp_left(d));
    free(tar);
    free(dest);
    tu_tmpdir_free(d);
}

static void test_unpack_refuses_traversal(void **state)
{
    (void)state;
    tspec dotdot[] = {{"ok", AE_IFREG, "x"}, {"a/../../evil", AE_IFREG, "x"}};
    expect_refused(dotdot, 2, "refusing entry 'a/../../evil'");
    tspec abs[] = {{"/tmp/sbx-evil-abs", AE_IFREG, "x"}};
    expect_refused(abs, 1, "refusing entry '/tmp/sbx-evil-abs'");
    tspec sym[] = {{"esc", AE_IFLNK, "/tmp"}, {"esc/sbx-evil-sym", AE_IFREG, "x"}};
    expect_refused(sym, 2, "refusing entry 'esc/sbx-evil-sym'");
    tspec sym2[] = {{"esc", AE_IFLNK, "/tmp"}, {"./esc//sbx-evil-sym2", AE_IFREG, "x"}};
    expect_refused(sym2, 2, "refusing entry './esc//sbx-evil-sym2'");
    tspec sym3[] = {{"d/", AE_IFDIR, NULL},
                    {"d/esc", AE_IFLNK, "../.."},
                    {"d/esc/", AE_IFDIR, NULL},
                    {"d/esc/sbx-evil-sym3", AE_IFREG, "x"}};
    expect_refused(sym3, 4, "refusing entry 'd/esc");
    tspec sym4[] = {{"esc", AE_IFLNK, "/etc"}, {"h", 1, "esc/passwd"}};
    expect_refused(sym4, 2, "refusing entry 'h'");
    /* a hardlink to a symlink is that symlink: nothing passes through it */
    tspec sym5[] = {{"esc", AE_IFLNK, "/tmp"}, {"h", 1, "esc"}, {"h/sbx-evil-sym5", AE_IFREG, "x"}};
    expect_refused(sym5, 3, "refusing entry 'h/sbx-evil-sym5': it passes through the symlink 'h'");
    static char deep[5200];
    for (int i = 0; i < 2550; i++)
        memcpy(deep + 2 * i, "a/", 2);
    strcpy(deep + 5100, "x");
    tspec toolong[] = {{deep, AE_IFREG, "x"}};
    expect_refused(toolong, 1, "refusing entry 'a/a/a/");
    tspec hard[] = {{"h", 1, "../../etc/passwd"}};
    expect_refused(hard, 1, "refusing entry 'h'");
    tspec opq[] = {{"../x/.wh..wh..opq", AE_IFREG, NULL}};
    expect_refused(opq, 1, "refusing entry '../x/.wh..wh..opq'");
    struct stat st;
    assert_int_equal(lstat("/tmp/sbx-evil-abs", &st), -1);
    assert_int_equal(lstat("/tmp/sbx-evil-sym", &st), -1);
    assert_int_equal(lstat("/tmp/sbx-evil-sym2", &st), -1);
    assert_int_equal(lstat("/sbx-evil-sym3", &st), -1);
}

/* Whiteout names as Docker and containerd read them: a directory entry named
 * ".wh.X" is a whiteout of X (no directory ".wh.X" appears); aufs metadata
 * (".wh..wh.*" other than the opaque marker, and the root's ".wh..wh.plnk/"
 * with what is in it) is skipped.  Refused: an entry inside a whiteout, and
 * an opaque marker at the layer's root (it would hide every lower layer under
 * Docker's applier and nothing under overlayfs, which ignores it on a
 * layer's root). */
static void test_unpack_whiteout_names(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    tspec specs[] = {
        {"a/", AE_IFDIR, NULL},
        {"a/.wh.x/", AE_IFDIR, NULL},
        {"a/.wh..wh.aufs", AE_IFREG, NULL},
        {".wh..wh.plnk/", AE_IFDIR, NULL},
        {".wh..wh.plnk/1234.56", AE_IFREG, "aufs link"},
        {"a/keep", AE_IFREG, "k"},
    };
    char *tar = write_tar(d, specs, SBX_ARRAY_LEN(specs));
    char *dest = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    struct stat st;
    char *x = tu_path(dest, "a/x");
    assert_int_equal(lstat(x, &st), 0);
    assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    const char *absent[] = {"a/.wh.x", "a/.wh..wh.aufs", "a/.wh.aufs", ".wh..wh.plnk",
                            ".wh.plnk"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(absent); i++) {
        char *p = tu_path(dest, absent[i]);
        if (lstat(p, &st) == 0)
            fail_msg("'%s' is in the unpacked layer", absent[i]);
        free(p);
    }
    assert_int_equal(tu_count_files(dest), 2); /* a/x and a/keep */
    free(x), free(tar), free(dest);
    tu_tmpdir_free(d);

    tspec inside[] = {{"b/", AE_IFDIR, NULL}, {"b/.wh.y/f", AE_IFREG, "x"}};
    expect_refused(inside, 2, "refusing entry 'b/.wh.y/f': it lies inside a whiteout");
    tspec rootopq[] = {{".wh..wh..opq", AE_IFREG, NULL}, {"new", AE_IFREG, "n"}};
    expect_refused(rootopq, 2, "refusing entry '.wh..wh..opq': an opaque whiteout at the "
                               "layer's root");
    tspec rootopq2[] = {{"./.wh..wh..opq", AE_IFREG, NULL}};
    expect_refused(rootopq2, 1, "an opaque whiteout at the layer's root");
}

static void test_unpack_symlinks_allowed(void **state)
{
    (void)state;
    /* links themselves (absolute or relative, dangling or not) are content */
    char *d = tu_tmpdir();
    tspec specs[] = {{"usr/", AE_IFDIR, NULL},         {"usr/lib/", AE_IFDIR, NULL},
                     {"lib", AE_IFLNK, "usr/lib"},     {"abs", AE_IFLNK, "/etc/passwd"},
                     {"usr/lib/x", AE_IFREG, "x"},     {"usr/libfoo", AE_IFREG, "y"},
                     {"hl", 1, "usr/lib/x"}};
    char *tar = write_tar(d, specs, SBX_ARRAY_LEN(specs));
    char *dest = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    if (unpack_file(tar, dest, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    char *abs = tu_path(dest, "abs");
    char buf[64] = "";
    assert_int_equal(readlink(abs, buf, sizeof(buf)), 11);
    assert_string_equal(buf, "/etc/passwd");
    free(abs), free(tar), free(dest);
    tu_tmpdir_free(d);
}

static void test_unpack_concurrent(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    tspec specs[] = {{"a", AE_IFREG, "1"}, {"b/", AE_IFDIR, NULL}, {"b/c", AE_IFREG, "2"}};
    char *tar = write_tar(d, specs, SBX_ARRAY_LEN(specs));
    char *dest = tu_path(d, "u/layer");
    pid_t kids[6];
    for (int i = 0; i < 6; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            sbx_error err = SBX_ERROR_INIT;
            _exit(unpack_file(tar, dest, &err) == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < 6; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    char *u = tu_path(d, "u");
    assert_int_equal(tu_count_files(u), 2);
    assert_true(no_tmp_left(u));
    free(u), free(tar), free(dest);
    tu_tmpdir_free(d);
}

/* ---- a real overlay upper ----------------------------------------------- */

static void test_capture_overlay_upper(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *lower = tu_path(d, "lower"), *upper = tu_path(d, "upper"), *work = tu_path(d, "work"),
         *merged = tu_path(d, "merged");
    assert_int_equal(mkdir(lower, 0755), 0);
    assert_int_equal(mkdir(upper, 0755), 0);
    assert_int_equal(mkdir(work, 0755), 0);
    assert_int_equal(mkdir(merged, 0755), 0);
    mkfile(lower, "gone", "bye");
    mkd(lower, "dir");
    mkfile(lower, "dir/old", "old");
    mkfile(lower, "keep", "keep");
    char *opts = sbx__strdup_printf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    assert_int_equal(mount("overlay", merged, "overlay", 0, opts), 0);
    char *p = tu_path(merged, "gone");
    assert_int_equal(unlink(p), 0);
    free(p);
    sbx_error err = SBX_ERROR_INIT;
    char *md = tu_path(merged, "dir");
    assert_int_equal(sbx__rm_rf(md, &err), 0);
    assert_int_equal(mkdir(md, 0755), 0); /* recreated: overlay makes it opaque */
    mkfile(merged, "dir/new", "new");
    assert_int_equal(umount(merged), 0);

    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    membuf m1, m2;
    sbx_capture_result r1, r2;
    capture_mem(upper, &o, &m1, &r1);
    char *list = list_tar(&m1);
    assert_string_equal(list, "d dir/\nf dir/.wh..wh..opq\nf dir/new\nf .wh.gone\n");
    capture_mem(upper, &o, &m2, &r2);
    assert_string_equal(r1.diff_id, r2.diff_id);

    /* and it unpacks into a lower that hides the same things */
    char *lay = tu_path(d, "lay");
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], m1.data, m1.len), (ssize_t)m1.len);
    close(pfd[1]);
    assert_int_equal(sbx_rootfs_unpack_tar_fd(pfd[0], lay, &err), 0);
    close(pfd[0]);
    free(opts);
    opts = sbx__strdup_printf("lowerdir=%s:%s", lay, lower);
    assert_int_equal(mount("overlay", merged, "overlay", MS_RDONLY, opts), 0);
    long n = tu_count_files(merged);
    assert_int_equal(umount(merged), 0);
    assert_int_equal(n, 2); /* keep, dir/new */

    free(list), free(m1.data), free(m2.data), free(md), free(opts), free(lay);
    free(lower), free(upper), free(work), free(merged);
    tu_tmpdir_free(d);
}

/* ---- through the store -------------------------------------------------- */

/* Disk blocks of a file, in bytes. */
static uint64_t disk_bytes(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

/* A sparse file (64 MiB, 4 KiB of data in the middle) stays sparse: its
 * layer is the dense tar (digests must not depend on how a filesystem laid
 * out holes) but zstd makes the zeros nearly free, the unpacked cache has
 * the holes back, and so do copies out of it. */
static void test_sparse_files_stay_sparse(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *root = tu_path(d, "store"), *src = tu_path(d, "src"), *out = tu_path(d, "out");
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) != 0)
        fail_msg("store: %s", err.msg);
    assert_int_equal(mkdir(src, 0755), 0);
    char *f = tu_path(src, "sparse");
    int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char data[4096];
    memset(data, 'x', sizeof data);
    assert_int_equal(pwrite(fd, data, sizeof data, 32 << 20), (ssize_t)sizeof data);
    assert_int_equal(ftruncate(fd, 64 << 20), 0);
    close(fd);
    if (disk_bytes(f) > (1u << 20))
        skip(); /* this filesystem keeps no holes */
    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.overlay_upper = false;
    sbx_capture_result res;
    if (sbx_rootfs_capture(&res, s, src, &o, NULL, &err) != 0)
        fail_msg("capture: %s", err.msg);
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(s, res.diff_id, &info, &err), 0);
    assert_true(info.size > (64u << 20));        /* the tar is dense */
    assert_true(info.stored_size < (256u << 10)); /* and costs almost nothing stored */
    char dir[1024];
    if (sbx_rootfs_layer_unpack(dir, sizeof dir, s, res.diff_id, NULL, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    char *cached = tu_path(dir, "sparse");
    assert_true(disk_bytes(cached) < (1u << 20));
    const char *layers[] = {dir};
    assert_int_equal(mkdir(out, 0755), 0);
    if (sbx_rootfs_merge(out, layers, 1, false, NULL, NULL, &err) != 0)
        fail_msg("merge: %s", err.msg);
    char *copy = tu_path(out, "sparse");
    assert_true(disk_bytes(copy) < (1u << 20));
    struct stat st;
    assert_int_equal(stat(copy, &st), 0);
    assert_int_equal(st.st_size, 64 << 20);
    fd = open(copy, O_RDONLY);
    char back[4096];
    assert_int_equal(pread(fd, back, sizeof back, 32 << 20), (ssize_t)sizeof back);
    assert_memory_equal(back, data, sizeof back);
    assert_int_equal(pread(fd, back, 16, 1 << 20), 16);
    assert_int_equal(back[0] | back[15], 0);
    close(fd);
    free(f), free(cached), free(copy), free(root), free(src), free(out);
    sbx_store_free(s);
    tu_tmpdir_free(d);
}

static void test_store_capture_and_unpack(void **state)
{
    (void)state;
    char *d = tu_tmpdir();
    char *root = tu_path(d, "store"), *src = tu_path(d, "src"), *empty = tu_path(d, "empty");
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) != 0)
        fail_msg("store: %s", err.msg);
    build_tree(src, false);
    assert_int_equal(mkdir(empty, 0755), 0);

    sbx_capture_options o = SBX_CAPTURE_OPTIONS_INIT;
    o.overlay_upper = false;
    sbx_capture_result res;
    if (sbx_rootfs_capture(&res, s, src, &o, NULL, &err) != 0)
        fail_msg("capture: %s", err.msg);
    assert_true(res.changed);
    assert_int_equal(sbx_store_has_layer(s, res.diff_id, NULL), 1);
    sbx_capture_result none;
    assert_int_equal(sbx_rootfs_capture(&none, s, empty, &o, NULL, &err), 0);
    assert_false(none.changed);

    /* several processes unpack the same layer at once: one dir results */
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            sbx_store *cs = NULL;
            sbx_error e = SBX_ERROR_INIT;
            char path[1024];
            if (sbx_store_open(&cs, root, &e) != 0 ||
                sbx_rootfs_layer_unpack(path, sizeof(path), cs, res.diff_id, NULL, &e) != 0)
                _exit(1);
            sbx_store_free(cs);
            _exit(0);
        }
    }
    for (int i = 0; i < 4; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    char path[1024];
    if (sbx_rootfs_layer_unpack(path, sizeof(path), s, res.diff_id, NULL, &err) != 0)
        fail_msg("unpack: %s", err.msg);
    membuf m;
    sbx_capture_result again;
    capture_mem(path, &o, &m, &again);
    assert_string_equal(again.diff_id, res.diff_id); /* the round trip is exact */
    free(m.data);
    char *parent = strdup(path);
    *strrchr(parent, '/') = '\0';
    assert_true(no_tmp_left(parent));

    assert_int_equal(sbx_rootfs_layer_unpack(path, sizeof(path), s, "sha256:0000000000000000000000000000000000000000000000"
                                         "000000000000000000", NULL, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "unpacking layer 'sha256:0000");
    sbx_store_free(s);
    free(parent), free(root), free(src), free(empty);
    tu_tmpdir_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture_entries),
        cmocka_unit_test(test_capture_deterministic),
        cmocka_unit_test(test_capture_empty_and_errors),
        cmocka_unit_test(test_capture_prefix_owner_mode),
        cmocka_unit_test(test_caps_and_devices_roundtrip),
        cmocka_unit_test(test_unpack_whiteouts),
        cmocka_unit_test(test_unpack_whiteout_names),
        cmocka_unit_test(test_unpack_refuses_traversal),
        cmocka_unit_test(test_unpack_symlinks_allowed),
        cmocka_unit_test(test_unpack_concurrent),
        cmocka_unit_test(test_capture_overlay_upper),
        cmocka_unit_test(test_store_capture_and_unpack),
        cmocka_unit_test(test_sparse_files_stay_sparse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
