/* Pull: manifests, config and layers into the store.
 *
 * Order of writes (so nothing points at what is not stored): config blob,
 * layers (each verified, see blob.c), the image manifest with its children,
 * the index (when the ref names one) with the chosen manifest as its child,
 * then the name.  Layers the store already has (by blob digest or diff_id)
 * are not downloaded.  Missing layers download on worker threads, each with
 * its own store handle and curl handle; the handles stay open until the
 * manifest is stored, so their leases keep fresh layers from gc meanwhile. */
#include <string.h>

#include "registry_internal.h"

#define DEFAULT_PARALLEL 2
#define MAX_PARALLEL 8

void sbx_pull_result_free(sbx_pull_result *r)
{
    if (!r)
        return;
    free(r->layers);
    r->layers = NULL;
    r->nlayers = 0;
}

static void short_id(const char *digest, char *buf, size_t len)
{
    snprintf(buf, len, "%.19s", digest); /* "sha256:" + 12 hex */
}

/* ---- layer downloads ------------------------------------------------------- */

typedef struct job {
    const sbx_descriptor *desc;
    const char *diff_id;
    char pid[32];
} job;

static int download_one(void *ud, size_t i, reg_client *c, sbx_store *store, sbx_error *err)
{
    const job *j = &((const job *)ud)[i];
    return reg_pull_layer(c, store, j->desc, j->diff_id, j->pid, err);
}

/* ---- resolve cache (shared with resolve.c) ------------------------------------ */

void reg_cache_key(char *buf, size_t len, const sbx_ref *ref, const sbx_platform *want)
{
    char p[100];
    snprintf(buf, len, "%s %s", ref->str, sbx_platform_format(want, p, sizeof p));
}

void reg_cache_value(char *buf, size_t len, const char *digest, const char *media_type,
                     const char *top, bool is_private)
{
    snprintf(buf, len, "%s %s %s %s", digest, media_type, top, is_private ? "private" : "public");
}

/* Before anything is stored: where it all comes from, and whether an
 * anonymous caller could have it (access.c). */
static int record_origin(reg_client *c, reg_session *s, sbx_store *store, const reg_fetched *f,
                         const sbx_image_config *ic, bool *is_private, sbx_error *err)
{
    char repo[REG_REPO_BUFSZ];
    reg_repo_of(repo, sizeof repo, &s->ref);
    reg_access_learn(is_private, c, store, repo, f->top_digest, s->opts);
    const char **d = calloc(ic->ndiff_ids + 3, sizeof *d);
    if (!d)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    size_t n = 0;
    d[n++] = f->top_digest;
    if (strcmp(f->digest, f->top_digest) != 0)
        d[n++] = f->digest;
    d[n++] = f->image.config.digest;
    for (size_t i = 0; i < ic->ndiff_ids; i++)
        d[n++] = ic->diff_ids[i];
    int rc = sbx_store_origin_set(store, d, n, repo, f->top_digest, *is_private, err);
    free(d);
    return rc;
}

/* ---- pull ----------------------------------------------------------------------- */

static int fetch_config(char **cfg, size_t *cfg_len, sbx_image_config *ic, reg_client *c,
                        sbx_store *store, const sbx_manifest *m, sbx_error *err)
{
    if (m->config.size > SBX_CONFIG_MAX)
        return sbx_error_set(err, SBX_ELIMIT, "image config '%s' declares %llu bytes (limit %u)",
                             m->config.digest, (unsigned long long)m->config.size, SBX_CONFIG_MAX);
    int rc = -1;
    sbx_error e = SBX_ERROR_INIT;
    int have = sbx_store_has_blob(store, m->config.digest, err);
    if (have < 0)
        return have;
    if (have == 1)
        rc = sbx_store_read_blob(store, m->config.digest, SBX_CONFIG_MAX, cfg, cfg_len, &e);
    if (rc < 0)
        rc = reg_get_blob_small(c, m->config.digest, SBX_CONFIG_MAX, cfg, cfg_len, err);
    if (rc < 0)
        return rc;
    if ((rc = sbx_image_config_parse(ic, *cfg, *cfg_len, err)) < 0)
        return rc;
    if (ic->ndiff_ids != m->nlayers)
        return sbx_error_set(err, SBX_EINVAL,
                             "image config lists %zu diff_ids but the manifest has %zu layers",
                             ic->ndiff_ids, m->nlayers);
    return 0;
}

