/* Unit tests for private content: origins, the access check, the store key. */
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "sbx/store.h"
#include "sbx_common.h"
#include "test_store_util.h"
#include "testutil.h"

typedef struct {
    int calls;
    int answer; /* 0 allow, else refuse */
    char repo[256], ref[SBX_DIGEST_BUFSZ];
} stub;

static int stub_fn(void *arg, sbx_store *s, const char *repo, const char *ref, sbx_error *err)
{
    (void)s;
    stub *st = arg;
    st->calls++;
    snprintf(st->repo, sizeof st->repo, "%s", repo);
    snprintf(st->ref, sizeof st->ref, "%s", ref);
    if (st->answer)
        return sbx_error_set(err, SBX_EAUTH, "stub refuses '%s'", repo);
    return 0;
}

/* The layer diff_id of an image ts_put_image made. */
static void layer_of(ts_ctx *t, const char *m, char out[SBX_DIGEST_BUFSZ])
{
    sqlite3 *db = ts_db(t);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT child FROM children WHERE parent=? AND kind=?",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, SBX_CHILD_LAYER);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, SBX_DIGEST_BUFSZ, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void mark(ts_ctx *t, const char *digest, const char *repo, const char *ref, bool priv)
{
    sbx_error err = SBX_ERROR_INIT;
    const char *d[] = {digest};
    assert_int_equal(sbx_store_origin_set(t->s, d, 1, repo, ref, priv, &err), 0);
}

static void test_unrecorded_content_is_public(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "built", 1, m);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), 0);
}

static void test_a_private_layer_needs_the_check(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "pulled", 2, m);
    layer_of(t, m, l);
    mark(t, l, "reg.example:5000/team/app", m, true);
    /* no check installed: refused, naming the repository */
    assert_int_equal(sbx_store_access_check(t->s, m, &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "reg.example:5000/team/app");
    /* a check that refuses: its message */
    stub no = {.answer = 1};
    sbx_error_clear(&err);
    sbx_store_set_access(t->s, stub_fn, &no);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "stub refuses");
    assert_int_equal(no.calls, 1);
    /* one that allows: asked with the repository and the recorded manifest */
    stub yes = {0};
    sbx_store_set_access(t->s, stub_fn, &yes);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), 0);
    assert_int_equal(yes.calls, 1);
    assert_string_equal(yes.repo, "reg.example:5000/team/app");
    assert_string_equal(yes.ref, m);
    /* the explicit form ignores the handle's check */
    assert_int_equal(sbx_store_access_check_with(t->s, m, stub_fn, &no, &err), SBX_EAUTH);
    sbx_store_set_access(t->s, NULL, NULL);
}

static void test_a_public_origin_wins(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 3, m);
    layer_of(t, m, l);
    mark(t, l, "a.example/private", m, true);
    mark(t, l, "b.example/public", m, false);
    stub st = {.answer = 1};
    sbx_store_set_access(t->s, stub_fn, &st);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), 0);
    assert_int_equal(st.calls, 0); /* a public image is never checked */
    /* the latest observation for one repository wins */
    mark(t, l, "b.example/public", m, true);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), SBX_EAUTH);
    /* two private repositories: either lets the caller in, each asked once */
    stub yes = {0};
    sbx_store_set_access(t->s, stub_fn, &yes);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), 0);
    assert_int_equal(yes.calls, 1);
    sbx_store_set_access(t->s, NULL, NULL);
}

static void test_made_here_is_public(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "step", 5, m);
    layer_of(t, m, l);
    mark(t, m, "reg.example/cache", m, true);
    mark(t, l, "reg.example/cache", m, true);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), SBX_EAUTH);
    /* a build made the same layer but not the same state: still private */
    const char *d[] = {l};
    assert_int_equal(sbx_store_origin_local(t->s, d, 1, &err), 0);
    sbx_error_clear(&err);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), SBX_EAUTH);
    /* and the state too: anyone's */
    d[0] = m;
    assert_int_equal(sbx_store_origin_local(t->s, d, 1, &err), 0);
    assert_int_equal(sbx_store_access_check(t->s, m, &err), 0);
    /* a registry repository is host/path: "local" is no registry's */
    assert_int_equal(sbx_store_origin_set(t->s, d, 1, "local", m, false, &err), SBX_EINVAL);
}

static void test_an_image_on_a_private_layer_is_private(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char base[SBX_DIGEST_BUFSZ], l[SBX_DIGEST_BUFSZ], own[SBX_DIGEST_BUFSZ], cfg[SBX_DIGEST_BUFSZ],
        derived[SBX_DIGEST_BUFSZ];
    ts_put_image(t, "base", 4, base);
    layer_of(t, base, l);
    mark(t, l, "reg.example/base", base, true);
    /* a build on top: the base's layer and one of its own, no origins of its own */
    ts_put_layer(t, 1000, 44, own);
    const char *c = "{\"derived\":1}";
    assert_int_equal(sbx_store_put_blob(t->s, c, strlen(c), "application/vnd.oci.image.config.v1+json",
                                        NULL, cfg, &err), 0);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, l}, {SBX_CHILD_LAYER, own}};
    const char *man = "{\"derived\":\"manifest\"}";
    assert_int_equal(sbx_store_put_manifest(t->s, man, strlen(man),
                                            "application/vnd.oci.image.manifest.v1+json", NULL,
                                            kids, 3, derived, &err), 0);
    assert_int_equal(sbx_store_access_check(t->s, derived, &err), SBX_EAUTH);
    tu_assert_error(&err, SBX_EAUTH, "reg.example/base");
}

static void test_origins_of_gone_content_are_pruned(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    char m[SBX_DIGEST_BUFSZ];
    ts_put_image(t, NULL, 5, m); /* unnamed: gc takes it */
    mark(t, m, "reg.example/x", m, true);
    mark(t, EMPTY_DIGEST, "reg.example/x", m, true); /* recorded, never stored */
    ts_sql(t, "UPDATE origins SET stamp = stamp - 2 * 86400 WHERE digest='%s'", EMPTY_DIGEST);
    sbx_gc_report rep;
    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    assert_int_equal(sbx_store_gc(t->s, &o, &rep, NULL, &err), 0);
    /* the stale row goes; the fresh one stays a day (a pull in flight) */
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM origins WHERE digest='%s'", EMPTY_DIGEST), 0);
    assert_int_equal(ts_sql_int(t, "SELECT count(*) FROM origins WHERE digest='%s'", m), 1);
}

static void test_the_store_key_is_made_once_and_private(void **state)
{
    ts_ctx *t = *state;
    sbx_error err = SBX_ERROR_INIT;
    unsigned char k1[32], k2[32];
    assert_int_equal(sbx_store_secret_key(t->s, k1, &err), 0);
    assert_int_equal(sbx_store_secret_key(t->s, k2, &err), 0);
    assert_memory_equal(k1, k2, 32);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/access.key", t->root);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(ts_count(t, "tmp"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TS_TEST(test_unrecorded_content_is_public),
        TS_TEST(test_a_private_layer_needs_the_check),
        TS_TEST(test_a_public_origin_wins),
        TS_TEST(test_made_here_is_public),
        TS_TEST(test_an_image_on_a_private_layer_is_private),
        TS_TEST(test_origins_of_gone_content_are_pruned),
        TS_TEST(test_the_store_key_is_made_once_and_private),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
