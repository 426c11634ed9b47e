/* The step cache through an OCI registry (build --cache-to / --cache-from).
 *
 * A step's cache entry is an image in the store, the state after the step
 * (cache.c).  Shared through a registry, each entry is that image pushed
 * to the cache repository under the tag "sbx-cache-<key hex>" -- the way
 * kaniko's --cache-repo shares its step cache: any registry keeps it, the
 * layers are blobs like any image's (pushed once, HEAD first, mounted
 * across repositories), and a store that looks for step k's key resolves
 * one tag and pulls only what that state holds and it lacks.
 *
 * Trust: a cache repository maps keys to images; whoever can push there
 * decides what a step "produced".  Give --cache-from only repositories
 * trusted as much as the base image.  In a shared store what came from a
 * repository (and what was built on it) is named in that repository's
 * namespace (bld_cache_ns_key), so it feeds only builds that list it. */
#include <string.h>

#include "build_cache.h"
#include "build_internal.h"
#include "sbx/registry.h"
#include "sbx_common.h"

#define TAG_PREFIX "sbx-cache-"

/* "<repo>:sbx-cache-<hex>" for key; repo is a ref without tag or digest. */
static int cache_ref(char *buf, size_t len, const char *repo, const char *key, sbx_error *err)
{
    sbx_ref r;
    if (sbx_ref_parse(&r, repo, err) < 0)
        return sbx_error_wrap(err, "cache repository '%s'", repo);
    const char *hex = strncmp(key, "sha256:", 7) ? key : key + 7;
    int n = snprintf(buf, len, "%s/%s:" TAG_PREFIX "%s", r.domain, r.path, hex);
    if (n < 0 || (size_t)n >= len)
        return sbx_error_set(err, SBX_ELIMIT, "cache repository '%s': name too long", repo);
    return 0;
}

int bld_cache_check_repo(const char *repo, sbx_error *err)
{
    sbx_ref r;
    if (sbx_ref_parse(&r, repo, err) < 0)
        return sbx_error_wrap(err, "cache repository '%s'", repo);
    const char *last = strrchr(repo, '/');
    if (r.digest[0] || strchr(last ? last : repo, ':'))
        return sbx_error_set(err, SBX_EINVAL, "cache repository '%s': give a repository "
                             "(host/path), without a tag or digest: entries are tagged by step "
                             "key", repo);
    return 0;
}

int bld_cache_fetch(sbx_store *s, const char *const *repos, bool *dead, size_t nrepos,
                    const char *key, const sbx_registry_options *ro, sbx_ctx *ctx,
                    size_t *hit)
{
    for (size_t i = 0; i < nrepos; i++) {
        if (dead[i])
            continue;
        char ref[1024];
        sbx_error e = SBX_ERROR_INIT;
        if (cache_ref(ref, sizeof ref, repos[i], key, &e) < 0)
            continue;
        sbx_pull_result pr;
        memset(&pr, 0, sizeof pr);
        sbx_registry_options o = *ro;
        o.resolve_ttl = 0; /* a tag per key: nothing to cache */
        int rc = sbx_registry_pull(&pr, ref, &o, ctx, &e);
        if (rc < 0) {
            /* a miss is a 404; anything else and the repository is not asked again */
            dead[i] = rc != SBX_ENOTFOUND;
            sbx__log(ctx, rc == SBX_ENOTFOUND ? SBX_LOG_DEBUG : SBX_LOG_WARN,
                     "cache %s: %s", rc == SBX_ENOTFOUND ? "miss" : "not usable", e.msg);
            sbx_pull_result_free(&pr);
            continue;
        }
        /* the entry, under a cache name of that repository's namespace (only
         * builds that list the repository find it); not under the tag */
        char nk[SBX_DIGEST_BUFSZ];
        bld_cache_ns_key(nk, key, repos[i]);
        rc = bld_cache_store(s, nk, pr.digest, &e);
        sbx_error ignore = SBX_ERROR_INIT;
        sbx_store_name_remove(s, pr.ref, &ignore);
        sbx_pull_result_free(&pr);
        if (rc == 0) {
            sbx__log(ctx, SBX_LOG_INFO, "cache hit in %s for step key %.19s", repos[i], key);
            *hit = i;
            return 1;
        }
        sbx__log(ctx, SBX_LOG_WARN, "cache entry from %s not kept: %s", repos[i], e.msg);
    }
    return 0;
}

int bld_cache_publish(sbx_store *s, const char *repo, const char *const *keys,
                      const char *const *names, size_t nkeys, const sbx_registry_options *ro,
                      sbx_ctx *ctx, size_t *pushed, sbx_error *err)
{
    *pushed = 0;
    for (size_t i = 0; i < nkeys; i++) {
        char name[SBX_DIGEST_BUFSZ + 16], digest[SBX_DIGEST_BUFSZ], ref[1024];
        sbx_error e = SBX_ERROR_INIT;
        if (bld_cache_name(name, sizeof name, names[i]) < 0 ||
            sbx_store_name_get(s, name, digest, &e) < 0)
            continue; /* a state this build did not reach (or a base from a registry) */
        if (cache_ref(ref, sizeof ref, repo, keys[i], err) < 0)
            return err->code;
        sbx_push_result pr;
        if (sbx_registry_push(&pr, s, digest, ref, ro, ctx, err) < 0)
            return sbx_error_wrap(err, "publishing the cache entry of step key %.19s", keys[i]);
        (*pushed)++;
    }
    return 0;
}
