/* Unit tests for the store: blobs, layers, sources, manifests, names, meta,
 * leases.  gc, fsck and df are in test_store_gc.c. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader */
#include <zlib.h>
#include <zstd.h>

#include "sbx/store.h"
#include "sbx_common.h"
#include "store_internal.h" /* sbx_store__gz_*: the gzip decoder itself */
#include "test_store_util.h"
#include "testutil.h"

static void test_open_creates_private_layout(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *root = tu_path(dir, "a/b/store");
    sbx_store *s = NULL;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_store_open(&s, root, &err), 0);
    assert_string_equal(sbx_store_root(s), root);
    struct stat st;
    assert_int_equal(stat(root, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    const char *sub[] = {"blobs/sha256", "layers/sha256", "tmp", "quarantine", "unpacked",
                         "locks", "meta.db", "lock"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(sub); i++) {
        char *p = tu_path(root, sub[i]);
        assert_int_equal(stat(p, &st), 0);
        free(p);
    }
    char *db = tu_path(root, "meta.db");
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    free(db);
    sbx_store_free(s);
    /* Reopening an existing store works. */
    assert_int_equal(sbx_store_open(&s, root, &err), 0);
    sbx_store_free(s);
    sbx_store_free(NULL);
    free(root);
    tu_tmpdir_free(dir);
}

static void test_open_on_a_file_fails_clearly(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *root = tu_path(dir, "file");
    tu_write_file(root, "x");
    sbx_store *s = NULL;
    sbx_error err = SBX_ERROR_INIT;
    int rc = sbx_store_open(&s, root, &err);
    assert_true(rc < 0);
    assert_null(s);
    assert_int_equal(err.code, rc);
    assert_non_null(strstr(err.msg, root));
    free(root);
    tu_tmpdir_free(dir);
}

static void test_default_root(void **state)
{
    (void)state;
    char buf[4096];
    sbx_error err = SBX_ERROR_INIT;
    char *old = getenv("SBX_STORE") ? strdup(getenv("SBX_STORE")) : NULL;
    setenv("SBX_STORE", "/srv/images", 1);
    assert_int_equal(sbx_store_default_root(buf, sizeof buf, &err), 0);
    assert_string_equal(buf, "/srv/images");
    unsetenv("SBX_STORE");
    assert_int_equal(sbx_store_default_root(buf, sizeof buf, &err), 0);
    if (geteuid() == 0)
        assert_string_equal(buf, "/var/lib/sbx-image");
    else
        assert_non_null(strstr(buf, "sbx-image"));
    assert_int_equal(sbx_store_default_root(buf, 4, &err), SBX_ELIMIT);
    tu_assert_error(&err, SBX_ELIMIT, "path too long");
    if (old)
        setenv("SBX_STORE", old, 1);
    free(old);
}

static void test_blob_put_read_dedup(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ], d2[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, "text/plain", NULL, d, &err), 0);
    assert_string_equal(d, ABC_DIGEST);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 1);
    /* The same bytes again, with the expected digest: success, one file. */
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, ABC_DIGEST, d2, &err), 0);
    assert_string_equal(d2, d);
    assert_int_equal(ts_count(t, "blobs/sha256"), 1);
    assert_int_equal(ts_count(t, "tmp"), 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(sbx_store_read_blob(t->s, d, 100, &data, &len, &err), 0);
    assert_int_equal(len, 3);
    assert_string_equal(data, "abc");
    free(data);
    /* Empty blob. */
    assert_int_equal(sbx_store_put_blob(t->s, "", 0, NULL, NULL, d, &err), 0);
    assert_string_equal(d, EMPTY_DIGEST);
    assert_int_equal(sbx_store_read_blob(t->s, d, 0, &data, &len, &err), 0);
    assert_int_equal(len, 0);
    free(data);
}

static void test_blob_digest_mismatch_stores_nothing(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abd", 3, NULL, ABC_DIGEST, d, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "digest mismatch: expected '" ABC_DIGEST "'");
    assert_string_equal(err.where, ABC_DIGEST);
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);
    assert_int_equal(sbx_store_has_blob(t->s, ABC_DIGEST, NULL), 0);
    /* A malformed expected digest is refused before anything is written. */
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, "sha256:xyz", d, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "write blob: parse digest 'sha256:xyz'");
    assert_int_equal(ts_count(t, "tmp"), 0);
}

static void test_blob_writer_stream_and_abort(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_blob_writer *w = NULL;
    assert_int_equal(sbx_store_blob_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_blob_writer_write(w, "a", 1, &err), 0);
    assert_int_equal(ts_count(t, "tmp"), 1); /* in flight: only a temp file */
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    assert_int_equal(sbx_blob_writer_write(w, "bc", 2, &err), 0);
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_blob_writer_commit(w, d, &err), 0);
    assert_string_equal(d, ABC_DIGEST);
    assert_int_equal(ts_count(t, "tmp"), 0);

    assert_int_equal(sbx_store_blob_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_blob_writer_write(w, "zzz", 3, &err), 0);
    sbx_blob_writer_abort(w);
    sbx_blob_writer_abort(NULL);
    assert_int_equal(ts_count(t, "tmp"), 0);
    assert_int_equal(ts_count(t, "blobs/sha256"), 1);
    /* commit with digest_out NULL is fine. */
    assert_int_equal(sbx_store_blob_begin(&w, t->s, EMPTY_DIGEST, &err), 0);
    assert_int_equal(sbx_blob_writer_commit(w, NULL, &err), 0);
    assert_int_equal(sbx_store_has_blob(t->s, EMPTY_DIGEST, NULL), 1);
}

/* A write that fails (here: RLIMIT_FSIZE) poisons the writer: committing it
 * anyway stores nothing rather than a file that does not match its name. */
static void test_commit_after_failed_write_stores_nothing(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    static char big[300000];
    memset(big, 'x', sizeof big);
    sbx_blob_writer *bw = NULL;
    sbx_layer_writer *lw = NULL;
    assert_int_equal(sbx_store_blob_begin(&bw, t->s, NULL, &err), 0);
    assert_int_equal(sbx_store_layer_begin(&lw, t->s, NULL, &err), 0);
    struct rlimit old, lim = {1000, RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rb = sbx_blob_writer_write(bw, big, sizeof big, &err);
    char bmsg[1024];
    snprintf(bmsg, sizeof bmsg, "%s", err.msg);
    unsigned char *noise = ts_layer_bytes(sizeof big, 5);
    int rl = 0;
    for (int i = 0; i < 50 && rl == 0; i++) /* zstd buffers: write until output spills */
        rl = sbx_layer_writer_write(lw, noise, sizeof big, &err);
    free(noise);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rb, SBX_EIO);
    assert_non_null(strstr(bmsg, "write blob in store '"));
    assert_int_equal(rl, SBX_EIO);
    tu_assert_error(&err, SBX_EIO, "write layer in store '");
    assert_int_equal(err.sys_errno, EFBIG);
    assert_int_equal(sbx_blob_writer_commit(bw, NULL, &err), SBX_EIO);
    tu_assert_error(&err, SBX_EIO, "an earlier write failed; nothing stored");
    assert_int_equal(sbx_layer_writer_commit(lw, NULL, &err), SBX_EIO);
    tu_assert_error(&err, SBX_EIO, "an earlier write failed; nothing stored");
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    assert_int_equal(ts_count(t, "layers/sha256"), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);
}

static void test_blob_read_errors(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(sbx_store_read_blob(t->s, ABC_DIGEST, 10, &data, &len, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "read blob '" ABC_DIGEST "': not in store");
    assert_string_equal(err.where, ABC_DIGEST);
    assert_int_equal(sbx_store_read_blob(t->s, "nope", 10, &data, &len, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "read blob: parse digest 'nope'");
    assert_int_equal(sbx_store_has_blob(t->s, "nope", NULL), 0);
    assert_int_equal(sbx_store_has_blob(t->s, ABC_DIGEST, NULL), 0);

    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(sbx_store_read_blob(t->s, d, 2, &data, &len, &err), SBX_ELIMIT);
    tu_assert_error(&err, SBX_ELIMIT, "3 bytes exceeds the limit of 2");
    assert_null(data);
    /* Damage the stored file: read notices. */
    ts_damage(t, "blobs/sha256/" ABC_HEX, "abd");
    assert_int_equal(sbx_store_read_blob(t->s, d, 10, &data, &len, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "stored file is damaged");
    assert_non_null(strstr(err.where, "blobs/sha256/" ABC_HEX));
    assert_null(data);
}

static void test_layer_roundtrip(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 3u << 20;
    unsigned char *buf = ts_layer_bytes(n, 7);
    char want[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(buf, n, want);

    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, want, &err), 0);
    for (size_t off = 0; off < n; off += 100000)
        assert_int_equal(sbx_layer_writer_write(w, buf + off, n - off < 100000 ? n - off : 100000,
                                                &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, got, &err), 0);
    assert_string_equal(got, want);
    assert_int_equal(sbx_store_has_layer(t->s, want, NULL), 1);
    assert_int_equal(ts_count(t, "tmp"), 0);

    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, want, &info, &err), 0);
    assert_string_equal(info.diff_id, want);
    assert_int_equal(info.size, n);
    assert_true(info.stored_size > 0 && info.stored_size < n);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, want, path, sizeof path, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, info.stored_size);
    char *zbytes = NULL;
    size_t zlen = 0;
    assert_int_equal(sbx__read_file(&zbytes, &zlen, path, 1 << 30, &err), 0);
    char zd[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(zbytes, zlen, zd);
    assert_string_equal(zd, info.stored_digest);
    free(zbytes);

    /* Read it back in odd-sized pieces. */
    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, want, &err), 0);
    unsigned char *back = malloc(n + 1);
    size_t total = 0, got_n;
    do {
        assert_int_equal(sbx_layer_reader_read(r, back + total, n + 1 - total < 7777
                                                                    ? n + 1 - total : 7777,
                                               &got_n, &err), 0);
        total += got_n;
    } while (got_n > 0);
    assert_int_equal(total, n);
    assert_memory_equal(back, buf, n);
    sbx_layer_reader_free(r);
    sbx_layer_reader_free(NULL);

    /* Same layer again: one file. */
    assert_int_equal(sbx_store_layer_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, buf, n, &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, NULL, &err), 0);
    assert_int_equal(ts_count(t, "layers/sha256"), 1);
    free(back);
    free(buf);
}