/* Is layer i already stored?  Records the source when found by diff_id.
 * A layer stored unchecked (another image's blob, not yet read) counts when
 * it is this very blob, or when it checks out now (read from the store,
 * cheaper than a download); one that does not is replaced by this image's
 * blob, downloaded and checked.  So no image's claim of a diff_id decides
 * what another image gets. */
static int layer_present(sbx_store *store, const sbx_descriptor *d, const char *diff_id, bool *present,
                         sbx_error *err)
{
    char have[SBX_DIGEST_BUFSZ];
    sbx_error e = SBX_ERROR_INIT;
    *present = false;
    bool known = sbx_store_layer_by_source(store, d->digest, have, &e) == 0 &&
                 !strcmp(have, diff_id);
    sbx_layer_info info;
    int r = sbx_store_layer_info(store, diff_id, &info, err);
    if (r == SBX_ENOTFOUND) {
        sbx_error_clear(err);
        return 0;
    }
    if (r < 0)
        return r;
    if (!info.verified && strcmp(info.stored_digest, d->digest) == 0) {
        *present = true; /* this very blob: checked at its first read */
        return 0;
    }
    if (!info.verified && (r = sbx_store_layer_trusted(store, diff_id, err)) <= 0)
        return r; /* not this layer: this image's blob is downloaded and replaces it */
    *present = true;
    return known ? 0
                 : sbx_store_layer_add_source(store, diff_id, d->digest, d->media_type, d->size,
                                              err);
}

