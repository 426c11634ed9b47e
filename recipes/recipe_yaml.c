/* The YAML front end: a node tree (yaml_tree.c) checked against the recipe
 * schema (docs/recipe-format.md) and turned into API calls.  Every error
 * carries "file:line:col" of the offending node and says what was expected.
 */
#include <libgen.h>
#include <string.h>

#include "recipe_internal.h"
#include "yaml_tree.h"


typedef struct pctx {
    const char *name;
    sbx_ctx *ctx; /* for hashing copy sources */
    sbx_error *err;
} pctx;

#define FAIL(p, node, ...) ytree_fail((p)->err, (p)->name, (node), __VA_ARGS__)

/* Re-point an error from a validator at a node. */
static int at(pctx *p, const ynode *n, int rc)
{
    if (rc < 0 && n)
        sbx_error_where(p->err, "%s:%zu:%zu", p->name, n->line, n->col);
    return rc;
}

static const char *kind_name(const ynode *n)
{
    switch (n->type) {
    case YNODE_SEQ: return "a list";
    case YNODE_MAP: return "a mapping";
    default: return "a string";
    }
}

static bool is_null(const ynode *n)
{
    return n->type == YNODE_SCALAR && n->plain &&
           (!strcmp(n->value, "") || !strcmp(n->value, "~") || !strcmp(n->value, "null") ||
            !strcmp(n->value, "Null") || !strcmp(n->value, "NULL"));
}

static int bool_value(const ynode *n)
{
    if (n->type != YNODE_SCALAR || !n->plain)
        return -1;
    static const char *t[] = {"true", "True", "TRUE"}, *f[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        if (!strcmp(n->value, t[i]))
            return 1;
        if (!strcmp(n->value, f[i]))
            return 0;
    }
    return -1;
}

static int get_str(pctx *p, const ynode *n, const char *what, const char **out)
{
    if (n->type != YNODE_SCALAR)
        return FAIL(p, n, "expected a string for %s, got %s", what, kind_name(n));
    if (is_null(n))
        return FAIL(p, n, "expected a string for %s, got nothing (null)", what);
    if (bool_value(n) >= 0)
        return FAIL(p, n, "expected a string for %s, got a boolean (quote it if you mean \"%s\")",
                    what, n->value);
    if (strlen(n->value) != n->len)
        return FAIL(p, n, "expected %s without NUL characters", what);
    if (rcp_rv_text(n->value, what, true, p->err) < 0)
        return at(p, n, p->err->code);
    *out = n->value;
    return 0;
}

static int get_bool(pctx *p, const ynode *n, const char *what, bool *out)
{
    int b = bool_value(n);
    if (b < 0)
        return FAIL(p, n, "expected true or false for %s, got %s%s%s%s", what, kind_name(n),
                    n->type == YNODE_SCALAR ? " '" : "", n->type == YNODE_SCALAR ? n->value : "",
                    n->type == YNODE_SCALAR ? "'" : "");
    *out = b;
    return 0;
}

/* A list of strings, or (allow_scalar) one string standing for a list of one.
 * *v points into the tree; caller frees *v. */
static int get_strv(pctx *p, const ynode *n, const char *what, const char *item, bool allow_scalar,
                    bool allow_empty, const char ***v, size_t *len)
{
    *v = NULL;
    *len = 0;
    if (n->type == YNODE_SCALAR && allow_scalar && !is_null(n)) {
        const char **a = calloc(1, sizeof *a);
        if (!a)
            return sbx_error_set(p->err, SBX_ENOMEM, "allocate list");
        if (get_str(p, n, what, &a[0]) < 0) {
            free(a);
            return p->err->code;
        }
        *v = a;
        *len = 1;
        return 0;
    }
    if (n->type != YNODE_SEQ)
        return FAIL(p, n, "expected a list of %ss%s for %s, got %s", item,
                    allow_scalar ? " (or one string)" : "", what,
                    is_null(n) ? "nothing (null)" : kind_name(n));
    if (n->n == 0 && !allow_empty)
        return FAIL(p, n, "expected at least one %s in %s, got an empty list", item, what);
    if (n->n > SBX_RECIPE_MAX_LIST)
        return FAIL(p, n, "expected at most %d entries in %s", SBX_RECIPE_MAX_LIST, what);
    const char **a = calloc(n->n + 1, sizeof *a);
    if (!a)
        return sbx_error_set(p->err, SBX_ENOMEM, "allocate list");
    for (size_t i = 0; i < n->n; i++) {
        if (get_str(p, n->items[i], item, &a[i]) < 0) {
            free(a);
            return p->err->code;
        }
    }
    *v = a;
    *len = n->n;
    return 0;
}

