/* Builder internals: layer tars <-> directories (libarchive).
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
#ifndef SBX_BUILDER_LAYERS_H
#define SBX_BUILDER_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/error.h"
#include "sbx/store.h"

/* ---- unpack -------------------------------------------------------------- */

/* xattr on an unpacked dir's root naming the boot it was unpacked in (the
 * user.* one is used when trusted.* cannot be set, e.g. without
 * CAP_SYS_ADMIN).  Layers cannot carry either: they are dropped from tars. */
#define SBX_UNPACK_MARK_XATTR "trusted.sbx.unpacked-boot"
#define SBX_UNPACK_MARK_XATTR_USER "user.sbx.unpacked-boot"

/* Whether dir is a complete unpacked dir of this boot (its mark names the
 * current boot id).  Anything else must not be used as a lower. */
bool sbx_unpacked_is_current(const char *dir);

/* Unpack the stored layer diff_id into its unpacked dir
 * (sbx_store_layer_unpacked_path), unless it is already there.  Writes the
 * dir's path to path_out.  Errors: SBX_ENOTFOUND (no such layer), SBX_EINVAL
 * (a hostile or malformed entry; the message names it), SBX_EIO. */
int sbx_layer_unpack(sbx_store *s, const char *diff_id, char *path_out, size_t path_len,
                     sbx_error *err);

/* Unpack an uncompressed tar read from fd into dest, created atomically
 * (temp dir beside it + rename).  dest already there and current (see
 * sbx_unpacked_is_current) is success; an untrusted dest is replaced.  Same
 * conversions and refusals as above. */
int sbx_unpack_tar_fd(int fd, const char *dest, sbx_error *err);

/* ---- capture ------------------------------------------------------------- */

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
} sbx_capture_options;

#define SBX_CAPTURE_OPTIONS_INIT {-1, true, NULL, false, 0, 0, -1, -1}

typedef struct sbx_capture_result {
    char diff_id[SBX_DIGEST_BUFSZ]; /* sha256 of the tar stream; "" when !changed */
    bool changed;       /* false: the dir held nothing; no layer was written */
    uint64_t size;      /* tar bytes */
    uint64_t entries;
} sbx_capture_result;

/* Sink for the tar bytes; return 0 or a negative SBX_E* (with err set). */
typedef int (*sbx_capture_write_fn)(void *ud, const void *buf, size_t len, sbx_error *err);

/* Capture dir as a tar stream into write_fn (NULL: only compute the
 * diff_id).  An empty dir writes nothing and returns changed=false. */
int sbx_capture_stream(sbx_capture_result *out, const char *dir,
                       const sbx_capture_options *opts, sbx_capture_write_fn write_fn,
                       void *ud, sbx_error *err);

/* Capture dir into the store as a layer (sbx_store_layer_begin/commit).  An
 * empty dir adds no layer (changed=false, nothing stored). */
int sbx_layer_capture(sbx_capture_result *out, sbx_store *s, const char *dir,
                      const sbx_capture_options *opts, sbx_error *err);

#endif
