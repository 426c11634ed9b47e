/* gc: keep what names and live leases reach, delete the rest; with a byte
 * budget, evict least recently used names first (never what a lease holds).
 * With opts.unpacked, also empty the unpacked layer cache of what no live
 * lease reaches (the layers stay).
 * df: bytes on disk against what the named images take unpacked.
 *
 * gc holds the lock file exclusively from mark to sweep, so no writer is
 * between its check and its record meanwhile; records go in one transaction,
 * files after it (a crash in between leaves unrecorded files, which the next
 * gc removes and fsck reports). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "store_internal.h"

/* Everything reachable from roots: names not evicted, plus leases if asked. */
static const char *const MARK_SQL =
    "DELETE FROM gc_live;"
    "INSERT INTO gc_live(d) WITH RECURSIVE r(d) AS ("
    " SELECT digest FROM names WHERE name NOT IN (SELECT name FROM gc_evict)"
    " UNION SELECT digest FROM lease_refs"
    " UNION SELECT digest FROM mounts"
    " UNION SELECT c.child FROM children c JOIN r ON c.parent = r.d)"
    " SELECT d FROM r;";

static const char *const LEASED_SQL =
    "DELETE FROM gc_leased;"
    "INSERT INTO gc_leased(d) WITH RECURSIVE r(d) AS ("
    " SELECT digest FROM lease_refs"
    " UNION SELECT digest FROM mounts"
    " UNION SELECT c.child FROM children c JOIN r ON c.parent = r.d)"
    " SELECT d FROM r;";

static int query_u64(sbx_store *s, const char *sql, uint64_t *out, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    if (sqlite3_step(st) != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "query metadata");
    *out = (uint64_t)sqlite3_column_int64(st, 0);
    return 0;
}

/* Names whose expiry passed go first (not while their image is mounted:
 * being mounted is being used). */
static int expire_names(sbx_store *s, sbx_gc_report *rep, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT OR IGNORE INTO gc_evict(name) SELECT name FROM names"
                           " WHERE expires > 0 AND expires <= ? AND digest NOT IN"
                           " (SELECT digest FROM mounts)",
                           err) < 0)
        return err->code;
    sqlite3_bind_int64(st, 1, sbx__now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "expire names");
    rep->names_expired = (uint64_t)sqlite3_changes(s->db);
    return 0;
}

/* Drop leases whose process died (pid + start time) or whose ttl passed. */
static int drop_dead_leases(sbx_store *s, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL, *del_refs = NULL, *del = NULL;
    if (sbx_store__prepare(s, &st, "SELECT id, pid, start_time, expires FROM leases", err) < 0 ||
        sbx_store__prepare(s, &del_refs, "DELETE FROM lease_refs WHERE lease=?", err) < 0 ||
        sbx_store__prepare(s, &del, "DELETE FROM leases WHERE id=?", err) < 0)
        return err->code;
    int64_t now = sbx__now_unix();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        pid_t pid = (pid_t)sqlite3_column_int64(st, 1);
        int64_t start = sqlite3_column_int64(st, 2), expires = sqlite3_column_int64(st, 3);
        if (sbx_store__proc_alive(pid, start) && (expires == 0 || expires > now))
            continue;
        sqlite3_reset(del_refs);
        sqlite3_reset(del);
        sqlite3_bind_int64(del_refs, 1, id);
        sqlite3_bind_int64(del, 1, id);
        if (sqlite3_step(del_refs) != SQLITE_DONE || sqlite3_step(del) != SQLITE_DONE)
            return sbx_store__sql_err(s, err, "drop dead lease");
    }
    if (rc != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "list leases");
    return 0;
}

static const char *const LIVE_BYTES_SQL =
    "SELECT coalesce((SELECT sum(size) FROM blobs WHERE digest IN (SELECT d FROM gc_live)), 0)"
    " + coalesce((SELECT sum(stored_size) FROM layers WHERE diff_id IN"
    " (SELECT d FROM gc_live)), 0)";

