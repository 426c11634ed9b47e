/* sbx_image_open: an image in the store, by digest, ref or name.
 *
 * The lookup never leaves the store.  The top document (what the name
 * points at) is leased before anything is read, and a lease reaches
 * everything a manifest references, so gc in another process cannot take
 * the index entry, config or layers away while the image is open.  Every
 * document is re-hashed as the store reads it back.  Private content (see
 * sbx_store_access_check) is opened only for a caller the handle's check
 * lets in. */
#include <string.h>

#include "image_internal.h"

int img_read(char **out, size_t *len, sbx_store *s, const char *digest, size_t max,
             const char *what, sbx_error *err)
{
    if (sbx_store_read_blob(s, digest, max, out, len, err) < 0)
        return sbx_error_wrap(err, "reading the %s '%s'", what, digest);
    return 0;
}

/* The digest `name` points at in the store (lookup.c). */
static int find(char digest[SBX_DIGEST_BUFSZ], sbx_store *s, const char *name, sbx_error *err)
{
    return sbx_image_lookup(digest, NULL, 0, s, name, err);
}

static int read_manifest(char **raw, size_t *len, sbx_manifest *m, sbx_store *s,
                         const char *digest, sbx_error *err)
{
    int r = img_read(raw, len, s, digest, SBX_MANIFEST_MAX, "manifest", err);
    if (r == 0 && (r = sbx_manifest_parse(m, NULL, *raw, *len, err)) < 0)
        sbx_error_wrap(err, "reading the manifest '%s'", digest);
    return r;
}

/* From an index, the entry for platform (NULL: this host). */
static int pick(char entry[SBX_DIGEST_BUFSZ], const sbx_manifest *index, const char *platform,
                sbx_error *err)
{
    sbx_platform want;
    if (platform && *platform) {
        if (sbx_platform_parse(&want, platform, err) < 0)
            return err->code;
    } else {
        sbx_platform_host(&want);
    }
    const sbx_descriptor *d = NULL;
    if (sbx_manifest_pick(&d, index, &want, err) < 0)
        return err->code;
    snprintf(entry, SBX_DIGEST_BUFSZ, "%s", d->digest);
    return 0;
}

static int fill_layers(sbx_image *img, const sbx_manifest *m, sbx_error *err)
{
    sbx_image_config ic;
    int r = sbx_image_config_parse(&ic, img->config_raw, img->config_len, err);
    if (r < 0)
        return sbx_error_wrap(err, "reading the config '%s'", img->config_digest);
    img->platform = ic.platform;
    img->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *img->layers);
    if (!img->layers) {
        sbx_image_config_free(&ic);
        return sbx_error_set(err, SBX_ENOMEM, "opening an image: out of memory");
    }
    for (size_t i = 0; i < m->nlayers; i++) {
        sbx_image_layer *l = &img->layers[i];
        snprintf(l->digest, sizeof l->digest, "%s", m->layers[i].digest);
        snprintf(l->media_type, sizeof l->media_type, "%s", m->layers[i].media_type);
        l->size = m->layers[i].size;
        if (i < ic.ndiff_ids) /* a missing diff_id is the consumer's error to report */
            snprintf(l->diff_id, sizeof l->diff_id, "%s", ic.diff_ids[i]);
    }
    img->nlayers = m->nlayers;
    sbx_image_config_free(&ic);
    return 0;
}

static int load(sbx_image *img, sbx_store *s, const char *top, const char *platform,
                sbx_error *err)
{
    sbx_manifest m = {0};
    int r = read_manifest(&img->manifest_raw, &img->manifest_len, &m, s, top, err);
    snprintf(img->digest, sizeof img->digest, "%s", top);
    if (r == 0 && m.kind == SBX_MANIFEST_INDEX) {
        snprintf(img->index_digest, sizeof img->index_digest, "%s", top);
        r = pick(img->digest, &m, platform, err);
        sbx_manifest_free(&m);
        free(img->manifest_raw);
        img->manifest_raw = NULL;
        if (r == 0) {
            r = read_manifest(&img->manifest_raw, &img->manifest_len, &m, s, img->digest, err);
            if (r == SBX_ENOTFOUND) {
                char plat[64];
                sbx_platform want;
                sbx_platform_host(&want);
                if (platform && *platform)
                    snprintf(plat, sizeof plat, "%s", platform);
                else
                    sbx_platform_format(&want, plat, sizeof plat);
                sbx_error_clear(err);
                r = sbx_error_set(err, SBX_ENOPLATFORM, "the store holds this image, but not "
                                  "for %s (pull it with --platform %s)", plat, plat);
            }
        }
        if (r == 0 && m.kind != SBX_MANIFEST_IMAGE)
            r = sbx_error_set(err, SBX_EINVAL, "the index entry '%s' is not an image manifest",
                              img->digest);
    }
    if (r == 0) {
        snprintf(img->media_type, sizeof img->media_type, "%s", m.media_type);
        snprintf(img->config_digest, sizeof img->config_digest, "%s", m.config.digest);
        r = img_read(&img->config_raw, &img->config_len, s, m.config.digest, SBX_CONFIG_MAX,
                     "config", err);
    }
    if (r == 0)
        r = fill_layers(img, &m, err);
    sbx_manifest_free(&m);
    return r;
}

int sbx_image_open(sbx_image **out, sbx_store *s, const char *name, const char *platform,
                   sbx_error *err)
{
    *out = NULL;
    if (!name || !*name)
        return sbx_error_set(err, SBX_EINVAL, "opening an image: no name given");
    char top[SBX_DIGEST_BUFSZ];
    int r = find(top, s, name, err);
    if (r < 0)
        return r;
    sbx_image *img = calloc(1, sizeof *img);
    if (!img)
        return sbx_error_set(err, SBX_ENOMEM, "opening an image: out of memory");
    snprintf(img->name, sizeof img->name, "%s", name);
    if ((r = sbx_store_lease_acquire(&img->lease, s, 0, err)) == 0)
        r = sbx_lease_add(img->lease, top, err);
    if (r < 0)
        sbx_error_wrap(err, "leasing the image");
    else if ((r = sbx_store_access_check(s, top, err)) < 0)
        sbx_error_where(err, "%s", name); /* private, and the caller has not shown access */
    else
        r = load(img, s, top, platform, err);
    if (r < 0) {
        sbx_image_close(img);
        if (!err->where[0])
            sbx_error_where(err, "%s", name);
        return r;
    }
    *out = img;
    return 0;
}

void sbx_image_close(sbx_image *img)
{
    if (!img)
        return;
    sbx_lease_release(img->lease);
    free(img->manifest_raw);
    free(img->config_raw);
    free(img->layers);
    free(img);
}

int sbx_image_readable(sbx_store *s, const char *digest)
{
    char *raw = NULL;
    size_t len = 0;
    sbx_error e = SBX_ERROR_INIT;
    int ok = sbx_store_read_blob(s, digest, SBX_MANIFEST_MAX, &raw, &len, &e) == 0;
    free(raw);
    return ok;
}
