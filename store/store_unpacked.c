/* The unpacked layer cache, <root>/unpacked/<hex>: how much disk it takes
 * (df) and how much removing some of it frees (gc).
 *
 * The store never reads inside these trees; consumers (the builder, unpack)
 * fill them.  Sizes are common/du.c's: st_blocks * 512, each inode once
 * (tar hardlinks share inodes inside a tree, and `sbx-image unpack --link`
 * trees outside the store share them with the cache), and gc counts an
 * inode as freed only when it has seen every one of its links. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "store_internal.h"

int sbx_store__unpacked_bytes(sbx_store *s, uint64_t *out, sbx_error *err)
{
    *out = 0;
    int dfd = openat(s->root_fd, "unpacked", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return errno == ENOENT ? 0 : sbx_store__io_err(s, err, errno, "list unpacked layers");
    }
    sbx__du *du = sbx__du_new();
    int rc = du ? 0 : -1;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char rel[320];
        snprintf(rel, sizeof rel, "unpacked/%s", de->d_name);
        rc = sbx__du_add_at(du, s->root_fd, rel);
    }
    closedir(d);
    if (rc == 0)
        *out = sbx__du_total(du);
    sbx__du_free(du);
    return rc == 0 ? 0 : sbx_error_set(err, SBX_ENOMEM, "size unpacked layers: out of memory");
}