/* Packages: each checked where it is written. */
static int get_packages(pctx *p, const ynode *n, const char *what, bool allow_spaces,
                        const char ***v, size_t *len)
{
    if (get_strv(p, n, what, "package", true, false, v, len) < 0)
        return p->err->code;
    for (size_t i = 0; i < *len; i++) {
        const ynode *in = n->type == YNODE_SEQ ? n->items[i] : n;
        if (at(p, in, rcp_rv_package((*v)[i], "package", allow_spaces, p->err)) < 0) {
            free(*v);
            *v = NULL;
            return p->err->code;
        }
    }
    return 0;
}

static const ynode *map_get(const ynode *m, const char *key)
{
    for (size_t i = 0; i + 1 < m->n; i += 2)
        if (!strcmp(m->items[i]->value, key))
            return m->items[i + 1];
    return NULL;
}

/* Refuse keys not in allowed (NULL-terminated). */
static int check_keys(pctx *p, const ynode *m, const char *what, const char *const *allowed)
{
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const ynode *k = m->items[i];
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(k->value, *a);
        if (!ok) {
            char list[512] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            return FAIL(p, k, "unknown key '%.100s' in %s: expected one of %s", k->value, what,
                        list);
        }
    }
    return 0;
}

static int want_map(pctx *p, const ynode *n, const char *what)
{
    if (n->type != YNODE_MAP)
        return FAIL(p, n, "expected a mapping for %s, got %s", what,
                    is_null(n) ? "nothing (null)" : kind_name(n));
    return 0;
}

/* ---- steps ----------------------------------------------------------------- */

typedef struct {
    sbx_recipe *r; /* current recipe (owned) */
} build;

static int advance(pctx *p, build *b, const ynode *pos, int rc, sbx_recipe **next)
{
    if (rc < 0)
        return at(p, pos, rc);
    sbx_recipe_unref(b->r);
    b->r = *next;
    *next = NULL;
    char where[512];
    snprintf(where, sizeof where, "%s:%zu:%zu", p->name, pos->line, pos->col);
    if (rcp_recipe_set_last_where(b->r, where) < 0)
        return sbx_error_set(p->err, SBX_ENOMEM, "allocate step");
    return 0;
}

static int opt_str(pctx *p, const ynode *m, const char *key, const char **out);

/* secrets: [NAME | {id: NAME, env: VAR}, ...] of a step map, applied to
 * the step just added (nothing when absent). */
static int step_secrets(pctx *p, build *b, const ynode *key, const ynode *m)
{
    const ynode *v = m && m->type == YNODE_MAP ? map_get(m, "secrets") : NULL;
    if (!v || is_null(v))
        return 0;
    if (v->type != YNODE_SEQ)
        return FAIL(p, v, "expected a list of secrets (NAME or {id: NAME, env: VAR}), got %s",
                    kind_name(v));
    if (v->n > SBX_RECIPE_MAX_LIST)
        return FAIL(p, v, "expected at most %d secrets", SBX_RECIPE_MAX_LIST);
    _cleanup_free_ sbx_step_secret *s = calloc(v->n + 1, sizeof *s);
    if (!s)
        return sbx_error_set(p->err, SBX_ENOMEM, "allocate secrets");
    static const char *const keys[] = {"id", "env", NULL};
    for (size_t i = 0; i < v->n; i++) {
        const ynode *it = v->items[i];
        if (it->type == YNODE_MAP) {
            const ynode *id = map_get(it, "id");
            if (check_keys(p, it, "a secret", keys) < 0 || opt_str(p, it, "env", &s[i].env) < 0)
                return p->err->code;
            if (!id)
                return FAIL(p, it, "expected 'id' in a secret");
            if (get_str(p, id, "a secret id", &s[i].id) < 0)
                return p->err->code;
        } else if (get_str(p, it, "a secret", &s[i].id) < 0) {
            return p->err->code;
        }
        if (at(p, it, rcp_rv_secret_id(s[i].id, p->err)) < 0 ||
            (s[i].env && at(p, it, rcp_rv_env_name(s[i].env, p->err)) < 0))
            return p->err->code;
    }
    sbx_recipe *n = NULL;
    return advance(p, b, key, sbx_recipe_with_secrets(&n, b->r, s, v->n, p->err), &n);
}

