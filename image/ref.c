/* Image references: Docker's grammar and normalization.
 *
 *   reference := name [":" tag] ["@" digest]
 *   name      := [domain "/"] path
 *   domain    := host [":" port]      (a first component with '.', ':' or
 *                                      "localhost", else docker.io)
 *   path      := component ("/" component)*,  component := [a-z0-9]+ (sep [a-z0-9]+)*
 *   sep       := "." | "_" | "__" | "-"+
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *
 * Only sha256 digests are accepted: the store addresses by sha256. */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>

#include "image_internal.h"

static int ref_error(sbx_error *err, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ref_error(sbx_error *err, const char *s, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    sbx_error_set(err, SBX_EINVAL, "parsing image ref '%.200s': %s", s, detail);
    sbx_error_where(err, "%.200s", s);
    return SBX_EINVAL;
}

static int is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* One path component [start, end): returns NULL when valid, else a reason. */
static const char *check_component(const char *p, size_t len)
{
    if (len == 0)
        return "empty path component";
    for (size_t i = 0; i < len; i++)
        if (isupper((unsigned char)p[i]))
            return "repository name must be lowercase";
    if (!is_lower_alnum(p[0]) || !is_lower_alnum(p[len - 1]))
        return "path component must start and end with a lowercase letter or digit";
    size_t i = 0;
    while (i < len) {
        if (is_lower_alnum(p[i])) {
            i++;
            continue;
        }
        /* a separator run: ".", "_", "__" or "-"+ */
        size_t j = i;
        while (j < len && !is_lower_alnum(p[j]))
            j++;
        size_t n = j - i;
        int ok = 0;
        if (n == 1 && (p[i] == '.' || p[i] == '_' || p[i] == '-'))
            ok = 1;
        else if (n == 2 && p[i] == '_' && p[i + 1] == '_')
            ok = 1;
        else {
            ok = 1;
            for (size_t k = i; k < j; k++)
                if (p[k] != '-')
                    ok = 0;
        }
        if (!ok) {
            for (size_t k = i; k < j; k++)
                if (!strchr("._-", p[k]))
                    return "invalid character in repository name (allowed: a-z 0-9 . _ -)";
            return "invalid separator in repository name";
        }
        i = j;
    }
    return NULL;
}

static const char *check_domain(const char *d, size_t len)
{
    if (len == 0)
        return "empty registry host";
    const char *end = d + len;
    const char *host_end = end;
    if (d[0] == '[') {
        const char *rb = memchr(d, ']', len);
        if (!rb || rb == d + 1)
            return "invalid IPv6 registry host";
        for (const char *p = d + 1; p < rb; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return "invalid IPv6 registry host";
        host_end = rb + 1;
        if (host_end != end && *host_end != ':')
            return "invalid IPv6 registry host";
    } else {
        const char *colon = memchr(d, ':', len);
        if (colon)
            host_end = colon;
        if (host_end == d)
            return "empty registry host";
        /* components separated by '.', each [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? */
        const char *c = d;
        while (c < host_end) {
            const char *dot = memchr(c, '.', (size_t)(host_end - c));
            const char *ce = dot ? dot : host_end;
            if (ce == c)
                return "empty component in registry host";
            if (!isalnum((unsigned char)c[0]) || !isalnum((unsigned char)ce[-1]))
                return "invalid registry host";
            for (const char *p = c; p < ce; p++)
                if (!isalnum((unsigned char)*p) && *p != '-')
                    return "invalid character in registry host";
            c = dot ? dot + 1 : host_end;
            if (dot && c == host_end)
                return "empty component in registry host";
        }
    }
    if (host_end < end) { /* ":port" */
        const char *port = host_end + 1;
        if (port == end)
            return "empty registry port";
        for (const char *p = port; p < end; p++)
            if (!isdigit((unsigned char)*p))
                return "registry port must be a number";
        if (end - port > 5)
            return "registry port out of range";
    }
    return NULL;
}

static const char *check_tag(const char *t)
{
    size_t len = strlen(t);
    if (len == 0)
        return "empty tag";
    if (len > SBX_REF_TAG_MAX)
        return "tag longer than 128 characters";
    if (!isalnum((unsigned char)t[0]) && t[0] != '_')
        return "tag must start with a letter, digit or '_'";
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)t[i]) && !strchr("_.-", t[i]))
            return "invalid character in tag (allowed: A-Z a-z 0-9 _ . -)";
    return NULL;
}

