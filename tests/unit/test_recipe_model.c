/* The recipe model: immutability and sharing, threads, the API and YAML
 * front ends agreeing, chained cache keys, and the digest properties
 * (formatting never changes it; any change to the image always does). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sbx/recipe.h"
#include "sbx_common.h"
#include "testutil.h"

static char *g_ctx;

static int setup(void **state)
{
    (void)state;
    g_ctx = tu_tmpdir();
    char *cache = tu_path(g_ctx, ".cache");
    setenv("SBX_CACHE_DIR", cache, 1);
    free(cache);
    char *p = tu_path(g_ctx, "app");
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
    p = tu_path(g_ctx, "app/main.py");
    tu_write_file(p, "print('hi')\n");
    free(p);
    p = tu_path(g_ctx, "run.sh");
    tu_write_file(p, "#!/bin/sh\necho run\n");
    chmod(p, 0755);
    free(p);
    p = tu_path(g_ctx, ".sbxignore");
    tu_write_file(p, ".cache\n");
    free(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_tmpdir_free(g_ctx);
    return 0;
}

static void digest_of(const char *yaml, char out[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    if (sbx_recipe_parse_buffer(&r, yaml, strlen(yaml), "t.yaml", g_ctx, NULL, &err) < 0)
        fail_msg("parse failed: %s: %s\n--- recipe:\n%s", err.where, err.msg, yaml);
    assert_int_equal(sbx_recipe_digest(out, r, &err), 0);
    sbx_recipe_unref(r);
}

/* ---- the full recipe used by the property tests ---- */
static const char *BASE_RECIPE =
    "from_registry: python:3.12-slim\n"
    "add_python: \"3.11\"\n"
    "steps:\n"
    "  - python: \"3.12\"\n"
    "  - apt_install: [curl, git]\n"
    "  - pip_install:\n"
    "      packages: [requests==2.32.3, flask]\n"
    "      user: app\n"
    "      index_url: http://127.0.0.1:1/simple\n"
    "      extra_index_urls: [http://127.0.0.1:2/simple]\n"
    "      find_links: [http://127.0.0.1:3/links]\n"
    "      pre: true\n"
    "  - npm_install: {packages: [left-pad], global: true}\n"
    "  - run_cmd: {commands: [echo one, echo two], user: app}\n"
    "  - env: {A: '1', B: two}\n"
    "  - workdir: /srv/app\n"
    "  - user: app\n"
    "  - copy: {src: app, dest: /srv/app/, owner: 'app:app', mode: '0755'}\n"
    "start_cmd: python main.py\n"
    "ready_cmd: [curl, -f, http://127.0.0.1:8000/]\n";

