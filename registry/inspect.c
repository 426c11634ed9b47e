/* Inspect: describe an image from the store when it has it (by store name,
 * normalized ref, or pinned digest), else from the registry (manifests and
 * config only; no layer is downloaded).  Private content in the store is
 * shown only to a caller whose credentials the registry accepts for it. */
#include <string.h>

#include "registry_internal.h"


void sbx_image_info_free(sbx_image_info *info)
{
    if (!info)
        return;
    free(info->top_raw);
    free(info->platforms);
    free(info->manifest_raw);
    free(info->config_raw);
    free(info->layers);
    free(info);
}

static int fill_platforms(sbx_image_info *info, const sbx_manifest *idx, sbx_error *err)
{
    if (idx->kind != SBX_MANIFEST_INDEX)
        return 0;
    info->platforms = calloc(idx->nentries ? idx->nentries : 1, sizeof *info->platforms);
    if (!info->platforms)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    for (size_t i = 0; i < idx->nentries; i++) {
        sbx_image_platform *p = &info->platforms[i];
        p->platform = idx->entries[i].platform;
        snprintf(p->digest, sizeof p->digest, "%s", idx->entries[i].digest);
        snprintf(p->media_type, sizeof p->media_type, "%s", idx->entries[i].media_type);
        p->size = idx->entries[i].size;
    }
    info->nplatforms = idx->nentries;
    return 0;
}

/* Config and layers, given the platform manifest; store may be NULL. */
static int fill_image(sbx_image_info *info, const sbx_manifest *m, sbx_store *store,
                      sbx_error *err)
{
    snprintf(info->config_digest, sizeof info->config_digest, "%s", m->config.digest);
    sbx_image_config ic;
    int rc = sbx_image_config_parse(&ic, info->config_raw, info->config_len, err);
    if (rc < 0)
        return rc;
    info->platform = ic.platform;
    info->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *info->layers);
    if (!info->layers) {
        sbx_image_config_free(&ic);
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->nlayers; i++) {
        sbx_pull_layer *l = &info->layers[i];
        snprintf(l->digest, sizeof l->digest, "%s", m->layers[i].digest);
        snprintf(l->media_type, sizeof l->media_type, "%s", m->layers[i].media_type);
        l->size = m->layers[i].size;
        if (i < ic.ndiff_ids)
            snprintf(l->diff_id, sizeof l->diff_id, "%s", ic.diff_ids[i]);
        l->present = store && l->diff_id[0] && sbx_store_has_layer(store, l->diff_id, NULL) == 1;
    }
    info->nlayers = m->nlayers;
    sbx_image_config_free(&ic);
    return 0;
}

/* Read a manifest from the store and parse it. */
static int store_manifest(sbx_store *store, const char *digest, char **raw, size_t *len,
                          sbx_manifest *m, sbx_error *err)
{
    int rc = sbx_store_read_blob(store, digest, SBX_MANIFEST_MAX, raw, len, err);
    if (rc == 0)
        rc = sbx_manifest_parse(m, NULL, *raw, *len, err);
    return rc;
}

/* prefer: the manifest the store's name points to, shown from an index
 * unless a platform was asked for explicitly (NULL then). */
