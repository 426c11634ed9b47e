/* sbx-image: the content-addressed store.
 *
 * One root directory holds blobs by the sha256 of their bytes (manifests and
 * configs, kept exactly), image layers compressed at rest (zstd, or gzip as a
 * registry sent it) and addressed by
 * the digest of the uncompressed tar (the OCI diff_id), and SQLite metadata.
 *
 * Invariants:
 *  - Writes stream into a temp file inside the store, are hashed while written,
 *    synced, checked against the expected digest when one is given, and only
 *    then linked into place.  Nothing half-written is ever visible.
 *  - Everything a live store handle committed is protected by that handle's
 *    process lease until the handle is freed, so gc in another process never
 *    deletes work in flight; leases of dead processes are ignored.
 *  - Names (refs, recipe digests) point to manifest digests; manifests record
 *    what they reference (sbx_store_child), so gc keeps what names and live
 *    leases reach.
 *  - Many processes may share one store.  No call here touches the network.
 */
#ifndef SBX_STORE_H
#define SBX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/context.h"
#include "sbx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_store sbx_store;
typedef struct sbx_blob_writer sbx_blob_writer;
typedef struct sbx_layer_writer sbx_layer_writer;
typedef struct sbx_layer_reader sbx_layer_reader;
typedef struct sbx_lease sbx_lease;

/* ---- opening ------------------------------------------------------------ */

/* Default root: $SBX_STORE, else /var/lib/sbx-image for root, else
 * $XDG_DATA_HOME/sbx-image (~/.local/share/sbx-image). */
SBX_API int sbx_store_default_root(char *buf, size_t len, sbx_error *err);

/* Open (creating with mode 0700 if needed) the store at root; NULL means the
 * default root, "" is SBX_EINVAL (an unset variable must not select the
 * default store).  The handle is owned by the caller; free with sbx_store_free.
 * One handle may be used by one thread at a time. */
SBX_API int sbx_store_open(sbx_store **out, const char *root, sbx_error *err);
SBX_API void sbx_store_free(sbx_store *s);
/* Open only a store that exists (its metadata is there): SBX_ENOTFOUND,
 * creating nothing, otherwise.  What read-only commands use. */
SBX_API int sbx_store_open_existing(sbx_store **out, const char *root, sbx_error *err);
SBX_API const char *sbx_store_root(const sbx_store *s);

/* ---- blobs: exact bytes (manifests, configs) ----------------------------- */

/* Start writing a blob.  expected_digest may be NULL; when given, commit fails
 * with SBX_EDIGEST on mismatch and nothing is stored. */
SBX_API int sbx_store_blob_begin(sbx_blob_writer **out, sbx_store *s, const char *expected_digest,
                                 sbx_error *err);
SBX_API int sbx_blob_writer_write(sbx_blob_writer *w, const void *buf, size_t len, sbx_error *err);
/* Verify, sync and link into place; writes the digest to digest_out (may be
 * NULL).  An already present blob is success.  The writer is freed either way. */
SBX_API int sbx_blob_writer_commit(sbx_blob_writer *w, char digest_out[SBX_DIGEST_BUFSZ],
                                   sbx_error *err);
/* Discard: removes the temp file and frees the writer.  Accepts NULL. */
SBX_API void sbx_blob_writer_abort(sbx_blob_writer *w);

/* One-shot put of a buffer (media_type may be NULL: recorded for inspect). */
SBX_API int sbx_store_put_blob(sbx_store *s, const void *data, size_t len, const char *media_type,
                               const char *expected_digest, char digest_out[SBX_DIGEST_BUFSZ],
                               sbx_error *err);
/* 1 if present (recorded and its file in place), 0 if not, <0 (err set)
 * when the store cannot tell (a metadata error is never "absent").  A hit
 * has joined this handle's process lease, so gc keeps it while the caller
 * relies on the answer (until sbx_store_free or sbx_store_lease_clear). */
SBX_API int sbx_store_has_blob(sbx_store *s, const char *digest, sbx_error *err);
/* Read a whole blob (re-hashed; SBX_EDIGEST if the file was damaged).
 * Refuses blobs over max bytes with SBX_ELIMIT.  *out is NUL-terminated and
 * owned by the caller. */
