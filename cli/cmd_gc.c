/* sbx-image gc: delete what no name or live lease reaches; optionally evict
 * least recently used names until the store fits a byte budget. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
    "usage: sbx-image gc [--max-bytes N] [--unpacked] [--dry-run] [--json] [--store DIR]\n"
    "\n"
    "Remove dead mounts (their maker died, their host rebooted, or their overlay is\n"
    "mounted in no mount namespace any more) and names whose expiry passed (not\n"
    "while their image is mounted), then delete every blob and layer that no name\n"
    "reaches and no running operation or live mount holds, the unpacked\n"
    "directories of the layers it deletes, and temp files of writers that died.\n"
    "Prints what was removed, the bytes freed and the bytes still stored.\n"
    "\n"
    "options:\n"
    "  --max-bytes N  also remove least recently used names until what stays takes\n"
    "                 at most N bytes (K, M, G, T: powers of 1024; KB, MB, GB, TB:\n"
    "                 of 1000).  Images a lease holds are never evicted, so the\n"
    "                 store may stay above N.\n"
    "  --unpacked     also remove the unpacked layer directories (kept for builds and\n"
    "                 unpack) that no running build or unpack holds; the layers stay,\n"
    "                 and the next build or unpack that needs one unpacks it again\n"
    "  --dry-run      report what would be removed, change nothing\n"
    "  --json         print {blobs_removed, layers_removed, names_evicted,\n"
    "                 names_expired, mounts_reaped, bytes_freed, bytes_after,\n"
    "                 unpacked_removed, unpacked_bytes_freed, dry_run}\n"
    "  --store DIR    store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                 else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose  debug messages on stderr\n"
    "  -h, --help     show this help\n"
    "\n"
    "bytes_freed and bytes_after count blobs and compressed layers (df's STORED);\n"
    "unpacked_bytes_freed counts the disk blocks of removed unpacked directories,\n"
    "leaving out files still linked elsewhere (trees of unpack --link).\n"
    "\n"
    "examples:\n"
    "  sbx-image gc\n"
    "  sbx-image gc --max-bytes 50G\n";

int cmd_gc(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"max-bytes", required_argument, NULL, 'm'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"unpacked", no_argument, NULL, 'u'}, CLI_COMMON_OPTS,
                                         {NULL, 0, NULL, 0}};
    sbx_gc_options o = SBX_GC_OPTIONS_INIT;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        } else if (c == 'm') {
            sbx_error e = SBX_ERROR_INIT;
            if (sbx_bytes_parse(optarg, &o.max_bytes, &e) < 0)
                return cli_usage_error("gc", "--max-bytes: %s", e.msg);
            if (o.max_bytes == 0)
                return cli_usage_error("gc", "--max-bytes must be more than 0");
        } else if (c == 'n') {
            o.dry_run = 1;
        } else if (c == 'u') {
            o.unpacked = 1;
        } else if (c == '?' && optopt == 'm') {
            return cli_usage_error("gc", "--max-bytes needs a value");
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error("gc", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("gc", "unexpected argument '%s'", argv[optind]);
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_gc_report r = {0};
    int rc = sbx_store_gc(s, &o, &r, cli->ctx, &err);
    sbx_store_free(s);
    if (rc < 0)
        return cli_fail(&err);
    if (cli->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
                              "blobs_removed", (json_int_t)r.blobs_removed, "layers_removed",
                              (json_int_t)r.layers_removed, "names_evicted",
                              (json_int_t)r.names_evicted, "names_expired",
                              (json_int_t)r.names_expired, "mounts_reaped",
                              (json_int_t)r.mounts_reaped, "bytes_freed",
                              (json_int_t)r.bytes_freed, "bytes_after",
                              (json_int_t)r.bytes_after, "unpacked_removed",
                              (json_int_t)r.unpacked_removed, "unpacked_bytes_freed",
                              (json_int_t)r.unpacked_bytes_freed, "dry_run", o.dry_run);
        return cli_print_json(stdout, j);
    } else {
        char freed[32], after[32], unpacked[32];
        if (r.mounts_reaped || r.names_expired)
            printf("%s %llu dead mounts, %llu expired names\n",
                   o.dry_run ? "would remove" : "removed", (unsigned long long)r.mounts_reaped, (unsigned long long)r.names_expired);
        printf("%s%llu blobs, %llu layers, %llu names evicted; %s freed, %s stored; "
               "%llu unpacked layer dirs, %s freed\n",
               o.dry_run ? "would remove " : "removed ", (unsigned long long)r.blobs_removed,
               (unsigned long long)r.layers_removed, (unsigned long long)r.names_evicted,
               cli_human_bytes(r.bytes_freed, freed, sizeof freed),
               cli_human_bytes(r.bytes_after, after, sizeof after),
               (unsigned long long)r.unpacked_removed,
               cli_human_bytes(r.unpacked_bytes_freed, unpacked, sizeof unpacked));
    }
    return CLI_EXIT_OK;
}
