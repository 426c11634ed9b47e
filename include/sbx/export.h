/* sbx-image: write an image from the store as an OCI image layout.
 *
 * The layout (image-spec "image-layout") is what other tools read:
 * `skopeo copy oci:DIR ...`, `umoci unpack --image DIR:TAG`, podman.  It
 * holds `oci-layout`, `index.json` with one manifest descriptor, and
 * `blobs/sha256/<hex>`: the manifest, the config and every layer as the
 * store keeps it (zstd).
 *
 * Invariants:
 *  - The image is held by a store lease while it is read, so gc in another
 *    process cannot remove its layers meanwhile.
 *  - Every blob written is hashed while it is copied and checked against the
 *    digest it is written under; a damaged store file fails the export.
 *  - The layout appears complete or not at all: it is built in a sibling
 *    temp directory (".<name>.sbx-export-*", flock'ed while in use), synced
 *    and renamed into place.  A failure removes it; what a killed process
 *    left is removed by the next export into the same directory.
 *  - An image whose manifest references the stored zstd layers (everything
 *    `sbx-image build` makes) is exported with its exact manifest bytes: the
 *    digest is the store's.  A pulled image whose manifest references other
 *    compressed forms (gzip) gets a new OCI manifest pointing at the zstd
 *    layers, with the same config: its digest differs (result.recompressed).
 */
#ifndef SBX_EXPORT_H
#define SBX_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/error.h"
#include "sbx/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_export_options {
    /* "os/arch[/variant]" when IMAGE names an index; NULL: this host's. */
    const char *platform;
    /* The index.json annotation "org.opencontainers.image.ref.name" (the
     * TAG of `oci:DIR:TAG`); NULL: none. */
    const char *tag;
    /* When set, checked between blobs and while copying: once *cancel is
     * non-zero the call stops, removes what it made and returns SBX_EIO with
     * sys_errno EINTR.  NULL: not cancellable. */
    const volatile int *cancel;
} sbx_export_options;

#define SBX_EXPORT_OPTIONS_INIT {NULL, NULL, NULL}

typedef struct sbx_export_result {
    char digest[SBX_DIGEST_BUFSZ];        /* the manifest in the layout */
    char stored_digest[SBX_DIGEST_BUFSZ]; /* the image's manifest in the store */
    /* The layers were re-referenced as their stored zstd form: the layout's
     * manifest is new and digest != stored_digest. */
    bool recompressed;
    size_t blobs;   /* distinct blobs written: manifest, config, layers */
    uint64_t bytes; /* their total size */
} sbx_export_result;

/* Write `image` (a store name, a ref as pull names it, a pinned ref or a
 * manifest digest: looked up in the store only, as sbx_rootfs_unpack does)
 * as an OCI image layout at `dir`, which must not exist.  Progress via
 * sbx_progress_emit: id "layer N/M sha256:<12 hex>" with phase "copy"
 * (done/total: the stored zstd bytes), then id "layout" with "done".
 * Errors: SBX_ENOTFOUND (no such image, or a layer is missing), SBX_EINVAL
 * (dir exists, a bad argument, not an image manifest), SBX_EDIGEST (a store
 * file does not match its digest: run fsck), SBX_EIO / SBX_ENOSPC (with
 * sys_errno), store errors.  On error nothing is left at dir. */
int sbx_export_layout(sbx_export_result *out, sbx_store *store, const char *image,
                      const char *dir, const sbx_export_options *opts, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
