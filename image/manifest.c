/* Manifests, indexes and image configs (OCI and Docker schema2).
 *
 * The media type comes from Content-Type when it names a supported type
 * (some manifests, umoci's among them, carry no mediaType field), else from
 * the document, else from its shape.  schema1 is refused.  Every digest is
 * validated; counts are limited before arrays are allocated. */
#include <jansson.h>
#include <string.h>

#include "image_internal.h"

/* Docker schema1, or the plain JSON some registries serve it as. */
static bool is_schema1(const char *mt)
{
    const sbx_media_type *t = sbx_media_type_find(mt);
    return (t && t->kind == SBX_MEDIA_SCHEMA1) || (mt && !strcmp(mt, "application/json"));
}

static int schema1_error(sbx_error *err)
{
    return sbx_error_set(err, SBX_EUNSUPPORTED,
                         "refusing a Docker schema1 manifest: the format is deprecated and "
                         "unverifiable; push the image again with a current client");
}

/* Content-Type without parameters. */
static void base_type(char *out, size_t len, const char *ct)
{
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    if (n >= len)
        n = len - 1;
    if (n)
        memcpy(out, ct, n);
    out[n] = '\0';
}

static int parse_platform(sbx_platform *p, json_t *j, const char *what, sbx_error *err)
{
    memset(p, 0, sizeof *p);
    const char *os = json_string_value(json_object_get(j, "os"));
    const char *arch = json_string_value(json_object_get(j, "architecture"));
    const char *var = json_string_value(json_object_get(j, "variant"));
    if (!os || !arch)
        return sbx_error_set(err, SBX_EINVAL, "%s: platform without os or architecture", what);
    if (strlen(os) >= sizeof p->os || strlen(arch) >= sizeof p->architecture ||
        (var && strlen(var) >= sizeof p->variant))
        return sbx_error_set(err, SBX_EINVAL, "%s: platform field too long", what);
    snprintf(p->os, sizeof p->os, "%s", os);
    snprintf(p->architecture, sizeof p->architecture, "%s", arch);
    if (var)
        snprintf(p->variant, sizeof p->variant, "%s", var);
    sbx_platform_normalize(p);
    return 0;
}

static int parse_desc(sbx_descriptor *d, json_t *j, const char *what, bool want_platform,
                      sbx_error *err)
{
    memset(d, 0, sizeof *d);
    if (!json_is_object(j))
        return sbx_error_set(err, SBX_EINVAL, "%s: descriptor is not an object", what);
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    const char *dg = json_string_value(json_object_get(j, "digest"));
    json_t *sz = json_object_get(j, "size");
    if (!dg)
        return sbx_error_set(err, SBX_EINVAL, "%s: descriptor without digest", what);
    if (!sbx__digest_valid(dg))
        return sbx_error_set(err, SBX_EINVAL, "%s: unsupported or invalid digest '%.100s'", what,
                             dg);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return sbx_error_set(err, SBX_EINVAL, "%s: descriptor '%s' without a valid size", what, dg);
    if (mt && strlen(mt) >= sizeof d->media_type)
        return sbx_error_set(err, SBX_EINVAL, "%s: media type too long", what);
    snprintf(d->media_type, sizeof d->media_type, "%s", mt ? mt : "");
    snprintf(d->digest, sizeof d->digest, "%s", dg);
    d->size = (uint64_t)json_integer_value(sz);
    json_t *pl = json_object_get(j, "platform");
    if (want_platform && json_is_object(pl)) {
        int rc = parse_platform(&d->platform, pl, what, err);
        if (rc < 0)
            return rc;
        d->has_platform = true;
    }
    return 0;
}

