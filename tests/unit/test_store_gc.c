/* Unit tests for the store's gc, fsck and df. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sbx/store.h"
#include "sbx_common.h"
#include "test_store_util.h"
#include "testutil.h"

static void test_gc_keeps_named_removes_the_rest(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char keep[SBX_DIGEST_BUFSZ], drop[SBX_DIGEST_BUFSZ], unpacked[4096];
    ts_put_image(t, "keep", 1, keep);
    ts_put_image(t, NULL, 2, drop);
    /* The dropped image's layer has an unpacked form and a source record. */
    char dl[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 20000, 2, dl);
    assert_int_equal(sbx_store_layer_add_source(
                         t->s, dl,
                         "sha256:3333333333333333333333333333333333333333333333333333333333333333",
                         NULL, 10, &err), 0);
    assert_int_equal(sbx_store_layer_unpacked_path(t->s, dl, unpacked, sizeof unpacked, &err), 0);
    assert_int_equal(mkdir(unpacked, 0700), 0);
    char *f = tu_path(unpacked, "file");
    tu_write_file(f, "x");
    free(f);
    ts_reopen(t);

    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    o.dry_run = 1;
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 2);  /* config + manifest */
    assert_int_equal(rep.layers_removed, 1);
    assert_true(rep.bytes_freed > 0);
    assert_int_equal(ts_count(t, "blobs/sha256"), 4); /* dry run: nothing gone */
    assert_int_equal(ts_count(t, "layers/sha256"), 2);

    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 2);
    assert_int_equal(rep.layers_removed, 1);
    assert_int_equal(ts_count(t, "blobs/sha256"), 2);
    assert_int_equal(ts_count(t, "layers/sha256"), 1);
    assert_int_equal(sbx_store_has_blob(t->s, keep, NULL), 1);
    assert_int_equal(sbx_store_has_blob(t->s, drop, NULL), 0);
    assert_int_equal(sbx_store_has_layer(t->s, dl, NULL), 0);
    struct stat st;
    assert_int_equal(stat(unpacked, &st), -1);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM layer_sources"), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM children"), 2);
    sbx_df_report df;
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(rep.bytes_after, df.stored_bytes);
    /* Nothing left to do. */
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed + rep.layers_removed, 0);
    sbx_fsck_report fr;
    assert_int_equal(sbx_store_fsck(t->s, &fr, NULL, &err), 0);
}

static void test_gc_keeps_what_an_index_reaches(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], idx[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 1, m);
    sbx_store_child kids[] = {{SBX_CHILD_MANIFEST, m}};
    assert_int_equal(sbx_store_put_manifest(t->s, "{\"index\":1}", 11, NULL, NULL, kids, 1, idx,
                                            &err), 0);
    assert_int_equal(sbx_store_name_set(t->s, "multi", idx, &err), 0);
    ts_reopen(t);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed + rep.layers_removed, 0);
    assert_int_equal(sbx_store_name_remove(t->s, "multi", &err), 0);
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 3);
    assert_int_equal(rep.layers_removed, 1);
}

static void test_gc_max_bytes_evicts_lru_never_leased(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ], c[SBX_DIGEST_BUFSZ];
    ts_put_image_sized(t, "a", 1, 200000, a);
    ts_put_image_sized(t, "b", 2, 200000, b);
    ts_put_image_sized(t, "c", 3, 200000, c);
    ts_reopen(t);
    ts_sql(t, "UPDATE names SET last_used = 100 WHERE name = 'a';"
              "UPDATE names SET last_used = 300 WHERE name = 'b';"
              "UPDATE names SET last_used = 200 WHERE name = 'c';");
    sbx_df_report df;
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    uint64_t one = df.stored_bytes / 3;
    /* Lease 'a' (the least recently used) from another handle. */
    sbx_store *h = NULL;
    assert_int_equal(sbx_store_open(&h, t->root, &err), 0);
    sbx_lease *l = NULL;
    assert_int_equal(sbx_store_lease_acquire(&l, h, 0, &err), 0);
    assert_int_equal(sbx_lease_add(l, a, &err), 0);

    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    o.max_bytes = one * 2 + one / 2; /* room for two images */
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.names_evicted, 1);
    assert_true(rep.bytes_after <= o.max_bytes);
    char got[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_name_get(t->s, "a", got, &err), 0); /* leased: kept */
    assert_int_equal(sbx_store_name_get(t->s, "c", got, &err), SBX_ENOTFOUND); /* LRU of the rest */
    assert_int_equal(sbx_store_name_get(t->s, "b", got, &err), 0);
    assert_int_equal(sbx_store_has_blob(t->s, c, NULL), 0);

    /* A budget nothing fits: every unleased name goes, the leased image stays. */
    o.max_bytes = 1;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.names_evicted, 1);
    assert_int_equal(sbx_store_has_blob(t->s, a, NULL), 1);
    assert_int_equal(sbx_store_has_blob(t->s, b, NULL), 0);
    assert_true(rep.bytes_after > 1);
    sbx_lease_release(l);
    sbx_store_free(h);
}

