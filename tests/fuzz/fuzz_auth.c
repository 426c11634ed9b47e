/* libFuzzer target for what a registry's auth answers: WWW-Authenticate
 * challenges (RFC 7235) and token endpoint JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s)
        return 0;
    sbx_error err = SBX_ERROR_INIT;
    reg_challenge ch;
    int rc = reg_challenge_parse(&ch, s, &err);
    if (rc < 0 && (err.code == 0 || !err.msg[0]))
        abort();
    if (rc == 0 && (!memchr(ch.scheme, 0, sizeof ch.scheme) || !memchr(ch.realm, 0, sizeof ch.realm)))
        abort();
    char *token = NULL;
    int64_t expires = 0;
    sbx_error_clear(&err);
    rc = reg_token_parse(&token, &expires, (const char *)data, size, &err);
    if (rc < 0 && (err.code == 0 || !err.msg[0]))
        abort();
    if (rc == 0 && (!token || expires <= 0))
        abort();
    free(token);
    free(s);
    return 0;
}
