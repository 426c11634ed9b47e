/* sbx_registry_push: an image from the store to a registry.
 *
 * Blobs go first (each layer as the store keeps it, zstd; and the
 * config), two at once by default, each after a HEAD: one the repository
 * already has is never sent again.  A blob is uploaded by upload.c (one PUT,
 * or PATCHes of the chunk size and a PUT, resumed where the registry's
 * session stands after a failure), read from the store's file with pread,
 * so memory does not grow with the layer.  The manifest goes last, so the
 * tag never names an image whose blobs are missing.  Tokens are asked for
 * with push scope.
 *
 * The manifest: an image whose manifest describes the stored layers
 * (everything build and commit make, and an image pulled as gzip or zstd,
 * whose blobs the store keeps as sent) is pushed with its exact bytes, so
 * its digest is the store's.  One whose manifest describes other forms
 * (layers the store compressed itself) gets the OCI manifest
 * sbx_image_write makes over the stored layers and the same config: a new
 * digest (said in result.recompressed), as export does.
 *
 * With push_gzip a layer stored as gzip goes as it is; each other one is
 * gzipped from the stored tar (zlib level 6, no name, mtime 0: the same tar
 * gives the same bytes) into a scratch file while it is hashed, then sent
 * like a stored one; the manifest is an OCI one over those (compact JSON,
 * sorted keys), so pushing the same image twice gives the same digests.  The
 * gzip digest is recorded as a source of the layer.  An image whose layers
 * are all stored as gzip is pushed as stored, as without push_gzip. */

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <zlib.h>

#include "registry_internal.h"

