/* Log and progress sinks for the terminal.  On a tty, progress redraws one
 * status line per item in place; otherwise each phase change is one plain line. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sbx/context.h"

static int g_tty;
static int g_line_open;
static char g_last_id[128];
static char g_last_phase[32];
static const char *g_indent = "";

void cli_progress_done(void)
{
    if (g_line_open) {
        fputc('\n', stderr);
        g_line_open = 0;
    }
}

void cli_progress_clear(void)
{
    if (g_line_open) {
        fputs("\r\033[K", stderr);
        g_line_open = 0;
    }
}

void cli_progress_set_indent(const char *indent) { g_indent = indent ? indent : ""; }

const char *cli_log_level_name(sbx_log_level level)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    return (unsigned)level < sizeof names / sizeof names[0] ? names[level] : "log";
}

void cli_print_log(sbx_log_level level, const char *msg)
{
    if (level == SBX_LOG_INFO)
        fprintf(stderr, "%s\n", msg);
    else
        fprintf(stderr, "%s: %s\n", cli_log_level_name(level), msg);
}

int cli_id_width(const char *id) { return strncmp(id, "sha256:", 7) ? (int)strlen(id) : 19; }

static void log_sink(void *ud, sbx_log_level level, const char *op_id, const char *msg)
{
    (void)ud;
    (void)op_id;
    cli_progress_done();
    cli_print_log(level, msg);
}

static void progress_sink(void *ud, const sbx_progress *p)
{
    (void)ud;
    char done[32], total[32];
    cli_human_bytes(p->done, done, sizeof done);
    cli_human_bytes(p->total, total, sizeof total);
    int same = !strcmp(g_last_id, p->id) && !strcmp(g_last_phase, p->phase);
    /* a digest short, as everywhere else on stderr (on a terminal the line
     * then fits and redraws in place instead of wrapping) */
    int idlen = cli_id_width(p->id);
    if (g_tty) {
        if (strcmp(g_last_id, p->id) != 0)
            cli_progress_done();
        if (p->total)
            fprintf(stderr, "\r\033[K%s%.*s: %s %s / %s (%d%%)", g_indent, idlen, p->id, p->phase,
                    done, total, (int)(p->done * 100 / p->total));
        else
            fprintf(stderr, "\r\033[K%s%.*s: %s %s", g_indent, idlen, p->id, p->phase,
                    p->done ? done : "");
        g_line_open = 1;
    } else if (!same) {
        fprintf(stderr, "%.*s: %s%s%s\n", idlen, p->id, p->phase, p->total ? " " : "",
                p->total ? total : "");
    }
    snprintf(g_last_id, sizeof g_last_id, "%s", p->id);
    snprintf(g_last_phase, sizeof g_last_phase, "%s", p->phase);
    fflush(stderr);
}

/* --json: library logs and progress as events too, so every stderr line is
 * one JSON object. */
void cli_json_log(void *ud, sbx_log_level level, const char *op_id, const char *msg)
{
    (void)ud;
    (void)op_id;
    cli_print_json(stderr, json_pack("{s:s, s:s, s:s}", "event", "log", "level",
                                     cli_log_level_name(level), "message", msg));
}

void cli_json_progress(void *ud, const sbx_progress *p)
{
    (void)ud;
    cli_print_json(stderr, json_pack("{s:s, s:s, s:s, s:I, s:I}", "event", "progress", "id",
                                     p->id, "phase", p->phase, "done", (json_int_t)p->done,
                                     "total", (json_int_t)p->total));
}

void cli_set_sinks(sbx_cli *cli, sbx_log_fn log, sbx_progress_fn progress)
{
    if (cli->json) { /* every verb: stderr is JSON lines too */
        log = cli_json_log;
        progress = cli_json_progress;
    }
    sbx_ctx_set_log(cli->ctx, log, NULL,
                    cli->verbose ? SBX_LOG_DEBUG : cli->quiet ? SBX_LOG_WARN : SBX_LOG_INFO);
    sbx_ctx_set_progress(cli->ctx, cli->quiet && !cli->verbose ? NULL : progress, NULL);
}

void cli_install_sinks(sbx_cli *cli)
{
    g_tty = cli->tty;
    cli_set_sinks(cli, log_sink, progress_sink);
}