static int step_python(pctx *p, build *b, const ynode *key, const ynode *v)
{
    const char *ver;
    if (get_str(p, v, "python", &ver) < 0 || at(p, v, rcp_rv_version(ver, "python", p->err)) < 0)
        return p->err->code;
    sbx_recipe *n = NULL;
    return advance(p, b, key, sbx_recipe_python(&n, b->r, ver, p->err), &n);
}

static int step_apt(pctx *p, build *b, const ynode *key, const ynode *v)
{
    static const char *const keys[] = {"packages", "secrets", NULL};
    _cleanup_free_ const char **pk = NULL;
    size_t n_pk;
    const ynode *pkn = v;
    if (v->type == YNODE_MAP) {
        if (check_keys(p, v, "apt_install", keys) < 0)
            return p->err->code;
        if (!(pkn = map_get(v, "packages")))
            return FAIL(p, v, "expected 'packages' in apt_install");
    }
    if (get_packages(p, pkn, "apt_install", false, &pk, &n_pk) < 0)
        return p->err->code;
    sbx_recipe *n = NULL;
    if (advance(p, b, key, sbx_recipe_apt_install(&n, b->r, pk, n_pk, p->err), &n) < 0)
        return p->err->code;
    return step_secrets(p, b, key, v);
}

static int opt_str(pctx *p, const ynode *m, const char *key, const char **out)
{
    const ynode *v = map_get(m, key);
    *out = NULL;
    if (!v || is_null(v))
        return 0;
    return get_str(p, v, key, out);
}

static int step_pip(pctx *p, build *b, const ynode *key, const ynode *v)
{
    static const char *const keys[] = {"packages",  "user", "index_url", "extra_index_urls",
                                       "find_links", "pre",  "secrets", NULL};
    sbx_pip_opts o = SBX_PIP_OPTS_INIT;
    _cleanup_free_ const char **pk = NULL, **extra = NULL, **links = NULL;
    const ynode *pkn = v;
    if (v->type == YNODE_MAP) {
        if (check_keys(p, v, "pip_install", keys) < 0)
            return p->err->code;
        if (!(pkn = map_get(v, "packages")))
            return FAIL(p, v, "expected 'packages' in pip_install");
        const ynode *e = map_get(v, "extra_index_urls"), *fl = map_get(v, "find_links"),
                    *pre = map_get(v, "pre");
        /* user: true/false is pip --user (the SDK's boolean); a name runs pip as that user */
        const ynode *un = map_get(v, "user");
        int ub = un ? bool_value(un) : -1;
        if (ub >= 0)
            o.user_install = ub == 1;
        if ((ub < 0 && opt_str(p, v, "user", &o.user) < 0) ||
            opt_str(p, v, "index_url", &o.index_url) < 0 ||
            (o.user && at(p, map_get(v, "user"), rcp_rv_user(o.user, "user", p->err)) < 0) ||
            (o.index_url &&
             at(p, map_get(v, "index_url"), rcp_rv_ref(o.index_url, "index_url", p->err)) < 0) ||
            (e && !is_null(e) &&
             get_strv(p, e, "extra_index_urls", "URL", true, true, &extra,
                      &o.n_extra_index_urls) < 0) ||
            (fl && !is_null(fl) &&
             get_strv(p, fl, "find_links", "URL", true, true, &links, &o.n_find_links) < 0) ||
            (pre && get_bool(p, pre, "pre", &o.pre) < 0))
            return p->err->code;
        o.extra_index_urls = extra;
        o.find_links = links;
    }
    if (get_packages(p, pkn, "pip_install", true, &pk, &o.n_packages) < 0)
        return p->err->code;
    o.packages = pk;
    sbx_recipe *n = NULL;
    if (advance(p, b, key, sbx_recipe_pip_install(&n, b->r, &o, p->err), &n) < 0)
        return p->err->code;
    return step_secrets(p, b, key, v);
}

