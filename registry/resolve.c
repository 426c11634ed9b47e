/* Resolve: ref -> the digest of the image manifest for the platform.
 *
 * HEAD first (cheap, and not counted by registries that rate-limit GETs);
 * an index, or an answer without Docker-Content-Digest, is fetched with GET
 * and verified.  Answers are cached in the store's meta table under
 * "resolve": tags for the TTL ($SBX_RESOLVE_TTL, default 60 s), digest refs
 * forever (what a digest names never changes). */
#include <string.h>

#include "registry_internal.h"


static int64_t ttl_of(const sbx_registry_options *opts)
{
    if (opts && opts->resolve_ttl >= 0)
        return opts->resolve_ttl;
    return sbx__env_int("SBX_RESOLVE_TTL", 60, 0, 365LL * 86400, NULL);
}

/* A cached answer for a private repository is given only to a caller who
 * may pull from it now (access.c); any other caller asks the registry. */
static bool cache_lookup(sbx_resolve_result *out, reg_session *s, sbx_store *store,
                         int64_t ttl)
{
    char key[REG_CACHE_KEY_MAX];
    reg_cache_key(key, sizeof key, &s->ref, &s->want);
    _cleanup_free_ char *val = NULL;
    int64_t stamp = 0;
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store_meta_get(store, "resolve", key, &val, &stamp, &e) < 0 || !val)
        return false;
    bool pinned = s->ref.digest[0] != '\0';
    int64_t age = sbx__now_unix() - stamp;
    if (!pinned && (ttl == 0 || age < 0 || age >= ttl))
        return false;
    char dg[SBX_DIGEST_BUFSZ], mt[128], top[SBX_DIGEST_BUFSZ], vis[16];
    if (sscanf(val, "%71s %127s %71s %15s", dg, mt, top, vis) != 4 || !sbx__digest_valid(dg) ||
        !sbx__digest_valid(top) || (strcmp(vis, "public") && strcmp(vis, "private")))
        return false; /* (an answer from before privacy was recorded: ask again) */
    if (!strcmp(vis, "private")) {
        char repo[REG_REPO_BUFSZ];
        reg_repo_of(repo, sizeof repo, &s->ref);
        sbx_error ae = SBX_ERROR_INIT;
        if (reg_access_check(store, repo, top, s->opts, s->ctx, &ae) < 0) {
            sbx__log(s->ctx, SBX_LOG_DEBUG, "not answering '%s' from the cache: %s", s->ref.str,
                     ae.msg);
            return false;
        }
    }
    snprintf(out->digest, sizeof out->digest, "%s", dg);
    snprintf(out->media_type, sizeof out->media_type, "%s", mt);
    snprintf(out->index_digest, sizeof out->index_digest, "%s", top);
    out->cached = 1;
    return true;
}

static void cache_store(const sbx_resolve_result *r, const reg_session *s, sbx_store *store,
                        bool is_private)
{
    char key[REG_CACHE_KEY_MAX], val[400];
    reg_cache_key(key, sizeof key, &s->ref, &s->want);
    reg_cache_value(val, sizeof val, r->digest, r->media_type, r->index_digest, is_private);
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store_meta_set(store, "resolve", key, val, &e) < 0)
        sbx__log(s->ctx, SBX_LOG_DEBUG, "not caching the answer for '%s': %s", s->ref.str, e.msg);
}