SBX_API int sbx_store_read_blob(sbx_store *s, const char *digest, size_t max, char **out,
                                size_t *len,
                                sbx_error *err);

/* ---- layers: uncompressed tar in, compressed at rest, addressed by diff_id ----
 *
 * At rest a layer is zstd (the store's own compression, or a registry's
 * zstd blob kept as sent) or gzip (a registry's gzip blob kept as sent). */
typedef enum { SBX_LAYER_ZSTD = 0, SBX_LAYER_GZIP = 1 } sbx_layer_format;

/* Start writing a layer from its uncompressed tar stream.  expected_diff_id
 * may be NULL. */
SBX_API int sbx_store_layer_begin(sbx_layer_writer **out, sbx_store *s,
                                  const char *expected_diff_id,
                                  sbx_error *err);
SBX_API int sbx_layer_writer_write(sbx_layer_writer *w, const void *buf, size_t len,
                                   sbx_error *err);
/* Finish: verify, sync, link.  diff_id_out may be NULL.  Frees the writer. */
SBX_API int sbx_layer_writer_commit(sbx_layer_writer *w, char diff_id_out[SBX_DIGEST_BUFSZ],
                                    sbx_error *err);
SBX_API void sbx_layer_writer_abort(sbx_layer_writer *w);
/* From now on sbx_layer_writer_write takes the layer as a compressed stream
 * in format fmt (a registry's blob) instead of its tar.  The writer
 * decompresses it itself, hashes the tar for the diff_id, and hands the tar
 * to on_tar when set (a nonzero return, with err set, fails the write).  The
 * stream's bytes become the stored file as they are, so nothing is
 * compressed again:
 *  - zstd (windows up to 16 MiB: larger is SBX_ELIMIT; frames that need a
 *    dictionary or of zstd's pre-1.0 formats SBX_EUNSUPPORTED; damage
 *    SBX_EDIGEST): kept while every frame carries zstd's content checksum;
 *    from the first frame without one, the writer recompresses what it kept
 *    from its own temp file and compresses the rest itself, so the stored
 *    file always has checksums.  The commit fails (SBX_EDIGEST) when the
 *    stream ended mid-frame.
 *  - gzip (one or more members, each with its CRC-32 and length, which the
 *    writer checks and the readers rely on): always kept.  Damage, a stream
 *    that ends mid-member, and bytes after a member that are not another
 *    one are SBX_EDIGEST.
 * SBX_EINVAL after a write. */
typedef int (*sbx_layer_tar_fn)(void *ud, const void *tar, size_t len, sbx_error *err);
SBX_API int sbx_layer_writer_compressed_input(sbx_layer_writer *w, sbx_layer_format fmt,
                                              sbx_layer_tar_fn on_tar, void *ud,
                                              sbx_error *err);
/* The format a stream's first bytes (n of them, 4 decide) say: gzip's or
 * zstd's magic (also a skippable frame's, which may start a zstd stream), or
 * -1 for neither (a plain tar, or too few bytes). */
SBX_API int sbx_layer_sniff(const unsigned char *head, size_t n);
/* After compressed input (no on_tar), before the first write: keep the
 * stream as it is without decompressing it, and record the layer as not yet
 * checked against its diff_id (the writer's expected_diff_id, required).
 * A zstd stream's frames are walked by their headers, not decoded: judged as
 * above, and the stream must end at a frame's end.  From a frame without a
 * content checksum the writer decodes and checks the stream after all (what
 * it took so far from its temp file), and recompresses as above.
 * The caller checks the stream's digest (sbx_layer_writer_input_digest), so
 * the stored bytes are the registry's blob; whether that blob's tar is the
 * diff_id the image claims is checked when the layer is first read in
 * full: a reader (sbx_store_layer_open) hashes the tar of an unchecked
 * layer and fails at its end when it is not the diff_id, and records the
 * layer as checked when it is (as do fsck and sbx_store_layer_shippable).
 * An unchecked layer counts as stored for everything but the choice to
 * download another blob for it: a blob other than the unchecked one is
 * downloaded and checked, and replaces it.  The commit is SBX_EBUSY when
 * another blob was stored unchecked for the same diff_id meanwhile (write
 * it again, checked).  What a pull saves: decompressing and hashing the
 * tar, most of its CPU. */