static void test_gc_removes_unrecorded_files_and_stale_tmp(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char *stray = sbx__strdup_printf("%s/blobs/sha256/%s", t->root, ABC_HEX);
    tu_write_file(stray, "abc");
    /* A dead writer's temp file (nobody holds its flock). */
    char *tmp = sbx__strdup_printf("%s/tmp/w.xxxxxxxxxxxx", t->root);
    tu_write_file(tmp, "partial");
    /* An unpacked tree a killed gc had moved aside, and an unpacked tree
     * whose layer is gone. */
    char *trash = sbx__strdup_printf("%s/tmp/u.abc123abc123", t->root);
    assert_int_equal(mkdir(trash, 0700), 0);
    char *inner = tu_path(trash, "f");
    tu_write_file(inner, "x");
    char *lost = sbx__strdup_printf("%s/unpacked/%s", t->root, ABC_HEX);
    assert_int_equal(mkdir(lost, 0700), 0);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);
    struct stat st;
    assert_int_equal(stat(trash, &st), -1);
    assert_int_equal(stat(lost, &st), -1);
    free(stray);
    free(tmp);
    free(trash);
    free(inner);
    free(lost);
}

static int reap_ok(void *ud, const char *path, const char *id, sbx_error *err)
{
    (void)ud;
    (void)err;
    assert_non_null(strstr(path, id));
    return 0;
}

/* A child process makes a scratch dir with a file in it and dies without
 * freeing it (as after SIGKILL: the kernel drops its lock).  Its path to
 * path_out. */
static void scratch_of_dead_process(const char *root, const char *kind, unsigned flags,
                                    char *path_out, size_t len)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sbx_store *s = NULL;
        sbx_scratch *sc = NULL;
        sbx_error e = SBX_ERROR_INIT;
        if (sbx_store_open(&s, root, &e) < 0 || sbx_store_scratch_new(&sc, s, kind, flags, &e) < 0)
            _exit(1);
        char *f = tu_path(sbx_scratch_path(sc), "half-a-layer");
        tu_write_file(f, "x");
        ssize_t n = write(pfd[1], sbx_scratch_path(sc), strlen(sbx_scratch_path(sc)));
        _exit(n > 0 ? 0 : 1);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], path_out, len - 1);
    close(pfd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(n > 0);
    path_out[n] = '\0';
}

/* Scratch dirs: a live one (its maker holds it) survives open and gc; a dead
 * one goes, and so does one whose maker died before naming it (".n."); one
 * marked for its module's reaper is left to that reaper. */
