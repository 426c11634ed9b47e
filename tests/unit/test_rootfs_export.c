/* sbx_rootfs_export: an image in the store -> an OCI image layout.
 *
 * A built image (its manifest references the stored zstd layers) is exported
 * byte for byte; a pulled-style image (a docker manifest referencing gzip
 * blobs the store does not keep) gets a new OCI manifest over the zstd
 * layers.  Every blob file must hash to its name; errors leave nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "sbx/image.h"
#include "sbx_common.h"
#include "sbx/rootfs.h"
#include "sbx/store.h"
#include "testutil.h"

static char *g_dir;
static sbx_store *g_s;

static int setup(void **state)
{
    (void)state;
    g_dir = tu_tmpdir();
    char *root = tu_path(g_dir, "store");
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(&g_s, root, &err) < 0)
        fail_msg("open store: %s", err.msg);
    free(root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sbx_store_free(g_s);
    tu_tmpdir_free(g_dir);
    return 0;
}

static const char *p(const char *rel)
{
    static char bufs[8][4096];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 4096, "%s/%s", g_dir, rel);
    return b;
}

static bool exists(const char *rel)
{
    struct stat st;
    return lstat(p(rel), &st) == 0;
}

static void put_layer(const char *content, char diff_id[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_layer_writer *w = NULL;
    assert_int_equal(sbx_store_layer_begin(&w, g_s, NULL, &err), 0);
    assert_int_equal(sbx_layer_writer_write(w, content, strlen(content), &err), 0);
    assert_int_equal(sbx_layer_writer_commit(w, diff_id, &err), 0);
}

/* A two-layer image as `sbx-image build` writes it, named "img:built". */
static void built_image(char digest[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    char l1[SBX_DIGEST_BUFSZ], l2[SBX_DIGEST_BUFSZ];
    put_layer("layer one", l1);
    put_layer("layer two", l2);
    _cleanup_free_ char *cfg = sbx__strdup_printf(
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"history\":[{\"created_by\":\"base\"},"
        "{\"created_by\":\"run_cmd true\"}],\"rootfs\":{\"type\":\"layers\","
        "\"diff_ids\":[\"%s\",\"%s\"]}}", l1, l2);
    assert_int_equal(sbx_image_write(digest, g_s, cfg, strlen(cfg), &err), 0);
    assert_int_equal(sbx_store_name_set(g_s, "img:built", digest, &err), 0);
}

/* A docker v2 manifest whose layer is a gzip blob the store only knows as a
 * source of the zstd layer, as pull leaves it; named "img:pulled". */
static void pulled_image(char digest[SBX_DIGEST_BUFSZ], char diff_id[SBX_DIGEST_BUFSZ])
{
    sbx_error err = SBX_ERROR_INIT;
    put_layer("pulled layer", diff_id);
    char gz[SBX_DIGEST_BUFSZ], cfgd[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf("gzip bytes", 10, gz);
    assert_int_equal(sbx_store_layer_add_source(g_s, diff_id, gz,
                                                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                                1234, &err), 0);
    _cleanup_free_ char *cfg = sbx__strdup_printf(
        "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\","
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}", diff_id);
    assert_int_equal(sbx_store_put_blob(g_s, cfg, strlen(cfg), NULL, NULL, cfgd, &err), 0);
    _cleanup_free_ char *man = sbx__strdup_printf(
        "{\"schemaVersion\":2,"
        "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
        "\"digest\":\"%s\",\"size\":%zu},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"digest\":\"%s\",\"size\":1234}]}", cfgd, strlen(cfg), gz);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfgd}, {SBX_CHILD_LAYER, diff_id}};
    assert_int_equal(sbx_store_put_manifest(g_s, man, strlen(man),
                                            "application/vnd.docker.distribution.manifest.v2+json",
                                            NULL, kids, 2, digest, &err), 0);
    assert_int_equal(sbx_store_name_set(g_s, "img:pulled", digest, &err), 0);
}

static char *read_rel(const char *rel, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx__read_file(&buf, &n, p(rel), 64 << 20, &err) < 0)
        fail_msg("reading %s: %s", rel, err.msg);
    if (len)
        *len = n;
    return buf;
}

static json_t *read_json(const char *rel)
{
    _cleanup_free_ char *s = read_rel(rel, NULL);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    return j;
}

