/* sbx-image pull REF: an image from a registry into the store.
 *
 * Progress on stderr: on a terminal one live line per layer (bytes, speed,
 * "already present"); otherwise one plain line when a layer starts, is found
 * present, or finishes (with its speed). */
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/context.h"
#include "sbx/registry.h"
#include "sbx/rootfs.h"


/* ---- progress display ------------------------------------------------------ */

#define MAX_ITEMS 64

typedef struct item {
    char id[64];
    char phase[16];
    uint64_t done, total;
    uint64_t start_ns, end_ns;
} item;

static struct {
    int tty;
    item items[MAX_ITEMS];
    size_t n;
    size_t drawn; /* lines drawn last time (tty) */
    uint64_t last_draw_ns;
} g_pp;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fmt_speed(const item *it, char *buf, size_t len)
{
    uint64_t end = it->end_ns ? it->end_ns : now_ns();
    double secs = (double)(end - it->start_ns) / 1e9;
    char b[32];
    if (secs < 0.001 || it->done == 0) {
        snprintf(buf, len, "-");
        return;
    }
    snprintf(buf, len, "%s/s", cli_human_bytes((unsigned long long)(it->done / secs), b, sizeof b));
}

static void draw_line(const item *it)
{
    char done[32], total[32], speed[32];
    cli_human_bytes(it->done, done, sizeof done);
    cli_human_bytes(it->total, total, sizeof total);
    if (!strcmp(it->phase, "present")) {
        fprintf(stderr, "%s: already present (%s)", it->id, total);
        return;
    }
    fmt_speed(it, speed, sizeof speed);
    if (!strcmp(it->phase, "done"))
        fprintf(stderr, "%s: pulled %s (%s)", it->id, total, speed);
    else if (!strcmp(it->phase, "commit"))
        fprintf(stderr, "%s: storing %s", it->id, total);
    else
        fprintf(stderr, "%s: downloading %s / %s (%d%%) %s", it->id, done, total,
                it->total ? (int)(it->done * 100 / it->total) : 0, speed);
}

static void redraw(void)
{
    if (g_pp.drawn)
        fprintf(stderr, "\033[%zuA", g_pp.drawn);
    for (size_t i = 0; i < g_pp.n; i++) {
        fprintf(stderr, "\r\033[K");
        draw_line(&g_pp.items[i]);
        fputc('\n', stderr);
    }
    g_pp.drawn = g_pp.n;
    fflush(stderr);
}

static void progress_sink(void *ud, const sbx_progress *p)
{
    (void)ud;
    item *it = NULL;
    for (size_t i = 0; i < g_pp.n; i++)
        if (!strcmp(g_pp.items[i].id, p->id))
            it = &g_pp.items[i];
    bool is_new = false;
    if (!it) {
        if (g_pp.n == MAX_ITEMS)
            return;
        it = &g_pp.items[g_pp.n++];
        memset(it, 0, sizeof *it);
        snprintf(it->id, sizeof it->id, "%s", p->id);
        it->start_ns = now_ns();
        is_new = true;
    }
    bool changed = strcmp(it->phase, p->phase) != 0;
    snprintf(it->phase, sizeof it->phase, "%s", p->phase);
    it->done = p->done;
    it->total = p->total;
    if (!strcmp(p->phase, "done") || !strcmp(p->phase, "present"))
        it->end_ns = now_ns();
    if (g_pp.tty) {
        uint64_t t = now_ns();
        if (is_new || changed || t - g_pp.last_draw_ns > 100000000ull) {
            g_pp.last_draw_ns = t;
            redraw();
        }
    } else if ((is_new && strcmp(p->phase, "download") == 0) || (changed && !is_new &&
               strcmp(p->phase, "commit") != 0) || !strcmp(p->phase, "present")) {
        if (!strcmp(p->phase, "download")) {
            char total[32];
            fprintf(stderr, "%s: downloading %s\n", it->id,
                    cli_human_bytes(p->total, total, sizeof total));
        } else {
            draw_line(it);
            fputc('\n', stderr);
        }
        fflush(stderr);
    }
}

/* Log lines interrupt the live display: print them above it and draw the
 * layer lines afresh below. */
static void log_sink(void *ud, sbx_log_level level, const char *op_id, const char *msg)
{
    (void)ud;
    (void)op_id;
    if (g_pp.tty && g_pp.drawn) {
        fprintf(stderr, "\033[%zuA\r\033[J", g_pp.drawn);
        g_pp.drawn = 0;
    }
    cli_print_log(level, msg);
    if (g_pp.tty && g_pp.n)
        redraw();
    fflush(stderr);
}