SBX_API int sbx_layer_writer_defer_check(sbx_layer_writer *w, sbx_error *err);
/* After compressed input: true while the stream is kept as sent. */
SBX_API bool sbx_layer_writer_kept(const sbx_layer_writer *w);
/* After compressed input, at the end of the stream: the sha256 of
 * every byte written (a registry blob's digest, to check before the commit;
 * hashed once for that and the stored file's record).  No write after it. */
SBX_API int sbx_layer_writer_input_digest(sbx_layer_writer *w, char out[SBX_DIGEST_BUFSZ],
                                          sbx_error *err);

/* As sbx_store_has_blob, for a layer by diff_id. */
SBX_API int sbx_store_has_layer(sbx_store *s, const char *diff_id, sbx_error *err);

/* Record a compressed form seen for a layer (a registry's blob digest, its
 * media type and size), so the same layer arriving another way is recognised. */
SBX_API int sbx_store_layer_add_source(sbx_store *s, const char *diff_id, const char *blob_digest,
                                       const char *media_type, uint64_t size, sbx_error *err);
/* diff_id of the layer stored for a compressed blob digest; SBX_ENOTFOUND if none. */
SBX_API int sbx_store_layer_by_source(sbx_store *s, const char *blob_digest,
                                      char diff_id_out[SBX_DIGEST_BUFSZ], sbx_error *err);

typedef struct sbx_layer_info {
    char diff_id[SBX_DIGEST_BUFSZ];
    uint64_t size;            /* uncompressed tar bytes */
    uint64_t stored_size;     /* compressed bytes on disk */
    /* sha256 of the stored file: the store's own zstd, or the registry's
     * blob digest when its blob was kept as sent */
    char stored_digest[SBX_DIGEST_BUFSZ];
    sbx_layer_format format;  /* of the stored file */
    /* the tar was checked against diff_id; when not (a pull stored the
     * registry's blob unchecked, sbx_layer_writer_defer_check), size is 0
     * until the first full read */
    bool verified;
} sbx_layer_info;
SBX_API int sbx_store_layer_info(sbx_store *s, const char *diff_id, sbx_layer_info *out,
                                 sbx_error *err);

/* sbx_store_layer_info for a layer about to leave the store (push,
 * export): a layer kept as a registry's gzip blob is first read with zlib,
 * the inflate most tools use (the store reads with ISA-L, which accepts some
 * streams zlib refuses), once per blob; one zlib refuses, or whose tar is not
 * the layer's, is replaced in the store by the store's own zstd of the same
 * tar (*replaced, when not NULL, says so) and *out describes that.  So no
 * image ships a blob other tools cannot read, whoever stored the layer
 * first. */
SBX_API int sbx_store_layer_shippable(sbx_store *s, const char *diff_id, sbx_layer_info *out,
                                      bool *replaced, sbx_error *err);

/* Check a layer stored unchecked now: read it in full (its tar against its
 * diff_id, as the first read does), recorded as checked when it is (0);
 * SBX_EDIGEST when it is not its diff_id.  0 at once for a checked layer. */
SBX_API int sbx_store_layer_check(sbx_store *s, const char *diff_id, sbx_error *err);

/* Whether the store holds diff_id as a layer to build on instead of
 * storing one's own copy: 1 for a checked layer (an unchecked one is
 * checked now, sbx_store_layer_check); 0 when there is none, or the stored
 * one is another image's blob that is not this layer (not its diff_id,
 * damaged, or over the expansion limit), which a checked write of the real
 * layer replaces.  What pull and load ask; an unchecked claim never makes
 * them skip the real layer. */
SBX_API int sbx_store_layer_trusted(sbx_store *s, const char *diff_id, sbx_error *err);

