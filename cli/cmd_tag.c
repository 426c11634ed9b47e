/* sbx-image tag SRC NEW: another name for an image in the store. */
#include <jansson.h>

#include "cli.h"
#include "sbx/image.h"

static const char USAGE[] =
    "usage: sbx-image tag [--json] [--store DIR] IMAGE NEW-NAME...\n"
    "\n"
    "Give an image in the store more names.  IMAGE is found as every command finds\n"
    "one (a name or ref, a digest, or the 12-hex digest 'images' prints); each\n"
    "NEW-NAME is a ref without a digest and is stored normalized, as pull and\n"
    "build --tag store names (app -> docker.io/library/app:latest).  A name that\n"
    "pointed elsewhere now points here.  Prints each name set.\n"
    "\n"
    "options:\n"
    "  --json        print {\"digest\": ..., \"names\": [names set]}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -q, --quiet   print nothing but errors\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image tag recipe:sha256:4f1c...  registry.example/team/app:v2\n";

int cmd_tag(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
    int c = cli_next_opt(cli, argc, argv, opts);
    if (c == CLI_OPT_HELP) {
        fputs(USAGE, stdout);
        return CLI_EXIT_OK;
    }
    if (c != -1)
        return cli_usage_error("tag", "unknown option '%s'", argv[optind - 1]);
    if (argc - optind < 2)
        return cli_usage_error("tag", "expected an IMAGE and at least one NEW-NAME");
    char names[16][sizeof ((sbx_ref *)0)->str];
    if (argc - optind - 1 > 16)
        return cli_usage_error("tag", "at most 16 names at once");
    sbx_error err = SBX_ERROR_INIT;
    int n = 0;
    for (int i = optind + 1; i < argc; i++, n++)
        if (sbx_image_tag_name(names[n], sizeof names[n], argv[i], &err) < 0)
            return cli_usage_error("tag", "%s", err.msg);
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    char digest[SBX_DIGEST_BUFSZ];
    int rc = sbx_image_lookup(digest, NULL, 0, s, argv[optind], &err);
    json_t *set = json_array();
    for (int i = 0; rc == 0 && i < n; i++) {
        if ((rc = sbx_store_name_set(s, names[i], digest, &err)) < 0)
            break;
        json_array_append_new(set, json_string(names[i]));
        if (!cli->json && !cli->quiet)
            printf("%s\n", names[i]);
    }
    sbx_store_free(s);
    if (rc < 0) {
        json_decref(set);
        return cli_fail(&err);
    }
    if (cli->json)
        return cli_print_json(stdout, json_pack("{s:s, s:o}", "digest", digest, "names", set));
    json_decref(set);
    return CLI_EXIT_OK;
}
