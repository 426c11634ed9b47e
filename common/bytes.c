/* Sizes as options and settings take them (sbx_bytes_parse). */
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
