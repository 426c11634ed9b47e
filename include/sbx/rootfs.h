/* sbx-image: root filesystems.  Layers in and out of directories (unpack a
 * layer into the store's cache, capture a directory as a deterministic
 * layer), merged trees for sandboxes, and OCI layouts for other tools.
 *
 * sbx_rootfs_unpack is what a runtime host calls before it starts a sandbox.  Every layer is
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

#include "sbx/context.h"
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
} sbx_rootfs_options;

#define SBX_ROOTFS_OPTIONS_INIT {false, NULL, NULL, false}

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
 * directory.  Progress on ctx: id "layer N/M sha256:<12 hex>"
 * with phase "cached" or "unpack" (total: the layer's compressed size), then
 * id "rootfs" with "merge" and "done" (done: bytes of regular files).
 * Errors: SBX_ENOTFOUND (the store has no such image, or lacks a layer:
 * the message suggests `sbx-image pull`), SBX_EINVAL (dir not empty, a bad
 * argument), SBX_ENOPLATFORM, SBX_ECANCELED (ctx was cancelled), SBX_EIO /
 * SBX_ENOSPC (with sys_errno), store errors.  On error nothing is left at
 * dir (an empty dir that existed stays). */
SBX_API int sbx_rootfs_unpack(sbx_rootfs_result *out, sbx_store *store, const char *image,
                              const char *dir, const sbx_rootfs_options *opts, sbx_ctx *ctx,
                              sbx_error *err);

/* Merge overlay-form layer directories, top-most first, into the existing
 * empty directory dest (no temp dir, no rename: the caller owns atomicity).
 * dest's own owner, mode, xattrs and times become those of layers[0]'s root.
 * link as in sbx_rootfs_options.  SBX_ECANCELED once ctx is cancelled.
 * stats may be NULL. */
SBX_API int sbx_rootfs_merge(const char *dest, const char *const *layers, size_t nlayers, bool link,
                             sbx_rootfs_stats *stats, sbx_ctx *ctx, sbx_error *err);

/* ---- layers: the store's unpacked cache and captures --------------------- */

/* Whether dir is a complete unpacked layer of this boot (its root's mark
 * names the current boot id).  Anything else must not be used as a lower. */
SBX_API bool sbx_rootfs_layer_is_current(const char *dir);

/* Unpack the stored layer diff_id into its directory in the store's cache
 * (sbx_store_layer_unpacked_path), overlay form, unless it is already there;
 * writes that path to path_out.  Concurrent unpackers of one layer end with
 * one directory.  Progress on ctx: id diff_id, phase "unpack" (bytes of
 * tar).  Errors: SBX_ENOTFOUND (no such layer), SBX_EINVAL (a hostile or
 * malformed entry; the message names it), SBX_ECANCELED, SBX_EIO. */
SBX_API int sbx_rootfs_layer_unpack(char *path_out, size_t path_len, sbx_store *s,
                                    const char *diff_id,
                                    sbx_ctx *ctx, sbx_error *err);

/* Run layer extractors as the program exe (argv: exe "__extract" DIR
 * BOOT_ID), started with posix_spawn, instead of forking this process: a
 * fork of a process whose other threads hold locks (an allocator's) can
 * leave the child waiting forever.  A program that embeds the library calls
 * it once, before any unpack, with a path to itself ("/proc/self/exe") and
 * hands that verb to sbx_rootfs_extractor_main (argc/argv after the verb's
 * position: "__extract" DIR BOOT_ID).  Without it the extractor is forked. */
SBX_API void sbx_rootfs_set_extractor(const char *exe);
SBX_API int sbx_rootfs_extractor_main(int argc, char **argv);

/* Unpack a layer into the cache as it downloads (pull --unpack): the three
 * functions of a registry layer tap (sbx_layer_tap in sbx/registry.h; ud
 * unused).  begin: NULL with err clear when the layer is unpacked already
 * (nothing to do), NULL with err set on failure, else a handle that takes
 * the layer's tar bytes in order (write) and, at end, the puller's verdict:
 * the layer is renamed into the cache only when commit is true (its blob
 * and diff_id verified), else nothing is left.  end returns the
 * extraction's error when commit is true (a hostile entry: SBX_EINVAL). */
typedef struct sbx_rootfs_tap sbx_rootfs_tap;
SBX_API void *sbx_rootfs_tap_begin(void *ud, sbx_store *store, const char *diff_id,
                                   sbx_ctx *ctx, sbx_error *err);
SBX_API int sbx_rootfs_tap_write(void *layer, const void *buf, size_t len, sbx_error *err);
SBX_API int sbx_rootfs_tap_end(void *layer, bool commit, sbx_error *err);