static void test_scratch_dirs_and_the_reaper(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_scratch *live = NULL, *live2 = NULL;
    assert_int_equal(sbx_store_scratch_new(&live, t->s, "unpack", 0, &err), 0);
    assert_int_equal(sbx_store_scratch_new(&live2, t->s, "unpack", 0, &err), 0);
    assert_int_equal(strlen(sbx_scratch_id(live)), 12);
    assert_string_not_equal(sbx_scratch_id(live), sbx_scratch_id(live2));
    assert_int_equal(sbx_scratch_free(live2, &err), 0);
    char *lp = strdup(sbx_scratch_path(live));
    char dp[1024], op[1024];
    scratch_of_dead_process(t->root, "unpack", 0, dp, sizeof dp);
    scratch_of_dead_process(t->root, "run", SBX_SCRATCH_OWNER_REAPS, op, sizeof op);
    char *fresh = sbx__strdup_printf("%s/tmp/.n.build.qqqqqqqqqqqq", t->root);
    assert_int_equal(mkdir(fresh, 0700), 0);
    char *bad = sbx__strdup_printf("%s/tmp/Bad.kind", t->root);
    assert_int_equal(mkdir(bad, 0700), 0);

    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    struct stat st;
    assert_int_equal(stat(lp, &st), 0);
    assert_int_equal(stat(dp, &st), -1);
    assert_int_equal(stat(op, &st), 0);
    assert_int_equal(stat(fresh, &st), -1);
    assert_int_equal(stat(bad, &st), 0); /* not a name of ours */

    /* The module's reaper, with its hook. */
    unsigned removed = 0;
    assert_int_equal(sbx_store_scratch_reap(t->s, "run", NULL, NULL, &removed, &err), 0);
    assert_int_equal(removed, 0); /* without a hook it is still the module's */
    ts_reopen(t); /* open reaps too, but not that */
    assert_int_equal(stat(op, &st), 0);

    assert_int_equal(sbx_scratch_free(live, &err), 0);
    assert_int_equal(stat(lp, &st), -1);
    free(lp);
    free(fresh);
    rmdir(bad);
    free(bad);
    assert_int_equal(sbx_store_scratch_reap(t->s, "run", reap_ok, NULL, &removed, &err), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(stat(op, &st), -1);
    assert_int_equal(sbx_store_scratch_new(&live, t->s, "Bad", 0, &err), SBX_EINVAL);
}

/* An unpacked dir for a layer holding one file of n bytes, as the builder or
 * `sbx-image unpack` leaves it; returns its path. */
static char *ts_unpacked(ts_ctx *t, const char *layer, size_t n)
{
    sbx_error err = SBX_ERROR_INIT;
    char path[4096];
    assert_int_equal(sbx_store_layer_unpacked_path(t->s, layer, path, sizeof path, &err), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    char *f = tu_path(path, "file");
    unsigned char *b = ts_layer_bytes(n, 7);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
    free(b);
    free(f);
    return strdup(path);
}

/* Bytes on disk of a path (st_blocks, as du counts them). */
static uint64_t ts_blocks(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static uint64_t ts_unpacked_blocks(const char *dir)
{
    char *f = tu_path(dir, "file");
    uint64_t n = ts_blocks(dir) + ts_blocks(f);
    free(f);
    return n;
}

static void test_gc_unpacked_removes_unleased_dirs_only(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ], la[SBX_DIGEST_BUFSZ], lb[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "a", 1, a);
    ts_put_image(t, "b", 2, b);
    ts_put_layer(t, 20000, 1, la); /* the images' layers */
    ts_put_layer(t, 20000, 2, lb);
    char *ua = ts_unpacked(t, la, 300000), *ub = ts_unpacked(t, lb, 100000);
    uint64_t ua_bytes = ts_unpacked_blocks(ua);
    /* An unpack in flight for a's layer: its temp dir is not the cache's. */
    char *inflight = sbx__strdup_printf("%s.tmp-%d-0", ua, (int)getpid());
    assert_int_equal(mkdir(inflight, 0755), 0);
    ts_reopen(t); /* this handle's process lease held both */
    /* A running build holds b (its process lease reaches b's layer). */
    sbx_store *h = NULL;
    assert_int_equal(sbx_store_open(&h, t->root, &err), 0);
    assert_int_equal(sbx_store_has_blob(h, b, NULL), 1);

    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    assert_int_equal(o.unpacked, 0);
    sbx_gc_report rep;
    /* Without the option the cache of live layers stays. */
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.unpacked_removed, 0);
    assert_int_equal(rep.unpacked_bytes_freed, 0);
    struct stat st;
    assert_int_equal(stat(ua, &st), 0);

    o.unpacked = 1;
    o.dry_run = 1;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.unpacked_removed, 1);
    assert_int_equal(rep.unpacked_bytes_freed, ua_bytes);
    assert_int_equal(rep.blobs_removed + rep.layers_removed + rep.bytes_freed, 0);
    assert_int_equal(stat(ua, &st), 0); /* dry run: nothing gone */
    assert_int_equal(stat(ub, &st), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);

    o.dry_run = 0;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.unpacked_removed, 1);
    assert_int_equal(rep.unpacked_bytes_freed, ua_bytes);
    assert_int_equal(rep.blobs_removed + rep.layers_removed + rep.bytes_freed, 0);
    assert_int_equal(stat(ua, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(ub, &st), 0);       /* leased: kept */
    assert_int_equal(stat(inflight, &st), 0); /* not a cache entry */
    assert_int_equal(ts_count(t, "tmp"), 0);  /* removed after the lock, not left behind */
    /* The compressed layers and the names stay. */
    assert_int_equal(ts_count(t, "layers/sha256"), 2);
    assert_int_equal(sbx_store_has_layer(t->s, la, NULL), 1);
    char got[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_name_get(t->s, "a", got, &err), 0);

    /* The build ends: the next gc --unpacked takes b's dir too. */
    sbx_store_free(h);
    ts_reopen(t);
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.unpacked_removed, 1);
    assert_int_equal(stat(ub, &st), -1);
    sbx_fsck_report fr;
    assert_int_equal(sbx_store_fsck(t->s, &fr, NULL, &err), 0);
    free(inflight);
    free(ua);
    free(ub);
}

static void test_gc_unpacked_counts_only_bytes_it_frees(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 1, m); /* unnamed: gc removes the layer and its dir */
    ts_put_layer(t, 20000, 1, l);
    char *u = ts_unpacked(t, l, 200000);
    /* `unpack --link` tree: a hardlink outside keeps the file's blocks;
     * a second link inside the dir is one file. */
    char *f = tu_path(u, "file"), *inner = tu_path(u, "again"),
         *outside = tu_path(t->dir, "rootfs-file");
    uint64_t dir_bytes = ts_blocks(u), file_bytes = ts_blocks(f);
    assert_int_equal(link(f, inner), 0);
    sbx_df_report df;
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.unpacked_bytes, dir_bytes + file_bytes);
    assert_int_equal(link(f, outside), 0);
    ts_reopen(t);

    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.layers_removed, 1);
    assert_int_equal(rep.unpacked_removed, 1); /* went with its layer */
    assert_int_equal(rep.unpacked_bytes_freed, dir_bytes);
    struct stat st;
    assert_int_equal(stat(u, &st), -1);
    assert_int_equal(stat(outside, &st), 0);
    assert_int_equal(st.st_size, 200000);
    assert_int_equal(st.st_nlink, 1);
    free(f);
    free(inner);
    free(outside);
    free(u);
}