static const char *jstr(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* Every file under out/blobs/sha256 hashes to its name; returns how many. */
static size_t check_blobs(const char *out)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/blobs/sha256", out);
    DIR *d = opendir(p(rel));
    assert_non_null(d);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char frel[1024], want[SBX_DIGEST_BUFSZ + 256], got[SBX_DIGEST_BUFSZ];
        snprintf(frel, sizeof frel, "%s/%s", rel, de->d_name);
        size_t len;
        _cleanup_free_ char *b = read_rel(frel, &len);
        sbx__sha256_buf(b, len, got);
        snprintf(want, sizeof want, "sha256:%s", de->d_name);
        assert_string_equal(got, want);
        n++;
    }
    closedir(d);
    return n;
}

/* g_dir holds only the store and the names given: no temp dir left. */
static void only_left(const char *a, const char *b)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "store") &&
            (!a || strcmp(de->d_name, a)) && (!b || strcmp(de->d_name, b)))
            fail_msg("left behind: '%s'", de->d_name);
    closedir(d);
}

static void test_built_image_exact(void **state)
{
    (void)state;
    char digest[SBX_DIGEST_BUFSZ];
    built_image(digest);
    sbx_export_options o = SBX_EXPORT_OPTIONS_INIT;
    o.tag = "latest";
    sbx_export_result r;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_rootfs_export(&r, g_s, "img:built", p("out"), &o, NULL, &err) < 0)
        fail_msg("export: %s", err.msg);
    assert_string_equal(r.digest, digest);
    assert_string_equal(r.stored_digest, digest);
    assert_false(r.recompressed);
    assert_int_equal(r.blobs, 4);
    assert_int_equal(check_blobs("out"), 4);

    _cleanup_free_ char *layout = read_rel("out/oci-layout", NULL);
    assert_string_equal(layout, "{\"imageLayoutVersion\":\"1.0.0\"}");
    json_t *idx = read_json("out/index.json");
    assert_int_equal(json_integer_value(json_object_get(idx, "schemaVersion")), 2);
    json_t *m = json_array_get(json_object_get(idx, "manifests"), 0);
    assert_int_equal(json_array_size(json_object_get(idx, "manifests")), 1);
    assert_string_equal(jstr(m, "digest", NULL), digest);
    assert_string_equal(jstr(m, "mediaType", NULL), "application/vnd.oci.image.manifest.v1+json");
    assert_string_equal(jstr(m, "annotations", "org.opencontainers.image.ref.name"), "latest");
    assert_string_equal(jstr(m, "platform", "os"), "linux");
    assert_string_equal(jstr(m, "platform", "architecture"), "amd64");

    /* the manifest blob is the store's bytes, and its size is in the descriptor */
    char *stored = NULL;
    size_t slen, blen;
    assert_int_equal(sbx_store_read_blob(g_s, digest, 1 << 20, &stored, &slen, &err), 0);
    char rel[256];
    snprintf(rel, sizeof rel, "out/blobs/sha256/%s", digest + 7);
    _cleanup_free_ char *blob = read_rel(rel, &blen);
    assert_int_equal(blen, slen);
    assert_memory_equal(blob, stored, slen);
    assert_int_equal(json_integer_value(json_object_get(m, "size")), (json_int_t)slen);
    free(stored);
    json_decref(idx);
    only_left("out", NULL);
}

