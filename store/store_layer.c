/* Layers: the uncompressed tar streams in and is staged in 1 MiB buffers;
 * each full buffer is hashed (diff_id) by the writer's hasher thread while
 * zstd's worker threads compress it and the caller fills the other buffer,
 * and the compressed output is hashed too (the stored digest).  Memory stays
 * bounded: zstd's job size is pinned, the writer holds two staging buffers
 * and one output buffer.  A layer that comes compressed (a registry's zstd
 * or gzip blob) is decompressed here instead, its tar staged and hashed the
 * same way, and its own bytes kept as the stored file (zstd while its frames
 * allow, gzip always). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader (in libzstd.so since 1.3) */
#include <zstd.h>
#include <zstd_errors.h>

#include "store_internal.h"

/* Pinned so the same tar gives the same zstd bytes (zstd's multithreaded
 * output depends on the job size, not on the number of workers).  The job
 * size bounds memory: peak RSS measured 24 MiB with 1 MiB jobs, 37 MiB with
 * 2 MiB, 62 MiB with 4 MiB, independent of the layer's size; with 8 workers
 * and 1 MiB jobs, 41 MiB. */
#define LAYER_ZSTD_LEVEL 3
#define LAYER_ZSTD_JOB (1u << 20)
#define LAYER_ZSTD_WORKERS 2 /* at least; one per online CPU up to 8 */
#define LAYER_WRITEBACK_CHUNK (8u << 20)
#define LAYER_STAGE (1u << 20)
/* zstd input: the largest window a frame may need (what the puller allowed
 * before, and what every standard level up to 19 uses) */
#define ZIN_WINDOW_LOG 24
#define KEPT_WRITE (128u << 10)

/* Hashes one staged buffer at a time, beside the caller. */
typedef struct hasher {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sbx__sha256 *h;
    const unsigned char *buf; /* to hash; NULL when idle */
    size_t len;
    bool quit, started;
} hasher;

static void *hasher_main(void *p)
{
    hasher *hs = p;
    pthread_mutex_lock(&hs->mu);
    for (;;) {
        while (!hs->buf && !hs->quit)
            pthread_cond_wait(&hs->cv, &hs->mu);
        if (!hs->buf)
            break;
        const unsigned char *b = hs->buf;
        size_t n = hs->len;
        pthread_mutex_unlock(&hs->mu);
        sbx__sha256_update(hs->h, b, n);
        pthread_mutex_lock(&hs->mu);
        hs->buf = NULL;
        pthread_cond_broadcast(&hs->cv);
    }
    pthread_mutex_unlock(&hs->mu);
    return NULL;
}

/* Wait until the previous buffer is hashed (inline when no thread). */
static void hasher_wait(hasher *hs)
{
    if (!hs->started)
        return;
    pthread_mutex_lock(&hs->mu);
    while (hs->buf)
        pthread_cond_wait(&hs->cv, &hs->mu);
    pthread_mutex_unlock(&hs->mu);
}

static void hasher_give(hasher *hs, const unsigned char *b, size_t n)
{
    if (!hs->started) {
        sbx__sha256_update(hs->h, b, n);
        return;
    }
    pthread_mutex_lock(&hs->mu);
    while (hs->buf)
        pthread_cond_wait(&hs->cv, &hs->mu);
    hs->buf = b;
    hs->len = n;
    pthread_cond_broadcast(&hs->cv);
    pthread_mutex_unlock(&hs->mu);
}

static void hasher_stop(hasher *hs)
{
    if (!hs->started)
        return;
    pthread_mutex_lock(&hs->mu);
    hs->quit = true;
    pthread_cond_broadcast(&hs->cv);
    pthread_mutex_unlock(&hs->mu);
    pthread_join(hs->th, NULL);
    pthread_mutex_destroy(&hs->mu);
    pthread_cond_destroy(&hs->cv);
    hs->started = false;
}

struct sbx_layer_writer {
    sbx_store *s;
    int fd;
    char tmpname[128];
    sbx__sha256 *diff, *zhash;
    uint64_t size, stored;
    uint64_t flushed; /* bytes handed to writeback so far (sync_file_range) */
    int failed;       /* a write failed: digests no longer match the file */
    /* compressed input (sbx_layer_writer_compressed_input): write()
     * takes a zstd or gzip stream, decompressed here; while keep_stored its
     * bytes are the stored file (in format fmt) */
    bool zin, keep_stored, at_frame;
    bool replace; /* replaces the layer's file in another format (layer_to_zstd) */
    bool deferred; /* kept undecoded, recorded unchecked (sbx_layer_writer_defer_check) */
    /* deferred zstd: where the frame walk is (zwalk) */
    int zw_state;
    uint64_t zw_left; /* bytes of a block, checksum or skippable frame still to pass */
    unsigned char zw_bh[3];
    size_t zw_nbh;
    bool zw_last, zw_sum;
    uint32_t zw_bmax; /* the frame's largest block: min(window, 128 KiB) */
    uint64_t zw_frames;
    sbx_layer_format fmt;
    sbx_store__gz *gz; /* gzip input's decoder */
    ZSTD_DCtx *dctx;
    void *dout;
    unsigned char fh[ZSTD_FRAMEHEADERSIZE_MAX]; /* the start of a frame, to judge it */
    size_t nfh;
    size_t dret;        /* last ZSTD_decompressStream result: 0 = a frame ended */
    uint64_t zin_total; /* stream bytes taken */
    uint64_t good_end;  /* stream bytes up to the end of the last whole frame */
    sbx__sha256 *zin_hash; /* of the whole stream (the stored file's while kept) */
    char zin_digest[SBX_DIGEST_BUFSZ]; /* set by sbx_layer_writer_input_digest */
    size_t nkept; /* kept bytes gathered in out (the compressor's buffer, idle) */
    sbx_layer_tar_fn on_tar;
    void *tar_ud;
    ZSTD_CCtx *cctx;
    void *out;
    size_t outcap;
    char expected[SBX_DIGEST_BUFSZ];
    hasher hs;                /* hashes w->diff from the staged buffers */
    unsigned char *stage[2];
    size_t fill;              /* bytes in stage[cur] */
    int cur;
};

struct sbx_layer_reader {
    int fd;
    ZSTD_DCtx *dctx;     /* a zstd file's decoder, or */
    sbx_store__gz *gz;   /* a gzip file's */
    void *in;
    size_t incap;
    ZSTD_inBuffer ib;
    int eof;
    size_t last; /* last ZSTD_decompressStream hint: 0 when a frame ended */
    /* the tar's recorded size, and what came out so far: a file of several
     * frames (a registry's, kept as sent) cut at a frame's end is still
     * valid zstd */
    uint64_t want, produced;
    char diff_id[SBX_DIGEST_BUFSZ];
    /* an unchecked layer (sbx_layer_info.verified false): its tar is hashed
     * (want is then the expansion cap) and checked at the end, and the file's
     * bytes hashed for the record the check writes */
    sbx_store *s;
    sbx__sha256 *tarh, *fileh;
    uint64_t file_bytes, stored_size;
    char was[SBX_DIGEST_BUFSZ]; /* the record's stored digest when opened */
    bool check, ended, checked;
};

static int zstd_err(sbx_error *err, size_t rc, const char *what)
{
    return sbx_error_set(err, SBX_EINTERNAL, "%s: zstd: %s", what, ZSTD_getErrorName(rc));
}