static int pull_image(sbx_pull_result *out, reg_session *s, sbx_store *store, sbx_error *err)
{
    reg_fetched f;
    reg_client *c = NULL;
    int rc = reg_fetch_image(&f, &c, s, err);
    if (rc < 0)
        return rc;
    const sbx_manifest *m = &f.image;
    _cleanup_free_ char *cfg = NULL;
    size_t cfg_len = 0;
    sbx_image_config ic = {0};
    job *jobs = NULL;
    sbx_store_child *children = NULL;
    reg_workers *ws = NULL;
    if ((rc = fetch_config(&cfg, &cfg_len, &ic, c, store, m, err)) < 0)
        goto out;
    if (f.top.kind == SBX_MANIFEST_IMAGE && s->opts->platform && *s->opts->platform &&
        ic.platform.architecture[0] && !sbx_platform_match(&s->want, &ic.platform)) {
        char w[100], h[100];
        rc = sbx_error_set(err, SBX_ENOPLATFORM, "no image for platform '%s'; the image has: %s",
                           sbx_platform_format(&s->want, w, sizeof w),
                           sbx_platform_format(&ic.platform, h, sizeof h));
        goto out;
    }
    bool is_private = false;
    if ((rc = record_origin(c, s, store, &f, &ic, &is_private, err)) < 0)
        goto out;
    if ((rc = sbx_store_put_blob(store, cfg, cfg_len,
                                 m->config.media_type[0] ? m->config.media_type : SBX_MT_OCI_CONFIG,
                                 m->config.digest, NULL, err)) < 0)
        goto out;

    out->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *out->layers);
    jobs = calloc(m->nlayers ? m->nlayers : 1, sizeof *jobs);
    children = calloc(m->nlayers + 1, sizeof *children);
    if (!out->layers || !jobs || !children) {
        rc = sbx_error_set(err, SBX_ENOMEM, "out of memory");
        goto out;
    }
    size_t njobs = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        const sbx_descriptor *d = &m->layers[i];
        sbx_pull_layer *l = &out->layers[i];
        snprintf(l->digest, sizeof l->digest, "%s", d->digest);
        snprintf(l->diff_id, sizeof l->diff_id, "%s", ic.diff_ids[i]);
        snprintf(l->media_type, sizeof l->media_type, "%s", d->media_type);
        l->size = d->size;
        out->nlayers++;
        if (strstr(d->media_type, "foreign") || strstr(d->media_type, "nondistributable")) {
            rc = sbx_error_set(err, SBX_EUNSUPPORTED, "layer %zu '%s' is a foreign layer ('%s')",
                               i + 1, d->digest, d->media_type);
            goto out;
        }
        bool present;
        if ((rc = layer_present(store, d, ic.diff_ids[i], &present, err)) < 0)
            goto out;
        bool dup = false;
        for (size_t k = 0; k < njobs; k++)
            if (!strcmp(jobs[k].desc->digest, d->digest))
                dup = true;
        l->present = present;
        char pid[32];
        short_id(d->digest, pid, sizeof pid);
        if (present)
            sbx__progress(s->ctx, pid, "present", d->size, d->size);
        else if (!dup) {
            jobs[njobs].desc = d;
            jobs[njobs].diff_id = ic.diff_ids[i];
            snprintf(jobs[njobs].pid, sizeof jobs[njobs].pid, "%s", pid);
            njobs++;
        }
    }
    unsigned par = s->opts->parallel ? s->opts->parallel : DEFAULT_PARALLEL;
    if (par > MAX_PARALLEL)
        par = MAX_PARALLEL;
    if ((rc = reg_run_jobs(njobs, par, c, store, true, download_one, jobs, &ws, err)) < 0)
        goto out;

    children[0].kind = SBX_CHILD_BLOB;
    children[0].digest = m->config.digest;
    for (size_t i = 0; i < m->nlayers; i++) {
        children[i + 1].kind = SBX_CHILD_LAYER;
        children[i + 1].digest = ic.diff_ids[i];
    }
    if ((rc = sbx_store_put_manifest(store, f.raw, f.len, f.media_type, f.digest, children,
                                     m->nlayers + 1, NULL, err)) < 0)
        goto out;
    if (f.top.kind == SBX_MANIFEST_INDEX) {
        sbx_store_child idx_child = {SBX_CHILD_MANIFEST, f.digest};
        if ((rc = sbx_store_put_manifest(store, f.top_raw, f.top_len, f.top_media_type,
                                         f.top_digest, &idx_child, 1, NULL, err)) < 0)
            goto out;
    }
    /* The name points at what the ref names: the index of a multi-platform
     * image, so every platform pulled under it stays reachable and
     * unpack/mount/export --platform pick theirs (a name per platform
     * manifest made the last pull win). */
    if ((rc = sbx_store_name_set(store, s->ref.str, f.top_digest, err)) < 0)
        goto out;
    /* the pull answers resolve too */
    char key[REG_CACHE_KEY_MAX], val[400];
    reg_cache_key(key, sizeof key, &s->ref, &s->want);
    reg_cache_value(val, sizeof val, f.digest, f.media_type, f.top_digest, is_private);
    sbx_error cerr = SBX_ERROR_INIT;
    sbx_store_meta_set(store, "resolve", key, val, &cerr);
    sbx_store_meta_set(store, REG_META_TOP, s->ref.str, f.top_digest, &cerr);

    snprintf(out->ref, sizeof out->ref, "%s", s->ref.str);
    snprintf(out->digest, sizeof out->digest, "%s", f.digest);
    snprintf(out->media_type, sizeof out->media_type, "%s", f.media_type);
    snprintf(out->index_digest, sizeof out->index_digest, "%s", f.top_digest);
    snprintf(out->config, sizeof out->config, "%s", m->config.digest);
    out->platform = ic.platform.architecture[0] ? ic.platform : s->want;
out:
    reg_workers_free(ws);
    free(children);
    free(jobs);
    sbx_image_config_free(&ic);
    reg_fetched_free(&f);
    reg_client_free(c);
    return rc;
}

int sbx_registry_pull(sbx_pull_result *out, const char *ref, const sbx_registry_options *opts,
                      sbx_ctx *ctx, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!opts || !opts->store)
        return sbx_error_set(err, SBX_EINVAL, "pulling '%s': no store given", ref ? ref : "");
    reg_session s;
    int rc = reg_session_init(&s, ref, opts, ctx, err);
    if (rc == 0)
        rc = pull_image(out, &s, opts->store, err);
    if (rc < 0) {
        sbx_pull_result_free(out);
        if (s.parsed)
            sbx_error_wrap(err, "pulling '%s'", s.ref.str);
        if (!err->where[0])
            sbx_error_where(err, "%s", s.ref.str[0] ? s.ref.str : ref);
    }
    reg_session_free(&s);
    return rc;
}
