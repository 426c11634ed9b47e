/* Sizes as options and settings take them (sbx_bytes_parse), numbers from
 * the environment, and the decompression bomb cap. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_common.h"

int sbx_bytes_parse(const char *s, uint64_t *out, sbx_error *err)
{
    if (!s || !isdigit((unsigned char)*s))
        goto bad;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    /* decimal digits and a point only: strtod also reads 0x10 and 1e3 */
    if (errno || end == s || v < 0 || (size_t)(end - s) != strspn(s, "0123456789."))
        goto bad;
    static const char units[] = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    double mult = 1;
    if (u) {
        end++;
        bool si = (*end == 'B' || *end == 'b') && end[1] == '\0';
        for (const char *p = units; p <= u; p++)
            mult *= si ? 1000.0 : 1024.0;
        if ((*end == 'i' || *end == 'I') && (end[1] == 'B' || end[1] == 'b'))
            end += 2;
        else if (si)
            end++;
    } else if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end || v * mult >= 1.8e19)
        goto bad;
    *out = (uint64_t)(v * mult);
    return 0;
bad:
    return sbx_error_set(err, SBX_EINVAL, "'%s' is not a size (say 512M, 2G, 1.5GiB or "
                         "100MB: K, M, G, T are powers of 1024, KB, MB, GB, TB of 1000)",
                         s ? s : "");
}

int64_t sbx__env_int(const char *name, int64_t def, int64_t min, int64_t max,
                    const sbx_ctx *ctx)
{
    const char *e = getenv(name);
    if (!e || !*e)
        return def;
    char *end;
    errno = 0;
    long long v = strtoll(e, &end, 10);
    if (errno || *end || v < min || v > max) {
        sbx__log(ctx, SBX_LOG_WARN, "ignoring %s='%.40s': expected a number from %lld to %lld", name, e,
                (long long)min, (long long)max);
        return def;
    }
    return v;
}

uint64_t sbx__expansion_cap(uint64_t compressed, const sbx_ctx *ctx)
{
    int64_t floor_b = sbx__env_int("SBX_EXPANSION_FLOOR", 1ll << 30, 0, INT64_MAX, ctx);
    int64_t ratio = sbx__env_int("SBX_MAX_EXPANSION", 100, 1, 1000000, ctx);
    int64_t abs_max = sbx__env_int("SBX_MAX_LAYER_BYTES", 64ll << 30, 1, INT64_MAX, ctx);
    uint64_t by_ratio = compressed > (uint64_t)(INT64_MAX / ratio) ? (uint64_t)INT64_MAX
                                                                   : compressed * (uint64_t)ratio;
    uint64_t cap = by_ratio > (uint64_t)floor_b ? by_ratio : (uint64_t)floor_b;
    return cap < (uint64_t)abs_max ? cap : (uint64_t)abs_max;
}