int sbx_store_layer_begin(sbx_layer_writer **out, sbx_store *s, const char *expected_diff_id,
                          sbx_error *err)
{
    *out = NULL;
    if (expected_diff_id && sbx__digest_parse(NULL, expected_diff_id, err) < 0)
        return sbx_error_wrap(err, "write layer");
    sbx_layer_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory");
    w->s = s;
    w->fd = -1;
    if (expected_diff_id)
        snprintf(w->expected, sizeof w->expected, "%s", expected_diff_id);
    w->outcap = ZSTD_CStreamOutSize();
    w->out = malloc(w->outcap);
    w->cctx = ZSTD_createCCtx();
    w->stage[0] = malloc(LAYER_STAGE);
    w->stage[1] = malloc(LAYER_STAGE);
    if (!w->out || !w->cctx || !w->stage[0] || !w->stage[1]) {
        sbx_layer_writer_abort(w);
        return sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory");
    }
    if (sbx__sha256_new(&w->diff, err) < 0 || sbx__sha256_new(&w->zhash, err) < 0) {
        sbx_layer_writer_abort(w);
        return err->code;
    }
    /* no thread (a resource limit): hashed inline, slower, same result */
    w->hs.h = w->diff;
    if (pthread_mutex_init(&w->hs.mu, NULL) == 0) {
        if (pthread_cond_init(&w->hs.cv, NULL) == 0) {
            w->hs.started = pthread_create(&w->hs.th, NULL, hasher_main, &w->hs) == 0;
            if (!w->hs.started)
                pthread_cond_destroy(&w->hs.cv);
        }
        if (!w->hs.started)
            pthread_mutex_destroy(&w->hs.mu);
    }
    size_t zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, LAYER_ZSTD_LEVEL);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(zr)) {
        sbx_layer_writer_abort(w);
        return zstd_err(err, zr, "write layer");
    }
    /* Worker threads compress while this thread hashes; a libzstd built
     * without threads refuses, and then compresses inline. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int workers = ncpu < LAYER_ZSTD_WORKERS ? LAYER_ZSTD_WORKERS : ncpu > 8 ? 8 : (int)ncpu;
    if (!ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, workers)))
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_jobSize, LAYER_ZSTD_JOB);
    w->fd = sbx_store__tmp_entry(s, "w", false, false, w->tmpname, sizeof w->tmpname, err);
    if (w->fd < 0) {
        int rc = err->code;
        w->fd = -1;
        sbx_layer_writer_abort(w);
        return sbx_error_wrap(err, "write layer"), rc;
    }
    *out = w;
    return 0;
}

/* Append stored (zstd) bytes to the temp file, hashing them unless the
 * caller's hash already covers them (zstd input kept as sent). */
static int write_stored(sbx_layer_writer *w, const void *buf, size_t len, bool hash,
                        sbx_error *err)
{
    if (len == 0)
        return 0;
    if (hash)
        sbx__sha256_update(w->zhash, buf, len);
    w->stored += len;
    const char *b = buf;
    while (len > 0) {
        ssize_t n = write(w->fd, b, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->failed = 1;
            return sbx_store__io_err(w->s, err, errno, "write layer");
        }
        b += n;
        len -= (size_t)n;
    }
    /* Start writeback as we go, so the fsync at commit has little left to do. */
    if (w->stored - w->flushed >= LAYER_WRITEBACK_CHUNK) {
        sync_file_range(w->fd, (off64_t)w->flushed, (off64_t)(w->stored - w->flushed),
                        SYNC_FILE_RANGE_WRITE);
        w->flushed = w->stored;
    }
    return 0;
}

static int drain(sbx_layer_writer *w, ZSTD_outBuffer *ob, sbx_error *err)
{
    int rc = write_stored(w, ob->dst, ob->pos, true, err);
    ob->pos = 0;
    return rc;
}

/* Hand the staged buffer to the hasher and to zstd (which copies it into
 * its jobs), then switch to the other one: its hash finished before this
 * one was handed over. */
/* Compress tar bytes into the temp file (zstd copies them into its jobs). */
static int compress_tar(sbx_layer_writer *w, const void *buf, size_t len, sbx_error *err)
{
    ZSTD_inBuffer ib = {buf, len, 0};
    while (ib.pos < ib.size) {
        ZSTD_outBuffer ob = {w->out, w->outcap, 0};
        size_t zr = ZSTD_compressStream2(w->cctx, &ob, &ib, ZSTD_e_continue);
        if (ZSTD_isError(zr)) {
            w->failed = 1;
            return zstd_err(err, zr, "write layer");
        }
        if (drain(w, &ob, err) < 0)
            return err->code;
    }
    return 0;
}

static int flush_stage(sbx_layer_writer *w, sbx_error *err)
{
    if (w->fill == 0)
        return 0;
    const unsigned char *b = w->stage[w->cur];
    size_t n = w->fill;
    hasher_give(&w->hs, b, n);
    w->fill = 0;
    w->cur ^= 1;
    return w->keep_stored ? 0 : compress_tar(w, b, n, err);
}

/* The tar: staged for the hasher (and the compressor). */
static int stage_tar(sbx_layer_writer *w, const void *buf, size_t len, sbx_error *err)
{
    const unsigned char *p = buf;
    w->size += len;
    while (len > 0) {
        size_t n = LAYER_STAGE - w->fill;
        if (n > len)
            n = len;
        memcpy(w->stage[w->cur] + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
        if (w->fill == LAYER_STAGE && flush_stage(w, err) < 0)
            return err->code;
    }
    return 0;
}

static int flush_kept(sbx_layer_writer *w, sbx_error *err)
{
    int rc = write_stored(w, w->out, w->nkept, false, err);
    w->nkept = 0;
    return rc;
}

static int window_err(sbx_layer_writer *w, sbx_error *err)
{
    w->failed = 1;
    return sbx_error_set(err, SBX_ELIMIT, "write layer: zstd window larger than %u MiB",
                         (1u << ZIN_WINDOW_LOG) >> 20);
}

static int zin_err(sbx_layer_writer *w, size_t r, sbx_error *err)
{
    if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
        return window_err(w, err);
    w->failed = 1;
    return sbx_error_set(err, SBX_EDIGEST, "write layer: corrupt zstd data (%s)",
                         ZSTD_getErrorName(r));
}

/* A decoder for zstd input, with the window limit the readers keep to. */
static ZSTD_DCtx *zin_dctx(void)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (d)
        ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, ZIN_WINDOW_LOG);
    return d;
}

static int emit_tar(sbx_layer_writer *w, const void *buf, size_t len, sbx_error *err)
{
    if (w->on_tar && w->on_tar(w->tar_ud, buf, len, err) != 0) {
        w->failed = 1;
        return err->code ? err->code : sbx_error_set(err, SBX_EINTERNAL, "write layer: the "
                                                     "tar's consumer failed");
    }
    return stage_tar(w, buf, len, err);
}

/* A frame the stored form cannot keep: the temp file holds the kept frames
 * (stream bytes 0 to good_end, maybe the start of this one after them).
 * Their tar, read back from it, is compressed into a new temp file, and
 * everything from here on is compressed as it comes.  Their tar was hashed
 * already (the staged rest is handed over first), so it is not again. */
