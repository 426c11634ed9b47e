/* Libraries sbx-image opens on first use instead of linking (libcurl,
 * libarchive): each brings a chain of shared libraries whose mapping and
 * relocation would cost every process start, also the many that never
 * touch them.  Their forwarders (registry/curl_lazy.c,
 * rootfs/archive_lazy.c) fill a table of function pointers through these. */
#include <dlfcn.h>
#include <stdio.h>

#include "sbx_common.h"

void *sbx__lib_open(const char *soname, char *why, size_t why_len)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        if (e)
            snprintf(why, why_len, "%s", e);
        else
            snprintf(why, why_len, "%s: not found", soname);
    }
    return h;
}

bool sbx__lib_sym(void *h, const char *soname, const char *sym, void **slot, char *why,
                 size_t why_len)
{
    *slot = dlsym(h, sym);
    if (!*slot)
        snprintf(why, why_len, "%s has no %s", soname, sym);
    return *slot != NULL;
}
