/* sbx-image load SOURCE: an image another tool made into the store. */
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/rootfs.h"

static void usage(FILE *f)
{
    fputs("usage: sbx-image load [--tag NAME] [--platform P] [--json] SOURCE\n"
          "\n"
          "Bring an image into the store from SOURCE: an OCI image layout directory\n"
          "(skopeo copy oci:DIR, umoci, buildah), an OCI archive (a tar of one), or a\n"
          "docker-archive tar (docker save, podman save, skopeo copy docker-archive:).\n"
          "Every blob is checked against its digest and size, and every layer against\n"
          "the config's diff_id, before anything is stored: a bad source is an error and\n"
          "the store gets nothing.  An OCI layout's manifest is kept as it is (its\n"
          "digest too); a docker archive has none and gets an OCI manifest.\n"
          "\n"
          "options:\n"
          "  --tag NAME         name it (default: the source's own name: the layout's\n"
          "                     org.opencontainers.image.ref.name, the archive's first\n"
          "                     RepoTags; without either, --tag is needed)\n"
          "  --platform OS/ARCH[/VARIANT]  the entry to load when SOURCE holds an index\n"
          "  --json             print {name, digest, layers, recompressed}\n"
          "  --store DIR        store to load into\n"
          "  -v, --verbose      debug messages on stderr\n"
          "\n"
          "output: the manifest digest on stdout.\n"
          "\n"
          "examples:\n"
          "  sbx-image load --tag myapp:1 ./myapp.tar\n"
          "  skopeo copy docker://busybox oci:bb && sbx-image load bb\n",
          f);
}

int cmd_load(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tag", required_argument, NULL, 't'},
        {"platform", required_argument, NULL, 'p'},
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_load_options o = SBX_LOAD_OPTIONS_INIT;
    for (int c; (c = cli_next_opt(cli, argc, argv, longopts)) != -1;) {
        if (c == CLI_OPT_HELP) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (c == 't' && *optarg)
            o.tag = optarg;
        else if (c == 'p')
            o.platform = optarg;
        else
            return cli_usage_error("load", c == 't' ? "--tag needs a name"
                                                    : "unknown option '%s'", argv[optind - 1]);
    }
    if (optind + 1 != argc || !*argv[optind])
        return cli_usage_error("load", "expected one SOURCE");
    sbx_store *s = NULL;
    if (cli_open_store_create(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_load_result r;
    int rc = sbx_rootfs_load(&r, s, argv[optind], &o, cli->ctx, &err);
    sbx_store_free(s);
    cli_progress_done();
    if (rc < 0)
        return cli_fail(&err);
    if (cli->json)
        return cli_print_json(stdout, json_pack("{s:s, s:s, s:I, s:b}", "name", r.name, "digest",
                                                r.digest, "layers", (json_int_t)r.layers,
                                                "recompressed", r.recompressed));
    fprintf(stderr, "loaded %s\n", r.name);
    printf("%s\n", r.digest);
    return CLI_EXIT_OK;
}
