/* The canonical form and the identities derived from it
 * (docs/recipe-digest.md).
 *
 * Each step's JSON is built with jansson and dumped with sorted keys and
 * compact separators.  The recipe's form is assembled from those strings in
 * the same key order jansson would use, so a recipe never re-encodes its
 * steps; every string reaching here was validated as UTF-8 without control
 * characters but tab/newline/CR (validate.c), which is what makes the output
 * identical to Python's json.dumps(sort_keys=True, separators=(",", ":"),
 * ensure_ascii=False).  Only the public accessors of the model are used.
 */
#include <jansson.h>
#include <string.h>

#include "recipe_internal.h"

static char *dump_json(json_t *j)
{
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *jstrv(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *step_json(const sbx_step *s)
{
    const char *op = NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    switch (s->kind) {
    case SBX_STEP_PYTHON:
        op = "python";
        json_object_set_new(o, "version", json_string(s->u.python.version));
        break;
    case SBX_STEP_APT_INSTALL:
        op = "apt_install";
        json_object_set_new(o, "packages",
                            jstrv(s->u.apt_install.packages, s->u.apt_install.n_packages));
        break;
    case SBX_STEP_PIP_INSTALL: {
        const __typeof__(s->u.pip_install) *p = &s->u.pip_install;
        op = "pip_install";
        json_object_set_new(o, "packages", jstrv(p->packages, p->n_packages));
        /* true: pip --user; a string: run as that user; null: neither */
        json_object_set_new(o, "user", p->user_install ? json_true() : jstr_or_null(p->user));
        json_object_set_new(o, "index_url", jstr_or_null(p->index_url));
        json_object_set_new(o, "extra_index_urls",
                            jstrv(p->extra_index_urls, p->n_extra_index_urls));
        json_object_set_new(o, "find_links", jstrv(p->find_links, p->n_find_links));
        json_object_set_new(o, "pre", json_boolean(p->pre));
        break;
    }
    case SBX_STEP_NPM_INSTALL:
        op = "npm_install";
        json_object_set_new(o, "packages",
                            jstrv(s->u.npm_install.packages, s->u.npm_install.n_packages));
        json_object_set_new(o, "global", json_boolean(s->u.npm_install.global));
        break;
    case SBX_STEP_RUN_CMD:
        op = "run_cmd";
        json_object_set_new(o, "commands", jstrv(s->u.run_cmd.commands, s->u.run_cmd.n_commands));
        json_object_set_new(o, "user", jstr_or_null(s->u.run_cmd.user));
        break;
    case SBX_STEP_ENV: {
        op = "env";
        json_t *vars = json_object();
        for (size_t i = 0; vars && i < s->u.env.n; i++)
            json_object_set_new(vars, s->u.env.names[i], json_string(s->u.env.values[i]));
        json_object_set_new(o, "vars", vars);
        break;
    }
    case SBX_STEP_WORKDIR:
        op = "workdir";
        json_object_set_new(o, "path", json_string(s->u.workdir.path));
        break;
    case SBX_STEP_USER:
        op = "user";
        json_object_set_new(o, "name", json_string(s->u.user.name));
        break;
    case SBX_STEP_COPY:
        op = "copy";
        json_object_set_new(o, "src", json_string(s->u.copy.src));
        json_object_set_new(o, "dest", json_string(s->u.copy.dest));
        json_object_set_new(o, "owner", jstr_or_null(s->u.copy.owner));
        json_object_set_new(o, "mode", s->u.copy.mode < 0 ? json_null()
                                                           : json_integer(s->u.copy.mode));
        json_object_set_new(o, "content", json_string(s->u.copy.content_digest));
        break;
    }
    json_object_set_new(o, "op", json_string(op));
    if (s->n_secrets) { /* ids and env names only; absent when none (older digests stand) */
        json_t *a = json_array();
        for (size_t i = 0; a && i < s->n_secrets; i++)
            json_array_append_new(a, json_pack("{s:s, s:o}", "id", s->secrets[i].id, "env",
                                               jstr_or_null(s->secrets[i].env)));
        json_object_set_new(o, "secrets", a);
    }
    return o;
}

char *rcp_step_canonical_json(const sbx_step *s) { return dump_json(step_json(s)); }

int sbx_recipe_base_canonical(char **out, const sbx_recipe *r, sbx_error *err)
{
    json_t *o = json_object();
    if (o) {
        static const char *kinds[] = {[SBX_BASE_REGISTRY] = "from_registry",
                                      [SBX_BASE_SBX] = "sbx",
                                      [SBX_BASE_IMAGE] = "image"};
        const sbx_recipe_base *b = sbx_recipe_get_base(r);
        json_object_set_new(o, "kind", json_string(kinds[b->kind]));
        if (b->kind != SBX_BASE_SBX)
            json_object_set_new(o, "ref", json_string(b->ref));
        if (b->kind == SBX_BASE_REGISTRY)
            json_object_set_new(o, "add_python", jstr_or_null(b->add_python));
    }
    *out = dump_json(o);
    return *out ? 0 : sbx_error_set(err, SBX_ENOMEM, "encode recipe base");
}

static char *argv_json(const char *const *v, size_t n)
{
    return dump_json(n ? jstrv(v, n) : json_null());
}

int sbx_recipe_canonical(char **out, const sbx_recipe *r, sbx_error *err)
{
    *out = NULL;
    _cleanup_free_ char *base = NULL;
    if (sbx_recipe_base_canonical(&base, r, err) < 0)
        return err->code;
    size_t n_start, n_ready, n_steps = sbx_recipe_n_steps(r);
    const char *const *start_v = sbx_recipe_get_start_cmd(r, &n_start);
    const char *const *ready_v = sbx_recipe_get_ready_cmd(r, &n_ready);
    _cleanup_free_ char *start = argv_json(start_v, n_start);
    _cleanup_free_ char *ready = argv_json(ready_v, n_ready);
    if (!start || !ready)
        return sbx_error_set(err, SBX_ENOMEM, "encode recipe");
    /* Keys in sorted order: base, ready_cmd, start_cmd, steps, version. */
    size_t len = strlen(base) + strlen(start) + strlen(ready) + 64;
    for (size_t i = 0; i < n_steps; i++)
        len += strlen(sbx_recipe_step(r, i)->canonical) + 1;
    char *s = malloc(len);
    if (!s)
        return sbx_error_set(err, SBX_ENOMEM, "encode recipe");
    char *p = s + sprintf(s, "{\"base\":%s,\"ready_cmd\":%s,\"start_cmd\":%s,\"steps\":[", base,
                          ready, start);
    for (size_t i = 0; i < n_steps; i++)
        p += sprintf(p, "%s%s", i ? "," : "", sbx_recipe_step(r, i)->canonical);
    strcpy(p, "],\"version\":1}");
    *out = s;
    return 0;
}

int sbx_recipe_digest(char out[SBX_DIGEST_BUFSZ], const sbx_recipe *r, sbx_error *err)
{
    _cleanup_free_ char *c = NULL;
    if (sbx_recipe_canonical(&c, r, err) < 0)
        return err->code;
    sbx__sha256_buf(c, strlen(c), out);
    return 0;
}

int sbx_recipe_cache_key(char out[SBX_DIGEST_BUFSZ], const sbx_recipe *r, size_t n,
                         const char *resolved_base_digest, sbx_error *err)
{
    if (n > sbx_recipe_n_steps(r))
        return sbx_error_set(err, SBX_EINVAL, "compute cache key: step %zu of %zu", n,
                             sbx_recipe_n_steps(r));
    if (!sbx__digest_valid(resolved_base_digest))
        return sbx_error_set(err, SBX_EINVAL,
                             "compute cache key: expected the resolved base digest "
                             "(sha256:<64 hex>), got '%.80s'",
                             resolved_base_digest ? resolved_base_digest : "(null)");
    _cleanup_free_ char *base = NULL;
    if (sbx_recipe_base_canonical(&base, r, err) < 0)
        return err->code;
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    if (sbx__sha256_new(&h, err) < 0)
        return err->code;
    sbx__sha256_update(h, "sbx-cache-v1\n", 13);
    sbx__sha256_update(h, base, strlen(base));
    sbx__sha256_update(h, "\n", 1);
    sbx__sha256_update(h, resolved_base_digest, strlen(resolved_base_digest));
    sbx__sha256_final(h, out);
    for (size_t i = 0; i < n; i++) {
        const char *c = sbx_recipe_step(r, i)->canonical;
        sbx__sha256_update(h, out, strlen(out));
        sbx__sha256_update(h, "\n", 1);
        sbx__sha256_update(h, c, strlen(c));
        sbx__sha256_final(h, out);
    }
    return 0;
}
