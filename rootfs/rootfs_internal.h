/* Internal to the rootfs module: layer tars <-> directories (libarchive).
 *
 * unpack: a layer tar -> a directory usable as an overlayfs lower.  OCI
 *   whiteouts become overlay whiteouts: `.wh.NAME` -> a 0/0 character device
 *   NAME; `.wh..wh..opq` -> xattr trusted.overlay.opaque=y on its directory.
 *   Entries that would land outside the directory (`..`, absolute paths,
 *   through symlinks) are refused and nothing is left behind.  The directory
 *   is built under a temp name and renamed into place, so it is complete or
 *   absent; concurrent unpackers of the same layer end with one directory.
 *   Nothing is synced: the directory's root carries SBX_UNPACK_MARK_XATTR =
 *   the boot id, and a directory from another boot (a power cut may have
 *   lost part of it) or without the mark is unpacked again.
 *
 * capture: a directory -> a deterministic tar stream: entries sorted by path
 *   (byte order), mtimes clamped to the epoch, no atime/ctime, numeric owners
 *   without user/group names, hardlinks as link entries, xattrs kept (except
 *   overlay-private trusted.overlay.* / user.overlay.*), PAX restricted
 *   format.  From an overlay upper dir, 0/0 character devices become
 *   `.wh.NAME` and opaque directories get a `.wh..wh..opq` entry.  The same
 *   tree always yields the same bytes, hence the same diff_id.
 */
#ifndef SBX_ROOTFS_INTERNAL_H
#define SBX_ROOTFS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/image.h"
#include "sbx/rootfs.h"
#include "sbx_common.h"

/* xattr on an unpacked dir's root naming the boot it was unpacked in (the
 * user.* one is used when trusted.* cannot be set, e.g. without
 * CAP_SYS_ADMIN).  Layers cannot carry either: they are dropped from tars. */
#define SBX_UNPACK_MARK_XATTR "trusted.sbx.unpacked-boot"
#define SBX_UNPACK_MARK_XATTR_USER "user.sbx.unpacked-boot"

/* Whether dir is an empty directory (false for a non-directory). */
int rfs_dir_is_empty(const char *dir, bool *empty, sbx_error *err);
/* Sorted names in a directory (not . and ..); fd: the directory, open
 * (not consumed), or -1 to open path (layer_capture.c).  Free with
 * rfs_free_names. */
int rfs_list_dir_fd(char ***out, size_t *n_out, int fd, const char *path, sbx_error *err);
void rfs_free_names(char **names, size_t n);
/* Mark dir (a tree built for the cache) as complete in this boot. */
int rfs_mark_current(const char *dir, sbx_error *err);
/* Unpack the stored layer diff_id into dest (which must not exist yet),
 * the stream checked against the diff_id as it is fed. */
int rfs_layer_extract(sbx_store *s, const char *diff_id, const char *dest, sbx_ctx *ctx,
                      sbx_error *err);

/* The lowers of a mount of img, top-most first (flatten.c): the layers'
 * cached dirs (dirs, bottom first), with the bottom ones flattened into one
 * cached dir when there are more than SBX_MOUNT_MAX_LOWERS.  flat gets that
 * dir's chain id ("" when none) and *flat_fd holds it (a shared flock) so
 * gc leaves it until the mount's record names it. */
#define SBX_MOUNT_MAX_LOWERS 128
#define SBX_MOUNT_FLAT_STEP 64
int rfs_mount_lowers(char ***lowers, size_t *n, char flat[SBX_DIGEST_BUFSZ], int *flat_fd,
                     sbx_store *s, const sbx_image *img, char **dirs, sbx_ctx *ctx,
                     sbx_error *err);

#endif