/* fsck of the unpacked layer cache: every complete unpacked layer dir is
 * compared with a fresh extraction of its stored layer (checked against
 * its diff_id): names, types, modes, owners, sizes, file mtimes, device numbers,
 * symlink targets, xattrs, bytes.  One that differs (a `--link` tree
 * written to shares its inodes) is taken out of the cache, to be unpacked
 * again when next used, unless a mount or a running unpack holds it
 * (counted in busy, kept).  SBX_ECORRUPT when any differed. */
typedef struct sbx_unpacked_check {
    uint64_t checked, corrupt, discarded, busy;
} sbx_unpacked_check;
SBX_API int sbx_rootfs_check_unpacked(sbx_unpacked_check *out, sbx_store *s, sbx_ctx *ctx,
                                      sbx_error *err);

/* Unpack an uncompressed tar read from fd into dest, created atomically
 * (temp dir beside it + rename), with the same conversions and refusals.
 * dest already there and current is success; an untrusted one is replaced. */
SBX_API int sbx_rootfs_unpack_tar_fd(int fd, const char *dest, sbx_error *err);
/* Write what fd holds (gzip, zstd or plain, told by its bytes) to out,
 * decompressed, at most max_bytes of it (SBX_ELIMIT past them): for
 * archives such as a standalone CPython's tar.gz before
 * sbx_rootfs_unpack_tar_fd.  name is the input's name for messages. */
SBX_API int sbx_rootfs_decompress_fd(int in, int out, uint64_t max_bytes, const char *name,
                                     sbx_ctx *ctx, sbx_error *err);

typedef struct sbx_capture_options {
    /* Clamp mtimes to this (seconds); -1: $SOURCE_DATE_EPOCH if set, else 0. */
    int64_t epoch;
    /* The dir is an overlayfs upper: translate whiteouts and opaque dirs.
     * false: a plain tree (debootstrap base, copy steps); char devices kept. */
    bool overlay_upper;
    /* Prefix every entry with this relative dir (e.g. "app/src" for a copy
     * step into /app/src); parents are emitted as dirs 0755 root.  NULL: none. */
    const char *prefix;
    /* Applied to every entry when set (copy steps with owner/mode). */
    bool set_owner;
    uint32_t uid, gid;
    int file_mode; /* -1: keep; else permission bits for regular files */
    int dir_mode;  /* -1: keep */
    /* Keep every entry's mtime as it is, to the nanosecond, instead of
     * clamping (a sandbox's snapshot: `make` after a resume must see the
     * times it left), and capture the dir's root as a "./" entry.  epoch
     * then dates only the whiteout markers. */
    bool keep_mtimes;
} sbx_capture_options;

#define SBX_CAPTURE_OPTIONS_INIT {-1, true, NULL, false, 0, 0, -1, -1, false}

typedef struct sbx_capture_result {
    char diff_id[SBX_DIGEST_BUFSZ]; /* sha256 of the tar stream; "" when !changed */
    bool changed;       /* false: the dir held nothing; no layer was written */
    uint64_t size;      /* tar bytes */
    uint64_t entries;
} sbx_capture_result;

/* Sink for the tar bytes; return 0 or a negative SBX_E* (with err set). */
typedef int (*sbx_capture_write_fn)(void *ud, const void *buf, size_t len, sbx_error *err);

/* Capture dir as a deterministic tar stream into write_fn (NULL: only
 * compute the diff_id): entries sorted by path, mtimes clamped, numeric
 * owners, hardlinks as links, overlay whiteouts and opaque dirs as OCI ones
 * (see sbx_capture_options).  The same tree always yields the same bytes.
 * An empty dir writes nothing and returns changed=false.  SBX_ECANCELED
 * once ctx is cancelled (checked between entries). */
SBX_API int sbx_rootfs_capture_stream(sbx_capture_result *out, const char *dir,
                                      const sbx_capture_options *opts,
                                      sbx_capture_write_fn write_fn, void *ud, sbx_ctx *ctx,
                                      sbx_error *err);

/* Capture dir into the store as a layer.  An empty dir adds no layer
 * (changed=false, nothing stored). */
SBX_API int sbx_rootfs_capture(sbx_capture_result *out, sbx_store *s, const char *dir,
                               const sbx_capture_options *opts, sbx_ctx *ctx, sbx_error *err);

