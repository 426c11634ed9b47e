/* The step cache: the state after each step is an image manifest in the
 * store, named "cache:<step key>" where the key chains the base's resolved
 * digest and every step's canonical form (sbx_recipe_cache_key).  A hit
 * needs the name, the manifest and every layer it lists; anything less is a
 * miss (a partial hit would fail later in unpack, far from the cause).
 *
 * A lookup only reads: no has_* (each of which is a synced transaction that
 * adds to the process lease).  The name keeps a hit from gc; what a step
 * then builds on is leased when it is unpacked or committed.
 *
 * Many tenants share a store.  An entry is given only to a caller who could
 * have made it: one pulled from a private cache repository needs access to
 * that repository (the same check as any private image); one after a step
 * that used build secrets is found only under a key bound to the secrets'
 * values (bld_cache_bind_secrets), so a build with other values, or none,
 * runs the step itself.
 */
#include <openssl/crypto.h>
#include <string.h>

#include "build_cache.h"
#include "build_internal.h"
#include "sbx/registry.h"
#include "sbx_common.h"

int bld_cache_name(char *buf, size_t len, const char *key)
{
    int n = snprintf(buf, len, "cache:%s", key);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int bld_cache_lookup(json_t **config_out, char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                     const char *key, const struct sbx_registry_options *ro, const sbx_ctx *ctx)
{
    char name[SBX_DIGEST_BUFSZ + 16];
    sbx_error e = SBX_ERROR_INIT;
    if (!key[0] || bld_cache_name(name, sizeof name, key) < 0)
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
    if (sbx_registry_access_check(s, digest_out, ro, &e) < 0) {
        sbx__log(ctx, e.code == SBX_EAUTH ? SBX_LOG_INFO : SBX_LOG_WARN,
                 "cache entry for step key %.19s not used: %s", key, e.msg);
        json_decref(cfg);
        return 0;
    }
    *config_out = cfg;
    return 1;
}

/* One step's secrets into the running hash h: each id and value, lengths
 * first so no two lists hash alike.  false when the build lacks one. */
static bool hash_step_secrets(sbx__sha256 *h, const sbx_step *st, const sbx_build_options *o)
{
    for (size_t i = 0; i < st->n_secrets; i++) {
        const sbx_build_secret *have = NULL;
        for (size_t j = 0; o && j < o->n_secrets && !have; j++)
            if (o->secrets[j].id && !strcmp(o->secrets[j].id, st->secrets[i].id))
                have = &o->secrets[j];
        if (!have)
            return false;
        uint64_t lens[2] = {strlen(have->id), have->len};
        sbx__sha256_update(h, lens, sizeof lens);
        sbx__sha256_update(h, have->id, lens[0]);
        sbx__sha256_update(h, have->value, have->len);
    }
    return true;
}

int bld_cache_bind_secrets(char (*keys)[SBX_DIGEST_BUFSZ], bool *bound, size_t n,
                           const sbx_recipe *r, const sbx_build_options *o, sbx_store *s,
                           sbx_error *err)
{
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    unsigned char skey[32];
    char chain[SBX_DIGEST_BUFSZ] = ""; /* the values of every secret so far */
    bool any = false, missing = false;
    int rc = 0;
    for (size_t k = 1; k <= n && rc == 0; k++) {
        bound[k] = false;
        const sbx_step *st = sbx_recipe_step(r, k - 1);
        if (st->n_secrets && !any) {
            if ((rc = sbx__sha256_new(&h, err)) < 0 || (rc = sbx_store_secret_key(s, skey, err)) < 0)
                break;
            any = true;
        }
        if (!any)
            continue;
        if (st->n_secrets && !missing) {
            sbx__sha256_update(h, chain, strlen(chain));
            missing = !hash_step_secrets(h, st, o);
            sbx__sha256_final(h, chain);
        }
        bound[k] = true;
        if (missing) { /* a step up to here cannot run: no entry for it */
            keys[k][0] = '\0';
            continue;
        }
        char data[2 * SBX_DIGEST_BUFSZ], mac[SBX_SHA256_HEXLEN + 1];
        snprintf(data, sizeof data, "%s\n%s", keys[k], chain);
        if (sbx__hmac_sha256_hex(skey, data, strlen(data), mac) < 0)
            rc = sbx_error_set(err, SBX_EINTERNAL, "binding the cache key to build secrets");
        else
            snprintf(keys[k], SBX_DIGEST_BUFSZ, "sha256:%s", mac);
    }
    OPENSSL_cleanse(skey, sizeof skey);
    OPENSSL_cleanse(chain, sizeof chain);
    return rc;
}

void bld_cache_ns_key(char out[SBX_DIGEST_BUFSZ], const char *key, const char *repo)
{
    _cleanup_free_ char *s = sbx__strdup_printf("%s\nfrom %s", key, repo);
    sbx__sha256_buf(s ? s : "", s ? strlen(s) : 0, out);
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
