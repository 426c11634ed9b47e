/* sbx-image inspect REF|NAME: manifest, config, platforms, layers, sizes;
 * from the store when it has the image, else from the registry. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/context.h"
#include "sbx/registry.h"


static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-image inspect [OPTIONS] REF|NAME|DIGEST\n\n"
            "Show an image: its manifest digest and media type, the platforms of its index,\n"
            "its config (platform, digest), and its layers (digest, diff_id, size, media type,\n"
            "whether the store has them).  Answers from the store when it holds the name,\n"
            "the normalized ref, the pinned digest or a bare manifest digest (as build\n"
            "prints); otherwise asks the registry (manifests and config only; no layer is\n"
            "downloaded).\n\n"
            "options:\n"
            "  --platform OS/ARCH[/VARIANT]  platform to show from an index (default: this host's)\n"
            "  --creds USER:PASSWORD         credentials for the ref's registry\n"
            "  --password-stdin              with --creds USER: the password is stdin's\n"
            "                                first line (kept out of the process list)\n"
            "  --authfile FILE               credentials from this auth file only\n"
            "  --raw                         print the exact bytes of the manifest the ref names\n"
            "                                (the index for a multi-platform image)\n"
            "  --config                      print the exact bytes of the image config\n"
            "  --format TEMPLATE             print TEMPLATE with each {{.Field}} replaced:\n"
            "                                Ref, Digest, MediaType, Index, Platform,\n"
            "                                Config, Created, User, WorkingDir, Cmd,\n"
            "                                Entrypoint, Env (lists space-separated),\n"
            "                                Labels.KEY, Layers (a count), Size (bytes)\n"
            "                                e.g. --format '{{.Digest}} {{.User}}'\n"
            "  --json                        print everything as one JSON object\n"
            "  --store DIR                   store to look in first\n"
            "  -v, --verbose                 debug messages on stderr\n\n"
            "output: a summary (or --json, --raw, --config) on stdout.  Exit 1 on error, 2 on\n"
            "usage errors.\n"
            "\n"
            "examples:\n"
            "  sbx-image inspect node:22\n"
            "  sbx-image inspect --format '{{.Digest}} {{.Config.User}}' myapp:1\n");
}

static uint64_t total_size(const sbx_image_info *in)
{
    uint64_t t = 0;
    for (size_t i = 0; i < in->nlayers; i++)
        t += in->layers[i].size;
    return t;
}

static int print_json(const sbx_image_info *in)
{
    char plat[100];
    json_t *platforms = json_array(), *layers = json_array();
    for (size_t i = 0; i < in->nplatforms; i++) {
        const sbx_image_platform *p = &in->platforms[i];
        json_array_append_new(platforms,
                              json_pack("{s:s, s:s, s:s, s:I}", "platform",
                                        sbx_platform_format(&p->platform, plat, sizeof plat),
                                        "digest", p->digest, "media_type", p->media_type, "size",
                                        (json_int_t)p->size));
    }
    for (size_t i = 0; i < in->nlayers; i++) {
        const sbx_pull_layer *l = &in->layers[i];
        json_array_append_new(layers,
                              json_pack("{s:s, s:s, s:I, s:s, s:b}", "digest", l->digest, "diff_id",
                                        l->diff_id, "size", (json_int_t)l->size, "media_type",
                                        l->media_type, "present", l->present));
    }
    json_error_t jerr;
    json_t *config = json_loadb(in->config_raw, in->config_len, 0, &jerr);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:I, s:o*, s:o, s:I}", "ref", in->ref,
        "source", in->from_store ? "store" : "registry", "digest", in->digest, "media_type",
        in->media_type, "index_digest", in->top_digest, "index_media_type", in->top_media_type,
        "platforms", platforms, "platform", sbx_platform_format(&in->platform, plat, sizeof plat),
        "config", in->config_digest, "config_size", (json_int_t)in->config_len, "config_json",
        config, "layers", layers, "size", (json_int_t)total_size(in));
    return cli_print_json(stdout, o);
}

/* A JSON array of strings as one shell-ish line: ["/bin/sh", "-c", "x"]. */
static void print_strv(const char *label, json_t *v)
{
    if (!json_is_array(v) || !json_array_size(v))
        return;
    printf("%-13s", label);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        char *q = json_dumps(s, JSON_ENCODE_ANY);
        printf("%s%s", i ? " " : "[", q ? q : "?");
        free(q);
    }
    printf("]\n");
}

