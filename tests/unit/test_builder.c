/* Unit tests of the builder's image writer (builder/config.c), step scripts
 * (builder/steps.c) and cache lookups (builder/cache.c).
 *
 * Also a fixture driver for the integration tests: run as
 *   test_builder --seed STORE DIR NAME
 * it stores the directory tree DIR as a one-layer image named NAME
 * (sbx_build_image_from_dir) and prints the manifest digest, which is how
 * the tests make their busybox base without any registry. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <pthread.h>
#include <unistd.h>

#include "build_cache.h"
#include "build_copy.h"
#include "build_internal.h"
#include "build_steps.h"
#include "sbx_common.h"
#include "sbx/builder.h"
#include "sbx/recipe.h"
#include "sbx/store.h"
#include "testutil.h"

typedef struct fx {
    char *dir;
    sbx_store *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    char *root = tu_path(f->dir, "store");
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(&f->s, root, &err) < 0)
        fail_msg("open store: %s", err.msg);
    free(root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sbx_store_free(f->s);
    tu_tmpdir_free(f->dir);
    free(f);
    return 0;
}

static void put_layer(sbx_store *s, const char *content, char diff_id[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, content, strlen(content), &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, diff_id, &err), 0);
}

static void test_commit_roundtrip_and_determinism(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char l1[SBX_DIGEST_BUFSZ];
    put_layer(f->s, "layer one", l1);

    unsetenv("SOURCE_DATE_EPOCH");
    json_t *cfg = bld_config_new("linux", "amd64");
    assert_non_null(cfg);
    assert_int_equal(bld_config_add_history(cfg, l1, "copy a /a", &err), 0);
    assert_int_equal(bld_config_set_env(cfg, "A", "1", &err), 0);
    assert_int_equal(bld_config_set_env(cfg, "A", "2", &err), 0); /* replaces */
    assert_int_equal(bld_config_set_string(cfg, "WorkingDir", "/app", &err), 0);
    assert_int_equal(bld_config_set_label(cfg, BLD_LABEL_READY_CMD, "[\"true\"]", &err), 0);
    assert_int_equal(bld_config_add_history(cfg, NULL, "env A=2", &err), 0);

    char d1[SBX_DIGEST_BUFSZ], d2[SBX_DIGEST_BUFSZ];
    assert_int_equal(bld_config_commit(f->s, cfg, d1, &err), 0);
    assert_int_equal(bld_config_commit(f->s, cfg, d2, &err), 0);
    assert_string_equal(d1, d2);

    json_t *back = NULL;
    assert_int_equal(bld_config_load(&back, f->s, d1, &err), 0);
    assert_int_equal(bld_config_nlayers(back), 1);
    assert_string_equal(bld_config_layer(back, 0), l1);
    assert_string_equal(bld_config_get_string(back, "WorkingDir"), "/app");
    const char **env = bld_config_env(back);
    assert_string_equal(env[1], "A=2");
    assert_null(env[2]);
    free(env);
    json_t *h = json_object_get(back, "history");
    assert_int_equal(json_array_size(h), 2);
    assert_true(json_is_true(json_object_get(json_array_get(h, 1), "empty_layer")));
    assert_string_equal(json_string_value(json_object_get(back, "created")),
                        "1970-01-01T00:00:00Z");

    /* The manifest describes the layer in its stored zstd form. */
    char *raw = NULL;
    size_t len = 0;
    assert_int_equal(sbx_store_read_blob(f->s, d1, 1 << 20, &raw, &len, &err), 0);
    json_t *m = json_loads(raw, 0, NULL);
    json_t *layer = json_array_get(json_object_get(m, "layers"), 0);
    assert_string_equal(json_string_value(json_object_get(layer, "mediaType")),
                        SBX_MT_OCI_LAYER_ZSTD);
    sbx_layer_info info;
    assert_int_equal(sbx_store_layer_info(f->s, l1, &info, &err), 0);
    assert_string_equal(json_string_value(json_object_get(layer, "digest")), info.stored_digest);
    json_decref(m);
    free(raw);

    /* SOURCE_DATE_EPOCH changes the timestamps, hence the digest. */
    setenv("SOURCE_DATE_EPOCH", "86400", 1);
    char created[32];
    assert_string_equal(bld_config_created(created), "1970-01-02T00:00:00Z");
    unsetenv("SOURCE_DATE_EPOCH");
    json_decref(back);
    json_decref(cfg);
}

