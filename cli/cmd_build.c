/* sbx-image build: a recipe -> an image in the store; prints its manifest
 * digest on stdout.  Steps and their live output go to stderr: "[3/7] ..."
 * lines (on a terminal and off it alike, output lines indented under their
 * step), or one JSON object per line with --json. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sbx/builder.h"
#include "sbx/context.h"
#include "sbx/recipe.h"
#include "sbx/registry.h"

static void usage(FILE *f)
{
    fputs("usage: sbx-image build RECIPE.yaml [OPTIONS]\n"
          "\n"
          "Build the image a recipe describes into the store, running each step that\n"
          "runs commands in a throwaway OCI container and caching the result of every\n"
          "step (a rebuild of an unchanged recipe runs nothing).  The store names the\n"
          "image recipe:<recipe digest> and every --tag.  RECIPE.yaml '-' reads the\n"
          "recipe from standard input.\n"
          "\n"
          "options:\n"
          "  --context DIR       build context for copy steps (default: the recipe's\n"
          "                      directory; the current one for '-')\n"
          "  -t, --tag NAME      also name the image NAME in the store (repeatable;\n"
          "                      default: none)\n"
          "  --label KEY=VALUE   a label on the image's config (repeatable); the recipe\n"
          "                      digest and the step cache stay, the image differs\n"
          "  -f FILE             the recipe file (instead of RECIPE.yaml)\n"
          "  --secret id=NAME,src=FILE | id=NAME,env=VAR\n"
          "                      a build secret for the steps that name it (repeatable):\n"
          "                      /run/secrets/NAME in the step, never in a layer, the\n"
          "                      digest, a cache key or the output (shown as ****)\n"
          "  --cache-from REPO   look for cached steps in this registry repository too\n"
          "                      (host/path; repeatable, in order): the deepest hit is\n"
          "                      pulled, only what this store lacks; trust it as a base.\n"
          "                      base: sbx is the first one's that published one\n"
          "  --cache-to REPO     after the build, push every step's cached state there,\n"
          "                      tagged sbx-cache-<key> (credentials as for the base),\n"
          "                      and a base: sbx once, for other hosts' --cache-from\n"
          "  --push REF          then push the image to REF (as sbx-image push does, with\n"
          "                      the Docker config's credentials); a failed push keeps\n"
          "                      the built image and exits 1\n"
          "  --no-cache          run every step even when its result is cached (the results\n"
          "                      are still cached)\n"
          "  --creds USER:PASSWORD  credentials for the base's registry (default: the\n"
          "                      Docker config); a private base in the store is used\n"
          "                      only when that registry accepts them now\n"
          "  --password-stdin    with --creds USER: the password is stdin's first line\n"
          "  --authfile FILE     credentials from this auth file only\n"
          "  --platform P        os/arch[/variant] of a from_registry base (default:\n"
          "                      this host's)\n"
          "  --runtime R         OCI runtime: auto, crun, runc or runsc (default: auto:\n"
          "                      crun where it works, else runc)\n"
          "  --network MODE      steps' network: isolated (the default: a namespace of\n"
          "                      their own, outbound through slirp4netns, so package\n"
          "                      managers work, but no way to this host's 127.0.0.1 or\n"
          "                      to 169.254.0.0/16), host (the host's own) or none\n"
          "  --timeout SECONDS   per-step time limit (default: $SBX_BUILD_TIMEOUT, else\n"
          "                      3600)\n"
          "  --build-timeout SECONDS  the whole build's time limit, waits and steps\n"
          "                      included (default: none; a step keeps its --timeout)\n"
          "  --wait-timeout SECONDS  concurrent builds of one recipe in a store run once:\n"
          "                      this one waits for a running one (then finds its steps\n"
          "                      cached) at most this long (default: no limit)\n"
          "  --pids-limit N|max  processes and threads a step may have at once (crun,\n"
          "                      runc; default: $SBX_BUILD_PIDS_LIMIT, else 4096)\n"
          "  --memory SIZE|max   a step's memory; past it the kernel kills it (crun, runc;\n"
          "                      default: $SBX_BUILD_MEMORY, else half the host's, at\n"
          "                      most 8G; K, M, G: powers of 1024)\n"
          "  --cpus N|max        cores a step may use, as a quota: 1.5 (crun, runc;\n"
          "                      default: $SBX_BUILD_CPUS, else no quota; a step always\n"
          "                      has half a plain process's CPU weight)\n"
          "  --disk-limit SIZE|max  bytes a step may write to its layer; past them it is\n"
          "                      stopped (default: $SBX_BUILD_DISK_LIMIT, else 20G)\n"
          "  --base-suite S      Debian suite of base: sbx (default: $SBX_BASE_SUITE, else\n"
          "                      bookworm)\n"
          "  --base-variant V    debootstrap variant of base: sbx (default:\n"
          "                      $SBX_BASE_VARIANT, else minbase)\n"
          "  --base-mirror URL   Debian mirror of base: sbx (default: $SBX_BASE_MIRROR,\n"
          "                      else the host's apt mirror, else\n"
          "                      http://deb.debian.org/debian)\n"
          "  --python-pins FILE  python: and add_python versions the base's package\n"
          "                      manager lacks come as standalone CPython builds pinned\n"
          "                      by SHA-256 in this JSON file (default: $SBX_PYTHON_PINS,\n"
          "                      else the pins built in; see docs/builder.md)\n"
          "  --python-mirror URL  where those builds are downloaded from (default:\n"
          "                      $SBX_PYTHON_MIRROR, else the pins file's url, else\n"
          "                      python-build-standalone's GitHub releases)\n"
          "  --json              JSON on stdout and stderr (see Output)\n"
          "  --store DIR         the store (default: $SBX_STORE, else /var/lib/sbx-image as\n"
          "                      root, else $XDG_DATA_HOME/sbx-image or\n"
          "                      ~/.local/share/sbx-image)\n"
          "  -v, --verbose       also print debug logs (per-step timings, the runtime used)\n"
          "  -q, --quiet         print nothing on stderr but a failure's report, warnings\n"
          "                      and errors (the digest still goes to stdout)\n"
          "  -h, --help          print this help\n"
          "\n"
          "output:\n"
          "  stdout: the image's manifest digest (sha256:...); with --json one object:\n"
          "  digest, recipe_digest, base_digest, steps_run, steps_cached, build_id (its\n"
          "  record: sbx-image builds, build-log, build-cancel).\n"
          "  stderr: '[base] KIND REF -> sha256:...' (for base: sbx, its suite and\n"
          "  variant), then per step '[3/7] apt_install curl git' or '... (cached)', the\n"
          "  step's output indented, and 'done in 2.31s, layer sha256:...' (or 'no\n"
          "  changes').  On a terminal step lines are bold and cached ones dim.  With\n"
          "  --json every stderr line is one JSON object whose \"event\" is base, start,\n"
          "  cached, done, failed, output, log, progress or error.\n"
          "\n"
          "Exit status 0 on success.  On failure, 1: the failing step, its command, its\n"
          "exit code or timeout and the last lines of its output on stderr (with --json\n"
          "one error event); the failed step leaves nothing in the store (steps before it\n"
          "stay cached).  2 for a usage error.\n"
          "\n"
          "examples:\n"
          "  sbx-image build recipe.yaml -t myapp:1\n"
          "  sbx-image build - --context ./app < recipe.yaml\n"
          "  sbx-image build r.yaml --cache-from reg.example/cache --push reg.example/app:1\n",
          f);
}

typedef struct ui {
    int json;
    int tty;
    int quiet; /* -q: the digest, the failure report and errors only */
} ui;

