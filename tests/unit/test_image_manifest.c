/* Manifest, index and config parsing; platform choice from an index;
 * layer compression by media type.  No network. */
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"
#include "testutil.h"

#define H1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

static const char *oci_manifest =
    "{\"schemaVersion\":2,\"mediaType\":\"" SBX_MT_OCI_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" SBX_MT_OCI_CONFIG "\",\"digest\":\"" H1 "\",\"size\":100},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" H2
    "\",\"size\":2000},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
    "\"digest\":\"" H3 "\",\"size\":3000}]}";

static int parse(sbx_manifest *m, const char *ct, const char *body, sbx_error *err)
{
    return sbx_manifest_parse(m, ct, body, strlen(body), err);
}

static void test_image_manifests(void **state)
{
    (void)state;
    sbx_manifest m;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, oci_manifest, &err), 0);
    assert_int_equal(m.kind, SBX_MANIFEST_IMAGE);
    assert_string_equal(m.media_type, SBX_MT_OCI_MANIFEST);
    assert_string_equal(m.config.digest, H1);
    assert_int_equal(m.config.size, 100);
    assert_int_equal(m.nlayers, 2);
    assert_string_equal(m.layers[1].digest, H3);
    assert_int_equal(m.layers[1].size, 3000);
    sbx_manifest_free(&m);

    /* no mediaType in the document (umoci): Content-Type decides */
    const char *bare = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" SBX_MT_DOCKER_CONFIG
                       "\",\"digest\":\"" H1 "\",\"size\":5},\"layers\":[]}";
    assert_int_equal(parse(&m, SBX_MT_DOCKER_MANIFEST "; charset=utf-8", bare, &err), 0);
    assert_string_equal(m.media_type, SBX_MT_DOCKER_MANIFEST);
    assert_int_equal(m.nlayers, 0);
    sbx_manifest_free(&m);
    /* neither: guessed from the shape */
    assert_int_equal(parse(&m, "application/octet-stream", bare, &err), 0);
    assert_string_equal(m.media_type, SBX_MT_OCI_MANIFEST);
    sbx_manifest_free(&m);
    assert_int_equal(parse(&m, NULL, bare, &err), 0);
    sbx_manifest_free(&m);
}

static void test_indexes(void **state)
{
    (void)state;
    const char *idx =
        "{\"schemaVersion\":2,\"mediaType\":\"" SBX_MT_DOCKER_LIST "\",\"manifests\":["
        "{\"mediaType\":\"" SBX_MT_DOCKER_MANIFEST "\",\"digest\":\"" H1 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"" SBX_MT_DOCKER_MANIFEST "\",\"digest\":\"" H2 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
        "{\"mediaType\":\"" SBX_MT_DOCKER_MANIFEST "\",\"digest\":\"" H3 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
        "{\"mediaType\":\"" SBX_MT_OCI_MANIFEST "\",\"digest\":\"" H4 "\",\"size\":10,"
        "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]}";
    sbx_manifest m;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(parse(&m, SBX_MT_DOCKER_LIST, idx, &err), 0);
    assert_int_equal(m.kind, SBX_MANIFEST_INDEX);
    assert_int_equal(m.nentries, 4);
    assert_string_equal(m.entries[1].platform.variant, "v8"); /* normalized */

    sbx_platform want;
    const sbx_descriptor *d;
    assert_int_equal(sbx_platform_parse(&want, "linux/arm64/v8", &err), 0);
    assert_int_equal(sbx_manifest_pick(&d, &m, &want, &err), 0);
    assert_string_equal(d->digest, H2);
    assert_int_equal(sbx_platform_parse(&want, "linux/amd64", &err), 0);
    assert_int_equal(sbx_manifest_pick(&d, &m, &want, &err), 0);
    assert_string_equal(d->digest, H1);
    /* arm/v7 host runs the v6 image */
    assert_int_equal(sbx_platform_parse(&want, "linux/arm/v7", &err), 0);
    assert_int_equal(sbx_manifest_pick(&d, &m, &want, &err), 0);
    assert_string_equal(d->digest, H3);
    /* nothing for riscv64: the error lists what there is, not unknown/unknown */
    assert_int_equal(sbx_platform_parse(&want, "linux/riscv64", &err), 0);
    assert_int_equal(sbx_manifest_pick(&d, &m, &want, &err), SBX_ENOPLATFORM);
    tu_assert_error(&err, SBX_ENOPLATFORM,
                    "no image for platform 'linux/riscv64'; the image has: linux/amd64, "
                    "linux/arm64/v8, linux/arm/v6");
    assert_null(strstr(err.msg, "unknown"));
    sbx_manifest_free(&m);

    /* OCI index without mediaType, guessed from 'manifests' */
    const char *bare = "{\"schemaVersion\":2,\"manifests\":[]}";
    assert_int_equal(parse(&m, "", bare, &err), 0);
    assert_int_equal(m.kind, SBX_MANIFEST_INDEX);
    assert_string_equal(m.media_type, SBX_MT_OCI_INDEX);
    assert_int_equal(sbx_manifest_pick(&d, &m, &want, &err), SBX_ENOPLATFORM);
    tu_assert_error(&err, SBX_ENOPLATFORM, "(no platforms)");
    sbx_manifest_free(&m);
}