static void test_commit_unknown_layer(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    json_t *cfg = bld_config_new("linux", "amd64");
    const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(bld_config_add_history(cfg, missing, "run", &err), 0);
    char d[SBX_DIGEST_BUFSZ];
    assert_true(bld_config_commit(f->s, cfg, d, &err) < 0);
    tu_assert_error(&err, SBX_ENOTFOUND, "describe layer 1");
    json_decref(cfg);
}

static void test_load_not_a_manifest(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char d[SBX_DIGEST_BUFSZ];
    assert_int_equal(sbx_store_put_blob(f->s, "{\"a\":1}", 7, NULL, NULL, d, &err), 0);
    json_t *cfg = NULL;
    assert_true(bld_config_load(&cfg, f->s, d, &err) < 0);
    tu_assert_error(&err, SBX_EINVAL, "not an image manifest");
    assert_null(cfg);
}

static void test_cache_lookup(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char l1[SBX_DIGEST_BUFSZ], d[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
    put_layer(f->s, "cached layer", l1);
    json_t *cfg = bld_config_new("linux", "amd64");
    assert_int_equal(bld_config_add_history(cfg, l1, "run", &err), 0);
    assert_int_equal(bld_config_commit(f->s, cfg, d, &err), 0);
    const char *key = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    json_t *back = NULL;
    assert_int_equal(bld_cache_lookup(&back, got, f->s, key, NULL, NULL), 0);
    assert_int_equal(bld_cache_store(f->s, key, d, &err), 0);
    assert_int_equal(bld_cache_lookup(&back, got, f->s, key, NULL, NULL), 1);
    assert_string_equal(got, d);
    assert_string_equal(bld_config_layer(back, 0), l1);
    char named[SBX_DIGEST_BUFSZ];
    char name[128];
    snprintf(name, sizeof name, "cache:%s", key);
    assert_int_equal(sbx_store_name_get(f->s, name, named, &err), 0);
    json_decref(back);
    json_decref(cfg);
}

/* bld_config_digest: the digest bld_config_commit gives, with nothing written. */
static void test_img_digest_writes_nothing(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char l1[SBX_DIGEST_BUFSZ], d0[SBX_DIGEST_BUFSZ], d1[SBX_DIGEST_BUFSZ];
    put_layer(f->s, "digest only", l1);
    json_t *cfg = bld_config_new("linux", "amd64");
    assert_int_equal(bld_config_add_history(cfg, l1, "run", &err), 0);
    assert_int_equal(bld_config_digest(f->s, cfg, d0, &err), 0);
    assert_int_equal(sbx_store_has_blob(f->s, d0, NULL), 0);
    assert_int_equal(bld_config_commit(f->s, cfg, d1, &err), 0);
    assert_string_equal(d0, d1);
    assert_int_equal(sbx_store_has_blob(f->s, d1, NULL), 1);

    const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(bld_config_add_history(cfg, missing, "run", &err), 0);
    assert_true(bld_config_digest(f->s, cfg, d0, &err) < 0);
    tu_assert_error(&err, SBX_ENOTFOUND, "describe layer 2");
    json_decref(cfg);
}

/* A cache entry whose layer file is gone is a miss (the lookup only reads). */
static void test_cache_lookup_missing_layer_file(void **state)
{
    fx *f = *state;
    sbx_error err = SBX_ERROR_INIT;
    char l1[SBX_DIGEST_BUFSZ], d[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ], path[4096];
    put_layer(f->s, "layer that goes away", l1);
    json_t *cfg = bld_config_new("linux", "amd64");
    assert_int_equal(bld_config_add_history(cfg, l1, "run", &err), 0);
    assert_int_equal(bld_config_commit(f->s, cfg, d, &err), 0);
    const char *key = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    assert_int_equal(bld_cache_store(f->s, key, d, &err), 0);
    json_t *back = NULL;
    assert_int_equal(bld_cache_lookup(&back, got, f->s, key, NULL, NULL), 1);
    json_decref(back);
    back = NULL;
    assert_int_equal(sbx_store_layer_path(f->s, l1, path, sizeof path, &err), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(bld_cache_lookup(&back, got, f->s, key, NULL, NULL), 0);
    assert_null(back);
    json_decref(cfg);
}

static const sbx_step *one_step(sbx_recipe **keep, const char *yaml)
{
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_recipe_parse_buffer(keep, yaml, strlen(yaml), "t.yaml", NULL, NULL, &err) < 0)
        fail_msg("parse: %s at %s", err.msg, err.where);
    return sbx_recipe_step(*keep, 0);
}

static void test_step_scripts(void **state)
{
    (void)state;
    sbx_recipe *r = NULL;
    const sbx_step *st = one_step(&r, "image: x\nsteps:\n  - apt_install: [curl, \"git\"]\n");
    char *sum = bld_step_summary(st);
    assert_string_equal(sum, "apt_install curl git");
    free(sum);
    bld_step_cmd cmd;
    assert_int_equal(bld_step_script(&cmd, st, "app", "/w"), 1);
    assert_non_null(strstr(cmd.script, "apt-get install -y -q --no-install-recommends 'curl' 'git'"));
    assert_non_null(strstr(cmd.script, "rm -rf /var/lib/apt/lists/*"));
    assert_non_null(strstr(cmd.script, "DEBIAN_FRONTEND=noninteractive"));
    assert_string_equal(cmd.user, "0"); /* apt runs as root whatever the image user */
    bld_step_cmd_free(&cmd);
    sbx_recipe_unref(r);

    st = one_step(&r, "image: x\nsteps:\n  - run_cmd: {commands: [\"echo 'a'\", \"false\"], "
                      "user: nobody}\n");
    assert_int_equal(bld_step_script(&cmd, st, NULL, NULL), 1);
    assert_string_equal(cmd.script, "/bin/sh -c 'echo '\\''a'\\''' && /bin/sh -c 'false'");
    assert_string_equal(cmd.display, "echo 'a' && false");
    assert_string_equal(cmd.user, "nobody");
    bld_step_cmd_free(&cmd);
    sbx_recipe_unref(r);

    st = one_step(&r, "image: x\nsteps:\n  - pip_install: {packages: [tiny], index_url: "
                      "\"http://127.0.0.1:1/simple\"}\n");
    assert_int_equal(bld_step_script(&cmd, st, NULL, NULL), 1);
    assert_non_null(strstr(cmd.script, "PIP_BREAK_SYSTEM_PACKAGES=1"));
    assert_non_null(strstr(cmd.script, "python3 -m pip install --no-cache-dir "
                                       "--disable-pip-version-check --index-url "
                                       "'http://127.0.0.1:1/simple' 'tiny'"));
    bld_step_cmd_free(&cmd);
    sbx_recipe_unref(r);

    st = one_step(&r, "image: x\nsteps:\n  - env: {A: b}\n");
    assert_int_equal(bld_step_script(&cmd, st, NULL, NULL), 0);
    assert_null(cmd.script);
    sbx_recipe_unref(r);
}

/* copy stages parents as the image has them: through its symlinks
 * (/bin -> usr/bin), with their modes (/tmp 1777), and files with the
 * recipe's mode or 0644/0755 by the executable bit. */
static void test_copy_stage_parents_and_modes(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *ctx = tu_path(dir, "ctx"), *lower = tu_path(dir, "lower"), *stage = tu_path(dir, "stage");
    char p[4096];
    assert_int_equal(mkdir(ctx, 0755), 0);
    snprintf(p, sizeof p, "%s/tool", ctx);
    tu_write_file(p, "#!/bin/sh\n");
    chmod(p, 0700);
    snprintf(p, sizeof p, "%s/notes", ctx);
    tu_write_file(p, "n\n");
    /* the image: usr/bin (0751), bin -> usr/bin, tmp 1777 */
    snprintf(p, sizeof p, "%s/usr/bin", lower);
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__mkdir_p(p, 0755, &err), 0);
    chmod(p, 0751);
    snprintf(p, sizeof p, "%s/bin", lower);
    assert_int_equal(symlink("usr/bin", p), 0);
    snprintf(p, sizeof p, "%s/tmp", lower);
    assert_int_equal(mkdir(p, 0700), 0);
    chmod(p, 01777);

    const char *yaml = "image: x\nsteps:\n  - copy: {src: tool, dest: /bin/}\n"
                       "  - copy: {src: notes, dest: /tmp/sub/notes.txt, mode: \"0600\"}\n";
    sbx_recipe *r = NULL;
    if (sbx_recipe_parse_buffer(&r, yaml, strlen(yaml), "t.yaml", ctx, NULL, &err) < 0)
        fail_msg("parse: %s", err.msg);
    const char *lowers[] = {lower};
    assert_int_equal(mkdir(stage, 0755), 0);
    if (bld_copy_stage(stage, ctx, sbx_recipe_step(r, 0), lowers, 1, NULL, &err) < 0 ||
        bld_copy_stage(stage, ctx, sbx_recipe_step(r, 1), lowers, 1, NULL, &err) < 0)
        fail_msg("stage: %s", err.msg);
    struct stat st;
    snprintf(p, sizeof p, "%s/usr/bin/tool", stage);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755); /* executable -> 0755, umask-free */
    snprintf(p, sizeof p, "%s/usr/bin", stage);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0751); /* the image's mode, not ours */
    snprintf(p, sizeof p, "%s/bin", stage);
    assert_int_equal(lstat(p, &st), -1); /* the symlink is left alone */
    snprintf(p, sizeof p, "%s/tmp", stage);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 01777);
    snprintf(p, sizeof p, "%s/tmp/sub", stage);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755); /* new parents: 0755 root */
    snprintf(p, sizeof p, "%s/tmp/sub/notes.txt", stage);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, 0);
    sbx_recipe_unref(r);
    free(ctx);
    free(lower);
    free(stage);
    tu_tmpdir_free(dir);
}