static const char *ev_name(sbx_build_event_kind k) { return sbx_build_event_name(k); }

static void print_json_line(json_t *o) { cli_print_json(stderr, o); }

static void on_event(void *ud, const sbx_build_event *ev)
{
    ui *u = ud;
    if (u->json) {
        json_t *o = json_pack("{s:s, s:I, s:I}", "event", ev_name(ev->kind), "step",
                              (json_int_t)ev->index, "total", (json_int_t)ev->total);
        if (ev->summary)
            json_object_set_new(o, "summary", json_string(ev->summary));
        if (ev->detail)
            json_object_set_new(o, "detail", json_string(ev->detail));
        if (ev->diff_id)
            json_object_set_new(o, "diff_id", json_string(ev->diff_id));
        if (ev->digest)
            json_object_set_new(o, "digest", json_string(ev->digest));
        if (ev->kind == SBX_BUILD_EV_DONE || ev->kind == SBX_BUILD_EV_FAILED)
            json_object_set_new(o, "seconds", json_real(ev->seconds));
        print_json_line(o);
        return;
    }
    if (u->quiet)
        return;
    const char *bold = u->tty ? "\033[1m" : "", *dim = u->tty ? "\033[2m" : "",
               *off = u->tty ? "\033[0m" : "";
    cli_progress_clear(); /* a pull's or unpack's progress line gives way to the step */
    switch (ev->kind) {
    case SBX_BUILD_EV_BASE:
        /* "[base] sbx (debian bookworm minbase)",
         * "[base] from_registry REF -> sha256:<12 hex>", "[base] image NAME -> ..." */
        if (!ev->digest)
            fprintf(stderr, "%s[base] %s%s%s%s%s\n", bold, ev->summary, ev->detail ? " (" : "",
                    ev->detail ? ev->detail : "", ev->detail ? ")" : "", off);
        else if (ev->detail && strcmp(ev->detail, ev->digest) != 0)
            fprintf(stderr, "%s[base] %s %s -> %.19s%s\n", bold, ev->summary, ev->detail,
                    ev->digest, off);
        else
            fprintf(stderr, "%s[base] %s %.19s%s\n", bold, ev->summary, ev->digest, off);
        break;
    case SBX_BUILD_EV_START:
        fprintf(stderr, "%s[%zu/%zu] %s%s\n", bold, ev->index, ev->total, ev->summary, off);
        break;
    case SBX_BUILD_EV_CACHED:
        fprintf(stderr, "%s[%zu/%zu] %s (cached)%s\n", dim, ev->index, ev->total, ev->summary,
                off);
        break;
    case SBX_BUILD_EV_DONE:
        fprintf(stderr, "%s      done in %.2fs%s%s%.19s%s\n", dim, ev->seconds,
                ev->diff_id ? ", layer " : ev->detail ? ", " : "",
                ev->diff_id ? "" : ev->detail ? ev->detail : "", ev->diff_id ? ev->diff_id : "",
                off);
        break;
    case SBX_BUILD_EV_FAILED:
        /* Under the step like "done in"; the details follow in the report. */
        fprintf(stderr, "%s      failed after %.2fs%s\n", bold, ev->seconds, off);
        break;
    }
    fflush(stderr);
}