static void test_manifest_errors(void **state)
{
    (void)state;
    sbx_manifest m;
    sbx_error err = SBX_ERROR_INIT;
    /* schema1, by Content-Type and by content */
    assert_int_equal(parse(&m, SBX_MT_DOCKER_V1_SIGNED, "{}", &err), SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "schema1");
    assert_int_equal(parse(&m, "application/json",
                           "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", &err),
                     SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "schema1");
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, "not json", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "parsing manifest");
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, "[]", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "not a JSON object");
    /* duplicate keys are refused (two readers could disagree) */
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST,
                           "{\"schemaVersion\":2,\"schemaVersion\":2,\"layers\":[]}", &err),
                     SBX_EINVAL);
    /* served as an index but says it is a manifest */
    assert_int_equal(parse(&m, SBX_MT_OCI_INDEX, oci_manifest, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "served as");
    /* unknown type */
    assert_int_equal(parse(&m, "text/html", "{\"schemaVersion\":2}", &err), SBX_EUNSUPPORTED);
    tu_assert_error(&err, SBX_EUNSUPPORTED, "unsupported media type 'text/html'");
    /* bad descriptors */
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST,
                           "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:abc\",\"size\":1},"
                           "\"layers\":[]}",
                           &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "invalid digest 'sha256:abc'");
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST,
                           "{\"schemaVersion\":2,\"config\":{\"digest\":\"" H1 "\",\"size\":1},"
                           "\"layers\":[{\"digest\":\"" H2 "\",\"size\":-5}]}",
                           &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "layer 1");
    tu_assert_error(&err, SBX_EINVAL, "without a valid size");
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST,
                           "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha512:" H1 "\",\"size\":1},"
                           "\"layers\":[]}",
                           &err),
                     SBX_EINVAL);
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, "{\"schemaVersion\":3,\"layers\":[]}", &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "schemaVersion must be 2");
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, "{\"schemaVersion\":2,\"config\":{\"digest\":\"" H1
                                                "\",\"size\":1}}",
                           &err),
                     SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "no 'layers' list");
}

static void test_manifest_limits(void **state)
{
    (void)state;
    /* 1001 layers: refused by count before anything is allocated for them */
    size_t n = SBX_MAX_LAYERS + 1;
    const char *layer = "{\"digest\":\"" H2 "\",\"size\":1},";
    size_t cap = 200 + n * strlen(layer);
    char *buf = malloc(cap);
    assert_non_null(buf);
    strcpy(buf, "{\"schemaVersion\":2,\"config\":{\"digest\":\"" H1 "\",\"size\":1},\"layers\":[");
    for (size_t i = 0; i < n; i++)
        strcat(buf, layer);
    buf[strlen(buf) - 1] = ']';
    strcat(buf, "}");
    sbx_manifest m;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(parse(&m, SBX_MT_OCI_MANIFEST, buf, &err), SBX_ELIMIT);
    tu_assert_error(&err, SBX_ELIMIT, "1001 layers (limit 1000)");
    free(buf);
}

