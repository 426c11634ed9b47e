/* fsck: re-hash every stored file against its name and its record; move
 * corrupt files to quarantine/, drop records whose file is gone, record or
 * quarantine files without records, drop names whose manifest is gone.
 * Damage (corrupt files, records without files) makes it return
 * SBX_ECORRUPT; verified files without records do not.
 * Runs with the lock file held exclusively (no commit in flight). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "store_internal.h"

#define warn(...) sbx__log(s->ctx, SBX_LOG_WARN, __VA_ARGS__)

static int quarantine(sbx_store *s, const char *dir, const char *name)
{
    char from[256], to[300];
    snprintf(from, sizeof from, "%s/%s", dir, name);
    snprintf(to, sizeof to, "quarantine/%s.%lld", name, (long long)sbx__now_unix());
    if (renameat(s->root_fd, from, s->root_fd, to) < 0 && errno != ENOENT) {
        unlinkat(s->root_fd, from, 0);
        return -1;
    }
    return 0;
}

static int exec1(sbx_store *s, const char *sql, const char *arg, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "repair metadata");
    return 0;
}

static int drop_record(sbx_store *s, sbx_obj_kind kind, const char *digest, sbx_error *err)
{
    if (kind == SBX_OBJ_LAYER)
        return exec1(s, "DELETE FROM layers WHERE diff_id=?1", digest, err) < 0 ? err->code
               : exec1(s, "DELETE FROM layer_sources WHERE diff_id=?1", digest, err);
    return exec1(s, "DELETE FROM blobs WHERE digest=?1", digest, err) < 0 ? err->code
           : exec1(s, "DELETE FROM children WHERE parent=?1", digest, err);
}

typedef struct {
    char digest[SBX_DIGEST_BUFSZ];
    uint64_t size, stored;
    char zstd[SBX_DIGEST_BUFSZ]; /* the stored file's digest (layers) */
    sbx_layer_format fmt;
    bool verified; /* layers: the tar was checked against the diff_id */
} rec;

static int load_records(sbx_store *s, sbx_obj_kind kind, rec **out, size_t *n, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    const char *sql = kind == SBX_OBJ_LAYER
                          ? "SELECT diff_id, size, stored_size, zstd_digest, format, verified"
                            " FROM layers"
                          : "SELECT digest, size, size, '', 0, 1 FROM blobs";
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    rec *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 64;
            rec *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return sbx_error_set(err, SBX_ENOMEM, "fsck: out of memory");
            }
            v = nv;
        }
        snprintf(v[len].digest, sizeof v[len].digest, "%s", sqlite3_column_text(st, 0));
        v[len].size = (uint64_t)sqlite3_column_int64(st, 1);
        v[len].stored = (uint64_t)sqlite3_column_int64(st, 2);
        snprintf(v[len].zstd, sizeof v[len].zstd, "%s", sqlite3_column_text(st, 3));
        v[len].fmt = sqlite3_column_int(st, 4) == SBX_LAYER_GZIP ? SBX_LAYER_GZIP : SBX_LAYER_ZSTD;
        v[len].verified = sqlite3_column_int(st, 5) != 0;
        len++;
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return sbx_store__sql_err(s, err, "fsck: list records");
    }
    *out = v;
    *n = len;
    return 0;
}

static int fix_layer_record(sbx_store *s, const sbx_store__hash_result *h, sbx_layer_format fmt,
                            sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT OR REPLACE INTO layers(diff_id, size, stored_size,"
                           " zstd_digest, created, format) VALUES(?, ?, ?, ?, ?, ?)",
                           err) < 0)
        return err->code;
    sqlite3_bind_int(st, 6, (int)fmt);
    sqlite3_bind_text(st, 1, h->digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)h->size);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)h->stored_size);
    sqlite3_bind_text(st, 4, h->stored_digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, sbx__now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "repair layer record");
    return 0;
}

static int fix_blob_record(sbx_store *s, const sbx_store__hash_result *h, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT INTO blobs(digest, size, media_type, is_manifest, created)"
                           " VALUES(?1, ?2, NULL, 0, ?3) ON CONFLICT(digest) DO UPDATE SET"
                           " size=excluded.size",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, h->digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)h->size);
    sqlite3_bind_int64(st, 3, sbx__now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "repair blob record");
    return 0;
}