static int recompress_kept(sbx_layer_writer *w, sbx_error *err)
{
    if (flush_stage(w, err) < 0 || flush_kept(w, err) < 0)
        return err->code;
    uint64_t hashed = w->size; /* the tar of the kept frames */
    uint64_t got = 0;
    size_t r = 0;
    char oldname[sizeof w->tmpname];
    memcpy(oldname, w->tmpname, sizeof oldname);
    int oldfd = w->fd;
    int fd = sbx_store__tmp_entry(w->s, "w", false, false, w->tmpname, sizeof w->tmpname, err);
    if (fd < 0) {
        memcpy(w->tmpname, oldname, sizeof oldname);
        w->failed = 1;
        return sbx_error_wrap(err, "write layer"), err->code;
    }
    w->fd = fd;
    w->keep_stored = false;
    w->stored = w->flushed = 0;
    sbx__sha256_free(w->zhash);
    w->zhash = NULL;
    int rc = sbx__sha256_new(&w->zhash, err);
    ZSTD_DCtx *d = zin_dctx();
    size_t incap = 1u << 20;
    unsigned char *in = malloc(incap);
    if (rc == 0 && (!d || !in))
        rc = sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory");
    for (uint64_t off = 0; rc == 0 && off < w->good_end;) {
        size_t want = w->good_end - off < incap ? (size_t)(w->good_end - off) : incap;
        ssize_t n = pread(oldfd, in, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? sbx_store__io_err(w->s, err, errno, "write layer: reading back")
                       : sbx_error_set(err, SBX_EIO, "write layer: its temp file is short");
            break;
        }
        off += (uint64_t)n;
        ZSTD_inBuffer ib = {in, (size_t)n, 0};
        r = 1;
        while (rc == 0 && (ib.pos < ib.size || r != 0)) {
            ZSTD_outBuffer ob = {w->dout, ZSTD_DStreamOutSize(), 0};
            r = ZSTD_decompressStream(d, &ob, &ib);
            if (ZSTD_isError(r)) {
                rc = zin_err(w, r, err);
                break;
            }
            got += ob.pos;
            rc = compress_tar(w, ob.dst, ob.pos, err);
            if (ob.pos == 0 && ib.pos == ib.size)
                break; /* this chunk is all taken; the frame goes on in the next */
        }
    }
    ZSTD_freeDCtx(d);
    free(in);
    /* what comes back must be what was hashed, ending at a frame's end */
    if (rc == 0 && (got != hashed || r != 0))
        rc = sbx_error_set(err, SBX_EIO, "write layer: its temp file gave back %llu bytes of "
                           "tar, not the %llu written", (unsigned long long)got,
                           (unsigned long long)hashed);
    close(oldfd);
    char rel[160];
    snprintf(rel, sizeof rel, "tmp/%s", oldname);
    unlinkat(w->s->root_fd, rel, 0);
    if (rc < 0)
        w->failed = 1;
    return rc;
}

/* A frame header libzstd will not parse though it is a frame: one of zstd's
 * pre-1.0 formats, or a current frame with its reserved bit set. */
static int unsupported_frame(const unsigned char *fh, sbx_error *err)
{
    static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    return sbx_error_set(err, SBX_EUNSUPPORTED, "write layer: %s",
                         memcmp(fh, magic, 4) == 0 ? "a zstd frame header with a reserved bit "
                                                     "set"
                                                   : "a zstd frame of a pre-1.0 format");
}

/* At each frame's start, once its header is in.  Refused: frames of zstd's
 * pre-1.0 formats (libzstd still decodes them, without checksums or its
 * window limit; OCI's zstd is RFC 8878), frames that need a dictionary, and
 * windows over the limit (refused here, since the decoder skips its own
 * check for a small frame it decodes in one go).  Kept as sent while each
 * frame has zstd's content checksum; skippable frames hold no data.  Bytes
 * that are no frame at all are left to the decoder to refuse. */
static int judge_frame(sbx_layer_writer *w, const unsigned char *b, size_t n, sbx_error *err)
{
    size_t take = sizeof w->fh - w->nfh < n ? sizeof w->fh - w->nfh : n;
    memcpy(w->fh + w->nfh, b, take);
    w->nfh += take;
    ZSTD_frameHeader h;
    size_t r = ZSTD_getFrameHeader(&h, w->fh, w->nfh);
    if (!ZSTD_isError(r) && r > 0 && w->nfh < sizeof w->fh)
        return 0; /* more of the header in the next write */
    w->at_frame = false;
    if (ZSTD_isError(r) || r > 0) {
        if (!ZSTD_isFrame(w->fh, w->nfh))
            return 0;
        w->failed = 1;
        return unsupported_frame(w->fh, err);
    }
    if (h.frameType == ZSTD_skippableFrame)
        return 0;
    if (h.dictID != 0) {
        w->failed = 1;
        return sbx_error_set(err, SBX_EUNSUPPORTED, "write layer: a zstd frame that needs "
                             "dictionary %u", h.dictID);
    }
    if (h.windowSize > (1ull << ZIN_WINDOW_LOG))
        return window_err(w, err);
    return h.checksumFlag || !w->keep_stored ? 0 : recompress_kept(w, err);
}

/* ---- zstd kept unchecked: frames walked, not decoded ----------------------
 *
 * A deferred zstd stream is not decompressed: its frames are walked by their
 * headers (RFC 8878: a frame header; blocks, each behind a 3-byte header
 * giving its last flag, type and size; the content checksum) to judge each
 * frame as judge_frame does and to know that the stream ends at a frame's
 * end.  What the blocks hold is checked at the layer's first read: the
 * decoder, the frames' checksums, and the tar against the diff_id. */
enum { ZW_FRAME, ZW_BLOCK, ZW_BODY, ZW_SUM, ZW_SKIP };
#define ZW_BLOCK_MAX (128u << 10) /* RFC 8878's Block_Maximum_Size */

static int zw_corrupt(sbx_layer_writer *w, const char *why, sbx_error *err)
{
    w->failed = 1;
    return sbx_error_set(err, SBX_EDIGEST, "write layer: corrupt zstd data (%s)", why);
}

static int zstd_decode(sbx_layer_writer *w, const unsigned char *buf, size_t len,
                       sbx_error *err);

/* A deferred stream met a frame the store does not keep as sent (no content
 * checksum): from here on it is decoded and checked as if it had never been
 * deferred.  Every byte taken so far, this write's included, is in the temp
 * file once flushed; it is decoded from there (through a second fd: at the
 * frame, judge_frame recompresses the frames before it into a new temp file,
 * as for any such stream, and the rest follows), so nothing is downloaded
 * again. */