/* Stream a stored layer back as its uncompressed tar.  An unchecked layer's
 * tar is hashed as it goes: the read that reaches its end fails
 * (SBX_EDIGEST) when it is not the diff_id, and one that expands beyond
 * sbx__expansion_cap of the stored size fails (SBX_ELIMIT); after a read to
 * the end, sbx_layer_reader_free records the layer as checked. */
SBX_API int sbx_store_layer_open(sbx_layer_reader **out, sbx_store *s, const char *diff_id,
                                 sbx_error *err);
/* Read up to len bytes; *nread 0 means end of stream. */
SBX_API int sbx_layer_reader_read(sbx_layer_reader *r, void *buf, size_t len, size_t *nread,
                                  sbx_error *err);
SBX_API void sbx_layer_reader_free(sbx_layer_reader *r);
/* Whether the reader checks the tar against the diff_id itself (an
 * unchecked layer): its read that reaches the end fails on a mismatch. */
SBX_API bool sbx_layer_reader_checks(const sbx_layer_reader *r);
/* Path of the stored file (for export/push of the stored form). */
SBX_API int sbx_store_layer_path(sbx_store *s, const char *diff_id, char *buf, size_t len,
                                 sbx_error *err);

/* Directory where a consumer (the builder, `sbx-image unpack`) may keep the
 * unpacked form of a layer: <root>/unpacked/<hex>.  gc removes it with the
 * layer, and with sbx_gc_options.unpacked while no live lease reaches the
 * layer, so a consumer holds a lease on the layer (or an image reaching it)
 * for as long as it uses the directory. */
/* Take the unpacked dir of diff_id out of the cache, to be made again
 * when next used: what fsck does with one that no longer matches its
 * layer.  SBX_EBUSY while a live lease or mount reaches the layer (an
 * overlay may use it as a lower); 0 when there is none. */
SBX_API int sbx_store_unpacked_discard(sbx_store *s, const char *diff_id, sbx_error *err);
SBX_API int sbx_store_layer_unpacked_path(sbx_store *s, const char *diff_id, char *buf, size_t len,
                                          sbx_error *err);

/* ---- manifests and what they reference ----------------------------------- */

typedef enum {
    SBX_CHILD_BLOB = 1,     /* a config or another exact blob, by digest */
    SBX_CHILD_LAYER = 2,    /* a layer, by diff_id */
    SBX_CHILD_MANIFEST = 3, /* an index's entry, by manifest digest */
} sbx_child_kind;

typedef struct sbx_store_child {
    sbx_child_kind kind;
    const char *digest;
} sbx_store_child;

/* Store a manifest's exact bytes and record what it references, in one
 * transaction.  Children must already be stored (SBX_ENOTFOUND otherwise). */
SBX_API int sbx_store_put_manifest(sbx_store *s, const void *data, size_t len,
                                   const char *media_type, const char *expected_digest,
                                   const sbx_store_child *children, size_t nchildren,
                                   char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err);

/* ---- names -------------------------------------------------------------- */

/* Names are free-form strings (a normalized ref such as
 * "docker.io/library/node:22", a recipe digest "recipe:sha256:...", a builder
 * cache key "cache:sha256:...").  Setting replaces atomically. */
SBX_API int sbx_store_name_set(sbx_store *s, const char *name, const char *manifest_digest,
                               sbx_error *err);
/* The same, with an expiry: the name goes (gc removes it first) once
 * ttl_seconds pass without a use; each use (sbx_store_touch: mount, unpack,
 * build base, export) starts the time again.  0: never expires (what
 * sbx_store_name_set gives).  At most SBX_NAME_TTL_MAX. */
#define SBX_NAME_TTL_MAX ((int64_t)100 * 365 * 86400)
SBX_API int sbx_store_name_set_ttl(sbx_store *s, const char *name, const char *manifest_digest,
                                   int64_t ttl_seconds, sbx_error *err);
SBX_API int sbx_store_name_get(sbx_store *s, const char *name, char digest_out[SBX_DIGEST_BUFSZ],
                               sbx_error *err);