/* What the image runs as and with: the config's run settings, labels (the
 * sandbox's ready command among them) and history. */
static void print_config(const sbx_image_info *in)
{
    json_t *cfg = json_loadb(in->config_raw, in->config_len, 0, NULL);
    if (!cfg)
        return;
    json_t *c = json_object_get(cfg, "config");
    const char *created = json_string_value(json_object_get(cfg, "created"));
    if (created)
        printf("created:     %s\n", created);
    const char *user = json_string_value(json_object_get(c, "User"));
    const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
    printf("user:        %s\n", user && *user ? user : "(root)");
    if (wd && *wd)
        printf("workdir:     %s\n", wd);
    print_strv("entrypoint:", json_object_get(c, "Entrypoint"));
    print_strv("cmd:", json_object_get(c, "Cmd"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(c, "Env"), i, v)
        printf("%s %s\n", i ? "            " : "env:        ", json_string_value(v));
    const char *key;
    int n = 0;
    json_object_foreach(json_object_get(c, "Labels"), key, v)
        printf("%s %s=%s\n", n++ ? "            " : "labels:     ", key, json_string_value(v));
    json_t *h = json_object_get(cfg, "history");
    if (json_array_size(h))
        printf("history:     %zu entries\n", json_array_size(h));
    json_array_foreach(h, i, v) {
        const char *by = json_string_value(json_object_get(v, "created_by"));
        printf("  %2zu %s%s\n", i + 1, by ? by : "",
               json_is_true(json_object_get(v, "empty_layer")) ? "  (no layer)" : "");
    }
    json_decref(cfg);
}

/* --format: the template with each {{.Field}} replaced (docs in the usage).
 * Returns 0, or -1 with *bad naming an unknown field. */
static int print_format(const sbx_image_info *in, const char *tmpl, char bad[128])
{
    json_t *cfg = json_loadb(in->config_raw, in->config_len, 0, NULL);
    json_t *c = json_object_get(cfg, "config");
    char plat[100], num[32];
    for (const char *p = tmpl; *p;) {
        const char *open = strstr(p, "{{."), *close = open ? strstr(open, "}}") : NULL;
        if (!open || !close) {
            fputs(p, stdout);
            break;
        }
        fwrite(p, 1, (size_t)(open - p), stdout);
        char field[128];
        snprintf(field, sizeof field, "%.*s", (int)(close - open - 3), open + 3);
        const char *s = NULL;
        json_t *arr = NULL;
        if (!strcmp(field, "Ref")) s = in->ref;
        else if (!strcmp(field, "Digest")) s = in->digest;
        else if (!strcmp(field, "MediaType")) s = in->media_type;
        else if (!strcmp(field, "Index")) s = strcmp(in->top_digest, in->digest) ? in->top_digest : "";
        else if (!strcmp(field, "Platform")) s = sbx_platform_format(&in->platform, plat, sizeof plat);
        else if (!strcmp(field, "Config")) s = in->config_digest;
        else if (!strcmp(field, "Created")) s = json_string_value(json_object_get(cfg, "created"));
        else if (!strcmp(field, "User")) s = json_string_value(json_object_get(c, "User"));
        else if (!strcmp(field, "WorkingDir")) s = json_string_value(json_object_get(c, "WorkingDir"));
        else if (!strcmp(field, "Layers")) {
            snprintf(num, sizeof num, "%zu", in->nlayers);
            s = num;
        } else if (!strcmp(field, "Size")) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)total_size(in));
            s = num;
        } else if (!strcmp(field, "Cmd") || !strcmp(field, "Entrypoint") || !strcmp(field, "Env"))
            arr = json_object_get(c, field);
        else if (!strncmp(field, "Labels.", 7))
            s = json_string_value(json_object_get(json_object_get(c, "Labels"), field + 7));
        else {
            snprintf(bad, 128, "%s", field);
            json_decref(cfg);
            return -1;
        }
        if (arr) { /* a list: its strings, space-separated */
            size_t i;
            json_t *v;
            json_array_foreach(arr, i, v)
                printf("%s%s", i ? " " : "", json_string_value(v) ? json_string_value(v) : "");
        } else if (s) {
            fputs(s, stdout);
        }
        p = close + 2;
    }
    putchar('\n');
    json_decref(cfg);
    return 0;
}

