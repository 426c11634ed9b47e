/* libcurl, loaded on first use.
 *
 * libcurl drags in some 30 shared libraries (OpenSSL and GnuTLS via librtmp,
 * Kerberos, LDAP, libssh2, libpsl, libidn2, ...).  Mapping and relocating them
 * costs several milliseconds at every process start, so sbx-image does not
 * link libcurl: the registry module opens "libcurl.so.4" with dlopen the
 * first time it needs it (reg_global_init, reached before any transfer).
 *
 * Code keeps calling the ordinary curl_* names with the real prototypes and
 * curl's own type-checking macros from <curl/curl.h>.  The redeclarations
 * below only give those functions another symbol name (an asm label), which
 * curl_lazy.c defines as a small forwarder to the loaded library.  A curl
 * function used here but missing from this list is a link error, not a
 * silent dependency on libcurl.  Include this header instead of
 * <curl/curl.h>. */
#ifndef SBX_REGISTRY_CURL_LAZY_H
#define SBX_REGISTRY_CURL_LAZY_H

#include <curl/curl.h>

#include "sbx/error.h"

/* Load libcurl and resolve every function below.  Idempotent and thread
 * safe; the answer of the first call is kept.  Returns 0, or SBX_EINTERNAL
 * naming the library and dlerror()'s reason. */
int reg_curl_load(sbx_error *err);

#define REG_CURL_LAZY(name) __asm__("reg_lazy_" #name)
/* Names in parentheses: curl.h defines curl_easy_setopt and
 * curl_easy_getinfo as function-like macros as well. */
CURLcode (curl_global_init)(long flags) REG_CURL_LAZY(curl_global_init);
CURL *(curl_easy_init)(void) REG_CURL_LAZY(curl_easy_init);
void (curl_easy_cleanup)(CURL *curl) REG_CURL_LAZY(curl_easy_cleanup);
void (curl_easy_reset)(CURL *curl) REG_CURL_LAZY(curl_easy_reset);
CURLcode (curl_easy_setopt)(CURL *curl, CURLoption option, ...)
    REG_CURL_LAZY(curl_easy_setopt);
CURLcode (curl_easy_getinfo)(CURL *curl, CURLINFO info, ...)
    REG_CURL_LAZY(curl_easy_getinfo);
CURLcode (curl_easy_perform)(CURL *curl) REG_CURL_LAZY(curl_easy_perform);
const char *(curl_easy_strerror)(CURLcode code) REG_CURL_LAZY(curl_easy_strerror);
char *(curl_easy_escape)(CURL *handle, const char *string, int length)
    REG_CURL_LAZY(curl_easy_escape);
void (curl_free)(void *p) REG_CURL_LAZY(curl_free);
time_t (curl_getdate)(const char *p, const time_t *unused) REG_CURL_LAZY(curl_getdate);
struct curl_slist *(curl_slist_append)(struct curl_slist *list, const char *data)
    REG_CURL_LAZY(curl_slist_append);
void (curl_slist_free_all)(struct curl_slist *list) REG_CURL_LAZY(curl_slist_free_all);
CURLU *(curl_url)(void) REG_CURL_LAZY(curl_url);
void (curl_url_cleanup)(CURLU *handle) REG_CURL_LAZY(curl_url_cleanup);
CURLUcode (curl_url_get)(CURLU *handle, CURLUPart what, char **part,
                         unsigned int flags) REG_CURL_LAZY(curl_url_get);
CURLUcode (curl_url_set)(CURLU *handle, CURLUPart what, const char *part,
                         unsigned int flags) REG_CURL_LAZY(curl_url_set);
#undef REG_CURL_LAZY

#endif
