/* The recipe model.
 *
 * Invariants: a recipe and its steps never change after creation.  A recipe
 * holds one reference on each of its steps; a step function builds a new
 * pointer array over the same step objects plus one new step.  Reference
 * counts use atomic builtins, so recipes may be shared between threads.
 * Each step's canonical JSON (canonical.c) is computed once, when the step is
 * created, after its inputs were validated (validate.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#include "recipe_internal.h"

typedef struct step_node {
    sbx_step pub; /* first: public view */
    int refs;
    void **owned; /* every allocation the step's fields point to */
    size_t n_owned, cap_owned;
    struct step_node *shares; /* the step whose fields pub points into, or NULL */
} step_node;

typedef struct argv_t {
    char **v;
    size_t n;
} argv_t;

struct sbx_recipe {
    int refs;
    sbx_recipe_base base;
    char *ref, *add_python, *context_dir;
    step_node **steps;
    size_t n_steps;
    argv_t start, ready;
};

/* ---- small helpers ------------------------------------------------------- */

static void argv_clear(argv_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

static int argv_copy(argv_t *dst, const char *const *src, size_t n)
{
    dst->v = NULL;
    dst->n = 0;
    if (!src || n == 0)
        return 0;
    dst->v = calloc(n, sizeof *dst->v);
    if (!dst->v)
        return -1;
    for (size_t i = 0; i < n; i++) {
        dst->v[i] = strdup(src[i]);
        if (!dst->v[i]) {
            dst->n = i;
            argv_clear(dst);
            return -1;
        }
    }
    dst->n = n;
    return 0;
}

static void *own(step_node *s, void *p)
{
    if (!p)
        return NULL;
    if (s->n_owned == s->cap_owned) {
        size_t cap = s->cap_owned ? s->cap_owned * 2 : 8;
        void **o = realloc(s->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            return NULL;
        }
        s->owned = o;
        s->cap_owned = cap;
    }
    s->owned[s->n_owned++] = p;
    return p;
}

static void step_unref(step_node *s)
{
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    free(s->owned);
    step_unref(s->shares);
    free(s);
}

static step_node *step_ref(step_node *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

static const char *own_str(step_node *s, const char *str, bool *oom)
{
    if (!str)
        return NULL;
    char *d = own(s, strdup(str));
    if (!d)
        *oom = true;
    return d;
}

static const char *const *own_strv(step_node *s, const char *const *v, size_t n, bool *oom)
{
    if (n == 0)
        return NULL;
    const char **d = own(s, calloc(n, sizeof *d));
    if (!d) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        d[i] = own_str(s, v[i], oom);
    return d;
}

/* ---- recipes ------------------------------------------------------------- */

sbx_recipe *sbx_recipe_ref(const sbx_recipe *r)
{
    sbx_recipe *m = (sbx_recipe *)r;
    if (m)
        __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void sbx_recipe_unref(sbx_recipe *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < r->n_steps; i++)
        step_unref(r->steps[i]);
    free(r->steps);
    free(r->ref);
    free(r->add_python);
    free(r->context_dir);
    argv_clear(&r->start);
    argv_clear(&r->ready);
    free(r);
}

static int resolve_context(char **out, const char *context_dir, sbx_error *err)
{
    const char *c = context_dir ? context_dir : ".";
    char *rp = realpath(c, NULL);
    if (!rp)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "open build context '%s'", c);
    *out = rp;
    return 0;
}

static int recipe_new_base(sbx_recipe **out, sbx_base_kind kind, const char *ref,
                           const char *add_python, const char *context_dir, sbx_error *err)
{
    *out = NULL;
    sbx_recipe *r = calloc(1, sizeof *r);
    if (!r)
        return sbx_error_set(err, SBX_ENOMEM, "allocate recipe");
    r->refs = 1;
    r->base.kind = kind;
    r->ref = strdup(ref);
    r->add_python = add_python ? strdup(add_python) : NULL;
    if (!r->ref || (add_python && !r->add_python)) {
        sbx_recipe_unref(r);
        return sbx_error_set(err, SBX_ENOMEM, "allocate recipe");
    }
    r->base.ref = r->ref;
    r->base.add_python = r->add_python;
    if (resolve_context(&r->context_dir, context_dir, err) < 0) {
        sbx_recipe_unref(r);
        return err->code;
    }
    *out = r;
    return 0;
}

int sbx_recipe_from_registry(sbx_recipe **out, const char *ref, const char *add_python,
                             const char *context_dir, sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_ref(ref, "from_registry", err) < 0)
        return err->code;
    if (add_python && rcp_rv_version(add_python, "add_python", err) < 0)
        return err->code;
    return recipe_new_base(out, SBX_BASE_REGISTRY, ref, add_python, context_dir, err);
}