/* A layer's gzip form in dir/<n>.gz: path, digest and size. */
static int gzip_layer(char *path_out, size_t plen, char digest[SBX_DIGEST_BUFSZ], uint64_t *size,
                      sbx_store *s, const char *diff_id, const char *dir, size_t n, sbx_ctx *ctx,
                      sbx_error *err)
{
    snprintf(path_out, plen, "%s/%zu.gz", dir, n);
    _cleanup_close_ int fd = open(path_out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "pushing: creating '%s'", path_out);
    sbx_layer_reader *rd = NULL;
    if (sbx_store_layer_open(&rd, s, diff_id, err) < 0)
        return err->code;
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    z_stream z = {0};
    int rc = sbx__sha256_new(&h, err);
    /* 16 + MAX_WBITS: a gzip wrapper; deflateInit2 leaves name and mtime empty */
    if (rc == 0 && deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        rc = sbx_error_set(err, SBX_ENOMEM, "pushing: zlib");
    _cleanup_free_ unsigned char *in = malloc(1 << 17), *out = malloc(1 << 17);
    if (rc == 0 && (!in || !out))
        rc = sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
    *size = 0;
    for (bool end = false; rc == 0 && !end;) {
        size_t got = 0;
        if ((rc = sbx__check_cancel(ctx, err)) < 0 ||
            (rc = sbx_layer_reader_read(rd, in, 1 << 17, &got, err)) < 0)
            break;
        end = got == 0;
        z.next_in = in;
        z.avail_in = (uInt)got;
        do {
            z.next_out = out;
            z.avail_out = 1 << 17;
            int zr = deflate(&z, end ? Z_FINISH : Z_NO_FLUSH);
            if (zr == Z_STREAM_ERROR) {
                rc = sbx_error_set(err, SBX_EINTERNAL, "pushing: zlib deflate failed");
                break;
            }
            size_t made = (1u << 17) - z.avail_out;
            sbx__sha256_update(h, out, made);
            *size += made;
            if (made && (rc = sbx__write_all(fd, out, made, err)) < 0)
                break;
        } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    sbx_layer_reader_free(rd);
    if (rc == 0)
        sbx__sha256_final(h, digest);
    return rc;
}

/* Where the store last pushed a blob to on a registry (metadata
 * "pushed-blob", key "<host>/<digest>", value the repository): a push of
 * the same blob to another repository there asks for a cross-repository
 * mount instead of sending it again. */
#define PUSHED_NS "pushed-blob"
#define PUSH_PARALLEL 2
#define PUSH_PARALLEL_MAX 8

typedef struct blob_job {
    const char *digest;
    char path[4096]; /* the blob's file, or "" with buf */
    const char *buf;
    uint64_t len;
    char id[96];     /* progress id */
    char *from;      /* a repository of the registry that has it (a hint) */
    enum { JOB_TODO, JOB_EXISTING, JOB_MOUNTED, JOB_PUSHED } result;
    bool dup;        /* the same blob as an earlier job: sent once, by that one */
} blob_job;

typedef struct push_batch {
    blob_job *jobs;
    int64_t chunk;
    sbx_ctx *ctx;
} push_batch;

/* One blob, on a worker: HEAD, then a mount or an upload. */
static int push_one(void *ud, size_t i, reg_client *c, sbx_store *unused, sbx_error *err)
{
    (void)unused;
    push_batch *b = ud;
    blob_job *j = &b->jobs[i];
    if (j->dup)
        return 0;
    int have = reg_blob_exists(c, j->digest, err);
    if (have < 0)
        return have;
    if (have) {
        j->result = JOB_EXISTING;
        sbx__progress(b->ctx, j->id, "exists", j->len, j->len);
        return 0;
    }
    _cleanup_close_ int fd = -1;
    if (j->path[0] && (fd = open(j->path, O_RDONLY | O_CLOEXEC)) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "reading '%s'", j->path);
    sbx__progress(b->ctx, j->id, j->from ? "mount" : "push", 0, j->len);
    reg_upload u = {.digest = j->digest, .fd = fd, .buf = j->path[0] ? NULL : j->buf,
                    .len = j->len, .mount_from = j->from, .chunk = (uint64_t)b->chunk,
                    .progress_id = j->id};
    int rc = reg_put_blob(c, &u, err);
    if (rc < 0)
        return rc;
    j->result = rc == 1 ? JOB_MOUNTED : JOB_PUSHED;
    sbx__progress(b->ctx, j->id, rc == 1 ? "mount" : "push", j->len, j->len);
    return 0;
}

/* The blobs, `parallel` at once.  The store is read and written on this
 * thread only: the mount hints before, what went where after (also for the
 * blobs that made it when another failed). */
static int push_blobs(reg_client *c, sbx_store *s, const reg_session *ses, blob_job *jobs,
                      size_t n, sbx_push_result *out, sbx_ctx *ctx, sbx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < i && !jobs[i].dup; k++)
            jobs[i].dup = !strcmp(jobs[k].digest, jobs[i].digest);
        char key[SBX_REF_DOMAIN_MAX + SBX_DIGEST_BUFSZ + 2];
        snprintf(key, sizeof key, "%s/%s", ses->ref.domain, jobs[i].digest);
        sbx_error me = SBX_ERROR_INIT; /* the record is a hint */
        if (sbx_store_meta_get(s, PUSHED_NS, key, &jobs[i].from, NULL, &me) < 0 ||
            !strcmp(jobs[i].from, ses->ref.path)) {
            free(jobs[i].from);
            jobs[i].from = NULL;
        }
    }
    const sbx_registry_options *o = ses->opts;
    unsigned par = o && o->parallel ? o->parallel : PUSH_PARALLEL;
    push_batch b = {.jobs = jobs, .ctx = ctx,
                    .chunk = !o || o->push_chunk < 0 ? SBX_PUSH_CHUNK_DEFAULT : o->push_chunk};
    reg_workers *ws = NULL;
    int rc = reg_run_jobs(n, par > PUSH_PARALLEL_MAX ? PUSH_PARALLEL_MAX : par, c, s, false,
                          push_one, &b, &ws, err);
    reg_workers_free(ws);
    for (size_t i = 0; i < n; i++) {
        blob_job *j = &jobs[i];
        free(j->from);
        j->from = NULL;
        if (j->result == JOB_TODO)
            continue;
        out->blobs_existing += j->result == JOB_EXISTING;
        out->blobs_mounted += j->result == JOB_MOUNTED;
        out->blobs_pushed += j->result == JOB_PUSHED;
        out->bytes_pushed += j->result == JOB_PUSHED ? j->len : 0;
        char key[SBX_REF_DOMAIN_MAX + SBX_DIGEST_BUFSZ + 2];
        snprintf(key, sizeof key, "%s/%s", ses->ref.domain, j->digest);
        sbx_error me = SBX_ERROR_INIT;
        sbx_store_meta_set(s, PUSHED_NS, key, ses->ref.path, &me);
    }
    return rc;
}

/* The manifest to push: the image's own when it describes the stored
 * layers, else a new one over them (stored, so it can be pushed again). */
