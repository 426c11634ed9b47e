/* The per-step build cache (cache.c). */
#ifndef SBX_BUILD_CACHE_H
#define SBX_BUILD_CACHE_H

#include <jansson.h>
#include <stdbool.h>

#include "sbx/builder.h"
#include "sbx/context.h"
#include "sbx/recipe.h"
#include "sbx/store.h"

/* "cache:<key>" into buf; -1 when it does not fit. */
int bld_cache_name(char *buf, size_t len, const char *key);
/* 1 and the state (config owned by the caller, manifest digest) when key is
 * cached completely in the store; 0 otherwise (never an error: a broken
 * entry is a miss and is rebuilt). */
struct sbx_registry_options;
/* A private entry (pulled from a private cache repository) counts only
 * when the caller passes the access check with ro's credentials. */
int bld_cache_lookup(json_t **config_out, char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                     const char *key, const struct sbx_registry_options *ro, const sbx_ctx *ctx);
/* Name the state after a step. */
int bld_cache_store(sbx_store *s, const char *key, const char *digest, sbx_error *err);
/* Bind keys[k] (1..n) at and after the first step that uses build secrets
 * to the values o gives: an HMAC under the store's key of the key and every
 * value so far; bound[k] says which.  Where a step up to k uses a secret o
 * lacks, keys[k] is cleared ("" matches no entry). */
int bld_cache_bind_secrets(char (*keys)[SBX_DIGEST_BUFSZ], bool *bound, size_t n,
                           const sbx_recipe *r, const sbx_build_options *o, sbx_store *s,
                           sbx_error *err);

/* ---- through a registry (cache_registry.c) ---- */
/* A cache repository is host/path without tag or digest. */
int bld_cache_check_repo(const char *repo, sbx_error *err);
/* Look for key's entry in the repositories in order, skipping those
 * marked dead; 1 when one was pulled and named in the store, 0 when none
 * has it.  A repository that fails otherwise than with "not found" is said
 * as a warning and marked dead for the rest of the build. */
int bld_cache_fetch(sbx_store *s, const char *const *repos, bool *dead, size_t nrepos,
                    const char *key, const struct sbx_registry_options *ro, sbx_ctx *ctx,
                    size_t *hit);
/* Push the state the store names cache:<names[i]> to repo, tagged by
 * keys[i], for each i that has one and the repository does not have
 * already (*pushed counts those sent). */
int bld_cache_publish(sbx_store *s, const char *repo, const char *const *keys,
                      const char *const *names, size_t nkeys,
                      const struct sbx_registry_options *ro, sbx_ctx *ctx, size_t *pushed,
                      sbx_error *err);
/* The key a state from cache repository repo (or built on one) is named by
 * in the store: another tenant's --cache-from must not feed a build that
 * does not list the same repository. */
void bld_cache_ns_key(char out[SBX_DIGEST_BUFSZ], const char *key, const char *repo);
/* The platform base (store name `name`, "sbx-base:<suite>-<variant>") as
 * the first of repos that has one published: 1 and its digest (pulled,
 * named in that repository's namespace), or 0. */
int bld_cache_base_fetch(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                         const char *const *repos, size_t nrepos, const char *name,
                         const struct sbx_registry_options *ro, sbx_ctx *ctx);
/* Publish the platform base `digest` to repo unless repo has one already. */
int bld_cache_base_publish(sbx_store *s, const char *repo, const char *name, const char *digest,
                           const struct sbx_registry_options *ro, sbx_ctx *ctx, sbx_error *err);

#endif