int sbx_recipe_from_sbx(sbx_recipe **out, const char *context_dir, sbx_error *err)
{
    return recipe_new_base(out, SBX_BASE_SBX, "sbx", NULL, context_dir, err);
}

int sbx_recipe_from_image(sbx_recipe **out, const char *name_or_digest, const char *context_dir,
                          sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_ref(name_or_digest, "image", err) < 0)
        return err->code;
    return recipe_new_base(out, SBX_BASE_IMAGE, name_or_digest, NULL, context_dir, err);
}

/* A shallow copy of r (sharing its steps) with room for one more step. */
static int recipe_derive(sbx_recipe **out, const sbx_recipe *r, size_t extra, sbx_error *err)
{
    *out = NULL;
    if (r->n_steps + extra > SBX_RECIPE_MAX_STEPS)
        return sbx_error_set(err, SBX_ELIMIT, "add step: a recipe holds at most %d steps",
                             SBX_RECIPE_MAX_STEPS);
    sbx_recipe *n = calloc(1, sizeof *n);
    if (!n)
        return sbx_error_set(err, SBX_ENOMEM, "allocate recipe");
    n->refs = 1;
    n->base = r->base;
    n->ref = strdup(r->ref);
    n->add_python = r->add_python ? strdup(r->add_python) : NULL;
    n->context_dir = strdup(r->context_dir);
    n->steps = calloc(r->n_steps + extra + 1, sizeof *n->steps);
    bool oom = !n->ref || (r->add_python && !n->add_python) || !n->context_dir || !n->steps;
    if (!oom)
        oom = argv_copy(&n->start, (const char *const *)r->start.v, r->start.n) < 0 ||
              argv_copy(&n->ready, (const char *const *)r->ready.v, r->ready.n) < 0;
    if (oom) {
        sbx_recipe_unref(n);
        return sbx_error_set(err, SBX_ENOMEM, "allocate recipe");
    }
    n->base.ref = n->ref;
    n->base.add_python = n->add_python;
    for (size_t i = 0; i < r->n_steps; i++)
        n->steps[i] = step_ref(r->steps[i]);
    n->n_steps = r->n_steps;
    *out = n;
    return 0;
}

/* Finish a new step: compute its canonical JSON and append it to a derived
 * recipe.  Takes ownership of s. */
static int append_step(sbx_recipe **out, const sbx_recipe *r, step_node *s, bool oom,
                       sbx_error *err)
{
    *out = NULL;
    if (!oom)
        s->pub.canonical = own(s, rcp_step_canonical_json(&s->pub));
    if (oom || !s->pub.canonical) {
        step_unref(s);
        return sbx_error_set(err, SBX_ENOMEM, "allocate step");
    }
    sbx_recipe *n;
    if (recipe_derive(&n, r, 1, err) < 0) {
        step_unref(s);
        return err->code;
    }
    n->steps[n->n_steps++] = s;
    *out = n;
    return 0;
}

static step_node *step_new(sbx_step_kind kind, sbx_error *err)
{
    step_node *s = calloc(1, sizeof *s);
    if (!s) {
        sbx_error_set(err, SBX_ENOMEM, "allocate step");
        return NULL;
    }
    s->refs = 1;
    s->pub.kind = kind;
    return s;
}

int rcp_recipe_set_last_where(sbx_recipe *r, const char *where)
{
    if (!r->n_steps)
        return 0;
    step_node *s = r->steps[r->n_steps - 1];
    bool oom = false;
    s->pub.where = own_str(s, where, &oom);
    return oom ? -1 : 0;
}

/* ---- step functions ------------------------------------------------------ */