int sbx_manifest_parse(sbx_manifest *out, const char *content_type, const char *body, size_t len,
                       sbx_error *err)
{
    memset(out, 0, sizeof *out);
    char ct[128];
    base_type(ct, sizeof ct, content_type);
    if (is_schema1(ct) && strcmp(ct, "application/json") != 0)
        return schema1_error(err);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sbx_error_set(err, SBX_EINVAL, "parsing manifest: %s",
                             root ? "not a JSON object" : jerr.text);
    }
    int rc = 0;
    json_t *sv = json_object_get(root, "schemaVersion");
    const char *doc_mt = json_string_value(json_object_get(root, "mediaType"));
    json_t *manifests = json_object_get(root, "manifests");
    json_t *layers = json_object_get(root, "layers");
    const char *mt = NULL;
    if (json_is_integer(sv) && json_integer_value(sv) == 1) {
        rc = schema1_error(err);
        goto out;
    }
    if (sbx_media_is_index(ct) || sbx_media_is_manifest(ct))
        mt = ct;
    else if (sbx_media_is_index(doc_mt) || sbx_media_is_manifest(doc_mt))
        mt = doc_mt;
    else if (json_is_array(manifests))
        mt = SBX_MT_OCI_INDEX;
    else if (json_is_array(layers))
        mt = SBX_MT_OCI_MANIFEST;
    else {
        rc = sbx_error_set(err, SBX_EUNSUPPORTED,
                           "parsing manifest: unsupported media type '%.100s'",
                           ct[0] ? ct : doc_mt ? doc_mt : "(none)");
        goto out;
    }
    if (doc_mt && (sbx_media_is_index(doc_mt) || sbx_media_is_manifest(doc_mt)) &&
        sbx_media_is_index(doc_mt) != sbx_media_is_index(mt)) {
        rc = sbx_error_set(err, SBX_EINVAL,
                           "parsing manifest: served as '%s' but the document says '%s'", mt,
                           doc_mt);
        goto out;
    }
    snprintf(out->media_type, sizeof out->media_type, "%s", mt);
    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        rc = sbx_error_set(err, SBX_EINVAL, "parsing manifest: schemaVersion must be 2");
        goto out;
    }
    if (sbx_media_is_index(mt)) {
        out->kind = SBX_MANIFEST_INDEX;
        if (!json_is_array(manifests)) {
            rc = sbx_error_set(err, SBX_EINVAL, "parsing index: no 'manifests' list");
            goto out;
        }
        size_t n = json_array_size(manifests);
        if (n > SBX_MAX_INDEX_ENTRIES) {
            rc = sbx_error_set(err, SBX_ELIMIT, "parsing index: %zu entries (limit %d)", n,
                               SBX_MAX_INDEX_ENTRIES);
            goto out;
        }
        out->entries = calloc(n ? n : 1, sizeof *out->entries);
        if (!out->entries) {
            rc = sbx_error_set(err, SBX_ENOMEM, "parsing index: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            char what[64];
            snprintf(what, sizeof what, "parsing index entry %zu", i);
            if ((rc = parse_desc(&out->entries[i], json_array_get(manifests, i), what, true, err)) <
                0)
                goto out;
            out->nentries++;
        }
    } else {
        out->kind = SBX_MANIFEST_IMAGE;
        if ((rc = parse_desc(&out->config, json_object_get(root, "config"), "parsing manifest config",
                             false, err)) < 0)
            goto out;
        if (!json_is_array(layers)) {
            rc = sbx_error_set(err, SBX_EINVAL, "parsing manifest: no 'layers' list");
            goto out;
        }
        size_t n = json_array_size(layers);
        if (n > SBX_MAX_LAYERS) {
            rc = sbx_error_set(err, SBX_ELIMIT, "parsing manifest: %zu layers (limit %d)", n,
                               SBX_MAX_LAYERS);
            goto out;
        }
        out->layers = calloc(n ? n : 1, sizeof *out->layers);
        if (!out->layers) {
            rc = sbx_error_set(err, SBX_ENOMEM, "parsing manifest: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            char what[64];
            snprintf(what, sizeof what, "parsing manifest layer %zu", i + 1);
            if ((rc = parse_desc(&out->layers[i], json_array_get(layers, i), what, false, err)) < 0)
                goto out;
            out->nlayers++;
        }
    }
out:
    json_decref(root);
    if (rc < 0)
        sbx_manifest_free(out);
    return rc;
}

void sbx_manifest_free(sbx_manifest *m)
{
    free(m->layers);
    free(m->entries);
    memset(m, 0, sizeof *m);
}

int sbx_manifest_pick(const sbx_descriptor **out, const sbx_manifest *index, const sbx_platform *want,
                      sbx_error *err)
{
    const sbx_descriptor *best = NULL;
    int best_rank = 0;
    for (size_t i = 0; i < index->nentries; i++) {
        const sbx_descriptor *d = &index->entries[i];
        if (!d->has_platform)
            continue;
        int r = img_platform_rank(want, &d->platform);
        if (r > best_rank) {
            best = d;
            best_rank = r;
        }
    }
    if (best) {
        if (sbx_media_is_index(best->media_type))
            return sbx_error_set(err, SBX_EUNSUPPORTED,
                                 "index entry for the platform is itself an index '%s'",
                                 best->digest);
        *out = best;
        return 0;
    }
    char w[100], list[700] = "";
    size_t used = 0;
    for (size_t i = 0; i < index->nentries && used < sizeof list - 40; i++) {
        const sbx_descriptor *d = &index->entries[i];
        if (!d->has_platform || !strcmp(d->platform.os, "unknown"))
            continue;
        char p[100];
        sbx_platform_format(&d->platform, p, sizeof p);
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", p);
    }
    return sbx_error_set(err, SBX_ENOPLATFORM,
                         "no image for platform '%s'; the image has: %s",
                         sbx_platform_format(want, w, sizeof w), used ? list : "(no platforms)");
}

int sbx_image_config_parse(sbx_image_config *out, const char *body, size_t len, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    int rc = 0;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sbx_error_set(err, SBX_EINVAL, "parsing image config: %s",
                             root ? "not a JSON object" : jerr.text);
    }
    const char *os = json_string_value(json_object_get(root, "os"));
    const char *arch = json_string_value(json_object_get(root, "architecture"));
    const char *var = json_string_value(json_object_get(root, "variant"));
    snprintf(out->platform.os, sizeof out->platform.os, "%s", os ? os : "");
    snprintf(out->platform.architecture, sizeof out->platform.architecture, "%s",
             arch ? arch : "");
    snprintf(out->platform.variant, sizeof out->platform.variant, "%s", var ? var : "");
    sbx_platform_normalize(&out->platform);
    json_t *rootfs = json_object_get(root, "rootfs");
    json_t *ids = json_object_get(rootfs, "diff_ids");
    const char *type = json_string_value(json_object_get(rootfs, "type"));
    if (!json_is_array(ids) || (type && strcmp(type, "layers") != 0)) {
        rc = sbx_error_set(err, SBX_EINVAL, "parsing image config: no rootfs.diff_ids list");
        goto out;
    }
    size_t n = json_array_size(ids);
    if (n > SBX_MAX_LAYERS) {
        rc = sbx_error_set(err, SBX_ELIMIT, "parsing image config: %zu diff_ids (limit %d)", n,
                           SBX_MAX_LAYERS);
        goto out;
    }
    out->diff_ids = calloc(n ? n : 1, sizeof(char *));
    if (!out->diff_ids) {
        rc = sbx_error_set(err, SBX_ENOMEM, "parsing image config: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *d = json_string_value(json_array_get(ids, i));
        if (!d || !sbx__digest_valid(d)) {
            rc = sbx_error_set(err, SBX_EINVAL, "parsing image config: diff_id %zu is not a "
                               "sha256 digest", i + 1);
            goto out;
        }
        if (!(out->diff_ids[i] = strdup(d))) {
            rc = sbx_error_set(err, SBX_ENOMEM, "parsing image config: out of memory");
            goto out;
        }
        out->ndiff_ids++;
    }
out:
    json_decref(root);
    if (rc < 0)
        sbx_image_config_free(out);
    return rc;
}

void sbx_image_config_free(sbx_image_config *c)
{
    for (size_t i = 0; i < c->ndiff_ids; i++)
        free(c->diff_ids[i]);
    free(c->diff_ids);
    memset(c, 0, sizeof *c);
}