static int from_store(sbx_image_info *info, sbx_store *store, const char *top_digest,
                      const sbx_platform *want, const char *prefer, sbx_error *err)
{
    info->from_store = 1;
    sbx_manifest top = {0}, img = {0};
    int rc = store_manifest(store, top_digest, &info->top_raw, &info->top_len, &top, err);
    if (rc < 0)
        goto out;
    snprintf(info->top_digest, sizeof info->top_digest, "%s", top_digest);
    snprintf(info->top_media_type, sizeof info->top_media_type, "%s", top.media_type);
    if (top.kind == SBX_MANIFEST_INDEX) {
        const sbx_descriptor *d = NULL;
        if ((rc = fill_platforms(info, &top, err)) < 0)
            goto out;
        for (size_t i = 0; prefer && i < top.nentries; i++)
            if (!strcmp(top.entries[i].digest, prefer))
                d = &top.entries[i];
        if (!d && (rc = sbx_manifest_pick(&d, &top, want, err)) < 0)
            goto out;
        snprintf(info->digest, sizeof info->digest, "%s", d->digest);
        if ((rc = store_manifest(store, d->digest, &info->manifest_raw, &info->manifest_len, &img,
                                 err)) < 0)
            goto out;
    } else {
        snprintf(info->digest, sizeof info->digest, "%s", top_digest);
        if (!(info->manifest_raw = malloc(info->top_len + 1))) {
            rc = sbx_error_set(err, SBX_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(info->manifest_raw, info->top_raw, info->top_len + 1);
        info->manifest_len = info->top_len;
        if ((rc = sbx_manifest_parse(&img, NULL, info->manifest_raw, info->manifest_len, err)) < 0)
            goto out;
    }
    snprintf(info->media_type, sizeof info->media_type, "%s", img.media_type);
    if ((rc = sbx_store_read_blob(store, img.config.digest, SBX_CONFIG_MAX, &info->config_raw,
                                  &info->config_len, err)) < 0)
        goto out;
    rc = fill_image(info, &img, store, err);
out:
    sbx_manifest_free(&top);
    sbx_manifest_free(&img);
    return rc;
}

static int from_registry(sbx_image_info *info, reg_session *s, sbx_store *store, sbx_error *err)
{
    reg_fetched f;
    reg_client *c = NULL;
    int rc = reg_fetch_image(&f, &c, s, err);
    if (rc < 0)
        return rc;
    snprintf(info->top_digest, sizeof info->top_digest, "%s", f.top_digest);
    snprintf(info->top_media_type, sizeof info->top_media_type, "%s", f.top_media_type);
    snprintf(info->digest, sizeof info->digest, "%s", f.digest);
    snprintf(info->media_type, sizeof info->media_type, "%s", f.media_type);
    info->top_raw = SBX_STEAL(f.top_raw);
    info->top_len = f.top_len;
    info->manifest_raw = SBX_STEAL(f.raw);
    info->manifest_len = f.len;
    if ((rc = fill_platforms(info, &f.top, err)) == 0) {
        const sbx_manifest *m = &f.image;
        if (m->config.size > SBX_CONFIG_MAX)
            rc = sbx_error_set(err, SBX_ELIMIT, "image config declares %llu bytes (limit %u)",
                               (unsigned long long)m->config.size, SBX_CONFIG_MAX);
        else
            rc = reg_get_blob_small(c, m->config.digest, SBX_CONFIG_MAX, &info->config_raw,
                                    &info->config_len, err);
        if (rc == 0)
            rc = fill_image(info, m, store, err);
    }
    reg_fetched_free(&f);
    reg_client_free(c);
    return rc;
}

/* What the store knows for this argument: a top digest to start from. */
static bool store_lookup(char top[SBX_DIGEST_BUFSZ], char named[SBX_DIGEST_BUFSZ],
                         sbx_store *store, const char *arg, const reg_session *s, bool parsed)
{
    /* Best effort: what the store cannot answer, the registry is asked. */
    sbx_error e = SBX_ERROR_INIT;
    named[0] = '\0';
    /* a manifest digest, as build prints it */
    if (sbx__digest_valid(arg) && sbx_store_has_blob(store, arg, &e) == 1) {
        snprintf(top, SBX_DIGEST_BUFSZ, "%s", arg);
        return true;
    }
    if (parsed && s->ref.digest[0] && sbx_store_has_blob(store, s->ref.digest, &e) == 1) {
        snprintf(top, SBX_DIGEST_BUFSZ, "%s", s->ref.digest);
        return true;
    }
    if (parsed && sbx_store_name_get(store, s->ref.str, top, &e) == 0) {
        snprintf(named, SBX_DIGEST_BUFSZ, "%s", top);
        /* the manifest the ref named at the last pull (an index), when still stored */
        _cleanup_free_ char *val = NULL;
        int64_t stamp;
        if (sbx_store_meta_get(store, REG_META_TOP, s->ref.str, &val, &stamp, &e) == 0 && val &&
            sbx__digest_valid(val) && sbx_store_has_blob(store, val, &e) == 1)
            snprintf(top, SBX_DIGEST_BUFSZ, "%s", val);
        return true;
    }
    /* the literal name, or a digest prefix as `images` prints it */
    return sbx_image_lookup(top, NULL, 0, store, arg, &e) == 0;
}

int sbx_registry_inspect(sbx_image_info **out, const char *ref, const sbx_registry_options *opts,
                         sbx_ctx *ctx, sbx_error *err)
{
    *out = NULL;
    sbx_image_info *info = calloc(1, sizeof *info);
    if (!info)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    sbx_store *store = opts ? opts->store : NULL;
    reg_session s;
    sbx_error perr = SBX_ERROR_INIT;
    int prc = reg_session_init(&s, ref, opts, ctx, &perr);
    bool parsed = prc == 0;
    if (!parsed && !s.want.architecture[0])
        sbx_platform_host(&s.want);
    int rc;
    char top[SBX_DIGEST_BUFSZ];
    /* a bare manifest digest is not the ref "docker.io/library/sha256:<hex>" */
    bool is_digest = sbx__digest_valid(ref);
    snprintf(info->ref, sizeof info->ref, "%s", parsed && !is_digest ? s.ref.str : ref);
    rc = SBX_ENOTFOUND;
    char named[SBX_DIGEST_BUFSZ] = "";
    bool local = store && store_lookup(top, named, store, ref, &s, parsed);
    bool explicit_platform = opts && opts->platform && *opts->platform;
    bool wrapped = false; /* the message already says "inspecting" */
    if (local && (rc = sbx_registry_access_check(store, top, opts, err)) < 0) {
        sbx_error_wrap(err, "inspecting '%s'", ref);
        wrapped = true; /* private, and the caller has not shown it may see it */
    } else if (local) {
        rc = from_store(info, store, top, &s.want, named[0] && !explicit_platform ? named : NULL,
                        err);
    }
    if (local && rc == SBX_ENOTFOUND && parsed) {
        /* partly stored (say, another platform's manifest only): ask the registry */
        sbx_image_info_free(info);
        info = calloc(1, sizeof *info);
        if (!info) {
            rc = sbx_error_set(err, SBX_ENOMEM, "out of memory");
        } else {
            snprintf(info->ref, sizeof info->ref, "%s", s.ref.str);
            sbx_error_clear(err);
            local = false;
        }
    }
    if (wrapped) {
    } else if (!local && is_digest) {
        rc = sbx_error_set(err, SBX_ENOTFOUND, "inspecting '%s': the store has no manifest with "
                           "that digest (name a ref to ask a registry)", ref);
        wrapped = true;
    } else if (!local && !parsed) {
        *err = perr;
        rc = perr.code;
        if (store && s.parsed) /* the ref is fine; its platform or the config is not */
            sbx_error_wrap(err, "inspecting '%s'", ref);
    } else if (!local) {
        rc = from_registry(info, &s, store, err);
    }
    if (rc < 0) {
        if (parsed && !wrapped)
            sbx_error_wrap(err, "inspecting '%s'", s.ref.str);
        if (!err->where[0])
            sbx_error_where(err, "%s", parsed && !is_digest ? s.ref.str : ref);
        sbx_image_info_free(info);
    } else {
        *out = info;
    }
    reg_session_free(&s);
    return rc;
}
