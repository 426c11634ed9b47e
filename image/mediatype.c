/* The one table of media types: what each is (index, manifest, config,
 * layer), how a layer is compressed, and whether it is Docker's or OCI's.
 * Every module asks here instead of comparing strings of its own. */
#include <string.h>

#include "image_internal.h"

static const sbx_media_type TABLE[] = {
    {SBX_MT_OCI_INDEX, SBX_MEDIA_INDEX, SBX_COMP_NONE, false},
    {SBX_MT_OCI_MANIFEST, SBX_MEDIA_MANIFEST, SBX_COMP_NONE, false},
    {SBX_MT_OCI_CONFIG, SBX_MEDIA_CONFIG, SBX_COMP_NONE, false},
    {SBX_MT_OCI_LAYER, SBX_MEDIA_LAYER, SBX_COMP_NONE, false},
    {SBX_MT_OCI_LAYER_GZIP, SBX_MEDIA_LAYER, SBX_COMP_GZIP, false},
    {SBX_MT_OCI_LAYER_ZSTD, SBX_MEDIA_LAYER, SBX_COMP_ZSTD, false},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar", SBX_MEDIA_LAYER, SBX_COMP_NONE,
     false},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", SBX_MEDIA_LAYER,
     SBX_COMP_GZIP, false},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", SBX_MEDIA_LAYER,
     SBX_COMP_ZSTD, false},
    {SBX_MT_DOCKER_LIST, SBX_MEDIA_INDEX, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_MANIFEST, SBX_MEDIA_MANIFEST, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_V1, SBX_MEDIA_SCHEMA1, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_V1_SIGNED, SBX_MEDIA_SCHEMA1, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_CONFIG, SBX_MEDIA_CONFIG, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_LAYER, SBX_MEDIA_LAYER, SBX_COMP_NONE, true},
    {SBX_MT_DOCKER_LAYER_GZIP, SBX_MEDIA_LAYER, SBX_COMP_GZIP, true},
    {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", SBX_MEDIA_LAYER, SBX_COMP_GZIP,
     true},
};

const sbx_media_type *sbx_media_type_find(const char *mt)
{
    if (!mt)
        return NULL;
    size_t n = strcspn(mt, "; \t");
    for (size_t i = 0; i < SBX_ARRAY_LEN(TABLE); i++)
        if (strlen(TABLE[i].name) == n && !strncmp(TABLE[i].name, mt, n))
            return &TABLE[i];
    return NULL;
}

bool sbx_media_is_index(const char *mt)
{
    const sbx_media_type *t = sbx_media_type_find(mt);
    return t && t->kind == SBX_MEDIA_INDEX;
}

bool sbx_media_is_manifest(const char *mt)
{
    const sbx_media_type *t = sbx_media_type_find(mt);
    return t && t->kind == SBX_MEDIA_MANIFEST;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k && !strncmp(s + n - k, suffix, k);
}

const char *sbx_media_stored_layer(sbx_layer_format f)
{
    return f == SBX_LAYER_GZIP ? SBX_MT_OCI_LAYER_GZIP : SBX_MT_OCI_LAYER_ZSTD;
}

sbx_compression sbx_media_layer_compression(const char *mt)
{
    const sbx_media_type *t = sbx_media_type_find(mt);
    if (t)
        return t->kind == SBX_MEDIA_LAYER ? t->compression : SBX_COMP_AUTO;
    if (!mt)
        return SBX_COMP_AUTO;
    size_t n = strcspn(mt, "; \t");
    if (ends_with(mt, n, "+gzip") || ends_with(mt, n, ".gzip"))
        return SBX_COMP_GZIP;
    if (ends_with(mt, n, "+zstd"))
        return SBX_COMP_ZSTD;
    if (ends_with(mt, n, ".tar"))
        return SBX_COMP_NONE;
    return SBX_COMP_AUTO;
}
