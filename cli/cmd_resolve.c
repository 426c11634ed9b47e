/* sbx-image resolve REF: the manifest digest a ref points to, for a platform. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/context.h"
#include "sbx/registry.h"

/* --creds USER:PASSWORD into opts, for every verb that takes it.  The
 * values are copied (they live as long as the process) and the password
 * in argv is overwritten, so /proc/PID/cmdline and ps show "***" from now
 * on; it was visible until here, which is why --password-stdin exists. */
static bool g_password_stdin;
/* The copies --creds makes: one process, one caller, kept until exit. */
static char *g_user, *g_pass;

int cli_registry_creds(sbx_registry_options *opts, char *arg, const char *verb)
{
    char *colon = strchr(arg, ':');
    if (!colon && *arg) { /* USER alone: the password comes with --password-stdin */
        free(g_user);
        if (!(g_user = strdup(arg)))
            return cli_usage_error(verb, "out of memory");
        opts->username = g_user;
        return 0;
    }
    if (!colon || colon == arg)
        return cli_usage_error(verb, "--creds wants USER:PASSWORD (or USER with --password-stdin)");
    char *user = strndup(arg, (size_t)(colon - arg)), *pass = strdup(colon + 1);
    if (!user || !pass) {
        free(user);
        free(pass);
        return cli_usage_error(verb, "out of memory");
    }
    size_t n = strlen(colon + 1);
    memset(colon + 1, '*', n < 3 ? n : 3);
    if (n > 3)
        memset(colon + 4, '\0', n - 3);
    free(g_user);
    free(g_pass);
    opts->username = g_user = user;
    opts->password = g_pass = pass;
    return 0;
}

int cli_registry_opt(sbx_registry_options *opts, int c, char *arg, const char *verb)
{
    switch (c) {
    case 'p': opts->platform = arg; return 1;
    case 'c': return cli_registry_creds(opts, arg, verb) ? -1 : 1;
    case CLI_OPT_PASSWORD_STDIN: g_password_stdin = true; return 1;
    case CLI_OPT_AUTHFILE:
        if (!*arg) {
            cli_usage_error(verb, "--authfile needs a file");
            return -1;
        }
        opts->authfile = arg;
        return 1;
    default: return 0;
    }
}

int cli_registry_finish(sbx_registry_options *opts, const char *verb)
{
    if (!g_password_stdin) {
        if (opts->username && !opts->password)
            return cli_usage_error(verb, "--creds %s has no password: give USER:PASSWORD, or "
                                   "USER and --password-stdin", opts->username);
        return 0;
    }
    if (!opts->username || opts->password)
        return cli_usage_error(verb, "--password-stdin goes with --creds USER (no password)");
    /* the password is the first line of stdin, as docker login takes it */
    static char buf[4096];
    size_t n = 0;
    int ch;
    while (n + 1 < sizeof buf && (ch = getchar()) != EOF && ch != '\n')
        buf[n++] = (char)ch;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (n == 0)
        return cli_usage_error(verb, "--password-stdin: stdin gave no password");
    opts->password = buf;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-image resolve [OPTIONS] REF\n\n"
            "Print the digest of the image manifest REF points to for a platform (an index is\n"
            "followed to the platform's entry).  Asks the registry with HEAD where it can.\n"
            "Answers for tags are cached in the store for $SBX_RESOLVE_TTL seconds (default\n"
            "60); answers for digest refs forever.\n\n"
            "options:\n"
            "  --platform OS/ARCH[/VARIANT]  platform to resolve for (default: this host's)\n"
            "  --creds USER:PASSWORD         credentials for the ref's registry (default: the\n"
            "                                Docker config, $DOCKER_CONFIG/config.json)\n"
            "  --password-stdin              with --creds USER: the password is stdin's\n"
            "                                first line (kept out of the process list)\n"
            "  --authfile FILE               credentials from this auth file only\n"
            "  --no-cache                    ask the registry even if the store has an answer\n"
            "  --json                        print {\"ref\",\"digest\",\"media_type\",\"platform\",\n"
            "                                \"index_digest\",\"cached\"}\n"
            "  --store DIR                   store holding the resolve cache\n"
            "  -v, --verbose                 debug messages (requests) on stderr\n\n"
            "output: the digest (sha256:...) on stdout.  Exit 1 on error, 2 on usage errors.\n"
            "\n"
            "examples:\n"
            "  sbx-image resolve node:22\n"
            "  sbx-image resolve --json --platform linux/arm64 registry.example/team/app:1\n");
}

int cmd_resolve(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"platform", required_argument, NULL, 'p'},
        {"creds", required_argument, NULL, 'c'},
        CLI_CREDS_MORE_OPTS,
        {"no-cache", no_argument, NULL, 'n'},
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    int c;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        int ro = cli_registry_opt(&opts, c, optarg, "resolve");
        if (ro < 0)
            return CLI_EXIT_USAGE;
        if (ro)
            continue;
        switch (c) {
        case 'n': opts.resolve_ttl = 0; break;
        default: return cli_usage_error("resolve", "unknown option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("resolve", "expected exactly one REF");
    if (cli_registry_finish(&opts, "resolve"))
        return CLI_EXIT_USAGE;
    const char *ref = argv[optind];
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *store = NULL;
    /* resolve writes its answer to the store's cache: it may make one */
    if (sbx_store_open(&store, cli->store_root, &err) < 0) {
        /* the cache is an optimisation: resolve works without a store */
        cli_debug(cli, "resolving without the store's cache: %s", err.msg);
        sbx_error_clear(&err);
        store = NULL;
    }
    opts.store = store;
    sbx_resolve_result r;
    int rc = sbx_registry_resolve_ex(&r, ref, &opts, cli->ctx, &err);
    if (store)
        sbx_store_free(store);
    if (rc < 0)
        return cli_fail(&err);
    if (cli->json) {
        char plat[100];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "ref", r.ref, "digest", r.digest,
                              "media_type", r.media_type, "platform",
                              sbx_platform_format(&r.platform, plat, sizeof plat), "index_digest",
                              r.index_digest, "cached", r.cached);
        return cli_print_json(stdout, o);
    } else {
        printf("%s\n", r.digest);
    }
    return CLI_EXIT_OK;
}
