/* Internal to the store module: the handle, SQLite helpers, the commit
 * protocol shared by blob and layer writers.  See store.c for invariants. */
#ifndef SBX_STORE_INTERNAL_H
#define SBX_STORE_INTERNAL_H

#include <sqlite3.h>
#include <limits.h>
#include <sys/stat.h>

#include "sbx/store.h"
#include "sbx_common.h"

struct sbx_store {
    char *root;
    int root_fd;
    int lock_fd;          /* <root>/lock, flock()ed shared around commits */
    sqlite3 *db;
    int64_t lease_id;     /* this handle's process lease (row in leases) */
    int64_t start_time;   /* our process start time (/proc/self/stat field 22) */
    const sbx_ctx *ctx;   /* the context of the long call (gc, fsck) under way, or NULL */
    sbx_access_fn access; /* who may use private content (store_access.c), or NULL */
    void *access_arg;
};

/* Kinds of stored object, also the directory they live in. */
typedef enum { SBX_OBJ_BLOB = 0, SBX_OBJ_LAYER = 1 } sbx_obj_kind;

/* <root>/blobs/sha256/<hex>, or <root>/layers/sha256/<hex>.zst or .gz by
 * the layer's format (ignored for blobs), relative to root_fd. */
void sbx_store__obj_relpath(char *buf, size_t len, sbx_obj_kind kind, const char *hex,
                            sbx_layer_format fmt);
/* The format a layer file's name ends in after its hex (".zst", ".gz"), or -1. */
int sbx_store__layer_suffix_format(const char *suffix);
/* 1 and its format if diff_id is recorded, 0 if not, <0 on a metadata error. */
/* Record an unchecked layer as checked: its tar of size bytes was hashed to
 * its diff_id, from a file of stored_size bytes hashing to stored_digest.
 * Only while the record is still unchecked and still says was (another
 * writer may have replaced it meanwhile).  In the caller's transaction. */
int sbx_store__layer_mark_verified(sbx_store *s, const char *diff_id, const char *was,
                                   const char *stored_digest, uint64_t size, uint64_t stored_size,
                                   sbx_error *err);
int sbx_store__layer_lookup(sbx_store *s, const char *diff_id, sbx_layer_format *fmt,
                            sbx_error *err);

/* SQLite helpers: every failure becomes an sbx_error naming the store. */
int sbx_store__sql_err(sbx_store *s, sbx_error *err, const char *what);
int sbx_store__exec(sbx_store *s, const char *sql, sbx_error *err);
int sbx_store__prepare(sbx_store *s, sqlite3_stmt **st, const char *sql, sbx_error *err);
static inline void sbx_store__finalizep(sqlite3_stmt **st) { sqlite3_finalize(*st); }
#define _cleanup_stmt_ __attribute__((cleanup(sbx_store__finalizep)))
/* BEGIN IMMEDIATE (takes the write lock now, so no upgrade deadlocks). */
int sbx_store__begin(sbx_store *s, sbx_error *err);
int sbx_store__commit(sbx_store *s, sbx_error *err);
/* Commit the next transactions without waiting for the disk (on) or with
 * (off, the default).  Only for records that a crash makes moot anyway:
 * leases (their process is dead after it), use times, mount records (a
 * mount does not survive a reboot).  WAL with synchronous=NORMAL: a power
 * cut may lose the last such commits, never consistency; the next full
 * commit of any process makes them durable too. */
void sbx_store__relaxed(sbx_store *s, bool on);
void sbx_store__rollback(sbx_store *s);
/* 1 if a row exists for the single-text-parameter query, 0 if not, <0 on error. */
int sbx_store__exists(sbx_store *s, const char *sql, const char *arg, sbx_error *err);

/* flock on <root>/lock: shared for writers' commits, exclusive for gc/fsck. */
int sbx_store__lock(sbx_store *s, int exclusive, sbx_error *err);
void sbx_store__unlock(sbx_store *s);

/* Add digest to this handle's process lease (inside the caller's transaction). */
int sbx_store__lease_self(sbx_store *s, const char *digest, sbx_error *err);

/* A new entry tmp/<kind>.<id> (a file opened read-write, or a directory),
 * already flock()ed when it appears under that name; returns the locked fd
 * (the lock lives as long as it is open), name_out gets "<kind>.<id>".
 * owner_reaps (directories): only sbx_store_scratch_reap with this kind's
 * hook may remove it once its maker is gone.  See store_scratch.c. */
