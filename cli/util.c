#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sbx/context.h"
#include "sbx/registry.h"
#include "sbx/rootfs.h"

const sbx_layer_tap cli_unpack_tap = {sbx_rootfs_tap_begin, sbx_rootfs_tap_write,
                                      sbx_rootfs_tap_end, NULL};

int cli_pull_unpacking(sbx_cli *cli, sbx_store *s, const char *ref,
                       const sbx_registry_options *ro, const char *platform, sbx_error *err)
{
    sbx_registry_options o = *ro;
    o.store = s;
    o.platform = platform;
    o.layer_tap = &cli_unpack_tap;
    sbx_pull_result r;
    memset(&r, 0, sizeof r);
    int rc = sbx_registry_pull(&r, ref, &o, cli->ctx, err);
    sbx_pull_result_free(&r);
    return rc;
}

/* --json anywhere on the line: errors too are one JSON object on stderr */
static int g_json_errors;

json_t *cli_error_json(const sbx_error *err)
{
    char buf[2048];
    return json_pack("{s:s, s:s, s:s, s:s}", "event", "error", "message",
                     sbx_error_format(err, buf, sizeof buf), "code",
                     sbx_error_code_name(err->code), "where", err->where);
}

int cli_store_empty(void)
{
    fprintf(stderr, "sbx-image: --store needs a directory (leave it out for the default "
                    "store)\n");
    return CLI_EXIT_USAGE;
}

int cli_common_opt(sbx_cli *cli, int c, const char *arg)
{
    switch (c) {
    case 'J': cli->json = g_json_errors = 1; cli_install_sinks(cli); return 1;
    case 'S':
        if (!*arg) /* a usage error, as a missing value is: never the default store */
            exit(cli_store_empty());
        cli->store_root = arg;
        return 1;
    case 'v': cli->verbose = 1; cli_install_sinks(cli); return 1;
    case 'q': cli->quiet = 1; cli_install_sinks(cli); return 1;
    default: return 0;
    }
}

static volatile sig_atomic_t g_signal;
static sbx_ctx *volatile g_signal_ctx;

int cli_fail_status(const sbx_error *err)
{
    return err->code == SBX_ECANCELED && g_signal ? 128 + g_signal : CLI_EXIT_FAIL;
}

void cli_set_json_errors(int on) { g_json_errors = on; }

int cli_fail(const sbx_error *err)
{
    char buf[2048];
    cli_progress_done();
    if (g_json_errors) {
        json_t *o = cli_error_json(err);
        if (o && err->code == SBX_ECANCELED && g_signal)
            json_object_set_new(o, "signal", json_string(strsignal(g_signal)));
        cli_print_json(stderr, o);
        return cli_fail_status(err);
    }
    fprintf(stderr, "sbx-image: error: %s\n", sbx_error_format(err, buf, sizeof buf));
    if (err->code == SBX_ECANCELED && g_signal)
        fprintf(stderr, "sbx-image: interrupted by %s\n", strsignal(g_signal));
    return cli_fail_status(err);
}

int cli_draws_in_place(void)
{
    const char *term = getenv("TERM"), *no_color = getenv("NO_COLOR");
    return isatty(STDERR_FILENO) && term && *term && strcmp(term, "dumb") != 0 &&
           !(no_color && *no_color);
}

void cli_debug(const sbx_cli *cli, const char *fmt, ...)
{
    if (!cli->verbose)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cli_print_log(SBX_LOG_DEBUG, buf);
}

int cli_parallel_opt(const char *arg, const char *verb, unsigned *out)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (*end || end == arg || n < 1 || n > 8)
        return cli_usage_error(verb, "--parallel wants a number from 1 to 8, not '%s'", arg);
    *out = (unsigned)n;
    return 0;
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sbx-image %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'sbx-image %s --help' for usage.\n", verb);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_open_store(sbx_cli *cli, sbx_store **out)
{
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open_existing(out, cli->store_root, &err) < 0)
        return cli_fail(&err);
    return CLI_EXIT_OK;
}

int cli_next_opt(sbx_cli *cli, int argc, char **argv, const struct option *longopts)
{
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, CLI_COMMON_SHORT, longopts, NULL);
        if (c == 'h')
            return CLI_OPT_HELP;
        if (c == -1 || !cli_common_opt(cli, c, optarg))
            return c;
    }
}