static void test_reformatting_keeps_digest(void **state)
{
    (void)state;
    char want[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
    digest_of(BASE_RECIPE, want);
    static const char *same[] = {
        /* key order, comments, quoting, flow vs block, explicit document markers */
        "# a comment\n"
        "---\n"
        "ready_cmd:\n"
        "  - curl\n"
        "  - \"-f\"\n"
        "  - 'http://127.0.0.1:8000/'\n"
        "start_cmd: 'python main.py'   # trailing comment\n"
        "steps:\n"
        "  - {python: '3.12'}\n"
        "  - apt_install:\n"
        "      - curl\n"
        "      - \"git\"\n"
        "  - pip_install: {pre: True, find_links: http://127.0.0.1:3/links,\n"
        "      extra_index_urls: 'http://127.0.0.1:2/simple', index_url: \"http://127.0.0.1:1/simple\",\n"
        "      user: app, packages: ['requests==2.32.3', flask]}\n"
        "  - npm_install:\n"
        "      global: true\n"
        "      packages: left-pad\n"
        "  - run_cmd:\n"
        "      user: app\n"
        "      commands:\n"
        "        - echo one\n"
        "        - echo two\n"
        "  - env:\n"
        "      B: \"two\"\n"
        "      A: \"1\"\n"
        "  - workdir: /srv//app/\n"
        "  - user: !!str app\n"
        "  - copy:\n"
        "      mode: 0755\n"
        "      owner: app:app\n"
        "      dest: /srv/app/\n"
        "      src: ./app/\n"
        "add_python: '3.11'\n"
        "from_registry: \"python:3.12-slim\"\n"
        "...\n",
        /* mode written as 0o755 and 755; run_cmd as a bare list */
        "from_registry: python:3.12-slim\nadd_python: \"3.11\"\nsteps:\n"
        "  - python: \"3.12\"\n  - apt_install: [curl, git]\n"
        "  - pip_install: {packages: [requests==2.32.3, flask], user: app, index_url: "
        "http://127.0.0.1:1/simple, extra_index_urls: [http://127.0.0.1:2/simple], find_links: "
        "[http://127.0.0.1:3/links], pre: true}\n"
        "  - npm_install: {packages: [left-pad], global: true}\n"
        "  - run_cmd: {commands: [echo one, echo two], user: app}\n"
        "  - env: {B: two, A: '1'}\n  - workdir: /srv/app/.\n  - user: app\n"
        "  - copy: {src: app/../app, dest: /srv/app/, owner: 'app:app', mode: 0o755}\n"
        "start_cmd: [/bin/sh, -c, python main.py]\n"
        "ready_cmd: [curl, -f, http://127.0.0.1:8000/]\n",
    };
    for (size_t i = 0; i < SBX_ARRAY_LEN(same); i++) {
        digest_of(same[i], got);
        if (strcmp(want, got))
            fail_msg("variant %zu changed the digest", i);
    }
    /* String and list forms of single values. */
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ], c[SBX_DIGEST_BUFSZ];
    digest_of("base: sbx\nsteps: [{run_cmd: make}]\n", a);
    digest_of("base: sbx\nsteps: [{run_cmd: [make]}]\n", b);
    digest_of("base: sbx\nsteps: [{run_cmd: {commands: make}}]\n", c);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    digest_of("base: sbx\nsteps: [{pip_install: flask}]\n", a);
    digest_of("base: sbx\nsteps: [{pip_install: {packages: [flask], pre: false}}]\n", b);
    digest_of("base: sbx\nsteps: [{pip_install: {packages: flask, user: null, "
              "extra_index_urls: []}}]\n", c);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    digest_of("base: sbx\nsteps: [{npm_install: [x]}]\n", a);
    digest_of("base: sbx\nsteps: [{npm_install: {packages: x, global: false}}]\n", b);
    assert_string_equal(a, b);
    digest_of("base: sbx\nsteps: [{run_cmd: \"a\\nb\"}]\n", a);
    digest_of("base: sbx\nsteps:\n  - run_cmd: |-\n      a\n      b\n", b);
    assert_string_equal(a, b);
}

/* Replace the first occurrence of from with to in BASE_RECIPE. */
static char *variant(const char *from, const char *to)
{
    const char *at = strstr(BASE_RECIPE, from);
    if (!at)
        fail_msg("'%s' not in the base recipe", from);
    return sbx__strdup_printf("%.*s%s%s", (int)(at - BASE_RECIPE), BASE_RECIPE, to,
                             at + strlen(from));
}