/* Evict least recently used names until what stays fits max_bytes. */
static int evict(sbx_store *s, uint64_t max_bytes, sbx_gc_report *rep, sbx_error *err)
{
    if (sbx_store__exec(s, LEASED_SQL, err) < 0)
        return err->code;
    for (;;) {
        uint64_t live = 0;
        if (query_u64(s, LIVE_BYTES_SQL, &live, err) < 0)
            return err->code;
        if (live <= max_bytes)
            return 0;
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sbx_store__prepare(s, &st,
                               "INSERT INTO gc_evict(name) SELECT name FROM names WHERE name NOT"
                               " IN (SELECT name FROM gc_evict) AND digest NOT IN"
                               " (SELECT d FROM gc_leased) ORDER BY last_used, created, name"
                               " LIMIT 1",
                               err) < 0)
            return err->code;
        if (sqlite3_step(st) != SQLITE_DONE)
            return sbx_store__sql_err(s, err, "choose name to evict");
        if (sqlite3_changes(s->db) == 0)
            return 0; /* nothing more may go: leases hold the rest */
        rep->names_evicted++;
        if (sbx_store__exec(s, MARK_SQL, err) < 0)
            return err->code;
    }
}

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void strvec_free(strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
}

static int strvec_push(strvec *sv, const char *s)
{
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 64;
        char **nv = realloc(sv->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        sv->v = nv;
        sv->cap = cap;
    }
    if (!(sv->v[sv->n] = strdup(s)))
        return -1;
    sv->n++;
    return 0;
}

/* Collect the digests of dead records into sv, summing their bytes. */
static int collect_dead(sbx_store *s, const char *sql, strvec *sv, uint64_t *count,
                        uint64_t *bytes, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (strvec_push(sv, (const char *)sqlite3_column_text(st, 0)) < 0)
            return sbx_error_set(err, SBX_ENOMEM, "gc: out of memory");
        (*count)++;
        *bytes += (uint64_t)sqlite3_column_int64(st, 1);
    }
    return rc == SQLITE_DONE ? 0 : sbx_store__sql_err(s, err, "gc: list dead records");
}

/* Remove files under dir (blobs/sha256 or layers/sha256) that have no record:
 * debris of a crash between sweep and unlink. */
static void sweep_unrecorded(sbx_store *s, sbx_obj_kind kind, sbx_gc_report *rep, int dry_run)
{
    const char *dir = kind == SBX_OBJ_LAYER ? "layers/sha256" : "blobs/sha256";
    int dfd = openat(s->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char digest[SBX_DIGEST_BUFSZ + 8];
        snprintf(digest, sizeof digest, "sha256:%.64s", de->d_name);
        sbx_error err = SBX_ERROR_INIT;
        sbx_layer_format fmt = SBX_LAYER_ZSTD;
        int have = kind == SBX_OBJ_LAYER
                       ? sbx_store__layer_lookup(s, digest, &fmt, &err)
                       : sbx_store__exists(s, "SELECT 1 FROM blobs WHERE digest=?", digest, &err);
        /* a layer recorded in the other format: this file is not its */
        int named = kind == SBX_OBJ_LAYER && strlen(de->d_name) > 64
                        ? sbx_store__layer_suffix_format(de->d_name + 64)
                        : -1;
        if (have < 0 || (have == 1 && (named < 0 || named == (int)fmt)))
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            rep->bytes_freed += (uint64_t)st.st_size;
        if (kind == SBX_OBJ_LAYER)
            rep->layers_removed++;
        else
            rep->blobs_removed++;
        if (!dry_run)
            unlinkat(dfd, de->d_name, 0);
    }
    closedir(d);
}

/* Unlink dead files under the lock. */
static void unlink_objects(sbx_store *s, sbx_obj_kind kind, const strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        char rel[128];
        sbx_store__obj_relpath(rel, sizeof rel, kind, sv->v[i] + 7, SBX_LAYER_ZSTD);
        unlinkat(s->root_fd, rel, 0);
        if (kind == SBX_OBJ_LAYER) { /* its record is gone: either name is dead */
            sbx_store__obj_relpath(rel, sizeof rel, kind, sv->v[i] + 7, SBX_LAYER_GZIP);
            unlinkat(s->root_fd, rel, 0);
        }
    }
}

/* Take unpacked/<hex> out of the cache.  Trees can be large, so under the
 * lock they are only moved into a scratch dir tmp/u.<id>/ (a rename) and
 * removed after it is released (if gc dies first, its lock on the scratch
 * dir goes with it and the next open or gc removes it).  A dry run notes the
 * tree where it is, to be measured. */
