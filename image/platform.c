/* Platforms: parse "os/arch[/variant]", normalize as containerd does, and
 * match an index entry against the wanted platform.
 *
 * Normal forms: amd64 (x86_64, x86-64; variant v1 is dropped), arm64
 * (aarch64; no variant, "8" and "v8" all mean v8), arm (armhf = v7,
 * armel = v6, no variant = v7), 386 (i386, i686).  os is lowercased and
 * macos is darwin. */
#include <ctype.h>
#include <string.h>
#include <sys/utsname.h>

#include "image_internal.h"

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static void set(char *dst, size_t len, const char *v) { snprintf(dst, len, "%s", v); }

void sbx_platform_normalize(sbx_platform *p)
{
    lower(p->os);
    lower(p->architecture);
    lower(p->variant);
    if (!strcmp(p->os, "macos"))
        set(p->os, sizeof p->os, "darwin");
    char *a = p->architecture, *v = p->variant;
    /* a bare number variant means "v<number>" */
    if (v[0] >= '0' && v[0] <= '9') {
        char t[sizeof p->variant];
        snprintf(t, sizeof t, "v%.30s", v);
        set(v, sizeof p->variant, t);
    }
    if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64") || !strcmp(a, "amd64")) {
        set(a, sizeof p->architecture, "amd64");
        if (!strcmp(v, "v1"))
            v[0] = '\0';
    } else if (!strcmp(a, "i386") || !strcmp(a, "i686") || !strcmp(a, "386")) {
        set(a, sizeof p->architecture, "386");
    } else if (!strcmp(a, "aarch64") || !strcmp(a, "arm64")) {
        set(a, sizeof p->architecture, "arm64");
        if (!v[0] || !strcmp(v, "v8.0"))
            set(v, sizeof p->variant, "v8");
    } else if (!strcmp(a, "armhf")) {
        set(a, sizeof p->architecture, "arm");
        set(v, sizeof p->variant, "v7");
    } else if (!strcmp(a, "armel")) {
        set(a, sizeof p->architecture, "arm");
        set(v, sizeof p->variant, "v6");
    } else if (!strcmp(a, "arm")) {
        if (!v[0])
            set(v, sizeof p->variant, "v7");
    }
}

int sbx_platform_parse(sbx_platform *out, const char *s, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s) {
        sbx_error_set(err, SBX_EINVAL, "parsing platform '': empty platform");
        return SBX_EINVAL;
    }
    if (strchr(s, ','))
        return sbx_error_set(err, SBX_EINVAL, "platform '%.100s' lists several: give one "
                             "os/arch[/variant] (run the command once per platform)", s);
    const char *parts[3] = {0};
    size_t lens[3] = {0};
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *sl = strchr(p, '/');
        size_t len = sl ? (size_t)(sl - p) : strlen(p);
        if (n == 3 || len == 0 || len >= sizeof out->os)
            return sbx_error_set(err, SBX_EINVAL,
                                 "parsing platform '%.100s': expected os/arch[/variant]", s);
        for (size_t i = 0; i < len; i++)
            if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '-' && p[i] != '.')
                return sbx_error_set(err, SBX_EINVAL,
                                     "parsing platform '%.100s': invalid character '%c'", s, p[i]);
        parts[n] = p;
        lens[n++] = len;
        if (!sl)
            break;
        p = sl + 1;
    }
    if (n == 1) { /* "arm64" alone means linux/arm64 */
        set(out->os, sizeof out->os, "linux");
        snprintf(out->architecture, sizeof out->architecture, "%.*s", (int)lens[0], parts[0]);
    } else {
        snprintf(out->os, sizeof out->os, "%.*s", (int)lens[0], parts[0]);
        snprintf(out->architecture, sizeof out->architecture, "%.*s", (int)lens[1], parts[1]);
        if (n == 3)
            snprintf(out->variant, sizeof out->variant, "%.*s", (int)lens[2], parts[2]);
    }
    sbx_platform_normalize(out);
    return 0;
}

void sbx_platform_host(sbx_platform *out)
{
    memset(out, 0, sizeof *out);
    set(out->os, sizeof out->os, "linux");
    struct utsname u;
    if (uname(&u) == 0) {
        if (!strncmp(u.machine, "armv", 4) && isdigit((unsigned char)u.machine[4])) {
            set(out->architecture, sizeof out->architecture, "arm");
            snprintf(out->variant, sizeof out->variant, "v%c", u.machine[4]);
        } else {
            snprintf(out->architecture, sizeof out->architecture, "%.31s", u.machine);
        }
    } else {
        set(out->architecture, sizeof out->architecture, "amd64");
    }
    sbx_platform_normalize(out);
}

const char *sbx_platform_format(const sbx_platform *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s%s", p->os[0] ? p->os : "unknown",
             p->architecture[0] ? p->architecture : "unknown", p->variant[0] ? "/" : "",
             p->variant);
    return buf;
}

/* Rank how well `have` serves `want`: 0 no, 3 exact, 2 same arch and any
 * variant wanted, 1 an older compatible variant (arm v6 on a v7 host, amd64
 * v2 on a v3 host). */
int img_platform_rank(const sbx_platform *want, const sbx_platform *have)
{
    if (strcmp(want->os, have->os) != 0 || strcmp(want->architecture, have->architecture) != 0)
        return 0;
    if (!strcmp(want->variant, have->variant))
        return 3;
    if (!want->variant[0])
        return 2;
    if (!strcmp(want->architecture, "arm") || !strcmp(want->architecture, "amd64")) {
        /* variants are "vN": an older one runs on a newer CPU */
        int w = want->variant[0] == 'v' ? atoi(want->variant + 1) : 0;
        int h = !have->variant[0] ? 1 : have->variant[0] == 'v' ? atoi(have->variant + 1) : 99;
        if (h <= w)
            return 1;
    }
    return 0;
}

int sbx_platform_match(const sbx_platform *want, const sbx_platform *have)
{
    return img_platform_rank(want, have) > 0;
}