/* The copy step reads the image's directories in each layer by itself and
 * with overlay masking: a lower's symlink is never followed on the host (a
 * dir of the host's would give the image its owner and mode), a dir over a
 * lower non-dir or an opaque dir hides what is below it. */
static void test_copy_stage_layers_masked(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *ctx = tu_path(dir, "ctx"), *top = tu_path(dir, "top"), *bottom = tu_path(dir, "bottom");
    char *stage = tu_path(dir, "stage"), *host = tu_path(dir, "host");
    char p[4096];
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(mkdir(ctx, 0755), 0);
    snprintf(p, sizeof p, "%s/notes", ctx);
    tu_write_file(p, "n\n");
    /* the host: <dir>/host/b, 0711 owned by 4242 */
    snprintf(p, sizeof p, "%s/b", host);
    assert_int_equal(sbx__mkdir_p(p, 0711, &err), 0);
    assert_int_equal(chown(p, 4242, 4242), 0);
    chmod(p, 0711);
    /* bottom: a -> <host> (absolute), d/e 0700 */
    assert_int_equal(mkdir(bottom, 0755), 0);
    snprintf(p, sizeof p, "%s/a", bottom);
    assert_int_equal(symlink(host, p), 0);
    snprintf(p, sizeof p, "%s/d/e", bottom);
    assert_int_equal(sbx__mkdir_p(p, 0700, &err), 0);
    chmod(p, 0700);
    /* top: a/ (a dir over bottom's symlink), d/ opaque */
    snprintf(p, sizeof p, "%s/a", top);
    assert_int_equal(sbx__mkdir_p(p, 0755, &err), 0);
    snprintf(p, sizeof p, "%s/d", top);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(setxattr(p, "trusted.overlay.opaque", "y", 1, 0), 0);

    const char *yaml = "image: x\nsteps:\n  - copy: {src: notes, dest: /a/b/n}\n"
                       "  - copy: {src: notes, dest: /d/e/n}\n";
    sbx_recipe *r = NULL;
    if (sbx_recipe_parse_buffer(&r, yaml, strlen(yaml), "t.yaml", ctx, NULL, &err) < 0)
        fail_msg("parse: %s", err.msg);
    const char *lowers[] = {top, bottom};
    assert_int_equal(mkdir(stage, 0755), 0);
    if (bld_copy_stage(stage, ctx, sbx_recipe_step(r, 0), lowers, 2, NULL, &err) < 0 ||
        bld_copy_stage(stage, ctx, sbx_recipe_step(r, 1), lowers, 2, NULL, &err) < 0)
        fail_msg("stage: %s", err.msg);
    const char *fresh[] = {"a/b", "d/e"}; /* absent from the image: new, 0755 root */
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", stage, fresh[i]);
        assert_int_equal(lstat(p, &st), 0);
        if ((st.st_mode & 07777) != 0755 || st.st_uid != 0)
            fail_msg("%s: mode %o owner %u, want 0755 root", fresh[i], st.st_mode & 07777,
                     (unsigned)st.st_uid);
    }
    sbx_recipe_unref(r);
    free(ctx), free(top), free(bottom), free(stage), free(host);
    tu_tmpdir_free(dir);
}

