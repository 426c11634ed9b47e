/* Forwarders from the curl_* names in curl_lazy.h to libcurl, which is opened
 * with dlopen on first use (see curl_lazy.h for why).
 *
 * The table is filled once, under pthread_once, and never changes after; the
 * library stays loaded for the life of the process.  Every forwarder checks
 * that the load succeeded and otherwise answers as libcurl does when it is
 * out of resources (NULL, CURLE_FAILED_INIT, ...), so a caller that skipped
 * reg_global_init gets an error, not a crash. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "curl_lazy.h"
#include "sbx_common.h"

/* libcurl's soname has been 4 since 2006 (7.16). */
#define REG_CURL_SONAME "libcurl.so.4"

/* Each pointer has the type of the prototype in <curl/curl.h>. */
static struct {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_reset) *easy_reset;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_easy_escape) *easy_escape;
    __typeof__(curl_free) *free;
    __typeof__(curl_getdate) *getdate;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
    __typeof__(curl_url) *url;
    __typeof__(curl_url_cleanup) *url_cleanup;
    __typeof__(curl_url_get) *url_get;
    __typeof__(curl_url_set) *url_set;
} g_fn;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_loaded;
static char g_why[512];

#define RESOLVE(handle, field, sym)                                                    \
    do {                                                                               \
        if (!sbx__lib_sym(handle, REG_CURL_SONAME, #sym, (void **)&g_fn.field, g_why,   \
                         sizeof g_why))                                                \
            return;                                                                    \
    } while (0)

static void load_once(void)
{
    void *h = sbx__lib_open(REG_CURL_SONAME, g_why, sizeof g_why);
    if (!h)
        return;
    RESOLVE(h, global_init, curl_global_init);
    RESOLVE(h, easy_init, curl_easy_init);
    RESOLVE(h, easy_cleanup, curl_easy_cleanup);
    RESOLVE(h, easy_reset, curl_easy_reset);
    RESOLVE(h, easy_setopt, curl_easy_setopt);
    RESOLVE(h, easy_getinfo, curl_easy_getinfo);
    RESOLVE(h, easy_perform, curl_easy_perform);
    RESOLVE(h, easy_strerror, curl_easy_strerror);
    RESOLVE(h, easy_escape, curl_easy_escape);
    RESOLVE(h, free, curl_free);
    RESOLVE(h, getdate, curl_getdate);
    RESOLVE(h, slist_append, curl_slist_append);
    RESOLVE(h, slist_free_all, curl_slist_free_all);
    RESOLVE(h, url, curl_url);
    RESOLVE(h, url_cleanup, curl_url_cleanup);
    RESOLVE(h, url_get, curl_url_get);
    RESOLVE(h, url_set, curl_url_set);
    g_loaded = true;
}

static bool loaded(void)
{
    pthread_once(&g_once, load_once);
    return g_loaded;
}

int reg_curl_load(sbx_error *err)
{
    if (!loaded())
        return sbx_error_set(err, SBX_EINTERNAL, "loading libcurl: %s", g_why);
    return 0;
}

/* The definitions below carry the asm labels of curl_lazy.h, so the compiler
 * checks each against curl's prototype. */

CURLcode (curl_global_init)(long flags)
{
    return loaded() ? g_fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *(curl_easy_init)(void) { return loaded() ? g_fn.easy_init() : NULL; }

/* A handle exists only if the library loaded. */
void (curl_easy_cleanup)(CURL *curl)
{
    if (curl)
        g_fn.easy_cleanup(curl);
}

void (curl_easy_reset)(CURL *curl)
{
    if (curl)
        g_fn.easy_reset(curl);
}

/* The variadic argument is forwarded with the type libcurl itself reads for
 * the option's range (lib/setopt.c): long, object pointer, function pointer,
 * curl_off_t, or a struct curl_blob pointer. */
CURLcode (curl_easy_setopt)(CURL *curl, CURLoption option, ...)
{
    if (!curl || !loaded())
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, option);
    CURLcode rc;
    if (option < CURLOPTTYPE_OBJECTPOINT)
        rc = g_fn.easy_setopt(curl, option, va_arg(ap, long));
    else if (option < CURLOPTTYPE_FUNCTIONPOINT)
        rc = g_fn.easy_setopt(curl, option, va_arg(ap, void *));
    else if (option < CURLOPTTYPE_OFF_T)
        rc = g_fn.easy_setopt(curl, option, va_arg(ap, void (*)(void)));
    else if (option < CURLOPTTYPE_BLOB)
        rc = g_fn.easy_setopt(curl, option, va_arg(ap, curl_off_t));
    else
        rc = g_fn.easy_setopt(curl, option, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

/* Every CURLINFO_* takes a pointer to where the answer goes. */
CURLcode (curl_easy_getinfo)(CURL *curl, CURLINFO info, ...)
{
    if (!curl || !loaded())
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode rc = g_fn.easy_getinfo(curl, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode (curl_easy_perform)(CURL *curl)
{
    return curl && loaded() ? g_fn.easy_perform(curl) : CURLE_FAILED_INIT;
}

const char *(curl_easy_strerror)(CURLcode code)
{
    return loaded() ? g_fn.easy_strerror(code) : "libcurl is not loaded";
}

char *(curl_easy_escape)(CURL *handle, const char *string, int length)
{
    return loaded() ? g_fn.easy_escape(handle, string, length) : NULL;
}

void (curl_free)(void *p)
{
    if (p)
        g_fn.free(p);
}

time_t (curl_getdate)(const char *p, const time_t *unused)
{
    return loaded() ? g_fn.getdate(p, unused) : -1;
}

struct curl_slist *(curl_slist_append)(struct curl_slist *list, const char *data)
{
    return loaded() ? g_fn.slist_append(list, data) : NULL;
}

void (curl_slist_free_all)(struct curl_slist *list)
{
    if (list)
        g_fn.slist_free_all(list);
}

CURLU *(curl_url)(void) { return loaded() ? g_fn.url() : NULL; }

void (curl_url_cleanup)(CURLU *handle)
{
    if (handle)
        g_fn.url_cleanup(handle);
}

CURLUcode (curl_url_get)(CURLU *handle, CURLUPart what, char **part, unsigned int flags)
{
    return handle && loaded() ? g_fn.url_get(handle, what, part, flags) : CURLUE_BAD_HANDLE;
}

CURLUcode (curl_url_set)(CURLU *handle, CURLUPart what, const char *part, unsigned int flags)
{
    return handle && loaded() ? g_fn.url_set(handle, what, part, flags) : CURLUE_BAD_HANDLE;
}