SBX_API int sbx_store_name_remove(sbx_store *s, const char *name, sbx_error *err);

typedef struct sbx_name_entry {
    char *name;
    char digest[SBX_DIGEST_BUFSZ];
    int64_t created;   /* unix seconds */
    int64_t last_used; /* unix seconds */
    int64_t expires_at; /* unix seconds; 0: never */
    int64_t ttl;        /* seconds an unused name lives; 0: forever */
} sbx_name_entry;
/* All names whose text starts with prefix (NULL or "" for all), sorted. */
SBX_API int sbx_store_name_list(sbx_store *s, const char *prefix, sbx_name_entry **out, size_t *n,
                                sbx_error *err);
SBX_API void sbx_name_entries_free(sbx_name_entry *e, size_t n);
/* Mark a manifest as used now (for LRU eviction in gc --max-bytes), and
 * push back the expiry of every name with a ttl that points to it. */
SBX_API int sbx_store_touch(sbx_store *s, const char *digest, sbx_error *err);

/* ---- small metadata: key/value with a timestamp (e.g. resolve cache) ----- */
SBX_API int sbx_store_meta_set(sbx_store *s, const char *ns, const char *key, const char *value,
                               sbx_error *err);
/* Every key and value of a namespace, sorted by key; arrays and strings
 * owned by the caller (free each, then the arrays). */
SBX_API int sbx_store_meta_list(sbx_store *s, const char *ns, char ***keys_out,
                                char ***values_out, size_t *n_out, sbx_error *err);
/* Remove one (absent: success). */
SBX_API int sbx_store_meta_delete(sbx_store *s, const char *ns, const char *key, sbx_error *err);
/* *value_out owned by the caller; *stamp_out the unix time it was set. */
SBX_API int sbx_store_meta_get(sbx_store *s, const char *ns, const char *key, char **value_out,
                               int64_t *stamp_out, sbx_error *err);

/* ---- private content: where it came from, who may use it ------------------ */
/* What the registry gives anyone is public.  What was pulled with
 * credentials and refused to an anonymous caller is private to the
 * registry repository it came from: a caller may use it only after showing
 * it may pull from that repository (docs/registry.md, "Private images").
 * The store records origins; the check itself is the registry's
 * (sbx_registry_gate), installed on a handle. */

/* Record that digest (a manifest, index, config or layer diff_id) came
 * from repo ("host/path") where ref_digest (a manifest the repository
 * holds) proves access, and whether an anonymous caller was refused
 * there.  The latest observation for a repository wins.  Durable before
 * it returns: record before the content becomes visible under a name. */
SBX_API int sbx_store_origin_set(sbx_store *s, const char *const *digests, size_t ndigests,
                                 const char *repo, const char *ref_digest, bool is_private,
                                 sbx_error *err);

/* Record that digests were made here (what a build step produced: its
 * layer, the state's config and manifest).  Public from then on, whatever
 * repository they also came from: whoever can make them may have them.
 * Never for content that was only copied in (a pulled base, a loaded
 * image). */
SBX_API int sbx_store_origin_local(sbx_store *s, const char *const *digests, size_t ndigests,
                                   sbx_error *err);

/* The check for one private repository: 0 when the handle's caller may
 * pull repo@ref_digest, SBX_EAUTH (or another error) with a message when
 * not. */
typedef int (*sbx_access_fn)(void *arg, sbx_store *s, const char *repo, const char *ref_digest,
                             sbx_error *err);
/* Install the caller's check on this handle (fn NULL: none).  arg must
 * outlive its use; install again for another caller. */
SBX_API void sbx_store_set_access(sbx_store *s, sbx_access_fn fn, void *arg);
/* May the handle's caller use digest and all it reaches (children)?  Each
 * private piece (no public origin, some private one) needs one of its
 * repositories to pass the installed check; with none installed, private
 * content is refused (SBX_EAUTH).  0 for public and local content. */
SBX_API int sbx_store_access_check(sbx_store *s, const char *digest, sbx_error *err);
/* The same with fn and arg for this one check instead of the handle's. */
SBX_API int sbx_store_access_check_with(sbx_store *s, const char *digest, sbx_access_fn fn,
                                        void *arg, sbx_error *err);
