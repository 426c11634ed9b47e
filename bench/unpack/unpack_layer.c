/* bench_unpack_layer: drive sbx-image's layer unpack for bench/unpack/run.sh.
 *
 *   bench_unpack_layer put STORE TAR      store TAR as a layer; prints its diff_id
 *   bench_unpack_layer store STORE DIFFID unpack the stored layer (zstd -> dir)
 *                                         into STORE/unpacked/<hex>; prints seconds
 *   bench_unpack_layer tar TAR DEST       unpack the plain tar TAR into DEST;
 *                                         prints seconds
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sbx/rootfs.h"
#include "sbx/store.h"
#include "sbx_common.h"

static double now(void) { return (double)sbx__now_monotonic_ns() / 1e9; }

static int die(const sbx_error *err)
{
    char buf[2048];
    fprintf(stderr, "bench_unpack_layer: %s\n", sbx_error_format(err, buf, sizeof buf));
    return 1;
}

static int put(const char *root, const char *tar)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) < 0)
        return die(&err);
    int fd = open(tar, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(tar);
        return 1;
    }
    sbx_layer_writer *w = NULL;
    if (sbx_store_layer_begin(&w, s, NULL, &err) < 0)
        return die(&err);
    static char buf[1 << 20];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        if (sbx_layer_writer_write(w, buf, (size_t)n, &err) < 0)
            return die(&err);
    if (n < 0) {
        perror(tar);
        return 1;
    }
    char diff_id[SBX_DIGEST_BUFSZ];
    if (sbx_layer_writer_commit(w, diff_id, &err) < 0)
        return die(&err);
    close(fd);
    sbx_store_free(s);
    printf("%s\n", diff_id);
    return 0;
}

static int from_store(const char *root, const char *diff_id)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) < 0)
        return die(&err);
    char path[4096];
    double t0 = now();
    if (sbx_rootfs_layer_unpack(path, sizeof path, s, diff_id, NULL, &err) < 0)
        return die(&err);
    printf("%.3f\n", now() - t0);
    sbx_store_free(s);
    return 0;
}

static int from_tar(const char *tar, const char *dest)
{
    sbx_error err = SBX_ERROR_INIT;
    int fd = open(tar, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(tar);
        return 1;
    }
    double t0 = now();
    if (sbx_rootfs_unpack_tar_fd(fd, dest, &err) < 0)
        return die(&err);
    printf("%.3f\n", now() - t0);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "put"))
        return put(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "store"))
        return from_store(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "tar"))
        return from_tar(argv[2], argv[3]);
    fprintf(stderr, "usage: bench_unpack_layer put STORE TAR | store STORE DIFFID | "
                    "tar TAR DEST\n");
    return 2;
}
