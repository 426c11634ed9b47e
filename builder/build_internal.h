/* Builder internals shared by build.c, steps.c, cache.c, base.c and config.c.
 * Not part of the public API. */
#ifndef SBX_BUILD_INTERNAL_H
#define SBX_BUILD_INTERNAL_H

#include <jansson.h>

#include "sbx/builder.h"
#include "sbx/error.h"
#include "sbx/image.h"
#include "sbx/store.h"

#define BLD_LABEL_READY_CMD "sh.sbx.ready-cmd"

/* ---- record.c: build records and logs ------------------------------------ */

typedef struct bld_record bld_record;
/* A new record (queued) and its log, held until bld_record_end. */
int bld_record_begin(bld_record **out, sbx_store *s, const char *recipe_digest, sbx_error *err);
const char *bld_record_id(const bld_record *r);
void bld_record_running(bld_record *r);
void bld_record_event(bld_record *r, const sbx_build_event *ev);
void bld_record_output(bld_record *r, size_t index, const char *line);
/* Cancel ctx when another process asks (sbx_build_cancel). */
void bld_record_watch_cancel(bld_record *r, sbx_ctx *ctx);
/* Final state from rc (0, SBX_ECANCELED, other), digest or err; frees r. */
void bld_record_end(bld_record *r, int rc, const char *digest, const sbx_error *err);
/* A step failed (SBX_ESTEP) under key and outcome (what else decides the
 * step's result: runtime, network, limits): remembered, so builds that
 * waited for this one get the failure instead of running the step again. */
void bld_record_step_failed(bld_record *r, const char *key, const char *outcome,
                            const sbx_error *failure);
/* SBX_ESTEP, naming the build, when a step under key and outcome failed
 * at or after since (unix seconds); 0 when none did. */
int bld_record_shared_failure(sbx_store *s, const char *key, const char *outcome, int64_t since,
                              sbx_error *err);

/* ---- config.c: the image state between steps is an OCI config ----------- */

/* "1970-01-01T00:00:00Z" or SOURCE_DATE_EPOCH formatted as RFC 3339, so the
 * same recipe yields the same config and manifest bytes. */
const char *bld_config_created(char buf[32]);

/* A fresh config for an empty rootfs: os/architecture of platform ("linux",
 * "amd64"), PATH in Env, empty rootfs and history.  Owned by the caller. */
json_t *bld_config_new(const char *os, const char *arch);

/* Load the config of the image manifest `digest` from the store: *out is a
 * deep copy owned by the caller.  Accepts OCI and Docker schema2 manifests. */
int bld_config_load(json_t **out, sbx_store *s, const char *digest, sbx_error *err);

/* Number of layers in config.rootfs.diff_ids and the i-th one. */
size_t bld_config_nlayers(json_t *config);
const char *bld_config_layer(json_t *config, size_t i);

/* Append a history entry; with diff_id non-NULL also a layer (rootfs.diff_ids),
 * else the entry is marked empty_layer. */
int bld_config_add_history(json_t *config, const char *diff_id, const char *created_by,
                        sbx_error *err);

/* Config edits (image config only, no layer). */
int bld_config_set_env(json_t *config, const char *name, const char *value, sbx_error *err);
int bld_config_set_string(json_t *config, const char *key, const char *value, sbx_error *err);
int bld_config_set_cmd(json_t *config, const char *cmd, sbx_error *err);
int bld_config_set_label(json_t *config, const char *key, const char *value, sbx_error *err);
/* Read a config.config string field ("WorkingDir", "User"); NULL when unset or empty. */
const char *bld_config_get_string(json_t *config, const char *key);
/* The Env array as a NULL-terminated array of "K=V" (borrowed strings in a
 * malloc'd array: free the array only). */
const char **bld_config_env(json_t *config);

/* Write config and an OCI manifest referencing every layer of config (in
 * their stored zstd form) into the store (sbx_image_write); the manifest
 * digest goes to digest_out.  Same config, same bytes, same digest. */
int bld_config_commit(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err);
/* A step ran here and made the state bld_config_commit wrote as manifest
 * (and layer, NULL for none): record them as made here, so the state is
 * anyone's who can build it, whatever cache repository it also came from
 * (sbx_store_origin_local). */
int bld_config_made_here(sbx_store *s, json_t *config, const char *manifest, const char *layer,
                         sbx_error *err);
/* The manifest digest bld_config_commit would give, without writing anything
 * (reads the layers' stored forms). */
int bld_config_digest(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err);

#endif