/* The store's secret key (32 bytes, made on first use, mode 0600): keyed
 * hashes of credential identities, so the store never holds a secret. */
SBX_API int sbx_store_secret_key(sbx_store *s, unsigned char key[32], sbx_error *err);

/* ---- leases ------------------------------------------------------------- */

/* A lease keeps digests (blobs, layers, manifests and all they reach) from gc
 * while it lives: until released, until ttl_seconds pass (0 = no expiry), or
 * until the owning process dies. */
SBX_API int sbx_store_lease_acquire(sbx_lease **out, sbx_store *s, int64_t ttl_seconds,
                                    sbx_error *err);
SBX_API int sbx_lease_add(sbx_lease *l, const char *digest, sbx_error *err);
/* Release and free; accepts NULL. */
SBX_API void sbx_lease_release(sbx_lease *l);

/* Empty this handle's process lease: what it committed or found through
 * has_* so far is then kept only if a name or another lease reaches it.  A
 * long-lived handle (a daemon that never frees its store) calls this between
 * operations, or gc could never reclaim anything it once touched. */
SBX_API int sbx_store_lease_clear(sbx_store *s, sbx_error *err);

/* ---- mounts: writable layers the store owns -------------------------------
 *
 * The records behind sbx_rootfs_mount (the rootfs module does the mounting).
 * A mount lives in <root>/mounts/<id>/ (u: overlay upper, w: work dir, l/:
 * links to the lower dirs) with a record naming its image, which gc keeps
 * (with its layers' unpacked dirs) while the record lives.  A record is dead
 * when its maker died before finishing, when it was made in another boot, or
 * (checked by gc; not for external ones, which the runtime mounts) when no
 * mount namespace on the host still has its overlay (source "sbx-<id>")
 * mounted; the reaper unmounts what is left in this namespace and removes
 * it.  See store_mounts.c. */
#define SBX_MOUNT_ID_BUFSZ 16
typedef struct sbx_store_mount sbx_store_mount;

typedef struct sbx_mount_entry {
    char id[SBX_MOUNT_ID_BUFSZ];   /* 12 characters [a-z0-9] */
    char *image;                   /* as the caller named it */
    char digest[SBX_DIGEST_BUFSZ]; /* the image manifest */
    char *dir;                     /* the mount point (canonical) */
    char *path;                    /* <root>/mounts/<id> */
    char *flat;                    /* the flattened lower it uses, or "" */
    char boot_id[40];
    int64_t created;               /* unix seconds */
    bool read_only;
    bool ready;                    /* made completely */
    bool external;                 /* the runtime mounts it: live until umount or reboot */
} sbx_mount_entry;

/* Start a mount record (state "being made", held by the returned handle):
 * creates <root>/mounts/<id> with u/ and w/ (not for read_only) and l/.
 * Finish with sbx_store_mount_ready once mounted, or sbx_store_mount_abort. */
SBX_API int sbx_store_mount_begin(sbx_store_mount **out, sbx_store *s, const char *image,
                                  const char *digest, const char *dir, bool read_only,
                                  sbx_error *err);
SBX_API const char *sbx_store_mount_id(const sbx_store_mount *m);
SBX_API const char *sbx_store_mount_path(const sbx_store_mount *m);
/* Record the flattened lower dir the mount uses (kept by gc meanwhile). */
SBX_API int sbx_store_mount_set_flat(sbx_store_mount *m, const char *flat, sbx_error *err);
/* Record that the runtime, not sbx-image, mounts it (see sbx_mount_entry). */
SBX_API int sbx_store_mount_set_external(sbx_store_mount *m, sbx_error *err);
/* Mark made and release the handle (freed either way). */
SBX_API int sbx_store_mount_ready(sbx_store_mount *m, sbx_error *err);
/* Remove the record and its directory (the caller unmounted it) and free. */
SBX_API void sbx_store_mount_abort(sbx_store_mount *m);

