/* sbx_rootfs_unpack: an image in the store -> a root filesystem directory.
 *
 * The image is looked up in the store only (never a registry) and leased
 * for the whole call, so gc cannot take its layers away.  Each layer is
 * unpacked once into the store's cache (sbx_rootfs_layer_unpack; concurrent
 * unpackers of one layer end with one dir), then rootfs_merge.c flattens
 * them top to bottom into a sibling temp dir of the destination, which is
 * synced and renamed into place.
 *
 * Temp dirs are named ".<name>.sbx-unpack-<pid>-<n>" beside the destination
 * and flock'ed by their maker while it works; one whose lock can be taken
 * belongs to a dead process and is removed by the next unpack there.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "rootfs_internal.h"
#include "outdir.h"
#include "sbx_common.h"
#include "sbx/context.h"
#include "sbx/rootfs.h"

/* ---- the destination and its temp dir ------------------------------------- */

/* dest must be absent or an empty directory. */
static int check_dest(rfs_outdir *d, sbx_error *err)
{
    struct stat st;
    if (lstat(d->path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return sbx_error_sys(err, SBX_EIO, errno, "unpacking: checking '%s'", d->path);
    }
    if (!S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_EINVAL, "unpacking: '%s' exists and is not a directory",
                             d->path);
    DIR *dd = opendir(d->path);
    if (!dd)
        return sbx_error_sys(err, SBX_EIO, errno, "unpacking: reading '%s'", d->path);
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(dd)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = false;
    closedir(dd);
    if (!empty)
        return sbx_error_set(err, SBX_EINVAL,
                             "unpacking: '%s' is not empty (give a new or empty directory)",
                             d->path);
    d->existed = true;
    return 0;
}

/* ---- the work ---------------------------------------------------------------- */

static int check_cancel(const sbx_ctx *ctx, sbx_error *err)
{
    if (sbx__check_cancel(ctx, err) < 0)
        return sbx_error_wrap(err, "unpacking");
    return 0;
}

int rfs_unpack_layers(char ***dirs_out, sbx_store *s, const sbx_image *in, sbx_ctx *ctx,
                      sbx_error *err)
{
    char **dirs = calloc(in->nlayers + 1, sizeof *dirs);
    if (!dirs)
        return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    *dirs_out = dirs;
    for (size_t i = 0; i < in->nlayers; i++) {
        const char *diff_id = in->layers[i].diff_id;
        char id[96], path[4096];
        int r = check_cancel(ctx, err);
        if (r < 0)
            return r;
        snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, in->nlayers, diff_id);
        if (!sbx__digest_valid(diff_id))
            return sbx_error_set(err, SBX_ENOTFOUND, "unpacking: layer %zu has no diff_id in the "
                                 "image config", i + 1);
        int have = sbx_store_has_layer(s, diff_id, err);
        if (have < 0)
            return sbx_error_wrap(err, "unpacking");
        if (have == 0)
            return sbx_error_set(err, SBX_ENOTFOUND,
                                 "unpacking: layer %zu/%zu '%s' is not in the store (pull the "
                                 "image again: sbx-image pull)", i + 1, in->nlayers, diff_id);
        r = sbx_store_layer_unpacked_path(s, diff_id, path, sizeof path, err);
        if (r < 0)
            return r;
        bool cached = sbx_rootfs_layer_is_current(path); /* else another boot's: unpack again */
        sbx__progress(ctx, id, cached ? "cached" : "unpack", 0, in->layers[i].size);
        if (!cached && (r = sbx_rootfs_layer_unpack(path, sizeof path, s, diff_id, ctx, err)) < 0)
            return sbx_error_wrap(err, "unpacking layer %zu/%zu", i + 1, in->nlayers);
        if (!(dirs[i] = strdup(path)))
            return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    }
    return 0;
}

