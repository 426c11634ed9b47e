/* sbx-image recipe show RECIPE [--context DIR]: the canonical form. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_recipe.h"
#include "sbx/recipe.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx-image recipe show RECIPE.yaml [--context DIR] [--json]\n\n"
               "Print the recipe's canonical form: compact JSON with sorted keys, every\n"
               "default filled in, copy sources replaced by their content hash\n"
               "(docs/recipe-digest.md).  Its sha256 is what 'sbx-image digest' prints.\n\n"
               "options:\n"
               "  --context DIR  build context for copy sources (default: the directory\n"
               "                 holding RECIPE.yaml; the current one when RECIPE.yaml\n"
               "                 is '-', standard input)\n"
               "  --json         print {\"digest\": ..., \"canonical\": \"<the exact bytes>\",\n"
               "                 \"steps\": [{\"where\": \"file:line:col\", \"canonical\": ...}]}\n"
               "  -v, --verbose  debug messages on stderr\n"
               "  -h, --help     this help\n\n"
               "Prints the canonical form and a newline on stdout.\n"
               "\n"
               "examples:\n"
               "  sbx-image recipe show recipe.yaml | jq .steps\n");
}

int cli_recipe_args(sbx_cli *cli, const char *verb, int argc, char **argv, void (*usage_fn)(FILE *),
                    const char **recipe, const char **context)
{
    static const struct option opts[] = {{"context", required_argument, NULL, 'C'},
                                         CLI_COMMON_OPTS,
                                         {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "C:" CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'C') {
            *context = optarg;
        } else if (c == 'h') {
            usage_fn(stdout);
            return CLI_EXIT_OK;
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error(verb, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error(verb, optind >= argc ? "expected a recipe file"
                                                    : "expected one recipe file, got more");
    *recipe = argv[optind];
    return -1;
}

static int show(sbx_cli *cli, int argc, char **argv)
{
    const char *recipe = NULL, *context = NULL;
    int rc = cli_recipe_args(cli, "recipe show", argc, argv, usage, &recipe, &context);
    if (rc >= 0)
        return rc;
    sbx_error err = SBX_ERROR_INIT;
    sbx_recipe *r = NULL;
    char *canon = NULL;
    char digest[SBX_DIGEST_BUFSZ];
    if (sbx_recipe_parse_file(&r, recipe, context, cli->ctx, &err) < 0 ||
        sbx_recipe_canonical(&canon, r, &err) < 0 || sbx_recipe_digest(digest, r, &err) < 0) {
        sbx_recipe_unref(r);
        free(canon);
        return cli_fail(&err);
    }
    cli_progress_done();
    if (cli->json) {
        json_t *steps = json_array();
        for (size_t i = 0; i < sbx_recipe_n_steps(r); i++) {
            const sbx_step *s = sbx_recipe_step(r, i);
            json_array_append_new(steps, json_pack("{s:s?, s:s}", "where", s->where, "canonical",
                                                   s->canonical));
        }
        json_t *o = json_pack("{s:s, s:s, s:o}", "digest", digest, "canonical", canon, "steps",
                              steps);
        rc = cli_print_json(stdout, o);
    } else {
        printf("%s\n", canon);
        rc = CLI_EXIT_OK;
    }
    free(canon);
    sbx_recipe_unref(r);
    return rc;
}

int cmd_recipe(sbx_cli *cli, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "show"))
        return show(cli, argc - 1, argv + 1);
    return cli_usage_error("recipe", "unknown subcommand '%s' (expected 'show')", argv[1]);
}