static void test_every_change_changes_digest(void **state)
{
    (void)state;
    static const char *changes[][2] = {
        {"python:3.12-slim", "python:3.12"},
        {"python:3.12-slim", "docker.io/library/python:3.12-slim"},
        {"add_python: \"3.11\"", "add_python: \"3.10\""},
        {"python: \"3.12\"", "python: \"3.13\""},
        {"[curl, git]", "[curl, gitk]"},
        {"[curl, git]", "[git, curl]"},
        {"[curl, git]", "[curl, git, vim]"},
        {"requests==2.32.3", "requests==2.32.4"},
        {"user: app\n      index_url", "user: bob\n      index_url"},
        {"user: app\n      index_url", "user: true\n      index_url"},
        {"1/simple", "9/simple"},
        {"2/simple", "8/simple"},
        {"3/links", "7/links"},
        {"pre: true", "pre: false"},
        {"[left-pad]", "[right-pad]"},
        {"global: true", "global: false"},
        {"echo one", "echo  one"},
        {"echo two]", "echo two, echo three]"},
        {"[echo one, echo two], user: app", "[echo one, echo two], user: root"},
        {"A: '1'", "A: '2'"},
        {"A: '1'", "C: '1'"},
        {"B: two", "B: two, C: x"},
        {"/srv/app\n", "/srv/app2\n"},
        {"  - user: app\n", "  - user: app2\n"},
        {"src: app,", "src: run.sh,"},
        {"dest: /srv/app/", "dest: /srv/app"},
        {"'app:app'", "'app:root'"},
        {"mode: '0755'", "mode: '0750'"},
        {"mode: '0755'", "mode: null"},
        {"python main.py", "python app.py"},
        {"http://127.0.0.1:8000/]", "http://127.0.0.1:8001/]"},
        {"  - workdir: /srv/app\n", ""},
        {"  - user: app\n", "  - user: app\n  - user: app\n"},
    };
    size_t n = SBX_ARRAY_LEN(changes);
    char(*digests)[SBX_DIGEST_BUFSZ] = calloc(n + 1, SBX_DIGEST_BUFSZ);
    assert_non_null(digests);
    digest_of(BASE_RECIPE, digests[n]);
    for (size_t i = 0; i < n; i++) {
        char *y = variant(changes[i][0], changes[i][1]);
        digest_of(y, digests[i]);
        free(y);
        for (size_t j = 0; j <= n; j++)
            if (j != i && (j < i || j == n) && !strcmp(digests[i], digests[j]))
                fail_msg("change %zu ('%s' -> '%s') gives the digest of %s %zu", i,
                         changes[i][0], changes[i][1], j == n ? "the base" : "change", j);
    }
    free(digests);
}

/* pip_install's user as the SDK has it: true is pip --user, false the
 * same recipe as no user at all; a name still runs pip as that user. */
static void test_pip_user_boolean(void **state)
{
    (void)state;
    char none[SBX_DIGEST_BUFSZ], no[SBX_DIGEST_BUFSZ], yes[SBX_DIGEST_BUFSZ],
        named[SBX_DIGEST_BUFSZ];
    digest_of("image: x\nsteps:\n  - pip_install: {packages: [a]}\n", none);
    digest_of("image: x\nsteps:\n  - pip_install: {packages: [a], user: false}\n", no);
    digest_of("image: x\nsteps:\n  - pip_install: {packages: [a], user: true}\n", yes);
    digest_of("image: x\nsteps:\n  - pip_install: {packages: [a], user: \"true\"}\n", named);
    assert_string_equal(none, no);
    assert_string_not_equal(yes, no);
    assert_string_not_equal(named, yes); /* quoted: a user named "true" */
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    const char *y = "image: x\nsteps:\n  - pip_install: {packages: [a], user: true}\n";
    assert_int_equal(sbx_recipe_parse_buffer(&r, y, strlen(y), "t", g_ctx, NULL, &err), 0);
    const sbx_step *st = sbx_recipe_step(r, 0);
    assert_true(st->u.pip_install.user_install);
    assert_null(st->u.pip_install.user);
    sbx_recipe_unref(r);
    const char *both[] = {"a"};
    sbx_pip_opts o = SBX_PIP_OPTS_INIT;
    o.packages = both;
    o.n_packages = 1;
    o.user = "app";
    o.user_install = true;
    sbx_recipe *base = NULL, *out = NULL;
    assert_int_equal(sbx_recipe_parse_buffer(&base, "image: x\n", 9, "b", g_ctx, NULL, &err), 0);
    assert_int_equal(sbx_recipe_pip_install(&out, base, &o, &err), SBX_EINVAL);
    sbx_recipe_unref(base);
}

