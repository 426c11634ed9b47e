/* sbx-image digest RECIPE [--context DIR]: the recipe's sha256 digest. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_recipe.h"
#include "sbx/recipe.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx-image digest RECIPE.yaml [--context DIR] [--json]\n\n"
               "Print the recipe's digest (sha256 of its canonical form, see\n"
               "docs/recipe-digest.md): the same for every formatting of the same recipe,\n"
               "different when anything that changes the image changes, including the\n"
               "content of what copy steps take from the build context.\n\n"
               "options:\n"
               "  --context DIR  build context for copy sources (default: the directory\n"
               "                 holding RECIPE.yaml; the current one when RECIPE.yaml\n"
               "                 is '-', standard input)\n"
               "  --json         print {\"digest\": ..., \"recipe\": ..., \"context\": ...}\n"
               "  -v, --verbose  debug messages on stderr\n"
               "  -h, --help     this help\n\n"
               "Prints one line, the digest (\"sha256:<64 hex>\"), on stdout.  Needs no store\n"
               "and no network.  Exit status 1 with a file:line:col error for a bad recipe.\n"
               "\n"
               "examples:\n"
               "  sbx-image digest recipe.yaml\n"
               "  cat recipe.yaml | sbx-image digest -\n");
}

int cmd_digest(sbx_cli *cli, int argc, char **argv)
{
    const char *recipe = NULL, *context = NULL;
    int rc = cli_recipe_args(cli, "digest", argc, argv, usage, &recipe, &context);
    if (rc >= 0)
        return rc;
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    char digest[SBX_DIGEST_BUFSZ];
    if (sbx_recipe_parse_file(&r, recipe, context, cli->ctx, &err) < 0 ||
        sbx_recipe_digest(digest, r, &err) < 0) {
        sbx_recipe_unref(r);
        return cli_fail(&err);
    }
    cli_progress_done();
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "digest", digest, "recipe", recipe, "context",
                              sbx_recipe_context_dir(r));
        rc = cli_print_json(stdout, o);
        sbx_recipe_unref(r);
        return rc;
    }
    printf("%s\n", digest);
    sbx_recipe_unref(r);
    return CLI_EXIT_OK;
}
