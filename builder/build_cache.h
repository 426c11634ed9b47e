/* The per-step build cache (cache.c). */
#ifndef SBX_BUILD_CACHE_H
#define SBX_BUILD_CACHE_H

#include <jansson.h>

#include "sbx/context.h"
#include "sbx/store.h"

/* "cache:<key>" into buf; -1 when it does not fit. */
int bld_cache_name(char *buf, size_t len, const char *key);
/* 1 and the state (config owned by the caller, manifest digest) when key is
 * cached completely in the store; 0 otherwise (never an error: a broken
 * entry is a miss and is rebuilt). */
int bld_cache_lookup(json_t **config_out, char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                     const char *key, const sbx_ctx *ctx);
/* Name the state after a step. */
int bld_cache_store(sbx_store *s, const char *key, const char *digest, sbx_error *err);

#endif