static void test_df_unpacked_bytes(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_df_report df;
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.unpacked_bytes, 0);
    char m[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "img", 1, m);
    ts_put_layer(t, 20000, 1, l);
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    uint64_t stored = df.stored_bytes;
    char *u = ts_unpacked(t, l, 500000);
    char *sub = tu_path(u, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    char *ln = tu_path(sub, "ln");
    assert_int_equal(symlink("../file", ln), 0);
    uint64_t want = ts_unpacked_blocks(u) + ts_blocks(sub) + ts_blocks(ln);
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.unpacked_bytes, want);
    assert_true(df.unpacked_bytes >= 500000);
    assert_int_equal(df.stored_bytes, stored); /* not part of the stored bytes */
    free(ln);
    free(sub);
    free(u);
}

static void test_fsck_clean_store(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "img", 1, m);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_checked, 2);
    assert_int_equal(rep.layers_checked, 1);
    assert_int_equal(rep.corrupt + rep.dangling_repaired + rep.orphans, 0);
}

/* A layer whose tar is an exact multiple of zstd's 128 KiB block ends its
 * last frame on a full output buffer: fsck must see a whole, valid layer
 * (it once asked the decoder for more, got a next frame's hint and
 * quarantined it), and the layer must still read back. */
static void test_fsck_keeps_layer_of_128k_multiple(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    static const size_t sizes[] = {128 * 1024, 3 * 128 * 1024, 10 * 128 * 1024};
    for (size_t i = 0; i < SBX_ARRAY_LEN(sizes); i++) {
        char layer[SBX_DIGEST_BUFSZ];
        ts_put_layer(t, sizes[i], 7 + (unsigned)i, layer);
        sbx_fsck_report rep;
        assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
        assert_int_equal(rep.corrupt, 0);
        assert_int_equal(ts_count(t, "quarantine"), 0);
        assert_int_equal(sbx_store_has_layer(t->s, layer, NULL), 1);
        sbx_layer_reader *r = NULL;
        assert_int_equal(sbx_store_layer_open(&r, t->s, layer, &err), 0);
        size_t total = 0, n;
        char buf[65536];
        do {
            assert_int_equal(sbx_layer_reader_read(r, buf, sizeof buf, &n, &err), 0);
            total += n;
        } while (n > 0);
        sbx_layer_reader_free(r);
        assert_int_equal(total, sizes[i]);
    }
}

typedef struct fsck_seen {
    int events;
    uint64_t last_done[2], last_total[2]; /* [0] blobs, [1] layers */
    int layers_before_blobs_done;
} fsck_seen;

static void on_fsck_progress(void *ud, const sbx_progress *p)
{
    fsck_seen *f = ud;
    assert_string_equal(p->id, "fsck");
    int layers = !strcmp(p->phase, "layers");
    assert_true(layers || !strcmp(p->phase, "blobs"));
    if (layers && f->last_done[0] != f->last_total[0])
        f->layers_before_blobs_done = 1;
    assert_true(p->done >= f->last_done[layers] || p->done == 0);
    f->last_done[layers] = p->done;
    f->last_total[layers] = p->total;
    f->events++;
}

/* fsck reports progress in bytes hashed: blobs, then layers (their
 * uncompressed tars), each ending at its total. */
static void test_fsck_progress(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image_sized(t, "img", 3, 300000, m);
    fsck_seen f = {0};
    sbx_ctx *ctx;
    assert_int_equal(sbx_ctx_new(&ctx, &err), 0);
    sbx_ctx_set_progress(ctx, on_fsck_progress, &f);
    sbx_fsck_report rep;
    int rc = sbx_store_fsck(t->s, &rep, ctx, &err);
    sbx_ctx_free(ctx);
    assert_int_equal(rc, 0);
    assert_true(f.events >= 4); /* a start and an end per phase */
    assert_false(f.layers_before_blobs_done);
    assert_true(f.last_total[0] > 0);
    assert_int_equal(f.last_done[0], f.last_total[0]);
    assert_true(f.last_total[1] >= 300000); /* the layer's tar */
    assert_int_equal(f.last_done[1], f.last_total[1]);
}

static void test_fsck_quarantines_corrupt_blob(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_damage(t, "blobs/sha256/" ABC_HEX, "abd");
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), SBX_ECORRUPT);
    tu_assert_error(&err, SBX_ECORRUPT, "1 corrupt (quarantined)");
    assert_non_null(strstr(err.msg, t->root));
    assert_string_equal(err.where, t->root);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(ts_count(t, "quarantine"), 1);
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 0);
    /* Repaired: the next run is clean, and the blob can be stored again. */
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
}

