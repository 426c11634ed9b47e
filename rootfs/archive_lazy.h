/* libarchive, loaded on first use.
 *
 * libarchive brings libxml2, ICU (libicuuc and the 30 MB libicudata),
 * libstdc++, liblzma, lz4, bz2, acl and nettle.  Mapping and relocating them
 * costs about 2 ms at every process start, also for the commands that never
 * read or write a tar (images, inspect, a cached resolve, an unpack whose
 * layers are already there).  So sbx-image does not link libarchive: the
 * builder opens "libarchive.so.13" with dlopen the first time it captures or
 * unpacks a layer (rfs_archive_load, called by the entry points of capture.c
 * and unpack.c before anything else, and before the unpacker forks and
 * chroots, where the library could no longer be found).
 *
 * Code keeps calling the ordinary archive_* names with libarchive's own
 * prototypes.  The redeclarations below only give those functions another
 * symbol name (an asm label), which archive_lazy.c defines as a small
 * forwarder to the loaded library; the compiler checks each redeclaration
 * against <archive.h>.  An archive function used by the builder but missing
 * from this list is a link error of sbx-image, not a silent dependency on
 * libarchive.  Include this header instead of <archive.h>/<archive_entry.h>.
 * Same pattern as registry/curl_lazy.h. */
#ifndef SBX_BUILDER_ARCHIVE_LAZY_H
#define SBX_BUILDER_ARCHIVE_LAZY_H

#include <archive.h>
#include <archive_entry.h>

#include "sbx/error.h"

/* Load libarchive and resolve every function below.  Idempotent and thread
 * safe; the answer of the first call is kept.  Returns 0, or SBX_EINTERNAL
 * "loading libarchive: <dlerror()'s reason>". */
int rfs_archive_load(sbx_error *err);

/* The functions, one line each: F(return type, name, (parameters),
 * (arguments), answer when the library is not loaded) or, for functions
 * returning nothing, V(name, (parameters), (arguments)).  The "not loaded"
 * answers are libarchive's own for failures (NULL, ARCHIVE_FATAL, 0), so a
 * caller that skipped rfs_archive_load gets an error, not a crash.
 * archive_set_error is variadic and is declared by hand below. */
