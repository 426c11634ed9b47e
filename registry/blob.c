/* Streamed layer download:
 *
 *   curl write callback -> gzip / zstd / none, chosen by the stream's magic
 *                          bytes (as containerd does)
 *                       -> sbx_layer_writer: a gzip or zstd blob goes to it as
 *                          it is; the writer hashes it (the blob digest,
 *                          sbx_layer_writer_input_digest), decompresses it,
 *                          hashes the tar (diff_id) and keeps the blob's bytes
 *                          as the stored file rather than compressing the tar
 *                          again.  A plain tar is hashed here and compressed
 *                          by the writer.
 *                       -> and the options' layer tap, when set (pull --unpack:
 *                          the tar from the writer, extracted into the
 *                          unpacked-layer cache, told to keep it only once all
 *                          is verified)
 *
 * Without a tap, a gzip or zstd blob is kept without being decompressed at
 * all (sbx_layer_writer_defer_check; zstd frames walked by their headers):
 * its digest is checked here, its tar against the diff_id at the layer's
 * first read (unpack, mount, push, export, fsck).  A zstd blob with a frame
 * that has no content checksum is decompressed and checked after all, by the
 * writer, from what it took so far (the store compresses such frames
 * itself).  Decompressing and hashing the tar were most of a pull's
 * CPU, for a check every use of the layer makes anyway.  When another blob
 * was stored unchecked for the same diff_id, this one is checked now and
 * replaces it (no image's claim decides what another image's layer holds).
 *
 * Nothing is committed until the whole blob has arrived, its size and digest
 * match the descriptor, and the decompressed stream ended cleanly; the
 * writer's commit then checks the diff_id.  Any mismatch aborts the writer, so
 * a wrong digest never reaches the store.  Memory is bounded by fixed buffers
 * and the zstd window limit, whatever the layer size. */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "registry_internal.h"

typedef struct layer_pipe {
    sbx_store *store;
    const sbx_descriptor *desc;
    const char *diff_id;
    const char *pid; /* progress id */
    sbx_ctx *ctx;
    sbx_layer_writer *w;
    sbx__sha256 *h;
    uint64_t nbytes;
    sbx_compression comp; /* decided from the magic bytes */
    unsigned char head[4];
    size_t nhead;
    uint64_t last_emit_ns;
    uint64_t tar_bytes, tar_max; /* uncompressed so far; the expansion cap */
    sbx_error *err;
    bool tar_failed; /* on_tar refused (its message names the layer already) */
    bool check;      /* decompress and check the diff_id now, even without a tap */
    bool deferred;   /* kept unchecked: the first read checks it */
    const sbx_layer_tap *tap;
    void *tapped; /* the tap's handle for this attempt */
} layer_pipe;

static void untap(layer_pipe *p)
{
    if (p->tapped) {
        sbx_error e = SBX_ERROR_INIT;
        p->tap->end(p->tapped, false, &e);
        p->tapped = NULL;
    }
}

/* Decompression bombs: the cap is sbx__expansion_cap (also load's). */
static int64_t max_layer_bytes(const sbx_ctx *ctx)
{
    return sbx__env_int("SBX_MAX_LAYER_BYTES", 64ll << 30, 1, INT64_MAX, ctx);
}

static int pipe_start(layer_pipe *p, sbx_error *err)
{
    p->nbytes = 0;
    p->tar_bytes = 0;
    p->nhead = 0;
    p->comp = SBX_COMP_AUTO;
    sbx__sha256_free(p->h);
    p->h = NULL;
    int rc = sbx__sha256_new(&p->h, err);
    if (rc < 0)
        return rc;
    sbx_layer_writer_abort(p->w);
    p->w = NULL;
    untap(p); /* starting over: the tap starts over too */
    if ((rc = sbx_store_layer_begin(&p->w, p->store, p->diff_id, err)) < 0)
        return rc;
    if (p->tap) {
        sbx_error_clear(err);
        p->tapped = p->tap->begin(p->tap->ud, p->store, p->diff_id, p->ctx, err);
        if (!p->tapped && err->code)
            return err->code;
    }
    return 0;
}

/* Each piece of the tar: a plain blob's, or the writer's decompressed. */
static int on_tar(void *ud, const void *buf, size_t n, sbx_error *err)
{
    layer_pipe *p = ud;
    if (n == 0)
        return 0;
    p->tar_bytes += n;
    p->tar_failed = true;
    if (p->tar_bytes > p->tar_max)
        return sbx_error_set(err, SBX_ELIMIT,
                             "layer '%s' expands beyond %llu bytes from %llu compressed (a "
                             "decompression bomb?  SBX_MAX_EXPANSION, SBX_EXPANSION_FLOOR and "
                             "SBX_MAX_LAYER_BYTES set the limit)", p->desc->digest,
                             (unsigned long long)p->tar_max, (unsigned long long)p->desc->size);
    int rc = p->tapped ? p->tap->write(p->tapped, buf, n, err) : 0;
    p->tar_failed = rc < 0;
    return rc;
}

