/* sbx-image: what libsbx exports.  The library is built with
 * -fvisibility=hidden; every public function is declared SBX_API, so only
 * the API in include/sbx/ is visible to programs linking libsbx.so and each
 * module's internals (sbx__*, rcp_*, img_*, rfs_*, reg_*, bld_*,
 * sbx_store__*) stay private to it. */
#ifndef SBX_API_H
#define SBX_API_H

#if defined(__GNUC__) || defined(__clang__)
#define SBX_API __attribute__((visibility("default")))
#else
#define SBX_API
#endif

#endif