int sbx_store__tmp_entry(sbx_store *s, const char *kind, bool dir, bool owner_reaps,
                         char *name_out, size_t len, sbx_error *err);
/* The generic reaper (open and gc): remove every unlocked entry of tmp/ (and
 * undo a writer's half-done link). */
void sbx_store__clean_tmp(sbx_store *s);

/* Process identity for leases (the only use of pids in the store): start
 * time in clock ticks since boot, 0 if the process does not exist. */
int64_t sbx_store__proc_start(pid_t pid);
int sbx_store__proc_alive(pid_t pid, int64_t start);

/* The commit protocol (blob and layer writers): with the shared lock and an
 * IMMEDIATE transaction, link tmp into place unless a record exists, fsync
 * the directory, then run insert (which writes the record) and commit.
 * Unlinks tmp in every case. */
/* present: 0 no record existed; 1 a record exists (the object was not
 * linked again); 2 (replace: asked by replace(s, ud), under the lock, when
 * a record exists) a layer whose file the new one replaces (recorded in
 * another format, or an unchecked record of another blob): insert updates
 * the record, and an old file of another name is unlinked once it is
 * committed; one of the same name is renamed over.  replace may be NULL.  fmt: a layer's stored format (0 for
 * blobs); the named temp file is tmp/<b|l|g>.<hex>.<id>, g for a gzip
 * layer, so the reaper knows the name it was linked under. */
typedef int (*sbx_store__insert_fn)(sbx_store *s, void *ud, int present, sbx_error *err);
typedef bool (*sbx_store__replace_fn)(sbx_store *s, void *ud);
int sbx_store__commit_object(sbx_store *s, sbx_obj_kind kind, sbx_layer_format fmt,
                             sbx_store__replace_fn replace,
                             const char *tmpname, const char *digest, sbx_store__insert_fn insert,
                             void *ud, sbx_error *err);

/* 1 if recorded, in place and now leased by this handle; 0 if not; <0 on
 * a metadata error (never reported as "absent"). */
int sbx_store__has(sbx_store *s, sbx_obj_kind kind, const char *digest, sbx_error *err);

/* The space reserve: created on open when there is room; released (returns
 * 1) by rm and gc when they hit a full disk, before they retry once. */
void sbx_store__reserve_ensure(sbx_store *s);
int sbx_store__reserve_release(sbx_store *s);

/* Map an errno from a write to an error naming the store. */
int sbx_store__io_err(sbx_store *s, sbx_error *err, int e, const char *what);

/* Bytes on disk of everything under <root>/unpacked (for df). */
int sbx_store__unpacked_bytes(sbx_store *s, uint64_t *out, sbx_error *err);

/* Hash a stored object's file: blobs by bytes; layers by decompressing
 * (diff_id, size) and hashing the stored stream.  max_size, when not 0,
 * limits a layer's tar (SBX_ELIMIT beyond it: an unchecked layer may
 * be a decompression bomb no pull has expanded). */
typedef struct {
    char digest[SBX_DIGEST_BUFSZ];        /* blob digest or diff_id */
    char stored_digest[SBX_DIGEST_BUFSZ]; /* layers only */
    uint64_t size, stored_size;
} sbx_store__hash_result;
int sbx_store__hash_file(sbx_store *s, sbx_obj_kind kind, sbx_layer_format fmt, int fd,
                         uint64_t max_size, sbx_store__hash_result *out, sbx_error *err);

/* The writer's commit replaces the layer's file and record when the layer
 * is stored in another format (store_ship.c). */
void sbx_store__layer_writer_replace(sbx_layer_writer *w);

/* Streaming gzip decompression (ISA-L): one member after another, each
 * member's CRC-32 and length checked.  Decompresses in[*ipos..ilen) into
 * out[*opos..ocap), advancing both; returns 0, or a negative ISA-L code
 * for damaged data (sbx_store__gz_reason names it).  ended: the last
 * member so far is complete (with no new one begun). */
typedef struct sbx_store__gz sbx_store__gz;
sbx_store__gz *sbx_store__gz_new(void);
void sbx_store__gz_free(sbx_store__gz *g);
int sbx_store__gz_step(sbx_store__gz *g, const unsigned char *in, size_t ilen, size_t *ipos,
                       unsigned char *out, size_t ocap, size_t *opos);
bool sbx_store__gz_ended(const sbx_store__gz *g);
const char *sbx_store__gz_reason(int r);

#endif