#define BLD_ARCHIVE_FUNCTIONS(F, V)                                                          \
    /* archives */                                                                           \
    F(const char *, archive_error_string, (struct archive *a), (a), "libarchive is not loaded") \
    /* reading a tar */                                                                      \
    F(struct archive *, archive_read_new, (void), (), NULL)                                  \
    F(int, archive_read_support_format_tar, (struct archive *a), (a), ARCHIVE_FATAL)        \
    F(int, archive_read_support_format_raw, (struct archive *a), (a), ARCHIVE_FATAL)        \
    F(int, archive_read_support_filter_gzip, (struct archive *a), (a), ARCHIVE_FATAL)       \
    F(int, archive_read_support_filter_zstd, (struct archive *a), (a), ARCHIVE_FATAL)       \
    F(int, archive_read_support_filter_none, (struct archive *a), (a), ARCHIVE_FATAL)       \
    F(int, archive_read_support_format_gnutar, (struct archive *a), (a), ARCHIVE_FATAL)     \
    F(int, archive_read_open_fd, (struct archive *a, int fd, size_t block_size),             \
      (a, fd, block_size), ARCHIVE_FATAL)                                                    \
    F(int, archive_read_next_header, (struct archive *a, struct archive_entry **entry),      \
      (a, entry), ARCHIVE_FATAL)                                                             \
    F(int, archive_read_data_block,                                                          \
      (struct archive *a, const void **buff, size_t *size, la_int64_t *offset),              \
      (a, buff, size, offset), ARCHIVE_FATAL)                                                \
    F(int, archive_read_free, (struct archive *a), (a), ARCHIVE_FATAL)                       \
    /* writing a tar stream */                                                               \
    F(struct archive *, archive_write_new, (void), (), NULL)                                 \
    F(int, archive_write_set_format_pax_restricted, (struct archive *a), (a), ARCHIVE_FATAL) \
    F(int, archive_write_set_format_pax, (struct archive *a), (a), ARCHIVE_FATAL)           \
    F(int, archive_write_set_format_option,                                                  \
      (struct archive *a, const char *m, const char *o, const char *v), (a, m, o, v),        \
      ARCHIVE_FATAL)                                                                         \
    F(int, archive_write_set_bytes_per_block, (struct archive *a, int bytes), (a, bytes),   \
      ARCHIVE_FATAL)                                                                         \
    F(int, archive_write_set_bytes_in_last_block, (struct archive *a, int bytes), (a, bytes), \
      ARCHIVE_FATAL)                                                                         \
    F(int, archive_write_open,                                                               \
      (struct archive *a, void *client_data, archive_open_callback *open_cb,                 \
       archive_write_callback *write_cb, archive_close_callback *close_cb),                  \
      (a, client_data, open_cb, write_cb, close_cb), ARCHIVE_FATAL)                          \
    F(int, archive_write_header, (struct archive *a, struct archive_entry *entry),          \
      (a, entry), ARCHIVE_FATAL)                                                             \
    F(la_ssize_t, archive_write_data, (struct archive *a, const void *buf, size_t len),     \
      (a, buf, len), ARCHIVE_FATAL)                                                          \
    F(int, archive_write_finish_entry, (struct archive *a), (a), ARCHIVE_FATAL)             \
    F(int, archive_write_close, (struct archive *a), (a), ARCHIVE_FATAL)                     \
    F(int, archive_write_free, (struct archive *a), (a), ARCHIVE_FATAL)                      \
    /* writing to disk */                                                                    \
    F(struct archive *, archive_write_disk_new, (void), (), NULL)                            \
    F(int, archive_write_disk_set_options, (struct archive *a, int flags), (a, flags),      \
      ARCHIVE_FATAL)                                                                         \
    F(la_ssize_t, archive_write_data_block,                                                  \
      (struct archive *a, const void *buf, size_t len, la_int64_t offset),                   \
      (a, buf, len, offset), ARCHIVE_FATAL)                                                  \
    /* entries */                                                                            \
    F(struct archive_entry *, archive_entry_new, (void), (), NULL)                           \
    F(struct archive_entry *, archive_entry_clear, (struct archive_entry *e), (e), NULL)     \
    V(archive_entry_free, (struct archive_entry *e), (e))                                    \
    F(const char *, archive_entry_pathname, (struct archive_entry *e), (e), NULL)            \
    F(const char *, archive_entry_hardlink, (struct archive_entry *e), (e), NULL)            \
    F(const char *, archive_entry_symlink, (struct archive_entry *e), (e), NULL)             \
    F(__LA_MODE_T, archive_entry_filetype, (struct archive_entry *e), (e), 0)                \
    F(la_int64_t, archive_entry_size, (struct archive_entry *e), (e), 0)                     \
    F(__LA_MODE_T, archive_entry_perm, (struct archive_entry *e), (e), 0)                    \
    F(la_int64_t, archive_entry_uid, (struct archive_entry *e), (e), 0)                      \
    F(la_int64_t, archive_entry_gid, (struct archive_entry *e), (e), 0)                      \
    F(time_t, archive_entry_mtime, (struct archive_entry *e), (e), 0)                        \
    F(long, archive_entry_mtime_nsec, (struct archive_entry *e), (e), 0)                     \
    V(archive_entry_set_pathname, (struct archive_entry *e, const char *s), (e, s))          \
    V(archive_entry_set_hardlink, (struct archive_entry *e, const char *s), (e, s))          \
    V(archive_entry_set_symlink, (struct archive_entry *e, const char *s), (e, s))           \
    V(archive_entry_set_filetype, (struct archive_entry *e, unsigned int type), (e, type))   \
    V(archive_entry_set_mode, (struct archive_entry *e, __LA_MODE_T mode), (e, mode))        \
    V(archive_entry_set_perm, (struct archive_entry *e, __LA_MODE_T perm), (e, perm))        \
    V(archive_entry_set_uid, (struct archive_entry *e, la_int64_t uid), (e, uid))            \
    V(archive_entry_set_gid, (struct archive_entry *e, la_int64_t gid), (e, gid))            \
    V(archive_entry_set_size, (struct archive_entry *e, la_int64_t size), (e, size))         \
    V(archive_entry_set_mtime, (struct archive_entry *e, time_t sec, long nsec),             \
      (e, sec, nsec))                                                                        \
    V(archive_entry_set_rdev, (struct archive_entry *e, dev_t dev), (e, dev))                \
    V(archive_entry_set_rdevmajor, (struct archive_entry *e, dev_t major), (e, major))       \
    V(archive_entry_set_rdevminor, (struct archive_entry *e, dev_t minor), (e, minor))       \
    V(archive_entry_xattr_clear, (struct archive_entry *e), (e))                             \
    V(archive_entry_xattr_add_entry,                                                         \
      (struct archive_entry *e, const char *name, const void *value, size_t size),           \
      (e, name, value, size))                                                                \
    F(int, archive_entry_xattr_reset, (struct archive_entry *e), (e), 0)                     \
    F(int, archive_entry_xattr_next,                                                         \
      (struct archive_entry *e, const char **name, const void **value, size_t *size),        \
      (e, name, value, size), ARCHIVE_WARN)

#define BLD_ARCHIVE_LAZY(name) __asm__("bld_lazy_" #name)
#define BLD_ARCHIVE_DECLARE(ret, name, params, args, fail) \
    ret(name) params BLD_ARCHIVE_LAZY(name);
#define BLD_ARCHIVE_DECLARE_VOID(name, params, args) void(name) params BLD_ARCHIVE_LAZY(name);
BLD_ARCHIVE_FUNCTIONS(BLD_ARCHIVE_DECLARE, BLD_ARCHIVE_DECLARE_VOID)
#undef BLD_ARCHIVE_DECLARE
#undef BLD_ARCHIVE_DECLARE_VOID

/* printf-checked through <archive.h>'s own format attribute. */
void (archive_set_error)(struct archive *a, int err, const char *fmt, ...)
    BLD_ARCHIVE_LAZY(archive_set_error);

#endif
