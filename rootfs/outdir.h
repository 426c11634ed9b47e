/* What unpack (unpack.c) and export (export.c) share: a destination
 * directory that appears whole or not at all.
 *
 * The work is built in a temp dir beside the destination,
 * ".<name>.sbx-<kind>-<pid>-<n>", flock'ed by its maker while it works and
 * renamed into place at the end; one whose lock can be taken belongs to a
 * dead process and is removed by the next call for the same destination. */
#ifndef SBX_ROOTFS_OUTDIR_H
#define SBX_ROOTFS_OUTDIR_H

#include <stdbool.h>

#include "sbx/error.h"
#include "sbx/image.h"
#include "sbx/store.h"

/* sbx_image_open, with errors starting with `verb` ("unpacking 'x': ..."). */
int rfs_open_image(sbx_image **out, sbx_store *s, const char *image, const char *platform,
                   const char *verb, sbx_error *err);

typedef struct rfs_outdir {
    const char *verb; /* "unpacking": starts error messages */
    const char *kind; /* "unpack": names the temp dirs */
    char *path;       /* as given, without trailing slashes */
    char *parent;     /* its directory */
    char *base;       /* its last component */
    char *tmp;        /* the temp dir beside it */
    int lock_fd;      /* flock on tmp while we work */
    bool existed;     /* for the caller: path was there (an empty dir) */
    sbx_ctx *ctx;     /* the call's context */
} rfs_outdir;

#define RFS_OUTDIR_INIT(verb, kind, ctx) {(verb), (kind), NULL, NULL, NULL, NULL, -1, false, (ctx)}

/* Unpack each layer of `in` into the store's cache (once: a layer already
 * there for this boot is used as is), with progress "layer N/M <digest>"
 * ("cached" or "unpack"); *dirs_out gets their directories, bottom first,
 * NULL-terminated (even on error: free with rfs_strv_free). */
int rfs_unpack_layers(char ***dirs_out, sbx_store *s, const sbx_image *in, sbx_ctx *ctx,
                      sbx_error *err);
void rfs_strv_free(char **v);

/* Split dir into parent and base (refusing "", ".", ".."). */
int rfs_outdir_split(rfs_outdir *d, const char *dir, sbx_error *err);
/* Remove temp dirs that dead processes left for the same destination. */
void rfs_outdir_clean_stale(const rfs_outdir *d);
/* Make and lock d->tmp. */
int rfs_outdir_make_tmp(rfs_outdir *d, sbx_error *err);
/* Free the strings, close the lock (the temp dir itself is the caller's). */
void rfs_outdir_free(rfs_outdir *d);

/* The whole frame of a call that makes dir: split it, `check` it (may be
 * NULL), remove what killed calls left, run `work` (which makes d->tmp with
 * rfs_outdir_make_tmp, fills it and renames it to d->path, setting d->tmp
 * to NULL), then remove d->tmp if work left it, whatever happened.  An
 * error without a `where` gets dir. */
int rfs_outdir_run(const char *dir, const char *verb, const char *kind,
                   int (*check)(rfs_outdir *d, sbx_error *err),
                   int (*work)(rfs_outdir *d, void *ud, sbx_error *err), void *ud,
                   sbx_ctx *ctx, sbx_error *err);

#endif