int sbx_recipe_with_secrets(sbx_recipe **out, const sbx_recipe *r,
                            const sbx_step_secret *secrets, size_t n, sbx_error *err)
{
    *out = NULL;
    step_node *last = r->n_steps ? r->steps[r->n_steps - 1] : NULL;
    sbx_step_kind k = last ? last->pub.kind : 0;
    if (k != SBX_STEP_APT_INSTALL && k != SBX_STEP_PIP_INSTALL && k != SBX_STEP_NPM_INSTALL &&
        k != SBX_STEP_RUN_CMD)
        return sbx_error_set(err, SBX_EINVAL, "secrets: only apt_install, pip_install, "
                             "npm_install and run_cmd steps run commands that can use them");
    if (n > SBX_RECIPE_MAX_LIST)
        return sbx_error_set(err, SBX_ELIMIT, "expected at most %d secrets in a step",
                             SBX_RECIPE_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        if (rcp_rv_secret_id(secrets[i].id, err) < 0 ||
            (secrets[i].env && rcp_rv_env_name(secrets[i].env, err) < 0))
            return sbx_error_wrap(err, "secrets");
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(secrets[i].id, secrets[j].id))
                return sbx_error_set(err, SBX_EINVAL, "secrets: '%s' is named twice",
                                     secrets[i].id);
            if (secrets[i].env && secrets[j].env && !strcmp(secrets[i].env, secrets[j].env))
                return sbx_error_set(err, SBX_EINVAL, "secrets: two secrets set env '%s'",
                                     secrets[i].env);
        }
    }
    step_node *s = step_new(k, err);
    if (!s)
        return err->code;
    s->pub = last->pub; /* the same step, pointing into last's fields */
    s->pub.canonical = NULL;
    s->pub.secrets = NULL;
    s->pub.n_secrets = 0;
    s->shares = step_ref(last);
    bool oom = false;
    if (n) {
        sbx_step_secret *v = own(s, calloc(n, sizeof *v));
        oom = !v;
        for (size_t i = 0; v && i < n; i++) {
            v[i].id = own_str(s, secrets[i].id, &oom);
            v[i].env = own_str(s, secrets[i].env, &oom);
        }
        s->pub.secrets = v;
        s->pub.n_secrets = n;
    }
    s->pub.where = last->pub.where;
    sbx_recipe *base;
    if (recipe_derive(&base, r, 0, err) < 0) {
        step_unref(s);
        return err->code;
    }
    step_unref(base->steps[--base->n_steps]); /* replaced below */
    int rc = append_step(out, base, s, oom, err);
    sbx_recipe_unref(base);
    return rc;
}

static int check_list(const char *const *v, size_t n, const char *what, const char *item,
                      bool allow_spaces, bool package, sbx_error *err)
{
    if (n == 0 || !v)
        return sbx_error_set(err, SBX_EINVAL, "expected at least one %s in %s", item, what);
    if (n > SBX_RECIPE_MAX_LIST)
        return sbx_error_set(err, SBX_ELIMIT, "expected at most %d entries in %s",
                             SBX_RECIPE_MAX_LIST, what);
    for (size_t i = 0; i < n; i++) {
        int rc = package ? rcp_rv_package(v[i], item, allow_spaces, err)
                         : rcp_rv_text(v[i], item, true, err);
        if (rc < 0)
            return rc;
        if (!package && !*v[i])
            return sbx_error_set(err, SBX_EINVAL, "expected a non-empty %s in %s", item, what);
    }
    return 0;
}