static void test_copied_content_changes_digest(void **state)
{
    (void)state;
    char a[SBX_DIGEST_BUFSZ], b[SBX_DIGEST_BUFSZ];
    digest_of(BASE_RECIPE, a);
    char *p = tu_path(g_ctx, "app/main.py");
    tu_write_file(p, "print('ho')\n"); /* same size, one byte differs */
    digest_of(BASE_RECIPE, b);
    assert_string_not_equal(a, b);
    tu_write_file(p, "print('hi')\n");
    digest_of(BASE_RECIPE, b);
    assert_string_equal(a, b);
    chmod(p, 0755); /* executable bit */
    digest_of(BASE_RECIPE, b);
    assert_string_not_equal(a, b);
    chmod(p, 0644);
    free(p);
    digest_of(BASE_RECIPE, b);
    assert_string_equal(a, b);
}

static void test_api_and_yaml_agree(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r0 = NULL, *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;
    const char *pk[] = {"curl", "git"};
    const char *names[] = {"B", "A"}, *values[] = {"two", "1"};
    const char *start[] = {"/bin/sh", "-c", "python main.py"};
    sbx_copy_opts co = SBX_COPY_OPTS_INIT;
    co.src = "run.sh";
    co.dest = "/usr/local/bin/run";
    assert_int_equal(sbx_recipe_from_sbx(&r0, g_ctx, &err), 0);
    assert_int_equal(sbx_recipe_apt_install(&r1, r0, pk, 2, &err), 0);
    assert_int_equal(sbx_recipe_env(&r2, r1, names, values, 2, &err), 0);
    assert_int_equal(sbx_recipe_copy(&r3, r2, &co, NULL, &err), 0);
    assert_int_equal(sbx_recipe_start_cmd(&r4, r3, start, 3, &err), 0);
    char api[SBX_DIGEST_BUFSZ], yaml[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_recipe_digest(api, r4, &err), 0);
    digest_of("base: sbx\nsteps:\n  - apt_install: [curl, git]\n  - env: {A: '1', B: two}\n"
              "  - copy: {src: run.sh, dest: /usr/local/bin/run}\nstart_cmd: python main.py\n",
              yaml);
    assert_string_equal(api, yaml);

    /* Immutability and sharing: r0..r3 are unchanged and share step objects. */
    assert_int_equal(sbx_recipe_n_steps(r0), 0);
    assert_int_equal(sbx_recipe_n_steps(r1), 1);
    assert_int_equal(sbx_recipe_n_steps(r4), 3);
    assert_ptr_equal(sbx_recipe_step(r1, 0), sbx_recipe_step(r4, 0));
    assert_ptr_equal(sbx_recipe_step(r3, 2), sbx_recipe_step(r4, 2));
    size_t n = 0;
    assert_null(sbx_recipe_get_start_cmd(r3, &n));
    assert_int_equal(n, 0);
    assert_string_equal(sbx_recipe_get_start_cmd(r4, &n)[2], "python main.py");
    /* Typed fields; env sorted by name. */
    const sbx_step *e = sbx_recipe_step(r4, 1);
    assert_int_equal(e->kind, SBX_STEP_ENV);
    assert_string_equal(e->u.env.names[0], "A");
    assert_string_equal(e->u.env.values[0], "1");
    const sbx_step *c = sbx_recipe_step(r4, 2);
    assert_int_equal(c->kind, SBX_STEP_COPY);
    assert_int_equal(c->u.copy.mode, -1);
    assert_null(c->u.copy.owner);
    assert_true(sbx__digest_valid(c->u.copy.content_digest));
    assert_non_null(strstr(c->canonical, c->u.copy.content_digest));
    assert_null(c->where);
    assert_int_equal(sbx_recipe_get_base(r4)->kind, SBX_BASE_SBX);
    /* Dropping the parents leaves the child whole. */
    sbx_recipe_unref(r0);
    sbx_recipe_unref(r1);
    sbx_recipe_unref(r2);
    sbx_recipe_unref(r3);
    assert_string_equal(sbx_recipe_step(r4, 0)->u.apt_install.packages[1], "git");
    assert_int_equal(sbx_recipe_digest(yaml, r4, &err), 0);
    assert_string_equal(api, yaml);
    sbx_recipe_unref(r4);
    sbx_recipe_unref(NULL);
}

