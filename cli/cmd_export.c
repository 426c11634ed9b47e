/* sbx-image export IMAGE DIR: write an image as an OCI image layout. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/registry.h"
#include "sbx/rootfs.h"
#include "sbx/context.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-image export [OPTIONS] IMAGE DIR\n\n"
            "Write an image from the store as an OCI image layout directory (oci-layout,\n"
            "index.json, blobs/sha256/<hex>), for other tools: skopeo copy oci:DIR[:TAG] ...,\n"
            "umoci unpack --image DIR:TAG (zstd layers need an umoci that reads zstd).  IMAGE\n"
            "is a store name (a build --tag), a ref as pulled (node:22), a pinned ref or a\n"
            "manifest digest; it is looked up in the store only, never in a registry (run\n"
            "`sbx-image pull REF` first).\n\n"
            "DIR must not exist: export always writes a new layout and never adds to an\n"
            "existing one.  The layout is built in a temp dir beside DIR, synced and renamed\n"
            "to DIR: DIR appears complete or not at all.  The image is leased in the store\n"
            "while it is read, so gc cannot remove it.\n\n"
            "Layers are written as the store keeps them (zstd when built, gzip or zstd as\n"
            "pulled), each re-hashed while it is copied.  A built or pulled image's manifest\n"
            "references those layers, so its manifest bytes and digest are exported\n"
            "unchanged.  An image whose layers the store compressed again (pulled as plain\n"
            "tars, or as zstd without checksums) gets a new OCI manifest (same config, each\n"
            "layer as stored) whose digest differs from the stored one, said on stderr.\n\n"
            "options:\n"
            "  --tag TAG          name the manifest TAG in index.json (the annotation\n"
            "                     org.opencontainers.image.ref.name): oci:DIR:TAG\n"
            "  --platform OS/ARCH[/VARIANT]  the entry to export when IMAGE names an index\n"
            "                     (default: this host's); only that manifest is exported\n"
            "  --creds USER:PASSWORD  credentials for a private image's registry: an image\n"
            "                     pulled with credentials is used only after that registry\n"
            "                     accepts these (default: the Docker config)\n"
            CLI_CREDS_MORE_HELP
            "  --json             print {\"image\",\"digest\",\"dir\",\"blobs\",\"bytes\",\n"
            "                     \"recompressed\"}\n"
            "  --store DIR        store to read the image from\n"
            "  -v, --verbose      debug messages on stderr\n\n"
            "output: the manifest digest in the layout on stdout (or --json: blobs and bytes\n"
            "count the distinct blobs written; recompressed is true when the layers were\n"
            "re-referenced as stored and the digest changed); progress on stderr, a line per\n"
            "layer.  Exit 1 on error (nothing is left at DIR), 2 on usage errors, 128+N when\n"
            "stopped by signal N (SIGINT, SIGTERM, SIGHUP: what was made is removed first).\n"
            "\n"
            "examples:\n"
            "  sbx-image export myapp:1 ./myapp-oci && skopeo inspect oci:./myapp-oci\n");
}

static int print_json(const char *image, const char *dir, const sbx_export_result *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "image", image, "digest", r->digest,
                          "dir", dir, "blobs", (json_int_t)r->blobs, "bytes",
                          (json_int_t)r->bytes, "recompressed", r->recompressed);
    return cli_print_json(stdout, o);
}

int cmd_export(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tag", required_argument, NULL, 't'},
        {"platform", required_argument, NULL, 'p'},
        {"creds", required_argument, NULL, CLI_OPT_CREDS},
        CLI_CREDS_MORE_OPTS,
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_export_options opts = SBX_EXPORT_OPTIONS_INIT;
    sbx_registry_options ropts = SBX_REGISTRY_OPTIONS_INIT;
    int c;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        switch (c) {
        case 't':
            /* the characters of the OCI ref.name grammar */
            if (!*optarg || optarg[strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                                                  "UVWXYZ0123456789-._:@+/")])
                return cli_usage_error("export", "--tag '%s': use letters, digits and - . _ : @ "
                                       "+ /", optarg);
            opts.tag = optarg;
            break;
        case 'p': opts.platform = optarg; break;
        case CLI_OPT_CREDS:
            if (cli_registry_creds(&ropts, optarg, "export"))
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_PASSWORD_STDIN:
        case CLI_OPT_AUTHFILE:
            if (cli_registry_opt(&ropts, c, optarg, "export") < 0)
                return CLI_EXIT_USAGE;
            break;
        default: return cli_usage_error("export", "unknown option");
        }
    }
    if (optind + 2 != argc)
        return cli_usage_error("export", "expected IMAGE and DIR");
    const char *image = argv[optind], *dir = argv[optind + 1];
    if (!*image || !*dir)
        return cli_usage_error("export", "IMAGE and DIR must not be empty");
    if (cli_registry_finish(&ropts, "export"))
        return CLI_EXIT_USAGE;
    sbx_store *store = NULL;
    if (cli_open_store(cli, &store) != 0)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_export_result res;
    sbx_registry_gate(store, &ropts);
    int rc = sbx_rootfs_export(&res, store, image, dir, &opts, cli->ctx, &err);
    sbx_store_free(store);
    cli_progress_done();
    if (rc < 0)
        return cli_fail(&err);
    if (res.recompressed)
        fprintf(stderr, "layers re-referenced as stored: manifest digest changes from %s to %s\n",
                res.stored_digest, res.digest);
    if (cli->json)
        return print_json(image, dir, &res);
    printf("%s\n", res.digest);
    return CLI_EXIT_OK;
}