int sbx_recipe_python(sbx_recipe **out, const sbx_recipe *r, const char *version,
                      sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_version(version, "python", err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_PYTHON, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.python.version = own_str(s, version, &oom);
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_apt_install(sbx_recipe **out, const sbx_recipe *r, const char *const *pkgs,
                           size_t n, sbx_error *err)
{
    *out = NULL;
    if (check_list(pkgs, n, "apt_install", "package", false, true, err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_APT_INSTALL, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.apt_install.packages = own_strv(s, pkgs, n, &oom);
    s->pub.u.apt_install.n_packages = n;
    return append_step(out, r, s, oom, err);
}

static int check_urls(const char *const *v, size_t n, const char *what, sbx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (rcp_rv_ref(v[i], what, err) < 0 || rcp_rv_url_no_userinfo(v[i], what, err) < 0)
            return err->code;
    }
    return 0;
}

int sbx_recipe_pip_install(sbx_recipe **out, const sbx_recipe *r, const sbx_pip_opts *o,
                           sbx_error *err)
{
    *out = NULL;
    if (check_list(o->packages, o->n_packages, "pip_install", "package", true, true, err) < 0 ||
        (o->user && rcp_rv_user(o->user, "pip_install user", err) < 0) ||
        (o->user && o->user_install &&
         sbx_error_set(err, SBX_EINVAL, "pip_install: user is true (pip --user) or a user "
                       "name, not both") < 0) ||
        (o->index_url && (rcp_rv_ref(o->index_url, "index_url", err) < 0 ||
                          rcp_rv_url_no_userinfo(o->index_url, "index_url", err) < 0)) ||
        check_urls(o->extra_index_urls, o->n_extra_index_urls, "extra_index_urls", err) < 0 ||
        check_urls(o->find_links, o->n_find_links, "find_links", err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_PIP_INSTALL, err);
    if (!s)
        return err->code;
    bool oom = false;
    __typeof__(s->pub.u.pip_install) *p = &s->pub.u.pip_install;
    p->packages = own_strv(s, o->packages, o->n_packages, &oom);
    p->n_packages = o->n_packages;
    p->user = own_str(s, o->user, &oom);
    p->user_install = o->user_install;
    p->index_url = own_str(s, o->index_url, &oom);
    p->extra_index_urls = own_strv(s, o->extra_index_urls, o->n_extra_index_urls, &oom);
    p->n_extra_index_urls = o->n_extra_index_urls;
    p->find_links = own_strv(s, o->find_links, o->n_find_links, &oom);
    p->n_find_links = o->n_find_links;
    p->pre = o->pre;
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_npm_install(sbx_recipe **out, const sbx_recipe *r, const char *const *pkgs,
                           size_t n, bool global, sbx_error *err)
{
    *out = NULL;
    /* no packages: the project in the working directory (its package.json) */
    if (n == 0 && global)
        return sbx_error_set(err, SBX_EINVAL, "expected packages for a global npm_install (without "
                             "packages it installs the package.json in the working directory)");
    if (n && check_list(pkgs, n, "npm_install", "package", false, true, err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_NPM_INSTALL, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.npm_install.packages = own_strv(s, pkgs, n, &oom);
    s->pub.u.npm_install.n_packages = n;
    s->pub.u.npm_install.global = global;
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_run_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *commands,
                       size_t n, const char *user, sbx_error *err)
{
    *out = NULL;
    if (check_list(commands, n, "run_cmd", "command", true, false, err) < 0 ||
        (user && rcp_rv_user(user, "run_cmd user", err) < 0))
        return err->code;
    step_node *s = step_new(SBX_STEP_RUN_CMD, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.run_cmd.commands = own_strv(s, commands, n, &oom);
    s->pub.u.run_cmd.n_commands = n;
    s->pub.u.run_cmd.user = own_str(s, user, &oom);
    return append_step(out, r, s, oom, err);
}

typedef struct {
    const char *name, *value;
} env_pair;

static int env_cmp(const void *a, const void *b)
{
    return strcmp(((const env_pair *)a)->name, ((const env_pair *)b)->name);
}

int sbx_recipe_env(sbx_recipe **out, const sbx_recipe *r, const char *const *names,
                   const char *const *values, size_t n, sbx_error *err)
{
    *out = NULL;
    if (n == 0 || !names || !values)
        return sbx_error_set(err, SBX_EINVAL, "expected at least one variable in env");
    if (n > SBX_RECIPE_MAX_LIST)
        return sbx_error_set(err, SBX_ELIMIT, "expected at most %d variables in env",
                             SBX_RECIPE_MAX_LIST);
    _cleanup_free_ env_pair *pairs = calloc(n, sizeof *pairs);
    if (!pairs)
        return sbx_error_set(err, SBX_ENOMEM, "allocate env");
    for (size_t i = 0; i < n; i++) {
        if (rcp_rv_env_name(names[i], err) < 0 ||
            rcp_rv_text(values[i], "an env value", true, err) < 0)
            return err->code;
        pairs[i] = (env_pair){names[i], values[i]};
    }
    qsort(pairs, n, sizeof *pairs, env_cmp);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(pairs[i - 1].name, pairs[i].name))
            return sbx_error_set(err, SBX_EINVAL, "expected unique env names, '%s' is repeated",
                                 pairs[i].name);
    step_node *s = step_new(SBX_STEP_ENV, err);
    if (!s)
        return err->code;
    bool oom = false;
    const char **nv = own(s, calloc(n, sizeof *nv));
    const char **vv = own(s, calloc(n, sizeof *vv));
    oom = !nv || !vv;
    for (size_t i = 0; !oom && i < n; i++) {
        nv[i] = own_str(s, pairs[i].name, &oom);
        vv[i] = own_str(s, pairs[i].value, &oom);
    }
    s->pub.u.env.names = nv;
    s->pub.u.env.values = vv;
    s->pub.u.env.n = n;
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_workdir(sbx_recipe **out, const sbx_recipe *r, const char *path, sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_abs_path(path, "workdir", err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_WORKDIR, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.workdir.path = own(s, rcp_path_clean(path, false));
    oom = !s->pub.u.workdir.path;
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_user(sbx_recipe **out, const sbx_recipe *r, const char *name, sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_user(name, "user", err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_USER, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.user.name = own_str(s, name, &oom);
    return append_step(out, r, s, oom, err);
}

int sbx_recipe_copy(sbx_recipe **out, const sbx_recipe *r, const sbx_copy_opts *o,
                    sbx_ctx *ctx, sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_rel_path(o->src, "copy src", err) < 0 ||
        rcp_rv_abs_path(o->dest, "copy dest", err) < 0 ||
        (o->owner && rcp_rv_user(o->owner, "copy owner", err) < 0))
        return err->code;
    if (o->mode < -1 || o->mode > 07777)
        return sbx_error_set(err, SBX_EINVAL, "expected copy mode between 0 and 07777");
    char digest[SBX_DIGEST_BUFSZ];
    if (sbx_recipe_copy_digest(digest, r->context_dir, o->src, ctx, err) < 0)
        return err->code;
    step_node *s = step_new(SBX_STEP_COPY, err);
    if (!s)
        return err->code;
    bool oom = false;
    s->pub.u.copy.src = own(s, rcp_path_clean(o->src, false));
    s->pub.u.copy.dest = own(s, rcp_path_clean(o->dest, true));
    oom = !s->pub.u.copy.src || !s->pub.u.copy.dest;
    s->pub.u.copy.owner = own_str(s, o->owner, &oom);
    s->pub.u.copy.mode = o->mode;
    s->pub.u.copy.content_digest = own_str(s, digest, &oom);
    return append_step(out, r, s, oom, err);
}

static int set_cmd(sbx_recipe **out, const sbx_recipe *r, bool start, const char *const *argv,
                   size_t n, sbx_error *err)
{
    *out = NULL;
    const char *what = start ? "start_cmd" : "ready_cmd";
    if (check_list(argv, n, what, "argument", true, false, err) < 0)
        return err->code;
    sbx_recipe *nr;
    if (recipe_derive(&nr, r, 0, err) < 0)
        return err->code;
    argv_t *a = start ? &nr->start : &nr->ready;
    argv_clear(a);
    if (argv_copy(a, argv, n) < 0) {
        sbx_recipe_unref(nr);
        return sbx_error_set(err, SBX_ENOMEM, "allocate %s", what);
    }
    *out = nr;
    return 0;
}

int sbx_recipe_start_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *argv,
                         size_t n, sbx_error *err)
{
    return set_cmd(out, r, true, argv, n, err);
}

int sbx_recipe_ready_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *argv,
                         size_t n, sbx_error *err)
{
    return set_cmd(out, r, false, argv, n, err);
}

/* ---- reading ------------------------------------------------------------- */

const sbx_recipe_base *sbx_recipe_get_base(const sbx_recipe *r) { return &r->base; }
size_t sbx_recipe_n_steps(const sbx_recipe *r) { return r->n_steps; }
const char *sbx_recipe_context_dir(const sbx_recipe *r) { return r->context_dir; }

const sbx_step *sbx_recipe_step(const sbx_recipe *r, size_t i)
{
    return i < r->n_steps ? &r->steps[i]->pub : NULL;
}

const char *const *sbx_recipe_get_start_cmd(const sbx_recipe *r, size_t *n)
{
    *n = r->start.n;
    return (const char *const *)r->start.v;
}

const char *const *sbx_recipe_get_ready_cmd(const sbx_recipe *r, size_t *n)
{
    *n = r->ready.n;
    return (const char *const *)r->ready.v;
}
