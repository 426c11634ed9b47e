/* Every kind of bad recipe input: the error code, the message (what was
 * expected) and the position, "file:line:col". */
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
    char *p = tu_path(g_ctx, "file.txt");
    tu_write_file(p, "x\n");
    free(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_tmpdir_free(g_ctx);
    return 0;
}

typedef struct {
    const char *yaml;
    int code;
    const char *where; /* "line:col" */
    const char *needle;
} bad_case;

static const bad_case cases[] = {
    /* unknown keys */
    {"base: sbx\nstep: []\n", SBX_EINVAL, "2:1",
     "unknown key 'step' in the recipe: expected one of from_registry, add_python, base"},
    {"base: sbx\nsteps:\n  - pip_install: {packages: [a], pree: true}\n", SBX_EINVAL, "3:34",
     "unknown key 'pree' in pip_install: expected one of packages, user, index_url"},
    {"base: sbx\nsteps:\n  - copy: {src: file.txt, dest: /x, chmod: 1}\n", SBX_EINVAL, "3:37",
     "unknown key 'chmod' in copy"},
    {"base: sbx\nsteps:\n  - npm_install: {packages: [a], globl: true}\n", SBX_EINVAL, "3:34",
     "unknown key 'globl' in npm_install"},
    {"base: sbx\nsteps:\n  - run_cmd: {command: x}\n", SBX_EINVAL, "3:15",
     "unknown key 'command' in run_cmd"},
    {"base: sbx\nsteps:\n  - apt-install: [a]\n", SBX_EINVAL, "3:5",
     "unknown step 'apt-install': expected one of python, apt_install"},
    /* wrong types */
    {"base: sbx\nsteps: {apt_install: [a]}\n", SBX_EINVAL, "2:8",
     "expected a list of steps, got a mapping"},
    {"base: sbx\nsteps:\n  - apt_install: {packages: {a: 1}}\n", SBX_EINVAL, "3:29",
     "expected a list of packages (or one string) for apt_install, got a mapping"},
    /* build secrets */
    {"base: sbx\nsteps:\n  - run_cmd: {commands: [x], secrets: [a/b]}\n", SBX_EINVAL, "3:40",
     "expected a secret id"},
    {"base: sbx\nsteps:\n  - run_cmd: {commands: [x], secrets: [a, {id: a}]}\n", SBX_EINVAL,
     "3:5", "'a' is named twice"},
    {"base: sbx\nsteps:\n  - run_cmd: {commands: [x], secrets: [{env: X}]}\n", SBX_EINVAL,
     "3:40", "expected 'id' in a secret"},
    {"base: sbx\nsteps:\n  - run_cmd: {commands: [x], secrets: [{id: a, env: 1X}]}\n",
     SBX_EINVAL, "3:40", "expected an environment variable name"},
    {"base: sbx\nsteps:\n  - run_cmd: {commands: [x], secrets: a}\n", SBX_EINVAL, "3:39",
     "expected a list of secrets"},
    {"base: sbx\nsteps:\n  - pip_install: {packages: [a], index_url: 'https://u:p@h/s'}\n",
     SBX_EINVAL, "3:5", "index_url 'https://u:****@h/s' holds credentials"},
    {"base: sbx\nsteps:\n  - pip_install: {packages: [a], find_links: ['http://t@h/w']}\n",
     SBX_EINVAL, "3:5", "find_links 'http://****@h/w' holds credentials"},
    {"base: sbx\nsteps:\n  - pip_install: {packages: [a], pre: yes}\n", SBX_EINVAL, "3:39",
     "expected true or false for pre, got a string 'yes'"},
    {"base: sbx\nsteps:\n  - env: [A, B]\n", SBX_EINVAL, "3:10",
     "expected a mapping for env, got a list"},
    {"base: sbx\nsteps:\n  - env: {A: {b: c}}\n", SBX_EINVAL, "3:14",
     "expected a string for an env value, got a mapping"},
    {"base: sbx\nsteps:\n  - env: {A: true}\n", SBX_EINVAL, "3:14",
     "expected a string value for env 'A' (quote it: \"true\")"},
    {"base: sbx\nsteps:\n  - workdir: [/a]\n", SBX_EINVAL, "3:14",
     "expected a string for workdir, got a list"},
    {"base: sbx\nsteps:\n  - user: true\n", SBX_EINVAL, "3:11",
     "expected a string for user, got a boolean"},
    {"base: sbx\nsteps:\n  - python: 3.x\n", SBX_EINVAL, "3:13",
     "expected a version like \"3.12\" for python, got '3.x'"},
    {"base: sbx\nsteps:\n  - copy: {src: file.txt, dest: /x, mode: 0799}\n", SBX_EINVAL, "3:43",
     "expected mode as octal permission bits"},
    {"base: sbx\nsteps:\n  - copy: file.txt\n", SBX_EINVAL, "3:11",
     "expected a mapping for copy, got a string"},
    {"base: sbx\nsteps:\n  - apt_install: [a]\n    run_cmd: x\n", SBX_EINVAL, "3:5",
     "expected a step: a mapping with exactly one of python, apt_install"},
    {"base: sbx\nstart_cmd: {a: b}\n", SBX_EINVAL, "2:12",
     "expected a list of arguments for start_cmd, got a mapping"},
    {"- base: sbx\n", SBX_EINVAL, "1:1", "expected a recipe (a mapping with a base and steps)"},
    {"", SBX_EINVAL, "1:1", "expected a recipe (a mapping), got an empty file"},
    {"base: sbx\nsteps:\n  - apt_install: [null]\n", SBX_EINVAL, "3:19",
     "expected a string for package, got nothing (null)"},
    {"base: sbx\nsteps:\n  - run_cmd: \"a\\0b\"\n", SBX_EINVAL, "3:14",
     "expected run_cmd without NUL characters"},
    {"base: sbx\nsteps:\n  - run_cmd: \"a\\x01b\"\n", SBX_EINVAL, "3:14",
     "without control characters (found 0x01)"},
    /* empty package lists */
    {"base: sbx\nsteps:\n  - apt_install: []\n", SBX_EINVAL, "3:18",
     "expected at least one package in apt_install, got an empty list"},
    {"base: sbx\nsteps:\n  - pip_install: {packages: []}\n", SBX_EINVAL, "3:29",
     "expected at least one package in pip_install, got an empty list"},
    {"base: sbx\nsteps:\n  - npm_install: []\n", SBX_EINVAL, "3:18",
     "expected at least one package in npm_install, got an empty list"},
    {"base: sbx\nsteps:\n  - npm_install: {global: true}\n", SBX_EINVAL, "3:5",
     "expected packages for a global npm_install"},
    {"base: sbx\nsteps:\n  - pip_install: {pre: true}\n", SBX_EINVAL, "3:18",
     "expected 'packages' in pip_install"},
    {"base: sbx\nsteps:\n  - run_cmd: []\n", SBX_EINVAL, "3:14",
     "expected at least one command in run_cmd, got an empty list"},
    {"base: sbx\nsteps:\n  - env: {}\n", SBX_EINVAL, "3:10",
     "expected at least one variable in env, got an empty mapping"},
    {"base: sbx\nsteps:\n  - apt_install: [curl, \"\"]\n", SBX_EINVAL, "3:25",
     "expected a non-empty package"},
    {"base: sbx\nsteps:\n  - apt_install: [curl git]\n", SBX_EINVAL, "3:19",
     "expected one package without spaces, got 'curl git'"},
    {"base: sbx\nsteps:\n  - apt_install: [--allow-unauthenticated]\n", SBX_EINVAL, "3:19",
     "expected a package, not an option"},
    /* relative workdir / dest, sources outside the context */
    {"base: sbx\nsteps:\n  - workdir: app\n", SBX_EINVAL, "3:14",
     "expected an absolute path for workdir, got 'app'"},
    {"base: sbx\nsteps:\n  - copy: {src: file.txt, dest: app/}\n", SBX_EINVAL, "3:33",
     "expected an absolute path for copy dest, got 'app/'"},
    {"base: sbx\nsteps:\n  - copy: {src: ../etc/passwd, dest: /x}\n", SBX_EINVAL, "3:17",
     "expected a path inside the build context for copy src, got '../etc/passwd'"},
    {"base: sbx\nsteps:\n  - copy: {src: /etc/passwd, dest: /x}\n", SBX_EINVAL, "3:17",
     "expected a path relative to the build context for copy src"},
    {"base: sbx\nsteps:\n  - copy: {dest: /x}\n", SBX_EINVAL, "3:11", "expected 'src' in copy"},
    {"base: sbx\nsteps:\n  - copy: {src: nothere, dest: /x}\n", SBX_ENOTFOUND, "3:17",
     "copy 'nothere': expected a path in the build context"},
    /* env names that are not names */
    {"base: sbx\nsteps:\n  - env: {1ABC: x}\n", SBX_EINVAL, "3:11",
     "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got '1ABC'"},
    {"base: sbx\nsteps:\n  - env: {A-B: x}\n", SBX_EINVAL, "3:11",
     "expected an environment variable name"},
    {"base: sbx\nsteps:\n  - env: {\"A=B\": x}\n", SBX_EINVAL, "3:11",
     "expected an environment variable name"},
    {"base: sbx\nsteps:\n  - env: {\"\": x}\n", SBX_EINVAL, "3:11",
     "expected an environment variable name"},
    /* duplicate keys, at every level */
    {"base: sbx\nsteps: []\nsteps: []\n", SBX_EINVAL, "3:1",
     "duplicate key 'steps' (first at line 2, column 1)"},
    {"base: sbx\nsteps:\n  - env:\n      A: x\n      A: y\n", SBX_EINVAL, "5:7",
     "duplicate key 'A' (first at line 4, column 7)"},
    {"base: sbx\nsteps:\n  - copy: {src: a, src: b, dest: /x}\n", SBX_EINVAL, "3:20",
     "duplicate key 'src'"},
    {"base: sbx\nsteps:\n  - env: {A: x, 'A': y}\n", SBX_EINVAL, "3:17", "duplicate key 'A'"},
    /* multiple documents */
    {"base: sbx\n---\nbase: sbx\n", SBX_EINVAL, "2:1",
     "expected one YAML document, found a second one"},
    {"---\nbase: sbx\n...\n---\n", SBX_EINVAL, "4:1", "expected one YAML document"},
    /* aliases, anchors, merge keys, tags: refused */
    {"base: sbx\nsteps:\n  - apt_install: &p [a]\n  - apt_install: *p\n", SBX_EINVAL, "3:18",
     "anchors ('&p') and aliases are not supported"},
    {"base: sbx\nsteps:\n  - env:\n      <<: {A: b}\n", SBX_EINVAL, "4:7",
     "merge keys ('<<') are not supported"},
    {"base: sbx\nsteps:\n  - apt_install: !!seq [a]\n", SBX_EINVAL, "3:18",
     "tags ('tag:yaml.org,2002:seq') are not supported"},
    {"base: sbx\nsteps: *x\n", SBX_EINVAL, "2:8", "aliases ('*x') are not supported"},
    /* bases */
    {"steps: []\n", SBX_EINVAL, "1:1", "expected exactly one base: from_registry, base or image"},
    {"base: sbx\nimage: foo\n", SBX_EINVAL, "1:7", "expected exactly one base"},
    {"base: debian\n", SBX_EINVAL, "1:7", "expected 'sbx' for base"},
    {"base: sbx\nadd_python: '3.12'\n", SBX_EINVAL, "2:13",
     "expected add_python only with from_registry"},
    {"from_registry: 'node 22'\n", SBX_EINVAL, "1:16", "expected an image reference"},
    {"from_registry: node\nadd_python: 3.1x\n", SBX_EINVAL, "2:13",
     "expected a version like \"3.12\" for add_python"},
    /* syntax */
    {"base: sbx\nsteps: [a\n", SBX_EINVAL, "3:1", "parse YAML: did not find expected"},
    {"base: sbx\n\tsteps: []\n", SBX_EINVAL, "2:1", "parse YAML"},
    {"base: sbx\nsteps:\n - a: [\n", SBX_EINVAL, "4:1", "parse YAML"},
    {"a:\n" /* deep nesting */
     "  - [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     SBX_EINVAL, "2:36", "expected at most 32 levels of nesting"},
};

static void test_bad_inputs(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(cases); i++) {
        const bad_case *c = &cases[i];
        sbx_error err = SBX_ERROR_INIT;
        sbx_recipe *r = (sbx_recipe *)0x1;
        int rc = sbx_recipe_parse_buffer(&r, c->yaml, strlen(c->yaml), "bad.yaml", g_ctx, NULL, &err);
        char want_where[64];
        snprintf(want_where, sizeof want_where, "bad.yaml:%s", c->where);
        if (rc != c->code || err.code != c->code || !strstr(err.msg, c->needle) ||
            strcmp(err.where, want_where) || r != NULL)
        {
            print_error("case %zu:\n%s\nwant %d at %s: '%s'\ngot  %d at %s: '%s'\n", i, c->yaml,
                        c->code, want_where, c->needle, rc, err.where, err.msg);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_file_errors(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    /* A huge mapping is refused before its duplicate-key check gets costly. */
    size_t cap = 20000 * 16, len = 0;
    char *huge = malloc(cap);
    assert_non_null(huge);
    len += (size_t)snprintf(huge, cap, "base: sbx\nsteps:\n  - env:\n");
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(huge + len, cap - len, "      V%d: x\n", i);
    assert_int_equal(sbx_recipe_parse_buffer(&r, huge, len, "huge.yaml", g_ctx, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "expected at most 8192 entries in a list or mapping");
    assert_string_equal(err.where, "huge.yaml:8196:7");
    free(huge);
    char *path = tu_path(g_ctx, "big.yaml");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 120000; i++)
        fputs("# padding\n", f);
    fclose(f);
    assert_int_equal(sbx_recipe_parse_file(&r, path, NULL, NULL, &err), SBX_ELIMIT);
    tu_assert_error(&err, SBX_ELIMIT, "exceeds the limit");
    free(path);
    /* The file name is the one given, in where. */
    path = tu_path(g_ctx, "bad.yaml");
    tu_write_file(path, "base: sbx\nsteps:\n  - workdir: rel\n");
    assert_int_equal(sbx_recipe_parse_file(&r, path, NULL, NULL, &err), SBX_EINVAL);
    char *want = sbx__strdup_printf("%s:3:14", path);
    assert_string_equal(err.where, want);
    free(want);
    free(path);
    /* A symlinked source that leaves the context. */
    path = tu_path(g_ctx, "escape");
    assert_int_equal(symlink("/etc", path), 0);
    const char *y = "base: sbx\nsteps:\n  - copy: {src: escape/hostname, dest: /x}\n";
    assert_int_equal(sbx_recipe_parse_buffer(&r, y, strlen(y), "s.yaml", g_ctx, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "refusing a source outside the build context");
    assert_string_equal(err.where, "s.yaml:3:17");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
