/* Field validators shared by the C API and the YAML front end.  Messages say
 * what was expected; the YAML layer adds file:line:col. */
#include <ctype.h>
#include <string.h>

#include "recipe_internal.h"

/* Length of the UTF-8 sequence at s, or 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    unsigned cp = c & (0xff >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int rcp_rv_text(const char *s, const char *what, bool multiline, sbx_error *err)
{
    if (!s)
        return sbx_error_set(err, SBX_EINVAL, "expected a string for %s", what);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p < 0x20 || *p == 0x7f) {
            bool ok = *p == '\t' || (multiline && (*p == '\n' || *p == '\r'));
            if (!ok)
                return sbx_error_set(err, SBX_EINVAL,
                                     "expected %s without control characters (found 0x%02x)",
                                     what, *p);
            p++;
            continue;
        }
        size_t n = utf8_len(p);
        if (!n)
            return sbx_error_set(err, SBX_EINVAL, "expected %s to be valid UTF-8", what);
        p += n;
    }
    return 0;
}

static bool has_space(const char *s)
{
    for (; *s; s++)
        if (isspace((unsigned char)*s))
            return true;
    return false;
}

int rcp_rv_package(const char *s, const char *what, bool allow_spaces, sbx_error *err)
{
    if (rcp_rv_text(s, what, false, err) < 0)
        return err->code;
    if (!*s)
        return sbx_error_set(err, SBX_EINVAL, "expected a non-empty %s", what);
    if (s[0] == '-')
        return sbx_error_set(err, SBX_EINVAL, "expected a %s, not an option ('%s')", what, s);
    if (!allow_spaces && has_space(s))
        return sbx_error_set(err, SBX_EINVAL, "expected one %s without spaces, got '%s'", what, s);
    return 0;
}

int rcp_rv_version(const char *s, const char *what, sbx_error *err)
{
    if (!s || !*s)
        return sbx_error_set(err, SBX_EINVAL, "expected a version like \"3.12\" for %s", what);
    int parts = 0;
    const char *p = s;
    for (;;) {
        if (!isdigit((unsigned char)*p))
            goto bad;
        while (isdigit((unsigned char)*p))
            p++;
        parts++;
        if (*p == '\0')
            break;
        if (*p != '.' || parts == 3)
            goto bad;
        p++;
    }
    return 0;
bad:
    return sbx_error_set(err, SBX_EINVAL, "expected a version like \"3.12\" for %s, got '%.64s'",
                         what, s);
}

int rcp_rv_env_name(const char *s, sbx_error *err)
{
    bool ok = s && (isalpha((unsigned char)s[0]) || s[0] == '_');
    for (const char *p = s; ok && *p; p++)
        ok = (*p & 0x80) == 0 && (isalnum((unsigned char)*p) || *p == '_');
    if (!ok)
        return sbx_error_set(err, SBX_EINVAL,
                             "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), "
                             "got '%.64s'",
                             s ? s : "");
    return 0;
}

int rcp_rv_secret_id(const char *s, sbx_error *err)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 1 && n <= 64 && strcmp(s, ".") && strcmp(s, "..");
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] & 0x80) == 0 && (isalnum((unsigned char)s[i]) || strchr("_.-", s[i]));
    if (!ok)
        return sbx_error_set(err, SBX_EINVAL, "expected a secret id ([A-Za-z0-9_.-], 1 to 64 "
                             "characters), got '%.64s'", s ? s : "");
    return 0;
}

int rcp_rv_url_no_userinfo(const char *s, const char *what, sbx_error *err)
{
    const char *p = strstr(s, "://");
    if (!p)
        return 0;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    if (!memchr(p, '@', auth))
        return 0;
    char shown[300];
    return sbx_error_set(err, SBX_EINVAL, "%s '%s' holds credentials: they would be in the "
                         "recipe's digest and in logs; pass them as a build secret (secrets: "
                         "[{id: NAME, env: PIP_INDEX_URL}], build --secret)",
                         what, sbx__url_redact(shown, sizeof shown, s, false));
}

int rcp_rv_user(const char *s, const char *what, sbx_error *err)
{
    if (rcp_rv_text(s, what, false, err) < 0)
        return err->code;
    const char *colon = strchr(s, ':');
    if (!*s || has_space(s) || s[0] == ':' || (colon && (strchr(colon + 1, ':') || !colon[1])))
        return sbx_error_set(err, SBX_EINVAL,
                             "expected %s as NAME, NAME:GROUP or UID:GID, got '%.64s'", what, s);
    return 0;
}

int rcp_rv_abs_path(const char *s, const char *what, sbx_error *err)
{
    if (rcp_rv_text(s, what, false, err) < 0)
        return err->code;
    if (s[0] != '/')
        return sbx_error_set(err, SBX_EINVAL, "expected an absolute path for %s, got '%.200s'",
                             what, s);
    return 0;
}

int rcp_rv_rel_path(const char *s, const char *what, sbx_error *err)
{
    if (rcp_rv_text(s, what, false, err) < 0)
        return err->code;
    if (!*s)
        return sbx_error_set(err, SBX_EINVAL, "expected a non-empty path for %s", what);
    if (s[0] == '/')
        return sbx_error_set(err, SBX_EINVAL,
                             "expected a path relative to the build context for %s, got '%.200s'",
                             what, s);
    _cleanup_free_ char *c = rcp_path_clean(s, false);
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "allocate path");
    if (!strcmp(c, "..") || !strncmp(c, "../", 3))
        return sbx_error_set(err, SBX_EINVAL,
                             "expected a path inside the build context for %s, got '%.200s'", what,
                             s);
    return 0;
}

int rcp_rv_ref(const char *s, const char *what, sbx_error *err)
{
    if (rcp_rv_text(s, what, false, err) < 0)
        return err->code;
    if (!*s || has_space(s))
        return sbx_error_set(err, SBX_EINVAL, "expected an image reference for %s, got '%.200s'",
                             what, s);
    return 0;
}

int rcp_rv_mode(int *out, const char *s, sbx_error *err)
{
    const char *p = s ? s : "";
    if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
        p += 2;
    long v = 0;
    size_t n = 0;
    for (; *p >= '0' && *p <= '7' && n < 6; p++, n++)
        v = v * 8 + (*p - '0');
    if (n == 0 || *p || v > 07777)
        return sbx_error_set(err, SBX_EINVAL,
                             "expected mode as octal permission bits like \"0755\", got '%.32s'",
                             s ? s : "");
    *out = (int)v;
    return 0;
}

char *rcp_path_clean(const char *p, bool keep_trailing_slash)
{
    size_t len = strlen(p);
    bool rooted = p[0] == '/';
    bool trailing = keep_trailing_slash && len > 1 && p[len - 1] == '/';
    char *out = malloc(len + 3);
    if (!out)
        return NULL;
    size_t w = 0, dotdot = 0; /* dotdot: where ".." may no longer be backtracked */
    if (rooted) {
        out[w++] = '/';
        dotdot = 1;
    }
    for (size_t r = 0; r < len;) {
        if (p[r] == '/') {
            r++;
        } else if (p[r] == '.' && (r + 1 == len || p[r + 1] == '/')) {
            r++;
        } else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == len || p[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/')
                    w--;
            } else if (!rooted) {
                if (w > 0)
                    out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                out[w++] = '/';
            for (; r < len && p[r] != '/'; r++)
                out[w++] = p[r];
        }
    }
    if (w == 0)
        out[w++] = '.';
    if (trailing && !(w == 1 && out[0] == '/'))
        out[w++] = '/';
    out[w] = '\0';
    return out;
}