static void test_fsck_quarantines_corrupt_layer(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ], path[4096];
    ts_put_image(t, "img", 1, m);
    sbx_name_entry *v = NULL;
    size_t n = 0;
    char layer[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 20000, 1, layer); /* same layer as the image's */
    assert_int_equal(sbx_store_layer_path(t->s, layer, path, sizeof path, &err), 0);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, 40), 4);
    close(fd);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), SBX_ECORRUPT);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(sbx_store_has_layer(t->s, layer, NULL), 0);
    /* The name stays: its manifest is intact, only a layer must be fetched again. */
    assert_int_equal(sbx_store_name_get(t->s, "img", got, &err), 0);
    assert_int_equal(sbx_store_name_list(t->s, NULL, &v, &n, &err), 0);
    assert_int_equal(n, 1);
    sbx_name_entries_free(v, n);
}

static void test_fsck_repairs_dangling_and_records_orphans(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], d[SBX_DIGEST_BUFSZ], layer[SBX_DIGEST_BUFSZ], path[4096];
    ts_put_image(t, "img", 1, m);
    /* Dangling: the manifest's file is gone, so the name goes too. */
    char *mp = sbx__strdup_printf("%s/blobs/sha256/%s", t->root, m + 7);
    assert_int_equal(unlink(mp), 0);
    /* Orphan: a valid layer file whose record is gone. */
    ts_put_layer(t, 30000, 9, layer);
    ts_sql(t, "DELETE FROM layers WHERE diff_id = '%q'", layer);
    /* A record that disagrees with its (valid) file. */
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_sql(t, "UPDATE blobs SET size = 99 WHERE digest = '%q'", d);
    /* A stray file that is not even named like an object. */
    ts_damage(t, "blobs/sha256/garbage", "x");

    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), SBX_ECORRUPT);
    assert_int_equal(rep.dangling_repaired, 3); /* manifest record, its name, blob size */
    assert_int_equal(rep.orphans, 2);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(sbx_store_has_layer(t->s, layer, NULL), 1);
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, layer, &info, &err), 0);
    assert_int_equal(info.size, 30000);
    assert_int_equal(sbx_store_layer_path(t->s, layer, path, sizeof path, &err), 0);
    assert_int_equal(ts_sql_int(t, "SELECT size FROM blobs WHERE digest='%q'", d), 3);
    char got[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_name_get(t->s, "img", got, &err), SBX_ENOTFOUND);
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    free(mp);
}

static void test_fsck_orphan_alone_is_not_a_failure(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    /* What an interrupted gc leaves: a valid file whose record it deleted. */
    ts_damage(t, "blobs/sha256/" ABC_HEX, "abc");
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(rep.orphans, 1);
    assert_int_equal(rep.corrupt + rep.dangling_repaired, 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM blobs"), 1);
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(rep.orphans, 0);
}

static void test_df_counts_each_image(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_df_report df;
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.stored_bytes + df.logical_bytes + df.blobs + df.layers + df.names, 0);
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image_sized(t, "one", 1, 100000, m);
    /* The same image under another name, and as a builder step cache entry:
     * still one image. */
    assert_int_equal(sbx_store_name_set(t->s, "two", m, &err), 0);
    assert_int_equal(sbx_store_name_set(t->s, "cache:sha256:00", m, &err), 0);
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.names, 3);
    assert_int_equal(df.blobs, 2);
    assert_int_equal(df.layers, 1);
    long long cfgman = ts_sql_int(t, "SELECT sum(size) FROM blobs");
    long long zst = ts_sql_int(t, "SELECT stored_size FROM layers");
    assert_int_equal(df.stored_bytes, cfgman + zst);
    assert_int_equal(df.logical_bytes, cfgman + 100000);

    /* A second image sharing the layer: the layer counts once per image. */
    char layer[SBX_DIGEST_BUFSZ], cfg[SBX_DIGEST_BUFSZ], m2[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 100000, 1, layer);
    const char *c = "{\"config\":2}";
    char *man = sbx__strdup_printf("{\"manifest\":2,\"layer\":\"%s\"}", layer);
    assert_int_equal(sbx_store_put_blob(t->s, c, strlen(c), NULL, NULL, cfg, &err), 0);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, layer}};
    assert_int_equal(sbx_store_put_manifest(t->s, man, strlen(man), NULL, NULL, kids, 2, m2, &err),
                     0);
    assert_int_equal(sbx_store_name_set(t->s, "three", m2, &err), 0);
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.layers, 1);
    assert_int_equal(df.logical_bytes, cfgman + 100000 + strlen(c) + strlen(man) + 100000);
    assert_true(df.stored_bytes < df.logical_bytes / 2);
    /* a layer stored unchecked (tar size not known yet) counts its stored size */
    ts_sql(t, "UPDATE layers SET verified=0, size=0");
    assert_int_equal(sbx_store_df(t->s, &df, &err), 0);
    assert_int_equal(df.logical_bytes, cfgman + zst + strlen(c) + strlen(man) + zst);
    free(man);
}