static int undefer(sbx_layer_writer *w, sbx_error *err)
{
    if (flush_kept(w, err) < 0)
        return err->code;
    uint64_t end = w->stored;
    int fd = dup(w->fd);
    size_t cap = 1u << 20;
    unsigned char *in = malloc(cap);
    int rc = fd < 0 ? sbx_store__io_err(w->s, err, errno, "write layer: reading back")
             : !in  ? sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory")
                    : 0;
    w->deferred = false;
    w->zin_total = w->good_end = 0;
    w->at_frame = true;
    w->nfh = 0;
    for (uint64_t off = 0; rc == 0 && off < end;) {
        ssize_t n = pread(fd, in, end - off < cap ? (size_t)(end - off) : cap, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = n < 0 ? sbx_store__io_err(w->s, err, errno, "write layer: reading back")
                       : sbx_error_set(err, SBX_EIO, "write layer: its temp file is short");
        else
            rc = zstd_decode(w, in, (size_t)n, err);
        off += n > 0 ? (uint64_t)n : 0;
    }
    if (fd >= 0)
        close(fd);
    free(in);
    if (rc < 0)
        w->failed = 1;
    return rc;
}

/* A whole frame header in w->fh: judged, and the walk set for its body
 * (1: the stream is decoded from now on, undefer). */
static int zw_header(sbx_layer_writer *w, const ZSTD_frameHeader *h, sbx_error *err)
{
    if (h->frameType == ZSTD_skippableFrame) {
        w->zw_state = ZW_SKIP;
        w->zw_left = h->frameContentSize;
        return 0;
    }
    if (h->dictID != 0) {
        w->failed = 1;
        return sbx_error_set(err, SBX_EUNSUPPORTED, "write layer: a zstd frame that needs "
                             "dictionary %u", h->dictID);
    }
    if (h->windowSize > (1ull << ZIN_WINDOW_LOG))
        return window_err(w, err);
    if (!h->checksumFlag) /* the store keeps frames with checksums only */
        return undefer(w, err) < 0 ? err->code : 1;
    w->zw_state = ZW_BLOCK;
    w->zw_nbh = 0;
    w->zw_bmax = h->windowSize < ZW_BLOCK_MAX ? (uint32_t)h->windowSize : ZW_BLOCK_MAX;
    return 0;
}

/* The 3-byte block header in w->zw_bh. */
static int zw_block(sbx_layer_writer *w, sbx_error *err)
{
    uint32_t v = w->zw_bh[0] | (uint32_t)w->zw_bh[1] << 8 | (uint32_t)w->zw_bh[2] << 16;
    unsigned type = (v >> 1) & 3;
    uint32_t size = v >> 3;
    if (type == 3)
        return zw_corrupt(w, "reserved block type", err);
    if (size > w->zw_bmax)
        return zw_corrupt(w, "block larger than its frame allows", err);
    w->zw_last = v & 1;
    w->zw_left = type == 1 ? 1 : size; /* an RLE block holds one byte */
    w->zw_state = ZW_BODY;
    return 0;
}

/* What follows a part that has been passed (zw_left reached 0). */
static void zw_passed(sbx_layer_writer *w)
{
    if (w->zw_state == ZW_BODY && !w->zw_last) {
        w->zw_state = ZW_BLOCK;
        w->zw_nbh = 0;
    } else if (w->zw_state == ZW_BODY && w->zw_sum) {
        w->zw_state = ZW_SUM;
        w->zw_left = 4;
    } else { /* the frame ended */
        w->zw_state = ZW_FRAME;
        w->nfh = 0;
        w->zw_frames++;
        w->good_end = w->zin_total;
    }
}

static int zwalk(sbx_layer_writer *w, const unsigned char *b, size_t n, sbx_error *err)
{
    size_t pos = 0;
    for (;;) {
        if (w->zw_state >= ZW_BODY && w->zw_left == 0) {
            zw_passed(w);
            continue;
        }
        if (pos == n)
            return 0;
        if (w->zw_state >= ZW_BODY) {
            size_t t = w->zw_left < n - pos ? (size_t)w->zw_left : n - pos;
            w->zw_left -= t;
            pos += t;
            w->zin_total += t;
            continue;
        }
        w->zin_total++;
        if (w->zw_state == ZW_BLOCK) {
            w->zw_bh[w->zw_nbh++] = b[pos++];
            if (w->zw_nbh == sizeof w->zw_bh && zw_block(w, err) < 0)
                return err->code;
            continue;
        }
        /* ZW_FRAME: a byte at a time, until the header is whole */
        if (w->nfh == sizeof w->fh)
            return zw_corrupt(w, "frame header too long", err);
        w->fh[w->nfh++] = b[pos++];
        ZSTD_frameHeader h;
        size_t r = ZSTD_getFrameHeader(&h, w->fh, w->nfh);
        if (ZSTD_isError(r) && w->nfh < 4)
            continue; /* the magic decides: another frame format, or none */
        if (ZSTD_isError(r) && ZSTD_isFrame(w->fh, w->nfh)) {
            w->failed = 1;
            return unsupported_frame(w->fh, err);
        }
        if (ZSTD_isError(r))
            return zw_corrupt(w, "not a zstd frame", err);
        if (r == 0) {
            w->zw_sum = h.checksumFlag;
            int hr = zw_header(w, &h, err);
            if (hr != 0)
                return hr < 0 ? hr : 0; /* 1: decoded from here on, this write included */
        }
    }
}

/* Gzip input: decompressed into dout, a piece at a time.  The decoder
 * returns with its output full (there may be more, even with no input
 * left) or its input taken. */
static int gz_write(sbx_layer_writer *w, const unsigned char *buf, size_t len, sbx_error *err)
{
    w->zin_total += len;
    size_t ipos = 0, opos, cap = ZSTD_DStreamOutSize();
    do {
        opos = 0;
        int r = sbx_store__gz_step(w->gz, buf, len, &ipos, w->dout, cap, &opos);
        if (r < 0) {
            w->failed = 1;
            return sbx_error_set(err, SBX_EDIGEST, "write layer: corrupt gzip data (%s)",
                                 sbx_store__gz_reason(r));
        }
        if (opos > 0 && emit_tar(w, w->dout, opos, err) < 0)
            return err->code;
    } while (ipos < len || opos == cap);
    return 0;
}

static int zin_write(sbx_layer_writer *w, const unsigned char *buf, size_t len, sbx_error *err)
{
    if (w->failed)
        return sbx_error_set(err, SBX_EIO, "write layer: an earlier write failed");
    if (w->zin_digest[0])
        return sbx_error_set(err, SBX_EINVAL, "write layer: the stream's digest was taken");
    sbx__sha256_update(w->zin_hash, buf, len);
    /* kept bytes go out in 128 KiB writes (the compressor's buffer, idle,
     * holds them), not in the caller's pieces (a registry's arrive 16 KiB at
     * a time) */
    size_t cap = w->outcap < KEPT_WRITE ? w->outcap : KEPT_WRITE;
    for (size_t off = 0; w->keep_stored && off < len;) {
        size_t n = cap - w->nkept < len - off ? cap - w->nkept : len - off;
        memcpy((unsigned char *)w->out + w->nkept, buf + off, n);
        w->nkept += n;
        off += n;
        if (w->nkept == cap && flush_kept(w, err) < 0)
            return err->code;
    }
    if (w->gz && w->deferred) {
        w->zin_total += len;
        return 0;
    }
    if (w->deferred)
        return zwalk(w, buf, len, err);
    if (w->gz)
        return gz_write(w, buf, len, err);
    return zstd_decode(w, buf, len, err);
}

/* zstd input: each frame judged at its start, decompressed into dout. */
static int zstd_decode(sbx_layer_writer *w, const unsigned char *buf, size_t len, sbx_error *err)
{
    ZSTD_inBuffer in = {buf, len, 0};
    while (in.pos < in.size) {
        if (w->at_frame && judge_frame(w, buf + in.pos, in.size - in.pos, err) < 0)
            return err->code;
        ZSTD_outBuffer out = {w->dout, ZSTD_DStreamOutSize(), 0};
        size_t before = in.pos;
        size_t r = ZSTD_decompressStream(w->dctx, &out, &in);
        if (ZSTD_isError(r))
            return zin_err(w, r, err);
        w->zin_total += in.pos - before;
        w->dret = r;
        if (r == 0) {
            w->at_frame = true;
            w->nfh = 0;
            w->good_end = w->zin_total;
        }
        if (out.pos > 0 && emit_tar(w, out.dst, out.pos, err) < 0)
            return err->code;
    }
    return 0;
}

/* End of the stream: give out what the decoder still holds; it must have
 * ended a frame. */
static int zin_finish(sbx_layer_writer *w, sbx_error *err)
{
    if (w->gz && w->deferred)
        return w->zin_total ? 0 : sbx_error_set(err, SBX_EDIGEST, "write layer: empty stream");
    if (w->deferred) /* at a frame's end, after at least one frame */
        return w->zw_state == ZW_FRAME && w->nfh == 0 && w->zw_frames > 0
                   ? 0
                   : sbx_error_set(err, SBX_EDIGEST, "write layer: the zstd stream is truncated");
    if (w->gz) {
        if (!sbx_store__gz_ended(w->gz) || w->zin_total == 0)
            return sbx_error_set(err, SBX_EDIGEST, "write layer: the gzip stream is truncated");
        return 0;
    }
    while (w->dret != 0) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        ZSTD_outBuffer out = {w->dout, ZSTD_DStreamOutSize(), 0};
        size_t r = ZSTD_decompressStream(w->dctx, &out, &in);
        if (ZSTD_isError(r))
            return zin_err(w, r, err);
        w->dret = r;
        if (out.pos == 0)
            break;
        if (emit_tar(w, out.dst, out.pos, err) < 0)
            return err->code;
    }
    if (w->dret != 0 || w->zin_total == 0)
        return sbx_error_set(err, SBX_EDIGEST, "write layer: the zstd stream is truncated");
    return 0;
}