static int manifest_for(char **raw, size_t *len, char digest[SBX_DIGEST_BUFSZ],
                        char media_type[128], bool *recompressed, sbx_store *s,
                        const sbx_image *img, sbx_layer_info *infos, sbx_error *err)
{
    bool same = true;
    for (size_t i = 0; i < img->nlayers; i++)
        same = same && !strcmp(img->layers[i].digest, infos[i].stored_digest) &&
               img->layers[i].size == infos[i].stored_size;
    *recompressed = !same;
    if (same) {
        *raw = malloc(img->manifest_len + 1);
        if (!*raw)
            return sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
        memcpy(*raw, img->manifest_raw, img->manifest_len);
        *len = img->manifest_len;
        snprintf(digest, SBX_DIGEST_BUFSZ, "%s", img->digest);
        snprintf(media_type, 128, "%s", img->media_type);
        return 0;
    }
    if (sbx_image_write(digest, s, img->config_raw, img->config_len, err) < 0 ||
        sbx_store_read_blob(s, digest, SBX_MANIFEST_MAX, raw, len, err) < 0)
        return sbx_error_wrap(err, "pushing: describing the stored layers");
    snprintf(media_type, 128, "%s", SBX_MT_OCI_MANIFEST);
    return 0;
}

/* The OCI manifest over gzip layers (and the image's config), as bytes. */
static int gzip_manifest(char **raw, size_t *len, char digest[SBX_DIGEST_BUFSZ],
                         const sbx_image *img, char (*gz_digest)[SBX_DIGEST_BUFSZ],
                         const uint64_t *gz_size, sbx_error *err)
{
    json_t *layers = json_array();
    for (size_t i = 0; layers && i < img->nlayers; i++)
        json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
                                                SBX_MT_OCI_LAYER_GZIP, "digest", gz_digest[i],
                                                "size", (json_int_t)gz_size[i]));
    json_t *m = layers ? json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2,
                                   "mediaType", SBX_MT_OCI_MANIFEST, "config", "mediaType",
                                   SBX_MT_OCI_CONFIG, "digest", img->config_digest, "size",
                                   (json_int_t)img->config_len, "layers", layers)
                       : NULL;
    *raw = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    if (!*raw)
        return sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
    *len = strlen(*raw);
    sbx__sha256_buf(*raw, *len, digest);
    return 0;
}