static const char *check_digest(const char *d)
{
    if (!*d)
        return "empty digest";
    const char *colon = strchr(d, ':');
    if (!colon || colon == d)
        return "digest must be 'sha256:' followed by 64 hex digits";
    if (strncmp(d, "sha256:", 7) != 0)
        return "unsupported digest algorithm (only sha256)";
    if (!sbx__digest_valid(d))
        return "digest must be 'sha256:' followed by 64 lowercase hex digits";
    return NULL;
}

int sbx_ref_parse(sbx_ref *out, const char *s, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s)
        return ref_error(err, s ? s : "", "empty reference");
    size_t slen = strlen(s);
    if (slen > 1024)
        return ref_error(err, "(too long)", "reference longer than 1024 characters");
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return ref_error(err, s, "reference contains whitespace or a control character");
    /* A bare 64-hex string is an image ID, not a ref (as Docker says). */
    if (slen == 64 && strspn(s, "0123456789abcdef") == 64)
        return ref_error(err, s,
                         "a 64-character hex string is an image ID, not a ref; "
                         "use 'name@sha256:<hex>'");

    char buf[1025];
    memcpy(buf, s, slen + 1);

    /* digest */
    char *at = strchr(buf, '@');
    if (at) {
        *at = '\0';
        const char *why = check_digest(at + 1);
        if (why)
            return ref_error(err, s, "%s", why);
        snprintf(out->digest, sizeof out->digest, "%s", at + 1);
    }
    /* tag: a ':' after the last '/' */
    char *slash = strrchr(buf, '/');
    char *colon = strrchr(slash ? slash : buf, ':');
    if (colon) {
        *colon = '\0';
        const char *why = check_tag(colon + 1);
        if (why)
            return ref_error(err, s, "%s", why);
        snprintf(out->tag, sizeof out->tag, "%s", colon + 1);
    }
    if (!buf[0])
        return ref_error(err, s, "empty repository name");

    /* domain split, as Docker's splitDockerDomain */
    const char *name = buf;
    const char *remote = buf;
    char *first_slash = strchr(buf, '/');
    int has_domain = 0;
    if (first_slash) {
        size_t n = (size_t)(first_slash - buf);
        if (memchr(buf, '.', n) || memchr(buf, ':', n) || (n == 9 && !memcmp(buf, "localhost", 9)))
            has_domain = 1;
        else
            for (size_t i = 0; i < n; i++)
                if (isupper((unsigned char)buf[i]))
                    has_domain = 1;
    }
    if (has_domain) {
        size_t n = (size_t)(first_slash - buf);
        const char *why = check_domain(buf, n);
        if (why)
            return ref_error(err, s, "%s", why);
        if (n > SBX_REF_DOMAIN_MAX)
            return ref_error(err, s, "registry host too long");
        memcpy(out->domain, buf, n);
        out->domain[n] = '\0';
        if (!strcmp(out->domain, "index.docker.io") || !strcmp(out->domain, "registry-1.docker.io"))
            strcpy(out->domain, "docker.io");
        remote = first_slash + 1;
    } else {
        strcpy(out->domain, "docker.io");
    }
    (void)name;
    if (!*remote)
        return ref_error(err, s, "empty repository path");

    /* path components */
    const char *c = remote;
    for (;;) {
        const char *sl = strchr(c, '/');
        size_t n = sl ? (size_t)(sl - c) : strlen(c);
        const char *why = check_component(c, n);
        if (why)
            return ref_error(err, s, "%s", why);
        if (!sl)
            break;
        c = sl + 1;
    }
    int lib = !strcmp(out->domain, "docker.io") && !strchr(remote, '/');
    int n = snprintf(out->path, sizeof out->path, "%s%s", lib ? "library/" : "", remote);
    if (n < 0 || (size_t)n >= sizeof out->path ||
        strlen(out->domain) + 1 + (size_t)n > SBX_REF_DOMAIN_MAX)
        return ref_error(err, s, "repository name longer than 255 characters");

    if (!out->tag[0] && !out->digest[0])
        strcpy(out->tag, "latest");
    snprintf(out->str, sizeof out->str, "%s/%s%s%s%s%s", out->domain, out->path,
             out->tag[0] ? ":" : "", out->tag, out->digest[0] ? "@" : "", out->digest);
    return 0;
}

const char *sbx_ref_reference(const sbx_ref *r) { return r->digest[0] ? r->digest : r->tag; }