int sbx_layer_writer_write(sbx_layer_writer *w, const void *buf, size_t len, sbx_error *err)
{
    if (w->zin)
        return zin_write(w, buf, len, err);
    return stage_tar(w, buf, len, err);
}

int sbx_layer_writer_compressed_input(sbx_layer_writer *w, sbx_layer_format fmt,
                                      sbx_layer_tar_fn on_tar, void *ud, sbx_error *err)
{
    if (fmt != SBX_LAYER_ZSTD && fmt != SBX_LAYER_GZIP)
        return sbx_error_set(err, SBX_EINVAL, "write layer: unknown format %d", (int)fmt);
    if (w->size || w->stored || w->zin)
        return sbx_error_set(err, SBX_EINVAL, "write layer: compressed input is chosen before "
                             "the first write");
    if (fmt == SBX_LAYER_GZIP ? !(w->gz = sbx_store__gz_new()) : !(w->dctx = zin_dctx()))
        return sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory");
    if (!(w->dout = malloc(ZSTD_DStreamOutSize())))
        return sbx_error_set(err, SBX_ENOMEM, "write layer: out of memory");
    if (sbx__sha256_new(&w->zin_hash, err) < 0)
        return err->code;
    w->zin = w->keep_stored = true;
    w->at_frame = fmt == SBX_LAYER_ZSTD;
    w->fmt = fmt;
    w->on_tar = on_tar;
    w->tar_ud = ud;
    return 0;
}

int sbx_layer_sniff(const unsigned char *h, size_t n)
{
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        return SBX_LAYER_GZIP;
    if (n < 4)
        return -1;
    /* a zstd frame (magic 0xFD2FB528, little-endian), or a skippable one
     * (0x184D2A50 to 0x184D2A5F) */
    if ((h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd) ||
        ((h[0] & 0xF0) == 0x50 && h[1] == 0x2a && h[2] == 0x4d && h[3] == 0x18))
        return SBX_LAYER_ZSTD;
    return -1;
}

int sbx_layer_writer_defer_check(sbx_layer_writer *w, sbx_error *err)
{
    if (!w->zin || w->on_tar || w->zin_total)
        return sbx_error_set(err, SBX_EINVAL, "write layer: only a compressed stream, before "
                             "its first write and with no tar consumer, is kept unchecked");
    if (!w->expected[0])
        return sbx_error_set(err, SBX_EINVAL, "write layer: a layer kept unchecked needs the "
                             "diff_id its image claims");
    w->deferred = true;
    return 0;
}

bool sbx_layer_writer_kept(const sbx_layer_writer *w) { return w->zin && w->keep_stored; }



void sbx_store__layer_writer_replace(sbx_layer_writer *w) { w->replace = true; }

int sbx_layer_writer_input_digest(sbx_layer_writer *w, char out[SBX_DIGEST_BUFSZ],
                                  sbx_error *err)
{
    if (!w->zin)
        return sbx_error_set(err, SBX_EINVAL, "write layer: no compressed input to digest");
    if (!w->zin_digest[0])
        sbx__sha256_final(w->zin_hash, w->zin_digest);
    memcpy(out, w->zin_digest, SBX_DIGEST_BUFSZ);
    return 0;
}

void sbx_layer_writer_abort(sbx_layer_writer *w)
{
    if (!w)
        return;
    hasher_stop(&w->hs);
    free(w->stage[0]);
    free(w->stage[1]);
    if (w->fd >= 0) {
        close(w->fd);
        char rel[160];
        snprintf(rel, sizeof rel, "tmp/%s", w->tmpname);
        unlinkat(w->s->root_fd, rel, 0);
    }
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeDCtx(w->dctx);
    sbx_store__gz_free(w->gz);
    free(w->dout);
    sbx__sha256_free(w->zin_hash);
    sbx__sha256_free(w->diff);
    sbx__sha256_free(w->zhash);
    free(w->out);
    free(w);
}

typedef struct {
    sbx_layer_writer *w;
    const char *diff_id;
    const char *zdigest;
} layer_insert_ctx;

/* Under the commit's lock, with a record there: whether this write replaces
 * it.  A layer stored again in another format (layer_to_zstd) does; so does
 * a checked write over an unchecked record of another blob (which may not be
 * this layer at all). */
static bool layer_wants_replace(sbx_store *s, void *ud)
{
    layer_insert_ctx *c = ud;
    sbx_layer_info have;
    sbx_error ignore = SBX_ERROR_INIT;
    return c->w->replace ||
           (!c->w->deferred && sbx_store_layer_info(s, c->diff_id, &have, &ignore) == 0 &&
            !have.verified && strcmp(have.stored_digest, c->zdigest) != 0);
}

/* A record exists and its file is kept (present 1).  A checked record
 * stands.  An unchecked one of the same blob stands too, and becomes checked
 * when this write checked it.  An unchecked one of another blob, for an
 * unchecked write: SBX_EBUSY (neither is known to be the layer; the caller
 * decides, sbx_store_layer_trusted). */
static int layer_keep(sbx_store *s, layer_insert_ctx *c, sbx_error *err)
{
    sbx_layer_info have;
    if (sbx_store_layer_info(s, c->diff_id, &have, err) < 0)
        return err->code;
    if (have.verified)
        return 0;
    if (strcmp(have.stored_digest, c->zdigest) != 0) {
        sbx_error_set(err, SBX_EBUSY, "another blob of layer '%s' was stored unchecked at the "
                      "same time; store it again", c->diff_id);
        sbx_error_where(err, "%s", c->diff_id);
        return SBX_EBUSY;
    }
    return c->w->deferred ? 0
                          : sbx_store__layer_mark_verified(s, c->diff_id, have.stored_digest,
                                                           c->zdigest, c->w->size,
                                                           have.stored_size, err);
}

static int layer_insert(sbx_store *s, void *ud, int present, sbx_error *err)
{
    layer_insert_ctx *c = ud;
    if (present == 1)
        return layer_keep(s, c, err);
    _cleanup_stmt_ sqlite3_stmt *st = NULL; /* present 2: the record of the replaced file */
    if (sbx_store__prepare(s, &st,
                           present ? "INSERT OR REPLACE INTO layers(diff_id, size, stored_size,"
                                     " zstd_digest, created, format, verified)"
                                     " VALUES(?, ?, ?, ?, ?, ?, ?)"
                                   : "INSERT INTO layers(diff_id, size, stored_size, zstd_digest,"
                                     " created, format, verified) VALUES(?, ?, ?, ?, ?, ?, ?)",
                           err) < 0)
        return err->code;
    sqlite3_bind_int(st, 7, !c->w->deferred);
    sqlite3_bind_text(st, 1, c->diff_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)c->w->size);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->w->stored);
    sqlite3_bind_text(st, 4, c->zdigest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, sbx__now_unix());
    sqlite3_bind_int(st, 6, c->w->keep_stored ? (int)c->w->fmt : SBX_LAYER_ZSTD);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "record layer");
    return 0;
}

/* Close the zstd stream the writer made. */
static int end_zstd(sbx_layer_writer *w, sbx_error *err)
{
    ZSTD_inBuffer ib = {NULL, 0, 0};
    size_t left;
    do {
        ZSTD_outBuffer ob = {w->out, w->outcap, 0};
        left = ZSTD_compressStream2(w->cctx, &ob, &ib, ZSTD_e_end);
        if (ZSTD_isError(left))
            return zstd_err(err, left, "write layer");
        if (drain(w, &ob, err) < 0)
            return err->code;
    } while (left != 0);
    return 0;
}

