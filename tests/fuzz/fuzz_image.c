/* libFuzzer target for the image documents a registry (or a layout, or a
 * store) hands us: manifests and indexes (under each content type a server
 * may claim, and none), the platform pick over an index, and image configs,
 * all over the same bytes.  Any crash, leak, sanitizer report or failure
 * without a message is a bug. */
#include <stdint.h>
#include <stdlib.h>

#include "sbx/image.h"

static const char *const CONTENT_TYPES[] = {
    NULL,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "text/plain",
};

static void must_say_why(int r, const sbx_error *err)
{
    if (r < 0 && (err->code == 0 || !err->msg[0]))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    for (size_t i = 0; i < sizeof CONTENT_TYPES / sizeof CONTENT_TYPES[0]; i++) {
        sbx_error err = SBX_ERROR_INIT;
        sbx_manifest m;
        int r = sbx_manifest_parse(&m, CONTENT_TYPES[i], body, size, &err);
        must_say_why(r, &err);
        if (r < 0)
            continue;
        if (m.kind == SBX_MANIFEST_INDEX) {
            static const char *const wants[] = {"linux/amd64", "linux/arm64/v8", "linux/arm/v7",
                                                "windows/amd64"};
            for (size_t w = 0; w < sizeof wants / sizeof wants[0]; w++) {
                sbx_platform p;
                const sbx_descriptor *d = NULL;
                if (sbx_platform_parse(&p, wants[w], &err) < 0)
                    abort();
                must_say_why(sbx_manifest_pick(&d, &m, &p, &err), &err);
            }
        }
        sbx_manifest_free(&m);
    }
    sbx_error err = SBX_ERROR_INIT;
    sbx_image_config c;
    int r = sbx_image_config_parse(&c, body, size, &err);
    must_say_why(r, &err);
    if (r == 0)
        sbx_image_config_free(&c);
    return 0;
}
