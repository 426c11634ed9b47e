/* Internal helpers shared by every module: cleanup attributes, sha256
 * digests, fd-relative filesystem helpers.  Not part of the public API. */
#ifndef SBX_COMMON_H
#define SBX_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "sbx/error.h"
#include "sbx/context.h"

/* ---- cleanup attributes (crun/systemd style) ---------------------------- */
static inline void sbx__freep(void *p) { free(*(void **)p); }
static inline void sbx__closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void sbx__fclosep(FILE **f) { if (*f) fclose(*f); }
#define _cleanup_free_ __attribute__((cleanup(sbx__freep)))
#define _cleanup_close_ __attribute__((cleanup(sbx__closep)))
#define _cleanup_fclose_ __attribute__((cleanup(sbx__fclosep)))
/* Hand ownership out of a cleanup-annotated local. */
#define SBX_STEAL(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define SBX_STEAL_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })
#define SBX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- digests ------------------------------------------------------------- */
/* strlen of "sha256:" + 64 hex; SBX_DIGEST_BUFSZ (sbx/error.h) adds the NUL */
#define SBX_DIGEST_LEN 71
#define SBX_SHA256_HEXLEN 64

typedef struct sbx__sha256 sbx__sha256; /* streaming hasher (OpenSSL EVP) */

int sbx__sha256_new(sbx__sha256 **out, sbx_error *err);
void sbx__sha256_update(sbx__sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" into out (SBX_DIGEST_BUFSZ bytes); h may be reused after. */
void sbx__sha256_final(sbx__sha256 *h, char out[SBX_DIGEST_BUFSZ]);
void sbx__sha256_free(sbx__sha256 *h);
static inline void sbx__sha256_freep(sbx__sha256 **h) { sbx__sha256_free(*h); }
#define _cleanup_sha256_ __attribute__((cleanup(sbx__sha256_freep)))

/* One-shot digest of a buffer. */
void sbx__sha256_buf(const void *data, size_t len, char out[SBX_DIGEST_BUFSZ]);
/* Raw 32-byte digest of a buffer. */
void sbx__sha256_raw(const void *data, size_t len, unsigned char out[32]);
/* true when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool sbx__digest_valid(const char *s);
/* Validate and return the hex part; error names the bad digest. */
int sbx__digest_parse(const char **hex_out, const char *digest, sbx_error *err);
void sbx__hex_encode(const unsigned char *in, size_t len, char *out /* 2*len+1 */);
/* HMAC-SHA256 of data under a 32-byte key, as 64 hex digits; -1 when
 * OpenSSL fails (out is then empty). */
int sbx__hmac_sha256_hex(const unsigned char key[32], const void *data, size_t len,
                         char out[SBX_SHA256_HEXLEN + 1]);

/* ---- disk usage (du.c) ------------------------------------------------------ */
typedef struct sbx__du sbx__du;
sbx__du *sbx__du_new(void);
void sbx__du_free(sbx__du *du);
/* Add the tree at dirfd/name (not crossing its mount point); -1 on ENOMEM. */
int sbx__du_add_at(sbx__du *du, int dirfd, const char *name);
/* Bytes of everything added; bytes removing it all would free. */
uint64_t sbx__du_total(const sbx__du *du);
uint64_t sbx__du_freed(const sbx__du *du);

/* ---- filesystem ---------------------------------------------------------- */
/* Open rel beneath dirfd through no symlink (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS; O_NOFOLLOW added): what the
 * path names now and inside dirfd, or -1 with errno (ELOOP or EXDEV: a
 * symlink or ".." on the way, e.g. a directory swapped for a symlink). */
int sbx__open_beneath(int dirfd, const char *rel, int flags);
/* Whether fd's file has fewer blocks than its size needs (holes). */
bool sbx__is_sparse(int fd);
/* Copy the data of sfd (a regular file of size bytes) to the empty dfd at
 * the same offsets, skipping holes (SEEK_DATA / SEEK_HOLE), and give dfd
 * that size: holes stay holes.  SBX_EUNSUPPORTED (nothing written) when the
 * filesystem cannot say where the holes are. */
int sbx__copy_sparse(int sfd, int dfd, uint64_t size, sbx_error *err);

/* mkdir -p with mode; existing directories are fine. */
int sbx__mkdir_p(const char *path, mode_t mode, sbx_error *err);
/* Full write/read loops handling EINTR and short counts. */
int sbx__write_all(int fd, const void *buf, size_t len, sbx_error *err);
ssize_t sbx__read_full(int fd, void *buf, size_t len);
/* fsync a directory by path (after a rename/link into it). */
int sbx__fsync_dir(const char *path, sbx_error *err);
/* Read a whole file, refusing more than max bytes; *out is NUL-terminated, caller frees. */
int sbx__read_file(char **out, size_t *len, const char *path, size_t max, sbx_error *err);
/* The same from an open fd (a pipe or terminal is read to its end); name
 * is for messages. */
int sbx__read_fd(char **out, size_t *len, int fd, const char *name, size_t max, sbx_error *err);
/* Atomically replace path with data: temp file in the same dir, fsync, rename, fsync dir. */
int sbx__write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          sbx_error *err);
/* rm -rf; missing paths are fine.  Does not cross mount points. */
int sbx__rm_rf(const char *path, sbx_error *err);
/* In a child forked without exec: close every fd above stderr except the n
 * in keep, so the child holds none of the parent's locks (flocks belong to
 * open files, and a long-lived child would keep them held). */