int sbx_layer_writer_commit(sbx_layer_writer *w, char diff_id_out[SBX_DIGEST_BUFSZ],
                            sbx_error *err)
{
    sbx_store *s = w->s;
    char diff_id[SBX_DIGEST_BUFSZ], zdigest[SBX_DIGEST_BUFSZ];
    if (w->failed) {
        sbx_error_set(err, SBX_EIO, "store layer: an earlier write failed; nothing stored");
        sbx_layer_writer_abort(w);
        return SBX_EIO;
    }
    if ((w->zin && (zin_finish(w, err) < 0 || flush_kept(w, err) < 0)) ||
        flush_stage(w, err) < 0) {
        sbx_layer_writer_abort(w);
        return err->code;
    }
    if (!w->keep_stored && end_zstd(w, err) < 0) {
        sbx_layer_writer_abort(w);
        return err->code;
    }
    hasher_wait(&w->hs);
    sbx__sha256_final(w->diff, diff_id);
    if (w->zin && w->keep_stored) /* the file is the stream */
        (void)sbx_layer_writer_input_digest(w, zdigest, err); /* cannot fail: zin */
    else
        sbx__sha256_final(w->zhash, zdigest);
    if (w->deferred) /* what the image claims, checked at the first read */
        memcpy(diff_id, w->expected, sizeof diff_id);
    if (w->expected[0] && strcmp(diff_id, w->expected) != 0) {
        sbx_error_set(err, SBX_EDIGEST,
                      "write layer: diff_id mismatch: expected '%s', got '%s'", w->expected,
                      diff_id);
        sbx_error_where(err, "%s", w->expected);
        sbx_layer_writer_abort(w);
        return SBX_EDIGEST;
    }
    struct stat st;
    if (fstat(w->fd, &st) < 0 || (uint64_t)st.st_size != w->stored) {
        sbx_error_set(err, SBX_EIO, "store layer: the temp file is not what was written");
        sbx_layer_writer_abort(w);
        return SBX_EIO;
    }
    if (fsync(w->fd) < 0) {
        int rc = sbx_store__io_err(s, err, errno, "sync layer");
        sbx_layer_writer_abort(w);
        return rc;
    }
    /* Open through the commit: its flock keeps the reaper away. */
    layer_insert_ctx ctx = {w, diff_id, zdigest};
    sbx_layer_format fmt = w->keep_stored ? w->fmt : SBX_LAYER_ZSTD;
    int rc = sbx_store__commit_object(s, SBX_OBJ_LAYER, fmt, layer_wants_replace, w->tmpname,
                                      diff_id, layer_insert, &ctx, err);
    close(w->fd);
    w->fd = -1;
    sbx_layer_writer_abort(w);
    if (rc < 0)
        return sbx_error_wrap(err, "store layer '%s'", diff_id);
    if (diff_id_out)
        memcpy(diff_id_out, diff_id, SBX_DIGEST_BUFSZ);
    return 0;
}

int sbx_store_has_layer(sbx_store *s, const char *diff_id, sbx_error *err)
{
    return sbx_store__has(s, SBX_OBJ_LAYER, diff_id, err);
}

/* ---- sources: compressed forms seen for a layer ----------------------------- */

int sbx_store_layer_add_source(sbx_store *s, const char *diff_id, const char *blob_digest,
                               const char *media_type, uint64_t size, sbx_error *err)
{
    if (sbx__digest_parse(NULL, diff_id, err) < 0 || sbx__digest_parse(NULL, blob_digest, err) < 0)
        return sbx_error_wrap(err, "record layer source");
    if (sbx_store__lock(s, 0, err) < 0)
        return err->code;
    int rc = sbx_store__begin(s, err);
    if (rc == 0) {
        int have = sbx_store__exists(s, "SELECT 1 FROM layers WHERE diff_id=?", diff_id, err);
        if (have == 0) {
            sbx_error_set(err, SBX_ENOTFOUND, "record layer source '%s': layer '%s' is not in "
                          "the store", blob_digest, diff_id);
            sbx_error_where(err, "%s", diff_id);
        }
        rc = have == 1 ? 0 : err->code;
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = sbx_store__prepare(s, &st,
                                "INSERT OR REPLACE INTO layer_sources(blob_digest, diff_id,"
                                " media_type, size) VALUES(?, ?, ?, ?)",
                                err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, blob_digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, diff_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, media_type, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sbx_store__sql_err(s, err, "record layer source");
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    sbx_store__unlock(s);
    return rc;
}

int sbx_store_layer_by_source(sbx_store *s, const char *blob_digest,
                              char diff_id_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    if (sbx__digest_parse(NULL, blob_digest, err) < 0)
        return sbx_error_wrap(err, "look up layer source");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "SELECT ls.diff_id FROM layer_sources ls JOIN layers l"
                           " ON l.diff_id = ls.diff_id WHERE ls.blob_digest=? AND l.verified=1",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, blob_digest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(diff_id_out, SBX_DIGEST_BUFSZ, "%s", (const char *)sqlite3_column_text(st, 0));
        return 0;
    }
    if (rc != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "look up layer source");
    sbx_error_set(err, SBX_ENOTFOUND, "look up layer source '%s': no stored layer has it",
                  blob_digest);
    sbx_error_where(err, "%s", blob_digest);
    return SBX_ENOTFOUND;
}

static int layer_not_found(sbx_store *s, const char *what, const char *diff_id, sbx_error *err)
{
    sbx_error_set(err, SBX_ENOTFOUND, "%s '%s': not in store '%s'", what, diff_id, s->root);
    sbx_error_where(err, "%s", diff_id);
    return SBX_ENOTFOUND;
}

int sbx_store_layer_info(sbx_store *s, const char *diff_id, sbx_layer_info *out, sbx_error *err)
{
    if (sbx__digest_parse(NULL, diff_id, err) < 0)
        return sbx_error_wrap(err, "get layer info");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "SELECT size, stored_size, zstd_digest, format, verified FROM layers"
                           " WHERE diff_id=?",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, diff_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return layer_not_found(s, "get layer info", diff_id, err);
    if (rc != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "get layer info");
    memset(out, 0, sizeof *out);
    snprintf(out->diff_id, sizeof out->diff_id, "%s", diff_id);
    out->size = (uint64_t)sqlite3_column_int64(st, 0);
    out->stored_size = (uint64_t)sqlite3_column_int64(st, 1);
    snprintf(out->stored_digest, sizeof out->stored_digest, "%s",
             (const char *)sqlite3_column_text(st, 2));
    out->format = sqlite3_column_int(st, 3) == SBX_LAYER_GZIP ? SBX_LAYER_GZIP : SBX_LAYER_ZSTD;
    out->verified = sqlite3_column_int(st, 4) != 0;
    return 0;
}

int sbx_store__layer_mark_verified(sbx_store *s, const char *diff_id, const char *was,
                                   const char *stored_digest, uint64_t size, uint64_t stored_size,
                                   sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "UPDATE layers SET verified=1, size=?, zstd_digest=?, stored_size=?"
                           " WHERE diff_id=? AND verified=0 AND zstd_digest=?",
                           err) < 0)
        return err->code;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
    sqlite3_bind_text(st, 2, stored_digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)stored_size);
    sqlite3_bind_text(st, 4, diff_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, was, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "record layer as checked");
    return 0;
}

int sbx_store__layer_lookup(sbx_store *s, const char *diff_id, sbx_layer_format *fmt,
                            sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "SELECT format FROM layers WHERE diff_id=?", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, diff_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "query metadata");
    if (fmt)
        *fmt = sqlite3_column_int(st, 0) == SBX_LAYER_GZIP ? SBX_LAYER_GZIP : SBX_LAYER_ZSTD;
    return 1;
}