/* One endpoint: HEAD, then GET when needed. */
static int resolve_at(sbx_resolve_result *out, reg_client *c, reg_session *s, sbx_error *err)
{
    reg_resp resp = {.content_length = -1};
    const char *reference = sbx_ref_reference(&s->ref);
    int rc = reg_get_manifest(c, reference, true, &resp, err);
    if (rc < 0 && rc != SBX_ENOTFOUND && rc != SBX_EAUTH && resp.status >= 400 &&
        resp.status < 500 && resp.status != 429) {
        /* a registry (or proxy) that refuses HEAD (405 ...): ask with GET */
        sbx__log(s->ctx, SBX_LOG_DEBUG, "HEAD refused (%s); trying GET", err->msg);
        sbx_error_clear(err);
        reg_resp_clear(&resp);
        rc = 0;
    } else if (rc < 0) {
        reg_resp_clear(&resp);
        return rc;
    }
    char ct[128];
    snprintf(ct, sizeof ct, "%.*s", (int)strcspn(resp.content_type, "; "), resp.content_type);
    bool head_ok = sbx_media_is_manifest(ct) && sbx__digest_valid(resp.docker_digest) &&
                   (!s->ref.digest[0] || !strcmp(resp.docker_digest, s->ref.digest));
    if (!strcmp(ct, SBX_MT_DOCKER_V1) || !strcmp(ct, SBX_MT_DOCKER_V1_SIGNED)) {
        reg_resp_clear(&resp);
        sbx_manifest m;
        return sbx_manifest_parse(&m, SBX_MT_DOCKER_V1, "{}", 2, err);
    }
    if (head_ok) {
        snprintf(out->digest, sizeof out->digest, "%.71s", resp.docker_digest);
        snprintf(out->index_digest, sizeof out->index_digest, "%.71s", resp.docker_digest);
        snprintf(out->media_type, sizeof out->media_type, "%s", ct);
        reg_resp_clear(&resp);
        return 0;
    }
    reg_resp_clear(&resp);
    /* an index (or a registry that does not say): GET and pick */
    rc = reg_get_manifest(c, reference, false, &resp, err);
    char top[SBX_DIGEST_BUFSZ];
    sbx_manifest m = {0};
    if (rc == 0) /* parse first: schema1 is refused as such, not as a digest mismatch */
        rc = sbx_manifest_parse(&m, resp.content_type, resp.body ? resp.body : "", resp.len, err);
    if (rc == 0) {
        sbx__sha256_buf(resp.body ? resp.body : "", resp.len, top);
        if (resp.docker_digest[0] && strcmp(resp.docker_digest, top) != 0)
            rc = sbx_error_set(err, SBX_EDIGEST, "manifest from '%s' has digest '%s' but the "
                               "registry announced '%s'", reg_client_name(c), top,
                               resp.docker_digest);
        else if (s->ref.digest[0] && strcmp(s->ref.digest, top) != 0)
            rc = sbx_error_set(err, SBX_EDIGEST, "manifest from '%s' has digest '%s', expected "
                               "'%s'", reg_client_name(c), top, s->ref.digest);
    }
    reg_resp_clear(&resp);
    if (rc < 0) {
        sbx_manifest_free(&m);
        return rc;
    }
    snprintf(out->index_digest, sizeof out->index_digest, "%s", top);
    if (m.kind == SBX_MANIFEST_IMAGE) {
        snprintf(out->digest, sizeof out->digest, "%s", top);
        snprintf(out->media_type, sizeof out->media_type, "%s", m.media_type);
    } else {
        const sbx_descriptor *d;
        rc = sbx_manifest_pick(&d, &m, &s->want, err);
        if (rc == 0) {
            snprintf(out->digest, sizeof out->digest, "%s", d->digest);
            snprintf(out->media_type, sizeof out->media_type, "%s",
                     d->media_type[0] ? d->media_type : SBX_MT_OCI_MANIFEST);
        }
    }
    sbx_manifest_free(&m);
    return rc;
}

int sbx_registry_resolve_ex(sbx_resolve_result *out, const char *ref,
                            const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    reg_session s;
    int rc = reg_session_init(&s, ref, opts, ctx, err);
    sbx_store *store = opts ? opts->store : NULL;
    int64_t ttl = ttl_of(opts);
    if (rc == 0) {
        snprintf(out->ref, sizeof out->ref, "%s", s.ref.str);
        out->platform = s.want;
    }
    if (rc == 0 && store && cache_lookup(out, &s, store, ttl)) {
        reg_session_free(&s);
        return 0;
    }
    bool is_private = false;
    if (rc == 0) {
        bool mirrors = !strcmp(s.ref.domain, "docker.io");
        size_t n = mirrors ? s.cfg.nmirrors : 0;
        for (size_t i = 0; i <= n; i++) {
            const char *ep = i < n ? s.cfg.mirrors[i] : "";
            reg_client *c = NULL;
            sbx_error_clear(err);
            rc = reg_client_new(&c, &s.ref, ep, opts, &s.cfg, ctx, err);
            if (rc == 0)
                rc = resolve_at(out, c, &s, err);
            if (rc == 0) {
                reg_client_remember(c, store);
                char repo[REG_REPO_BUFSZ];
                reg_repo_of(repo, sizeof repo, &s.ref);
                reg_access_learn(&is_private, c, store, repo, out->index_digest, opts);
            }
            reg_client_free(c);
            if (rc == 0)
                break;
            if (i < n) {
                char buf[1400], shown[1200];
                sbx__log(ctx, SBX_LOG_WARN, "mirror '%s' failed (%s); trying the next source",
                        sbx__url_redact(shown, sizeof shown, ep, true),
                        sbx_error_format(err, buf, sizeof buf));
            }
        }
    }
    if (rc == 0 && store && (ttl > 0 || s.ref.digest[0]))
        cache_store(out, &s, store, is_private);
    if (rc < 0) {
        if (s.parsed)
            sbx_error_wrap(err, "resolving '%s'", s.ref.str);
        if (!err->where[0])
            sbx_error_where(err, "%s", s.ref.str[0] ? s.ref.str : ref);
    }
    reg_session_free(&s);
    return rc;
}

int sbx_registry_resolve(char digest_out[SBX_DIGEST_BUFSZ], const char *ref,
                         const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    sbx_resolve_result r;
    int rc = sbx_registry_resolve_ex(&r, ref, opts, ctx, err);
    if (rc == 0)
        memcpy(digest_out, r.digest, SBX_DIGEST_BUFSZ);
    return rc;
}
