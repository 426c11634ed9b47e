/* sbx_registry_push: an image from the store to a registry.
 *
 * Blobs go first (each layer as the store keeps it, zstd; then the
 * config), each after a HEAD: one the repository already has is never
 * sent again.  A blob is uploaded in one PUT (POST for an upload location,
 * then PUT ?digest=), read from the store's file, so memory does not grow
 * with the layer.  The manifest goes last, so the tag never names an image
 * whose blobs are missing.  Tokens are asked for with push scope.
 *
 * The manifest: an image whose manifest describes the stored zstd layers
 * (everything build and commit make) is pushed with its exact bytes, so
 * its digest is the store's.  A pulled image whose manifest describes other
 * compressed forms (gzip) gets the OCI manifest sbx_image_write makes over
 * the stored zstd layers and the same config: a new digest (said in
 * result.recompressed), as export does. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "registry_internal.h"

static int push_blob(reg_client *c, sbx_push_result *out, const char *digest, const char *path,
                     const char *buf, uint64_t len, const char *progress_id, sbx_ctx *ctx,
                     sbx_error *err)
{
    int have = reg_blob_exists(c, digest, err);
    if (have < 0)
        return have;
    if (have) {
        out->blobs_existing++;
        sbx__progress(ctx, progress_id, "exists", len, len);
        return 0;
    }
    _cleanup_close_ int fd = -1;
    if (path && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "reading '%s'", path);
    sbx__progress(ctx, progress_id, "push", 0, len);
    int rc = reg_put_blob(c, digest, fd, buf, len, err);
    if (rc < 0)
        return rc;
    out->blobs_pushed++;
    out->bytes_pushed += len;
    sbx__progress(ctx, progress_id, "push", len, len);
    return 0;
}

/* The manifest to push: the image's own when it describes the stored zstd
 * layers, else a new one over them (stored, so it can be pushed again). */
static int manifest_for(char **raw, size_t *len, char digest[SBX_DIGEST_BUFSZ],
                        char media_type[128], bool *recompressed, sbx_store *s,
                        const sbx_image *img, sbx_layer_info *infos, sbx_error *err)
{
    bool same = true;
    for (size_t i = 0; i < img->nlayers; i++)
        same = same && !strcmp(img->layers[i].digest, infos[i].zstd_digest) &&
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
        return sbx_error_wrap(err, "pushing: describing the stored zstd layers");
    snprintf(media_type, 128, "%s", SBX_MT_OCI_MANIFEST);
    return 0;
}

static int push(sbx_push_result *out, sbx_store *s, const sbx_image *img, reg_session *ses,
                sbx_ctx *ctx, sbx_error *err)
{
    sbx_layer_info *infos = calloc(img->nlayers + 1, sizeof *infos);
    if (!infos)
        return sbx_error_set(err, SBX_ENOMEM, "pushing: out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++)
        if (sbx_store_layer_info(s, img->layers[i].diff_id, &infos[i], err) < 0)
            rc = sbx_error_wrap(err, "pushing layer %zu/%zu (pull the image again)", i + 1,
                                img->nlayers);
    char *man = NULL;
    size_t man_len = 0;
    char media_type[128];
    if (rc == 0)
        rc = manifest_for(&man, &man_len, out->digest, media_type, &out->recompressed, s, img,
                          infos, err);
    reg_client *c = NULL;
    if (rc == 0 && (rc = reg_client_new(&c, &ses->ref, "", ses->opts, &ses->cfg, ctx, err)) == 0)
        reg_client_set_push(c);
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        char path[4096], id[96];
        snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, img->nlayers, infos[i].zstd_digest);
        if ((rc = sbx_store_layer_path(s, img->layers[i].diff_id, path, sizeof path, err)) == 0)
            rc = push_blob(c, out, infos[i].zstd_digest, path, NULL, infos[i].stored_size, id,
                           ctx, err);
    }
    if (rc == 0)
        rc = push_blob(c, out, img->config_digest, NULL, img->config_raw, img->config_len,
                       "config", ctx, err);
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
    return rc;
}

int sbx_registry_push(sbx_push_result *out, sbx_store *store, const char *image,
                      const char *dest, const sbx_registry_options *opts, sbx_ctx *ctx,
                      sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!store || !image || !*image)
        return sbx_error_set(err, SBX_EINVAL, "pushing: a store and an image are needed");
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