static void print_human(const sbx_image_info *in)
{
    char plat[100], b[32];
    printf("ref:         %s\n", in->ref);
    printf("source:      %s\n", in->from_store ? "store" : "registry");
    printf("digest:      %s\n", in->digest);
    printf("media type:  %s\n", in->media_type);
    if (strcmp(in->top_digest, in->digest) != 0)
        printf("index:       %s (%s)\n", in->top_digest, in->top_media_type);
    for (size_t i = 0; i < in->nplatforms; i++) {
        const sbx_image_platform *p = &in->platforms[i];
        printf("%s %-16s %s%s\n", i == 0 ? "platforms:  " : "            ",
               sbx_platform_format(&p->platform, plat, sizeof plat), p->digest,
               strcmp(p->digest, in->digest) ? "" : "  (shown)");
    }
    printf("platform:    %s\n", sbx_platform_format(&in->platform, plat, sizeof plat));
    printf("config:      %s (%s)\n", in->config_digest, cli_human_bytes(in->config_len, b, sizeof b));
    printf("layers:      %zu, %s compressed\n", in->nlayers,
           cli_human_bytes(total_size(in), b, sizeof b));
    for (size_t i = 0; i < in->nlayers; i++) {
        const sbx_pull_layer *l = &in->layers[i];
        printf("  %2zu %s %10s %s%s\n", i + 1, l->digest, cli_human_bytes(l->size, b, sizeof b),
               l->media_type, l->present ? "  [in store]" : "");
        printf("     diff_id %s\n", l->diff_id);
    }
    print_config(in);
}

int cmd_inspect(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"platform", required_argument, NULL, 'p'},
        {"creds", required_argument, NULL, 'c'},
        CLI_CREDS_MORE_OPTS,
        {"raw", no_argument, NULL, 'r'},
        {"config", no_argument, NULL, 'C'},
        {"format", required_argument, NULL, 'F'},
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    int raw = 0, config = 0, c;
    const char *format = NULL;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        int ro = cli_registry_opt(&opts, c, optarg, "inspect");
        if (ro < 0)
            return CLI_EXIT_USAGE;
        if (ro)
            continue;
        switch (c) {
        case 'r': raw = 1; break;
        case 'C': config = 1; break;
        case 'F': format = optarg; break;
        default: return cli_usage_error("inspect", "unknown option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("inspect", "expected exactly one REF or NAME");
    if (cli_registry_finish(&opts, "inspect"))
        return CLI_EXIT_USAGE;
    if (raw + config + cli->json + (format != NULL) > 1)
        return cli_usage_error("inspect", "--raw, --config, --format and --json exclude each other");
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *store = NULL;
    if (sbx_store_open_existing(&store, cli->store_root, &err) < 0) {
        cli_debug(cli, "inspecting without the store: %s", err.msg);
        sbx_error_clear(&err);
        store = NULL;
    }
    opts.store = store;
    sbx_image_info *in = NULL;
    int rc = sbx_registry_inspect(&in, argv[optind], &opts, cli->ctx, &err);
    if (store)
        sbx_store_free(store);
    if (rc < 0)
        return cli_fail(&err);
    int exit_code = CLI_EXIT_OK;
    if (raw)
        fwrite(in->top_raw, 1, in->top_len, stdout);
    else if (config)
        fwrite(in->config_raw, 1, in->config_len, stdout);
    else if (cli->json)
        exit_code = print_json(in);
    else if (format) {
        char bad[128];
        if (print_format(in, format, bad) < 0)
            exit_code = cli_usage_error("inspect", "--format: unknown field '.%s' (see --help)", bad);
    }
    else
        print_human(in);
    sbx_image_info_free(in);
    return exit_code;
}