/* The stored file's path, relative to the root, from the layer's record. */
static int layer_relpath(sbx_store *s, const char *what, const char *diff_id, char *rel,
                         size_t len, sbx_layer_info *info, sbx_error *err)
{
    if (sbx_store_layer_info(s, diff_id, info, err) < 0)
        return err->code == SBX_ENOTFOUND ? layer_not_found(s, what, diff_id, err)
                                          : sbx_error_wrap(err, "%s", what);
    sbx_store__obj_relpath(rel, len, SBX_OBJ_LAYER, diff_id + 7, info->format);
    return 0;
}

int sbx_store_layer_path(sbx_store *s, const char *diff_id, char *buf, size_t len,
                         sbx_error *err)
{
    if (sbx__digest_parse(NULL, diff_id, err) < 0)
        return sbx_error_wrap(err, "find layer");
    char rel[128];
    sbx_layer_info info;
    if (layer_relpath(s, "find layer", diff_id, rel, sizeof rel, &info, err) < 0)
        return err->code;
    if (faccessat(s->root_fd, rel, F_OK, 0) < 0)
        return layer_not_found(s, "find layer", diff_id, err);
    if ((size_t)snprintf(buf, len, "%s/%s", s->root, rel) >= len)
        return sbx_error_set(err, SBX_ELIMIT, "find layer '%s': path too long", diff_id);
    return 0;
}

int sbx_store_layer_unpacked_path(sbx_store *s, const char *diff_id, char *buf, size_t len,
                                  sbx_error *err)
{
    const char *hex;
    if (sbx__digest_parse(&hex, diff_id, err) < 0)
        return sbx_error_wrap(err, "find unpacked layer");
    if ((size_t)snprintf(buf, len, "%s/unpacked/%s", s->root, hex) >= len)
        return sbx_error_set(err, SBX_ELIMIT, "find unpacked layer '%s': path too long",
                             diff_id);
    return 0;
}

/* ---- reading --------------------------------------------------------------- */

int sbx_store_layer_open(sbx_layer_reader **out, sbx_store *s, const char *diff_id,
                         sbx_error *err)
{
    *out = NULL;
    if (sbx__digest_parse(NULL, diff_id, err) < 0)
        return sbx_error_wrap(err, "open layer");
    char rel[128];
    sbx_layer_info info;
    if (layer_relpath(s, "open layer", diff_id, rel, sizeof rel, &info, err) < 0)
        return err->code;
    int fd = openat(s->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? layer_not_found(s, "open layer", diff_id, err)
                               : sbx_store__io_err(s, err, errno, "open layer");
    sbx_layer_reader *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return sbx_error_set(err, SBX_ENOMEM, "open layer: out of memory");
    }
    r->fd = fd;
    r->incap = ZSTD_DStreamInSize();
    r->in = malloc(r->incap);
    if (info.format == SBX_LAYER_GZIP)
        r->gz = sbx_store__gz_new();
    else
        r->dctx = ZSTD_createDCtx();
    r->ib = (ZSTD_inBuffer){r->in, 0, 0};
    r->last = 1;
    snprintf(r->diff_id, sizeof r->diff_id, "%s", diff_id);
    r->want = info.size;
    r->s = s;
    if (!info.verified) {
        r->check = true;
        r->want = sbx__expansion_cap(info.stored_size, NULL);
        r->stored_size = info.stored_size;
        snprintf(r->was, sizeof r->was, "%s", info.stored_digest);
        if (sbx__sha256_new(&r->tarh, err) < 0 || sbx__sha256_new(&r->fileh, err) < 0) {
            sbx_layer_reader_free(r);
            return err->code;
        }
    }
    if (!r->in || (!r->dctx && !r->gz)) {
        sbx_layer_reader_free(r);
        return sbx_error_set(err, SBX_ENOMEM, "open layer: out of memory");
    }
    *out = r;
    return 0;
}

static int reader_refill(sbx_layer_reader *r, sbx_error *err)
{
    if (r->ib.pos < r->ib.size || r->eof)
        return 0;
    ssize_t n;
    do
        n = read(r->fd, r->in, r->incap);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "read layer '%s'", r->diff_id);
    r->ib = (ZSTD_inBuffer){r->in, (size_t)n, 0};
    r->eof = n == 0;
    if (r->check) {
        sbx__sha256_update(r->fileh, r->in, (size_t)n);
        r->file_bytes += (uint64_t)n;
    }
    return 0;
}

static int reader_damaged(sbx_layer_reader *r, const char *why, sbx_error *err)
{
    sbx_error_set(err, SBX_EDIGEST, "read layer '%s': stored file is damaged (%s); run "
                  "'sbx-image fsck'", r->diff_id, why);
    sbx_error_where(err, "%s", r->diff_id);
    return SBX_EDIGEST;
}

/* At the end of the file, after the last frame or member ended (done) or
 * not: a file cut at a frame's or member's end is still valid zstd or gzip,
 * so the tar's recorded size decides. */
static int reader_end(sbx_layer_reader *r, bool done, sbx_error *err)
{
    if (r->check && done) { /* no record of the size: the diff_id decides */
        if (r->ended)
            return 0;
        r->ended = true;
        char got[SBX_DIGEST_BUFSZ];
        sbx__sha256_final(r->tarh, got);
        if (strcmp(got, r->diff_id) != 0) {
            sbx_error_set(err, SBX_EDIGEST, "read layer '%s': its tar hashes to '%s': the "
                          "registry blob stored for it (unchecked, as pulled) is not this "
                          "layer, so the image that brought it is damaged", r->diff_id, got);
            sbx_error_where(err, "%s", r->diff_id);
            return SBX_EDIGEST;
        }
        r->checked = true;
        return 0;
    }
    if (done && r->produced == r->want)
        return 0;
    if (done)
        sbx_error_set(err, SBX_EDIGEST, "read layer '%s': stored file is truncated (%llu of "
                      "%llu bytes); run 'sbx-image fsck'", r->diff_id,
                      (unsigned long long)r->produced, (unsigned long long)r->want);
    else
        sbx_error_set(err, SBX_EDIGEST, "read layer '%s': stored file is truncated; run "
                      "'sbx-image fsck'", r->diff_id);
    sbx_error_where(err, "%s", r->diff_id);
    return SBX_EDIGEST;
}

/* n bytes of tar out, no more than the record says the layer has: a file
 * that goes on (a member or frame appended) is damaged, said before any of
 * the excess is handed out. */
static int reader_out(sbx_layer_reader *r, const void *buf, size_t n, size_t *nread,
                      sbx_error *err)
{
    if (n > r->want - r->produced && r->check) {
        sbx_error_set(err, SBX_ELIMIT, "read layer '%s': expands beyond %llu bytes from %llu "
                      "compressed (a decompression bomb?  SBX_MAX_EXPANSION, "
                      "SBX_EXPANSION_FLOOR and SBX_MAX_LAYER_BYTES set the limit)", r->diff_id,
                      (unsigned long long)r->want, (unsigned long long)r->stored_size);
        sbx_error_where(err, "%s", r->diff_id);
        return SBX_ELIMIT;
    }
    if (n > r->want - r->produced)
        return reader_damaged(r, "longer than its record says", err);
    if (r->check)
        sbx__sha256_update(r->tarh, buf, n);
    *nread = n;
    r->produced += n;
    return 0;
}

static int gz_read(sbx_layer_reader *r, void *buf, size_t len, size_t *nread, sbx_error *err)
{
    size_t opos = 0;
    while (opos == 0) {
        if (reader_refill(r, err) < 0)
            return err->code;
        int zr = sbx_store__gz_step(r->gz, r->in, r->ib.size, &r->ib.pos, buf, len, &opos);
        if (zr < 0)
            return reader_damaged(r, sbx_store__gz_reason(zr), err);
        if (opos == 0 && r->eof && r->ib.pos == r->ib.size) {
            if (reader_end(r, sbx_store__gz_ended(r->gz), err) < 0)
                return err->code;
            break;
        }
    }
    return reader_out(r, buf, opos, nread, err);
}