static int emit_tar(layer_pipe *p, const void *buf, size_t n)
{
    int rc = on_tar(p, buf, n, p->err);
    return rc < 0 ? rc : sbx_layer_writer_write(p->w, buf, n, p->err);
}

static bool compressed(const layer_pipe *p)
{
    return p->comp == SBX_COMP_GZIP || p->comp == SBX_COMP_ZSTD;
}

static int feed(layer_pipe *p, const unsigned char *buf, size_t len)
{
    if (!compressed(p))
        return emit_tar(p, buf, len);
    /* the writer decompresses it */
    if (sbx_layer_writer_write(p->w, buf, len, p->err) < 0)
        return p->tar_failed ? p->err->code
                             : sbx_error_wrap(p->err, "layer '%s'", p->desc->digest);
    return 0;
}

/* Choose by the magic bytes: a compressed blob goes to the writer as it is. */
static int decide(layer_pipe *p)
{
    int fmt = sbx_layer_sniff(p->head, p->nhead);
    p->comp = fmt == SBX_LAYER_GZIP ? SBX_COMP_GZIP
              : fmt == SBX_LAYER_ZSTD ? SBX_COMP_ZSTD
                                      : SBX_COMP_NONE;
    if (fmt < 0)
        return 0;
    p->deferred = !p->tap && !p->check && p->diff_id;
    if (p->deferred)
        return sbx_layer_writer_compressed_input(p->w, (sbx_layer_format)fmt, NULL, NULL,
                                                 p->err) < 0
                   ? p->err->code
                   : sbx_layer_writer_defer_check(p->w, p->err);
    return sbx_layer_writer_compressed_input(p->w, (sbx_layer_format)fmt, on_tar, p, p->err);
}

static int pipe_write(void *ud, const void *vbuf, size_t len)
{
    layer_pipe *p = ud;
    const unsigned char *buf = vbuf;
    if (p->nbytes + len > p->desc->size) {
        sbx_error_set(p->err, SBX_EDIGEST,
                      "layer '%s': registry sent more than the %llu bytes the manifest declares",
                      p->desc->digest, (unsigned long long)p->desc->size);
        return -1;
    }
    if (!compressed(p)) /* a compressed blob is hashed by the writer */
        sbx__sha256_update(p->h, buf, len);
    p->nbytes += len;
    if (p->comp == SBX_COMP_AUTO) {
        /* collect the magic bytes before choosing the decompressor */
        size_t take = sizeof p->head - p->nhead < len ? sizeof p->head - p->nhead : len;
        memcpy(p->head + p->nhead, buf, take);
        p->nhead += take;
        buf += take;
        len -= take;
        if (p->nhead < sizeof p->head && p->nbytes < p->desc->size)
            return 0;
        if (decide(p) < 0 || feed(p, p->head, p->nhead) < 0)
            return -1;
    }
    if (feed(p, buf, len) < 0)
        return -1;
    uint64_t now = sbx__now_monotonic_ns();
    if (now - p->last_emit_ns > 100000000ull) {
        p->last_emit_ns = now;
        sbx__progress(p->ctx, p->pid, "download", p->nbytes, p->desc->size);
    }
    return 0;
}

static int pipe_reset(void *ud, sbx_error *err)
{
    layer_pipe *p = ud;
    sbx__log(p->ctx, SBX_LOG_DEBUG, "layer '%s': starting over from byte 0", p->desc->digest);
    return pipe_start(p, err);
}

/* After the last byte: flush and verify everything but the diff_id. */
static int pipe_finish(layer_pipe *p, sbx_error *err)
{
    if (p->comp == SBX_COMP_AUTO && (decide(p) < 0 || feed(p, p->head, p->nhead) < 0))
        return err->code;
    if (p->nbytes != p->desc->size)
        return sbx_error_set(err, SBX_EDIGEST, "layer '%s': got %llu bytes, the manifest declares "
                             "%llu", p->desc->digest, (unsigned long long)p->nbytes,
                             (unsigned long long)p->desc->size);
    char got[SBX_DIGEST_BUFSZ];
    if (compressed(p)) {
        if (sbx_layer_writer_input_digest(p->w, got, err) < 0)
            return err->code;
    } else {
        sbx__sha256_final(p->h, got);
    }
    if (strcmp(got, p->desc->digest) != 0)
        return sbx_error_set(err, SBX_EDIGEST, "layer '%s': downloaded content has digest '%s'",
                             p->desc->digest, got);
    return 0;
}

