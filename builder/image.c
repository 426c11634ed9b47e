/* OCI image config and manifest writing for the builder.
 *
 * The state of a build between steps is an OCI image config (jansson
 * object): rootfs.diff_ids lists the layers, config.{Env,WorkingDir,User,
 * Cmd,Labels} the runtime settings, history one entry per step.  Committing
 * it writes the config blob and a manifest whose layer descriptors are the
 * stored zstd forms of those layers.  Serialization is compact with sorted
 * keys and timestamps come from SOURCE_DATE_EPOCH (or the epoch), so the
 * same state always has the same manifest digest: the cache and the
 * reproducibility of builds rest on that.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build_internal.h"
#include "sbx_common.h"

const char *sbx_img_created(char buf[32])
{
    time_t t = 0;
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end;
        errno = 0;
        long long v = strtoll(sde, &end, 10);
        if (!errno && !*end && v >= 0)
            t = (time_t)v;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

json_t *sbx_img_config_new(const char *os, const char *arch)
{
    char created[32];
    return json_pack("{s:s, s:s, s:s, s:{s:[s]}, s:{s:s, s:[]}, s:[]}", "created",
                     sbx_img_created(created), "architecture", arch, "os", os, "config", "Env",
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "rootfs",
                     "type", "layers", "diff_ids", "history");
}

static int read_json(json_t **out, sbx_store *s, const char *digest, const char *what,
                     sbx_error *err)
{
    _cleanup_free_ char *raw = NULL;
    size_t len = 0;
    if (sbx_store_read_blob(s, digest, SBX_IMG_MAX_JSON, &raw, &len, err) < 0)
        return sbx_error_wrap(err, "read %s '%s'", what, digest);
    json_error_t jerr;
    json_t *j = json_loadb(raw, len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, SBX_ECORRUPT, "parse %s '%s': %s", what, digest,
                             j ? "not an object" : jerr.text);
    }
    *out = j;
    return 0;
}

int sbx_img_load(json_t **out, sbx_store *s, const char *digest, sbx_error *err)
{
    json_t *manifest = NULL;
    if (read_json(&manifest, s, digest, "manifest", err) < 0)
        return err->code;
    const char *cfg = json_string_value(json_object_get(json_object_get(manifest, "config"),
                                                        "digest"));
    if (!cfg || !sbx_digest_valid(cfg)) {
        json_decref(manifest);
        return sbx_error_set(err, SBX_EINVAL, "read image '%s': not an image manifest (no config)",
                             digest);
    }
    json_t *config = NULL;
    int rc = read_json(&config, s, cfg, "image config", err);
    json_decref(manifest);
    if (rc < 0)
        return rc;
    /* Normalize what later steps edit, so they never meet a missing member. */
    if (!json_is_object(json_object_get(config, "config")))
        json_object_set_new(config, "config", json_object());
    if (!json_is_object(json_object_get(config, "rootfs")))
        json_object_set_new(config, "rootfs", json_pack("{s:s, s:[]}", "type", "layers",
                                                        "diff_ids"));
    if (!json_is_array(json_object_get(config, "history")))
        json_object_set_new(config, "history", json_array());
    *out = config;
    return 0;
}

static json_t *diff_ids(json_t *config)
{
    return json_object_get(json_object_get(config, "rootfs"), "diff_ids");
}

size_t sbx_img_nlayers(json_t *config) { return json_array_size(diff_ids(config)); }

const char *sbx_img_layer(json_t *config, size_t i)
{
    return json_string_value(json_array_get(diff_ids(config), i));
}

int sbx_img_add_history(json_t *config, const char *diff_id, const char *created_by,
                        sbx_error *err)
{
    char created[32];
    json_t *h = json_pack("{s:s, s:s}", "created", sbx_img_created(created), "created_by",
                          created_by);
    if (!h)
        return sbx_error_set(err, SBX_ENOMEM, "add history entry");
    if (diff_id) {
        json_t *ids = diff_ids(config);
        if (!ids) {
            ids = json_array();
            json_object_set_new(json_object_get(config, "rootfs"), "diff_ids", ids);
        }
        json_array_append_new(ids, json_string(diff_id));
    } else {
        json_object_set_new(h, "empty_layer", json_true());
    }
    json_array_append_new(json_object_get(config, "history"), h);
    return 0;
}

static json_t *cfg_section(json_t *config)
{
    json_t *c = json_object_get(config, "config");
    if (!json_is_object(c)) {
        c = json_object();
        json_object_set_new(config, "config", c);
    }
    return c;
}

int sbx_img_set_env(json_t *config, const char *name, const char *value, sbx_error *err)
{
    json_t *c = cfg_section(config);
    json_t *env = json_object_get(c, "Env");
    if (!json_is_array(env)) {
        env = json_array();
        json_object_set_new(c, "Env", env);
    }
    _cleanup_free_ char *kv = sbx_strdup_printf("%s=%s", name, value);
    if (!kv)
        return sbx_error_set(err, SBX_ENOMEM, "set env '%s'", name);
    size_t nlen = strlen(name);
    size_t i;
    json_t *v;
    json_array_foreach(env, i, v) {
        const char *s = json_string_value(v);
        if (s && !strncmp(s, name, nlen) && s[nlen] == '=') {
            json_array_set_new(env, i, json_string(kv));
            return 0;
        }
    }
    json_array_append_new(env, json_string(kv));
    return 0;
}

int sbx_img_set_string(json_t *config, const char *key, const char *value, sbx_error *err)
{
    if (json_object_set_new(cfg_section(config), key, json_string(value)) < 0)
        return sbx_error_set(err, SBX_EINVAL, "set '%s': not valid UTF-8", key);
    return 0;
}

