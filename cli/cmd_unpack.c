/* sbx-image unpack IMAGE DIR: materialize an image's root filesystem. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/context.h"
#include "sbx/registry.h"
#include "sbx/rootfs.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-image unpack [OPTIONS] IMAGE DIR\n\n"
            "Materialize the root filesystem of an image in the store into DIR, for a\n"
            "sandbox.  IMAGE is a store name (a build --tag), a ref as pulled (node:22), a\n"
            "pinned ref or a manifest digest; it is looked up in the store only, never in a\n"
            "registry, unless --pull (else run `sbx-image pull REF` first).  DIR must not\n"
            "exist or be empty.\n\n"
            "Each layer is unpacked once into the store's cache; the layers are then merged\n"
            "top to bottom (whiteouts and opaque directories applied, as overlayfs does) into\n"
            "a temp dir beside DIR, which is synced and renamed to DIR: DIR appears complete\n"
            "or not at all.  Owners, modes, xattrs, times, symlinks and device nodes are kept.\n"
            "The image is leased in the store while it is read, so gc cannot remove it.\n\n"
            "options:\n"
            "  --link             place files as hardlinks to the store's cached layer files\n"
            "                     instead of copies (fastest, no extra disk).  The tree then\n"
            "                     shares inodes with the cache and with every other --link\n"
            "                     tree: treat it as READ-ONLY (mount it read-only or use it as\n"
            "                     an overlay lower dir); writing to a file there changes the\n"
            "                     cache for every later unpack.  Falls back to copies across\n"
            "                     filesystems (EXDEV) or at the link limit (EMLINK).\n"
            "                     Default: copies (reflink or copy_file_range where the\n"
            "                     filesystem allows), safe to modify.\n"
            "  --config FILE      also write the image's OCI config JSON to FILE (exact bytes)\n"
            "  --platform OS/ARCH[/VARIANT]  the entry to use when IMAGE names an index\n"
            "                     (default: this host's)\n"
            "  --no-sync          skip syncing DIR before it is renamed into place\n"
            "  --pull             IMAGE not in the store: pull it (a ref), each layer\n"
            "                     unpacked while it downloads (pull --unpack), then unpack\n"
            "  --creds USER:PASSWORD  credentials for a private image's registry: an image\n"
            "                     pulled with credentials is used only after that registry\n"
            "                     accepts these (default: the Docker config)\n"
            CLI_CREDS_MORE_HELP
            "  --json             print {\"image\",\"digest\",\"dir\",\"layers\",\"files\",\"bytes\",\n"
            "                     \"dirs\",\"linked\",\"copied\"}\n"
            "  --store DIR        store to read the image from\n"
            "  -v, --verbose      debug messages on stderr\n\n"
            "output: DIR on stdout (or --json: files counts non-directory entries, bytes the\n"
            "regular files' sizes); progress on stderr, one line per layer.  Exit 1 on error\n"
            "(nothing is left at DIR), 2 on usage errors, 128+N when stopped by signal N\n"
            "(SIGINT, SIGTERM, SIGHUP: what was made is removed first).\n"
            "\n"
            "examples:\n"
            "  sbx-image unpack node:22 /tmp/node-root\n"
            "  sbx-image unpack --platform linux/arm64 registry.example/team/app:1 ./rootfs\n");
}

static int print_json(const char *image, const char *dir, const sbx_rootfs_result *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "image", image,
                          "digest", r->digest, "dir", dir, "layers", (json_int_t)r->layers,
                          "files", (json_int_t)r->stats.files, "bytes",
                          (json_int_t)r->stats.bytes, "dirs", (json_int_t)r->stats.dirs,
                          "linked", (json_int_t)r->stats.linked, "copied",
                          (json_int_t)r->stats.copied);
    return cli_print_json(stdout, o);
}

int cmd_unpack(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"link", no_argument, NULL, 'l'},
        {"config", required_argument, NULL, 'c'},
        {"platform", required_argument, NULL, 'p'},
        {"no-sync", no_argument, NULL, 'n'},
        {"pull", no_argument, NULL, 'P'},
        {"creds", required_argument, NULL, CLI_OPT_CREDS},
        CLI_CREDS_MORE_OPTS,
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_rootfs_options opts = SBX_ROOTFS_OPTIONS_INIT;
    sbx_registry_options ropts = SBX_REGISTRY_OPTIONS_INIT;
    bool pull = false;
    int c;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        switch (c) {
        case 'l': opts.link = true; break;
        case 'c':
            if (!*optarg)
                return cli_usage_error("unpack", "--config needs a file name");
            opts.config_path = optarg;
            break;
        case 'p': opts.platform = optarg; break;
        case 'n': opts.no_sync = true; break;
        case 'P': pull = true; break;
        case CLI_OPT_CREDS:
            if (cli_registry_creds(&ropts, optarg, "unpack"))
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_PASSWORD_STDIN:
        case CLI_OPT_AUTHFILE:
            if (cli_registry_opt(&ropts, c, optarg, "unpack") < 0)
                return CLI_EXIT_USAGE;
            break;
        default: return cli_usage_error("unpack", "unknown option");
        }
    }
    if (optind + 2 != argc)
        return cli_usage_error("unpack", "expected IMAGE and DIR");
    const char *image = argv[optind], *dir = argv[optind + 1];
    if (!*image || !*dir)
        return cli_usage_error("unpack", "IMAGE and DIR must not be empty");
    if (cli_registry_finish(&ropts, "unpack"))
        return CLI_EXIT_USAGE;
    if (cli_need_root("unpack", "it keeps the image's owners and device nodes") != 0)
        return CLI_EXIT_FAIL;
    sbx_store *store = NULL;
    if ((pull ? cli_open_store_create(cli, &store) : cli_open_store(cli, &store)) != 0)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_rootfs_result res;
    sbx_registry_gate(store, &ropts);
    int rc = sbx_rootfs_unpack(&res, store, image, dir, &opts, cli->ctx, &err);
    if (rc == SBX_ENOTFOUND && pull) {
        /* not stored: pulled, its layers unpacked while they download */
        sbx_error_clear(&err);
        rc = cli_pull_unpacking(cli, store, image, &ropts, opts.platform, &err);
        if (rc == 0)
            rc = sbx_rootfs_unpack(&res, store, image, dir, &opts, cli->ctx, &err);
    }
    sbx_store_free(store);
    cli_progress_done();
    if (rc < 0)
        return cli_fail(&err);
    if (cli->json)
        return print_json(image, dir, &res);
    printf("%s\n", dir);
    return CLI_EXIT_OK;
}