static int merge_into_tmp(sbx_rootfs_result *out, const rfs_outdir *d, char **dirs, size_t n,
                          const sbx_rootfs_options *o, sbx_error *err)
{
    /* overlayfs order: top-most first */
    const char **top_first = calloc(n + 1, sizeof *top_first);
    if (!top_first)
        return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    for (size_t i = 0; i < n; i++)
        top_first[i] = dirs[n - 1 - i];
    sbx__progress(d->ctx, "rootfs", "merge", 0, 0);
    int r = n ? sbx_rootfs_merge(d->tmp, top_first, n, o->link, &out->stats, d->ctx, err) : 0;
    free(top_first);
    if (r == 0 && !n && chmod(d->tmp, 0755) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "unpacking: setting mode of '%s'", d->tmp);
    if (r == 0 && !o->no_sync && syncfs(d->lock_fd) < 0)
        r = sbx_error_sys(err, sbx__errno_code(errno), errno, "unpacking: syncing '%s'", d->tmp);
    return r < 0 ? r : check_cancel(d->ctx, err);
}

static int write_config(const sbx_image *in, const char *path, sbx_error *err)
{
    int r = sbx__write_file_atomic(path, in->config_raw, in->config_len, 0644, err);
    if (r < 0)
        sbx_error_wrap(err, "unpacking: writing the image config to '%s'", path);
    return r;
}

static int run(sbx_rootfs_result *out, sbx_store *s, const char *image, rfs_outdir *d,
               const sbx_rootfs_options *o, sbx_error *err)
{
    sbx_image *in = NULL;
    int r = rfs_open_image(&in, s, image, o->platform, "unpacking", err);
    if (r < 0)
        return r;
    char **dirs = NULL;
    bool config_written = false;
    snprintf(out->digest, sizeof out->digest, "%s", in->digest);
    snprintf(out->config, sizeof out->config, "%s", in->config_digest);
    out->layers = in->nlayers;
    if ((r = rfs_unpack_layers(&dirs, s, in, d->ctx, err)) < 0)
        goto out;
    if ((r = rfs_outdir_make_tmp(d, err)) < 0)
        goto out;
    if ((r = merge_into_tmp(out, d, dirs, in->nlayers, o, err)) < 0)
        goto out;
    if (o->config_path) {
        if ((r = write_config(in, o->config_path, err)) < 0)
            goto out;
        config_written = true;
    }
    if (rename(d->tmp, d->path) < 0) {
        int e = errno;
        r = e == ENOTEMPTY || e == EEXIST
                ? sbx_error_set(err, SBX_EINVAL, "unpacking: '%s' was filled by someone else "
                                "meanwhile", d->path)
                : sbx_error_sys(err, SBX_EIO, e, "unpacking: renaming '%s' to '%s'", d->tmp,
                                d->path);
        goto out;
    }
    free(d->tmp);
    d->tmp = NULL;
    sbx_error fe = SBX_ERROR_INIT;
    if (!o->no_sync)
        sbx__fsync_dir(d->parent, &fe);
    sbx_store_touch(s, out->digest, &fe);
    sbx__progress(d->ctx, "rootfs", "done", out->stats.bytes, out->stats.bytes);
out:
    if (r < 0 && config_written)
        unlink(o->config_path);
    rfs_strv_free(dirs);
    sbx_image_close(in);
    return r;
}

struct call {
    sbx_rootfs_result *out;
    sbx_store *s;
    const char *image;
    const sbx_rootfs_options *o;
};

static int work(rfs_outdir *d, void *ud, sbx_error *err)
{
    struct call *c = ud;
    return run(c->out, c->s, c->image, d, c->o, err);
}

int sbx_rootfs_unpack(sbx_rootfs_result *out, sbx_store *store, const char *image,
                      const char *dir, const sbx_rootfs_options *opts, sbx_ctx *ctx,
                      sbx_error *err)
{
    static const sbx_rootfs_options defaults = SBX_ROOTFS_OPTIONS_INIT;
    const sbx_rootfs_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    if (!image || !*image || !dir || !*dir)
        return sbx_error_set(err, SBX_EINVAL, "unpacking: an image and a directory are needed");
    struct call c = {out, store, image, o};
    return rfs_outdir_run(dir, "unpacking", "unpack", check_dest, work, &c, ctx, err);
}