/* zstd input (a registry's zstd blob): the writer decompresses it itself. */
typedef struct {
    unsigned char *buf;
    size_t len, cap;
} tar_sink;

static int collect_tar(void *ud, const void *tar, size_t len, sbx_error *err)
{
    (void)err;
    tar_sink *t = ud;
    assert_true(t->len + len <= t->cap);
    memcpy(t->buf + t->len, tar, len);
    t->len += len;
    return 0;
}

static unsigned char *zstd_frames(const unsigned char *tar, size_t n, size_t parts, int checksum_from,
                                  int level, size_t *zlen)
{
    size_t cap = ZSTD_compressBound(n) + parts * 64;
    unsigned char *z = malloc(cap);
    *zlen = 0;
    for (size_t i = 0; i < parts; i++) {
        size_t from = n * i / parts, to = n * (i + 1) / parts;
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, (int)i < checksum_from);
        size_t r = ZSTD_compress2(c, z + *zlen, cap - *zlen, tar + from, to - from);
        assert_false(ZSTD_isError(r));
        *zlen += r;
        ZSTD_freeCCtx(c);
    }
    return z;
}

/* Write z to a writer taking format fmt, in pieces of `step`; returns the
 * commit's rc. */
static int put_stream(ts_ctx *t, sbx_layer_format fmt, const char *diff, const unsigned char *z,
                      size_t zlen, size_t step, tar_sink *sink, bool *kept, sbx_error *err)
{
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, diff, err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, fmt, collect_tar, sink, err), 0);
    for (size_t off = 0; off < zlen; off += step) {
        int rc = sbx_layer_writer_write(w, z + off, zlen - off < step ? zlen - off : step, err);
        if (rc < 0) {
            sbx_layer_writer_abort(w);
            return rc;
        }
    }
    *kept = sbx_layer_writer_kept(w);
    /* the stream's own digest, whether it was kept or not */
    char in_digest[SBX_DIGEST_BUFSZ], want[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_layer_writer_input_digest(w, in_digest, err), 0);
    sbx__sha256_buf(z, zlen, want);
    assert_string_equal(in_digest, want);
    assert_int_equal(sbx_layer_writer_write(w, z, 1, err), SBX_EINVAL);
    return sbx_layer_writer_commit(w, NULL, err);
}

static int put_zstd(ts_ctx *t, const char *diff, const unsigned char *z, size_t zlen, size_t step,
                    tar_sink *sink, bool *kept, sbx_error *err)
{
    return put_stream(t, SBX_LAYER_ZSTD, diff, z, zlen, step, sink, kept, err);
}

static void assert_stored(ts_ctx *t, const char *diff, const unsigned char *tar, size_t n,
                          const unsigned char *z, size_t zlen, bool same)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, diff, &info, &err), 0);
    assert_int_equal(info.size, n);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    char *file = NULL;
    size_t flen = 0;
    assert_int_equal(sbx__read_file(&file, &flen, path, 1 << 30, &err), 0);
    assert_int_equal(flen, info.stored_size);
    char fd_[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(file, flen, fd_);
    assert_string_equal(fd_, info.stored_digest);
    if (same) {
        assert_int_equal(flen, zlen);
        assert_memory_equal(file, z, zlen);
    } else {
        assert_false(flen == zlen && memcmp(file, z, zlen) == 0);
        /* the store's own compression: one frame, with a checksum */
        ZSTD_frameHeader h;
        assert_int_equal(ZSTD_getFrameHeader(&h, file, flen), 0);
        assert_true(h.checksumFlag);
    }
    free(file);
    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, diff, &err), 0);
    unsigned char *back = malloc(n + 1);
    size_t total = 0, got_n;
    do {
        assert_int_equal(sbx_layer_reader_read(r, back + total, n + 1 - total, &got_n, &err), 0);
        total += got_n;
    } while (got_n > 0);
    assert_int_equal(total, n);
    assert_memory_equal(back, tar, n);
    sbx_layer_reader_free(r);
    free(back);
    assert_int_equal(ts_count(t, "tmp"), 0);
}

static void test_layer_zstd_input(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 3u << 20;
    unsigned char *tar = ts_layer_bytes(n, 11);
    char diff[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, diff);
    tar_sink sink = {malloc(n), 0, n};
    bool kept;

    /* three frames with checksums, at level 1 (not the store's 3), in odd
     * pieces: kept byte for byte, the tar handed out whole */
    size_t zlen;
    unsigned char *z = zstd_frames(tar, n, 3, 3, 1, &zlen);
    assert_int_equal(put_zstd(t, diff, z, zlen, 7777, &sink, &kept, &err), 0);
    assert_true(kept);
    assert_int_equal(sink.len, n);
    assert_memory_equal(sink.buf, tar, n);
    assert_stored(t, diff, tar, n, z, zlen, true);
    /* cut at a frame's end, the file is still valid zstd: the reader counts
     * the tar against the record */
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    assert_int_equal(truncate(path, (off_t)ZSTD_findFrameCompressedSize(z, zlen)), 0);
    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, diff, &err), 0);
    unsigned char rbuf[65536];
    size_t got_n;
    int rc;
    while ((rc = sbx_layer_reader_read(r, rbuf, sizeof rbuf, &got_n, &err)) == 0 && got_n > 0)
        ;
    assert_int_equal(rc, SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "truncated");
    sbx_layer_reader_free(r);
    free(z);

    /* a last frame without a checksum: what was kept is recompressed from the
     * temp file, the rest compressed as it comes; nothing downloaded again */
    const struct { size_t parts; int from; size_t step; } cases[] = {
        {3, 2, 65536}, {3, 0, 100000}, {4, 1, 1u << 22}, {2, 1, 5}};
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        size_t tn = cases[i].step == 5 ? 200000 : n;
        unsigned char *ct = ts_layer_bytes(tn, 20 + (unsigned)i);
        z = zstd_frames(ct, tn, cases[i].parts, cases[i].from, 3, &zlen);
        char d[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(ct, tn, d);
        sink.len = 0;
        assert_int_equal(put_zstd(t, d, z, zlen, cases[i].step, &sink, &kept, &err), 0);
        assert_false(kept);
        assert_int_equal(sink.len, tn);
        assert_memory_equal(sink.buf, ct, tn);
        assert_stored(t, d, ct, tn, z, zlen, false);
        free(z);
        free(ct);
    }

    /* a frame declaring a 1 GiB window (the rewritten header of a small frame
     * with a content size and a 1 KiB window, written whole: the decoder
     * then decodes it in one go, without its window check): refused */
    {
        size_t sn = 60000;
        unsigned char *st = ts_layer_bytes(sn, 40);
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 10);
        z = malloc(ZSTD_compressBound(sn));
        zlen = ZSTD_compress2(c, z, ZSTD_compressBound(sn), st, sn);
        ZSTD_freeCCtx(c);
        assert_false(ZSTD_isError(zlen));
        assert_int_equal(z[4] & 0x23, 0); /* not single-segment, no dictionary id: */
        z[5] = (30 - 10) << 3; /* byte 5 is the window descriptor */
        char d[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(st, sn, d);
        sink.len = 0;
        rc = put_zstd(t, d, z, zlen, zlen, &sink, &kept, &err);
        assert_int_equal(rc, SBX_ELIMIT);
        tu_assert_error(&err, SBX_ELIMIT, "window larger than 16 MiB");
        assert_int_equal(sbx_store_has_layer(t->s, d, NULL), 0);
        free(z);
        free(st);
    }

    /* a frame of zstd's pre-1.0 format (v0.7: no checksum, one raw block)
     * after a good one: libzstd still decodes those, but OCI's zstd is RFC
     * 8878; refused, nothing stored */
    {
        size_t n1 = 5000, n2 = 1000;
        unsigned char *lt = ts_layer_bytes(n1 + n2, 41);
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        z = malloc(ZSTD_compressBound(n1) + n2 + 64);
        zlen = ZSTD_compress2(c, z, ZSTD_compressBound(n1), lt, n1);
        ZSTD_freeCCtx(c);
        assert_false(ZSTD_isError(zlen));
        static const unsigned char v07[] = {0x27, 0xB5, 0x2F, 0xFD, 0x00, 0x40};
        memcpy(z + zlen, v07, sizeof v07);
        zlen += sizeof v07;
        z[zlen++] = 0x40 | ((n2 >> 16) & 7); /* raw block of n2 bytes */
        z[zlen++] = (n2 >> 8) & 0xff;
        z[zlen++] = n2 & 0xff;
        memcpy(z + zlen, lt + n1, n2);
        zlen += n2;
        z[zlen++] = 0xC0; /* end of frame */
        z[zlen++] = 0;
        z[zlen++] = 0;
        char d[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(lt, n1 + n2, d);
        sink.len = 0;
        rc = put_zstd(t, d, z, zlen, zlen, &sink, &kept, &err);
        assert_int_equal(rc, SBX_EUNSUPPORTED);
        tu_assert_error(&err, SBX_EUNSUPPORTED, "pre-1.0");
        assert_int_equal(sbx_store_has_layer(t->s, d, NULL), 0);
        assert_int_equal(ts_count(t, "tmp"), 0);
        free(z);
        free(lt);
    }

    /* truncated mid-frame: refused at commit; nothing stored */
    tar[0] ^= 1;
    sbx__sha256_buf(tar, n, diff);
    z = zstd_frames(tar, n, 1, 1, 3, &zlen);
    sink.len = 0;
    assert_int_equal(put_zstd(t, diff, z, zlen - 3, 65536, &sink, &kept, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "truncated");
    assert_int_equal(sbx_store_has_layer(t->s, diff, NULL), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);
    /* not zstd at all */
    sink.len = 0;
    assert_int_equal(put_zstd(t, diff, (const unsigned char *)"not zstd at all", 15, 15, &sink,
                              &kept, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "corrupt zstd");
    /* chosen after a write: refused */
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, "x", 1, &err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, SBX_LAYER_ZSTD, NULL, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "before the first write");
    sbx_layer_writer_abort(w);
    /* the stream decides the diff_id: a wrong expected one stores nothing */
    tar[7] ^= 1;
    char other[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, other);
    sink.len = 0;
    assert_int_equal(put_zstd(t, other, z, zlen, zlen, &sink, &kept, &err), SBX_EDIGEST);
    assert_int_equal(sbx_store_has_layer(t->s, other, NULL), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);
    free(z);
    free(sink.buf);
    free(tar);
}

/* tar as `parts` concatenated gzip members (zlib, level 6) */
static unsigned char *gzip_members(const unsigned char *tar, size_t n, size_t parts, size_t *zlen)
{
    size_t cap = n + parts * 1024 + 4096;
    unsigned char *z = malloc(cap);
    *zlen = 0;
    for (size_t i = 0; i < parts; i++) {
        size_t from = n * i / parts, to = n * (i + 1) / parts;
        z_stream s = {0};
        assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
                         Z_OK);
        s.next_in = (unsigned char *)tar + from;
        s.avail_in = (uInt)(to - from);
        s.next_out = z + *zlen;
        s.avail_out = (uInt)(cap - *zlen);
        assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
        *zlen += s.total_out;
        deflateEnd(&s);
    }
    return z;
}

