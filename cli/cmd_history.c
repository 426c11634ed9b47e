/* sbx-image history IMAGE: how an image was made, one line per config
 * history entry, newest first, as docker history prints it. */
#include <jansson.h>
#include <time.h>

#include "cli.h"
#include "sbx/image.h"

static const char USAGE[] =
    "usage: sbx-image history [--platform OS/ARCH[/VARIANT]] [--json] [--store DIR] IMAGE\n"
    "\n"
    "Show how an image in the store was made: its config's history, newest first:\n"
    "CREATED (UTC), SIZE (the compressed layer the entry made, or 0 B for a change\n"
    "of the config only) and CREATED BY (the step: a recipe step's summary, a\n"
    "Dockerfile instruction).  IMAGE is found as every command finds one.\n"
    "\n"
    "options:\n"
    "  --platform P  the entry of a multi-platform image (default: this host's)\n"
    "  --json        print a JSON array, oldest first, of {created, created_by,\n"
    "                empty_layer, layer, size}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image history myapp:1\n";

int cmd_history(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"platform", required_argument, NULL, 'p'},
                                         CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
    const char *platform = NULL;
    int c;
    while ((c = cli_next_opt(cli, argc, argv, opts)) != -1) {
        if (c == CLI_OPT_HELP) {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        }
        if (c != 'p')
            return cli_usage_error("history", "unknown option '%s'", argv[optind - 1]);
        platform = optarg;
    }
    if (optind + 1 != argc)
        return cli_usage_error("history", "expected exactly one IMAGE");
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_image *img = NULL;
    if (sbx_image_open(&img, s, argv[optind], platform, &err) < 0) {
        sbx_store_free(s);
        return cli_fail(&err);
    }
    json_t *cfg = json_loadb(img->config_raw, img->config_len, 0, NULL);
    json_t *h = json_object_get(cfg, "history"), *out = json_array();
    size_t i, layer = 0;
    json_t *e;
    json_array_foreach(h, i, e) {
        bool empty = json_is_true(json_object_get(e, "empty_layer"));
        const char *by = json_string_value(json_object_get(e, "created_by"));
        const char *created = json_string_value(json_object_get(e, "created"));
        json_t *o = json_pack("{s:s, s:s, s:b}", "created", created ? created : "",
                              "created_by", by ? by : "", "empty_layer", empty);
        if (!empty && layer < img->nlayers) {
            json_object_set_new(o, "layer", json_string(img->layers[layer].digest));
            json_object_set_new(o, "size", json_integer((json_int_t)img->layers[layer].size));
            layer++;
        } else {
            json_object_set_new(o, "size", json_integer(0));
        }
        json_array_append_new(out, o);
    }
    json_decref(cfg);
    sbx_image_close(img);
    sbx_store_free(s);
    if (cli->json)
        return cli_print_json(stdout, out);
    printf("%-20s  %10s  %s\n", "CREATED", "SIZE", "CREATED BY");
    for (size_t k = json_array_size(out); k-- > 0;) {
        json_t *o = json_array_get(out, k);
        char created[21], size[32];
        snprintf(created, sizeof created, "%s", json_string_value(json_object_get(o, "created")));
        printf("%-20s  %10s  %s\n", created,
               cli_human_bytes((unsigned long long)json_integer_value(json_object_get(o, "size")),
                               size, sizeof size),
               json_string_value(json_object_get(o, "created_by")));
    }
    json_decref(out);
    return CLI_EXIT_OK;
}
