/* sbx-image rm: remove names.  What they pointed to stays until gc. */
#include <jansson.h>

#include "cli.h"
#include "sbx/image.h"

static const char USAGE[] =
    "usage: sbx-image rm [--json] [--store DIR] NAME...\n"
    "\n"
    "Remove names (image refs, recipe digests) from the store and print each\n"
    "removed name.  The blobs and layers they reached stay until 'sbx-image gc'\n"
    "deletes what nothing else uses.  An unknown name is an error; the other\n"
    "names are still removed and the exit status is 1.\n"
    "\n"
    "options:\n"
    "  --json        print {\"removed\": [names], \"failed\": [names]}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image rm myapp:1\n"
    "  sbx-image rm 3f9a1c2b7d04\n";

int cmd_rm(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error("rm", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("rm", "expected at least one NAME");
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    json_t *removed = json_array(), *failed = json_array();
    int rc = CLI_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        sbx_error err = SBX_ERROR_INIT;
        /* the name the words find (sbx_image_lookup): "busybox" removes
         * docker.io/library/busybox:latest */
        char digest[SBX_DIGEST_BUFSZ], name[1024] = "";
        sbx_error le = SBX_ERROR_INIT;
        if (sbx_image_lookup(digest, name, sizeof name, s, argv[i], &le) == 0 && !name[0]) {
            sbx_error_set(&err, SBX_EINVAL, "'%s' is a digest: rm removes names (list them "
                          "with sbx-image images)", argv[i]);
            rc = cli_fail(&err);
            json_array_append_new(failed, json_string(argv[i]));
            continue;
        }
        if (sbx_store_name_remove(s, name[0] ? name : argv[i], &err) < 0) {
            rc = cli_fail(&err);
            json_array_append_new(failed, json_string(argv[i]));
            continue;
        }
        const char *gone = name[0] ? name : argv[i];
        json_array_append_new(removed, json_string(gone));
        if (!cli->json)
            printf("%s\n", gone);
    }
    if (cli->json) {
        if (cli_print_json(stdout, json_pack("{s:O, s:O}", "removed", removed, "failed",
                                             failed)) != CLI_EXIT_OK)
            rc = CLI_EXIT_FAIL;
    }
    json_decref(removed);
    json_decref(failed);
    sbx_store_free(s);
    return rc;
}