static void on_output(void *ud, size_t index, const char *line)
{
    ui *u = ud;
    if (u->json) {
        print_json_line(json_pack("{s:s, s:I, s:s}", "event", "output", "step", (json_int_t)index,
                                  "line", line));
        return;
    }
    if (u->quiet)
        return;
    cli_progress_clear();
    fprintf(stderr, "      %s\n", line);
}

/* Plain (not a terminal, not --json): pull and unpack progress as one line
 * per phase, indented under the step like its output, with short digests. */
static void plain_progress(void *ud, const sbx_progress *p)
{
    (void)ud;
    if (!strcmp(p->phase, "done")) /* the next line says what follows; "done" reads as a step's */
        return;
    /* Layers pull in parallel: remember the last few (id, phase) pairs, so
     * interleaved updates do not repeat a line. */
    static char seen[16][200];
    static unsigned next;
    char key[200], total[32];
    snprintf(key, sizeof key, "%s %s", p->id, p->phase);
    for (size_t i = 0; i < (sizeof seen / sizeof seen[0]); i++)
        if (!strcmp(seen[i], key))
            return;
    snprintf(seen[next++ % (sizeof seen / sizeof seen[0])], sizeof seen[0], "%s", key);
    fprintf(stderr, "      %s %.*s%s%s\n", p->phase, cli_id_width(p->id), p->id,
            p->total ? " " : "", p->total ? cli_human_bytes(p->total, total, sizeof total) : "");
    fflush(stderr);
}