/* ---- mounts: instant root filesystems, snapshots (runtime hosts) ----------
 *
 * sbx_rootfs_mount makes dir the image's root filesystem as an overlay of
 * the store's cached unpacked layers (each unpacked once, shared by every
 * mount) and a fresh writable upper dir the store owns: O(layers), not
 * O(files).  sbx_rootfs_commit captures what changed in the upper dir as a
 * layer on top of the mounted image and a new image (a snapshot); mounting
 * a snapshot is resume or fork, mounting an older one is rollback.
 * sbx_rootfs_umount unmounts and drops the upper dir.  See docs/runtime.md.
 *
 * Invariants:
 *  - Nothing is pulled: an image not in the store is SBX_ENOTFOUND.
 *  - A live mount's image, layers and upper dir are kept by gc in every
 *    process; a mount whose maker died, whose host rebooted or whose overlay
 *    is mounted nowhere any more is removed by gc (sbx_store_mount_reap).
 *  - A mount or commit killed at any moment leaves no mount, no half layer
 *    and no name; the next store open or gc removes what it left.
 *  - Commit is deterministic: the same changes (with the same times) on the
 *    same parent give the same diff_id and the same image digest.
 */
typedef struct sbx_mount_options {
    bool read_only;       /* no upper dir: the image as it is, mounted read-only */
    const char *platform; /* "os/arch[/variant]" when IMAGE names an index; NULL: this host's */
    /* Do not mount: the runtime mounts the overlay itself, as result.type,
     * result.source and result.options say (at dir, or wherever it wants),
     * in its own mount namespace.  Such a mount lives until umount or a
     * reboot, mounted or not.  dir need not exist. */
    bool no_mount;
} sbx_mount_options;
#define SBX_MOUNT_OPTIONS_INIT {false, NULL, false}

typedef struct sbx_mount_result {
    char id[SBX_MOUNT_ID_BUFSZ];
    char digest[SBX_DIGEST_BUFSZ]; /* the image manifest mounted */
    char *dir;                     /* the mount point, canonical */
    /* The overlay, for a runtime that mounts it itself: lowers top-most
     * first (the store's dirs; with flattened, the last one holds the
     * bottom layers merged), upper and work (NULL when read-only). */
    char **lowers;
    size_t nlowers;
    char *upper, *work;
    /* The mount, as mount(8) or an OCI runtime's mount entry takes it:
     * type "overlay", source "sbx-<id>" (keep it: it is how gc knows the
     * mount is in use), options "lowerdir=...,upperdir=...,workdir=...,
     * index=off,metacopy=off,redirect_dir=off" with absolute paths. */
    char source[SBX_MOUNT_ID_BUFSZ + 8];
    char *options;
    size_t layers;  /* the image's layers */
    bool flattened;
} sbx_mount_result;
SBX_API void sbx_mount_result_clear(sbx_mount_result *r);

/* Mount `image` (looked up in the store only, as sbx_rootfs_unpack does) at
 * dir: created when missing (its parent must exist), else an empty
 * directory that is not a mount point.  Needs CAP_SYS_ADMIN in the mount
 * namespace dir is in.  Progress on ctx as sbx_rootfs_unpack's layers, then
 * id "rootfs" with "mount" and "done".  Errors: SBX_ENOTFOUND (not in the
 * store), SBX_EINVAL (dir not empty, a mount point, not a directory),
 * SBX_ENOPLATFORM, SBX_ECANCELED, SBX_EIO (mount(2) failed: sys_errno).
 * On error nothing is mounted, recorded or left at dir (a dir it created is
 * removed).  *out: sbx_mount_result_clear. */
SBX_API int sbx_rootfs_mount(sbx_mount_result *out, sbx_store *s, const char *image,
                             const char *dir, const sbx_mount_options *opts, sbx_ctx *ctx,
                             sbx_error *err);

/* Unmount a mount (its id, or its directory) and remove its upper dir and
 * record.  SBX_EBUSY when a process still uses it (stop the sandbox first)
 * or it is mounted only in another mount namespace; SBX_ENOTFOUND.  Waits
 * (cancellably) for a commit of the same mount to finish. */
SBX_API int sbx_rootfs_umount(sbx_store *s, const char *id_or_dir, sbx_ctx *ctx, sbx_error *err);

typedef struct sbx_commit_options {
    const char *tag;    /* name for the snapshot; NULL: "snapshot:<digest>" */
    int64_t expires_in; /* seconds the name lives unused (each use refreshes it); 0: forever */
} sbx_commit_options;
#define SBX_COMMIT_OPTIONS_INIT {NULL, 0}

typedef struct sbx_commit_result {
    char digest[SBX_DIGEST_BUFSZ];  /* the snapshot's manifest (the parent's when !changed) */
    char parent[SBX_DIGEST_BUFSZ];  /* the mounted image */
    char diff_id[SBX_DIGEST_BUFSZ]; /* the new layer; "" when nothing changed */
    char name[512];                 /* the name set */
    bool changed;
    /* size_bytes: stored compressed bytes no other named image holds (the
     * snapshot's own layer, config and manifest, plus any parent bytes no
     * other name keeps); total_bytes: all it reaches */
    sbx_image_usage usage;
    int64_t expires_at;             /* unix seconds; 0: never */
} sbx_commit_result;

