/* sbx-image: materialize an image's root filesystem into a directory.
 *
 * What a runtime host calls before it starts a sandbox.  Every layer is
 * unpacked once into the store's cache (<store>/unpacked/<hex>, overlay
 * form: whiteouts are 0/0 character devices, opaque directories carry
 * trusted.overlay.opaque=y), then the layers are merged top to bottom into
 * the destination with overlayfs semantics: an upper entry hides lower ones,
 * whiteouts and opaque directories hide what is below them.
 *
 * Invariants:
 *  - The destination appears complete or not at all: the tree is built in a
 *    sibling temp directory (".<name>.sbx-unpack-*", flock'ed while in use),
 *    synced and renamed into place.  A failure removes it; what a killed
 *    process left is removed by the next unpack into the same directory.
 *  - Nothing is written outside the destination: every entry is created
 *    relative to a directory fd by one name, never through a symlink.
 *  - The image is held by a store lease while it is read, so gc in another
 *    process cannot remove its layers meanwhile.
 *  - With `link`, regular files (and symlinks, devices, fifos) are
 *    hardlinks to the store's cached layer files: the tree shares inodes
 *    with the cache and with every other linked tree and MUST be treated as
 *    read-only (mount it read-only, or as an overlay lower).  Writing to a
 *    file there changes the cache for every later unpack.
 */
#ifndef SBX_ROOTFS_H
#define SBX_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/error.h"
#include "sbx/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_rootfs_options {
    /* Hardlink files from the cached layers instead of copying them
     * (falls back to a copy on EXDEV/EMLINK).  The tree is then read-only
     * by contract; see above. */
    bool link;
    /* "os/arch[/variant]" when IMAGE names an index; NULL: this host's. */
    const char *platform;
    /* Also write the image's OCI config JSON (its exact bytes) to this
     * file, atomically; NULL: don't. */
    const char *config_path;
    /* Skip syncfs before the rename (a tree that may be lost on a power cut
     * is fine for some throwaway sandboxes).  Default false: synced. */
    bool no_sync;
    /* When set, checked between entries: once *cancel is non-zero (a signal
     * handler sets it) the call stops, removes what it made and returns
     * SBX_EIO with sys_errno EINTR.  NULL: not cancellable. */
    const volatile int *cancel;
} sbx_rootfs_options;

#define SBX_ROOTFS_OPTIONS_INIT {false, NULL, NULL, false, NULL}

typedef struct sbx_rootfs_stats {
    uint64_t files;   /* non-directory entries placed (files, symlinks, devices, fifos) */
    uint64_t dirs;    /* directories created */
    uint64_t bytes;   /* bytes of the regular files placed */
    uint64_t linked;  /* entries placed as hardlinks to the cache */
    uint64_t copied;  /* regular files copied (reflink, copy_file_range or read/write) */
} sbx_rootfs_stats;

typedef struct sbx_rootfs_result {
    char digest[SBX_DIGEST_BUFSZ];  /* the image manifest unpacked */
    char config[SBX_DIGEST_BUFSZ];  /* its config blob */
    size_t layers;
    sbx_rootfs_stats stats;
} sbx_rootfs_result;

/* Materialize the root filesystem of `image` (a store name, a ref as pull
 * names it, a pinned ref or a manifest digest: looked up in the store only,
 * never in a registry) into `dir`, which must not exist or be an empty
 * directory.  Progress via sbx_progress_emit: id "layer N/M sha256:<12 hex>"
 * with phase "cached" or "unpack" (total: the layer's compressed size), then
 * id "rootfs" with "merge" and "done" (done: bytes of regular files).
 * Errors: SBX_ENOTFOUND (the store has no such image, or lacks a layer:
 * the message suggests `sbx-image pull`), SBX_EINVAL (dir not empty, a bad
 * argument), SBX_EIO / SBX_ENOSPC (with sys_errno), store errors.  On error
 * nothing is left at dir (an empty dir that existed stays). */
int sbx_rootfs_unpack(sbx_rootfs_result *out, sbx_store *store, const char *image,
                      const char *dir, const sbx_rootfs_options *opts, sbx_error *err);

/* Merge overlay-form layer directories, top-most first, into the existing
 * empty directory dest (no temp dir, no rename: the caller owns atomicity).
 * dest's own owner, mode, xattrs and times become those of layers[0]'s root.
 * link as in sbx_rootfs_options.  stats may be NULL. */
int sbx_rootfs_merge(const char *dest, const char *const *layers, size_t nlayers, bool link,
                     sbx_rootfs_stats *stats, sbx_error *err);
/* As sbx_rootfs_merge, stopping with SBX_EIO/EINTR once *cancel is non-zero. */
int sbx_rootfs_merge_ex(const char *dest, const char *const *layers, size_t nlayers, bool link,
                        const volatile int *cancel, sbx_rootfs_stats *stats, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