/* The same for gzip, which is always kept. */
static int put_gzip(ts_ctx *t, const char *diff, const unsigned char *z, size_t zlen, size_t step,
                    tar_sink *sink, sbx_error *err)
{
    bool kept = true; /* (left so when a write fails) */
    int rc = put_stream(t, SBX_LAYER_GZIP, diff, z, zlen, step, sink, &kept, err);
    assert_true(kept);
    return rc;
}

static int read_all(ts_ctx *t, const char *diff, sbx_error *err)
{
    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, diff, err), 0);
    unsigned char buf[65536];
    size_t got;
    int rc;
    while ((rc = sbx_layer_reader_read(r, buf, sizeof buf, &got, err)) == 0 && got > 0)
        ;
    sbx_layer_reader_free(r);
    return rc;
}

/* A gzip blob stored unchecked (sbx_layer_writer_defer_check), as a pull
 * stores one: claimed diff_id, blob bytes kept, no decompression. */
static int put_deferred_in(ts_ctx *t, sbx_layer_format fmt, const char *diff,
                           const unsigned char *z, size_t zlen, size_t step, sbx_error *err)
{
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, diff, err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, fmt, NULL, NULL, err), 0);
    assert_int_equal(sbx_layer_writer_defer_check(w, err), 0);
    for (size_t off = 0; off < zlen; off += step) {
        int rc = sbx_layer_writer_write(w, z + off, zlen - off < step ? zlen - off : step, err);
        if (rc < 0) {
            sbx_layer_writer_abort(w);
            return rc;
        }
    }
    return sbx_layer_writer_commit(w, NULL, err);
}

static int put_deferred(ts_ctx *t, const char *diff, const unsigned char *z, size_t zlen,
                        sbx_error *err)
{
    return put_deferred_in(t, SBX_LAYER_GZIP, diff, z, zlen, 5000, err);
}

static void assert_layer_state(ts_ctx *t, const char *diff, bool verified, uint64_t size,
                               const unsigned char *z, size_t zlen)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, diff, &info, &err), 0);
    assert_int_equal(info.verified, verified);
    assert_int_equal(info.size, size);
    assert_int_equal(info.stored_size, zlen);
    char want[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(z, zlen, want);
    assert_string_equal(info.stored_digest, want);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    char *file = NULL;
    size_t flen = 0;
    assert_int_equal(sbx__read_file(&file, &flen, path, 1 << 30, &err), 0);
    assert_int_equal(flen, zlen);
    assert_memory_equal(file, z, zlen);
    free(file);
}

