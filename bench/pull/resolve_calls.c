/* bench_resolve_calls: sbx_registry_resolve() as the control plane calls it,
 * from one long-lived process, for bench/pull/run.sh.
 *
 *   bench_resolve_calls STORE REF N
 *
 * Prints three lines of seconds, each "<name> <median> <min> <max>":
 *   first     the process's first call (loads libcurl, makes a client;
 *             cache off), once
 *   uncached  N calls with the cache off (resolve_ttl = 0: a HEAD each)
 *   cached    N calls answered from the store's resolve cache
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/registry.h"
#include "sbx/store.h"
#include "sbx_common.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_double);
    double median = (n % 2) ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    printf("%s %.6f %.6f %.6f\n", name, median, t[0], t[n - 1]);
}

/* Time n calls of resolve with the given TTL into t; 0 or -1 on error. */
static int run(double *t, size_t n, const char *ref, sbx_registry_options *o, int64_t ttl)
{
    o->resolve_ttl = ttl;
    for (size_t i = 0; i < n; i++) {
        char digest[SBX_DIGEST_BUFSZ];
        sbx_error err = SBX_ERROR_INIT;
        uint64_t t0 = sbx__now_monotonic_ns();
        if (sbx_registry_resolve(digest, ref, o, NULL, &err) < 0) {
            char buf[2048];
            fprintf(stderr, "bench_resolve_calls: %s\n", sbx_error_format(&err, buf, sizeof buf));
            return -1;
        }
        t[i] = (double)(sbx__now_monotonic_ns() - t0) / 1e9;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[3]) < 1) {
        fprintf(stderr, "usage: bench_resolve_calls STORE REF N\n");
        return 2;
    }
    const char *root = argv[1], *ref = argv[2];
    size_t n = (size_t)atoi(argv[3]);
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) < 0) {
        char buf[2048];
        fprintf(stderr, "bench_resolve_calls: %s\n", sbx_error_format(&err, buf, sizeof buf));
        return 1;
    }
    sbx_registry_options o = SBX_REGISTRY_OPTIONS_INIT;
    o.store = s;
    double first, *t = calloc(n, sizeof *t);
    int rc = 1;
    if (!t || run(&first, 1, ref, &o, 0) < 0)
        goto out;
    report("first", &first, 1);
    if (run(t, n, ref, &o, 0) < 0)
        goto out;
    report("uncached", t, n);
    /* one call to fill the cache, then only hits */
    if (run(t, 1, ref, &o, 3600) < 0 || run(t, n, ref, &o, 3600) < 0)
        goto out;
    report("cached", t, n);
    rc = 0;
out:
    free(t);
    sbx_store_free(s);
    return rc;
}
