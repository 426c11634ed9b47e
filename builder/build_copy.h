/* The copy step (build_copy.c). */
#ifndef SBX_BUILD_COPY_H
#define SBX_BUILD_COPY_H

#include <stddef.h>

#include "sbx/context.h"
#include "sbx/error.h"
#include "sbx/recipe.h"

/* Stage what a copy step adds under stage (an empty dir), with owner and mode
 * applied, parents as the image has them (lowers: unpacked layers, top-most
 * first).  Errors: SBX_EINVAL (source outside the context), SBX_ENOTFOUND
 * (no such source or owner), SBX_EIO. */
int bld_copy_stage(const char *stage, const char *context_dir, const sbx_step *st,
                   const char *const *lowers, size_t nlowers, const sbx_ctx *ctx,
                   sbx_error *err);

#endif
