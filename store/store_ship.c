/* Layers as other tools will read them (push, export).
 *
 * A layer kept as a registry's gzip blob was checked with ISA-L's inflate,
 * which accepts some streams that zlib, gzip(1), Go's compress/flate and
 * busybox refuse (a dynamic block whose Huffman codes are incomplete).  Such
 * a blob reads back here, but it must not leave the store in someone else's
 * image: a layer is stored once per diff_id, so one tenant's odd blob would
 * otherwise be what another tenant's push or export of the same layer
 * ships.  So before a gzip layer is shipped, zlib reads it once, and its tar
 * must give the diff_id; the answer is remembered by the blob's digest (the
 * bytes, not the layer: the same layer stored again later may be another
 * blob).  A blob zlib refuses is replaced by the store's own zstd of the same
 * tar.
 *
 * A layer a pull stored unchecked (sbx_layer_writer_defer_check) is first
 * read in full by the store's reader, which checks its tar against the
 * diff_id and records it as checked; one that is not its diff_id never
 * ships. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <zlib.h>

#include "store_internal.h"

#define STANDARD_NS "gzip-standard" /* blob digest -> "1": zlib read it whole */

/* One inflate call into out, its output hashed and counted; zlib's code. */
static int inflate_some(z_stream *z, int flush, unsigned char *out, size_t ocap, sbx__sha256 *h,
                        uint64_t *total, size_t *made)
{
    z->next_out = out;
    z->avail_out = (uInt)ocap;
    int r = inflate(z, flush);
    *made = ocap - z->avail_out;
    sbx__sha256_update(h, out, *made);
    *total += *made;
    return r;
}

/* Whether zlib reads the stored gzip file whole (member after member) and
 * its tar is the layer's (size and diff_id).  <0 only for an I/O error. */