static void test_layer_deferred_check(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 1u << 20;
    unsigned char *a = ts_layer_bytes(n, 31), *x = ts_layer_bytes(n, 32), *c = ts_layer_bytes(n, 33);
    char da[SBX_DIGEST_BUFSZ], dx[SBX_DIGEST_BUFSZ], dc[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(a, n, da);
    sbx__sha256_buf(x, n, dx);
    sbx__sha256_buf(c, n, dc);
    size_t za_len, zx_len, zc_len;
    unsigned char *za = gzip_members(a, n, 2, &za_len), *zx = gzip_members(x, n, 1, &zx_len),
                  *zc = gzip_members(c, n, 1, &zc_len);
    sbx_layer_writer *w = NULL;

    /* only compressed input without a tar consumer, before a write, with the
     * diff_id it claims */
    assert_int_equal(sbx_store_layer_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, SBX_LAYER_GZIP, NULL, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_defer_check(w, &err), SBX_EINVAL);
    sbx_layer_writer_abort(w);
    assert_int_equal(sbx_store_layer_begin(&w, t->s, da, &err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, SBX_LAYER_GZIP, NULL, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, za, 10, &err), 0);
    assert_int_equal(sbx_layer_writer_defer_check(w, &err), SBX_EINVAL);
    sbx_layer_writer_abort(w);
    tar_sink none = {NULL, 0, 0};
    assert_int_equal(sbx_store_layer_begin(&w, t->s, da, &err), 0);
    assert_int_equal(sbx_layer_writer_compressed_input(w, SBX_LAYER_ZSTD, collect_tar, &none,
                                                       &err), 0);
    assert_int_equal(sbx_layer_writer_defer_check(w, &err), SBX_EINVAL);
    sbx_layer_writer_abort(w);
    assert_int_equal(sbx_store_layer_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_defer_check(w, &err), SBX_EINVAL); /* a tar */
    sbx_layer_writer_abort(w);

    /* a hostile image claims layer a for blob x: stored unchecked as sent */
    assert_int_equal(put_deferred(t, da, zx, zx_len, &err), 0);
    assert_layer_state(t, da, false, 0, zx, zx_len);
    assert_int_equal(sbx_store_has_layer(t->s, da, &err), 1);
    /* no one builds on it (pull, load) */
    assert_int_equal(sbx_store_layer_trusted(t->s, da, &err), 0);
    /* its first read fails at the end and leaves it unchecked */
    assert_int_equal(read_all(t, da, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "is not this layer");
    assert_layer_state(t, da, false, 0, zx, zx_len);
    /* and it never ships */
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_shippable(t->s, da, &info, NULL, &err), SBX_EDIGEST);
    /* another blob stored unchecked for the same diff_id: refused, to be
     * written again checked */
    assert_int_equal(put_deferred(t, da, za, za_len, &err), SBX_EBUSY);
    tu_assert_error(&err, SBX_EBUSY, "stored unchecked");
    assert_layer_state(t, da, false, 0, zx, zx_len);
    /* the real layer, checked as it is written: replaces it, file and record */
    bool kept = false;
    tar_sink sink = {malloc(n), 0, n};
    assert_int_equal(put_stream(t, SBX_LAYER_GZIP, da, za, za_len, 7000, &sink, &kept, &err), 0);
    assert_layer_state(t, da, true, n, za, za_len);
    assert_int_equal(read_all(t, da, &err), 0);
    assert_int_equal(ts_count(t, "layers/sha256"), 1);

    /* a true claim stored unchecked: the same blob again keeps it so; a full
     * read checks it and records it (size, checked) */
    assert_int_equal(put_deferred(t, dc, zc, zc_len, &err), 0);
    assert_int_equal(put_deferred(t, dc, zc, zc_len, &err), 0);
    assert_layer_state(t, dc, false, 0, zc, zc_len);
    assert_int_equal(read_all(t, dc, &err), 0);
    assert_layer_state(t, dc, true, n, zc, zc_len);
    assert_int_equal(read_all(t, dc, &err), 0);
    ts_sql(t, "UPDATE layers SET verified=0, size=0 WHERE diff_id='%s'", dc);
    assert_int_equal(sbx_store_layer_trusted(t->s, dc, &err), 1); /* checked on the way */
    assert_layer_state(t, dc, true, n, zc, zc_len);
    assert_int_equal(sbx_store_layer_trusted(t->s, da, &err), 1);

    /* a bomb stored unchecked (a true claim): its reads, the trust check and
     * fsck all stop at the expansion limit a pull would have applied */
    {
        unsigned char *zeros = calloc(1, n);
        char dz[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(zeros, n, dz);
        size_t zz_len;
        unsigned char *zz = gzip_members(zeros, n, 1, &zz_len);
        assert_true(zz_len * 20 < n);
        setenv("SBX_EXPANSION_FLOOR", "4096", 1);
        setenv("SBX_MAX_EXPANSION", "20", 1);
        assert_int_equal(put_deferred(t, dz, zz, zz_len, &err), 0);
        assert_int_equal(read_all(t, dz, &err), SBX_ELIMIT);
        tu_assert_error(&err, SBX_ELIMIT, "expands beyond");
        assert_int_equal(sbx_store_layer_trusted(t->s, dz, &err), 0);
        sbx_fsck_report brep;
        assert_int_equal(sbx_store_fsck(t->s, &brep, NULL, &err), SBX_ECORRUPT);
        assert_int_equal(brep.corrupt, 1);
        assert_int_equal(sbx_store_has_layer(t->s, dz, NULL), 0);
        unsetenv("SBX_EXPANSION_FLOOR");
        unsetenv("SBX_MAX_EXPANSION");
        free(zz);
        free(zeros);
    }

    /* fsck checks what no read has: a true claim is recorded as checked, a
     * false one quarantined */
    ts_sql(t, "UPDATE layers SET verified=0, size=0 WHERE diff_id='%s'", dc);
    assert_int_equal(put_deferred(t, dx, za, za_len, &err), 0); /* blob a claimed as x */
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), SBX_ECORRUPT);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(rep.dangling_repaired, 0);
    assert_layer_state(t, dc, true, n, zc, zc_len);
    assert_int_equal(sbx_store_has_layer(t->s, dx, NULL), 0);

    /* shippable checks an unchecked layer first */
    assert_int_equal(put_deferred(t, dx, zx, zx_len, &err), 0);
    assert_int_equal(sbx_store_layer_shippable(t->s, dx, &info, NULL, &err), 0);
    assert_true(info.verified);
    assert_int_equal(info.size, n);
    free(sink.buf);
    free(za);
    free(zx);
    free(zc);
    free(a);
    free(x);
    free(c);
}

/* A zstd blob stored unchecked: its frames walked by their headers (in
 * pieces down to a byte), not decoded; what they hold checked at the first
 * read. */
static void test_layer_deferred_zstd(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 600u << 10;
    unsigned char *tar = ts_layer_bytes(n, 41);
    memset(tar + 100000, 0, 300000); /* long runs: RLE and raw blocks beside compressed ones */
    char diff[SBX_DIGEST_BUFSZ], other[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, diff);
    sbx__sha256_buf(tar, n - 1, other);
    size_t zlen;
    unsigned char *z = zstd_frames(tar, n, 3, 3, 1, &zlen);
    /* a skippable frame first, as some tools write */
    size_t slen = 8 + 5 + zlen;
    unsigned char *sz = malloc(slen);
    memcpy(sz, "\x50\x2a\x4d\x18\x05\x00\x00\x00hello", 13);
    memcpy(sz + 13, z, zlen);
    size_t steps[] = {1, 7, 4096, slen};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, sz, slen, steps[i], &err),
                         0);
        assert_layer_state(t, diff, false, 0, sz, slen);
        assert_int_equal(read_all(t, diff, &err), 0);
        assert_layer_state(t, diff, true, n, sz, slen);
        ts_sql(t, "DELETE FROM layers");
        ts_sql(t, "DELETE FROM layer_sources");
    }
    /* a false claim: found at the first read */
    assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, other, z, zlen, 999, &err), 0);
    assert_int_equal(read_all(t, other, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "is not this layer");
    /* damage inside a block passes the walk, not the read */
    unsigned char *bad = malloc(zlen);
    memcpy(bad, z, zlen);
    bad[zlen / 2] ^= 0x55;
    char bd[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, bd);
    ts_sql(t, "DELETE FROM layers");
    assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, bd, bad, zlen, 4096, &err), 0);
    assert_int_equal(read_all(t, bd, &err), SBX_EDIGEST);
    ts_sql(t, "DELETE FROM layers");
    /* cut mid-frame: the commit says truncated */
    assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, z, zlen - 3, 4096, &err),
                     SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "truncated");
    /* from a frame without a content checksum (the second of three), the
     * writer decodes what it took from its temp file and the rest, checks
     * the diff_id and stores its own zstd: checked, nothing asked again */
    size_t nlen;
    unsigned char *nz = zstd_frames(tar, n, 3, 1, 1, &nlen);
    for (size_t step = 1000; step <= nlen; step = step * 9 + 1) {
        assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, nz, nlen, step, &err), 0);
        sbx_layer_info ni;
        assert_int_equal(sbx_store_layer_info(t->s, diff, &ni, &err), 0);
        assert_true(ni.verified);
        assert_int_equal(ni.size, n);
        assert_int_not_equal(ni.stored_size, nlen);
        assert_int_equal(read_all(t, diff, &err), 0);
        ts_sql(t, "DELETE FROM layers");
    }
    /* ... and a false claim of such a stream is refused at the commit */
    assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, other, nz, nlen, 4096, &err),
                     SBX_EDIGEST);
    /* frame headers the walk judges: a block larger than its 1 KiB window
     * (refused before any read), a reserved header bit (refused, and said
     * so, deferred or not) */
    {
        size_t flen = 6 + 3 + 4000 + 4;
        unsigned char *f = calloc(1, flen);
        memcpy(f, "\x28\xb5\x2f\xfd\x04\x00", 6); /* checksum flag; window 1 KiB */
        uint32_t bh = 1u | (4000u << 3);               /* last, raw, 4000 bytes */
        f[6] = bh & 0xff, f[7] = (bh >> 8) & 0xff, f[8] = (bh >> 16) & 0xff;
        assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, f, flen, 3, &err), SBX_EDIGEST);
        tu_assert_error(&err, SBX_EDIGEST, "block larger than its frame allows");
        f[4] |= 0x08; /* the reserved bit */
        assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, f, flen, 3, &err),
                         SBX_EUNSUPPORTED);
        tu_assert_error(&err, SBX_EUNSUPPORTED, "reserved bit");
        bool kept;
        tar_sink none = {NULL, 0, 0};
        assert_int_equal(put_stream(t, SBX_LAYER_ZSTD, diff, f, flen, 3, &none, &kept, &err),
                         SBX_EUNSUPPORTED);
        tu_assert_error(&err, SBX_EUNSUPPORTED, "reserved bit");
        free(f);
    }
    /* bytes that are no frame */
    memset(bad, 0x11, 64);
    assert_int_equal(put_deferred_in(t, SBX_LAYER_ZSTD, diff, bad, 64, 64, &err),
                     SBX_EDIGEST);
    assert_int_equal(ts_count(t, "tmp"), 0);
    free(nz);
    free(bad);
    free(sz);
    free(z);
    free(tar);
}