static void report_failure(const sbx_build_result *r)
{
    if (!r->failed_step && !r->failed_command)
        return;
    fprintf(stderr, "step %zu failed: %s\n", r->failed_step,
            r->failed_summary ? r->failed_summary : "");
    if (r->failed_command)
        fprintf(stderr, "  command: %s\n", r->failed_command);
    if (r->timed_out)
        fprintf(stderr, "  timed out\n");
    else if (r->exit_code >= 0)
        fprintf(stderr, "  exit code: %d\n", r->exit_code);
    else if (r->term_signal)
        fprintf(stderr, "  killed by signal %d\n", r->term_signal);
    if (r->tail && *r->tail) {
        fprintf(stderr, "  last output:\n");
        const char *p = r->tail;
        while (*p) {
            size_t n = strcspn(p, "\n");
            fprintf(stderr, "    %.*s\n", (int)n, p);
            p += n;
            if (*p)
                p++;
        }
    }
}

/* A failure: with --json one "error" event (and nothing else on stderr),
 * else the failed step's details and the usual error line. */
static int build_fail(const sbx_build_result *r, const sbx_error *err, int json)
{
    if (json) {
        json_t *o = cli_error_json(err);
        if (o && r && r->failed_step) {
            json_object_set_new(o, "step", json_integer((json_int_t)r->failed_step));
            if (r->failed_summary)
                json_object_set_new(o, "summary", json_string(r->failed_summary));
            if (r->failed_command)
                json_object_set_new(o, "command", json_string(r->failed_command));
            json_object_set_new(o, "exit_code", json_integer(r->exit_code));
            json_object_set_new(o, "timed_out", json_boolean(r->timed_out));
            if (r->tail)
                json_object_set_new(o, "tail", json_string(r->tail));
        }
        print_json_line(o);
        return cli_fail_status(err);
    }
    if (r)
        report_failure(r);
    return cli_fail(err);
}


/* --secret id=NAME,src=FILE | id=NAME,env=VAR (BuildKit's form; source=
 * and type=file|env too).  The value is read now; FILE and VAR are never
 * printed with it. */
static int parse_secret(sbx_build_secret *out, const char *arg, const sbx_build_secret *prev,
                        size_t nprev)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", arg);
    const char *id = NULL, *src = NULL, *env = NULL, *type = NULL;
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return cli_usage_error("build", "--secret: '%s' is not KEY=VALUE", kv);
        *eq = '\0';
        const char *v = eq + 1;
        if (!strcmp(kv, "id"))
            id = v;
        else if (!strcmp(kv, "src") || !strcmp(kv, "source"))
            src = v;
        else if (!strcmp(kv, "env"))
            env = v;
        else if (!strcmp(kv, "type"))
            type = v;
        else
            return cli_usage_error("build", "--secret: unknown key '%s' (id, src, env, type)", kv);
    }
    if (!id || !*id)
        return cli_usage_error("build", "--secret needs id=NAME");
    if (type && strcmp(type, "file") && strcmp(type, "env"))
        return cli_usage_error("build", "--secret %s: type is file or env", id);
    if (type && !strcmp(type, "env") && !env && src)
        env = src, src = NULL;
    if (!src == !env)
        return cli_usage_error("build", "--secret %s: give src=FILE or env=VAR", id);
    for (size_t i = 0; i < nprev; i++)
        if (!strcmp(prev[i].id, id))
            return cli_usage_error("build", "--secret %s given twice", id);
    char *value = NULL;
    size_t len = 0;
    if (env) {
        const char *e = getenv(env);
        if (!e)
            return cli_usage_error("build", "--secret %s: the environment has no %s", id, env);
        value = strdup(e);
        len = value ? strlen(value) : 0;
    } else {
        FILE *f = fopen(src, "re");
        if (!f)
            return cli_usage_error("build", "--secret %s: cannot read '%s': %s", id, src,
                                   strerror(errno));
        value = malloc(SBX_BUILD_SECRET_MAX + 1);
        len = value ? fread(value, 1, SBX_BUILD_SECRET_MAX + 1, f) : 0;
        bool bad = ferror(f);
        fclose(f);
        if (bad || len > SBX_BUILD_SECRET_MAX) {
            free(value);
            return cli_usage_error("build", "--secret %s: '%s' %s", id, src,
                                   bad ? "could not be read" : "is over 512 KiB");
        }
    }
    if (!value || !(out->id = strdup(id)))
        return cli_usage_error("build", "out of memory");
    out->value = value;
    out->len = len;
    return 0;
}