static int step_npm(pctx *p, build *b, const ynode *key, const ynode *v)
{
    static const char *const keys[] = {"packages", "global", "secrets", NULL};
    _cleanup_free_ const char **pk = NULL;
    size_t n_pk;
    bool global = false;
    const ynode *pkn = v;
    if (v->type == YNODE_MAP) {
        const ynode *g = map_get(v, "global");
        if (check_keys(p, v, "npm_install", keys) < 0 || (g && get_bool(p, g, "global", &global) < 0))
            return p->err->code;
        pkn = map_get(v, "packages"); /* absent: the package.json in the workdir */
    }
    n_pk = 0;
    if (pkn && get_packages(p, pkn, "npm_install", false, &pk, &n_pk) < 0)
        return p->err->code;
    sbx_recipe *n = NULL;
    if (advance(p, b, key, sbx_recipe_npm_install(&n, b->r, pk, n_pk, global, p->err), &n) < 0)
        return p->err->code;
    return step_secrets(p, b, key, v);
}

static int step_run(pctx *p, build *b, const ynode *key, const ynode *v)
{
    static const char *const keys[] = {"commands", "user", "secrets", NULL};
    _cleanup_free_ const char **cmds = NULL;
    size_t n_cmds;
    const char *user = NULL;
    const ynode *cn = v;
    if (v->type == YNODE_MAP) {
        if (check_keys(p, v, "run_cmd", keys) < 0 || opt_str(p, v, "user", &user) < 0 ||
            (user && at(p, map_get(v, "user"), rcp_rv_user(user, "user", p->err)) < 0))
            return p->err->code;
        if (!(cn = map_get(v, "commands")))
            return FAIL(p, v, "expected 'commands' in run_cmd");
    }
    if (get_strv(p, cn, "run_cmd", "command", true, false, &cmds, &n_cmds) < 0)
        return p->err->code;
    for (size_t i = 0; i < n_cmds; i++)
        if (!*cmds[i])
            return FAIL(p, cn->type == YNODE_SEQ ? cn->items[i] : cn,
                        "expected a non-empty command in run_cmd");
    sbx_recipe *n = NULL;
    if (advance(p, b, key, sbx_recipe_run_cmd(&n, b->r, cmds, n_cmds, user, p->err), &n) < 0)
        return p->err->code;
    return step_secrets(p, b, key, v);
}

static int step_env(pctx *p, build *b, const ynode *key, const ynode *v)
{
    if (want_map(p, v, "env") < 0)
        return p->err->code;
    size_t n = v->n / 2;
    if (n == 0)
        return FAIL(p, v, "expected at least one variable in env, got an empty mapping");
    _cleanup_free_ const char **names = calloc(n, sizeof *names);
    _cleanup_free_ const char **values = calloc(n, sizeof *values);
    if (!names || !values)
        return sbx_error_set(p->err, SBX_ENOMEM, "allocate env");
    for (size_t i = 0; i < n; i++) {
        const ynode *k = v->items[2 * i], *val = v->items[2 * i + 1];
        names[i] = k->value;
        if (at(p, k, rcp_rv_env_name(k->value, p->err)) < 0)
            return p->err->code;
        if (val->type == YNODE_SCALAR && (is_null(val) || bool_value(val) >= 0))
            return FAIL(p, val, "expected a string value for env '%s' (quote it: \"%s\")",
                        k->value, val->value);
        if (get_str(p, val, "an env value", &values[i]) < 0)
            return p->err->code;
    }
    sbx_recipe *nr = NULL;
    return advance(p, b, key, sbx_recipe_env(&nr, b->r, names, values, n, p->err), &nr);
}

static int step_workdir(pctx *p, build *b, const ynode *key, const ynode *v)
{
    const char *path;
    if (get_str(p, v, "workdir", &path) < 0 ||
        at(p, v, rcp_rv_abs_path(path, "workdir", p->err)) < 0)
        return p->err->code;
    sbx_recipe *n = NULL;
    return advance(p, b, key, sbx_recipe_workdir(&n, b->r, path, p->err), &n);
}

static int step_user(pctx *p, build *b, const ynode *key, const ynode *v)
{
    const char *name;
    if (get_str(p, v, "user", &name) < 0 || at(p, v, rcp_rv_user(name, "user", p->err)) < 0)
        return p->err->code;
    sbx_recipe *n = NULL;
    return advance(p, b, key, sbx_recipe_user(&n, b->r, name, p->err), &n);
}

