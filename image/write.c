/* Writing images: a config and the OCI manifest over stored layers.
 *
 * The manifest is compact JSON with sorted keys and describes each layer by
 * its stored form (zstd, or a pulled gzip blob kept as sent), so the same config bytes always give the same
 * manifest bytes and digest: build caching and reproducible builds rest on
 * that. */
#include <jansson.h>
#include <string.h>

#include "image_internal.h"

typedef struct img_bytes {
    char cfg_digest[SBX_DIGEST_BUFSZ];
    char *manifest;                      /* owned */
    sbx_image_config ic;                 /* owns the diff_ids the children borrow */
    sbx_store_child *children;           /* owned */
    size_t nchildren;
} img_bytes;

static void img_bytes_clear(img_bytes *b)
{
    free(b->manifest);
    free(b->children);
    sbx_image_config_free(&b->ic);
    memset(b, 0, sizeof *b);
}

static int layer_desc(json_t *layers, sbx_store *s, const char *diff_id, size_t i,
                      sbx_error *err)
{
    sbx_layer_info info;
    if (sbx_store_layer_info(s, diff_id, &info, err) < 0)
        return sbx_error_wrap(err, "describe layer %zu", i + 1);
    if (json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
                                                sbx_media_stored_layer(info.format), "digest",
                                                info.stored_digest, "size",
                                                (json_int_t)info.stored_size)) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "writing an image manifest: out of memory");
    return 0;
}

static int serialize(img_bytes *b, sbx_store *s, const char *config, size_t len,
                     char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    memset(b, 0, sizeof *b);
    sbx__sha256_buf(config, len, b->cfg_digest);
    if (sbx_image_config_parse(&b->ic, config, len, err) < 0)
        return err->code;
    size_t n = b->ic.ndiff_ids;
    b->children = calloc(n + 1, sizeof *b->children);
    json_t *layers = json_array();
    if (!b->children || !layers) {
        json_decref(layers);
        return sbx_error_set(err, SBX_ENOMEM, "writing an image manifest: out of memory");
    }
    b->children[0] = (sbx_store_child){SBX_CHILD_BLOB, b->cfg_digest};
    for (size_t i = 0; i < n; i++) {
        if (layer_desc(layers, s, b->ic.diff_ids[i], i, err) < 0) {
            json_decref(layers);
            return err->code;
        }
        b->children[i + 1] = (sbx_store_child){SBX_CHILD_LAYER, b->ic.diff_ids[i]};
    }
    b->nchildren = n + 1;
    json_t *manifest = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2,
                                 "mediaType", SBX_MT_OCI_MANIFEST, "config", "mediaType",
                                 SBX_MT_OCI_CONFIG, "digest", b->cfg_digest, "size",
                                 (json_int_t)len, "layers", layers);
    if (!manifest)
        return sbx_error_set(err, SBX_ENOMEM, "writing an image manifest: out of memory");
    b->manifest = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(manifest);
    if (!b->manifest)
        return sbx_error_set(err, SBX_ENOMEM, "writing an image manifest: out of memory");
    sbx__sha256_buf(b->manifest, strlen(b->manifest), digest_out);
    return 0;
}

int sbx_image_write_digest(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s, const char *config,
                           size_t config_len, sbx_error *err)
{
    img_bytes b;
    int r = serialize(&b, s, config, config_len, digest_out, err);
    img_bytes_clear(&b);
    return r;
}

int sbx_image_write(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s, const char *config,
                    size_t config_len, sbx_error *err)
{
    img_bytes b;
    int r = serialize(&b, s, config, config_len, digest_out, err);
    /* A rebuild writes states the store already has: skip the synced writes
     * then (a stored manifest was stored with all its children). */
    int have = r == 0 ? sbx_store_has_blob(s, digest_out, err) : 0;
    if (have != 0) {
        img_bytes_clear(&b);
        return have < 0 ? have : 0;
    }
    if (r == 0 && (have = sbx_store_has_blob(s, b.cfg_digest, err)) < 0)
        r = have;
    if (r == 0 && have == 0 &&
        sbx_store_put_blob(s, config, config_len, SBX_MT_OCI_CONFIG, NULL, b.cfg_digest, err) < 0)
        r = sbx_error_wrap(err, "storing the image config");
    if (r == 0 && sbx_store_put_manifest(s, b.manifest, strlen(b.manifest), SBX_MT_OCI_MANIFEST,
                                         NULL, b.children, b.nchildren, digest_out, err) < 0)
        r = sbx_error_wrap(err, "storing the image manifest");
    img_bytes_clear(&b);
    return r;
}

int sbx_image_config_add_layer(char **out, size_t *out_len, const char *config, size_t len,
                               const char *diff_id, const char *created_by,
                               const char *comment, sbx_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (!sbx__digest_valid(diff_id))
        return sbx_error_set(err, SBX_EINVAL, "adding a layer: '%s' is not a diff_id", diff_id);
    json_error_t je;
    json_t *c = json_loadb(config, len, JSON_REJECT_DUPLICATES, &je);
    json_t *rootfs = json_is_object(c) ? json_object_get(c, "rootfs") : NULL;
    json_t *ids = json_is_object(rootfs) ? json_object_get(rootfs, "diff_ids") : NULL;
    if (!json_is_array(ids)) {
        json_decref(c);
        return sbx_error_set(err, SBX_EINVAL, "adding a layer: the image config has no "
                             "rootfs.diff_ids");
    }
    size_t nlayers = json_array_size(ids);
    if (nlayers + 1 > SBX_MAX_LAYERS) {
        json_decref(c);
        return sbx_error_set(err, SBX_ELIMIT, "adding a layer: the image would have more than "
                             "%u layers", (unsigned)SBX_MAX_LAYERS);
    }
    int rc = json_array_append_new(ids, json_string(diff_id));
    /* History, when the parent keeps it in step with its layers (one entry
     * without empty_layer per layer, as Docker checks): one more entry.
     * No "created": the same change on the same parent is the same image. */
    json_t *hist = json_object_get(c, "history");
    size_t with_layer = 0, i;
    json_t *h;
    json_array_foreach(hist, i, h)
        if (!json_is_true(json_object_get(h, "empty_layer")))
            with_layer++;
    if (rc == 0 && json_is_array(hist) && with_layer == nlayers) {
        json_t *e = json_pack("{s:s}", "created_by", created_by ? created_by : "");
        if (!e || (comment && json_object_set_new(e, "comment", json_string(comment)) < 0) ||
            json_array_append_new(hist, e) < 0)
            rc = -1;
    }
    char *s = rc == 0 ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(c);
    if (!s)
        return sbx_error_set(err, SBX_ENOMEM, "adding a layer: out of memory");
    *out = s;
    *out_len = strlen(s);
    return 0;
}