static void take_unpacked(sbx_store *s, const char *hex, int dry_run, strvec *trash,
                          sbx_scratch **bin)
{
    char from[300], to[128];
    snprintf(from, sizeof from, "unpacked/%s", hex);
    struct stat st;
    if (fstatat(s->root_fd, from, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return;
    if (dry_run) {
        strvec_push(trash, from);
        return;
    }
    sbx_error e = SBX_ERROR_INIT;
    if (!*bin && sbx_store_scratch_new(bin, s, "u", 0, &e) < 0) {
        sbx__log(s->ctx, SBX_LOG_WARN, "gc: keeping unpacked '%s': %s", hex, e.msg);
        return;
    }
    snprintf(to, sizeof to, "tmp/u.%s/%s", sbx_scratch_id(*bin), hex);
    if (renameat(s->root_fd, from, s->root_fd, to) == 0)
        strvec_push(trash, to);
}

/* Measure what goes, then (unless a dry run) remove it; outside the lock. */
static void empty_trash(sbx_store *s, const strvec *trash, sbx_scratch *bin, int dry_run,
                        sbx_gc_report *rep)
{
    sbx__du *du = trash->n ? sbx__du_new() : NULL;
    for (size_t i = 0; du && i < trash->n; i++)
        if (sbx__du_add_at(du, s->root_fd, trash->v[i]) < 0) {
            sbx__du_free(du);
            du = NULL; /* out of memory: the bytes stay unknown (0) */
        }
    rep->unpacked_removed = trash->n;
    rep->unpacked_bytes_freed = du ? sbx__du_freed(du) : 0;
    sbx__du_free(du);
    for (size_t i = 0; !dry_run && i < trash->n; i++) {
        char *p = sbx__strdup_printf("%s/%s", s->root, trash->v[i]);
        sbx_error err = SBX_ERROR_INIT;
        if (p && sbx__rm_rf(p, &err) < 0) {
            char buf[1400];
            sbx__log(s->ctx, SBX_LOG_WARN, "gc: %s", sbx_error_format(&err, buf, sizeof buf));
        }
        free(p);
    }
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_scratch_free(bin, &err) < 0)
        sbx__log(s->ctx, SBX_LOG_WARN, "gc: %s", err.msg);
}

/* A flattened lower (rootfs/flatten.c) no live mount names and no mounter
 * holds (a shared flock from finding it until its record names it): a cache
 * entry that costs inodes, made again by the next mount that needs it.
 * Returns its fd, flock()ed exclusively, to be held while it is moved out: a
 * mounter waiting for its shared lock then finds it moved and makes it
 * again.  -1: keep it. */
static int flat_unused(sbx_store *s, int dfd, const char *name)
{
    char digest[SBX_DIGEST_BUFSZ + 8];
    snprintf(digest, sizeof digest, "sha256:%.64s", name + 5);
    sbx_error err = SBX_ERROR_INIT;
    if (strlen(name) != 69 || !sbx__digest_valid(digest) ||
        sbx_store__exists(s, "SELECT 1 FROM mounts WHERE flat=?", digest, &err) != 0)
        return -1;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -1;
    }
    /* a record may have named it between the query and the lock */
    if (fd >= 0 && sbx_store__exists(s, "SELECT 1 FROM mounts WHERE flat=?", digest, &err) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Unpacked directories whose layer is gone (a crash between sweep and rm, or
 * a consumer that unpacked a layer gc removed meanwhile).  Only names of the
 * cache (64 hex): unpackers build in tmp/ and rename in, so nothing else is
 * there. */
static void sweep_unpacked(sbx_store *s, int dry_run, strvec *trash, sbx_scratch **bin)
{
    int dfd = openat(s->root_fd, "unpacked", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    strvec lost = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strncmp(de->d_name, "flat-", 5)) {
            int fd = flat_unused(s, dirfd(d), de->d_name);
            if (fd >= 0) { /* moved while still locked: see flat_unused */
                take_unpacked(s, de->d_name, dry_run, trash, bin);
                close(fd);
            }
            continue;
        }
        char digest[SBX_DIGEST_BUFSZ + 8];
        snprintf(digest, sizeof digest, "sha256:%.64s", de->d_name);
        sbx_error err = SBX_ERROR_INIT;
        if (strlen(de->d_name) != 64 || !sbx__digest_valid(digest) ||
            sbx_store__exists(s, "SELECT 1 FROM layers WHERE diff_id=?", digest, &err) != 0)
            continue;
        strvec_push(&lost, de->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < lost.n; i++)
        take_unpacked(s, lost.v[i], dry_run, trash, bin);
    strvec_free(&lost);
}

static const char *const DELETE_DEAD_SQL =
    "DELETE FROM names WHERE name IN (SELECT name FROM gc_evict);"
    "DELETE FROM blobs WHERE digest NOT IN (SELECT d FROM gc_live);"
    "DELETE FROM layers WHERE diff_id NOT IN (SELECT d FROM gc_live);"
    "DELETE FROM children WHERE parent NOT IN (SELECT digest FROM blobs);"
    "DELETE FROM layer_sources WHERE diff_id NOT IN (SELECT diff_id FROM layers);"
    /* a day's grace: a pull records origins before its manifest is stored */
    "DELETE FROM origins WHERE stamp < strftime('%s','now') - 86400"
    " AND digest NOT IN (SELECT digest FROM blobs) AND digest NOT IN (SELECT diff_id FROM layers);";

/* Layers that stay but no live lease reaches: their unpacked dirs may go. */
static const char *const UNLEASED_SQL =
    "SELECT diff_id, 0 FROM layers WHERE diff_id IN (SELECT d FROM gc_live)"
    " AND diff_id NOT IN (SELECT d FROM gc_leased)";

typedef struct {
    strvec blobs, layers; /* dead records */
    strvec unleased;      /* live layers whose unpacked dir may go */
} gc_lists;

static void gc_lists_free(gc_lists *l)
{
    strvec_free(&l->blobs);
    strvec_free(&l->layers);
    strvec_free(&l->unleased);
    memset(l, 0, sizeof *l);
}

static int gc_locked(sbx_store *s, const sbx_gc_options *o, sbx_gc_report *rep, gc_lists *l,
                     sbx_error *err)
{
    strvec *blobs = &l->blobs, *layers = &l->layers;
    int rc = sbx_store__exec(s,
                             "CREATE TEMP TABLE IF NOT EXISTS gc_live(d TEXT PRIMARY KEY);"
                             "CREATE TEMP TABLE IF NOT EXISTS gc_leased(d TEXT PRIMARY KEY);"
                             "CREATE TEMP TABLE IF NOT EXISTS gc_evict(name TEXT PRIMARY KEY);"
                             "DELETE FROM gc_evict;",
                             err);
    if (rc == 0)
        rc = sbx_store__begin(s, err);
    if (rc == 0)
        rc = drop_dead_leases(s, err);
    if (rc == 0)
        rc = expire_names(s, rep, err);
    if (rc == 0)
        rc = sbx_store__exec(s, MARK_SQL, err);
    if (rc == 0 && o->max_bytes)
        rc = evict(s, o->max_bytes, rep, err);
    if (rc == 0)
        rc = collect_dead(s,
                          "SELECT digest, size FROM blobs WHERE digest NOT IN"
                          " (SELECT d FROM gc_live)",
                          blobs, &rep->blobs_removed, &rep->bytes_freed, err);
    if (rc == 0)
        rc = collect_dead(s,
                          "SELECT diff_id, stored_size FROM layers WHERE diff_id NOT IN"
                          " (SELECT d FROM gc_live)",
                          layers, &rep->layers_removed, &rep->bytes_freed, err);
    if (rc == 0 && o->unpacked)
        rc = sbx_store__exec(s, LEASED_SQL, err);
    if (rc == 0 && o->unpacked) {
        uint64_t n = 0, b = 0;
        rc = collect_dead(s, UNLEASED_SQL, &l->unleased, &n, &b, err);
    }
    if (rc == 0)
        rc = query_u64(s, LIVE_BYTES_SQL, &rep->bytes_after, err);
    if (rc == 0 && !o->dry_run)
        rc = sbx_store__exec(s, DELETE_DEAD_SQL, err);
    if (rc == 0 && !o->dry_run)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s); /* dry run: leases dropped and evictions undone too */
    return rc;
}

static int gc(sbx_store *s, const sbx_gc_options *opts, sbx_gc_report *report,
              sbx_error *err)
{
    sbx_gc_options def = SBX_GC_OPTIONS_INIT;
    const sbx_gc_options *o = opts ? opts : &def;
    sbx_gc_report rep = {0};
    gc_lists l = {0};
    strvec trash = {0};
    sbx_scratch *bin = NULL;
    unsigned reaped = 0;
    /* dead mounts first: what they held is then no longer a root */
    if (!o->dry_run && sbx_store_mount_reap(s, true, &reaped, err) < 0)
        return sbx_error_wrap(err, "gc");
    if (sbx_store__lock(s, 1, err) < 0)
        return sbx_error_wrap(err, "gc");
    sbx_store__clean_tmp(s);
    int rc = gc_locked(s, o, &rep, &l, err);
    if (rc == SBX_ENOSPC && sbx_store__reserve_release(s)) {
        gc_lists_free(&l);
        memset(&rep, 0, sizeof rep);
        rc = gc_locked(s, o, &rep, &l, err);
    }
    rep.mounts_reaped = reaped;
    if (rc == 0 && !o->dry_run) {
        unlink_objects(s, SBX_OBJ_BLOB, &l.blobs);
        unlink_objects(s, SBX_OBJ_LAYER, &l.layers);
    }
    if (rc == 0) {
        /* Before the lock is released: a consumer's has_* (which takes it
         * shared) then finds the layer leased and its dir already gone, and
         * unpacks it again. */
        for (size_t i = 0; i < l.layers.n; i++)
            take_unpacked(s, l.layers.v[i] + 7, o->dry_run, &trash, &bin);
        for (size_t i = 0; i < l.unleased.n; i++)
            take_unpacked(s, l.unleased.v[i] + 7, o->dry_run, &trash, &bin);
        sweep_unrecorded(s, SBX_OBJ_BLOB, &rep, o->dry_run);
        sweep_unrecorded(s, SBX_OBJ_LAYER, &rep, o->dry_run);
        sweep_unpacked(s, o->dry_run, &trash, &bin);
    }
    sbx_store__unlock(s);
    sbx_error e = SBX_ERROR_INIT; /* err holds gc's own error */
    if (rc == 0)
        empty_trash(s, &trash, bin, o->dry_run, &rep);
    else
        sbx_scratch_free(bin, &e);
    strvec_free(&trash);
    gc_lists_free(&l);
    if (rc < 0)
        return sbx_error_wrap(err, "gc");
    if (!o->dry_run) {
        sbx_store__exec(s, "PRAGMA wal_checkpoint(PASSIVE)", err);
        sbx_store__reserve_ensure(s);
    }
    if (report)
        *report = rep;
    return 0;
}

/* Whether a live lease or mount reaches the layer diff_id. */
static int unpacked_in_use(sbx_store *s, const char *diff_id, bool *used, sbx_error *err)
{
    *used = false;
    /* gc's own steps: the temp table, dead leases dropped, what the rest reach */
    int rc = sbx_store__exec(s, "CREATE TEMP TABLE IF NOT EXISTS gc_leased(d TEXT PRIMARY KEY);",
                             err);
    if (rc == 0)
        rc = sbx_store__begin(s, err);
    if (rc == 0)
        rc = drop_dead_leases(s, err);
    if (rc == 0)
        rc = sbx_store__exec(s, LEASED_SQL, err);
    if (rc == 0) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        rc = sbx_store__prepare(s, &st, "SELECT 1 FROM gc_leased WHERE d = ?", err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, diff_id, -1, SQLITE_STATIC);
            *used = sqlite3_step(st) == SQLITE_ROW;
        }
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    return rc;
}