/* Check one recorded object. */
static int check_record(sbx_store *s, sbx_obj_kind kind, const rec *r, sbx_fsck_report *rep,
                        sbx_error *err)
{
    const char *dir = kind == SBX_OBJ_LAYER ? "layers/sha256" : "blobs/sha256";
    char rel[128];
    sbx_store__obj_relpath(rel, sizeof rel, kind, r->digest + 7, r->fmt);
    _cleanup_close_ int fd = openat(s->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            return sbx_store__io_err(s, err, errno, "fsck: open object");
        warn("fsck: %s: recorded but its file is missing; record removed", r->digest);
        rep->dangling_repaired++;
        return drop_record(s, kind, r->digest, err);
    }
    sbx_store__hash_result h;
    sbx_error herr = SBX_ERROR_INIT;
    /* an unchecked layer was never expanded: the pull's limit applies */
    uint64_t max = kind == SBX_OBJ_LAYER && !r->verified ? sbx__expansion_cap(r->stored, NULL) : 0;
    int rc = sbx_store__hash_file(s, kind, r->fmt, fd, max, &h, &herr);
    if (rc == SBX_EIO || rc == SBX_ENOMEM)
        return sbx_error_set(err, rc, "%s", herr.msg);
    if (rc < 0 || strcmp(h.digest, r->digest) != 0) {
        warn("fsck: %s: file is corrupt (%s); moved to quarantine", r->digest,
             rc < 0          ? herr.msg
             : !r->verified ? "a registry blob stored unchecked for it, whose tar is not "
                              "this layer"
                            : "content does not match its digest");
        rep->corrupt++;
        quarantine(s, dir, strrchr(rel, '/') + 1);
        return drop_record(s, kind, r->digest, err);
    }
    if (kind == SBX_OBJ_LAYER && !r->verified) /* checked now: recorded so */
        return fix_layer_record(s, &h, r->fmt, err);
    if (h.size != r->size || h.stored_size != r->stored ||
        (kind == SBX_OBJ_LAYER && strcmp(h.stored_digest, r->zstd) != 0)) {
        warn("fsck: %s: record did not match its file; record repaired", r->digest);
        rep->dangling_repaired++;
        return kind == SBX_OBJ_LAYER ? fix_layer_record(s, &h, r->fmt, err)
                                     : fix_blob_record(s, &h, err);
    }
    return 0;
}

/* A file with no record: record it when it verifies, else quarantine it. */
static int check_unrecorded(sbx_store *s, sbx_obj_kind kind, int dfd, const char *name,
                            sbx_fsck_report *rep, sbx_error *err)
{
    const char *dir = kind == SBX_OBJ_LAYER ? "layers/sha256" : "blobs/sha256";
    char digest[SBX_DIGEST_BUFSZ + 8];
    snprintf(digest, sizeof digest, "sha256:%.64s", name);
    /* the format its name says (a blob has no suffix) */
    int named = !sbx__digest_valid(digest)  ? -1
                : kind == SBX_OBJ_LAYER     ? sbx_store__layer_suffix_format(name + 64)
                : strcmp(name + 64, "") == 0 ? 0
                                            : -1;
    int named_ok = named >= 0;
    if (named_ok) {
        sbx_layer_format fmt = SBX_LAYER_ZSTD;
        int have = kind == SBX_OBJ_LAYER
                       ? sbx_store__layer_lookup(s, digest, &fmt, err)
                       : sbx_store__exists(s, "SELECT 1 FROM blobs WHERE digest=?", digest, err);
        if (have < 0)
            return have;
        if (have && (kind == SBX_OBJ_BLOB || (int)fmt == named))
            return 0;
        if (have) { /* recorded in the other format: a leftover copy, not its file */
            warn("fsck: %s/%s: a second stored form of a recorded layer; removed", dir, name);
            rep->orphans++;
            unlinkat(dfd, name, 0);
            return 0;
        }
    }
    rep->orphans++;
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    sbx_store__hash_result h;
    sbx_error herr = SBX_ERROR_INIT;
    if (named_ok && fd >= 0 && sbx_store__hash_file(s, kind, named, fd, 0, &h, &herr) == 0 &&
        strcmp(h.digest, digest) == 0) {
        warn("fsck: %s: file had no record; recorded", digest);
        return kind == SBX_OBJ_LAYER ? fix_layer_record(s, &h, named, err)
                                     : fix_blob_record(s, &h, err);
    }
    warn("fsck: %s/%s: file with no record does not verify; moved to quarantine", dir, name);
    rep->corrupt++;
    quarantine(s, dir, name);
    return 0;
}

/* in_tx(s, expr, err): run expr inside its own IMMEDIATE transaction, so
 * each object's repair is atomic and other processes' metadata writes wait
 * for one object at a time, never for the whole fsck. */
