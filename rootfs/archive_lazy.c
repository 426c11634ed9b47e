/* Forwarders from the archive_* names in archive_lazy.h to libarchive, which
 * is opened with dlopen on first use (see archive_lazy.h for why).
 *
 * The table is filled once, under pthread_once, and never changes after; the
 * library stays loaded for the life of the process, so a child forked after
 * the load (the unpacker, which chroots) keeps using it.  Every forwarder
 * checks that the load succeeded and otherwise gives the answer listed in
 * BLD_ARCHIVE_FUNCTIONS. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "archive_lazy.h"
#include "sbx_common.h"

/* libarchive's soname has been 13 since 3.0 (2011). */
#define BLD_ARCHIVE_SONAME "libarchive.so.13"

/* Each pointer has the type of the prototype in <archive.h>/<archive_entry.h>. */
#define FIELD(ret, name, params, args, fail) __typeof__(name) *name;
#define FIELD_VOID(name, params, args) __typeof__(name) *name;
static struct {
    BLD_ARCHIVE_FUNCTIONS(FIELD, FIELD_VOID)
    __typeof__(archive_set_error) *archive_set_error;
} g_fn;
#undef FIELD
#undef FIELD_VOID

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_loaded;
static char g_why[512];

static bool resolve(void *handle, void **slot, const char *sym)
{
    return sbx__lib_sym(handle, BLD_ARCHIVE_SONAME, sym, slot, g_why, sizeof g_why);
}

#define RESOLVE(ret, name, params, args, fail)                                                \
    if (!resolve(h, (void **)&g_fn.name, #name))                                              \
        return;
#define RESOLVE_VOID(name, params, args) RESOLVE(void, name, params, args, )

static void load_once(void)
{
    void *h = sbx__lib_open(BLD_ARCHIVE_SONAME, g_why, sizeof g_why);
    if (!h)
        return;
    BLD_ARCHIVE_FUNCTIONS(RESOLVE, RESOLVE_VOID)
    RESOLVE(void, archive_set_error, , , )
    g_loaded = true;
}
#undef RESOLVE
#undef RESOLVE_VOID

static bool loaded(void)
{
    pthread_once(&g_once, load_once);
    return g_loaded;
}

int rfs_archive_load(sbx_error *err)
{
    if (!loaded())
        return sbx_error_set(err, SBX_EINTERNAL, "loading libarchive: %s", g_why);
    return 0;
}

/* The definitions below carry the asm labels of archive_lazy.h, so the
 * compiler checks each against libarchive's prototype. */
#define FORWARD(ret, name, params, args, fail)                                                \
    ret(name) params { return loaded() ? g_fn.name args : (fail); }
#define FORWARD_VOID(name, params, args)                                                      \
    void(name) params                                                                         \
    {                                                                                         \
        if (loaded())                                                                         \
            g_fn.name args;                                                                   \
    }
BLD_ARCHIVE_FUNCTIONS(FORWARD, FORWARD_VOID)
#undef FORWARD
#undef FORWARD_VOID

/* A va_list cannot be passed on to a variadic function: format here and hand
 * libarchive the finished message.  Its own messages are short; a longer one
 * is cut, not lost. */
void (archive_set_error)(struct archive *a, int err, const char *fmt, ...)
{
    if (!loaded())
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_fn.archive_set_error(a, err, "%s", msg);
}
