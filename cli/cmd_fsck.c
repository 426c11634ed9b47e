/* sbx-image fsck: verify every stored file and repair the records. */
#include <jansson.h>

#include "cli.h"

static const char USAGE[] =
    "usage: sbx-image fsck [--json] [--store DIR]\n"
    "\n"
    "Re-hash every blob and layer in the store (layers are decompressed and their\n"
    "diff_id and compressed digest checked).  Corrupt files are moved to\n"
    "<store>/quarantine and their records removed; records whose file is missing\n"
    "are removed; files without records are recorded when they verify; names\n"
    "whose manifest is gone are removed; dead mounts (their maker died, their host\n"
    "rebooted, or their overlay is mounted nowhere) are removed and counted, not\n"
    "failed.  Prints the counts; each problem is\n"
    "logged on stderr, and so is progress (bytes re-hashed of blobs, then of\n"
    "layers: redrawn in place on a terminal, a line per phase otherwise).\n"
    "Exit status 1 when anything was wrong, 0 when clean.\n"
    "\n"
    "options:\n"
    "  --json        print {blobs_checked, layers_checked, corrupt,\n"
    "                dangling_repaired, orphans, dead_mounts, clean}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n";

int cmd_fsck(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error("fsck", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("fsck", "unexpected argument '%s'", argv[optind]);
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_fsck_report r = {0};
    int rc = sbx_store_fsck(s, &r, cli->ctx, &err);
    sbx_store_free(s);
    cli_progress_done();
    if (rc < 0 && rc != SBX_ECORRUPT)
        return cli_fail(&err);
    if (cli->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "blobs_checked",
                              (json_int_t)r.blobs_checked, "layers_checked",
                              (json_int_t)r.layers_checked, "corrupt", (json_int_t)r.corrupt,
                              "dangling_repaired", (json_int_t)r.dangling_repaired, "orphans",
                              (json_int_t)r.orphans, "dead_mounts", (json_int_t)r.dead_mounts,
                              "clean", rc == 0);
        if (cli_print_json(stdout, j) != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
    } else {
        printf("checked %llu blobs, %llu layers: %llu corrupt (quarantined), %llu dangling "
               "records repaired, %llu files without records, %llu dead mounts removed\n",
               (unsigned long long)r.blobs_checked, (unsigned long long)r.layers_checked,
               (unsigned long long)r.corrupt, (unsigned long long)r.dangling_repaired,
               (unsigned long long)r.orphans, (unsigned long long)r.dead_mounts);
    }
    fflush(stdout);
    return rc < 0 ? cli_fail(&err) : CLI_EXIT_OK;
}
