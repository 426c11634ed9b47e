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
        /* incremental: an entry the repository has (one manifest HEAD) is
         * not pushed again, so publishing costs one request per entry and
         * the blobs of the new ones, however many entries there are */
        char there[SBX_DIGEST_BUFSZ];
        sbx_registry_options o = *ro;
        o.resolve_ttl = 0;
        if (sbx_registry_resolve(there, ref, &o, ctx, &e) == 0 && !strcmp(there, digest))
            continue;
        sbx_push_result pr;
        if (sbx_registry_push(&pr, s, digest, ref, ro, ctx, err) < 0)
            return sbx_error_wrap(err, "publishing the cache entry of step key %.19s", keys[i]);
        (*pushed)++;
    }
    return 0;
}

/* ---- the platform base through the cache repositories ------------------------
 *
 * base: sbx is made in each store with debootstrap, so two hosts' bases
 * differ, and so does every step key chained from them: --cache-from alone
 * would never hit for the platform's default base.  So --cache-to also
 * publishes the store's base, as "<repo>:sbx-base-<suite>-<variant>-<arch>"
 * (once: a base already there is not replaced, since keys chain from it;
 * two hosts publishing at the same moment race, and the later wins), and a
 * build with --cache-from uses the base of the first listed repository that
 * has one (and answers) instead of its own.  It is named in that repository's namespace
 * (like the entries), so only builds that list the repository use it. */

static int base_ref(char *buf, size_t len, const char *repo, const char *name, sbx_error *err)
{
    sbx_ref r;
    if (sbx_ref_parse(&r, repo, err) < 0)
        return sbx_error_wrap(err, "cache repository '%s'", repo);
    sbx_platform host;
    sbx_platform_host(&host);
    /* name is "sbx-base:<suite>-<variant>": a tag of letters, digits, -_. */
    const char *word = strchr(name, ':') ? strchr(name, ':') + 1 : name;
    int n = snprintf(buf, len, "%s/%s:sbx-base-%s-%s", r.domain, r.path, word,
                     host.architecture);
    if (n < 0 || (size_t)n >= len)
        return sbx_error_set(err, SBX_ELIMIT, "cache repository '%s': name too long", repo);
    return 0;
}

/* The store name of repo's base: "cache-base:<ns key of name and repo>". */
static void base_store_name(char *buf, size_t len, const char *name, const char *repo)
{
    char nk[SBX_DIGEST_BUFSZ];
    bld_cache_ns_key(nk, name, repo);
    snprintf(buf, len, "cache-base:%s", nk + 7);
}

int bld_cache_base_fetch(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                         const char *const *repos, size_t nrepos, const char *name,
                         const sbx_registry_options *ro, sbx_ctx *ctx)
{
    for (size_t i = 0; i < nrepos; i++) {
        char sname[SBX_DIGEST_BUFSZ + 16], ref[1024];
        sbx_error e = SBX_ERROR_INIT;
        base_store_name(sname, sizeof sname, name, repos[i]);
        if (sbx_store_name_get(s, sname, digest_out, &e) == 0 &&
            sbx_image_readable(s, digest_out)) {
            /* one tenant's pull of a private repository's base is another's
             * only when the registry accepts that one's credentials too */
            if (sbx_registry_access_check(s, digest_out, ro, &e) == 0)
                return 1;
            sbx__log(ctx, SBX_LOG_DEBUG, "the platform base from %s: %s", repos[i], e.msg);
        }
        sbx_error_clear(&e);
        if (base_ref(ref, sizeof ref, repos[i], name, &e) < 0)
            continue;
        sbx_pull_result pr;
        memset(&pr, 0, sizeof pr);
        sbx_registry_options o = *ro;
        o.resolve_ttl = 0;
        int rc = sbx_registry_pull(&pr, ref, &o, ctx, &e);
        if (rc == 0) {
            snprintf(digest_out, SBX_DIGEST_BUFSZ, "%s", pr.digest);
            rc = sbx_store_name_set(s, sname, pr.digest, &e);
            sbx_error ignore = SBX_ERROR_INIT;
            sbx_store_name_remove(s, pr.ref, &ignore);
        }
        sbx_pull_result_free(&pr);
        if (rc == 0) {
            sbx__log(ctx, SBX_LOG_INFO, "the platform base from %s (%.19s)", repos[i],
                     digest_out);
            return 1;
        }
        sbx__log(ctx, rc == SBX_ENOTFOUND ? SBX_LOG_DEBUG : SBX_LOG_WARN,
                 "no platform base from %s: %s", repos[i], e.msg);
    }
    return 0;
}

int bld_cache_base_publish(sbx_store *s, const char *repo, const char *name, const char *digest,
                           const sbx_registry_options *ro, sbx_ctx *ctx, sbx_error *err)
{
    char ref[1024], there[SBX_DIGEST_BUFSZ];
    if (base_ref(ref, sizeof ref, repo, name, err) < 0)
        return err->code;
    sbx_registry_options o = *ro;
    o.resolve_ttl = 0;
    sbx_error e = SBX_ERROR_INIT;
    int rc = sbx_registry_resolve(there, ref, &o, ctx, &e);
    if (rc == 0) {
        if (strcmp(there, digest) != 0)
            sbx__log(ctx, SBX_LOG_INFO, "cache: %s already holds another platform base (%.19s); "
                     "kept (builds with --cache-from %s use it)", ref, there, repo);
        return 0;
    }
    if (rc != SBX_ENOTFOUND) {
        *err = e;
        return sbx_error_wrap(err, "publishing the platform base");
    }
    sbx_push_result pr;
    if (sbx_registry_push(&pr, s, digest, ref, ro, ctx, err) < 0)
        return sbx_error_wrap(err, "publishing the platform base");
    sbx__log(ctx, SBX_LOG_INFO, "cache: the platform base published as %s", ref);
    return 0;
}