static void test_names_expire_and_uses_refresh_them(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 1, a);
    ts_put_image(t, "keep", 2, b);
    assert_int_equal(sbx_store_name_set_ttl(t->s, "snap", a, 3600, &err), 0);
    assert_int_equal(sbx_store_name_set_ttl(t->s, "x", a, -1, &err), SBX_EINVAL);
    sbx_name_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(sbx_store_name_list(t->s, "snap", &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].ttl, 3600);
    assert_true(v[0].expires_at >= v[0].created + 3600);
    sbx_name_entries_free(v, n);

    /* a use pushes the expiry back to now + ttl; names without one stay 0 */
    ts_sql(t, "UPDATE names SET expires = 5 WHERE name = 'snap'");
    assert_int_equal(sbx_store_touch(t->s, a, &err), 0);
    assert_true(ts_sql_int(t, "SELECT expires FROM names WHERE name='snap'") > 1700000000);
    assert_int_equal(sbx_store_touch(t->s, b, &err), 0);
    assert_int_equal(ts_sql_int(t, "SELECT expires FROM names WHERE name='keep'"), 0);

    /* expired: gc removes the name first, then what it alone reached */
    ts_sql(t, "UPDATE names SET expires = 5 WHERE name = 'snap'");
    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    o.dry_run = 1;
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.names_expired, 1);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM names WHERE name='snap'"), 1);
    o.dry_run = 0;
    ts_reopen(t); /* the handle's own lease would keep the image */
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.names_expired, 1);
    assert_int_equal(rep.names_evicted, 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM names WHERE name='snap'"), 0);
    assert_int_equal(sbx_store_has_blob(t->s, a, NULL), 0);
    assert_int_equal(sbx_store_has_blob(t->s, b, NULL), 1);
}

static void test_image_usage_counts_what_no_other_name_holds(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m1[SBX_DIGEST_BUFSZ], m2[SBX_DIGEST_BUFSZ], layer[SBX_DIGEST_BUFSZ];
    char cfg[SBX_DIGEST_BUFSZ];
    ts_put_image_sized(t, "one", 1, 100000, m1);
    /* a second image sharing one's layer, with a layer of its own */
    char own[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 100000, 1, layer);
    ts_put_layer(t, 50000, 9, own);
    const char *c = "{\"config\":2}";
    char *man = sbx__strdup_printf("{\"manifest\":2,\"l\":\"%s\",\"o\":\"%s\"}", layer, own);
    assert_int_equal(sbx_store_put_blob(t->s, c, strlen(c), NULL, NULL, cfg, &err), 0);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, layer},
                              {SBX_CHILD_LAYER, own}};
    assert_int_equal(sbx_store_put_manifest(t->s, man, strlen(man), NULL, NULL, kids, 3, m2, &err),
                     0);
    assert_int_equal(sbx_store_name_set(t->s, "two", m2, &err), 0);
    long long shared = ts_sql_int(t, "SELECT stored_size FROM layers WHERE diff_id='%s'", layer);
    long long mine = ts_sql_int(t, "SELECT stored_size FROM layers WHERE diff_id='%s'", own);
    sbx_image_usage u;
    assert_int_equal(sbx_store_image_usage(t->s, m2, "two", &u, &err), 0);
    assert_int_equal(u.total_bytes, shared + mine + strlen(c) + strlen(man));
    assert_int_equal(u.size_bytes, mine + strlen(c) + strlen(man));
    assert_int_equal(sbx_store_image_usage(t->s, m2, NULL, &u, &err), 0);
    assert_int_equal(u.size_bytes, mine + strlen(c) + strlen(man));
    /* a second name of the same image (a snapshot that changed nothing):
     * removing either frees nothing, so each costs 0; the image itself
     * still has its own bytes */
    assert_int_equal(sbx_store_name_set(t->s, "snapshot:two", m2, &err), 0);
    assert_int_equal(sbx_store_image_usage(t->s, m2, "snapshot:two", &u, &err), 0);
    assert_int_equal(u.size_bytes, 0);
    assert_int_equal(sbx_store_image_usage(t->s, m2, NULL, &u, &err), 0);
    assert_int_equal(u.size_bytes, mine + strlen(c) + strlen(man));
    assert_int_equal(sbx_store_name_remove(t->s, "snapshot:two", &err), 0);
    /* "one" gone: two alone holds the shared layer, and pays for it */
    assert_int_equal(sbx_store_name_remove(t->s, "one", &err), 0);
    assert_int_equal(sbx_store_image_usage(t->s, m2, "two", &u, &err), 0);
    assert_int_equal(u.size_bytes, u.total_bytes);
    /* builder step images are not other images */
    assert_int_equal(sbx_store_name_set(t->s, "cache:sha256:ab", m1, &err), 0);
    assert_int_equal(sbx_store_image_usage(t->s, m2, "two", &u, &err), 0);
    assert_int_equal(u.size_bytes, u.total_bytes);
    assert_int_equal(sbx_store_image_usage(t->s, "nope", NULL, &u, &err), SBX_EINVAL);
    free(man);
}