/* A context directory swapped for a symlink to a host directory while copy
 * steps run: what is copied never comes from outside the context (the step
 * fails instead).  A race, tried a bounded number of times. */
typedef struct flipper {
    const char *sub, *real, *host;
    volatile int stop;
} flipper;

static void *flip(void *arg)
{
    flipper *f = arg;
    while (!f->stop) {
        for (volatile int i = 0; i < 20000; i++) /* the real dir, for a while */
            ;
        if (rename(f->sub, f->real) == 0) {
            if (symlink(f->host, f->sub) == 0) {
                for (volatile int i = 0; i < 20000; i++)
                    ;
                unlink(f->sub);
            }
            rename(f->real, f->sub);
        }
    }
    return NULL;
}

static void test_copy_context_swap_race(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *ctx = tu_path(dir, "ctx"), *host = tu_path(dir, "host");
    char *sub = tu_path(ctx, "sub"), *real = tu_path(ctx, "sub.real");
    char p[4096];
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx__mkdir_p(sub, 0755, &err), 0);
    assert_int_equal(sbx__mkdir_p(host, 0755, &err), 0);
    for (int i = 0; i < 64; i++) {
        snprintf(p, sizeof p, "%s/f%d", sub, i);
        tu_write_file(p, "harmless\n");
        snprintf(p, sizeof p, "%s/f%d", host, i);
        tu_write_file(p, "SECRET\n");
    }
    const char *yaml = "image: x\nsteps:\n  - copy: {src: sub, dest: /x/}\n";
    sbx_recipe *r = NULL;
    if (sbx_recipe_parse_buffer(&r, yaml, strlen(yaml), "t.yaml", ctx, NULL, &err) < 0)
        fail_msg("parse: %s", err.msg);
    char *lower = tu_path(dir, "lower");
    assert_int_equal(mkdir(lower, 0755), 0);
    const char *lowers[] = {lower};
    flipper f = {sub, real, host, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flip, &f), 0);
    int leaks = 0, copied = 0, refused = 0;
    for (int round = 0; round < 400; round++) {
        char stage[1024];
        snprintf(stage, sizeof stage, "%s/stage%d", dir, round);
        assert_int_equal(mkdir(stage, 0755), 0);
        sbx_error_clear(&err);
        if (bld_copy_stage(stage, ctx, sbx_recipe_step(r, 0), lowers, 1, NULL, &err) < 0) {
            refused++;
        } else {
            copied++;
            /* what the layer holds: read without following any symlink */
            struct stat xs;
            snprintf(p, sizeof p, "%s/x", stage);
            assert_int_equal(lstat(p, &xs), 0);
            assert_true(S_ISDIR(xs.st_mode)); /* a dir source stays a dir */
            for (int i = 0; i < 64; i++) {
                snprintf(p, sizeof p, "%s/x/f%d", stage, i);
                int fd = open(p, O_RDONLY | O_NOFOLLOW);
                char buf[16] = "";
                if (fd >= 0 && read(fd, buf, sizeof buf - 1) > 0 && strstr(buf, "SECRET"))
                    leaks++;
                if (fd >= 0)
                    close(fd);
            }
        }
        sbx__rm_rf(stage, &err);
    }
    f.stop = 1;
    pthread_join(th, NULL);
    printf("swap race: %d copies, %d refused, %d host files copied\n", copied, refused, leaks);
    assert_int_equal(leaks, 0);
    sbx_recipe_unref(r);
    free(ctx), free(host), free(sub), free(real), free(lower);
    tu_tmpdir_free(dir);
}

