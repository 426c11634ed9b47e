/* Copy sources: the Merkle content hash (what it covers and what it must
 * not), .sbxignore matching, the context boundary, the walk the builder uses,
 * and the per-file hash cache. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "recipe_internal.h"
#include "sbx/recipe.h"
#include "sbx_common.h"
#include "testutil.h"

typedef struct {
    char *ctx;
    char *cache;
} fixture;

static void mkfile(const char *dir, const char *rel, const char *content, mode_t mode)
{
    char *p = tu_path(dir, rel);
    tu_write_file(p, content);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

static void mkdir_in(const char *dir, const char *rel)
{
    char *p = tu_path(dir, rel);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
}

static void populate(const char *root)
{
    mkdir_in(root, "src");
    mkdir_in(root, "src/lib");
    mkdir_in(root, "src/empty");
    mkfile(root, "src/a.txt", "alpha\n", 0644);
    mkfile(root, "src/run.sh", "#!/bin/sh\n", 0755);
    mkfile(root, "src/lib/b.py", "beta\n", 0644);
    char *p = tu_path(root, "src/link");
    assert_int_equal(symlink("lib/b.py", p), 0);
    free(p);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->ctx = tu_tmpdir();
    f->cache = tu_tmpdir();
    setenv("SBX_CACHE_DIR", f->cache, 1);
    populate(f->ctx);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_tmpdir_free(f->ctx);
    tu_tmpdir_free(f->cache);
    free(f);
    return 0;
}

static void digest(const char *ctx, const char *src, char out[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_recipe_copy_digest(out, ctx, src, NULL, &err) < 0)
        fail_msg("copy digest of '%s': %s", src, err.msg);
}

static void test_hash_covers_content_mode_links(void **state)
{
    fixture *f = *state;
    char base[SBX_DIGEST_BUFSZ], d[SBX_DIGEST_BUFSZ];
    digest(f->ctx, "src", base);
    /* Deterministic. */
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);

    /* touch: new mtime, same content -> same digest */
    char *p = tu_path(f->ctx, "src/a.txt");
    struct timeval tv[2] = {{1000, 0}, {1000, 0}};
    assert_int_equal(utimes(p, tv), 0);
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);
    /* group/other bits and the owner's read/write bits do not count */
    assert_int_equal(chmod(p, 0600), 0);
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);
    /* one byte changed, same size */
    tu_write_file(p, "alphA\n");
    digest(f->ctx, "src", d);
    assert_string_not_equal(base, d);
    tu_write_file(p, "alpha\n");
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);
    /* the executable bit */
    assert_int_equal(chmod(p, 0744), 0);
    digest(f->ctx, "src", d);
    assert_string_not_equal(base, d);
    assert_int_equal(chmod(p, 0644), 0);
    free(p);
    /* a symlink's target */
    p = tu_path(f->ctx, "src/link");
    unlink(p);
    assert_int_equal(symlink("lib/c.py", p), 0);
    digest(f->ctx, "src", d);
    assert_string_not_equal(base, d);
    unlink(p);
    assert_int_equal(symlink("lib/b.py", p), 0);
    free(p);
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);
    /* a rename */
    char *from = tu_path(f->ctx, "src/lib/b.py"), *to = tu_path(f->ctx, "src/lib/c.py");
    assert_int_equal(rename(from, to), 0);
    digest(f->ctx, "src", d);
    assert_string_not_equal(base, d);
    assert_int_equal(rename(to, from), 0);
    free(from);
    free(to);
    /* an empty directory appears in the image */
    p = tu_path(f->ctx, "src/empty");
    assert_int_equal(rmdir(p), 0);
    digest(f->ctx, "src", d);
    assert_string_not_equal(base, d);
    assert_int_equal(mkdir(p, 0700), 0); /* directory mode does not count either */
    free(p);
    digest(f->ctx, "src", d);
    assert_string_equal(base, d);
}