/* The record for a mount id or a mount point (any path to it).
 * SBX_ENOTFOUND when there is none.  Clear with sbx_mount_entry_clear. */
SBX_API int sbx_store_mount_find(sbx_mount_entry *out, sbx_store *s, const char *id_or_dir,
                                 sbx_error *err);
SBX_API int sbx_store_mount_list(sbx_mount_entry **out, size_t *n, sbx_store *s, sbx_error *err);
SBX_API void sbx_mount_entry_clear(sbx_mount_entry *e);
SBX_API void sbx_mount_entries_free(sbx_mount_entry *v, size_t n);
/* Hold mount id (its maker's lock: gc leaves it alone meanwhile) until
 * *fd_out is closed.  SBX_ENOTFOUND when it went while we waited. */
SBX_API int sbx_store_mount_lock(int *fd_out, sbx_store *s, const char *id, sbx_ctx *ctx,
                                 sbx_error *err);
/* Remove record and directory of a mount the caller unmounted (holding
 * its lock_fd from sbx_store_mount_lock). */
SBX_API int sbx_store_mount_remove(sbx_store *s, const char *id, int lock_fd, sbx_error *err);
/* Remove dead mounts (see above); full: also check every mount namespace
 * for the live ones (gc), else only unfinished and other-boot records
 * (cheap: what open does).  *reaped (may be NULL) counts them. */
SBX_API int sbx_store_mount_reap(sbx_store *s, bool full, unsigned *reaped, sbx_error *err);

/* ---- what images cost ------------------------------------------------------ */

typedef struct sbx_image_usage {
    /* stored bytes (blobs, layer files) of everything the manifest reaches */
    uint64_t total_bytes;
    /* of those, the bytes no other name reaches (builder step images,
     * "cache:" names, do not count): what removing this name alone would
     * free, the billing basis of a snapshot.  A snapshot that changed
     * nothing (its parent's digest under a new name) costs 0. */
    uint64_t size_bytes;
} sbx_image_usage;
/* The usage of manifest digest as the name `name` holds it (other names,
 * of any digest, count as others); NULL: of the image itself (only names of
 * other digests count as others). */
SBX_API int sbx_store_image_usage(sbx_store *s, const char *digest, const char *name,
                                  sbx_image_usage *out, sbx_error *err);

/* ---- gc, fsck, df ------------------------------------------------------- */

typedef struct sbx_gc_options {
    uint64_t max_bytes; /* 0: no budget; else evict least recently used names */
    int dry_run;
    /* Also remove the unpacked directories of layers no live lease reaches
     * (the layers themselves stay; the next consumer unpacks them again). */
    int unpacked;
} sbx_gc_options;
#define SBX_GC_OPTIONS_INIT {0, 0, 0}

typedef struct sbx_gc_report {
    uint64_t blobs_removed, layers_removed, names_evicted;
    uint64_t bytes_freed, bytes_after; /* blobs and layer files, as df's stored_bytes */
    /* Unpacked layer directories removed (with their layer, or by
     * opts.unpacked) and the bytes that frees: st_blocks * 512 of each inode
     * once, counting only inodes with no link left outside them (a tree of
     * `sbx-image unpack --link` keeps its files). */
    uint64_t unpacked_removed, unpacked_bytes_freed;
    /* names removed because their expiry passed (names_evicted counts the
     * --max-bytes evictions after them) */
    uint64_t names_expired;
    /* dead mounts removed (their maker died, their host rebooted, or their
     * overlay is mounted nowhere any more) */
    uint64_t mounts_reaped;
} sbx_gc_report;

SBX_API int sbx_store_gc(sbx_store *s, const sbx_gc_options *opts, sbx_gc_report *report,
                         sbx_ctx *ctx, sbx_error *err);

typedef struct sbx_fsck_report {
    uint64_t blobs_checked, layers_checked;
    uint64_t corrupt;            /* quarantined */
    uint64_t dangling_repaired;  /* records without files, removed */
    uint64_t orphans;            /* files without records, recorded or removed */
    uint64_t dead_mounts;        /* mounts found dead (sbx_store_mount_reap) and removed */
} sbx_fsck_report;