static int step_copy(pctx *p, build *b, const ynode *key, const ynode *v)
{
    static const char *const keys[] = {"src", "dest", "owner", "mode", NULL};
    if (want_map(p, v, "copy") < 0 || check_keys(p, v, "copy", keys) < 0)
        return p->err->code;
    sbx_copy_opts o = SBX_COPY_OPTS_INIT;
    const ynode *src = map_get(v, "src"), *dest = map_get(v, "dest"), *mode = map_get(v, "mode");
    if (!src)
        return FAIL(p, v, "expected 'src' in copy (a path in the build context)");
    if (!dest)
        return FAIL(p, v, "expected 'dest' in copy (an absolute path in the image)");
    if (get_str(p, src, "copy src", &o.src) < 0 ||
        at(p, src, rcp_rv_rel_path(o.src, "copy src", p->err)) < 0 ||
        get_str(p, dest, "copy dest", &o.dest) < 0 ||
        at(p, dest, rcp_rv_abs_path(o.dest, "copy dest", p->err)) < 0 ||
        opt_str(p, v, "owner", &o.owner) < 0 ||
        (o.owner && at(p, map_get(v, "owner"), rcp_rv_user(o.owner, "copy owner", p->err)) < 0))
        return p->err->code;
    if (mode && !is_null(mode)) {
        const char *m;
        if (get_str(p, mode, "copy mode", &m) < 0 || at(p, mode, rcp_rv_mode(&o.mode, m, p->err)) < 0)
            return p->err->code;
    }
    sbx_recipe *n = NULL;
    int rc = sbx_recipe_copy(&n, b->r, &o, p->ctx, p->err);
    return advance(p, b, rc < 0 ? src : key, rc, &n);
}

typedef int (*step_fn)(pctx *, build *, const ynode *, const ynode *);
static const struct {
    const char *name;
    step_fn fn;
} step_kinds[] = {
    {"python", step_python},   {"apt_install", step_apt}, {"pip_install", step_pip},
    {"npm_install", step_npm}, {"run_cmd", step_run},     {"env", step_env},
    {"workdir", step_workdir}, {"user", step_user},       {"copy", step_copy},
};
#define STEP_KINDS "python, apt_install, pip_install, npm_install, run_cmd, env, workdir, user, copy"

static int do_step(pctx *p, build *b, const ynode *s)
{
    if (s->type != YNODE_MAP || s->n != 2)
        return FAIL(p, s, "expected a step: a mapping with exactly one of " STEP_KINDS);
    const ynode *k = s->items[0], *v = s->items[1];
    for (size_t i = 0; i < SBX_ARRAY_LEN(step_kinds); i++)
        if (!strcmp(k->value, step_kinds[i].name))
            return step_kinds[i].fn(p, b, k, v);
    return FAIL(p, k, "unknown step '%.100s': expected one of " STEP_KINDS, k->value);
}

/* start_cmd / ready_cmd: a string runs with /bin/sh -c; a list is an argv. */
static int do_cmd(pctx *p, build *b, const ynode *v, bool start)
{
    const char *what = start ? "start_cmd" : "ready_cmd";
    _cleanup_free_ const char **argv = NULL;
    size_t n;
    const char *sh[3] = {"/bin/sh", "-c", NULL};
    if (v->type == YNODE_SCALAR) {
        if (get_str(p, v, what, &sh[2]) < 0)
            return p->err->code;
        if (!*sh[2])
            return FAIL(p, v, "expected a non-empty command for %s", what);
    } else if (get_strv(p, v, what, "argument", false, false, &argv, &n) < 0) {
        return p->err->code;
    }
    sbx_recipe *nr = NULL;
    int rc = start ? sbx_recipe_start_cmd(&nr, b->r, argv ? argv : sh, argv ? n : 3, p->err)
                   : sbx_recipe_ready_cmd(&nr, b->r, argv ? argv : sh, argv ? n : 3, p->err);
    if (rc < 0)
        return at(p, v, rc);
    sbx_recipe_unref(b->r);
    b->r = nr;
    return 0;
}

