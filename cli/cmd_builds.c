/* sbx-image builds / build-log / build-cancel: build records, from any
 * process (docs/builder.md, "Builds as jobs"). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/builder.h"

static const char BUILDS_USAGE[] =
    "usage: sbx-image builds [--json]\n"
    "\n"
    "List the store's build records, newest first: ID, STATE (queued: waiting for\n"
    "another build of the same recipe; running; succeeded; failed, also for a\n"
    "build whose process died; cancelled), CREATED (UTC), SECONDS, RECIPE (12 hex\n"
    "digits) and IMAGE (12 hex digits, when it succeeded).  Records are kept\n"
    "$SBX_BUILD_RECORDS_DAYS days (default 7).\n"
    "\n"
    "options:\n"
    "  --json             print the whole records: [{id, recipe_digest, state,\n"
    "                     created, started, ended, digest, error, steps: [{index,\n"
    "                     summary, state, seconds}]}]\n"
    "  --store DIR        store to use\n"
    "\n"
    "examples:\n"
    "  sbx-image builds\n"
    "  sbx-image builds --json\n";

static const char LOG_USAGE[] =
    "usage: sbx-image build-log [--follow] ID|RECIPE-DIGEST\n"
    "\n"
    "Print a build's log (every step event and every line of the steps' output) on\n"
    "stdout; a recipe digest names its newest build.  With --follow (-f), keep\n"
    "printing while the build runs, until it ends.\n"
    "\n"
    "options:\n"
    "  -f, --follow       follow a running build to its end\n"
    "  --store DIR        store to use\n"
    "\n"
    "examples:\n"
    "  sbx-image build-log --follow 3f9a1c2b7d04\n"
    "  sbx-image build-log recipe:sha256:4f1c...\n";

static const char CANCEL_USAGE[] =
    "usage: sbx-image build-cancel ID|RECIPE-DIGEST\n"
    "\n"
    "Stop a queued or running build, from any process: its running step's sandbox\n"
    "is killed, nothing half-built is kept (the steps it finished stay cached),\n"
    "and its record says cancelled; the build's own process exits with an error.\n"
    "Returns once asked (the build notices within 100 ms).  An ended build is an\n"
    "error.\n"
    "\n"
    "options:\n"
    "  --store DIR        store to use\n"
    "\n"
    "examples:\n"
    "  sbx-image build-cancel 3f9a1c2b7d04\n";

static int follow_opt(void *ud, int c, const char *arg)
{
    (void)arg;
    if (c != 'f')
        return -1;
    *(bool *)ud = true;
    return 0;
}

/* parse, then open the store: 1 with *s open, else the exit status (<= 0
 * as -status: 0 for --help). */
static int begin(sbx_cli *cli, sbx_store **s, const char *verb, const char *usage, bool *follow,
                 int argc, char **argv, int npos, const char *what)
{
    static const struct option extra[] = {{"follow", no_argument, NULL, 'f'}};
    int r = cli_parse_verb(cli, verb, usage, extra, follow ? 1 : 0, follow ? follow_opt : NULL,
                           follow, argc, argv, npos, what);
    if (r < 0)
        return r + 1; /* -(exit status) */
    /* builds lists nothing for an absent store; the others need one */
    r = npos ? cli_open_store(cli, s) : cli_open_store_or_none(cli, s);
    return r == CLI_EXIT_OK ? 1 : -CLI_EXIT_FAIL;
}

static const char *hex12(const char *digest)
{
    return strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : "-";
}

int cmd_builds(sbx_cli *cli, int argc, char **argv)
{
    sbx_store *s = NULL;
    int r = begin(cli, &s, "builds", BUILDS_USAGE, NULL, argc, argv, 0, "no arguments");
    if (r <= 0)
        return -r;
    sbx_error err = SBX_ERROR_INIT;
    sbx_build_record *v = NULL;
    size_t n = 0;
    r = s ? sbx_build_records(&v, &n, s, &err) : 0;
    sbx_store_free(s);
    if (r < 0)
        return cli_fail(&err);
    json_t *arr = cli->json ? json_array() : NULL;
    if (!arr)
        printf("%-12s  %-9s  %-19s  %7s  %-12s  %s\n", "ID", "STATE", "CREATED", "SECONDS",
               "RECIPE", "IMAGE");
    for (size_t i = 0; i < n; i++) {
        if (arr) {
            json_error_t je;
            json_array_append_new(arr, json_loads(v[i].json, 0, &je));
            continue;
        }
        char when[32];
        time_t t = (time_t)v[i].created;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        int64_t end = v[i].ended ? v[i].ended : (int64_t)time(NULL);
        printf("%-12s  %-9s  %s  %7lld  %-12.12s  %.12s\n", v[i].id, v[i].state, when,
               (long long)(end - v[i].created), hex12(v[i].recipe_digest), hex12(v[i].digest));
    }
    sbx_build_records_free(v, n);
    return arr ? cli_print_json(stdout, arr) : CLI_EXIT_OK;
}

static void write_out(void *ud, const char *buf, size_t len)
{
    (void)ud;
    fwrite(buf, 1, len, stdout);
    fflush(stdout);
}

int cmd_build_log(sbx_cli *cli, int argc, char **argv)
{
    bool follow = false;
    sbx_store *s = NULL;
    int r = begin(cli, &s, "build-log", LOG_USAGE, &follow, argc, argv, 1, "ID or RECIPE-DIGEST");
    if (r <= 0)
        return -r;
    sbx_error err = SBX_ERROR_INIT;
    r = sbx_build_log(s, argv[optind], follow, write_out, NULL, cli->ctx, &err);
    sbx_store_free(s);
    return r < 0 ? cli_fail(&err) : CLI_EXIT_OK;
}

int cmd_build_cancel(sbx_cli *cli, int argc, char **argv)
{
    sbx_store *s = NULL;
    int r = begin(cli, &s, "build-cancel", CANCEL_USAGE, NULL, argc, argv, 1,
                  "ID or RECIPE-DIGEST");
    if (r <= 0)
        return -r;
    sbx_error err = SBX_ERROR_INIT;
    r = sbx_build_cancel(s, argv[optind], &err);
    sbx_store_free(s);
    if (r < 0)
        return cli_fail(&err);
    if (cli->json)
        return cli_print_json(stdout, json_pack("{s:s, s:b}", "build", argv[optind],
                                                "cancel_requested", 1));
    return CLI_EXIT_OK;
}
