/* sbx-image fsck: verify every stored file and repair the records. */
#include <jansson.h>

#include "cli.h"
#include "sbx/rootfs.h"

static const char USAGE[] =
    "usage: sbx-image fsck [--json] [--store DIR]\n"
    "\n"
    "Re-hash every blob and layer in the store (layers are decompressed and their\n"
    "diff_id and compressed digest checked).  Corrupt files are moved to\n"
    "<store>/quarantine and their records removed; records whose file is missing\n"
    "are removed; files without records are recorded when they verify; names\n"
    "whose manifest is gone are removed; dead mounts (their maker died, their host\n"
    "rebooted, or their overlay is mounted nowhere) are removed and counted, not\n"
    "failed.  Then every unpacked layer dir (the cache unpack, mount and builds\n"
    "share) is compared with a fresh extraction of its verified layer: one that\n"
    "differs (a --link tree written to shares its files) is removed from the\n"
    "cache and unpacked again when next used; one a mount holds is kept and\n"
    "reported.  Prints the counts; each problem is\n"
    "logged on stderr, and so is progress (bytes re-hashed of blobs, then of\n"
    "layers: redrawn in place on a terminal, a line per phase otherwise).\n"
    "Exit status 1 when anything was wrong, 0 when clean.\n"
    "\n"
    "options:\n"
    "  --json        print {blobs_checked, layers_checked, corrupt,\n"
    "                dangling_repaired, orphans, dead_mounts, unpacked_checked,\n"
    "                unpacked_corrupt, unpacked_kept, clean}\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image fsck\n"
    "  sbx-image fsck --json\n";

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
    sbx_unpacked_check u = {0};
    sbx_error uerr = SBX_ERROR_INIT;
    int urc = rc < 0 && rc != SBX_ECORRUPT ? 0 : sbx_rootfs_check_unpacked(&u, s, cli->ctx, &uerr);
    sbx_store_free(s);
    cli_progress_done();
    if (rc < 0 && rc != SBX_ECORRUPT)
        return cli_fail(&err);
    if (urc < 0 && urc != SBX_ECORRUPT)
        return cli_fail(&uerr);
    if (rc == 0 && urc < 0) {
        rc = urc;
        err = uerr;
    }
    if (cli->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
                              "blobs_checked", (json_int_t)r.blobs_checked, "layers_checked",
                              (json_int_t)r.layers_checked, "corrupt", (json_int_t)r.corrupt,
                              "dangling_repaired", (json_int_t)r.dangling_repaired, "orphans",
                              (json_int_t)r.orphans, "dead_mounts", (json_int_t)r.dead_mounts,
                              "unpacked_checked", (json_int_t)u.checked, "unpacked_corrupt",
                              (json_int_t)u.corrupt, "unpacked_kept", (json_int_t)u.busy,
                              "clean", rc == 0);
        if (cli_print_json(stdout, j) != CLI_EXIT_OK)
            return CLI_EXIT_FAIL;
    } else {
        printf("checked %llu blobs, %llu layers: %llu corrupt (quarantined), %llu dangling "
               "records repaired, %llu files without records, %llu dead mounts removed\n",
               (unsigned long long)r.blobs_checked, (unsigned long long)r.layers_checked,
               (unsigned long long)r.corrupt, (unsigned long long)r.dangling_repaired,
               (unsigned long long)r.orphans, (unsigned long long)r.dead_mounts);
        printf("checked %llu unpacked layers: %llu differ from their layers (%llu removed, "
               "%llu kept while mounted)\n",
               (unsigned long long)u.checked, (unsigned long long)u.corrupt,
               (unsigned long long)u.discarded, (unsigned long long)u.busy);
    }
    fflush(stdout);
    return rc < 0 ? cli_fail(&err) : CLI_EXIT_OK;
}
