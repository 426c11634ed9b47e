/* Internal to the image module: what its files share.  Not installed. */
#ifndef SBX_IMAGE_INTERNAL_H
#define SBX_IMAGE_INTERNAL_H

#include "sbx/image.h"
#include "sbx_common.h"

/* How well an index entry's platform `have` serves `want`: 0 not at all,
 * higher is better (an exact variant beats a compatible older one). */
int img_platform_rank(const sbx_platform *want, const sbx_platform *have);

/* Read a JSON document from the store (re-hashed there), refusing more than
 * max bytes; *out owned by the caller and NUL-terminated. */
int img_read(char **out, size_t *len, sbx_store *s, const char *digest, size_t max,
             const char *what, sbx_error *err);

#endif