static void test_pulled_image_rereferenced(void **state)
{
    (void)state;
    char digest[SBX_DIGEST_BUFSZ], diff_id[SBX_DIGEST_BUFSZ];
    pulled_image(digest, diff_id);
    sbx_export_result r;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_rootfs_export(&r, g_s, "img:pulled", p("out"), NULL, NULL, &err) < 0)
        fail_msg("export: %s", err.msg);
    assert_true(r.recompressed);
    assert_string_equal(r.stored_digest, digest);
    assert_string_not_equal(r.digest, digest);
    assert_int_equal(check_blobs("out"), 3);

    sbx_layer_info li;
    assert_int_equal(sbx_store_layer_info(g_s, diff_id, &li, &err), 0);
    char rel[256];
    snprintf(rel, sizeof rel, "out/blobs/sha256/%s", r.digest + 7);
    json_t *man = read_json(rel);
    assert_string_equal(jstr(man, "mediaType", NULL), "application/vnd.oci.image.manifest.v1+json");
    assert_string_equal(jstr(man, "config", "mediaType"), "application/vnd.oci.image.config.v1+json");
    json_t *l = json_array_get(json_object_get(man, "layers"), 0);
    assert_string_equal(jstr(l, "mediaType", NULL), "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_string_equal(jstr(l, "digest", NULL), li.stored_digest);
    assert_int_equal(json_integer_value(json_object_get(l, "size")), (json_int_t)li.stored_size);
    json_decref(man);

    json_t *idx = read_json("out/index.json");
    json_t *m = json_array_get(json_object_get(idx, "manifests"), 0);
    assert_string_equal(jstr(m, "digest", NULL), r.digest);
    assert_null(json_object_get(m, "annotations"));
    assert_string_equal(jstr(m, "platform", "architecture"), "arm64");
    assert_string_equal(jstr(m, "platform", "variant"), "v8");
    json_decref(idx);
    only_left("out", NULL);
}

static void test_refusals_leave_nothing(void **state)
{
    (void)state;
    char digest[SBX_DIGEST_BUFSZ];
    built_image(digest);
    sbx_export_result r;
    sbx_error err = SBX_ERROR_INIT;

    assert_int_equal(sbx_rootfs_export(&r, g_s, "nosuch:1", p("out"), NULL, NULL, &err), SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "no such image in the store");
    assert_string_equal(err.where, "nosuch:1");
    assert_false(exists("out"));

    sbx_error_clear(&err);
    assert_int_equal(mkdir(p("empty"), 0755), 0);
    assert_int_equal(sbx_rootfs_export(&r, g_s, "img:built", p("empty"), NULL, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "already exists");
    assert_string_equal(err.where, p("empty"));
    assert_int_equal(tu_count_files(p("empty")), 0);

    sbx_error_clear(&err);
    assert_int_equal(sbx_rootfs_export(&r, g_s, "", p("out"), NULL, NULL, &err), SBX_EINVAL);

    /* cancelled before it starts: nothing made */
    sbx_ctx *ctx;
    assert_int_equal(sbx_ctx_new(&ctx, &err), 0);
    sbx_ctx_cancel(ctx);
    sbx_error_clear(&err);
    assert_int_equal(sbx_rootfs_export(&r, g_s, "img:built", p("out"), NULL, ctx, &err),
                     SBX_ECANCELED);
    sbx_ctx_free(ctx);
    only_left("empty", NULL);
}

static void test_damaged_layer_fails(void **state)
{
    (void)state;
    char digest[SBX_DIGEST_BUFSZ], diff_id[SBX_DIGEST_BUFSZ], path[4096];
    pulled_image(digest, diff_id);
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(sbx_store_layer_path(g_s, diff_id, path, sizeof path, &err), 0);
    /* same size, one byte changed: only the hash can tell */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, 20), 1);
    c ^= 0x55;
    assert_int_equal(pwrite(fd, &c, 1, 20), 1);
    close(fd);
    sbx_export_result r;
    assert_int_equal(sbx_rootfs_export(&r, g_s, "img:pulled", p("out"), NULL, NULL, &err), SBX_EDIGEST);
    tu_assert_error(&err, SBX_EDIGEST, diff_id);
    assert_false(exists("out"));
    only_left(NULL, NULL);
}

static void test_stale_temp_dir_removed(void **state)
{
    (void)state;
    char digest[SBX_DIGEST_BUFSZ];
    built_image(digest);
    /* what a killed export leaves: nobody holds its lock */
    assert_int_equal(mkdir(p(".out.sbx-export-999999-0"), 0700), 0);
    assert_int_equal(mkdir(p(".out.sbx-export-999999-0/blobs"), 0700), 0);
    tu_write_file(p(".out.sbx-export-999999-0/oci-layout"), "partial");
    /* another destination's temp dir is not ours to remove */
    assert_int_equal(mkdir(p(".other.sbx-export-999999-0"), 0700), 0);
    sbx_export_result r;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_rootfs_export(&r, g_s, "img:built", p("out"), NULL, NULL, &err) < 0)
        fail_msg("export: %s", err.msg);
    only_left("out", ".other.sbx-export-999999-0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_built_image_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pulled_image_rereferenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_layer_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_temp_dir_removed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