static int do_base(pctx *p, build *b, const ynode *root, const char *context_dir)
{
    const ynode *reg = map_get(root, "from_registry"), *base = map_get(root, "base"),
                *img = map_get(root, "image"), *py = map_get(root, "add_python");
    int count = !!reg + !!base + !!img;
    if (count != 1) {
        const ynode *at_n = count ? (base ? base : img) : root;
        return FAIL(p, at_n, "expected exactly one base: from_registry, base or image");
    }
    if (py && !reg)
        return FAIL(p, py, "expected add_python only with from_registry");
    const char *s, *pyv = NULL;
    if (reg) {
        if (get_str(p, reg, "from_registry", &s) < 0 ||
            at(p, reg, rcp_rv_ref(s, "from_registry", p->err)) < 0)
            return p->err->code;
        if (py && (get_str(p, py, "add_python", &pyv) < 0 ||
                   at(p, py, rcp_rv_version(pyv, "add_python", p->err)) < 0))
            return p->err->code;
        return at(p, reg, sbx_recipe_from_registry(&b->r, s, pyv, context_dir, p->err));
    }
    if (base) {
        if (get_str(p, base, "base", &s) < 0)
            return p->err->code;
        if (strcmp(s, "sbx"))
            return FAIL(p, base, "expected 'sbx' for base (the platform base image), got '%.100s'",
                        s);
        return at(p, base, sbx_recipe_from_sbx(&b->r, context_dir, p->err));
    }
    if (get_str(p, img, "image", &s) < 0 || at(p, img, rcp_rv_ref(s, "image", p->err)) < 0)
        return p->err->code;
    return at(p, img, sbx_recipe_from_image(&b->r, s, context_dir, p->err));
}

int sbx_recipe_parse_buffer(sbx_recipe **out, const char *data, size_t len, const char *name,
                            const char *context_dir, sbx_ctx *ctx, sbx_error *err)
{
    static const char *const keys[] = {"from_registry", "add_python", "base",      "image",
                                       "steps",         "start_cmd",  "ready_cmd", NULL};
    *out = NULL;
    pctx p = {.name = name ? name : "<recipe>", .ctx = ctx, .err = err};
    if (len > SBX_RECIPE_MAX_FILE)
        return sbx_error_set(err, SBX_ELIMIT, "read recipe '%s': %zu bytes exceeds the limit of %u",
                             p.name, len, SBX_RECIPE_MAX_FILE);
    ynode *root = NULL;
    if (ytree_load(&root, data, len, p.name, err) < 0)
        return err->code;
    build b = {NULL};
    int rc = 0;
    const ynode *steps = NULL;
    if (root->type != YNODE_MAP) {
        rc = FAIL(&p, root, "expected a recipe (a mapping with a base and steps), got %s",
                  is_null(root) ? "nothing" : kind_name(root));
        goto out;
    }
    if ((rc = check_keys(&p, root, "the recipe", keys)) < 0 ||
        (rc = do_base(&p, &b, root, context_dir)) < 0)
        goto out;
    if ((steps = map_get(root, "steps")) && !is_null(steps)) {
        if (steps->type != YNODE_SEQ) {
            rc = FAIL(&p, steps, "expected a list of steps, got %s", kind_name(steps));
            goto out;
        }
        if (steps->n > SBX_RECIPE_MAX_STEPS) {
            rc = FAIL(&p, steps, "expected at most %d steps", SBX_RECIPE_MAX_STEPS);
            goto out;
        }
        for (size_t i = 0; i < steps->n; i++)
            if ((rc = do_step(&p, &b, steps->items[i])) < 0)
                goto out;
    }
    const ynode *sc = map_get(root, "start_cmd"), *rd = map_get(root, "ready_cmd");
    if ((sc && !is_null(sc) && (rc = do_cmd(&p, &b, sc, true)) < 0) ||
        (rd && !is_null(rd) && (rc = do_cmd(&p, &b, rd, false)) < 0))
        goto out;
    *out = SBX_STEAL(b.r);
out:
    sbx_recipe_unref(b.r);
    ytree_free(root);
    return rc;
}

int sbx_recipe_parse_file(sbx_recipe **out, const char *path, const char *context_dir,
                          sbx_ctx *ctx, sbx_error *err)
{
    *out = NULL;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (!strcmp(path, "-")) { /* standard input; the context: the current directory */
        if (sbx__read_fd(&data, &len, 0, "<stdin>", SBX_RECIPE_MAX_FILE, err) < 0)
            return sbx_error_wrap(err, "read recipe");
        return sbx_recipe_parse_buffer(out, data, len, "<stdin>", context_dir, ctx, err);
    }
    if (sbx__read_file(&data, &len, path, SBX_RECIPE_MAX_FILE, err) < 0)
        return sbx_error_wrap(err, "read recipe");
    _cleanup_free_ char *dir = NULL;
    if (!context_dir) {
        _cleanup_free_ char *copy = strdup(path);
        if (!copy || !(dir = strdup(dirname(copy))))
            return sbx_error_set(err, SBX_ENOMEM, "allocate path");
        context_dir = dir;
    }
    return sbx_recipe_parse_buffer(out, data, len, path, context_dir, ctx, err);
}
