/* sbx-image push IMAGE [DEST]: an image from the store to a registry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/registry.h"


static void usage(FILE *f)
{
    fputs("usage: sbx-image push [--compression zstd|gzip] [--creds USER:PASSWORD]\n"
          "                      [--parallel N] [--chunk-size SIZE] [--platform P]\n"
          "                      [--json] IMAGE [DEST]\n"
          "\n"
          "Push an image from the store to a registry.  IMAGE is a store name, a ref as\n"
          "pulled, a snapshot or a manifest digest; DEST a ref (default: IMAGE's own\n"
          "name, as docker push does).  Each layer goes as the store keeps it and\n"
          "only when the repository lacks it (asked with HEAD first), uploaded or\n"
          "mounted from another repository of the registry this store pushed it to;\n"
          "so does the config, two blobs at once; the manifest last, so the tag never\n"
          "names an image whose blobs are missing.  A blob larger than the chunk size\n"
          "goes in chunks; after a failure the upload goes on from where the registry\n"
          "says it stands (or from the start when it dropped the upload).  Layers are\n"
          "stored as zstd when built, as the registry sent them (gzip or zstd) when\n"
          "pulled, so a built or pulled image keeps its manifest digest; one whose\n"
          "layers the store compressed again (plain tars, zstd without checksums) gets\n"
          "a new manifest over the stored layers (said on stderr).\n"
          "\n"
          "options:\n"
          "  --compression zstd|gzip  zstd (the default): layers as stored; gzip: every\n"
          "                     layer gzip, for clients that cannot read zstd (one stored\n"
          "                     as gzip goes as it is, the others gzipped\n"
          "                     deterministically: level 6, no name or time, so the same\n"
          "                     image always gets the same digests); the manifest is a new\n"
          "                     OCI one over them, unless every layer is stored as gzip\n"
          "                     (then the image goes as stored)\n"
          "  --creds USER:PASSWORD  credentials for DEST's registry (default: the Docker\n"
          "                     config and its credential helpers)\n"
          "  --password-stdin   with --creds USER: the password is stdin's first line\n"
          "  --authfile FILE    credentials from this auth file only\n"
          "  --parallel N       blobs uploaded at once (1-8, default 2)\n"
          "  --chunk-size SIZE  blobs larger than SIZE go in chunks of SIZE (at least\n"
          "                     1M; default 32M), each resumable; 0 sends every blob\n"
          "                     in one request.  M is MiB, MB 10^6 bytes\n"
          "  --platform OS/ARCH[/VARIANT]  the entry to push when IMAGE names an index\n"
          "  --json             print {ref, digest, blobs_pushed, blobs_existing,\n"
          "                     blobs_mounted, bytes_pushed, recompressed}\n"
          "  --store DIR        store to push from\n"
          "  -v, --verbose      debug messages on stderr\n"
          "\n"
          "output: the pushed manifest's digest on stdout; a line per blob on stderr.\n"
          "Exit 1 on error (the tag is not set), 2 on usage errors.\n"
          "environment: SBX_RETRY_MAX (attempts per blob, default 5), SBX_RETRY_BASE_MS,\n"
          "SBX_STALL_TIMEOUT (s, default 30), as pull.\n"
          "\n"
          "examples:\n"
          "  sbx-image push myapp:1 registry.example.com/team/myapp:1\n"
          "  sbx-image push --compression gzip myapp:1 registry.example.com/team/myapp:1\n"
          "  sbx-image push --parallel 4 --chunk-size 64M myapp:1 reg.example/myapp:1\n",
          f);
}

int cmd_push(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"platform", required_argument, NULL, 'p'},
        {"creds", required_argument, NULL, 'c'},
        CLI_CREDS_MORE_OPTS,
        {"compression", required_argument, NULL, 'z'},
        {"parallel", required_argument, NULL, 'P'},
        {"chunk-size", required_argument, NULL, 'C'},
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    for (int c; (c = cli_next_opt(cli, argc, argv, longopts)) != -1;) {
        if (c == CLI_OPT_HELP) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (c == 'z') {
            if (strcmp(optarg, "zstd") && strcmp(optarg, "gzip"))
                return cli_usage_error("push", "--compression is zstd or gzip, not '%s'", optarg);
            opts.push_gzip = !strcmp(optarg, "gzip");
            continue;
        }
        if (c == 'P') {
            if (cli_parallel_opt(optarg, "push", &opts.parallel) != 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        if (c == 'C') {
            uint64_t v = 0;
            sbx_error e = SBX_ERROR_INIT;
            if (sbx_bytes_parse(optarg, &v, &e) < 0 ||
                (v != 0 && v < (uint64_t)SBX_PUSH_CHUNK_MIN) || v > (uint64_t)INT64_MAX)
                return cli_usage_error("push", "--chunk-size needs 0 or a size of at least 1M "
                                       "such as 64M, not '%s'", optarg);
            opts.push_chunk = (int64_t)v;
            continue;
        }
        int ro = cli_registry_opt(&opts, c, optarg, "push");
        if (ro < 0)
            return CLI_EXIT_USAGE;
        if (!ro)
            return cli_usage_error("push", "unknown option '%s'", argv[optind - 1]);
    }
    if (optind + 1 != argc && optind + 2 != argc)
        return cli_usage_error("push", "expected IMAGE and an optional DEST");
    if (cli_registry_finish(&opts, "push"))
        return CLI_EXIT_USAGE;
    const char *image = argv[optind], *dest = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (!*image || (dest && !*dest))
        return cli_usage_error("push", "IMAGE and DEST must not be empty");
    sbx_store *store = NULL;
    if (cli_open_store(cli, &store) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_push_result r;
    /* --creds are DEST's: a private IMAGE is checked with the Docker config's */
    sbx_registry_options src = opts;
    src.username = src.password = src.identity_token = src.registry_token = NULL;
    sbx_registry_gate(store, &src);
    int rc = sbx_registry_push(&r, store, image, dest, &opts, cli->ctx, &err);
    sbx_store_free(store);
    cli_progress_done();
    if (rc < 0)
        return cli_fail(&err);
    if (r.recompressed)
        fprintf(stderr, "note: the manifest of %s does not describe its layers as pushed; "
                "pushed a new manifest over them (%s)\n", image, r.digest);
    if (cli->json)
        return cli_print_json(stdout, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "ref",
                                                r.ref, "digest", r.digest, "blobs_pushed",
                                                (json_int_t)r.blobs_pushed, "blobs_existing",
                                                (json_int_t)r.blobs_existing, "blobs_mounted",
                                                (json_int_t)r.blobs_mounted, "bytes_pushed",
                                                (json_int_t)r.bytes_pushed, "recompressed",
                                                r.recompressed));
    printf("%s\n", r.digest);
    return CLI_EXIT_OK;
}