int cli_parse_verb(sbx_cli *cli, const char *verb, const char *usage,
                   const struct option *extra, size_t nextra,
                   int (*opt)(void *ud, int c, const char *arg), void *ud, int argc, char **argv,
                   int npos, const char *what)
{
    static const struct option common[] = {CLI_COMMON_OPTS};
    struct option longopts[16] = {CLI_COMMON_OPTS};
    size_t base = sizeof common / sizeof common[0];
    char shortopts[32];
    size_t ns = (size_t)snprintf(shortopts, sizeof shortopts, "%s", CLI_COMMON_SHORT);
    for (size_t i = 0; i < nextra && base + i < sizeof longopts / sizeof longopts[0] - 1; i++) {
        longopts[base + i] = extra[i];
        /* a one-letter value is also its short option ("u:" when it takes one) */
        if (extra[i].has_arg != optional_argument && extra[i].val >= 'a' &&
            extra[i].val <= 'z' && ns + 2 < sizeof shortopts) {
            shortopts[ns++] = (char)extra[i].val;
            if (extra[i].has_arg == required_argument)
                shortopts[ns++] = ':';
            shortopts[ns] = '\0';
        }
    }
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1;) {
        if (c == 'h') {
            fputs(usage, stdout);
            return -CLI_EXIT_OK - 1;
        }
        if (cli_common_opt(cli, c, optarg))
            continue;
        int r = c == '?' ? -1 : opt ? opt(ud, c, optarg) : -1;
        if (r < 0) {
            if (r == -1)
                cli_usage_error(verb, "unknown option '%s'", argv[optind - 1]);
            return -CLI_EXIT_USAGE - 1;
        }
    }
    if (argc - optind != npos) {
        cli_usage_error(verb, "expected %s", what);
        return -CLI_EXIT_USAGE - 1;
    }
    for (int i = optind; i < argc; i++)
        if (!*argv[i]) {
            cli_usage_error(verb, "%s must not be empty", what);
            return -CLI_EXIT_USAGE - 1;
        }
    return 0;
}

int cli_need_root(const char *verb, const char *why)
{
    if (geteuid() == 0)
        return CLI_EXIT_OK;
    fprintf(stderr, "sbx-image: error: %s needs root (%s); run it as root\n", verb, why);
    return CLI_EXIT_FAIL;
}

int cli_open_store_create(sbx_cli *cli, sbx_store **out)
{
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(out, cli->store_root, &err) < 0)
        return cli_fail(&err);
    return CLI_EXIT_OK;
}

int cli_open_store_or_none(sbx_cli *cli, sbx_store **out)
{
    sbx_error err = SBX_ERROR_INIT;
    int r = sbx_store_open_existing(out, cli->store_root, &err);
    if (r == SBX_ENOTFOUND) {
        *out = NULL; /* no store there: nothing in it */
        return CLI_EXIT_OK;
    }
    return r < 0 ? cli_fail(&err) : CLI_EXIT_OK;
}

int cli_print_json(FILE *f, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        sbx_error err = SBX_ERROR_INIT;
        sbx_error_set(&err, SBX_ENOMEM, "formatting JSON: out of memory");
        return cli_fail(&err);
    }
    fprintf(f, "%s\n", s);
    free(s);
    fflush(f);
    return CLI_EXIT_OK;
}

const char *cli_human_bytes(unsigned long long n, char *buf, size_t len)
{
    static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1000 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1000;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static void on_signal(int sig)
{
    int saved = errno;
    if (g_signal) { /* asked twice: stop now */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
    sbx_ctx_cancel(g_signal_ctx); /* async-signal-safe */
    errno = saved;
}

void cli_exit_like_signal(int status)
{
    if (!g_signal || status != 128 + g_signal)
        return;
    /* Die of the signal, after the cleanup, so that a calling shell sees it
     * (bash stops a loop on an interrupted child only when it died of SIGINT). */
    fflush(stdout);
    fflush(stderr);
    signal(g_signal, SIG_DFL);
    raise(g_signal);
}

void cli_catch_signals(sbx_ctx *ctx)
{
    g_signal_ctx = ctx;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}