static void test_api_validation(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL, *o = (sbx_recipe *)0x1;
    assert_int_equal(sbx_recipe_from_registry(&r, "node:22", NULL, g_ctx, &err), 0);
    const char *bad_pkg[] = {"-oAPT::x=1"};
    assert_int_equal(sbx_recipe_apt_install(&o, r, bad_pkg, 1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "not an option");
    assert_null(o);
    assert_int_equal(sbx_recipe_apt_install(&o, r, NULL, 0, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected at least one package in apt_install");
    const char *n1[] = {"X", "X"}, *v1[] = {"a", "b"};
    assert_int_equal(sbx_recipe_env(&o, r, n1, v1, 2, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "'X' is repeated");
    assert_int_equal(sbx_recipe_workdir(&o, r, "rel", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected an absolute path for workdir");
    assert_int_equal(sbx_recipe_python(&o, r, "3.x", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected a version like \"3.12\"");
    assert_int_equal(sbx_recipe_user(&o, r, "a b", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "NAME:GROUP");
    const char *ctl[] = {"echo \x01"};
    assert_int_equal(sbx_recipe_run_cmd(&o, r, ctl, 1, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "without control characters");
    const char *utf[] = {"echo \xff"};
    assert_int_equal(sbx_recipe_run_cmd(&o, r, utf, 1, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "valid UTF-8");
    sbx_copy_opts co = {"app", "/x", NULL, 010000};
    assert_int_equal(sbx_recipe_copy(&o, r, &co, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "mode");
    co = (sbx_copy_opts){"missing", "/x", NULL, -1};
    assert_int_equal(sbx_recipe_copy(&o, r, &co, NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "copy 'missing'");
    assert_int_equal(sbx_recipe_from_sbx(&o, "/nonexistent/ctx", &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "open build context '/nonexistent/ctx'");
    assert_int_equal(sbx_recipe_from_registry(&o, "a b", NULL, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected an image reference");
    sbx_recipe_unref(r);
}

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_cache_keys_chain(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    const char *y1 = "from_registry: node:22\nsteps: [{apt_install: [a]}, {run_cmd: x}, "
                     "{run_cmd: y}]\n";
    const char *y2 = "from_registry: node:22\nsteps: [{apt_install: [a]}, {run_cmd: CHANGED}, "
                     "{run_cmd: y}]\n";
    sbx_recipe *a = NULL, *b = NULL;
    assert_int_equal(sbx_recipe_parse_buffer(&a, y1, strlen(y1), "a", g_ctx, NULL, &err), 0);
    assert_int_equal(sbx_recipe_parse_buffer(&b, y2, strlen(y2), "b", g_ctx, NULL, &err), 0);
    char ka[4][SBX_DIGEST_BUFSZ], kb[4][SBX_DIGEST_BUFSZ], k[SBX_DIGEST_BUFSZ];
    for (size_t i = 0; i <= 3; i++) {
        assert_int_equal(sbx_recipe_cache_key(ka[i], a, i, D1, &err), 0);
        assert_int_equal(sbx_recipe_cache_key(kb[i], b, i, D1, &err), 0);
    }
    /* Changing step 2 (index 1) keeps the keys before it, changes it and all after. */
    assert_string_equal(ka[0], kb[0]);
    assert_string_equal(ka[1], kb[1]);
    assert_string_not_equal(ka[2], kb[2]);
    assert_string_not_equal(ka[3], kb[3]);
    for (size_t i = 1; i <= 3; i++)
        assert_string_not_equal(ka[i], ka[i - 1]);
    /* A moved tag (another resolved digest) changes every key. */
    for (size_t i = 0; i <= 3; i++) {
        assert_int_equal(sbx_recipe_cache_key(k, a, i, D2, &err), 0);
        assert_string_not_equal(k, ka[i]);
    }
    /* key(0) as documented: sha256("sbx-cache-v1\n" base "\n" resolved). */
    char *doc = sbx__strdup_printf("sbx-cache-v1\n%s\n%s",
                                  "{\"add_python\":null,\"kind\":\"from_registry\",\"ref\":\"node:22\"}",
                                  D1);
    sbx__sha256_buf(doc, strlen(doc), k);
    free(doc);
    assert_string_equal(k, ka[0]);
    /* key(1) = sha256(key(0) "\n" step0.canonical) */
    doc = sbx__strdup_printf("%s\n%s", ka[0], sbx_recipe_step(a, 0)->canonical);
    sbx__sha256_buf(doc, strlen(doc), k);
    free(doc);
    assert_string_equal(k, ka[1]);
    assert_int_equal(sbx_recipe_cache_key(k, a, 4, D1, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "step 4 of 3");
    assert_int_equal(sbx_recipe_cache_key(k, a, 0, "latest", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected the resolved base digest");
    sbx_recipe_unref(a);
    sbx_recipe_unref(b);
}

typedef struct {
    sbx_recipe *shared;
    char want[SBX_DIGEST_BUFSZ];
    int failures;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *t = p;
    sbx_error err = SBX_ERROR_INIT;
    const char *pk[] = {"x"};
    for (int i = 0; i < 300; i++) {
        sbx_recipe *mine = sbx_recipe_ref(t->shared), *v = NULL;
        char d[SBX_DIGEST_BUFSZ];
        if (sbx_recipe_apt_install(&v, mine, pk, 1, &err) < 0 ||
            sbx_recipe_digest(d, mine, &err) < 0 || strcmp(d, t->want))
            __atomic_add_fetch(&t->failures, 1, __ATOMIC_RELAXED);
        sbx_recipe_unref(mine);
        sbx_recipe_unref(v);
    }
    return NULL;
}

static void test_shared_between_threads(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    thread_arg t = {0};
    const char *y = "base: sbx\nsteps: [{apt_install: [a]}, {run_cmd: x}, {env: {A: b}}]\n";
    assert_int_equal(sbx_recipe_parse_buffer(&t.shared, y, strlen(y), "t", g_ctx, NULL, &err), 0);
    assert_int_equal(sbx_recipe_digest(t.want, t.shared, &err), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(t.failures, 0);
    sbx_recipe_unref(t.shared);
}

static void test_parse_file_context_default(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    char *path = tu_path(g_ctx, "recipe.yaml");
    tu_write_file(path, "base: sbx\nsteps:\n  - copy: {src: run.sh, dest: /run.sh}\n");
    sbx_recipe *r = NULL;
    assert_int_equal(sbx_recipe_parse_file(&r, path, NULL, NULL, &err), 0);
    char *real = realpath(g_ctx, NULL);
    assert_string_equal(sbx_recipe_context_dir(r), real);
    const sbx_step *s = sbx_recipe_step(r, 0);
    char *where = sbx__strdup_printf("%s:3:5", path);
    assert_string_equal(s->where, where);
    free(where);
    free(real);
    sbx_recipe_unref(r);
    assert_int_equal(sbx_recipe_parse_file(&r, "/nonexistent.yaml", NULL, NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "read recipe: open '/nonexistent.yaml'");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reformatting_keeps_digest),
        cmocka_unit_test(test_every_change_changes_digest),
        cmocka_unit_test(test_pip_user_boolean),
        cmocka_unit_test(test_copied_content_changes_digest),
        cmocka_unit_test(test_api_and_yaml_agree),
        cmocka_unit_test(test_api_validation),
        cmocka_unit_test(test_cache_keys_chain),
        cmocka_unit_test(test_shared_between_threads),
        cmocka_unit_test(test_parse_file_context_default),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
