/* libFuzzer target for the recipe front end: the YAML parser and schema
 * checks, the canonical form and cache keys of whatever parses, and the
 * .sbxignore pattern parser/matcher over the same bytes.  Any crash, leak or
 * sanitizer report is a bug.  Copy steps hash a small fixed context. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recipe_internal.h"
#include "sbx/recipe.h"

static char g_ctx[160];

static void put(const char *rel, const char *content)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_ctx, rel);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    static char root[128];
    snprintf(root, sizeof root, "%s/sbx-fuzz-recipe-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root))
        abort();
    static char cache[160];
    snprintf(cache, sizeof cache, "%s/cache", root);
    setenv("SBX_CACHE_DIR", cache, 1);
    snprintf(g_ctx, sizeof g_ctx, "%s/ctx", root);
    mkdir(g_ctx, 0755);
    char p[256];
    snprintf(p, sizeof p, "%s/app", g_ctx);
    mkdir(p, 0755);
    put("app/main.py", "print('x')\n");
    put("file.txt", "data\n");
    put(".sbxignore", "*.log\n!keep.log\n");
    snprintf(p, sizeof p, "%s/app/link", g_ctx);
    if (symlink("main.py", p) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    if (sbx_recipe_parse_buffer(&r, (const char *)data, size, "fuzz.yaml", g_ctx, NULL, &err) == 0) {
        char *canon = NULL, d[SBX_DIGEST_BUFSZ];
        if (sbx_recipe_canonical(&canon, r, &err) == 0)
            free(canon);
        sbx_recipe_digest(d, r, &err);
        for (size_t i = 0; i <= sbx_recipe_n_steps(r); i++)
            sbx_recipe_cache_key(
                d, r, i, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                &err);
        sbx_recipe_unref(r);
    } else if (err.code == 0 || !err.msg[0]) {
        abort(); /* every failure must say why */
    }
    /* The same bytes as .sbxignore patterns. */
    char *text = strndup((const char *)data, size);
    rcp_ignore *ig = NULL;
    if (text && rcp_ignore_parse(&ig, text, &err) == 0) {
        rcp_ignore_match(ig, "a/b/c.log");
        rcp_ignore_match(ig, "node_modules/x");
        rcp_ignore_match(ig, ".");
        rcp_ignore_free(ig);
    }
    free(text);
    return 0;
}