static void test_layer_gzip_input(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 3u << 20;
    unsigned char *tar = ts_layer_bytes(n, 12);
    char diff[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, diff);
    tar_sink sink = {malloc(n), 0, n};

    /* three members in odd pieces: kept byte for byte as <hex>.gz, the tar
     * handed out whole, read back, verified by fsck */
    size_t zlen;
    unsigned char *z = gzip_members(tar, n, 3, &zlen);
    assert_int_equal(put_gzip(t, diff, z, zlen, 7777, &sink, &err), 0);
    assert_int_equal(sink.len, n);
    assert_memory_equal(sink.buf, tar, n);
    assert_stored(t, diff, tar, n, z, zlen, true);
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, diff, &info, &err), 0);
    assert_int_equal(info.format, SBX_LAYER_GZIP);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    assert_string_equal(path + strlen(path) - 3, ".gz");
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    assert_int_equal(rep.layers_checked, 1);
    /* the same layer again, as a tar: it is stored already, in one form */
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, diff, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, tar, n, &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, NULL, &err), 0);
    assert_int_equal(ts_count(t, "layers/sha256"), 1);
    assert_int_equal(read_all(t, diff, &err), 0);
    /* a member appended: still valid gzip, but longer than the record says;
     * refused before any of the excess is handed out */
    {
        size_t xlen;
        unsigned char *x = gzip_members((const unsigned char *)"more", 4, 1, &xlen);
        FILE *f = fopen(path, "ab");
        assert_non_null(f);
        assert_int_equal(fwrite(x, 1, xlen, f), xlen);
        fclose(f);
        free(x);
        assert_int_equal(read_all(t, diff, &err), SBX_EDIGEST);
        tu_assert_error(&err, SBX_EDIGEST, "longer than its record says");
        assert_int_equal(truncate(path, (off_t)zlen), 0);
        assert_int_equal(read_all(t, diff, &err), 0);
    }
    /* cut at a member's end, the file is still valid gzip: the reader counts
     * the tar against the record, fsck quarantines it */
    size_t first;
    free(gzip_members(tar, n / 3, 1, &first)); /* the first member's bytes */
    assert_int_equal(truncate(path, (off_t)first), 0);
    assert_int_equal(read_all(t, diff, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "truncated");
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), SBX_ECORRUPT);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(sbx_store_has_layer(t->s, diff, NULL), 0);
    assert_int_equal(ts_count(t, "layers/sha256"), 0);

    /* header and trailer bytes one at a time */
    size_t sn = 20000;
    unsigned char *st = ts_layer_bytes(sn, 13);
    char sd[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(st, sn, sd);
    size_t slen;
    unsigned char *sz = gzip_members(st, sn, 2, &slen);
    sink.len = 0;
    assert_int_equal(put_gzip(t, sd, sz, slen, 1, &sink, &err), 0);
    assert_int_equal(sink.len, sn);
    assert_stored(t, sd, st, sn, sz, slen, true);

    /* damage: refused at write or commit, nothing stored, no temp files */
    tar[0] ^= 1;
    sbx__sha256_buf(tar, n, diff);
    free(z);
    z = gzip_members(tar, n, 2, &zlen);
    const struct { const char *what; size_t len; size_t flip; const char *msg; } bad[] = {
        {"truncated mid-member", zlen - 3, 0, "truncated"},
        {"a wrong CRC", zlen, zlen - 6, "corrupt gzip"},
        {"trailing bytes", zlen + 16, 0, "bytes after the last member"},
        {"a few trailing bytes", zlen + 5, 0, "bytes after the last member"},
    };
    unsigned char *zz = calloc(1, zlen + 16);
    for (size_t i = 0; i < SBX_ARRAY_LEN(bad); i++) {
        memcpy(zz, z, zlen);
        if (bad[i].flip)
            zz[bad[i].flip] ^= 0x55;
        sink.len = 0;
        int rc = put_gzip(t, diff, zz, bad[i].len, 65536, &sink, &err);
        print_message("%s: %s\n", bad[i].what, err.msg);
        assert_int_equal(rc, SBX_EDIGEST);
        tu_assert_error(&err, SBX_EDIGEST, bad[i].msg);
        assert_int_equal(sbx_store_has_layer(t->s, diff, NULL), 0);
        assert_int_equal(ts_count(t, "tmp"), 0);
    }
    /* the stream decides the diff_id: a wrong expected one stores nothing */
    sink.len = 0;
    assert_int_equal(put_gzip(t, sd, z, zlen, zlen, &sink, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "diff_id mismatch");
    assert_int_equal(ts_count(t, "tmp"), 0);
    free(zz);
    free(z);
    free(sz);
    free(st);
    free(sink.buf);
    free(tar);
}

/* One gzip member with every optional header field: FEXTRA, FNAME, FCOMMENT
 * and FHCRC (zlib's deflateSetHeader). */
static size_t gzip_fancy(const unsigned char *data, size_t n, unsigned char *out, size_t cap)
{
    z_stream s = {0};
    assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    static unsigned char extra[300];
    memset(extra, 'x', sizeof extra);
    gz_header h = {.extra = extra, .extra_len = sizeof extra, .name = (Bytef *)"layer.tar",
                   .comment = (Bytef *)"a comment", .hcrc = 1};
    assert_int_equal(deflateSetHeader(&s, &h), Z_OK);
    s.next_in = (unsigned char *)data;
    s.avail_in = (uInt)n;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t len = s.total_out;
    deflateEnd(&s);
    return len;
}

/* Decode z in two pieces cut at k: the tar, whole, and the stream ended. */
static int gz_two_pieces(const unsigned char *z, size_t zlen, size_t k, const unsigned char *tar,
                         size_t n)
{
    sbx_store__gz *g = sbx_store__gz_new();
    unsigned char *out = malloc(n + 1);
    size_t opos = 0;
    int r = 0;
    const unsigned char *piece[2] = {z, z + k};
    size_t plen[2] = {k, zlen - k};
    for (int p = 0; p < 2 && r == 0; p++) {
        size_t ipos = 0;
        do
            r = sbx_store__gz_step(g, piece[p], plen[p], &ipos, out, n + 1, &opos);
        while (r == 0 && ipos < plen[p] && opos < n + 1);
    }
    if (r == 0 && (opos != n || memcmp(out, tar, n) != 0 || !sbx_store__gz_ended(g)))
        r = -1;
    free(out);
    sbx_store__gz_free(g);
    return r;
}

/* Whatever the pieces a gzip stream comes in, it decodes the same: a header
 * with every optional field cut at each of its bytes (the writer, the
 * readers and fsck cut the same file at different places). */
static void test_gzip_headers_in_pieces(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 6000;
    unsigned char *tar = ts_layer_bytes(n, 14);
    size_t cap = 2 * n + 4096, zlen;
    unsigned char *plain = gzip_members(tar, n / 2, 1, &zlen);
    unsigned char *z = malloc(cap);
    memcpy(z, plain, zlen);
    size_t first = zlen;
    zlen += gzip_fancy(tar + n / 2, n - n / 2, z + zlen, cap - zlen);
    for (size_t k = 0; k <= zlen; k++)
        if (gz_two_pieces(z, zlen, k, tar, n) != 0)
            fail_msg("cut at byte %zu (the second member starts at %zu): not decoded", k, first);
    /* through the writer a byte at a time, and back through the reader */
    char diff[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, diff);
    tar_sink sink = {malloc(n), 0, n};
    assert_int_equal(put_gzip(t, diff, z, zlen, 1, &sink, &err), 0);
    assert_stored(t, diff, tar, n, z, zlen, true);
    /* reserved header flags: refused, as gzip(1) and zlib refuse them */
    memcpy(z, plain, first);
    z[3] |= 0x20;
    char d1[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n / 2, d1);
    assert_int_equal(put_gzip(t, d1, z, first, first, &sink, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "reserved gzip header flags");
    /* a wrong length (ISIZE) in the trailer */
    memcpy(z, plain, first);
    z[first - 1] ^= 1;
    assert_int_equal(put_gzip(t, d1, z, first, first, &sink, &err), SBX_EDIGEST);
    print_message("wrong ISIZE: %s\n", err.msg);
    assert_int_equal(ts_count(t, "tmp"), 0);
    free(sink.buf);
    free(z);
    free(plain);
    free(tar);
}

typedef struct {
    unsigned char *out;
    size_t n;
    uint64_t acc;
    int nb;
} bitw;

static void bw_bits(bitw *w, unsigned v, int n)
{
    w->acc |= (uint64_t)v << w->nb;
    w->nb += n;
    for (; w->nb >= 8; w->nb -= 8, w->acc >>= 8)
        w->out[w->n++] = (unsigned char)(w->acc & 255);
}

static void bw_huff(bitw *w, unsigned code, int n) /* Huffman codes go MSB first */
{
    unsigned r = 0;
    for (int i = 0; i < n; i++)
        r |= ((code >> (n - 1 - i)) & 1u) << i;
    bw_bits(w, r, n);
}

/* One gzip member whose dynamic block has an incomplete literal/length code
 * (257 codes of 9 bits: half the code space; RFC 1951 codes are complete).
 * ISA-L decodes it; zlib, gzip(1), Go's compress/flate and busybox refuse it. */
static unsigned char *gzip_incomplete_code(const unsigned char *data, size_t n, size_t *len)
{
    bitw w = {malloc(n * 9 / 8 + 256), 0, 0, 0};
    static const unsigned char hdr[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memcpy(w.out, hdr, sizeof hdr);
    w.n = sizeof hdr;
    bw_bits(&w, 1, 1); /* BFINAL */
    bw_bits(&w, 2, 2); /* dynamic */
    bw_bits(&w, 0, 5); /* 257 literal/length codes */
    bw_bits(&w, 0, 5); /* 1 distance code */
    static const int order[] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    bw_bits(&w, 18 - 4, 4); /* code-length codes up to symbol 1 (order[17]) */
    for (int i = 0; i < 18; i++) /* 0, 1, 9 and 18: 2 bits each, a complete code */
        bw_bits(&w, order[i] == 0 || order[i] == 1 || order[i] == 9 || order[i] == 18 ? 2 : 0, 3);
    for (int i = 0; i < 257; i++)
        bw_huff(&w, 2, 2); /* length 9 (code 10) */
    bw_huff(&w, 1, 2);     /* the distance code: length 1 (code 01) */
    for (size_t i = 0; i < n; i++)
        bw_huff(&w, data[i], 9);
    bw_huff(&w, 256, 9); /* end of block */
    if (w.nb)
        w.out[w.n++] = (unsigned char)(w.acc & 255);
    uint32_t crc = (uint32_t)crc32(0, data, (uInt)n), isz = (uint32_t)n;
    for (int i = 0; i < 4; i++)
        w.out[w.n++] = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++)
        w.out[w.n++] = (unsigned char)(isz >> (8 * i));
    *len = w.n;
    return w.out;
}

/* A gzip blob ISA-L reads and zlib refuses is stored (it reads back here),
 * but never leaves the store as it is: before push or export it is stored
 * again as zstd.  A standard one is checked once and left as it is. */
static void test_layer_shippable(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    size_t n = 50000;
    unsigned char *tar = ts_layer_bytes(n, 15);
    char diff[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(tar, n, diff);
    size_t zlen;
    unsigned char *z = gzip_incomplete_code(tar, n, &zlen);
    unsigned char *back = malloc(n + 64);
    uLongf blen = n + 64;
    assert_int_not_equal(uncompress(back, &blen, z, zlen), Z_OK); /* zlib refuses it */
    tar_sink sink = {malloc(n), 0, n};
    assert_int_equal(put_gzip(t, diff, z, zlen, 4096, &sink, &err), 0);
    assert_stored(t, diff, tar, n, z, zlen, true); /* ISA-L reads it */
    sbx_layer_info li;
    bool replaced = false;
    assert_int_equal(sbx_store_layer_shippable(t->s, diff, &li, &replaced, &err), 0);
    assert_true(replaced);
    assert_int_equal(li.format, SBX_LAYER_ZSTD);
    assert_int_equal(li.size, n);
    assert_int_equal(ts_count(t, "layers/sha256"), 1); /* the .gz is gone */
    assert_int_equal(read_all(t, diff, &err), 0);
    assert_int_equal(sbx_store_layer_shippable(t->s, diff, &li, &replaced, &err), 0);
    assert_false(replaced);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    /* a standard gzip layer: left as it is, its blob remembered as read */
    tar[0] ^= 1;
    sbx__sha256_buf(tar, n, diff);
    free(z);
    z = gzip_members(tar, n, 2, &zlen);
    sink.len = 0;
    assert_int_equal(put_gzip(t, diff, z, zlen, zlen, &sink, &err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sbx_store_layer_shippable(t->s, diff, &li, &replaced, &err), 0);
        assert_false(replaced);
        assert_int_equal(li.format, SBX_LAYER_GZIP);
    }
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM meta WHERE ns='gzip-standard'"), 1);
    free(sink.buf);
    free(back);
    free(z);
    free(tar);
}

/* Memory stays bounded whatever the layer's size: a 128 MiB layer, written
 * in a child so its peak RSS is measured alone. */
static void test_layer_memory_is_bounded(void **state)
{
    ts_ctx *t = *state;
    pid_t pid = fork();
    if (pid == 0) {
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        sbx_store *s = NULL;
        sbx_error err = SBX_ERROR_INIT;
        sbx_layer_writer *w = NULL;
        if (sbx_store_open(&s, t->root, &err) < 0 || sbx_store_layer_begin(&w, s, NULL, &err) < 0)
            _exit(3);
        static unsigned char chunk[1 << 20];
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < 128; i++) {
            for (size_t j = 0; j < sizeof chunk; j += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(chunk + j, &x, (j / 8) % 3 ? 8 : 1); /* half noise, half repeats */
            }
            if (sbx_layer_writer_write(w, chunk, sizeof chunk, &err) < 0)
                _exit(4);
        }
        if (sbx_layer_writer_commit(w, NULL, &err) < 0)
            _exit(5);
        sbx_store_free(s);
        getrusage(RUSAGE_SELF, &after);
        long grew_mib = (after.ru_maxrss - before.ru_maxrss) / 1024;
        fprintf(stderr, "layer of 128 MiB: peak RSS grew by %ld MiB\n", grew_mib);
#if defined(__SANITIZE_ADDRESS__)
        _exit(0); /* ASan's quarantine and shadow memory make RSS meaningless */
#else
        _exit(grew_mib < 64 ? 0 : 6);
#endif
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_layer_errors(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, t->s, ABC_DIGEST, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, "abd", 3, &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, NULL, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "diff_id mismatch: expected '" ABC_DIGEST "'");
    assert_int_equal(ts_count(t, "layers/sha256"), 0);
    assert_int_equal(ts_count(t, "tmp"), 0);

    assert_int_equal(sbx_store_layer_begin(&w, t->s, "sha256:12", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "write layer: parse digest 'sha256:12'");
    assert_null(w);
    assert_int_equal(sbx_store_layer_begin(&w, t->s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, "x", 1, &err), 0);
    sbx_layer_writer_abort(w);
    sbx_layer_writer_abort(NULL);
    assert_int_equal(ts_count(t, "tmp"), 0);

    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, ABC_DIGEST, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "open layer '" ABC_DIGEST "': not in store");
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(t->s, ABC_DIGEST, &info, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "get layer info '" ABC_DIGEST "'");
    assert_string_equal(err.where, ABC_DIGEST);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, ABC_DIGEST, path, sizeof path, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "find layer");
    assert_int_equal(sbx_store_has_layer(t->s, ABC_DIGEST, NULL), 0);
    assert_int_equal(sbx_store_layer_unpacked_path(t->s, "bad", path, sizeof path, &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "find unpacked layer");
    assert_int_equal(sbx_store_layer_unpacked_path(t->s, ABC_DIGEST, path, sizeof path, &err), 0);
    char *want = sbx__strdup_printf("%s/unpacked/%s", t->root, ABC_HEX);
    assert_string_equal(path, want);
    free(want);
    assert_int_equal(sbx_store_layer_unpacked_path(t->s, ABC_DIGEST, path, 10, &err),
                     SBX_ELIMIT);
}

static void test_layer_damage_detected_on_read(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char diff[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 200000, 3, diff);
    char path[4096];
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    /* Flip a byte in the middle of the zstd stream. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, st.st_size / 2), 1);
    c ^= 0x55;
    assert_int_equal(pwrite(fd, &c, 1, st.st_size / 2), 1);
    close(fd);
    sbx_layer_reader *r = NULL;
    assert_int_equal(sbx_store_layer_open(&r, t->s, diff, &err), 0);
    char buf[65536];
    size_t n;
    int rc;
    while ((rc = sbx_layer_reader_read(r, buf, sizeof buf, &n, &err)) == 0 && n > 0)
        ;
    assert_int_equal(rc, SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "stored file is damaged");
    sbx_layer_reader_free(r);

    /* Truncated file: noticed at the end. */
    assert_int_equal(truncate(path, st.st_size - 5), 0);
    assert_int_equal(sbx_store_layer_open(&r, t->s, diff, &err), 0);
    while ((rc = sbx_layer_reader_read(r, buf, sizeof buf, &n, &err)) == 0 && n > 0)
        ;
    assert_int_equal(rc, SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, "read layer");
    sbx_layer_reader_free(r);
}

static void test_layer_sources(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char diff[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 1000, 1, diff);
    const char *gz = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const char *zs = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    assert_int_equal(sbx_store_layer_by_source(t->s, gz, got, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "look up layer source '");
    assert_string_equal(err.where, gz);
    assert_int_equal(sbx_store_layer_add_source(t->s, diff, gz,
                                                "application/vnd.oci.image.layer.v1.tar+gzip",
                                                400, &err), 0);
    assert_int_equal(sbx_store_layer_add_source(t->s, diff, zs,
                                                "application/vnd.oci.image.layer.v1.tar+zstd",
                                                300, &err), 0);
    /* Adding the same source twice is fine. */
    assert_int_equal(sbx_store_layer_add_source(t->s, diff, zs, NULL, 300, &err), 0);
    assert_int_equal(sbx_store_layer_by_source(t->s, gz, got, &err), 0);
    assert_string_equal(got, diff);
    assert_int_equal(sbx_store_layer_by_source(t->s, zs, got, &err), 0);
    assert_string_equal(got, diff);
    assert_int_equal(ts_count(t, "layers/sha256"), 1);
    assert_int_equal(sbx_store_layer_add_source(t->s, ABC_DIGEST, gz, NULL, 1, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "layer '" ABC_DIGEST "' is not in the store");
    assert_int_equal(sbx_store_layer_add_source(t->s, diff, "md5:x", NULL, 1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "record layer source");
    assert_int_equal(sbx_store_layer_by_source(t->s, "x", got, &err), SBX_EINVAL);
}

static void test_manifest_children(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char layer[SBX_DIGEST_BUFSZ], cfg[SBX_DIGEST_BUFSZ], m[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, 5000, 2, layer);
    assert_int_equal(sbx_store_put_blob(t->s, "{\"config\":1}", 12, "application/json", NULL, cfg,
                                        &err), 0);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, layer}};
    assert_int_equal(sbx_store_put_manifest(t->s, "{\"m\":1}", 7, "application/x", NULL, kids, 2,
                                            m, &err), 0);
    assert_int_equal(sbx_store_has_blob(t->s, m, NULL), 1);
    /* A missing child refuses the whole manifest. */
    sbx_store_child bad[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, ABC_DIGEST}};
    char m2[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_manifest(t->s, "{\"m\":2}", 7, NULL, NULL, bad, 2, m2, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "layer '" ABC_DIGEST "' is not in the store");
    assert_int_equal(ts_count(t, "blobs/sha256"), 2);
    assert_int_equal(ts_count(t, "tmp"), 0);
    sbx_store_child badkind[] = {{(sbx_child_kind)9, cfg}};
    assert_int_equal(sbx_store_put_manifest(t->s, "{}", 2, NULL, NULL, badkind, 1, m2, &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "invalid child kind 9");
    sbx_store_child baddigest[] = {{SBX_CHILD_BLOB, "sha256:00"}};
    assert_int_equal(sbx_store_put_manifest(t->s, "{}", 2, NULL, NULL, baddigest, 1, m2, &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "invalid child digest 'sha256:00'");
    /* An index referencing the manifest; and a manifest first stored as a plain blob. */
    sbx_store_child idx[] = {{SBX_CHILD_MANIFEST, m}};
    char i1[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "{\"i\":1}", 7, NULL, NULL, i1, &err), 0);
    assert_int_equal(sbx_store_put_manifest(t->s, "{\"i\":1}", 7, NULL, i1, idx, 1, i1, &err), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM children"), 3);
    assert_int_equal(ts_sql_int(t, "SELECT is_manifest FROM blobs WHERE digest='%s'", i1), 1);
    /* No children at all is fine (an empty image). */
    assert_int_equal(sbx_store_put_manifest(t->s, "{\"e\":1}", 7, NULL, NULL, NULL, 0, m2, &err),
                     0);
}

static void test_names(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m1[SBX_DIGEST_BUFSZ], m2[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "one", 1, m1);
    ts_put_image(t, NULL, 2, m2);
    assert_int_equal(sbx_store_name_get(t->s, "one", got, &err), 0);
    assert_string_equal(got, m1);
    assert_int_equal(sbx_store_name_set(t->s, "docker.io/library/node:22", m2, &err), 0);
    assert_int_equal(sbx_store_name_set(t->s, "recipe:sha256:aa", m2, &err), 0);
    /* Replace. */
    assert_int_equal(sbx_store_name_set(t->s, "one", m2, &err), 0);
    assert_int_equal(sbx_store_name_get(t->s, "one", got, &err), 0);
    assert_string_equal(got, m2);

    sbx_name_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(sbx_store_name_list(t->s, NULL, &v, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].name, "docker.io/library/node:22");
    assert_string_equal(v[1].name, "one");
    assert_string_equal(v[2].name, "recipe:sha256:aa");
    assert_string_equal(v[2].digest, m2);
    assert_true(v[0].created > 1700000000 && v[0].last_used >= v[0].created);
    sbx_name_entries_free(v, n);
    assert_int_equal(sbx_store_name_list(t->s, "recipe:", &v, &n, &err), 0);
    assert_int_equal(n, 1);
    sbx_name_entries_free(v, n);
    assert_int_equal(sbx_store_name_list(t->s, "zzz", &v, &n, &err), 0);
    assert_int_equal(n, 0);
    sbx_name_entries_free(v, n);
    sbx_name_entries_free(NULL, 0);

    assert_int_equal(sbx_store_name_remove(t->s, "one", &err), 0);
    assert_int_equal(sbx_store_name_get(t->s, "one", got, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "get name: no image named 'one' in store");
    assert_int_equal(sbx_store_name_remove(t->s, "one", &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "remove name: no image named 'one'");
    assert_int_equal(sbx_store_name_set(t->s, "x", ABC_DIGEST, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "set name 'x': manifest '" ABC_DIGEST "' is not in");
    assert_int_equal(sbx_store_name_set(t->s, "", m1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "set name: name is empty");
    assert_int_equal(sbx_store_name_set(t->s, "a\nb", m1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "control character");
    assert_int_equal(sbx_store_name_set(t->s, "x", "sha256:1", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "set name: parse digest");
    assert_int_equal(sbx_store_name_get(t->s, NULL, got, &err), SBX_EINVAL);
    assert_int_equal(sbx_store_name_remove(t->s, "", &err), SBX_EINVAL);
}

static void test_touch_and_meta(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "img", 1, m);
    ts_sql(t, "UPDATE names SET last_used = 1000");
    assert_int_equal(sbx_store_touch(t->s, m, &err), 0);
    assert_true(ts_sql_int(t, "SELECT last_used FROM names WHERE name='img'") > 1000);
    assert_int_equal(sbx_store_touch(t->s, ABC_DIGEST, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "mark used: manifest '" ABC_DIGEST "'");
    assert_int_equal(sbx_store_touch(t->s, "x", &err), SBX_EINVAL);

    assert_int_equal(sbx_store_meta_set(t->s, "resolve", "node:22", "sha256:aa", &err), 0);
    assert_int_equal(sbx_store_meta_set(t->s, "resolve", "node:22", "sha256:bb", &err), 0);
    char *v = NULL;
    int64_t stamp = 0;
    assert_int_equal(sbx_store_meta_get(t->s, "resolve", "node:22", &v, &stamp, &err), 0);
    assert_string_equal(v, "sha256:bb");
    assert_true(stamp > 1700000000);
    free(v);
    assert_int_equal(sbx_store_meta_get(t->s, "resolve", "node:20", &v, NULL, &err),
                     SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "get metadata: no 'node:20' in 'resolve'");
    assert_string_equal(err.where, "resolve/node:20");
    assert_null(v);
    assert_int_equal(sbx_store_meta_set(t->s, "", "k", "v", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "set metadata: namespace is empty");
    assert_int_equal(sbx_store_meta_set(t->s, "n", "k", NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "value is missing");
    assert_int_equal(sbx_store_meta_get(t->s, "n", "", &v, NULL, &err), SBX_EINVAL);
}

static void test_lease_protects_from_gc_in_another_handle(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_reopen(t); /* drops the writing handle's process lease */
    sbx_store *h = NULL;
    assert_int_equal(sbx_store_open(&h, t->root, &err), 0);
    sbx_lease *l = NULL;
    assert_int_equal(sbx_store_lease_acquire(&l, h, 0, &err), 0);
    assert_int_equal(sbx_lease_add(l, d, &err), 0);
    assert_int_equal(sbx_lease_add(l, d, &err), 0);
    assert_int_equal(sbx_lease_add(l, "bad", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "add to lease");
    assert_int_equal(sbx_lease_add(NULL, d, &err), SBX_EINVAL);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 0);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 1);
    sbx_lease_release(l);
    sbx_lease_release(NULL);
    ts_reopen(t);
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 0);
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);

    assert_int_equal(sbx_store_lease_acquire(&l, h, -1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "acquire lease: negative ttl -1");
    assert_null(l);
    sbx_store_free(h);
}

static void test_lease_ttl_expires(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_reopen(t);
    sbx_lease *l = NULL;
    assert_int_equal(sbx_store_lease_acquire(&l, t->s, 3600, &err), 0);
    assert_int_equal(sbx_lease_add(l, d, &err), 0);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 0);
    ts_sql(t, "UPDATE leases SET expires = 1 WHERE implicit = 0"); /* time passes */
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    assert_int_equal(sbx_lease_add(l, d, &err), SBX_EBUSY);
    tu_assert_error(&err, SBX_EBUSY, "the lease expired");
    sbx_lease_release(l);
}

static void test_dead_process_lease_is_ignored(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    pid_t pid = fork();
    if (pid == 0) {
        sbx_store *s = NULL;
        sbx_error e = SBX_ERROR_INIT;
        char d[SBX_DIGEST_BUFSZ];
        if (sbx_store_open(&s, t->root, &e) < 0 ||
            sbx_store_put_blob(s, "abc", 3, NULL, NULL, d, &e) < 0)
            _exit(1);
        sbx_lease *l = NULL;
        if (sbx_store_lease_acquire(&l, s, 0, &e) < 0 || sbx_lease_add(l, d, &e) < 0)
            _exit(1);
        _exit(0); /* dies holding both its process lease and an explicit one */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM leases"), 2);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(t->s, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM leases"), 0);
}

static void test_has_leases_what_it_found(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_reopen(t);
    /* This handle relies on has_blob's answer; gc in another must keep it. */
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 1);
    sbx_store *g = NULL;
    assert_int_equal(sbx_store_open(&g, t->root, &err), 0);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(g, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 0);
    ts_reopen(t);
    assert_int_equal(sbx_store_gc(g, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    sbx_store_free(g);
}

static void test_lease_clear_lets_gc_reclaim(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_lease_clear(t->s, &err), 0); /* nothing leased yet: fine */
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    sbx_store *g = NULL;
    assert_int_equal(sbx_store_open(&g, t->root, &err), 0);
    sbx_gc_report rep;
    assert_int_equal(sbx_store_gc(g, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 0); /* the writer's process lease holds it */
    assert_int_equal(sbx_store_lease_clear(t->s, &err), 0);
    assert_int_equal(sbx_store_gc(g, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 1);
    /* The handle keeps working, and its lease protects new work again. */
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(sbx_store_gc(g, NULL, &rep, NULL, &err), 0);
    assert_int_equal(rep.blobs_removed, 0);
    sbx_store_free(g);
}

static void test_crashed_writer_debris_is_undone_on_open(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    /* A writer died after linking its named temp file into place, before
     * its record committed; and another died mid-write.  Dead: nobody holds
     * their flock. */
    char *blob = sbx__strdup_printf("%s/blobs/sha256/%s", t->root, ABC_HEX);
    char *named = sbx__strdup_printf("%s/tmp/b.%s.abcdefabcdef", t->root, ABC_HEX);
    char *partial = sbx__strdup_printf("%s/tmp/w.ghijklghijkl", t->root);
    tu_write_file(named, "abc");
    assert_int_equal(link(named, blob), 0);
    tu_write_file(partial, "ab");
    ts_reopen(t);
    assert_int_equal(ts_count(t, "tmp"), 0);
    assert_int_equal(ts_count(t, "blobs/sha256"), 0);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    /* A live writer's temp file (its flock held) is left alone; and so is
     * a name that is not the store's, like an older sbx-image's writer's
     * (it has no lock to test). */
    char *live = sbx__strdup_printf("%s/tmp/w.mnopqrmnopqr", t->root);
    char *foreign = sbx__strdup_printf("%s/tmp/w.123.456.abcdef", t->root);
    tu_write_file(live, "a");
    tu_write_file(foreign, "a");
    int lfd = open(live, O_RDONLY | O_CLOEXEC);
    assert_true(lfd >= 0);
    assert_int_equal(flock(lfd, LOCK_EX), 0);
    ts_reopen(t);
    assert_int_equal(ts_count(t, "tmp"), 2);
    close(lfd); /* its writer dies */
    ts_reopen(t);
    assert_int_equal(ts_count(t, "tmp"), 1);
    unlink(foreign);
    free(foreign);
    /* And the interrupted work completes when run again. */
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 1);
    free(live);
    free(blob);
    free(named);
    free(partial);
}

/* has_* never answers "absent" when the metadata cannot be read: a caller
 * would download or build again, or report a stored image missing. */
static void test_has_reports_metadata_errors(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(sbx_store_has_blob(t->s, d, &err), 1);
    assert_int_equal(sbx_store_has_layer(t->s, "sha256:" ABC_HEX, &err), 0);
    char *path = tu_path(t->root, "meta.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE blobs RENAME TO gone;"
                                      "ALTER TABLE layers RENAME TO gone2", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    free(path);
    int r = sbx_store_has_blob(t->s, d, &err);
    assert_true(r < 0);
    assert_int_equal(r, err.code);
    assert_non_null(strstr(err.msg, "looking up blob"));
    sbx_error_clear(&err);
    assert_true(sbx_store_has_layer(t->s, "sha256:" ABC_HEX, &err) < 0);
    assert_non_null(strstr(err.msg, "looking up layer"));
    assert_true(sbx_store_has_blob(t->s, d, NULL) < 0); /* no err: still an error, no crash */
}

static void test_dangling_record_is_repaired_by_next_writer(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ], diff[SBX_DIGEST_BUFSZ], path[4096];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_put_layer(t, 5000, 1, diff);
    char *blob = sbx__strdup_printf("%s/blobs/sha256/%s", t->root, ABC_HEX);
    assert_int_equal(sbx_store_layer_path(t->s, diff, path, sizeof path, &err), 0);
    assert_int_equal(unlink(blob), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 0);  /* the file is gone: not "present" */
    assert_int_equal(sbx_store_has_layer(t->s, diff, NULL), 0);
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    ts_put_layer(t, 5000, 1, diff);
    assert_int_equal(sbx_store_has_blob(t->s, d, NULL), 1);
    assert_int_equal(sbx_store_has_layer(t->s, diff, NULL), 1);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    /* Something else in tmp/ (not named like a writer's file) is left alone. */
    char *other = sbx__strdup_printf("%s/tmp/not-ours", t->root);
    tu_write_file(other, "x");
    ts_reopen(t);
    assert_int_equal(ts_count(t, "tmp"), 1);
    free(other);
    free(blob);
}

static void test_unrecorded_file_is_replaced_by_next_writer(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char *blob = sbx__strdup_printf("%s/blobs/sha256/%s", t->root, ABC_HEX);
    tu_write_file(blob, "abc");
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(t->s, "abc", 3, NULL, NULL, d, &err), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM blobs"), 1);
    sbx_fsck_report rep;
    assert_int_equal(sbx_store_fsck(t->s, &rep, NULL, &err), 0);
    free(blob);
}

static off_t wal_size(ts_ctx *t)
{
    char *p = tu_path(t->root, "meta.db-wal");
    struct stat st;
    int rc = stat(p, &st);
    free(p);
    assert_int_equal(rc, 0); /* kept: a store on a full disk can still be opened */
    return st.st_size;
}

static void test_last_close_leaves_an_empty_wal(void **state)
{
    ts_ctx *t = *state;
    char m[SBX_DIGEST_BUFSZ];
    for (unsigned i = 1; i <= 30; i++) {
        char name[16];
        snprintf(name, sizeof name, "img%u", i);
        ts_put_image(t, name, i, m);
    }
    assert_true(wal_size(t) > 100000); /* in use: the writes are in the WAL */
    /* A second handle is open: closing the first leaves the WAL to it. */
    sbx_store *other = NULL;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_store_open(&other, t->root, &err), 0);
    sbx_store_free(t->s);
    t->s = NULL;
    assert_true(wal_size(t) > 0);
    /* The last close checkpoints and truncates it, so the next opener has
     * nothing to read back. */
    sbx_store_free(other);
    assert_int_equal(wal_size(t), 0);
    char *shm = tu_path(t->root, "meta.db-shm");
    struct stat st;
    assert_int_equal(stat(shm, &st), 0);
    free(shm);
    /* Everything is in meta.db, and a reader leaves the WAL empty too. */
    ts_reopen(t);
    char got[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_name_get(t->s, "img30", got, &err), 0);
    assert_string_equal(got, m);
    sbx_store_free(t->s);
    t->s = NULL;
    assert_int_equal(wal_size(t), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_creates_private_layout),
        cmocka_unit_test(test_open_on_a_file_fails_clearly),
        cmocka_unit_test(test_default_root),
        TS_TEST(test_blob_put_read_dedup),
        TS_TEST(test_blob_digest_mismatch_stores_nothing),
        TS_TEST(test_blob_writer_stream_and_abort),
        TS_TEST(test_commit_after_failed_write_stores_nothing),
        TS_TEST(test_blob_read_errors),
        TS_TEST(test_layer_roundtrip),
        TS_TEST(test_layer_zstd_input),
        TS_TEST(test_layer_gzip_input),
        TS_TEST(test_layer_deferred_check),
        TS_TEST(test_layer_deferred_zstd),
        TS_TEST(test_gzip_headers_in_pieces),
        TS_TEST(test_layer_shippable),
        TS_TEST(test_layer_memory_is_bounded),
        TS_TEST(test_layer_errors),
        TS_TEST(test_layer_damage_detected_on_read),
        TS_TEST(test_layer_sources),
        TS_TEST(test_manifest_children),
        TS_TEST(test_names),
        TS_TEST(test_touch_and_meta),
        TS_TEST(test_lease_protects_from_gc_in_another_handle),
        TS_TEST(test_lease_ttl_expires),
        TS_TEST(test_dead_process_lease_is_ignored),
        TS_TEST(test_has_leases_what_it_found),
        TS_TEST(test_lease_clear_lets_gc_reclaim),
        TS_TEST(test_crashed_writer_debris_is_undone_on_open),
        TS_TEST(test_has_reports_metadata_errors),
        TS_TEST(test_unrecorded_file_is_replaced_by_next_writer),
        TS_TEST(test_dangling_record_is_repaired_by_next_writer),
        TS_TEST(test_last_close_leaves_an_empty_wal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