/* Capture the upper dir of a writable mount (id or directory) as a
 * deterministic zstd layer: new and changed files (owners, modes, xattrs,
 * times to the nanosecond), deletions as OCI whiteouts, replaced
 * directories as opaque; then write an image whose config is the mounted
 * image's plus that layer, and name it.  The mount stays as it is (a later
 * commit captures everything changed since the mount, again on the mounted
 * image).  The caller stops or freezes the sandbox first: files written
 * during the capture may be captured torn or not at all.  Errors:
 * SBX_ENOTFOUND, SBX_EINVAL (a read-only mount), SBX_ECANCELED, SBX_EIO,
 * SBX_ENOSPC, store errors; nothing is named on error. */
SBX_API int sbx_rootfs_commit(sbx_commit_result *out, sbx_store *s, const char *id_or_dir,
                              const sbx_commit_options *opts, sbx_ctx *ctx, sbx_error *err);

/* ---- load: images other tools made ---------------------------------------
 *
 * SOURCE is an OCI image layout directory, an OCI archive (a tar of one),
 * or a docker-archive tar (docker save, podman save, skopeo copy
 * docker-archive:).  Every blob is checked against its digest and size and
 * every layer against the config's diff_id before anything is stored, so a
 * bad source is a clear error and the store gets nothing.  An OCI layout's
 * manifest is kept byte for byte (its digest too); a docker-archive, which
 * has none, gets the OCI manifest sbx_image_write makes (recompressed).
 * The name: opts.tag, else the source's own (the layout's
 * org.opencontainers.image.ref.name, the archive's RepoTags[0]); neither is
 * SBX_EINVAL. */
typedef struct sbx_load_options {
    const char *tag;      /* the name to give it; NULL: the source's */
    const char *platform; /* an index's entry; NULL: this host's */
} sbx_load_options;
#define SBX_LOAD_OPTIONS_INIT {NULL, NULL}

typedef struct sbx_load_result {
    char digest[SBX_DIGEST_BUFSZ];
    char name[768]; /* as sbx_ref normalizes it */
    size_t layers;
    bool recompressed; /* a docker-archive: the manifest was made here */
} sbx_load_result;

SBX_API int sbx_rootfs_load(sbx_load_result *out, sbx_store *store, const char *source,
                            const sbx_load_options *opts, sbx_ctx *ctx, sbx_error *err);

/* ---- export: an image from the store as an OCI image layout --------------
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
 *  - An OCI image whose manifest references the stored layers (everything
 *    `sbx-image build` makes, and images pulled as gzip or zstd, whose blobs
 *    the store keeps as sent) is exported with its exact manifest bytes: the
 *    digest is the store's.  A Docker manifest, or one referencing forms the
 *    store does not keep (layers it compressed itself), gets a new OCI
 *    manifest pointing at the stored layers, with the same config: its
 *    digest differs (result.recompressed).
 */

typedef struct sbx_export_options {
    /* "os/arch[/variant]" when IMAGE names an index; NULL: this host's. */
    const char *platform;
    /* The index.json annotation "org.opencontainers.image.ref.name" (the
     * TAG of `oci:DIR:TAG`); NULL: none. */
    const char *tag;
} sbx_export_options;

#define SBX_EXPORT_OPTIONS_INIT {NULL, NULL}

typedef struct sbx_export_result {
    char digest[SBX_DIGEST_BUFSZ];        /* the manifest in the layout */
    char stored_digest[SBX_DIGEST_BUFSZ]; /* the image's manifest in the store */
    /* The layers were re-referenced as stored in a new OCI manifest: the
     * layout's manifest is new and digest != stored_digest. */
    bool recompressed;
    size_t blobs;   /* distinct blobs written: manifest, config, layers */
    uint64_t bytes; /* their total size */
} sbx_export_result;

/* Write `image` (a store name, a ref as pull names it, a pinned ref or a
 * manifest digest: looked up in the store only, as sbx_rootfs_unpack does)
 * as an OCI image layout at `dir`, which must not exist.  Progress on ctx:
 * id "layer N/M sha256:<12 hex>" with phase "copy"
 * (done/total: the stored bytes), then id "layout" with "done".
 * Errors: SBX_ENOTFOUND (no such image, or a layer is missing), SBX_EINVAL
 * (dir exists, a bad argument, not an image manifest), SBX_EDIGEST (a store
 * file does not match its digest: run fsck), SBX_ECANCELED, SBX_EIO /
 * SBX_ENOSPC (with sys_errno), store errors.  On error nothing is left at
 * dir. */
SBX_API int sbx_rootfs_export(sbx_export_result *out, sbx_store *store, const char *image,
                              const char *dir, const sbx_export_options *opts, sbx_ctx *ctx,
                              sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