int sbx_layer_reader_read(sbx_layer_reader *r, void *buf, size_t len, size_t *nread,
                          sbx_error *err)
{
    *nread = 0;
    if (len == 0)
        return 0;
    if (r->gz)
        return gz_read(r, buf, len, nread, err);
    ZSTD_outBuffer ob = {buf, len, 0};
    for (;;) {
        if (reader_refill(r, err) < 0)
            return err->code;
        if (r->eof && r->ib.pos == r->ib.size && r->last == 0) {
            if (reader_end(r, true, err) < 0)
                return err->code;
            break; /* end of the last frame */
        }
        size_t inpos = r->ib.pos;
        size_t zr = ZSTD_decompressStream(r->dctx, &ob, &r->ib);
        if (ZSTD_isError(zr))
            return reader_damaged(r, ZSTD_getErrorName(zr), err);
        r->last = zr;
        if (ob.pos > 0)
            break;
        if (r->eof && r->ib.pos == inpos)
            return reader_end(r, false, err);
    }
    return reader_out(r, buf, ob.pos, nread, err);
}

bool sbx_layer_reader_checks(const sbx_layer_reader *r) { return r->check; }

/* After a read to the end of an unchecked layer that gave its diff_id. */
static void reader_record_check(sbx_layer_reader *r)
{
    char digest[SBX_DIGEST_BUFSZ];
    sbx__sha256_final(r->fileh, digest);
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store__lock(r->s, 0, &e) < 0)
        return; /* checked again next time */
    if (sbx_store__begin(r->s, &e) == 0 &&
        sbx_store__layer_mark_verified(r->s, r->diff_id, r->was, digest, r->produced,
                                       r->file_bytes, &e) == 0)
        sbx_store__commit(r->s, &e);
    sbx_store__rollback(r->s);
    sbx_store__unlock(r->s);
}

void sbx_layer_reader_free(sbx_layer_reader *r)
{
    if (!r)
        return;
    if (r->checked)
        reader_record_check(r);
    sbx__sha256_free(r->tarh);
    sbx__sha256_free(r->fileh);
    if (r->fd >= 0)
        close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    sbx_store__gz_free(r->gz);
    free(r->in);
    free(r);
}

/* ---- hashing a stored file (fsck) ------------------------------------------ */

/* A layer's tar past max_size (when not 0): SBX_ELIMIT. */
static int over_max(const sbx_store__hash_result *out, uint64_t max_size, sbx_error *err)
{
    if (!max_size || out->size <= max_size)
        return 0;
    return sbx_error_set(err, SBX_ELIMIT, "expands beyond %llu bytes from %llu compressed (a "
                         "decompression bomb?)", (unsigned long long)max_size,
                         (unsigned long long)out->stored_size);
}

/* A gzip layer's file: its bytes and, decompressed, its tar. */
static int hash_gzip(sbx_store *s, int fd, uint64_t max_size, sbx_store__hash_result *out,
                     sbx_error *err)
{
    _cleanup_sha256_ sbx__sha256 *h = NULL, *z = NULL;
    if (sbx__sha256_new(&h, err) < 0 || sbx__sha256_new(&z, err) < 0)
        return err->code;
    size_t cap = 1u << 20, ocap = 1u << 17;
    _cleanup_free_ unsigned char *in = malloc(cap);
    _cleanup_free_ unsigned char *ob = malloc(ocap);
    sbx_store__gz *g = sbx_store__gz_new();
    int rc = !in || !ob || !g ? sbx_error_set(err, SBX_ENOMEM, "hash file: out of memory") : 0;
    while (rc == 0) {
        ssize_t n = read(fd, in, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = sbx_store__io_err(s, err, errno, "read");
        if (n <= 0)
            break;
        out->stored_size += (uint64_t)n;
        sbx__sha256_update(z, in, (size_t)n);
        size_t ipos = 0, opos;
        do {
            opos = 0;
            int zr = sbx_store__gz_step(g, in, (size_t)n, &ipos, ob, ocap, &opos);
            if (zr < 0) {
                rc = sbx_error_set(err, SBX_EDIGEST, "decompress: %s", sbx_store__gz_reason(zr));
                break;
            }
            sbx__sha256_update(h, ob, opos);
            out->size += opos;
            if ((rc = over_max(out, max_size, err)) < 0)
                break;
        } while (ipos < (size_t)n || opos == ocap);
    }
    if (rc == 0 && !sbx_store__gz_ended(g))
        rc = sbx_error_set(err, SBX_EDIGEST, "decompress: truncated gzip stream");
    sbx_store__gz_free(g);
    if (rc < 0)
        return rc;
    sbx__sha256_final(h, out->digest);
    sbx__sha256_final(z, out->stored_digest);
    return 0;
}

int sbx_store__hash_file(sbx_store *s, sbx_obj_kind kind, sbx_layer_format fmt, int fd,
                         uint64_t max_size, sbx_store__hash_result *out, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (kind == SBX_OBJ_LAYER && fmt == SBX_LAYER_GZIP)
        return hash_gzip(s, fd, max_size, out, err);
    _cleanup_sha256_ sbx__sha256 *h = NULL, *z = NULL;
    if (sbx__sha256_new(&h, err) < 0 || sbx__sha256_new(&z, err) < 0)
        return err->code;
    size_t cap = 1 << 20;
    _cleanup_free_ char *in = malloc(cap);
    _cleanup_free_ char *ob = malloc(kind == SBX_OBJ_LAYER ? ZSTD_DStreamOutSize() : 1);
    ZSTD_DCtx *d = kind == SBX_OBJ_LAYER ? ZSTD_createDCtx() : NULL;
    if (!in || !ob || (kind == SBX_OBJ_LAYER && !d)) {
        ZSTD_freeDCtx(d);
        return sbx_error_set(err, SBX_ENOMEM, "hash file: out of memory");
    }
    int rc = 0;
    size_t last = kind == SBX_OBJ_LAYER ? 1 : 0;
    for (;;) {
        ssize_t n = read(fd, in, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = sbx_store__io_err(s, err, errno, "read");
            break;
        }
        if (n == 0)
            break;
        out->stored_size += (uint64_t)n;
        if (kind == SBX_OBJ_BLOB) {
            sbx__sha256_update(h, in, (size_t)n);
            out->size += (uint64_t)n;
            continue;
        }
        sbx__sha256_update(z, in, (size_t)n);
        ZSTD_inBuffer ib = {in, (size_t)n, 0};
        ZSTD_outBuffer o;
        do {
            o = (ZSTD_outBuffer){ob, ZSTD_DStreamOutSize(), 0};
            last = ZSTD_decompressStream(d, &o, &ib);
            if (ZSTD_isError(last)) {
                rc = sbx_error_set(err, SBX_EDIGEST, "decompress: %s", ZSTD_getErrorName(last));
                break;
            }
            sbx__sha256_update(h, ob, o.pos);
            out->size += o.pos;
            if ((rc = over_max(out, max_size, err)) < 0)
                break;
            /* A full output buffer may hide more output, unless the frame
             * just ended (last == 0): asking again then starts a next frame
             * and returns its header hint, which reads as truncation. */
        } while (ib.pos < ib.size || (o.pos == o.size && last != 0));
        if (rc < 0)
            break;
    }
    ZSTD_freeDCtx(d);
    if (rc == 0 && last != 0)
        rc = sbx_error_set(err, SBX_EDIGEST, "decompress: truncated zstd stream");
    if (rc < 0)
        return rc;
    sbx__sha256_final(h, out->digest);
    if (kind == SBX_OBJ_LAYER)
        sbx__sha256_final(z, out->stored_digest);
    return 0;
}