/* ---- command ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sbx-image pull [OPTIONS] REF\n\n"
            "Pull an image into the store: the manifest for the platform (from an index if\n"
            "REF names one), its config and its layers.  Every byte is checked: manifests\n"
            "against their digests, layers against the descriptor digest and the config's\n"
            "diff_id.  A gzip or zstd layer's diff_id is checked where its tar is first\n"
            "read in full (unpack, mount, push, export, fsck; --unpack: now), so a plain\n"
            "pull does not decompress it; a layer whose tar is not its diff_id fails that\n"
            "use.\n"
            "Layers already in the store are not downloaded; up to 2 download at once.\n"
            "The store then names the normalized ref (e.g. docker.io/library/node:22).\n"
            "A gzip or zstd layer is stored as the registry sent it (zstd only when its\n"
            "frames carry checksums, else compressed again); a plain tar as zstd.\n\n"
            "options:\n"
            "  --platform OS/ARCH[/VARIANT]  platform to pull (default: this host's)\n"
            "  --creds USER:PASSWORD         credentials for the ref's registry (default: the\n"
            "                                Docker config, $DOCKER_CONFIG/config.json)\n"
            "  --password-stdin              with --creds USER: the password is stdin's\n"
            "                                first line (kept out of the process list)\n"
            "  --authfile FILE               credentials from this auth file only\n"
            "  --parallel N                  layers downloaded at once (1-8, default 2)\n"
            "  --unpack                      also unpack every layer into the store's layer\n"
            "                                cache (what mount and unpack use), each while it\n"
            "                                downloads: its bytes decompressed once, and kept\n"
            "                                only once its digests are verified\n"
            "  --json                        print {\"ref\",\"digest\",\"config\",\"layers\":\n"
            "                                [{\"digest\",\"diff_id\",\"size\",\"media_type\",\n"
            "                                \"present\"}]}\n"
            "  --store DIR                   store to pull into\n"
            "  -v, --verbose                 debug messages (requests) on stderr\n"
            "  -q, --quiet                   no progress on stderr\n\n"
            "output: the image manifest digest on stdout (or --json); progress on stderr,\n"
            "live per layer on a terminal.  Exit 1 on error, 2 on usage errors.\n"
            "environment: SBX_STALL_TIMEOUT (s, default 30), SBX_RETRY_MAX (default 5),\n"
            "SBX_RETRY_BASE_MS (default 500), SBX_REGISTRIES_CONFIG, SBX_CERTS_DIR,\n"
            "DOCKER_CONFIG; a layer may expand to SBX_EXPANSION_FLOOR bytes (default 1 GiB),\n"
            "beyond that to SBX_MAX_EXPANSION (100) times its compressed size, never past\n"
            "SBX_MAX_LAYER_BYTES (64 GiB).\n"
            "\n"
            "examples:\n"
            "  sbx-image pull node:22\n"
            "  sbx-image pull --platform linux/arm64 registry.example/team/app:1\n"
            "  sbx-image pull --creds ci --password-stdin reg.example/private/app:1 <pw.txt\n");
}

static int print_json(const sbx_pull_result *r)
{
    json_t *layers = json_array();
    for (size_t i = 0; layers && i < r->nlayers; i++) {
        const sbx_pull_layer *l = &r->layers[i];
        json_array_append_new(layers,
                              json_pack("{s:s, s:s, s:I, s:s, s:b}", "digest", l->digest, "diff_id",
                                        l->diff_id, "size", (json_int_t)l->size, "media_type",
                                        l->media_type, "present", l->present));
    }
    char plat[100];
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "ref", r->ref, "digest", r->digest,
                          "media_type", r->media_type, "index_digest", r->index_digest, "config",
                          r->config, "platform", sbx_platform_format(&r->platform, plat, sizeof plat),
                          "layers", layers);
    return cli_print_json(stdout, o);
}

int cmd_pull(sbx_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"platform", required_argument, NULL, 'p'},
        {"creds", required_argument, NULL, 'c'},
        CLI_CREDS_MORE_OPTS,
        {"parallel", required_argument, NULL, 'P'},
        {"unpack", no_argument, NULL, 'U'},
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    bool unpack = false;
    int c;
    while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        int ro = cli_registry_opt(&opts, c, optarg, "pull");
        if (ro < 0)
            return CLI_EXIT_USAGE;
        if (ro)
            continue;
        switch (c) {
        case 'P':
            if (cli_parallel_opt(optarg, "pull", &opts.parallel) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'U':
            unpack = true;
            opts.layer_tap = &cli_unpack_tap;
            break;
        default: return cli_usage_error("pull", "unknown option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("pull", "expected exactly one REF");
    if (cli_registry_finish(&opts, "pull"))
        return CLI_EXIT_USAGE;
    const char *ref = argv[optind];
    if (unpack && cli_need_root("pull --unpack", "unpacking keeps the image's owners and device "
                                "nodes") != 0)
        return CLI_EXIT_FAIL;
    sbx_store *store = NULL;
    int rc = cli_open_store_create(cli, &store);
    if (rc != CLI_EXIT_OK)
        return rc;
    g_pp.tty = cli->tty;
    cli_set_sinks(cli, log_sink, progress_sink);
    opts.store = store;
    sbx_error err = SBX_ERROR_INIT;
    sbx_pull_result r;
    memset(&r, 0, sizeof r);
    rc = sbx_registry_pull(&r, ref, &opts, cli->ctx, &err);
    /* --unpack: the layers the store had already (not downloaded, so not
     * tapped) are unpacked from the store; the others are there already */
    for (size_t i = 0; rc == 0 && unpack && i < r.nlayers; i++) {
        char dir[4096];
        rc = sbx_rootfs_layer_unpack(dir, sizeof dir, store, r.layers[i].diff_id, cli->ctx, &err);
    }
    sbx_store_free(store);
    if (rc < 0) {
        sbx_pull_result_free(&r);
        return cli_fail(&err);
    }
    size_t present = 0;
    for (size_t i = 0; i < r.nlayers; i++)
        present += r.layers[i].present ? 1 : 0;
    if (!cli->json || g_pp.tty)
        fprintf(stderr, "pulled %s: %zu layers (%zu already present)\n", r.ref, r.nlayers, present);
    int exit_code = CLI_EXIT_OK;
    if (cli->json)
        exit_code = print_json(&r);
    else
        printf("%s\n", r.digest);
    sbx_pull_result_free(&r);
    return exit_code;
}
