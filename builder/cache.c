/* The step cache: the state after each step is an image manifest in the
 * store, named "cache:<step key>" where the key chains the base's resolved
 * digest and every step's canonical form (sbx_recipe_cache_key).  A hit
 * needs the name, the manifest and every layer it lists; anything less is a
 * miss (a partial hit would fail later in unpack, far from the cause).
 *
 * A lookup only reads: no has_* (each of which is a synced transaction that
 * adds to the process lease).  The name keeps a hit from gc; what a step
 * then builds on is leased when it is unpacked or committed.
 */
#include <string.h>

#include "build_cache.h"
#include "build_internal.h"
#include "sbx_common.h"

int bld_cache_name(char *buf, size_t len, const char *key)
{
    int n = snprintf(buf, len, "cache:%s", key);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int bld_cache_lookup(json_t **config_out, char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                     const char *key, const sbx_ctx *ctx)
{
    char name[SBX_DIGEST_BUFSZ + 16];
    sbx_error e = SBX_ERROR_INIT;
    if (bld_cache_name(name, sizeof name, key) < 0)
        return 0;
    if (sbx_store_name_get(s, name, digest_out, &e) < 0)
        return 0;
    json_t *cfg = NULL;
    if (bld_config_load(&cfg, s, digest_out, &e) < 0) {
        sbx__log(ctx, SBX_LOG_DEBUG, "cache entry '%s' unusable: %s", name, e.msg);
        return 0;
    }
    size_t n = bld_config_nlayers(cfg);
    for (size_t i = 0; i < n; i++) {
        const char *l = bld_config_layer(cfg, i);
        sbx_layer_info info;
        char path[4096];
        if (!l || sbx_store_layer_info(s, l, &info, &e) < 0 ||
            sbx_store_layer_path(s, l, path, sizeof path, &e) < 0) {
            sbx__log(ctx, SBX_LOG_DEBUG, "cache entry '%s' misses layer %zu", name, i + 1);
            json_decref(cfg);
            return 0;
        }
    }
    *config_out = cfg;
    return 1;
}

int bld_cache_store(sbx_store *s, const char *key, const char *digest, sbx_error *err)
{
    char name[SBX_DIGEST_BUFSZ + 16];
    if (bld_cache_name(name, sizeof name, key) < 0)
        return sbx_error_set(err, SBX_EINVAL, "bad cache key '%s'", key);
    char cur[SBX_DIGEST_BUFSZ];
    sbx_error e2 = SBX_ERROR_INIT;
    if (sbx_store_name_get(s, name, cur, &e2) == 0 && !strcmp(cur, digest))
        return 0; /* --no-cache rebuilt the same state */
    return sbx_store_name_set(s, name, digest, err);
}