static void test_clone_elsewhere_same_digest(void **state)
{
    fixture *f = *state;
    char *other = tu_tmpdir();
    populate(other); /* a fresh tree: other inodes, times, path */
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ];
    digest(f->ctx, "src", a);
    digest(other, "src", b);
    assert_string_equal(a, b);
    /* A single file and the directory differ; "." covers the whole context. */
    digest(other, "src/a.txt", b);
    assert_string_not_equal(a, b);
    digest(other, "./src/lib/../", b);
    assert_string_equal(a, b);
    tu_tmpdir_free(other);
}

static void test_documented_merkle(void **state)
{
    /* docs/recipe-digest.md, by hand: a directory holding one file "f" with
     * content "x" (not executable). */
    (void)state;
    char *ctx = tu_tmpdir();
    mkdir_in(ctx, "d");
    mkfile(ctx, "d/f", "x", 0644);
    char fh[SBX_DIGEST_BUFSZ], dh[SBX_DIGEST_BUFSZ], want[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf("x", 1, fh);
    char entry[200];
    int n = snprintf(entry, sizeof entry, "f %s f", fh + 7);
    sbx__sha256_buf(entry, (size_t)n + 1, dh); /* the entry ends with its NUL */
    char *line = sbx__strdup_printf("sbx-copy-v1 d %s", dh + 7);
    sbx__sha256_buf(line, strlen(line), want);
    free(line);
    char got[SBX_DIGEST_BUFSZ];
    digest(ctx, "d", got);
    assert_string_equal(got, want);
    /* A file source: "sbx-copy-v1 f <hex sha256 of content>". */
    line = sbx__strdup_printf("sbx-copy-v1 f %s", fh + 7);
    sbx__sha256_buf(line, strlen(line), want);
    free(line);
    digest(ctx, "d/f", got);
    assert_string_equal(got, want);
    tu_tmpdir_free(ctx);
}

static void test_ignore_patterns(void **state)
{
    (void)state;
    static const struct {
        const char *patterns;
        const char *path;
        bool excluded;
    } cases[] = {
        {"*.log", "a.log", true},
        {"*.log", "dir/a.log", false}, /* '*' does not cross '/' */
        {"**/*.log", "dir/sub/a.log", true},
        {"**/*.log", "a.log", true},
        {"node_modules", "node_modules/x/y.js", true}, /* parents exclude children */
        {"/build", "build/out", true},
        {"build/", "build/out", true},
        {"./tmp", "tmp", true},
        {"dir/**", "dir/a/b", true},
        {"dir/**/x", "dir/x", true},
        {"dir/**/x", "dir/a/b/x", true},
        {"dir/**/x", "other/x", false},
        {"a?c", "abc", true},
        {"a?c", "a/c", false},
        {"[ab].txt", "b.txt", true},
        {"[!ab].txt", "b.txt", false},
        {"*.md\n!README.md", "README.md", false},
        {"*.md\n!README.md", "CHANGES.md", true},
        {"!README.md\n*.md", "README.md", true}, /* last match wins */
        {"docs\n!docs/keep", "docs/keep/x", false},
        {"docs\n!docs/keep", "docs/drop", true},
        {"# comment\n  *.tmp  \n\n", "x.tmp", true},
        {"# comment", "# comment", false},
        {"\\#file", "#file", true},
        {".git", ".git/config", true},
        {"*", "anything/at/all", true},
        {"**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/z",
         "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y", false},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        rcp_ignore *ig = NULL;
        sbx_error err = SBX_ERROR_INIT;
        assert_int_equal(rcp_ignore_parse(&ig, cases[i].patterns, &err), 0);
        if (rcp_ignore_match(ig, cases[i].path) != cases[i].excluded)
            fail_msg("case %zu: '%s' against '%s': want %s", i, cases[i].patterns, cases[i].path,
                     cases[i].excluded ? "excluded" : "included");
        rcp_ignore_free(ig);
    }
    rcp_ignore *ig = NULL;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(rcp_ignore_parse(&ig, "a\n!\n", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "line 2: expected a pattern after '!'");
}

typedef struct {
    char list[2048];
} walk_acc;

static int collect(const sbx_copy_entry *e, void *ud, sbx_error *err)
{
    (void)err;
    walk_acc *a = ud;
    char t = e->type == S_IFDIR ? 'd' : e->type == S_IFLNK ? 'l' : e->executable ? 'x' : 'f';
    snprintf(a->list + strlen(a->list), sizeof a->list - strlen(a->list), "%c:%s;", t,
             e->relpath);
    return 0;
}

static void test_sbxignore_in_walk_and_digest(void **state)
{
    fixture *f = *state;
    walk_acc acc = {""};
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_recipe_copy_walk(f->ctx, "src", collect, &acc, &err), 0);
    assert_string_equal(acc.list, "d:;f:a.txt;d:empty;d:lib;f:lib/b.py;l:link;x:run.sh;");
    char before[SBX_DIGEST_BUFSZ], after[SBX_DIGEST_BUFSZ];
    digest(f->ctx, "src", before);
    mkfile(f->ctx, ".sbxignore", "# build junk\nsrc/*.txt\nsrc/lib\n!src/lib/b.py\n", 0644);
    acc.list[0] = '\0';
    assert_int_equal(sbx_recipe_copy_walk(f->ctx, "src", collect, &acc, &err), 0);
    assert_string_equal(acc.list, "d:;d:empty;d:lib;f:lib/b.py;l:link;x:run.sh;");
    digest(f->ctx, "src", after);
    assert_string_not_equal(before, after);
    /* An ignored file appearing changes nothing. */
    mkfile(f->ctx, "src/new.txt", "junk", 0644);
    digest(f->ctx, "src", before);
    assert_string_equal(before, after);
    /* Copying an excluded file is "not found". */
    char out[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_recipe_copy_digest(out, f->ctx, "src/a.txt", NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "excluded by .sbxignore");
    char *p = tu_path(f->ctx, ".sbxignore");
    unlink(p);
    free(p);
    p = tu_path(f->ctx, "src/new.txt");
    unlink(p);
    free(p);
}

static int stop_at_lib(const sbx_copy_entry *e, void *ud, sbx_error *err)
{
    (*(int *)ud)++;
    if (!strcmp(e->relpath, "lib"))
        return sbx_error_set(err, SBX_ESTEP, "stop at '%s'", e->relpath);
    return 0;
}

static void test_walk_errors(void **state)
{
    fixture *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    int seen = 0;
    /* A visitor's error stops the walk and comes back as is. */
    assert_int_equal(sbx_recipe_copy_walk(f->ctx, "src", stop_at_lib, &seen, &err), SBX_ESTEP);
    tu_assert_error(&err, SBX_ESTEP, "stop at 'lib'");
    assert_int_equal(seen, 4); /* "", a.txt, empty, lib */
    assert_int_equal(sbx_recipe_copy_walk(f->ctx, "nope", stop_at_lib, &seen, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "copy 'nope': expected a path in the build context");
    assert_int_equal(sbx_recipe_copy_walk("/nonexistent-ctx", "src", stop_at_lib, &seen, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "open build context '/nonexistent-ctx'");
    /* A file source is one entry with an empty relative path. */
    walk_acc acc = {""};
    assert_int_equal(sbx_recipe_copy_walk(f->ctx, "src/run.sh", collect, &acc, &err), 0);
    assert_string_equal(acc.list, "x:;");
}

static void test_context_boundary(void **state)
{
    fixture *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char out[SBX_DIGEST_BUFSZ];
    char *p = tu_path(f->ctx, "src/up");
    assert_int_equal(symlink("../..", p), 0);
    /* Through a symlink out of the context: refused. */
    assert_int_equal(sbx_recipe_copy_digest(out, f->ctx, "src/up", NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "refusing a source outside the build context");
    /* Lexically out: refused before touching the disk. */
    assert_int_equal(sbx_recipe_copy_digest(out, f->ctx, "src/../../etc", NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected a path inside the build context");
    /* A symlink inside the tree is an entry, not followed: fine. */
    digest(f->ctx, "src", out);
    unlink(p);
    free(p);
    /* Special files are refused with a hint. */
    p = tu_path(f->ctx, "src/fifo");
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_int_equal(sbx_recipe_copy_digest(out, f->ctx, "src", NULL, &err), SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "expected a regular file, directory or symlink");
    unlink(p);
    free(p);
}

static void backdate(const char *root)
{
    /* Make every file's ctime old enough for the racy-clean guard: ctime
     * cannot be set, so wait for the guard instead (it is 20 ms on tmpfs and
     * ext4, 2 s elsewhere). */
    (void)root;
    usleep(60 * 1000);
}

static void test_file_hash_cache(void **state)
{
    fixture *f = *state;
    char *big = tu_tmpdir();
    mkdir_in(big, "t");
    for (int i = 0; i < 40; i++) {
        char name[32], content[64];
        snprintf(name, sizeof name, "t/f%02d", i);
        snprintf(content, sizeof content, "file number %d\n", i);
        mkfile(big, name, content, 0644);
    }
    backdate(big);
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ];
    digest(big, "t", a);
    assert_int_equal(rcp_copy_last_stats.files, 40);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 0);
    char *cf = tu_path(f->cache, "file-hashes.v1");
    struct stat st;
    if (stat(cf, &st) < 0) {
        /* Slow-timestamp filesystem: nothing was cacheable yet. */
        sleep(2);
        digest(big, "t", a);
        assert_int_equal(stat(cf, &st), 0);
    }
    digest(big, "t", b);
    assert_string_equal(a, b);
    assert_int_equal(rcp_copy_last_stats.files, 40);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 40);
    assert_int_equal(rcp_copy_last_stats.bytes_hashed, 0);
    /* A change with the same size is seen (new mtime/ctime), even right away. */
    char *p = tu_path(big, "t/f07");
    tu_write_file(p, "file number X\n");
    digest(big, "t", b);
    assert_string_not_equal(a, b);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 39);
    free(p);
    /* A damaged cache file is an empty cache, not an error. */
    tu_write_file(cf, "garbage");
    digest(big, "t", a);
    assert_string_equal(a, b);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 0);
    /* SBX_CACHE_DIR decides where it lives. */
    char buf[4096];
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_recipe_cache_dir(buf, sizeof buf, &err), 0);
    assert_string_equal(buf, f->cache);
    free(cf);
    tu_tmpdir_free(big);
}

static void make_tree(const char *root, const char *dir, int n)
{
    mkdir_in(root, dir);
    for (int i = 0; i < n; i++) {
        char name[64], content[64];
        snprintf(name, sizeof name, "%s/f%02d", dir, i);
        snprintf(content, sizeof content, "%s %d\n", dir, i);
        mkfile(root, name, content, 0644);
    }
}

static void test_file_hash_cache_keeps_recent(void **state)
{
    /* With room for 10 entries, the file keeps what the last run used. */
    (void)state;
    char *root = tu_tmpdir();
    make_tree(root, "a", 8);
    make_tree(root, "b", 8);
    backdate(root);
    rcp_hash_cache_set_keep(10);
    char d[SBX_DIGEST_BUFSZ];
    digest(root, "a", d);
    digest(root, "a", d);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 8);
    digest(root, "b", d); /* 8 of b kept first, then 2 of a */
    digest(root, "b", d);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 8);
    digest(root, "a", d);
    assert_int_equal(rcp_copy_last_stats.cache_hits, 2);
    digest(root, "a", d); /* now a is the recent one */
    assert_int_equal(rcp_copy_last_stats.cache_hits, 8);
    rcp_hash_cache_set_keep(0);
    tu_tmpdir_free(root);
}

