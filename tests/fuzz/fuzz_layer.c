/* libFuzzer target for layer unpack: the bytes as a layer tar (any format
 * libarchive reads) extracted into a fresh directory by the same code that
 * fills the store's unpacked-layer cache (a chrooted child; traversal,
 * symlink and hardlink escapes refused).  Nothing may appear outside the
 * directory, and a refused layer must leave nothing at all. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbx/rootfs.h"

static char g_root[160], g_dest[200], g_canary[200];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/sbx-fuzz-layer-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_root))
        abort();
    snprintf(g_dest, sizeof g_dest, "%s/out/layer", g_root);
    snprintf(g_canary, sizeof g_canary, "%s/out", g_root);
    return 0;
}

static size_t count_root(void)
{
    DIR *d = opendir(g_root);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[300];
    snprintf(path, sizeof path, "%s/in.tar", g_root);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    FILE *in = fopen(path, "rb");
    if (!in)
        abort();
    unlink(path);
    sbx_error err = SBX_ERROR_INIT;
    int rc = sbx_rootfs_unpack_tar_fd(fileno(in), g_dest, &err);
    fclose(in);
    if (rc < 0 && (err.code == 0 || !err.msg[0]))
        abort();
    /* only out/ (the dest's parent) may exist under the root */
    if (count_root() > 1)
        abort();
    struct stat st;
    if (rc < 0 && lstat(g_dest, &st) == 0)
        abort(); /* a refused layer left a tree */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_canary);
    if (system(cmd) != 0)
        abort();
    return 0;
}