#define in_tx(s, expr, err)                                                          \
    ({                                                                               \
        int _rc = sbx_store__begin((s), (err));                                      \
        if (_rc == 0)                                                                \
            _rc = (expr);                                                            \
        if (_rc == 0)                                                                \
            _rc = sbx_store__commit((s), (err));                                     \
        sbx_store__rollback(s);                                                      \
        _rc;                                                                         \
    })

static int scan_dir(sbx_store *s, sbx_obj_kind kind, sbx_fsck_report *rep, sbx_error *err)
{
    const char *dir = kind == SBX_OBJ_LAYER ? "layers/sha256" : "blobs/sha256";
    int dfd = openat(s->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sbx_store__io_err(s, err, errno, "fsck: open directory");
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return sbx_store__io_err(s, err, errno, "fsck: list directory");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        rc = in_tx(s, check_unrecorded(s, kind, dirfd(d), de->d_name, rep, err), err);
    }
    closedir(d);
    return rc;
}

static int fsck_kind(sbx_store *s, sbx_obj_kind kind, sbx_fsck_report *rep, sbx_error *err)
{
    rec *v = NULL;
    size_t n = 0;
    if (load_records(s, kind, &v, &n, err) < 0)
        return err->code;
    /* Progress in the bytes hashed (a layer's uncompressed tar): a large
     * store takes minutes. */
    const char *phase = kind == SBX_OBJ_LAYER ? "layers" : "blobs";
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].size;
    sbx__progress(s->ctx, "fsck", phase, 0, total);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((rc = sbx__check_cancel(s->ctx, err)) < 0)
            break;
        rc = in_tx(s, check_record(s, kind, &v[i], rep, err), err);
        if (kind == SBX_OBJ_LAYER)
            rep->layers_checked++;
        else
            rep->blobs_checked++;
        done += v[i].size;
        sbx__progress(s->ctx, "fsck", phase, done, total);
    }
    free(v);
    return rc == 0 ? scan_dir(s, kind, rep, err) : rc;
}

static int drop_broken_names(sbx_store *s, sbx_fsck_report *rep, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "SELECT name, digest FROM names WHERE digest NOT IN"
                           " (SELECT digest FROM blobs)",
                           err) < 0)
        return err->code;
    while (sqlite3_step(st) == SQLITE_ROW) {
        warn("fsck: name '%s' pointed to missing manifest '%s'; name removed",
             (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
        rep->dangling_repaired++;
    }
    return sbx_store__exec(s, "DELETE FROM names WHERE digest NOT IN (SELECT digest FROM blobs)",
                           err);
}

static int fsck(sbx_store *s, sbx_fsck_report *report, sbx_error *err)
{
    sbx_fsck_report rep = {0};
    if (sbx_store__lock(s, 1, err) < 0)
        return sbx_error_wrap(err, "fsck");
    sbx_store__clean_tmp(s);
    /* The exclusive lock keeps writers from committing meanwhile; each
     * repair is its own transaction. */
    int rc = fsck_kind(s, SBX_OBJ_BLOB, &rep, err);
    if (rc == 0)
        rc = fsck_kind(s, SBX_OBJ_LAYER, &rep, err);
    if (rc == 0)
        rc = in_tx(s, drop_broken_names(s, &rep, err), err);
    sbx_store__unlock(s);
    if (report)
        *report = rep;
    if (rc < 0)
        return sbx_error_wrap(err, "fsck");
    /* Verified files without records (debris of a gc or a power cut between
     * its steps) lost nothing: reported and recorded, not a failure. */
    if (rep.corrupt || rep.dangling_repaired) {
        sbx_error_set(err, SBX_ECORRUPT,
                      "fsck: store '%s' had problems: %llu corrupt (quarantined), %llu dangling "
                      "records repaired",
                      s->root, (unsigned long long)rep.corrupt,
                      (unsigned long long)rep.dangling_repaired);
        sbx_error_where(err, "%s", s->root);
        return SBX_ECORRUPT;
    }
    return 0;
}

int sbx_store_fsck(sbx_store *s, sbx_fsck_report *report, sbx_ctx *ctx, sbx_error *err)
{
    s->ctx = ctx;
    /* dead mounts are debris, not damage: removed and counted */
    unsigned dead = 0;
    sbx_error me = SBX_ERROR_INIT;
    sbx_store_mount_reap(s, true, &dead, &me);
    int rc = fsck(s, report, err);
    if (report)
        report->dead_mounts = dead;
    s->ctx = NULL;
    return rc;
}