void sbx__close_fds_except(const int *keep, size_t n);
/* Mount points at or below path (an absolute, canonical path), from
 * /proc/self/mountinfo: whether there is one; unmount them all, deepest
 * first (lazily when busy), returning how many are left. */
bool sbx__mounted_below(const char *path);
int sbx__umount_below(const char *path);
/* Mounts whose source (the device field of mountinfo) starts with prefix:
 * in this mount namespace, and with all_ns in every other mount namespace
 * of a process in /proc (other_ns; their mount points as that namespace
 * sees them).  *incomplete (may be NULL) is set when some process's
 * mountinfo could not be read (not when it exited meanwhile): the answer
 * may then lack mounts.  -1 when out of memory. */
typedef struct sbx__mount_src {
    char *source;
    char *mountpoint;
    char fstype[32];
    bool other_ns;
    int mnt_id; /* mountinfo's first field: unique on the host */
} sbx__mount_src;
int sbx__mount_sources(const char *prefix, bool all_ns, sbx__mount_src **out, size_t *n,
                       bool *incomplete);
void sbx__mount_srcs_free(sbx__mount_src *v, size_t n);
/* This boot's id (/proc/sys/kernel/random/boot_id). */
int sbx__boot_id(char *out, size_t len, sbx_error *err);
/* Map an errno from a write path to SBX_ENOSPC or SBX_EIO. */
int sbx__errno_code(int e);

/* ---- libraries loaded on first use --------------------------------------- */
/* dlopen(soname) with RTLD_NOW | RTLD_LOCAL (nothing else in the process
 * binds to it by accident).  Returns the handle, which stays open for the
 * process's life, or NULL with why filled from dlerror(). */
void *sbx__lib_open(const char *soname, char *why, size_t why_len);
/* *slot = dlsym(h, sym); false with why = "<soname> has no <sym>" if absent. */
bool sbx__lib_sym(void *h, const char *soname, const char *sym, void **slot, char *why,
                 size_t why_len);

/* ---- the per-call context (sbx/context.h); every function accepts NULL -- */
void sbx__log(const sbx_ctx *ctx, sbx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool sbx__log_enabled(const sbx_ctx *ctx, sbx_log_level level);
void sbx__progress(const sbx_ctx *ctx, const char *id, const char *phase, uint64_t done,
                   uint64_t total);
/* 0, or SBX_ECANCELED with the message "cancelled" once ctx is cancelled
 * (callers wrap it: "unpacking: cancelled"). */
int sbx__check_cancel(const sbx_ctx *ctx, sbx_error *err);
/* An fd that polls readable once ctx is cancelled; -1 for NULL. */
int sbx__ctx_cancel_fd(const sbx_ctx *ctx);
/* flock(fd, op) (LOCK_EX or LOCK_SH), waiting until it is granted or ctx
 * is cancelled (SBX_ECANCELED); other failures SBX_EIO. */
int sbx__flock_wait(int fd, int op, const sbx_ctx *ctx, sbx_error *err);
/* The same, giving up with SBX_ETIMEOUT at deadline_ns (CLOCK_MONOTONIC,
 * sbx__now_monotonic_ns; 0: never). */
int sbx__flock_wait_until(int fd, int op, const sbx_ctx *ctx, uint64_t deadline_ns,
                          sbx_error *err);

/* ---- strings ------------------------------------------------------------- */
/* asprintf that aborts nothing: returns NULL on ENOMEM. */
char *sbx__strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* url with its credentials hidden as pip shows them: "user:****@host" in the
 * authority for user:password, "****@host" for a lone user (a token), and
 * without its query string when drop_query (presigned URLs sign there).
 * Always NUL-terminated, cut to len. */
const char *sbx__url_redact(char *buf, size_t len, const char *url, bool drop_query);
/* A number from the environment variable name, or def when it is unset,
 * empty or out of [min, max] (that said as a warning on ctx). */
int64_t sbx__env_int(const char *name, int64_t def, int64_t min, int64_t max,
                     const sbx_ctx *ctx);
/* Decompression bombs: how far a layer of `compressed` bytes may expand.
 * SBX_EXPANSION_FLOOR (1 GiB) whatever its ratio, beyond that
 * SBX_MAX_EXPANSION (100) times its compressed size, never beyond
 * SBX_MAX_LAYER_BYTES (64 GiB). */
uint64_t sbx__expansion_cap(uint64_t compressed, const sbx_ctx *ctx);
/* Monotonic and wall clocks in seconds / nanoseconds. */
int64_t sbx__now_unix(void);
uint64_t sbx__now_monotonic_ns(void);

#endif