static void pipe_free(layer_pipe *p)
{
    untap(p);
    sbx_layer_writer_abort(p->w);
    sbx__sha256_free(p->h);
}

/* One download of the layer into a new writer, and its commit. */
static int pull_attempt(reg_client *c, layer_pipe *p, sbx_error *err)
{
    const sbx_descriptor *desc = p->desc;
    int rc = pipe_start(p, err);
    if (rc == 0) {
        sbx__progress(p->ctx, p->pid, "download", 0, desc->size);
        reg_sink sink = {.write = pipe_write, .reset = pipe_reset, .ud = p, .size = desc->size,
                         .err = err};
        rc = reg_get_blob_stream(c, desc->digest, &sink, err);
    }
    if (rc == 0)
        rc = pipe_finish(p, err);
    if (rc < 0)
        return rc;
    sbx__progress(p->ctx, p->pid, "commit", p->nbytes, desc->size);
    char diff_id[SBX_DIGEST_BUFSZ];
    if (p->comp == SBX_COMP_ZSTD && !sbx_layer_writer_kept(p->w))
        sbx__log(p->ctx, SBX_LOG_INFO, "layer '%s': zstd frames without checksums; stored "
                 "recompressed", desc->digest);
    sbx_layer_writer *w = SBX_STEAL(p->w);
    rc = sbx_layer_writer_commit(w, diff_id, err);
    if (rc < 0 && compressed(p))
        sbx_error_wrap(err, "layer '%s'", desc->digest);
    /* a blob kept unchecked is not yet known to be its layer */
    if (rc == 0 && !p->deferred)
        rc = sbx_store_layer_add_source(p->store, diff_id, desc->digest, desc->media_type,
                                        desc->size, err);
    if (rc == 0 && p->tapped) { /* both digests verified: the tap may keep it */
        sbx__progress(p->ctx, p->pid, "unpack", p->tar_bytes, p->tar_bytes);
        rc = p->tap->end(SBX_STEAL(p->tapped), true, err);
    }
    return rc;
}

int reg_pull_layer(reg_client *c, sbx_store *store, const sbx_descriptor *desc,
                   const char *expected_diff_id, const char *progress_id, sbx_error *err)
{
    const sbx_registry_options *o = reg_client_opts(c);
    layer_pipe p = {.store = store, .desc = desc, .diff_id = expected_diff_id,
                    .pid = progress_id, .ctx = reg_client_ctx(c), .err = err,
                    .tap = o && o->layer_tap ? o->layer_tap : NULL};
    /* a layer whose own descriptor says it is too big is not fetched at all */
    int64_t abs_max = max_layer_bytes(p.ctx);
    if (desc->size > (uint64_t)abs_max)
        return sbx_error_set(err, SBX_ELIMIT, "layer '%s' is %llu bytes compressed, over "
                             "SBX_MAX_LAYER_BYTES (%lld): not fetched", desc->digest,
                             (unsigned long long)desc->size, (long long)abs_max);
    p.tar_max = sbx__expansion_cap(desc->size, p.ctx);
    sbx_layer_info have;
    sbx_error ignore = SBX_ERROR_INIT;
    p.check = expected_diff_id &&
              sbx_store_layer_info(store, expected_diff_id, &have, &ignore) == 0 &&
              !have.verified && strcmp(have.stored_digest, desc->digest) != 0;
    int rc = pull_attempt(c, &p, err);
    if (rc == SBX_EBUSY && p.deferred) {
        /* another blob of this diff_id was stored unchecked meanwhile: kept
         * when it is the layer (as if it had been there before), else this
         * blob is downloaded again, checked, and replaces it */
        sbx_error_clear(err);
        rc = sbx_store_layer_trusted(store, expected_diff_id, err);
        if (rc == 0) {
            sbx__log(p.ctx, SBX_LOG_INFO, "layer '%s': another blob stored for its diff_id "
                     "at the same time is not the layer; downloading it again to check it",
                     desc->digest);
            p.check = true;
            rc = pull_attempt(c, &p, err);
        }
        rc = rc > 0 ? 0 : rc;
    }
    pipe_free(&p);
    if (rc == 0)
        sbx__progress(p.ctx, progress_id, "done", desc->size, desc->size);
    return rc;
}
