/* sbx-image images: list the names in the store. */
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char USAGE[] =
    "usage: sbx-image images [--all] [--json] [--store DIR] [PREFIX]\n"
    "\n"
    "List the named images in the store, sorted by name: NAME, DIGEST (the first\n"
    "12 hex digits of the manifest digest), CREATED (when the name was last set,\n"
    "UTC), SIZE (stored compressed bytes no other named image holds: what removing\n"
    "this one alone frees) and EXPIRES (when an unused name goes; each use, as a\n"
    "mount, unpack or build base, pushes it back).  With PREFIX, only names that\n"
    "start with it.\n"
    "\n"
    "options:\n"
    "  --all         also list the builder's step cache names (\"cache:...\")\n"
    "  -q, --quiet   print only the full manifest digests, each once\n"
    "  --json        print a JSON array of {name, digest, created, last_used,\n"
    "                expires_at, size_bytes, total_bytes} (full digests, unix\n"
    "                seconds, expires_at 0 for never; total_bytes: all stored bytes\n"
    "                the image reaches)\n"
    "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
    "                else $XDG_DATA_HOME/sbx-image)\n"
    "  -v, --verbose debug messages on stderr\n"
    "  -h, --help    show this help\n"
    "\n"
    "examples:\n"
    "  sbx-image images\n"
    "  sbx-image images -q\n";

static void fmt_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

int cmd_images(sbx_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"all", no_argument, NULL, 'a'}, CLI_COMMON_OPTS,
                                         {NULL, 0, NULL, 0}};
    int all = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return CLI_EXIT_OK;
        } else if (c == 'a') {
            all = 1;
        } else if (!cli_common_opt(cli, c, optarg)) {
            return cli_usage_error("images", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1)
        return cli_usage_error("images", "expected at most one PREFIX");
    const char *prefix = optind < argc ? argv[optind] : NULL;

    sbx_store *s = NULL;
    if (cli_open_store_or_none(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_name_entry *v = NULL;
    size_t n = 0;
    if (s && sbx_store_name_list(s, prefix, &v, &n, &err) < 0) {
        sbx_store_free(s);
        return cli_fail(&err);
    }
    json_t *arr = cli->json ? json_array() : NULL;
    /* The NAME column is as wide as the longest name shown (recipe digests are 78). */
    int width = 4;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(v[i].name);
        if ((all || strncmp(v[i].name, "cache:", 6) != 0) && len > width)
            width = len;
    }
    if (!cli->json && !cli->quiet)
        printf("%-*s  %-12s  %-19s  %10s  %s\n", width, "NAME", "DIGEST", "CREATED", "SIZE",
               "EXPIRES");
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        if (!all && strncmp(v[i].name, "cache:", 6) == 0)
            continue;
        if (cli->quiet && !arr) { /* the digests, each once */
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = (all || strncmp(v[j].name, "cache:", 6) != 0) &&
                       !strcmp(v[j].digest, v[i].digest);
            if (!seen)
                printf("%s\n", v[i].digest);
            continue;
        }
        sbx_image_usage u;
        if (sbx_store_image_usage(s, v[i].digest, v[i].name, &u, &err) < 0) {
            rc = cli_fail(&err);
            break;
        }
        if (arr) {
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name", v[i].name,
                               "digest", v[i].digest, "created", (json_int_t)v[i].created,
                               "last_used", (json_int_t)v[i].last_used, "expires_at",
                               (json_int_t)v[i].expires_at, "size_bytes",
                               (json_int_t)u.size_bytes, "total_bytes",
                               (json_int_t)u.total_bytes));
        } else {
            char when[32], exp[32] = "never", size[32];
            fmt_time(v[i].created, when, sizeof when);
            if (v[i].expires_at)
                fmt_time(v[i].expires_at, exp, sizeof exp);
            printf("%-*s  %-12.12s  %s  %10s  %s\n", width, v[i].name, v[i].digest + 7, when,
                   cli_human_bytes(u.size_bytes, size, sizeof size), exp);
        }
    }
    if (rc == CLI_EXIT_OK && arr) {
        json_t *a = arr;
        arr = NULL;
        rc = cli_print_json(stdout, a);
    }
    json_decref(arr);
    sbx_name_entries_free(v, n);
    sbx_store_free(s);
    return rc;
}