int sbx_img_set_cmd(json_t *config, const char *cmd, sbx_error *err)
{
    json_t *c = cfg_section(config);
    /* start_cmd is a shell command line: run it the way run_cmd runs. */
    json_object_set_new(c, "Cmd", json_pack("[s, s, s]", "/bin/sh", "-c", cmd));
    json_object_del(c, "Entrypoint");
    (void)err;
    return 0;
}

int sbx_img_set_label(json_t *config, const char *key, const char *value, sbx_error *err)
{
    json_t *c = cfg_section(config);
    json_t *labels = json_object_get(c, "Labels");
    if (!json_is_object(labels)) {
        labels = json_object();
        json_object_set_new(c, "Labels", labels);
    }
    if (json_object_set_new(labels, key, json_string(value)) < 0)
        return sbx_error_set(err, SBX_EINVAL, "set label '%s': not valid UTF-8", key);
    return 0;
}

const char *sbx_img_get_string(json_t *config, const char *key)
{
    const char *s = json_string_value(json_object_get(json_object_get(config, "config"), key));
    return s && *s ? s : NULL;
}

const char **sbx_img_env(json_t *config)
{
    json_t *env = json_object_get(json_object_get(config, "config"), "Env");
    size_t n = json_array_size(env);
    const char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(env, i));
        if (s && strchr(s, '='))
            out[k++] = s;
    }
    return out;
}

int sbx_img_readable(sbx_store *s, const char *digest)
{
    char *raw = NULL;
    size_t len = 0;
    sbx_error e = SBX_ERROR_INIT;
    int ok = sbx_store_read_blob(s, digest, SBX_IMG_MAX_JSON, &raw, &len, &e) == 0;
    free(raw);
    return ok;
}

/* The config and manifest bytes of `config` as sbx_img_commit stores them
 * (layers described by their stored zstd form, read from the store). */
typedef struct img_bytes {
    char *cfg, *raw; /* owned */
    size_t cfg_len;
    char cfg_digest[SBX_DIGEST_BUFSZ];
    sbx_store_child *children; /* owned array; digests borrowed from config */
    size_t nchildren;
} img_bytes;

static void img_bytes_clear(img_bytes *b)
{
    free(b->cfg);
    free(b->raw);
    free(b->children);
    memset(b, 0, sizeof *b);
}

static int img_serialize(img_bytes *b, sbx_store *s, json_t *config,
                         char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    memset(b, 0, sizeof *b);
    b->cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
    if (!b->cfg)
        return sbx_error_set(err, SBX_ENOMEM, "serialize image config");
    b->cfg_len = strlen(b->cfg);
    sbx_sha256_buf(b->cfg, b->cfg_len, b->cfg_digest);

    size_t n = sbx_img_nlayers(config);
    b->children = calloc(n + 1, sizeof *b->children);
    json_t *layers = json_array();
    if (!b->children || !layers) {
        json_decref(layers);
        return sbx_error_set(err, SBX_ENOMEM, "build image manifest");
    }
    b->children[0] = (sbx_store_child){SBX_CHILD_BLOB, b->cfg_digest};
    for (size_t i = 0; i < n; i++) {
        const char *diff_id = sbx_img_layer(config, i);
        sbx_layer_info info;
        if (!diff_id || sbx_store_layer_info(s, diff_id, &info, err) < 0) {
            json_decref(layers);
            if (!diff_id)
                return sbx_error_set(err, SBX_ECORRUPT, "image config: layer %zu is not a string",
                                     i);
            return sbx_error_wrap(err, "describe layer %zu", i + 1);
        }
        json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
                                                SBX_MT_OCI_LAYER_ZSTD, "digest", info.zstd_digest,
                                                "size", (json_int_t)info.stored_size));
        b->children[i + 1] = (sbx_store_child){SBX_CHILD_LAYER, diff_id};
    }
    b->nchildren = n + 1;
    json_t *manifest = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2,
                                 "mediaType", SBX_MT_OCI_MANIFEST, "config", "mediaType",
                                 SBX_MT_OCI_CONFIG, "digest", b->cfg_digest, "size",
                                 (json_int_t)b->cfg_len, "layers", layers);
    if (!manifest)
        return sbx_error_set(err, SBX_ENOMEM, "build image manifest");
    b->raw = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(manifest);
    if (!b->raw)
        return sbx_error_set(err, SBX_ENOMEM, "serialize image manifest");
    sbx_sha256_buf(b->raw, strlen(b->raw), digest_out);
    return 0;
}

int sbx_img_digest(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err)
{
    img_bytes b;
    int rc = img_serialize(&b, s, config, digest_out, err);
    img_bytes_clear(&b);
    return rc;
}

int sbx_img_commit(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                   sbx_error *err)
{
    img_bytes b;
    int rc = img_serialize(&b, s, config, digest_out, err);
    /* A rebuild commits states the store already has: skip the synced
     * writes then (a present manifest was stored with all its children). */
    if (rc == 0 && sbx_store_has_blob(s, digest_out) == 1) {
        img_bytes_clear(&b);
        return 0;
    }
    if (rc == 0 && sbx_store_has_blob(s, b.cfg_digest) != 1 &&
        sbx_store_put_blob(s, b.cfg, b.cfg_len, SBX_MT_OCI_CONFIG, NULL, b.cfg_digest, err) < 0)
        rc = sbx_error_wrap(err, "store image config");
    if (rc == 0 && sbx_store_put_manifest(s, b.raw, strlen(b.raw), SBX_MT_OCI_MANIFEST, NULL,
                                          b.children, b.nchildren, digest_out, err) < 0)
        rc = sbx_error_wrap(err, "store image manifest");
    img_bytes_clear(&b);
    return rc;
}
