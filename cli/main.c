#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sbx/rootfs.h"

#ifndef SBX_VERSION
#define SBX_VERSION "0.1.0"
#endif

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} commands[] = {
#define X(n, s) {#n, cmd_##n, s},
    CLI_COMMANDS(X)
#undef X
};

/* A verb as typed: the C name with '-' for '_' (build_log -> build-log). */
static const char *verb_name(char *buf, size_t len, const char *c_name)
{
    snprintf(buf, len, "%s", c_name);
    for (char *p = buf; *p; p++)
        if (*p == '_')
            *p = '-';
    return buf;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx-image [--store DIR] [--json] [-v] COMMAND [ARGS]\n\n"
               "Build, pull and keep OCI images for sandboxes.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char name[32];
        fprintf(f, "  %-12s %s\n", verb_name(name, sizeof name, commands[i].name),
                commands[i].summary);
    }
    fprintf(f, "\nglobal options (also accepted after the command):\n"
               "  --store DIR   store root (default: $SBX_STORE, /var/lib/sbx-image as root,\n"
               "                else $XDG_DATA_HOME/sbx-image)\n"
               "  --json        machine-readable results on stdout; progress, logs and\n"
               "                errors as JSON lines on stderr ({\"event\": \"error\", ...})\n"
               "  -v, --verbose debug messages on stderr\n"
               "  -q, --quiet   no progress, step output or notes on stderr: results,\n"
               "                warnings and errors only (images -q: the digests)\n"
               "  --version     print the version\n\n"
               "examples:\n"
               "  sbx-image pull node:22 && sbx-image unpack node:22 /tmp/node-root\n"
               "  sbx-image build recipe.yaml -t myapp:1\n"
               "  sbx-image push myapp:1 registry.example/team/myapp:1\n"
               "  sbx-image help build\n\n"
               "Run 'sbx-image COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    /* the layer extractor, exec'd by unpacks rather than forked (rootfs.h) */
    if (argc >= 2 && !strcmp(argv[1], "__extract"))
        return sbx_rootfs_extractor_main(argc - 1, argv + 1);
    sbx_rootfs_set_extractor("/proc/self/exe");
    sbx_cli cli = {.tty = cli_draws_in_place()};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            printf("sbx-image %s\n", SBX_VERSION);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            cli.json = 1;
            cli_set_json_errors(1);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            cli.verbose = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            cli.quiet = 1;
        } else if (!strcmp(a, "--store") && i + 1 < argc) {
            cli.store_root = argv[++i];
            if (!*cli.store_root)
                return cli_store_empty();
        } else if (!strncmp(a, "--store=", 8)) {
            cli.store_root = a + 8;
            if (!*cli.store_root)
                return cli_store_empty();
        } else {
            fprintf(stderr, "sbx-image: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    /* help [COMMAND]: the list, or that command's --help */
    char *help_argv[] = {NULL, "--help", NULL};
    if (!strcmp(argv[i], "help")) {
        if (i + 1 >= argc) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        help_argv[0] = argv[i + 1];
        argv = help_argv;
        argc = 2;
        i = 0;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        char name[32];
        if (strcmp(argv[i], verb_name(name, sizeof name, commands[c].name)) == 0) {
            sbx_error err = SBX_ERROR_INIT;
            if (sbx_ctx_new(&cli.ctx, &err) < 0)
                return cli_fail(&err);
            cli_install_sinks(&cli);
            cli_catch_signals(cli.ctx);
            optind = 1;
            int rc = commands[c].fn(&cli, argc - i, argv + i);
            cli_catch_signals(NULL);
            sbx_ctx_free(cli.ctx);
            cli_exit_like_signal(rc);
            return rc;
        }
    }
    fprintf(stderr, "sbx-image: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
