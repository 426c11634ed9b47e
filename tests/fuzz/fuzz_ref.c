/* libFuzzer target for what users and recipes write as image names: refs
 * (docker's grammar and normalization) and platforms.  A parsed ref must
 * print back to something that parses to the same ref. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s)
        return 0;
    sbx_error err = SBX_ERROR_INIT;
    sbx_ref r;
    int rc = sbx_ref_parse(&r, s, &err);
    if (rc < 0 && (err.code == 0 || !err.msg[0]))
        abort();
    if (rc == 0) {
        sbx_ref again;
        if (sbx_ref_parse(&again, r.str, &err) < 0 || strcmp(again.str, r.str) != 0)
            abort(); /* the normalized form is a fixed point */
        (void)sbx_ref_reference(&r);
    }
    sbx_platform p;
    sbx_error_clear(&err);
    rc = sbx_platform_parse(&p, s, &err);
    if (rc < 0 && (err.code == 0 || !err.msg[0]))
        abort();
    if (rc == 0) {
        char buf[128];
        sbx_platform_normalize(&p);
        sbx_platform_format(&p, buf, sizeof buf);
        sbx_platform host;
        sbx_platform_host(&host);
        (void)sbx_platform_match(&host, &p);
    }
    free(s);
    return 0;
}