/* Entries under <root>/mounts. */
static long mount_dirs(ts_ctx *t)
{
    char *p = tu_path(t->root, "mounts");
    DIR *d = opendir(p);
    free(p);
    long n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_mount_records_keep_images_until_dead(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char a[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 1, a);
    sbx_store_mount *m = NULL;
    assert_int_equal(sbx_store_mount_begin(&m, t->s, "img", a, "/nowhere", false, &err), 0);
    char id[SBX_MOUNT_ID_BUFSZ];
    snprintf(id, sizeof id, "%s", sbx_store_mount_id(m));
    assert_int_equal(mount_dirs(t), 1);
    assert_int_equal(sbx_store_mount_ready(m, &err), 0);
    sbx_mount_entry e;
    assert_int_equal(sbx_store_mount_find(&e, t->s, id, &err), 0);
    assert_true(e.ready && !e.read_only);
    assert_string_equal(e.digest, a);
    assert_string_equal(e.dir, "/nowhere");
    sbx_mount_entry_clear(&e);
    assert_int_equal(sbx_store_mount_find(&e, t->s, "/elsewhere", &err), SBX_ENOTFOUND);

    /* a live record (cheap check: same boot, made) keeps the unnamed image */
    ts_reopen(t);
    unsigned reaped = 9;
    assert_int_equal(sbx_store_mount_reap(t->s, false, &reaped, &err), 0);
    assert_int_equal(reaped, 0);
    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    sbx_gc_report rep;
    /* nothing is mounted as sbx-<id> anywhere: the full check finds it dead */
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.mounts_reaped, 1);
    assert_int_equal(mount_dirs(t), 0);
    assert_int_equal(sbx_store_has_blob(t->s, a, NULL), 0);

    /* held by its maker, a record is live whatever its state; unfinished
     * and released, the next open removes it */
    ts_put_image(t, NULL, 2, a);
    assert_int_equal(sbx_store_mount_begin(&m, t->s, "img", a, "/nowhere", true, &err), 0);
    sbx_store *h = NULL;
    assert_int_equal(sbx_store_open(&h, t->root, &err), 0);
    assert_int_equal(mount_dirs(t), 1);
    assert_int_equal(sbx_store_gc(h, &o, &rep, NULL, &err), 0);
    assert_int_equal(rep.mounts_reaped, 0);
    assert_int_equal(sbx_store_has_blob(h, a, NULL), 1);
    sbx_store_free(h);
    /* its process "dies": the lock goes with the handle's fd */
    sbx_store_mount_abort(m);
    assert_int_equal(mount_dirs(t), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM mounts"), 0);
}

/* A writer killed between linking its named temp file into place and its
 * record: the reaper removes the unrecorded object under the name that
 * temp file says (l: <hex>.zst, g: <hex>.gz), and never a recorded one. */
static void test_reaper_undoes_half_linked_layers(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    static const char *const forms[][2] = {{"l", ".zst"}, {"g", ".gz"}};
    char hex[65], rel[200];
    for (size_t i = 0; i < 2; i++) {
        memset(hex, i ? 'b' : 'a', 64);
        hex[64] = '\0';
        snprintf(rel, sizeof rel, "layers/sha256/%s%s", hex, forms[i][1]);
        char *obj = tu_path(t->root, rel);
        tu_write_file(obj, "not recorded");
        snprintf(rel, sizeof rel, "tmp/%s.%s.abcdefghijkl", forms[i][0], hex);
        char *named = tu_path(t->root, rel);
        assert_int_equal(link(obj, named), 0);
        ts_reopen(t); /* open runs the reaper */
        assert_int_equal(access(obj, F_OK), -1);
        assert_int_equal(access(named, F_OK), -1);
        free(obj);
        free(named);
    }
    /* a recorded (zstd) layer: its stale named temp goes, the layer stays;
     * a gzip file beside it, linked from a g. temp, is not the layer's file:
     * the reaper leaves it to gc, which removes it */
    char m[SBX_DIGEST_BUFSZ], diff[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "kept", 7, m);
    unsigned char *tar = ts_layer_bytes(20000, 7); /* the image's layer */
    sbx__sha256_buf(tar, 20000, diff);
    free(tar);
    memcpy(hex, diff + 7, 65);
    snprintf(rel, sizeof rel, "layers/sha256/%s.zst", hex);
    char *zst = tu_path(t->root, rel);
    snprintf(rel, sizeof rel, "layers/sha256/%s.gz", hex);
    char *gz = tu_path(t->root, rel);
    tu_write_file(gz, "a stray other form");
    snprintf(rel, sizeof rel, "tmp/l.%s.abcdefghijkm", hex);
    char *lnamed = tu_path(t->root, rel);
    snprintf(rel, sizeof rel, "tmp/g.%s.abcdefghijkn", hex);
    char *gnamed = tu_path(t->root, rel);
    assert_int_equal(link(zst, lnamed), 0);
    assert_int_equal(link(gz, gnamed), 0);
    ts_reopen(t);
    assert_int_equal(ts_count(t, "tmp"), 0);
    assert_int_equal(access(zst, F_OK), 0);
    assert_int_equal(access(gz, F_OK), 0);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(access(zst, F_OK), 0);
    assert_int_equal(access(gz, F_OK), -1);
    sbx_fsck_report fr;
    assert_int_equal(sbx_store_fsck(t->s, &fr, NULL, &err), 0);
    free(zst);
    free(gz);
    free(lnamed);
    free(gnamed);
}

static void test_version_1_store_is_migrated(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char a[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "old", 1, a);
    ts_sql(t, "DROP TABLE mounts; CREATE TABLE n2(name TEXT PRIMARY KEY, digest TEXT NOT NULL,"
              " created INTEGER NOT NULL, last_used INTEGER NOT NULL);"
              "INSERT INTO n2 SELECT name, digest, created, last_used FROM names;"
              "DROP TABLE names; ALTER TABLE n2 RENAME TO names; PRAGMA user_version=1;");
    ts_reopen(t);
    assert_int_equal(ts_sql_int(t, "PRAGMA user_version"), 6);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM pragma_table_info('mounts')"
                                   " WHERE name='external'"), 1);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM origins"), 0);
    assert_int_equal(sbx_store_name_set_ttl(t->s, "new", a, 60, &err), 0);
    assert_int_equal(ts_sql_int(t, "SELECT ttl FROM names WHERE name='new'"), 60);
    assert_int_equal(ts_sql_int(t, "SELECT expires FROM names WHERE name='old'"), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM mounts"), 0);
    /* a version 2 store (mounts without the external column) */
    ts_sql(t, "DROP TABLE mounts; CREATE TABLE mounts(id TEXT PRIMARY KEY, image TEXT NOT NULL,"
              " digest TEXT NOT NULL, dir TEXT NOT NULL, created INTEGER NOT NULL,"
              " boot_id TEXT NOT NULL, read_only INTEGER NOT NULL, state INTEGER NOT NULL,"
              " flat TEXT NOT NULL DEFAULT ''); PRAGMA user_version=2;");
    ts_reopen(t);
    assert_int_equal(ts_sql_int(t, "PRAGMA user_version"), 6);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM pragma_table_info('mounts')"
                                   " WHERE name='external'"), 1);
    /* a version 3 store (no origins) */
    ts_sql(t, "DROP TABLE origins; PRAGMA user_version=3;");
    ts_reopen(t);
    assert_int_equal(ts_sql_int(t, "PRAGMA user_version"), 6);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM origins"), 0);
    /* a version 4 store (no layer format: every layer zstd) keeps its layers */
    int layers = ts_sql_int(t, "SELECT count(*) FROM layers");
    assert_true(layers > 0);
    ts_sql(t, "ALTER TABLE layers DROP COLUMN format; ALTER TABLE layers DROP COLUMN verified;"
              " PRAGMA user_version=4;");
    ts_reopen(t);
    assert_int_equal(ts_sql_int(t, "PRAGMA user_version"), 6);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM layers WHERE format=0"), layers);
    /* a version 5 store (no verified column): its layers were all checked when stored */
    ts_sql(t, "ALTER TABLE layers DROP COLUMN verified; PRAGMA user_version=5;");
    ts_reopen(t);
    assert_int_equal(ts_sql_int(t, "PRAGMA user_version"), 6);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM layers WHERE verified=1"), layers);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(rep.layers_checked, (uint64_t)layers);
    /* a newer metadata version is refused, not downgraded */
    ts_sql(t, "PRAGMA user_version=7");
    sbx_store *h = NULL;
    assert_int_equal(sbx_store_open(&h, t->root, &err), SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "metadata version 7 is newer");
    ts_sql(t, "PRAGMA user_version=6");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TS_TEST(test_gc_keeps_named_removes_the_rest),
        TS_TEST(test_gc_keeps_what_an_index_reaches),
        TS_TEST(test_gc_max_bytes_evicts_lru_never_leased),
        TS_TEST(test_gc_removes_unrecorded_files_and_stale_tmp),
        TS_TEST(test_scratch_dirs_and_the_reaper),
        TS_TEST(test_reaper_undoes_half_linked_layers),
        TS_TEST(test_gc_unpacked_removes_unleased_dirs_only),
        TS_TEST(test_gc_unpacked_counts_only_bytes_it_frees),
        TS_TEST(test_fsck_clean_store),
        TS_TEST(test_fsck_progress),
        TS_TEST(test_fsck_keeps_layer_of_128k_multiple),
        TS_TEST(test_fsck_quarantines_corrupt_blob),
        TS_TEST(test_fsck_quarantines_corrupt_layer),
        TS_TEST(test_fsck_repairs_dangling_and_records_orphans),
        TS_TEST(test_fsck_orphan_alone_is_not_a_failure),
        TS_TEST(test_df_counts_each_image),
        TS_TEST(test_df_unpacked_bytes),
        TS_TEST(test_names_expire_and_uses_refresh_them),
        TS_TEST(test_image_usage_counts_what_no_other_name_holds),
        TS_TEST(test_mount_records_keep_images_until_dead),
        TS_TEST(test_version_1_store_is_migrated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