int sbx_store_unpacked_discard(sbx_store *s, const char *diff_id, sbx_error *err)
{
    if (!sbx__digest_valid(diff_id))
        return sbx_error_set(err, SBX_EINVAL, "discard unpacked '%s': not a diff_id", diff_id);
    if (sbx_store__lock(s, 1, err) < 0)
        return sbx_error_wrap(err, "discard unpacked '%s'", diff_id);
    bool used = false;
    int rc = unpacked_in_use(s, diff_id, &used, err);
    strvec trash = {0};
    sbx_scratch *bin = NULL;
    if (rc == 0 && used)
        rc = sbx_error_set(err, SBX_EBUSY, "the unpacked dir of '%s' is in use (a mount or a "
                           "running unpack or build holds it)", diff_id);
    else if (rc == 0)
        take_unpacked(s, diff_id + 7, 0, &trash, &bin);
    sbx_store__unlock(s);
    sbx_gc_report rep = {0};
    if (rc == 0)
        empty_trash(s, &trash, bin, 0, &rep);
    else
        sbx_scratch_free(bin, &(sbx_error)SBX_ERROR_INIT);
    strvec_free(&trash);
    return rc;
}

/* ---- df ---------------------------------------------------------------------- */

static const char *const IMAGE_BYTES_SQL =
    "WITH RECURSIVE r(d) AS (SELECT ?1 UNION SELECT c.child FROM children c"
    " JOIN r ON c.parent = r.d)"
    " SELECT coalesce((SELECT sum(size) FROM blobs WHERE digest IN (SELECT d FROM r)), 0)"
    " + coalesce((SELECT sum(CASE WHEN verified THEN size ELSE stored_size END) FROM layers"
    " WHERE diff_id IN (SELECT d FROM r)), 0)"; /* unchecked: tar size not known yet */