int cmd_build(sbx_cli *cli, int argc, char **argv)
{
    enum { O_CONTEXT = 1000, O_TAG, O_NOCACHE, O_PLATFORM, O_RUNTIME, O_NETWORK, O_TIMEOUT, O_PIDS,
           O_SUITE, O_VARIANT, O_MIRROR, O_WAIT, O_BUILD_TIMEOUT, O_PUSH, O_SECRET, O_CACHE_FROM,
           O_CACHE_TO, O_MEMORY, O_CPUS, O_DISK, O_LABEL, O_PY_PINS, O_PY_MIRROR };
    static const char *cache_from[16];
    size_t ncache_from = 0;
    static sbx_build_secret secrets[64];
    size_t nsecrets = 0;
    static sbx_registry_options ropts = SBX_REGISTRY_OPTIONS_INIT;
    static const struct option longopts[] = {
        {"context", required_argument, NULL, O_CONTEXT},
        {"tag", required_argument, NULL, O_TAG},
        {"no-cache", no_argument, NULL, O_NOCACHE},
        {"platform", required_argument, NULL, O_PLATFORM},
        {"runtime", required_argument, NULL, O_RUNTIME},
        {"network", required_argument, NULL, O_NETWORK},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"wait-timeout", required_argument, NULL, O_WAIT},
        {"build-timeout", required_argument, NULL, O_BUILD_TIMEOUT},
        {"push", required_argument, NULL, O_PUSH},
        {"secret", required_argument, NULL, O_SECRET},
        {"cache-from", required_argument, NULL, O_CACHE_FROM},
        {"cache-to", required_argument, NULL, O_CACHE_TO},
        {"pids-limit", required_argument, NULL, O_PIDS},
        {"memory", required_argument, NULL, O_MEMORY},
        {"label", required_argument, NULL, O_LABEL},
        {"cpus", required_argument, NULL, O_CPUS},
        {"disk-limit", required_argument, NULL, O_DISK},
        {"base-suite", required_argument, NULL, O_SUITE},
        {"base-variant", required_argument, NULL, O_VARIANT},
        {"base-mirror", required_argument, NULL, O_MIRROR},
        {"python-pins", required_argument, NULL, O_PY_PINS},
        {"python-mirror", required_argument, NULL, O_PY_MIRROR},
        {"creds", required_argument, NULL, CLI_OPT_CREDS},
        CLI_CREDS_MORE_OPTS,
        CLI_COMMON_OPTS,
        {NULL, 0, NULL, 0},
    };
    sbx_build_options bo = SBX_BUILD_OPTIONS_INIT;
    const char *context = NULL, *push_ref = NULL;
    const char *tags[64];
    static const char *labels[64];
    size_t nlabels = 0;
    size_t ntags = 0;
    int c;
    const char *file = NULL;
    while ((c = getopt_long(argc, argv, "t:f:" CLI_COMMON_SHORT, longopts, NULL)) != -1) {
        if (cli_common_opt(cli, c, optarg))
            continue;
        switch (c) {
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case O_CONTEXT: context = optarg; break;
        case 'f':
            if (!*optarg)
                return cli_usage_error("build", "-f needs a recipe file");
            file = optarg;
            break;
        case O_CACHE_FROM:
            if (ncache_from == sizeof cache_from / sizeof cache_from[0])
                return cli_usage_error("build", "too many --cache-from options");
            if (!*optarg)
                return cli_usage_error("build", "--cache-from needs a repository");
            cache_from[ncache_from++] = optarg;
            bo.cache_from = cache_from;
            bo.n_cache_from = ncache_from;
            break;
        case O_LABEL:
            if (nlabels == sizeof labels / sizeof labels[0])
                return cli_usage_error("build", "at most %zu --label", sizeof labels / sizeof labels[0]);
            if (!strchr(optarg, '=') || *optarg == '=')
                return cli_usage_error("build", "--label needs KEY=VALUE, not '%s'", optarg);
            labels[nlabels++] = optarg;
            break;
        case O_CACHE_TO:
            if (!*optarg)
                return cli_usage_error("build", "--cache-to needs a repository");
            bo.cache_to = optarg;
            break;
        case O_SECRET:
            if (nsecrets == sizeof secrets / sizeof secrets[0])
                return cli_usage_error("build", "too many --secret options");
            if (parse_secret(&secrets[nsecrets], optarg, secrets, nsecrets) != 0)
                return CLI_EXIT_USAGE;
            nsecrets++;
            bo.secrets = secrets;
            bo.n_secrets = nsecrets;
            break;
        case O_PUSH:
            if (!*optarg)
                return cli_usage_error("build", "--push needs a ref");
            push_ref = optarg;
            break;
        case 't': /* docker's -t: the same as --tag */
        case O_TAG:
            if (ntags == sizeof tags / sizeof tags[0])
                return cli_usage_error("build", "too many --tag options");
            if (!*optarg)
                return cli_usage_error("build", "--tag needs a non-empty name");
            tags[ntags++] = optarg;
            break;
        case O_NOCACHE: bo.no_cache = 1; break;
        case CLI_OPT_CREDS:
            if (cli_registry_creds(&ropts, optarg, "build"))
                return CLI_EXIT_USAGE;
            bo.registry = &ropts;
            break;
        case CLI_OPT_PASSWORD_STDIN:
        case CLI_OPT_AUTHFILE:
            if (cli_registry_opt(&ropts, c, optarg, "build") < 0)
                return CLI_EXIT_USAGE;
            bo.registry = &ropts;
            break;
        case O_PLATFORM: bo.platform = optarg; break;
        case O_RUNTIME:
            if (strcmp(optarg, "auto") && strcmp(optarg, "crun") && strcmp(optarg, "runc") &&
                strcmp(optarg, "runsc"))
                return cli_usage_error("build", "--runtime must be auto, crun, runc or runsc, "
                                                "not '%s'", optarg);
            bo.runtime = optarg;
            break;
        case O_NETWORK:
            if (!strcmp(optarg, "none"))
                bo.network = SBX_BUILD_NETWORK_NONE;
            else if (!strcmp(optarg, "host"))
                bo.network = SBX_BUILD_NETWORK_HOST;
            else if (!strcmp(optarg, "isolated"))
                bo.network = SBX_BUILD_NETWORK_ISOLATED;
            else
                return cli_usage_error("build", "--network must be isolated, host or none, not "
                                       "'%s'", optarg);
            break;
        case O_TIMEOUT:
        case O_WAIT:
        case O_BUILD_TIMEOUT: {
            const char *name = c == O_TIMEOUT ? "--timeout"
                               : c == O_WAIT  ? "--wait-timeout"
                                              : "--build-timeout";
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > INT_MAX)
                return cli_usage_error("build", "%s needs a positive number of seconds, not "
                                                "'%s'", name, optarg);
            *(c == O_TIMEOUT ? &bo.timeout_seconds
              : c == O_WAIT  ? &bo.wait_timeout_seconds
                             : &bo.build_timeout_seconds) = (unsigned)v;
            break;
        }
        case O_PIDS: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!strcmp(optarg, "max"))
                bo.pids_limit = SBX_PIDS_UNLIMITED;
            else if (*end || v <= 0 || v >= INT_MAX)
                return cli_usage_error("build", "--pids-limit needs 'max' or a positive number, "
                                                "not '%s'", optarg);
            else
                bo.pids_limit = (unsigned)v;
            break;
        }
        case O_MEMORY:
        case O_DISK: {
            uint64_t *dst = c == O_MEMORY ? &bo.memory_bytes : &bo.disk_bytes;
            sbx_error e = SBX_ERROR_INIT;
            if (!strcmp(optarg, "max"))
                *dst = SBX_LIMIT_NONE;
            else if (sbx_bytes_parse(optarg, dst, &e) < 0 || *dst == 0)
                return cli_usage_error("build", "%s needs 'max' or a size such as 4G: %s",
                                       c == O_MEMORY ? "--memory" : "--disk-limit",
                                       e.code ? e.msg : "0 is no size");
            break;
        }
        case O_CPUS: {
            char *end;
            double v = strtod(optarg, &end);
            if (!strcmp(optarg, "max"))
                bo.cpu_millis = (unsigned)SBX_LIMIT_NONE;
            else if (*end || end == optarg || !(v >= 0.01 && v <= 4096))
                return cli_usage_error("build", "--cpus needs 'max' or a number of cores such "
                                                "as 1.5, not '%s'", optarg);
            else
                bo.cpu_millis = (unsigned)(v * 1000 + 0.5);
            break;
        }
        case O_SUITE: bo.base_suite = optarg; break;
        case O_VARIANT: bo.base_variant = optarg; break;
        case O_MIRROR: bo.base_mirror = optarg; break;
        case O_PY_PINS:
            if (!*optarg)
                return cli_usage_error("build", "--python-pins needs a file");
            bo.python_pins = optarg;
            break;
        case O_PY_MIRROR:
            if (!*optarg)
                return cli_usage_error("build", "--python-mirror needs a URL");
            bo.python_mirror = optarg;
            break;
        default: return cli_usage_error("build", "unknown option");
        }
    }
    if (file ? optind != argc : optind + 1 != argc)
        return cli_usage_error("build", file ? "-f names the recipe: no other argument"
                               : optind == argc ? "missing RECIPE.yaml"
                                                : "expected one recipe file");
    const char *path = file ? file : argv[optind];
    if (cli_registry_finish(&ropts, "build"))
        return CLI_EXIT_USAGE;
    bo.tags = tags;
    bo.n_tags = ntags;
    bo.labels = labels;
    bo.n_labels = nlabels;
    cli_install_sinks(cli);
    if (cli->json) {
        cli_set_sinks(cli, cli_json_log, cli_json_progress);
    } else if (!cli->tty) {
        sbx_ctx_set_progress(cli->ctx, plain_progress, NULL);
    } else {
        cli_progress_set_indent("      "); /* under the step, like its output */
    }

    sbx_error err = SBX_ERROR_INIT;
    if (geteuid() != 0) { /* said at once, not deep in the first step */
        sbx_error_set(&err, SBX_EUNSUPPORTED, "build needs root (its steps run in OCI containers "
                      "on overlay mounts); run it as root (sbx-image digest checks a recipe "
                      "without)");
        return build_fail(NULL, &err, cli->json);
    }
    sbx_recipe *recipe = NULL;
    if (sbx_recipe_parse_file(&recipe, path, context, cli->ctx, &err) < 0)
        return build_fail(NULL, &err, cli->json);
    sbx_store *store = NULL;
    if (sbx_store_open(&store, cli->store_root, &err) < 0) {
        sbx_recipe_unref(recipe);
        return build_fail(NULL, &err, cli->json);
    }
    int rc = CLI_EXIT_OK;
    ui u = {cli->json, cli->tty, cli->quiet};
    bo.on_event = on_event;
    bo.on_output = on_output;
    bo.ud = &u;
    sbx_build_result res = SBX_BUILD_RESULT_INIT;
    sbx_push_result pushed = {0};
    int b = sbx_build(&res, store, recipe, &bo, cli->ctx, &err);
    if (b == 0 && push_ref) {
        /* the image, then the registry: a failed push keeps the built image */
        sbx_registry_options ro = SBX_REGISTRY_OPTIONS_INIT;
        sbx_registry_gate(store, &ropts); /* a private base: these credentials saw it */
        b = sbx_registry_push(&pushed, store, res.digest, push_ref, &ro, cli->ctx, &err);
        if (b == 0 && !cli->json)
            fprintf(stderr, "pushed %s\n", pushed.ref);
    }
    if (b < 0) {
        rc = build_fail(&res, &err, cli->json);
    } else if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s?}", "digest", res.digest,
                              "recipe_digest", res.recipe_digest, "base_digest", res.base_digest,
                              "steps_run", (json_int_t)res.steps_run, "steps_cached",
                              (json_int_t)res.steps_cached, "build_id", res.build_id, "pushed",
                              push_ref ? pushed.ref : NULL);
        rc = cli_print_json(stdout, o);
    } else {
        printf("%s\n", res.digest);
    }
    sbx_build_result_free(&res);
    sbx_store_free(store);
    sbx_recipe_unref(recipe);
    return rc;
}
