/* Bases of a build (base.c). */
#ifndef SBX_BUILD_BASE_H
#define SBX_BUILD_BASE_H

#include "sbx/builder.h"
#include "sbx/recipe.h"
#include "sbx/store.h"

typedef struct bld_base_params {
    char suite[64], variant[64], mirror[512];
    char name[160]; /* "sbx-base:bookworm-minbase" */
} bld_base_params;

/* base: sbx parameters from opts, the environment and the host's apt sources. */
int bld_base_sbx_params(bld_base_params *out, const sbx_build_options *opts);

/* The caller's registry settings and credentials (opts->registry, else the
 * defaults) for this store and the build's platform. */
struct sbx_registry_options;
void bld_registry_opts(struct sbx_registry_options *ro, sbx_store *store,
                       const sbx_build_options *opts);
/* The manifest digest the base stands for, without downloading layers:
 * registry bases are resolved (resolve cache applies), image bases looked up,
 * the sbx base built if missing.  SBX_ENOTFOUND for a missing image base. */
int bld_base_resolve(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                     const sbx_recipe_base *base, const sbx_build_options *opts,
                     sbx_ctx *ctx, sbx_error *err);
/* Make sure the resolved base is complete in the store (pull a registry base
 * pinned to digest). */
int bld_base_fetch(sbx_store *store, const sbx_recipe_base *base, const char *digest,
                   const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err);

#endif
