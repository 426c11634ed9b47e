/* What unpack (rootfs.c) and export (export.c) share: finding an image in
 * the store, and a destination directory that appears whole or not at all.
 *
 * The work is built in a temp dir beside the destination,
 * ".<name>.sbx-<kind>-<pid>-<n>", flock'ed by its maker while it works and
 * renamed into place at the end; one whose lock can be taken belongs to a
 * dead process and is removed by the next call for the same destination. */
#ifndef SBX_BUILDER_OUTDIR_H
#define SBX_BUILDER_OUTDIR_H

#include <stdbool.h>

#include "sbx/error.h"
#include "sbx/registry.h"
#include "sbx/store.h"

/* Find `image` in the store (a manifest digest, a pinned ref's digest, the
 * normalized ref as pull names it, the name as given: never a registry),
 * lease it against gc into *lease, and read it (the platform's manifest when
 * it names an index) into *info.  On failure nothing is left to release;
 * SBX_ENOTFOUND names the image, with `verb` ("unpacking") first. */
int bld_open_image(sbx_image_info **info, sbx_lease **lease, sbx_store *s, const char *image,
                   const char *platform, const char *verb, sbx_error *err);

typedef struct bld_outdir {
    const char *verb; /* "unpacking": starts error messages */
    const char *kind; /* "unpack": names the temp dirs */
    char *path;       /* as given, without trailing slashes */
    char *parent;     /* its directory */
    char *base;       /* its last component */
    char *tmp;        /* the temp dir beside it */
    int lock_fd;      /* flock on tmp while we work */
    bool existed;     /* for the caller: path was there (an empty dir) */
} bld_outdir;

#define BLD_OUTDIR_INIT(verb, kind) {(verb), (kind), NULL, NULL, NULL, NULL, -1, false}

/* Split dir into parent and base (refusing "", ".", ".."). */
int bld_outdir_split(bld_outdir *d, const char *dir, sbx_error *err);
/* Remove temp dirs that dead processes left for the same destination. */
void bld_outdir_clean_stale(const bld_outdir *d);
/* Make and lock d->tmp. */
int bld_outdir_make_tmp(bld_outdir *d, sbx_error *err);
/* Free the strings, close the lock (the temp dir itself is the caller's). */
void bld_outdir_free(bld_outdir *d);

/* The whole frame of a call that makes dir: split it, `check` it (may be
 * NULL), remove what killed calls left, run `work` (which makes d->tmp with
 * bld_outdir_make_tmp, fills it and renames it to d->path, setting d->tmp
 * to NULL), then remove d->tmp if work left it, whatever happened.  An
 * error without a `where` gets dir. */
int bld_outdir_run(const char *dir, const char *verb, const char *kind,
                   int (*check)(bld_outdir *d, sbx_error *err),
                   int (*work)(bld_outdir *d, void *ud, sbx_error *err), void *ud,
                   sbx_error *err);

#endif