static int zlib_reads(sbx_store *s, const sbx_layer_info *li, bool *ok, sbx_error *err)
{
    char rel[128];
    sbx_store__obj_relpath(rel, sizeof rel, SBX_OBJ_LAYER, li->diff_id + 7, li->format);
    _cleanup_close_ int fd = openat(s->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_store__io_err(s, err, errno, "read layer");
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    if (sbx__sha256_new(&h, err) < 0)
        return err->code;
    size_t icap = 1u << 20, ocap = 1u << 18;
    _cleanup_free_ unsigned char *in = malloc(icap);
    _cleanup_free_ unsigned char *out = malloc(ocap);
    z_stream z = {0};
    if (!in || !out || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return sbx_error_set(err, SBX_ENOMEM, "read layer: out of memory");
    uint64_t total = 0;
    bool ended = false, bad = false;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, in, icap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = sbx_store__io_err(s, err, errno, "read layer");
        if (n <= 0)
            break;
        z.next_in = in;
        z.avail_in = (uInt)n;
        while (!bad && z.avail_in > 0) {
            if (ended) /* another member */
                inflateReset(&z);
            size_t made;
            int r = inflate_some(&z, Z_NO_FLUSH, out, ocap, h, &total, &made);
            ended = r == Z_STREAM_END;
            bad = !ended && r != Z_OK;
        }
        if (bad)
            break;
    }
    /* what is left in zlib's window after the last input */
    while (rc == 0 && !bad && !ended) {
        size_t made;
        int r = inflate_some(&z, Z_FINISH, out, ocap, h, &total, &made);
        ended = r == Z_STREAM_END;
        bad = !ended && (r != Z_BUF_ERROR || made == 0); /* truncated, or damaged */
    }
    inflateEnd(&z);
    if (rc < 0)
        return rc;
    char got[SBX_DIGEST_BUFSZ] = "";
    if (!bad)
        sbx__sha256_final(h, got);
    *ok = !bad && ended && total == li->size && strcmp(got, li->diff_id) == 0;
    return 0;
}

/* Read a layer to its end, into w when not NULL. */
static int pump(sbx_layer_reader *r, sbx_layer_writer *w, sbx_error *err)
{
    size_t cap = 1u << 20;
    unsigned char *buf = malloc(cap);
    int rc = buf ? 0 : sbx_error_set(err, SBX_ENOMEM, "read layer: out of memory");
    for (size_t n = 1; rc == 0 && n > 0;)
        if ((rc = sbx_layer_reader_read(r, buf, cap, &n, err)) == 0 && n > 0 && w)
            rc = sbx_layer_writer_write(w, buf, n, err);
    free(buf);
    return rc;
}

/* Rewrite a stored layer as the store's own zstd from its tar (read as
 * stored), replacing its file and record in one commit. */
static int layer_to_zstd(sbx_store *s, const char *diff_id, sbx_error *err)
{
    sbx_layer_reader *r = NULL;
    sbx_layer_writer *w = NULL;
    if (sbx_store_layer_open(&r, s, diff_id, err) < 0)
        return err->code;
    if (sbx_store_layer_begin(&w, s, diff_id, err) < 0) {
        sbx_layer_reader_free(r);
        return err->code;
    }
    sbx_store__layer_writer_replace(w);
    int rc = pump(r, w, err);
    sbx_layer_reader_free(r);
    if (rc < 0) {
        sbx_layer_writer_abort(w);
        return rc;
    }
    return sbx_layer_writer_commit(w, NULL, err);
}

int sbx_store_layer_check(sbx_store *s, const char *diff_id, sbx_error *err)
{
    sbx_layer_info info;
    if (sbx_store_layer_info(s, diff_id, &info, err) < 0)
        return err->code;
    if (info.verified)
        return 0;
    sbx_layer_reader *r = NULL;
    if (sbx_store_layer_open(&r, s, diff_id, err) < 0)
        return err->code;
    int rc = pump(r, NULL, err);
    sbx_layer_reader_free(r);
    return rc;
}

int sbx_store_layer_trusted(sbx_store *s, const char *diff_id, sbx_error *err)
{
    sbx_error e = SBX_ERROR_INIT;
    int r = sbx_store_layer_check(s, diff_id, &e);
    if (r == 0)
        return 1;
    if (r == SBX_ENOTFOUND || r == SBX_EDIGEST || r == SBX_ELIMIT)
        return 0; /* none, or another image's blob that is not this layer */
    if (err)
        *err = e;
    return r;
}

int sbx_store_layer_shippable(sbx_store *s, const char *diff_id, sbx_layer_info *out,
                              bool *replaced, sbx_error *err)
{
    if (replaced)
        *replaced = false;
    if (sbx_store_layer_info(s, diff_id, out, err) < 0)
        return err->code;
    if (!out->verified &&
        (sbx_store_layer_check(s, diff_id, err) < 0 ||
         sbx_store_layer_info(s, diff_id, out, err) < 0))
        return err->code;
    if (!out->verified) /* checked, but another process replaced it meanwhile */
        return sbx_error_set(err, SBX_EBUSY, "layer '%s' changed while it was checked; try "
                             "again", diff_id);
    if (out->format != SBX_LAYER_GZIP)
        return 0;
    char *v = NULL;
    sbx_error me = SBX_ERROR_INIT;
    if (sbx_store_meta_get(s, STANDARD_NS, out->stored_digest, &v, NULL, &me) == 0 && v) {
        free(v);
        return 0;
    }
    bool ok = false;
    if (zlib_reads(s, out, &ok, err) < 0)
        return sbx_error_wrap(err, "checking layer '%s'", diff_id);
    if (ok) {
        sbx_store_meta_set(s, STANDARD_NS, out->stored_digest, "1", &me); /* a hint */
        return 0;
    }
    if (layer_to_zstd(s, diff_id, err) < 0)
        return sbx_error_wrap(err, "storing layer '%s' again as zstd (zlib refuses its gzip "
                              "blob)", diff_id);
    if (replaced)
        *replaced = true;
    return sbx_store_layer_info(s, diff_id, out, err);
}