/* A context directory swapped for a symlink to a host directory while the
 * walk and the hash run (a bounded number of tries): neither ever reads
 * through it.  The walk lists what is beneath the context, opened from the
 * descriptor of its parent; the hash opens each file beneath the context
 * through no symlink. */
typedef struct flipper {
    char *d, *real, *host;
    volatile int stop;
    long flips;
} flipper;

static void *flip_dir(void *arg)
{
    flipper *fl = arg;
    while (!fl->stop) {
        if (rename(fl->d, fl->real) == 0) {
            if (symlink(fl->host, fl->d) == 0) {
                usleep(50);
                unlink(fl->d);
            }
            rename(fl->real, fl->d);
            fl->flips++;
            usleep(50); /* and a while as it should be, so some walks get through */
        }
    }
    return NULL;
}

static void test_walk_and_hash_never_follow_a_swapped_dir(void **state)
{
    fixture *f = *state;
    char *host = tu_tmpdir();
    mkfile(host, "shadow", "host secret\n", 0600);
    mkfile(host, "f", "host f\n", 0644);
    mkdir_in(f->ctx, "race");
    mkdir_in(f->ctx, "race/d");
    mkfile(f->ctx, "race/d/f", "mine\n", 0644);
    char mine[SBX_DIGEST_BUFSZ];
    digest(f->ctx, "race/d/f", mine);
    flipper fl = {tu_path(f->ctx, "race/d"), tu_path(f->ctx, "race/d.real"), host, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flip_dir, &fl), 0);
    int walked = 0, hashed = 0;
    for (int i = 0; i < 4000; i++) {
        walk_acc acc = {""};
        sbx_error err = SBX_ERROR_INIT;
        if (sbx_recipe_copy_walk(f->ctx, "race", collect, &acc, &err) == 0) {
            walked++;
            if (strstr(acc.list, "shadow"))
                fail_msg("the walk went through the swapped directory: %s", acc.list);
        }
        char got[SBX_DIGEST_BUFSZ];
        sbx_error_clear(&err);
        /* the file itself, through the swapped directory: only its own bytes */
        if (sbx_recipe_copy_digest(got, f->ctx, "race/d/f", NULL, &err) == 0) {
            hashed++;
            assert_string_equal(got, mine);
        }
    }
    fl.stop = 1;
    pthread_join(th, NULL);
    assert_true(fl.flips > 100);
    assert_true(walked > 0 && hashed > 0);
    free(fl.d);
    free(fl.real);
    tu_tmpdir_free(host);
}

