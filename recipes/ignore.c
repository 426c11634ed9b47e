/* .sbxignore: dockerignore syntax.  One pattern per line; blank lines and
 * lines starting with '#' are skipped; surrounding whitespace is trimmed; a
 * leading '!' re-includes; patterns are cleaned like paths (leading '/'
 * dropped) and matched segment by segment against the path relative to the
 * context: '*', '?', '[...]' and '\' escapes within a segment (fnmatch), a
 * whole segment '**' matches any number of segments, including none.  A
 * pattern that matches a parent directory matches everything below it.  The
 * last matching pattern decides. */
#include <errno.h>
#include <fnmatch.h>
#include <string.h>

#include "recipe_internal.h"

typedef struct {
    char **segs;
    size_t n;
    bool negate;
} pattern;

struct rcp_ignore {
    pattern *pats;
    size_t n;
    bool negations;
};

void rcp_ignore_free(rcp_ignore *ig)
{
    if (!ig)
        return;
    for (size_t i = 0; i < ig->n; i++) {
        for (size_t j = 0; j < ig->pats[i].n; j++)
            free(ig->pats[i].segs[j]);
        free(ig->pats[i].segs);
    }
    free(ig->pats);
    free(ig);
}

/* Split a cleaned relative path into segments. */
static int split(char ***out, size_t *n, const char *p)
{
    size_t cap = 1;
    for (const char *s = p; *s; s++)
        cap += *s == '/';
    char **v = calloc(cap, sizeof *v);
    if (!v)
        return -1;
    size_t k = 0;
    for (const char *s = p;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (!(v[k] = strndup(s, len))) {
            for (size_t i = 0; i < k; i++)
                free(v[i]);
            free(v);
            return -1;
        }
        k++;
        if (!e)
            break;
        s = e + 1;
    }
    *out = v;
    *n = k;
    return 0;
}

static int add_pattern(rcp_ignore *ig, const char *line, size_t lineno, sbx_error *err)
{
    bool negate = false;
    if (line[0] == '!') {
        negate = true;
        line++;
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line)
            return sbx_error_set(err, SBX_EINVAL,
                                 "read .sbxignore line %zu: expected a pattern after '!'", lineno);
    }
    _cleanup_free_ char *c = rcp_path_clean(line, false);
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "allocate pattern");
    const char *p = c;
    while (*p == '/')
        p++;
    if (!*p || !strcmp(p, "."))
        return 0; /* matches the context itself: docker ignores it too */
    pattern pt = {.negate = negate};
    if (split(&pt.segs, &pt.n, p) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "allocate pattern");
    /* "**" followed by "**" matches what one does: collapse them, so that
     * matching stays polynomial in the number of segments. */
    size_t w = 0;
    for (size_t i = 0; i < pt.n; i++) {
        if (w > 0 && !strcmp(pt.segs[i], "**") && !strcmp(pt.segs[w - 1], "**"))
            free(pt.segs[i]);
        else
            pt.segs[w++] = pt.segs[i];
    }
    pt.n = w;
    pattern *np = realloc(ig->pats, (ig->n + 1) * sizeof *np);
    if (!np) {
        for (size_t j = 0; j < pt.n; j++)
            free(pt.segs[j]);
        free(pt.segs);
        return sbx_error_set(err, SBX_ENOMEM, "allocate pattern");
    }
    ig->pats = np;
    ig->pats[ig->n++] = pt;
    ig->negations |= negate;
    return 0;
}

int rcp_ignore_parse(rcp_ignore **out, const char *text, sbx_error *err)
{
    *out = NULL;
    rcp_ignore *ig = calloc(1, sizeof *ig);
    if (!ig)
        return sbx_error_set(err, SBX_ENOMEM, "allocate ignore list");
    size_t lineno = 0;
    for (const char *s = text; s && *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        lineno++;
        _cleanup_free_ char *line = strndup(s, len);
        if (!line) {
            rcp_ignore_free(ig);
            return sbx_error_set(err, SBX_ENOMEM, "allocate ignore list");
        }
        char *b = line, *t = line + len;
        while (t > b && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
            *--t = '\0';
        while (*b == ' ' || *b == '\t')
            b++;
        if (*b && *b != '#' && add_pattern(ig, b, lineno, err) < 0) {
            rcp_ignore_free(ig);
            return err->code;
        }
        s = e ? e + 1 : s + len;
    }
    *out = ig;
    return 0;
}

int rcp_ignore_load(rcp_ignore **out, const char *context_dir, sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("%s/.sbxignore", context_dir);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "allocate path");
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (sbx__read_file(&text, &len, path, SBX_RECIPE_MAX_FILE, err) < 0) {
        if (err->sys_errno == ENOENT) {
            sbx_error_clear(err);
            return rcp_ignore_parse(out, "", err);
        }
        return err->code;
    }
    if (rcp_ignore_parse(out, text, err) < 0) {
        sbx_error_where(err, "%s", path);
        return err->code;
    }
    return 0;
}

static bool match_segs(char *const *pat, size_t np, char *const *path, size_t ns)
{
    if (np == 0)
        return ns == 0;
    if (!strcmp(pat[0], "**")) {
        for (size_t k = 0; k <= ns; k++)
            if (match_segs(pat + 1, np - 1, path + k, ns - k))
                return true;
        return false;
    }
    if (ns == 0 || fnmatch(pat[0], path[0], 0) != 0)
        return false;
    return match_segs(pat + 1, np - 1, path + 1, ns - 1);
}

bool rcp_ignore_match(const rcp_ignore *ig, const char *relpath)
{
    if (!ig || ig->n == 0)
        return false;
    char **segs = NULL;
    size_t ns = 0;
    if (split(&segs, &ns, relpath) < 0)
        return false;
    bool excluded = false;
    for (size_t i = 0; i < ig->n; i++) {
        const pattern *p = &ig->pats[i];
        /* The path itself or any parent directory. */
        for (size_t k = 1; k <= ns; k++) {
            if (match_segs(p->segs, p->n, segs, k)) {
                excluded = !p->negate;
                break;
            }
        }
    }
    for (size_t i = 0; i < ns; i++)
        free(segs[i]);
    free(segs);
    return excluded;
}

bool rcp_ignore_has_negations(const rcp_ignore *ig) { return ig && ig->negations; }
