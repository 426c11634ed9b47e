#include <stdarg.h>
#include <stdio.h>

#include "sbx_common.h"

static sbx_log_fn g_log;
static void *g_log_ud;
static sbx_log_level g_level = SBX_LOG_INFO;
static sbx_progress_fn g_progress;
static void *g_progress_ud;

void sbx_log_set_sink(sbx_log_fn fn, void *ud) { g_log = fn; g_log_ud = ud; }
void sbx_log_set_level(sbx_log_level min) { g_level = min; }
void sbx_progress_set_sink(sbx_progress_fn fn, void *ud) { g_progress = fn; g_progress_ud = ud; }

void sbx_log(sbx_log_level level, const char *fmt, ...)
{
    if (!g_log || level < g_level)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log(g_log_ud, level, buf);
}

void sbx_progress_emit(const char *id, const char *phase, uint64_t done, uint64_t total)
{
    if (!g_progress)
        return;
    sbx_progress p = {.id = id, .phase = phase, .done = done, .total = total};
    g_progress(g_progress_ud, &p);
}
