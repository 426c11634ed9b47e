/* sbx-image df: bytes stored against bytes the named images take. */
#include <jansson.h>

#include "cli.h"

static const char USAGE[] =
    "usage: sbx-image df [--json] [--store DIR]\n"
    "\n"
    "Show the bytes the store keeps on disk (blobs plus zstd-compressed layers,\n"
    "each stored once) against the bytes the named images would take uncompressed\n"
    "and undeduplicated (for every named image: its manifests, configs and the\n"
    "uncompressed size of its layers, counted again for each image; an image\n"
    "with several names counts once, builder step caches not at all).  SAVED is\n"
    "1 - STORED/IMAGES, 'none' when the store keeps as much or more (content no\n"
    "name reaches until gc, or layers too small to compress).  Sizes are SI (kB,\n"
    "MB, GB: powers of 1000), as everywhere the tool prints them.\n"
    "\n"
    "The unpacked layer cache (layers unpacked for builds and unpack, under\n"
    "<store>/unpacked) is shown apart, as the disk blocks it takes with each file\n"
    "counted once (as du -s counts them; trees of unpack --link share files with\n"
    "it); it is not part of STORED.  sbx-image gc --unpacked removes what no running\n"
    "build or unpack holds.\n"
    "\n"
    "options:\n"
    "  --json        print {stored_bytes, logical_bytes, blobs, layers, names,\n"
    "                unpacked_bytes}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image df\n"
    "  sbx-image df --json\n";

int cmd_df(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error("df", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("df", "unexpected argument '%s'", argv[optind]);
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_df_report r = {0};
    int rc = sbx_store_df(s, &r, &err);
    sbx_store_free(s);
    if (rc < 0)
        return cli_fail(&err);
    if (cli->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "stored_bytes",
                              (json_int_t)r.stored_bytes, "logical_bytes",
                              (json_int_t)r.logical_bytes, "blobs", (json_int_t)r.blobs,
                              "layers", (json_int_t)r.layers, "names", (json_int_t)r.names,
                              "unpacked_bytes", (json_int_t)r.unpacked_bytes);
        return cli_print_json(stdout, j);
    } else {
        char st[32], lg[32], up[32], saved[16] = "-";
        /* stored more than the images take (content no name reaches, tiny
         * layers compressing to more than their tars): nothing saved */
        if (r.logical_bytes && r.stored_bytes >= r.logical_bytes)
            snprintf(saved, sizeof saved, "none");
        else if (r.logical_bytes)
            snprintf(saved, sizeof saved, "%.0f%%",
                     100.0 * (1.0 - (double)r.stored_bytes / (double)r.logical_bytes));
        printf("%-10s %-10s %-7s %-7s %-7s %s\n", "STORED", "IMAGES", "SAVED", "BLOBS", "LAYERS",
               "NAMES");
        printf("%-10s %-10s %-7s %-7llu %-7llu %llu\n",
               cli_human_bytes(r.stored_bytes, st, sizeof st),
               cli_human_bytes(r.logical_bytes, lg, sizeof lg), saved,
               (unsigned long long)r.blobs, (unsigned long long)r.layers,
               (unsigned long long)r.names);
        printf("unpacked layer cache: %s (not in STORED; sbx-image gc --unpacked removes "
               "what no build or unpack holds)\n",
               cli_human_bytes(r.unpacked_bytes, up, sizeof up));
    }
    return CLI_EXIT_OK;
}