static int push(sbx_push_result *out, sbx_store *s, const sbx_image *img, reg_session *ses,
                sbx_ctx *ctx, sbx_error *err)
{
    bool gz = ses->opts && ses->opts->push_gzip;
    sbx_scratch *sc = NULL;
    char (*gz_digest)[SBX_DIGEST_BUFSZ] = NULL;
    uint64_t *gz_size = NULL;
    sbx_layer_info *infos = calloc(img->nlayers + 1, sizeof *infos);
    if (!infos)
        return sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        bool replaced = false;
        if (sbx_store_layer_shippable(s, img->layers[i].diff_id, &infos[i], &replaced, err) < 0)
            rc = sbx_error_wrap(err, "pushing layer %zu/%zu (pull the image again)", i + 1,
                                img->nlayers);
        else if (replaced)
            sbx__log(ctx, SBX_LOG_WARN, "layer %zu/%zu '%s': its stored gzip blob is one zlib "
                     "refuses; stored again as zstd, which is what goes", i + 1, img->nlayers,
                     img->layers[i].diff_id);
    }
    /* every layer stored as gzip already: pushed as stored, with its own
     * manifest when that describes them */
    bool all_gzip = rc == 0;
    for (size_t i = 0; all_gzip && i < img->nlayers; i++)
        all_gzip = infos[i].format == SBX_LAYER_GZIP;
    if (all_gzip)
        gz = false;
    char *man = NULL;
    size_t man_len = 0;
    char media_type[128];
    if (rc == 0 && gz) {
        gz_digest = calloc(img->nlayers + 1, sizeof *gz_digest);
        gz_size = calloc(img->nlayers + 1, sizeof *gz_size);
        if (!gz_digest || !gz_size)
            rc = sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
        else if ((rc = sbx_store_scratch_new(&sc, s, "push", 0, err)) < 0)
            sbx_error_wrap(err, "pushing");
        for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
            char path[4096], id[96];
            if (infos[i].format == SBX_LAYER_GZIP) { /* stored as gzip already */
                memcpy(gz_digest[i], infos[i].stored_digest, SBX_DIGEST_BUFSZ);
                gz_size[i] = infos[i].stored_size;
                continue;
            }
            snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, img->nlayers,
                     img->layers[i].diff_id);
            sbx__progress(ctx, id, "gzip", 0, infos[i].size);
            rc = gzip_layer(path, sizeof path, gz_digest[i], &gz_size[i], s,
                            img->layers[i].diff_id, sbx_scratch_path(sc), i, ctx, err);
            sbx_error se = SBX_ERROR_INIT; /* bookkeeping: a later pull finds it */
            if (rc == 0)
                sbx_store_layer_add_source(s, img->layers[i].diff_id, gz_digest[i],
                                           SBX_MT_OCI_LAYER_GZIP, gz_size[i], &se);
        }
        if (rc == 0)
            rc = gzip_manifest(&man, &man_len, out->digest, img, gz_digest, gz_size, err);
        snprintf(media_type, sizeof media_type, "%s", SBX_MT_OCI_MANIFEST);
        out->recompressed = true;
    } else if (rc == 0) {
        rc = manifest_for(&man, &man_len, out->digest, media_type, &out->recompressed, s, img,
                          infos, err);
    }
    reg_client *c = NULL;
    if (rc == 0 && (rc = reg_client_new(&c, &ses->ref, "", ses->opts, &ses->cfg, ctx, err)) == 0)
        reg_client_set_push(c);
    blob_job *jobs = rc == 0 ? calloc(img->nlayers + 1, sizeof *jobs) : NULL;
    if (rc == 0 && !jobs)
        rc = sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        blob_job *j = &jobs[i];
        j->digest = gz ? gz_digest[i] : infos[i].stored_digest;
        j->len = gz ? gz_size[i] : infos[i].stored_size;
        snprintf(j->id, sizeof j->id, "layer %zu/%zu %.19s", i + 1, img->nlayers, j->digest);
        if (gz && infos[i].format != SBX_LAYER_GZIP)
            snprintf(j->path, sizeof j->path, "%s/%zu.gz", sbx_scratch_path(sc), i);
        else
            rc = sbx_store_layer_path(s, img->layers[i].diff_id, j->path, sizeof j->path, err);
    }
    if (rc == 0) {
        blob_job *j = &jobs[img->nlayers];
        j->digest = img->config_digest;
        j->buf = img->config_raw;
        j->len = img->config_len;
        snprintf(j->id, sizeof j->id, "config");
        rc = push_blobs(c, s, ses, jobs, img->nlayers + 1, out, ctx, err);
    }
    free(jobs);
    if (rc == 0) {
        const char *reference = ses->ref.digest[0] ? out->digest : ses->ref.tag;
        if (ses->ref.digest[0] && strcmp(ses->ref.digest, out->digest) != 0)
            rc = sbx_error_set(err, SBX_EDIGEST, "pushing: the destination names digest '%s', "
                               "the image's manifest is '%s'", ses->ref.digest, out->digest);
        else
            rc = reg_put_manifest(c, reference, media_type, man, man_len, err);
    }
    if (rc == 0)
        sbx__progress(ctx, "manifest", "done", man_len, man_len);
    reg_client_free(c);
    free(man);
    free(infos);
    free(gz_digest);
    free(gz_size);
    sbx_error fe = SBX_ERROR_INIT;
    sbx_scratch_free(sc, &fe);
    return rc;
}

int sbx_registry_push(sbx_push_result *out, sbx_store *store, const char *image,
                      const char *dest, const sbx_registry_options *opts, sbx_ctx *ctx,
                      sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!store || !image || !*image)
        return sbx_error_set(err, SBX_EINVAL, "pushing: a store and an image are needed");
    if (opts && opts->push_chunk > 0 && opts->push_chunk < SBX_PUSH_CHUNK_MIN)
        return sbx_error_set(err, SBX_EINVAL, "pushing: a chunk size of %lld bytes is under the "
                             "minimum of %lld (0 sends every blob in one request)",
                             (long long)opts->push_chunk, (long long)SBX_PUSH_CHUNK_MIN);
    if (!dest || !*dest)
        dest = image; /* its own name, as docker push does */
    int rc = reg_global_init(err);
    reg_session ses;
    if (rc == 0)
        rc = reg_session_init(&ses, dest, opts, ctx, err);
    if (rc < 0) {
        sbx_error_where(err, "%s", dest);
        return sbx_error_wrap(err, "pushing to '%s'", dest);
    }
    snprintf(out->ref, sizeof out->ref, "%s", ses.ref.str);
    sbx_image *img = NULL;
    rc = sbx_image_open(&img, store, image, opts ? opts->platform : NULL, err);
    if (rc == 0)
        rc = push(out, store, img, &ses, ctx, err);
    sbx_image_close(img);
    reg_session_free(&ses);
    if (rc < 0) {
        if (!err->where[0])
            sbx_error_where(err, "%s", out->ref);
        return sbx_error_wrap(err, "pushing '%s' to '%s'", image, out->ref);
    }
    return 0;
}