/* Re-hash everything; quarantine corrupt files under <root>/quarantine;
 * repair dangling records.  Returns SBX_ECORRUPT when anything was corrupt
 * or dangling (the report says what), 0 when clean.  Verified files without
 * records (left by an interrupted gc) are recorded and counted in orphans
 * but are not a failure. */
SBX_API int sbx_store_fsck(sbx_store *s, sbx_fsck_report *report, sbx_ctx *ctx, sbx_error *err);

typedef struct sbx_df_report {
    uint64_t stored_bytes;        /* bytes on disk: blobs + layer files */
    uint64_t logical_bytes;       /* what the named images take uncompressed, counted per image */
    uint64_t blobs, layers, names;
    /* bytes on disk under <root>/unpacked (not in stored_bytes): st_blocks *
     * 512 of each inode once, as `du -s` counts them */
    uint64_t unpacked_bytes;
} sbx_df_report;
SBX_API int sbx_store_df(sbx_store *s, sbx_df_report *out, sbx_error *err);

/* ---- scratch directories and locks: the store owns its tree ---------------
 *
 * Work in progress that is not yet an object (a sandbox bundle, a layer
 * being unpacked, a step's staging area) lives in a scratch directory
 * <root>/tmp/<kind>.<id>, never elsewhere under the root.  Its maker holds an
 * flock on it until sbx_scratch_free; when the maker dies the kernel drops
 * the lock, and the next sbx_store_open or gc removes the directory (safe
 * across pid reuse and pid namespaces: no pid is recorded). */
typedef struct sbx_scratch sbx_scratch;

/* Leave the directory to sbx_store_scratch_reap with its kind's hook (it
 * holds something only its module can release: a container, a mount). */
#define SBX_SCRATCH_OWNER_REAPS 1u

/* A new empty directory (mode 0700).  kind: 1-16 letters a-z. */
SBX_API int sbx_store_scratch_new(sbx_scratch **out, sbx_store *s, const char *kind,
                                  unsigned flags, sbx_error *err);
/* Its absolute path; its id (12 characters [a-z0-9], unique in the store). */
SBX_API const char *sbx_scratch_path(const sbx_scratch *sc);
SBX_API const char *sbx_scratch_id(const sbx_scratch *sc);
/* Remove the directory with what is in it, then release it.  An error (a
 * mount in the way) leaves the directory to the reaper.  Accepts NULL. */
SBX_API int sbx_scratch_free(sbx_scratch *sc, sbx_error *err);
/* Release it without removing anything (something in it could not be
 * undone here, e.g. a mount): the reaper takes it.  Accepts NULL. */
SBX_API void sbx_scratch_release(sbx_scratch *sc);

/* Called for a dead scratch directory before it is removed; an error keeps
 * it (for the next try). */
typedef int (*sbx_scratch_reap_fn)(void *ud, const char *path, const char *id, sbx_error *err);
/* Remove the scratch directories of kind (NULL: every kind, and the store's
 * own temp files) whose maker is gone, calling fn first for each (kind and
 * fn given: also those made with SBX_SCRATCH_OWNER_REAPS).  A directory with
 * a mount below it is left.  *removed (may be NULL) counts what went. */
SBX_API int sbx_store_scratch_reap(sbx_store *s, const char *kind, sbx_scratch_reap_fn fn,
                                   void *ud, unsigned *removed, sbx_error *err);

/* Wait for the lock <root>/locks/<name>.lock (name: [a-z0-9_-]), held until
 * *fd_out is closed.  SBX_ECANCELED when ctx is cancelled while waiting. */
SBX_API int sbx_store_lock_named(int *fd_out, sbx_store *s, const char *name, sbx_ctx *ctx,
                                 sbx_error *err);
/* The same, giving up after timeout_seconds (0: never) with SBX_ETIMEOUT. */
SBX_API int sbx_store_lock_named_wait(int *fd_out, sbx_store *s, const char *name,
                                      unsigned timeout_seconds, sbx_ctx *ctx, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
