/* Flattened lowers for deep images (a sandbox committed and resumed
 * hundreds of times).
 *
 * overlayfs stacks at most 500 lower dirs, and every lookup that misses
 * walks all of them.  A mount of an image with n > SBX_MOUNT_MAX_LOWERS
 * layers uses its bottom k layers merged into one directory (k a multiple
 * of SBX_MOUNT_FLAT_STEP, leaving between one and two steps of layers
 * above it), so it stacks at most SBX_MOUNT_MAX_LOWERS dirs.  The merged
 * dir is unpacked/flat-<hex>, hex the OCI chain id of those k layers, made
 * once (files hardlinked from the layers' cached dirs, so it costs inodes,
 * not data) and shared by every image with the same bottom k layers: a
 * chain of snapshots re-flattens once every SBX_MOUNT_FLAT_STEP commits.
 *
 * It is built in a scratch dir and renamed into place under a lock
 * (locks/flat-<16 hex>), marked with the boot id as unpacked layers are.
 * A mounter holds it with a shared flock from the moment it finds it until
 * its mount's record names it; gc removes a flat dir no live mount names
 * and no one holds. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "rootfs_internal.h"

/* ChainID(L1) = DiffID(L1); ChainID(L1..Ln) = sha256(ChainID(L1..Ln-1) + " " + DiffID(Ln)) */
static void chain_id(char out[SBX_DIGEST_BUFSZ], const sbx_image *img, size_t k)
{
    snprintf(out, SBX_DIGEST_BUFSZ, "%s", img->layers[0].diff_id);
    for (size_t i = 1; i < k; i++) {
        char buf[2 * SBX_DIGEST_BUFSZ + 2];
        int n = snprintf(buf, sizeof buf, "%s %s", out, img->layers[i].diff_id);
        sbx__sha256_buf(buf, (size_t)n, out);
    }
}

static int build_flat(const char *dest, sbx_store *s, char **dirs, size_t k, sbx_ctx *ctx,
                      sbx_error *err)
{
    sbx_scratch *sc = NULL;
    if (sbx_store_scratch_new(&sc, s, "unpack", 0, err) < 0)
        return sbx_error_wrap(err, "flattening");
    const char **top_first = calloc(k + 1, sizeof *top_first);
    _cleanup_free_ char *tree = sbx__strdup_printf("%s/tree", sbx_scratch_path(sc));
    _cleanup_free_ char *old = sbx__strdup_printf("%s/old", sbx_scratch_path(sc));
    int r = top_first && tree && old ? 0 : sbx_error_set(err, SBX_ENOMEM, "flattening: out of "
                                                         "memory");
    for (size_t i = 0; r == 0 && i < k; i++)
        top_first[i] = dirs[k - 1 - i];
    if (r == 0 && mkdir(tree, 0755) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "flattening: creating '%s'", tree);
    sbx__progress(ctx, "flatten", "merge", 0, k);
    if (r == 0)
        r = sbx_rootfs_merge(tree, top_first, k, true, NULL, ctx, err);
    if (r == 0)
        r = rfs_mark_current(tree, err);
    /* a stale one (another boot's) goes aside first */
    if (r == 0 && rename(dest, old) < 0 && errno != ENOENT)
        r = sbx_error_sys(err, SBX_EIO, errno, "flattening: moving '%s' aside", dest);
    if (r == 0 && rename(tree, dest) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "flattening: renaming into '%s'", dest);
    free(top_first);
    sbx_error fe = SBX_ERROR_INIT;
    sbx_scratch_free(sc, &fe);
    return r;
}

/* Find or make unpacked/flat-<hex> for the bottom k layers; *fd holds it. */
static int flat_dir(char **path, int *fd, const char *chain, sbx_store *s, char **dirs, size_t k,
                    sbx_ctx *ctx, sbx_error *err)
{
    *path = sbx__strdup_printf("%s/unpacked/flat-%s", sbx_store_root(s), chain + 7);
    if (!*path)
        return sbx_error_set(err, SBX_ENOMEM, "flattening: out of memory");
    char lock_name[32];
    snprintf(lock_name, sizeof lock_name, "flat-%.16s", chain + 7);
    _cleanup_close_ int lock = -1;
    if (sbx_store_lock_named(&lock, s, lock_name, ctx, err) < 0)
        return sbx_error_wrap(err, "flattening");
    /* gc moves an unused one out while holding it exclusively: after our
     * shared lock, it must still be the dir at *path */
    for (int attempt = 0; attempt < 4; attempt++) {
        int r = 0;
        if (!sbx_rootfs_layer_is_current(*path))
            r = build_flat(*path, s, dirs, k, ctx, err);
        if (r < 0)
            return r;
        *fd = open(*path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (*fd < 0 && errno == ENOENT)
            continue;
        if (*fd < 0 || sbx__flock_wait(*fd, LOCK_SH, ctx, err) < 0) {
            if (*fd < 0)
                sbx_error_sys(err, SBX_EIO, errno, "flattening: opening '%s'", *path);
            return err->code;
        }
        struct stat a, b;
        if (fstat(*fd, &a) == 0 && stat(*path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return 0;
        close(*fd);
        *fd = -1;
    }
    return sbx_error_set(err, SBX_EBUSY, "flattening: '%s' keeps being removed", *path);
}

int rfs_mount_lowers(char ***lowers, size_t *n, char flat[SBX_DIGEST_BUFSZ], int *flat_fd,
                     sbx_store *s, const sbx_image *img, char **dirs, sbx_ctx *ctx,
                     sbx_error *err)
{
    size_t nl = img->nlayers, k = 0;
    flat[0] = '\0';
    *flat_fd = -1;
    if (nl > SBX_MOUNT_MAX_LOWERS)
        k = (nl - SBX_MOUNT_FLAT_STEP) / SBX_MOUNT_FLAT_STEP * SBX_MOUNT_FLAT_STEP;
    size_t count = nl - k + (k ? 1 : 0);
    char **v = calloc(count + 1, sizeof *v);
    *lowers = v;
    *n = 0;
    if (!v)
        return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
    for (size_t i = 0; i < nl - k; i++)
        if (!(v[i] = strdup(dirs[nl - 1 - i])))
            return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
    if (k) {
        chain_id(flat, img, k);
        int r = flat_dir(&v[nl - k], flat_fd, flat, s, dirs, k, ctx, err);
        if (r < 0) {
            flat[0] = '\0';
            return r;
        }
    }
    *n = count;
    return 0;
}
