/* bench_store_put_read STORE FILE: put FILE into the store as a layer
 * (streamed in 1 MiB reads), then read it back through the layer reader.
 * Prints one line: put_s read_s peak_rss_kib diff_id bytes cpu_s (user+sys,
 * all threads). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sbx/store.h"
#include "sbx_common.h"

static double now(void) { return (double)sbx__now_monotonic_ns() / 1e9; }

static int die(const sbx_error *err)
{
    char buf[2048];
    fprintf(stderr, "bench_store_put_read: %s\n", sbx_error_format(err, buf, sizeof buf));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_store_put_read STORE FILE\n");
        return 2;
    }
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, argv[1], &err) < 0)
        return die(&err);
    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(argv[2]);
        return 1;
    }
    static char buf[1 << 20];
    double t0 = now();
    sbx_layer_writer *w = NULL;
    if (sbx_store_layer_begin(&w, s, NULL, &err) < 0)
        return die(&err);
    ssize_t n;
    while ((n = sbx__read_full(fd, buf, sizeof buf)) > 0)
        if (sbx_layer_writer_write(w, buf, (size_t)n, &err) < 0)
            return die(&err);
    close(fd);
    char diff[SBX_DIGEST_BUFSZ];
    if (sbx_layer_writer_commit(w, diff, &err) < 0)
        return die(&err);
    double t1 = now();
    sbx_layer_reader *r = NULL;
    if (sbx_store_layer_open(&r, s, diff, &err) < 0)
        return die(&err);
    size_t got;
    unsigned long long total = 0;
    do {
        if (sbx_layer_reader_read(r, buf, sizeof buf, &got, &err) < 0)
            return die(&err);
        total += got;
    } while (got > 0);
    sbx_layer_reader_free(r);
    double t2 = now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("%.3f %.3f %ld %s %llu %.3f\n", t1 - t0, t2 - t1, ru.ru_maxrss, diff, total, cpu);
    sbx_store_free(s);
    return 0;
}
