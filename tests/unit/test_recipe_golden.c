/* Golden vectors: tests/recipes/golden/NAME.yaml -> NAME.canonical ->
 * NAME.digest, and the builder's chained cache keys (NAME.cachekeys).  These are the contract with every other implementation (the
 * SDK); tests/recipes/golden_check.py checks the same files from Python.  A
 * change here is a change of every image's identity: never regenerate them to
 * make a test pass. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/recipe.h"
#include "sbx_common.h"
#include "testutil.h"

static char *golden_dir(void)
{
    const char *src = getenv("SBX_SOURCE_DIR");
    return sbx__strdup_printf("%s/tests/recipes/golden", src && *src ? src : ".");
}

static char *read_trimmed(const char *dir, const char *name, const char *ext)
{
    char *path = sbx__strdup_printf("%s/%s%s", dir, name, ext);
    char *data = NULL;
    size_t len = 0;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, path, 1 << 20, &err) < 0)
        fail_msg("read %s: %s", path, err.msg);
    if (len && data[len - 1] == '\n')
        data[len - 1] = '\0';
    free(path);
    return data;
}

/* NAME.cachekeys: "# resolved base digest D", then "i key(i)" per line. */
static void check_cache_keys(const char *dir, const char *name, const sbx_recipe *r)
{
    char *text = read_trimmed(dir, name, ".cachekeys");
    const char *tag = "# resolved base digest ";
    assert_memory_equal(text, tag, strlen(tag));
    char resolved[SBX_DIGEST_BUFSZ];
    snprintf(resolved, sizeof resolved, "%.71s", text + strlen(tag));
    size_t lines = 0;
    for (char *line = strchr(text, '\n'); line; line = strchr(line + 1, '\n')) {
        size_t i;
        char want[SBX_DIGEST_BUFSZ], got[SBX_DIGEST_BUFSZ];
        sbx_error err = SBX_ERROR_INIT;
        if (sscanf(line + 1, "%zu %71s", &i, want) != 2)
            fail_msg("%s.cachekeys: bad line '%.80s'", name, line + 1);
        assert_int_equal(i, lines);
        assert_int_equal(sbx_recipe_cache_key(got, r, i, resolved, &err), 0);
        if (strcmp(got, want))
            fail_msg("%s: cache key %zu is %s, golden %s", name, i, got, want);
        lines++;
    }
    assert_int_equal(lines, sbx_recipe_n_steps(r) + 1);
    free(text);
}

static void test_golden_vectors(void **state)
{
    (void)state;
    char *dir = golden_dir();
    char *cache = tu_tmpdir();
    setenv("SBX_CACHE_DIR", cache, 1);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".yaml"))
            continue;
        char *name = strndup(de->d_name, n - 5);
        char *path = sbx__strdup_printf("%s/%s", dir, de->d_name);
        sbx_error err = SBX_ERROR_INIT;
        sbx_recipe *r = NULL;
        if (sbx_recipe_parse_file(&r, path, NULL, NULL, &err) < 0)
            fail_msg("%s: %s: %s", path, err.where, err.msg);
        char *canon = NULL, digest[SBX_DIGEST_BUFSZ];
        assert_int_equal(sbx_recipe_canonical(&canon, r, &err), 0);
        assert_int_equal(sbx_recipe_digest(digest, r, &err), 0);
        char *want_canon = read_trimmed(dir, name, ".canonical");
        char *want_digest = read_trimmed(dir, name, ".digest");
        if (strcmp(canon, want_canon))
            fail_msg("%s: canonical form differs\n got: %s\nwant: %s", name, canon, want_canon);
        if (strcmp(digest, want_digest))
            fail_msg("%s: digest %s, golden %s", name, digest, want_digest);
        /* The digest is the sha256 of exactly the canonical bytes. */
        char check[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(want_canon, strlen(want_canon), check);
        assert_string_equal(check, want_digest);
        check_cache_keys(dir, name, r);
        free(want_canon);
        free(want_digest);
        free(canon);
        free(path);
        free(name);
        sbx_recipe_unref(r);
        checked++;
    }
    closedir(d);
    assert_true(checked >= 5);
    tu_tmpdir_free(cache);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