static int seed(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s --seed STORE DIR NAME\n", argv[0]);
        return 2;
    }
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    char d[SBX_DIGEST_BUFSZ];
    if (sbx_store_open(&s, argv[2], &err) < 0 ||
        sbx_build_image_from_dir(d, s, argv[3], argv[4], "test fixture", NULL, &err) < 0) {
        fprintf(stderr, "seed: %s\n", err.msg);
        sbx_store_free(s);
        return 1;
    }
    printf("%s\n", d);
    sbx_store_free(s);
    return 0;
}

/* --state STORE: every name with its digest, then the layer and blob counts,
 * so a test can show that a failed build changed nothing. */
static int state(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s --state STORE\n", argv[0]);
        return 2;
    }
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    sbx_name_entry *names = NULL;
    size_t n = 0;
    sbx_df_report df;
    if (sbx_store_open(&s, argv[2], &err) < 0 ||
        sbx_store_name_list(s, NULL, &names, &n, &err) < 0 || sbx_store_df(s, &df, &err) < 0) {
        fprintf(stderr, "state: %s\n", err.msg);
        sbx_store_free(s);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        printf("name %s %s\n", names[i].name, names[i].digest);
    printf("layers %llu\nblobs %llu\n", (unsigned long long)df.layers,
           (unsigned long long)df.blobs);
    sbx_name_entries_free(names, n);
    sbx_store_free(s);
    return 0;
}

/* --config STORE DIGEST: the image config of a manifest, as stored. */
static int config(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s --config STORE DIGEST\n", argv[0]);
        return 2;
    }
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    json_t *cfg = NULL;
    if (sbx_store_open(&s, argv[2], &err) < 0 || bld_config_load(&cfg, s, argv[3], &err) < 0) {
        fprintf(stderr, "config: %s\n", err.msg);
        sbx_store_free(s);
        return 1;
    }
    json_dumpf(cfg, stdout, JSON_INDENT(1) | JSON_SORT_KEYS);
    printf("\n");
    json_decref(cfg);
    sbx_store_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--config"))
        return config(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--seed"))
        return seed(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--state"))
        return state(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_roundtrip_and_determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_unknown_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_not_a_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_img_digest_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_lookup_missing_layer_file, setup, teardown),
        cmocka_unit_test(test_step_scripts),
        cmocka_unit_test(test_copy_stage_parents_and_modes),
        cmocka_unit_test(test_copy_stage_layers_masked),
        cmocka_unit_test(test_copy_context_swap_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