static void test_image_config(void **state)
{
    (void)state;
    sbx_image_config c;
    sbx_error err = SBX_ERROR_INIT;
    const char *cfg = "{\"architecture\":\"arm64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                      "\"diff_ids\":[\"" H1 "\",\"" H2 "\"]}}";
    assert_int_equal(sbx_image_config_parse(&c, cfg, strlen(cfg), &err), 0);
    assert_int_equal(c.ndiff_ids, 2);
    assert_string_equal(c.diff_ids[1], H2);
    assert_string_equal(c.platform.architecture, "arm64");
    assert_string_equal(c.platform.variant, "v8");
    sbx_image_config_free(&c);
    const char *bad = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:xyz\"]}}";
    assert_int_equal(sbx_image_config_parse(&c, bad, strlen(bad), &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "diff_id 1 is not a sha256 digest");
    const char *none = "{\"os\":\"linux\"}";
    assert_int_equal(sbx_image_config_parse(&c, none, strlen(none), &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "no rootfs.diff_ids");
}

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_config_add_layer(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2020-01-01T00:00:00Z\","
                      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\"]},"
                      "\"history\":[{\"created_by\":\"base\"},{\"empty_layer\":true}]}";
    char *out = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(sbx_image_config_add_layer(&out, &len, cfg, strlen(cfg), D2, "commit", "why",
                                                &err), 0);
    assert_non_null(strstr(out, "\"diff_ids\":[\"" D1 "\",\"" D2 "\"]"));
    assert_non_null(strstr(out, "{\"comment\":\"why\",\"created_by\":\"commit\"}"));
    assert_non_null(strstr(out, "\"created\":\"2020-01-01T00:00:00Z\"")); /* kept */
    /* deterministic: the same layer on the same parent, the same bytes */
    assert_int_equal(sbx_image_config_add_layer(&again, &len2, cfg, strlen(cfg), D2, "commit",
                                                "why", &err), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(out, again, len);
    sbx_image_config c;
    assert_int_equal(sbx_image_config_parse(&c, out, len, &err), 0);
    assert_int_equal(c.ndiff_ids, 2);
    sbx_image_config_free(&c);
    free(out);
    free(again);

    /* history out of step with the layers (none here): left alone */
    const char *bare = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    assert_int_equal(sbx_image_config_add_layer(&out, &len, bare, strlen(bare), D1, "c", NULL,
                                                &err), 0);
    assert_null(strstr(out, "history"));
    free(out);

    assert_int_equal(sbx_image_config_add_layer(&out, &len, "{}", 2, D1, "c", NULL, &err),
                     SBX_EINVAL);
    assert_int_equal(sbx_image_config_add_layer(&out, &len, bare, strlen(bare), "sha256:1", "c",
                                                NULL, &err), SBX_EINVAL);
}

static void test_layer_compression(void **state)
{
    (void)state;
    assert_int_equal(sbx_media_layer_compression("application/vnd.oci.image.layer.v1.tar+gzip"),
                     SBX_COMP_GZIP);
    assert_int_equal(sbx_media_layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                     SBX_COMP_GZIP);
    assert_int_equal(sbx_media_layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
                     SBX_COMP_ZSTD);
    assert_int_equal(sbx_media_layer_compression("application/vnd.oci.image.layer.v1.tar"),
                     SBX_COMP_NONE);
    assert_int_equal(sbx_media_layer_compression("application/x-unknown"), SBX_COMP_AUTO);
    assert_true(sbx_media_is_index(SBX_MT_DOCKER_LIST));
    assert_true(sbx_media_is_manifest(SBX_MT_DOCKER_MANIFEST));
    assert_false(sbx_media_is_manifest(SBX_MT_DOCKER_V1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_manifests), cmocka_unit_test(test_indexes),
        cmocka_unit_test(test_manifest_errors), cmocka_unit_test(test_manifest_limits),
        cmocka_unit_test(test_image_config),    cmocka_unit_test(test_layer_compression),
        cmocka_unit_test(test_config_add_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
