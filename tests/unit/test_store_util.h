/* Shared fixtures for the store's unit tests (header-only: each test file
 * builds as its own executable with testutil.c). */
#ifndef SBX_TEST_STORE_UTIL_H
#define SBX_TEST_STORE_UTIL_H

#include <sqlite3.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include "sbx/store.h"
#include "sbx_common.h"
#include "testutil.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define ABC_DIGEST "sha256:" ABC_HEX
#define EMPTY_DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

int64_t sbx_store__proc_start(pid_t pid); /* internal, for live temp-file names */

typedef struct {
    char *dir, *root;
    sbx_store *s, *kept;
} ts_ctx;

#define TS_UNUSED __attribute__((unused))

static TS_UNUSED int ts_setup(void **state)
{
    ts_ctx *t = calloc(1, sizeof *t);
    t->dir = tu_tmpdir();
    t->root = tu_path(t->dir, "store");
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(&t->s, t->root, &err) < 0)
        fail_msg("open store: %s", err.msg);
    *state = t;
    return 0;
}

static TS_UNUSED int ts_teardown(void **state)
{
    ts_ctx *t = *state;
    sbx_store_free(t->s);
    sbx_store_free(t->kept);
    free(t->root);
    tu_tmpdir_free(t->dir);
    free(t);
    return 0;
}

#define TS_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup, ts_teardown)

static TS_UNUSED long ts_count(ts_ctx *t, const char *rel)
{
    char *p = tu_path(t->root, rel);
    long n = tu_count_files(p);
    free(p);
    return n;
}

static TS_UNUSED void ts_damage(ts_ctx *t, const char *rel, const char *content)
{
    char *p = tu_path(t->root, rel);
    tu_write_file(p, content);
    free(p);
}

/* Compressible, seed-dependent bytes that look a little like a tar. */
static TS_UNUSED unsigned char *ts_layer_bytes(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n ? n : 1);
    uint32_t x = 2463534242u ^ (seed * 2654435761u);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (i % 512 < 100) ? (unsigned char)('a' + (x % 4)) : (unsigned char)(x & 0xff);
        if ((i / 4096) % 2)
            b[i] = (unsigned char)('A' + (i % 26));
    }
    return b;
}

static TS_UNUSED void ts_put_layer_in(sbx_store *s, size_t n, unsigned seed,
                                      char out[SBX_DIGEST_BUFSZ])
{
    unsigned char *b = ts_layer_bytes(n, seed);
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_writer *w = NULL;
    if (sbx_store_layer_begin(&w, s, NULL, &err) < 0 ||
        sbx_layer_writer_write(w, b, n, &err) < 0 || sbx_layer_writer_commit(w, out, &err) < 0)
        fail_msg("put layer: %s", err.msg);
    free(b);
}

static TS_UNUSED void ts_put_layer(ts_ctx *t, size_t n, unsigned seed, char out[SBX_DIGEST_BUFSZ])
{
    ts_put_layer_in(t->s, n, seed, out);
}

/* A layer (seed-dependent, ~20 KB), a config and a manifest; named if name. */
static TS_UNUSED void ts_put_image_sized(ts_ctx *t, const char *name, unsigned seed, size_t size,
                                         char m[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    char layer[SBX_DIGEST_BUFSZ], cfg[SBX_DIGEST_BUFSZ];
    ts_put_layer(t, size, seed, layer);
    char *c = sbx__strdup_printf("{\"config\":%u}", seed);
    char *man = sbx__strdup_printf("{\"manifest\":%u,\"layer\":\"%s\"}", seed, layer);
    if (sbx_store_put_blob(t->s, c, strlen(c), "application/vnd.oci.image.config.v1+json", NULL,
                           cfg, &err) < 0)
        fail_msg("put config: %s", err.msg);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, layer}};
    if (sbx_store_put_manifest(t->s, man, strlen(man), "application/vnd.oci.image.manifest.v1+json",
                               NULL, kids, 2, m, &err) < 0)
        fail_msg("put manifest: %s", err.msg);
    if (name && sbx_store_name_set(t->s, name, m, &err) < 0)
        fail_msg("set name: %s", err.msg);
    free(c);
    free(man);
}

static TS_UNUSED void ts_put_image(ts_ctx *t, const char *name, unsigned seed,
                                   char m[SBX_DIGEST_BUFSZ])
{
    ts_put_image_sized(t, name, seed, 20000, m);
}

static TS_UNUSED sqlite3 *ts_db(ts_ctx *t)
{
    sqlite3 *db = NULL;
    char *p = tu_path(t->root, "meta.db");
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    free(p);
    return db;
}

static TS_UNUSED void ts_sql(ts_ctx *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3 *db = ts_db(t);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sql '%s': %s", sql, msg);
    sqlite3_free(sql);
    sqlite3_close(db);
}

static TS_UNUSED long long ts_sql_int(ts_ctx *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3 *db = ts_db(t);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    sqlite3_free(sql);
    return v;
}

/* Close and reopen the handle (its process lease goes with it). */
static TS_UNUSED void ts_reopen(ts_ctx *t)
{
    sbx_store_free(t->s);
    t->s = NULL;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(&t->s, t->root, &err) < 0)
        fail_msg("reopen: %s", err.msg);
}

/* A pid that just died (its /proc entry is gone). */
static TS_UNUSED pid_t ts_dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int st;
    waitpid(pid, &st, 0);
    return pid;
}

static TS_UNUSED int64_t ts_self_start(void) { return sbx_store__proc_start(getpid()); }

#endif