int sbx_store_df(sbx_store *s, sbx_df_report *out, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    uint64_t blob_bytes = 0, layer_bytes = 0;
    if (query_u64(s, "SELECT coalesce(sum(size), 0) FROM blobs", &blob_bytes, err) < 0 ||
        query_u64(s, "SELECT coalesce(sum(stored_size), 0) FROM layers", &layer_bytes, err) < 0 ||
        query_u64(s, "SELECT count(*) FROM blobs", &out->blobs, err) < 0 ||
        query_u64(s, "SELECT count(*) FROM layers", &out->layers, err) < 0 ||
        query_u64(s, "SELECT count(*) FROM names", &out->names, err) < 0)
        return sbx_error_wrap(err, "df");
    out->stored_bytes = blob_bytes + layer_bytes;
    if (sbx_store__unpacked_bytes(s, &out->unpacked_bytes, err) < 0)
        return sbx_error_wrap(err, "df");
    _cleanup_stmt_ sqlite3_stmt *names = NULL, *img = NULL;
    /* Each image once, however many names it has (a tag and its recipe digest);
     * the builder's intermediate step images ("cache:...") are not images a
     * user asked for. */
    if (sbx_store__prepare(s, &names,
                           "SELECT DISTINCT digest FROM names WHERE name NOT LIKE 'cache:%'",
                           err) < 0 ||
        sbx_store__prepare(s, &img, IMAGE_BYTES_SQL, err) < 0)
        return sbx_error_wrap(err, "df");
    int rc;
    while ((rc = sqlite3_step(names)) == SQLITE_ROW) {
        sqlite3_reset(img);
        sqlite3_bind_text(img, 1, (const char *)sqlite3_column_text(names, 0), -1,
                          SQLITE_TRANSIENT);
        if (sqlite3_step(img) != SQLITE_ROW)
            return sbx_store__sql_err(s, err, "df");
        out->logical_bytes += (uint64_t)sqlite3_column_int64(img, 0);
    }
    if (rc != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "df");
    return 0;
}

