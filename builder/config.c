/* The image config as the builder edits it.
 *
 * The state of a build between steps is an OCI image config (jansson
 * object): rootfs.diff_ids lists the layers, config.{Env,WorkingDir,User,
 * Cmd,Labels} the runtime settings, history one entry per step.  Committing
 * it serializes the config compactly with sorted keys and hands the bytes to
 * sbx_image_write (config blob + manifest over the stored zstd layers).
 * Timestamps come from SOURCE_DATE_EPOCH (or the epoch), so the same state
 * always has the same manifest digest: the cache and the reproducibility of
 * builds rest on that.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build_internal.h"
#include "sbx/image.h"
#include "sbx_common.h"

const char *bld_config_created(char buf[32])
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

json_t *bld_config_new(const char *os, const char *arch)
{
    char created[32];
    return json_pack("{s:s, s:s, s:s, s:{s:[s]}, s:{s:s, s:[]}, s:[]}", "created",
                     bld_config_created(created), "architecture", arch, "os", os, "config", "Env",
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "rootfs",
                     "type", "layers", "diff_ids", "history");
}

static int read_json(json_t **out, sbx_store *s, const char *digest, const char *what,
                     size_t max, sbx_error *err)
{
    _cleanup_free_ char *raw = NULL;
    size_t len = 0;
    if (sbx_store_read_blob(s, digest, max, &raw, &len, err) < 0)
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

int bld_config_load(json_t **out, sbx_store *s, const char *digest, sbx_error *err)
{
    json_t *manifest = NULL;
    if (read_json(&manifest, s, digest, "manifest", SBX_MANIFEST_MAX, err) < 0)
        return err->code;
    const char *cfg = json_string_value(json_object_get(json_object_get(manifest, "config"),
                                                        "digest"));
    if (!cfg || !sbx__digest_valid(cfg)) {
        json_decref(manifest);
        return sbx_error_set(err, SBX_EINVAL, "read image '%s': not an image manifest (no config)",
                             digest);
    }
    json_t *config = NULL;
    int rc = read_json(&config, s, cfg, "image config", SBX_CONFIG_MAX, err);
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

size_t bld_config_nlayers(json_t *config) { return json_array_size(diff_ids(config)); }

const char *bld_config_layer(json_t *config, size_t i)
{
    return json_string_value(json_array_get(diff_ids(config), i));
}

int bld_config_add_history(json_t *config, const char *diff_id, const char *created_by,
                        sbx_error *err)
{
    char created[32];
    json_t *h = json_pack("{s:s, s:s}", "created", bld_config_created(created), "created_by",
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

int bld_config_set_env(json_t *config, const char *name, const char *value, sbx_error *err)
{
    json_t *c = cfg_section(config);
    json_t *env = json_object_get(c, "Env");
    if (!json_is_array(env)) {
        env = json_array();
        json_object_set_new(c, "Env", env);
    }
    _cleanup_free_ char *kv = sbx__strdup_printf("%s=%s", name, value);
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

int bld_config_set_string(json_t *config, const char *key, const char *value, sbx_error *err)
{
    if (json_object_set_new(cfg_section(config), key, json_string(value)) < 0)
        return sbx_error_set(err, SBX_EINVAL, "set '%s': not valid UTF-8", key);
    return 0;
}

int bld_config_set_cmd(json_t *config, const char *cmd, sbx_error *err)
{
    json_t *c = cfg_section(config);
    /* start_cmd is a shell command line: run it the way run_cmd runs. */
    json_object_set_new(c, "Cmd", json_pack("[s, s, s]", "/bin/sh", "-c", cmd));
    json_object_del(c, "Entrypoint");
    (void)err;
    return 0;
}

int bld_config_set_label(json_t *config, const char *key, const char *value, sbx_error *err)
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

const char *bld_config_get_string(json_t *config, const char *key)
{
    const char *s = json_string_value(json_object_get(json_object_get(config, "config"), key));
    return s && *s ? s : NULL;
}

const char **bld_config_env(json_t *config)
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

/* The config's bytes as they are stored: compact, keys sorted. */
static int dump(char **out, json_t *config, sbx_error *err)
{
    *out = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*out)
        return sbx_error_set(err, SBX_ENOMEM, "serialize image config");
    return 0;
}

int bld_config_digest(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                      sbx_error *err)
{
    _cleanup_free_ char *cfg = NULL;
    if (dump(&cfg, config, err) < 0)
        return err->code;
    return sbx_image_write_digest(digest_out, s, cfg, strlen(cfg), err);
}

int bld_config_commit(sbx_store *s, json_t *config, char digest_out[SBX_DIGEST_BUFSZ],
                      sbx_error *err)
{
    _cleanup_free_ char *cfg = NULL;
    if (dump(&cfg, config, err) < 0)
        return err->code;
    return sbx_image_write(digest_out, s, cfg, strlen(cfg), err);
}

int bld_config_made_here(sbx_store *s, json_t *config, const char *manifest, const char *layer,
                         sbx_error *err)
{
    _cleanup_free_ char *cfg = NULL;
    if (dump(&cfg, config, err) < 0)
        return err->code;
    char cd[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(cfg, strlen(cfg), cd);
    const char *d[3] = {manifest, cd, layer};
    return sbx_store_origin_local(s, d, layer ? 3 : 2, err);
}