static void test_path_clean(void **state)
{
    (void)state;
    static const char *cases[][3] = {
        {"a/b/../c", "a/c", "a/c"}, {"./a//b/", "a/b", "a/b/"}, {"/a/./b/..", "/a", "/a"},
        {"/../a", "/a", "/a"},      {"..", "..", ".."},         {"a/../..", "..", ".."},
        {"", ".", "."},             {"/", "/", "/"},            {"/srv/app/", "/srv/app", "/srv/app/"},
        {".", ".", "."},            {"a/b/../../..", "..", ".."},
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        for (int keep = 0; keep < 2; keep++) {
            char *c = rcp_path_clean(cases[i][0], keep);
            if (strcmp(c, cases[i][1 + keep]))
                fail_msg("clean('%s', %d) = '%s', want '%s'", cases[i][0], keep, c,
                         cases[i][1 + keep]);
            free(c);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hash_covers_content_mode_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clone_elsewhere_same_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_documented_merkle, setup, teardown),
        cmocka_unit_test(test_ignore_patterns),
        cmocka_unit_test_setup_teardown(test_sbxignore_in_walk_and_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_hash_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_hash_cache_keeps_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_and_hash_never_follow_a_swapped_dir, setup,
                                        teardown),
        cmocka_unit_test(test_path_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
