/* Builder internals shared by build.c, steps.c, cache.c, base.c and image.c.
 * Not part of the public API. */
#ifndef SBX_BUILD_INTERNAL_H
#define SBX_BUILD_INTERNAL_H

#include <jansson.h>

#include "sbx/error.h"
#include "sbx/store.h"

#define SBX_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define SBX_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define SBX_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define SBX_LABEL_READY_CMD "sh.sbx.ready-cmd"

/* Manifests and configs we read back are small; refuse anything larger. */
#define SBX_IMG_MAX_JSON (4u << 20)

/* ---- image.c: the image state between steps is an OCI config ------------ */

/* "1970-01-01T00:00:00Z" or SOURCE_DATE_EPOCH formatted as RFC 3339, so the
 * same recipe yields the same config and manifest bytes. */
const char *sbx_img_created(char buf[32]);

/* A fresh config for an empty rootfs: os/architecture of platform ("linux",
 * "amd64"), PATH in Env, empty rootfs and history.  Owned by the caller. */
json_t *sbx_img_config_new(const char *os, const char *arch);

/* Load the config of the image manifest `digest` from the store: *out is a
 * deep copy owned by the caller.  Accepts OCI and Docker schema2 manifests. */
int sbx_img_load(json_t **out, sbx_store *s, const char *digest, sbx_error *err);

/* 1 when the manifest `digest` is stored and reads back (at most
 * SBX_IMG_MAX_JSON), else 0.  Takes no lease and writes nothing, unlike
 * sbx_store_has_blob: what a no-op rebuild checks. */
int sbx_img_readable(sbx_store *s, const char *digest);

/* Number of layers in config.rootfs.diff_ids and the i-th one. */
size_t sbx_img_nlayers(json_t *config);
const char *sbx_img_layer(json_t *config, size_t i);

/* Append a history entry; with diff_id non-NULL also a layer (rootfs.diff_ids),
 * else the entry is marked empty_layer. */
int sbx_img_add_history(json_t *config, const char *diff_id, const char *created_by,
                        sbx_error *err);

/* Config edits (image config only, no layer). */
int sbx_img_set_env(json_t *config, const char *name, const char *value, sbx_error *err);
int sbx_img_set_string(json_t *config, const char *key, const char *value, sbx_error *err);
int sbx_img_set_cmd(json_t *config, const char *cmd, sbx_error *err);
int sbx_img_set_label(json_t *config, const char *key, const char *value, sbx_error *err);
/* Read a config.config string field ("WorkingDir", "User"); NULL when unset or empty. */
const char *sbx_img_get_string(json_t *config, const char *key);
/* The Env array as a NULL-terminated array of "K=V" (borrowed strings in a
 * malloc'd array: free the array only). */
const char **sbx_img_env(json_t *config);

/* Write config and an OCI manifest referencing every layer of config (in
 * their stored zstd form) into the store; the manifest digest goes to
 * digest_out.  Same config, same bytes, same digest. */
int sbx_img_commit(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err);
/* The manifest digest sbx_img_commit would give, without writing anything
 * (reads the layers' stored forms). */
int sbx_img_digest(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err);

#endif