int sbx_store_gc(sbx_store *s, const sbx_gc_options *opts, sbx_gc_report *report,
                 sbx_ctx *ctx, sbx_error *err)
{
    s->ctx = ctx;
    int rc = gc(s, opts, report, err);
    s->ctx = NULL;
    return rc;
}

/* ---- what one image costs ------------------------------------------------- */

static const char *const USAGE_SQL =
    "WITH RECURSIVE mine(d) AS (SELECT ?1 UNION SELECT c.child FROM children c"
    "  JOIN mine ON c.parent = mine.d),"
    " others(d) AS (SELECT digest FROM names WHERE name NOT LIKE 'cache:%'"
    "  AND CASE WHEN ?2 IS NULL THEN digest != ?1 ELSE name != ?2 END"
    "  UNION SELECT c.child FROM children c JOIN others ON c.parent = others.d),"
    " sz(d, b) AS (SELECT digest, size FROM blobs UNION ALL"
    "  SELECT diff_id, stored_size FROM layers)"
    " SELECT coalesce(sum(b), 0),"
    "  coalesce(sum(CASE WHEN d IN (SELECT d FROM others) THEN 0 ELSE b END), 0)"
    " FROM sz WHERE d IN (SELECT d FROM mine)";

int sbx_store_image_usage(sbx_store *s, const char *digest, const char *name,
                          sbx_image_usage *out, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (sbx__digest_parse(NULL, digest, err) < 0)
        return sbx_error_wrap(err, "image usage");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, USAGE_SQL, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    if (sqlite3_step(st) != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "image usage");
    out->total_bytes = (uint64_t)sqlite3_column_int64(st, 0);
    out->size_bytes = (uint64_t)sqlite3_column_int64(st, 1);
    return 0;
}
