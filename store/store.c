/* The content-addressed store: opening, locking, temp files and the commit
 * protocol every write goes through.
 *
 * Layout under the root (created 0700):
 *   blobs/sha256/<hex>        exact bytes (manifests, configs), named by their sha256
 *   layers/sha256/<hex>.zst   a layer's tar as zstd with frame checksums (the
 *                             store's own level 3, or a registry's blob kept as
 *                             sent), named by the sha256 of the tar (diff_id)
 *   layers/sha256/<hex>.gz    or as gzip: a registry's gzip blob kept as sent
 *                             (each member has its CRC-32); the record's format
 *                             says which of the two names a layer has
 *   unpacked/<hex>            opaque directories a consumer fills for a layer;
 *                             removed with the layer
 *   tmp/<kind>.<id>           temp files of writers in flight (w; b, l, g once named), unpacked
 *                             trees gc is removing (u), other modules' scratch
 *                             dirs (run, build, unpack): each flock()ed by its
 *                             maker; store_scratch.c reaps the unlocked ones
 *   locks/<name>.lock         named locks (sbx_store_lock_named)
 *   mounts/<id>               a mount's upper, work and lower links (store_mounts.c)
 *   quarantine/               files fsck found corrupt
 *   meta.db                   SQLite (WAL, synchronous=FULL): records, names, leases
 *   lock                      flock: shared around every commit, exclusive for gc/fsck
 *   reserve                   4 MiB held back so rm and gc work on a full disk
 *
 * Invariants:
 *  - A file under blobs/ or layers/ is always complete and was verified
 *    against its name before it was linked there: writers stream into
 *    tmp/w.<id> (flock()ed while they live), hash while writing, fsync,
 *    verify, rename to tmp/<b|l>.<hex>.<id>, and only then link into place.
 *  - A record (blobs/layers row) exists only for a file that is in place: the
 *    link, the directory fsync and the record insert happen inside one
 *    IMMEDIATE transaction (SQLite's write lock serialises writers of the same
 *    object, so two writers end with one file and one record).  A writer killed
 *    between link and commit leaves its named temp file with a link count of
 *    2; open and gc can take its lock, so unlink the unrecorded object, so
 *    the store is back to "not stored" and the work simply runs again.
 *  - Everything recorded goes into this handle's process lease (pid + process
 *    start time, so pid reuse is detected) in the same transaction; has_* adds
 *    what it found too.  gc ignores leases of dead processes and expired ones.
 *  - Writers hold the lock file shared from their check to their commit; gc
 *    and fsck hold it exclusively for mark and sweep, so gc never deletes
 *    something between a writer's check and its record.
 *  - Readers need no lock: files are immutable once linked, and an open fd
 *    survives gc's unlink.
 *  - Trust: files are re-hashed by read_blob and fsck; the layer reader relies
 *    on zstd's frame checksums or gzip's CRC-32s, fsck re-hashes the diff_id.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "store_internal.h"

/* A mount's record (store_mounts.c): state 0 while its maker works, 1 once
 * made; flat names the flattened lower it uses (or ""); external: the
 * runtime mounts the overlay, not sbx-image. */
#define MOUNTS_SCHEMA                                                                       \
    "CREATE TABLE IF NOT EXISTS mounts(id TEXT PRIMARY KEY, image TEXT NOT NULL,"           \
    " digest TEXT NOT NULL, dir TEXT NOT NULL, created INTEGER NOT NULL,"                   \
    " boot_id TEXT NOT NULL, read_only INTEGER NOT NULL, state INTEGER NOT NULL,"           \
    " flat TEXT NOT NULL DEFAULT '', external INTEGER NOT NULL DEFAULT 0);"

/* Version 4: where content came from (store_access.c). */
#define ORIGINS_SCHEMA                                                                      \
    "CREATE TABLE IF NOT EXISTS origins(digest TEXT NOT NULL, repo TEXT NOT NULL,"          \
    " ref TEXT NOT NULL, private INTEGER NOT NULL, stamp INTEGER NOT NULL,"                 \
    " PRIMARY KEY(digest, repo));"

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " media_type TEXT, is_manifest INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS layers(diff_id TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " stored_size INTEGER NOT NULL, zstd_digest TEXT NOT NULL, created INTEGER NOT NULL,"
    " format INTEGER NOT NULL DEFAULT 0, verified INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE IF NOT EXISTS layer_sources(blob_digest TEXT PRIMARY KEY,"
    " diff_id TEXT NOT NULL, media_type TEXT, size INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS layer_sources_diff ON layer_sources(diff_id);"
    "CREATE TABLE IF NOT EXISTS children(parent TEXT NOT NULL, kind INTEGER NOT NULL,"
    " child TEXT NOT NULL, PRIMARY KEY(parent, kind, child));"
    "CREATE TABLE IF NOT EXISTS names(name TEXT PRIMARY KEY, digest TEXT NOT NULL,"
    " created INTEGER NOT NULL, last_used INTEGER NOT NULL,"
    " expires INTEGER NOT NULL DEFAULT 0, ttl INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS names_digest ON names(digest);"
    "CREATE TABLE IF NOT EXISTS meta(ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " stamp INTEGER NOT NULL, PRIMARY KEY(ns, key));"
    "CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, pid INTEGER NOT NULL,"
    " start_time INTEGER NOT NULL, expires INTEGER NOT NULL, created INTEGER NOT NULL,"
    " implicit INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS lease_refs(lease INTEGER NOT NULL, digest TEXT NOT NULL,"
    " PRIMARY KEY(lease, digest));"
    MOUNTS_SCHEMA
    ORIGINS_SCHEMA
    "PRAGMA user_version=6;";

/* Version 1 had neither name expiry nor mounts, version 2 no external
 * mounts.  The columns may be there
 * already (a version 1 binary opened a version 2 store and set the version
 * back): they are added only when missing. */
static const char *const MIGRATE_1_2_EXPIRES =
    "ALTER TABLE names ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;";
static const char *const MIGRATE_1_2_TTL =
    "ALTER TABLE names ADD COLUMN ttl INTEGER NOT NULL DEFAULT 0;";
static const char *const MIGRATE_TO_3 = MOUNTS_SCHEMA "PRAGMA user_version=3;";
static const char *const MIGRATE_3_4 = ORIGINS_SCHEMA "PRAGMA user_version=4;";
/* Version 5: a layer's stored format (sbx_layer_format; zstd_digest is the
 * stored file's digest, whatever its format).  Until then every layer was
 * zstd. */
static const char *const MIGRATE_4_5_FORMAT =
    "ALTER TABLE layers ADD COLUMN format INTEGER NOT NULL DEFAULT 0;";
/* Version 6: whether a layer's tar was checked against its diff_id (a pull
 * stores a registry's gzip blob checked only against its blob digest; the
 * first read checks the tar, sbx_layer_info.verified).  Every layer before
 * was checked when stored.  A version 5 binary must not open it: it would
 * trust an unchecked layer. */
static const char *const MIGRATE_5_6_VERIFIED =
    "ALTER TABLE layers ADD COLUMN verified INTEGER NOT NULL DEFAULT 1;";
static const char *const MIGRATE_2_3_EXTERNAL =
    "ALTER TABLE mounts ADD COLUMN external INTEGER NOT NULL DEFAULT 0;";

static int has_column(sbx_store *s, const char *table, const char *column)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('%s') WHERE name=?", table);
    sbx_error ignore = SBX_ERROR_INIT;
    return sbx_store__exists(s, sql, column, &ignore) == 1;
}

/* From version 1 or 2 (or one an older binary set back to it). */
static int migrate_to_3(sbx_store *s, sbx_error *err)
{
    if (!has_column(s, "names", "expires") && sbx_store__exec(s, MIGRATE_1_2_EXPIRES, err) < 0)
        return err->code;
    if (!has_column(s, "names", "ttl") && sbx_store__exec(s, MIGRATE_1_2_TTL, err) < 0)
        return err->code;
    if (sbx_store__exists(s, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                          "mounts", err) == 1 &&
        !has_column(s, "mounts", "external") &&
        sbx_store__exec(s, MIGRATE_2_3_EXTERNAL, err) < 0)
        return err->code;
    return sbx_store__exec(s, MIGRATE_TO_3, err);
}

static const char *const SUBDIRS[] = {"blobs", "blobs/sha256", "layers", "layers/sha256",
                                      "unpacked", "tmp", "quarantine", "locks", "mounts"};

/* ---- small helpers -------------------------------------------------------- */

int sbx_store__io_err(sbx_store *s, sbx_error *err, int e, const char *what)
{
    int code = sbx__errno_code(e);
    if (e == ENOENT)
        code = SBX_ENOTFOUND;
    return sbx_error_sys(err, code, e, "%s in store '%s'", what, s->root);
}

static const char *const LAYER_SUFFIX[] = {[SBX_LAYER_ZSTD] = ".zst", [SBX_LAYER_GZIP] = ".gz"};

void sbx_store__obj_relpath(char *buf, size_t len, sbx_obj_kind kind, const char *hex,
                            sbx_layer_format fmt)
{
    if (kind == SBX_OBJ_BLOB)
        snprintf(buf, len, "blobs/sha256/%s", hex);
    else
        snprintf(buf, len, "layers/sha256/%s%s", hex,
                 LAYER_SUFFIX[fmt == SBX_LAYER_GZIP ? SBX_LAYER_GZIP : SBX_LAYER_ZSTD]);
}

int sbx_store__layer_suffix_format(const char *suffix)
{
    for (int f = 0; f < (int)(sizeof LAYER_SUFFIX / sizeof *LAYER_SUFFIX); f++)
        if (strcmp(suffix, LAYER_SUFFIX[f]) == 0)
            return f;
    return -1;
}

int sbx_store__sql_err(sbx_store *s, sbx_error *err, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db) & 0xff;
    int sys = sqlite3_system_errno(s->db);
    int code = SBX_EIO;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        code = SBX_EBUSY;
    else if (rc == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT)
        code = SBX_ENOSPC;
    else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        code = SBX_ECORRUPT;
    else if (rc == SQLITE_NOMEM)
        code = SBX_ENOMEM;
    if (code == SBX_ENOSPC && sys == 0)
        sys = ENOSPC;
    return sbx_error_sys(err, code, rc == SQLITE_IOERR || code == SBX_ENOSPC ? sys : 0,
                         "%s in store '%s': %s", what, s->root, sqlite3_errmsg(s->db));
}

int sbx_store__exec(sbx_store *s, const char *sql, sbx_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sbx_store__sql_err(s, err, "update metadata");
    return 0;
}

int sbx_store__prepare(sbx_store *s, sqlite3_stmt **st, const char *sql, sbx_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return sbx_store__sql_err(s, err, "query metadata");
    return 0;
}

int sbx_store__begin(sbx_store *s, sbx_error *err)
{
    return sbx_store__exec(s, "BEGIN IMMEDIATE", err);
}

void sbx_store__relaxed(sbx_store *s, bool on)
{
    sqlite3_exec(s->db, on ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", NULL, NULL,
                 NULL);
}

int sbx_store__commit(sbx_store *s, sbx_error *err)
{
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = sbx_store__sql_err(s, err, "commit metadata");
        sbx_store__rollback(s);
        return rc;
    }
    return 0;
}

void sbx_store__rollback(sbx_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int sbx_store__exists(sbx_store *s, const char *sql, const char *arg, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sbx_store__sql_err(s, err, "query metadata");
}

int sbx_store__lock(sbx_store *s, int exclusive, sbx_error *err)
{
    if (s->ctx) /* a long call (gc, fsck) waits cancellably */
        return sbx__flock_wait(s->lock_fd, exclusive ? LOCK_EX : LOCK_SH, s->ctx, err) < 0
                   ? sbx_error_wrap(err, "waiting for the store lock")
                   : 0;
    while (flock(s->lock_fd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
        if (errno != EINTR)
            return sbx_store__io_err(s, err, errno, "lock");
    }
    return 0;
}

void sbx_store__unlock(sbx_store *s) { flock(s->lock_fd, LOCK_UN); }

/* ---- processes ------------------------------------------------------------- */

int64_t sbx_store__proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = sbx__read_full(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    if (!p)
        return 0;
    char state = 0;
    if (sscanf(p + 1, " %c", &state) != 1 || state == 'Z' || state == 'X')
        return 0; /* a zombie holds nothing */
    /* p points at ')' before field 3 (state); field 22 is starttime. */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return 0;
    return strtoll(p + 1, NULL, 10);
}

int sbx_store__proc_alive(pid_t pid, int64_t start)
{
    if (pid <= 0)
        return 0;
    if (start <= 0) /* recorded without /proc: all we can ask is whether the pid exists */
        return kill(pid, 0) == 0 || errno == EPERM;
    return sbx_store__proc_start(pid) == start;
}

/* ---- the commit protocol --------------------------------------------------- */

static int ensure_lease(sbx_store *s, sbx_error *err)
{
    if (s->lease_id)
        return 0;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT INTO leases(pid, start_time, expires, created, implicit)"
                           " VALUES(?, ?, 0, ?, 1)",
                           err) < 0)
        return err->code;
    sqlite3_bind_int64(st, 1, getpid());
    sqlite3_bind_int64(st, 2, s->start_time);
    sqlite3_bind_int64(st, 3, sbx__now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "record process lease");
    s->lease_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sbx_store__lease_self(sbx_store *s, const char *digest, sbx_error *err)
{
    if (ensure_lease(s, err) < 0)
        return err->code;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "INSERT OR IGNORE INTO lease_refs(lease, digest) VALUES(?, ?)",
                           err) < 0)
        return err->code;
    sqlite3_bind_int64(st, 1, s->lease_id);
    sqlite3_bind_text(st, 2, digest, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "record lease");
    return 0;
}

static int drop_record(sbx_store *s, sbx_obj_kind kind, const char *digest, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           kind == SBX_OBJ_LAYER ? "DELETE FROM layers WHERE diff_id=?"
                                                 : "DELETE FROM blobs WHERE digest=?",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "repair record");
    return 0;
}

static int link_into_place(sbx_store *s, const char *named, const char *rel, sbx_error *err)
{
    char from[300];
    snprintf(from, sizeof from, "tmp/%s", named);
    if (linkat(s->root_fd, from, s->root_fd, rel, 0) == 0)
        return 0;
    if (errno != EEXIST)
        return sbx_store__io_err(s, err, errno, "link object into place");
    /* An unrecorded file (a writer died before its record): replace it with
     * our verified copy.  We hold the write lock, so no one records it meanwhile. */
    if (unlinkat(s->root_fd, rel, 0) < 0 && errno != ENOENT)
        return sbx_store__io_err(s, err, errno, "replace unrecorded object");
    if (linkat(s->root_fd, from, s->root_fd, rel, 0) < 0)
        return sbx_store__io_err(s, err, errno, "link object into place");
    return 0;
}

static int fsync_parent(sbx_store *s, sbx_obj_kind kind, sbx_error *err)
{
    _cleanup_close_ int fd = openat(s->root_fd, kind == SBX_OBJ_LAYER ? "layers/sha256"
                                                                      : "blobs/sha256",
                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return sbx_store__io_err(s, err, errno, "sync directory");
    return 0;
}

int sbx_store__commit_object(sbx_store *s, sbx_obj_kind kind, sbx_layer_format fmt,
                             sbx_store__replace_fn replace,
                             const char *tmpname, const char *digest, sbx_store__insert_fn insert,
                             void *ud, sbx_error *err)
{
    const char *hex = digest + 7;
    char named[256], rel[128], from[300], to[300];
    snprintf(named, sizeof named, "%c.%s.%s",
             kind == SBX_OBJ_BLOB ? 'b' : fmt == SBX_LAYER_GZIP ? 'g' : 'l', hex, tmpname + 2);
    snprintf(from, sizeof from, "tmp/%s", tmpname);
    snprintf(to, sizeof to, "tmp/%s", named);
    sbx_store__obj_relpath(rel, sizeof rel, kind, hex, fmt);

    if (renameat(s->root_fd, from, s->root_fd, to) < 0) {
        int e = errno;
        unlinkat(s->root_fd, from, 0);
        return sbx_store__io_err(s, err, e, "name temp file");
    }
    int rc = ensure_lease(s, err);
    if (rc == 0)
        rc = sbx_store__lock(s, 0, err);
    if (rc < 0) {
        unlinkat(s->root_fd, to, 0);
        return rc;
    }
    int linked = 0;
    rc = sbx_store__begin(s, err);
    int present = 0;
    char had[128]; /* the recorded object's file (a layer's may be in another format) */
    snprintf(had, sizeof had, "%s", rel);
    if (rc == 0) {
        sbx_layer_format hf = SBX_LAYER_ZSTD;
        present = kind == SBX_OBJ_LAYER
                      ? sbx_store__layer_lookup(s, digest, &hf, err)
                      : sbx_store__exists(s, "SELECT 1 FROM blobs WHERE digest=?", digest, err);
        rc = present < 0 ? present : 0;
        if (present && kind == SBX_OBJ_LAYER)
            sbx_store__obj_relpath(had, sizeof had, kind, hex, hf);
    }
    if (rc == 0 && present && faccessat(s->root_fd, had, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        /* A record whose file is gone: this write repairs it. */
        rc = drop_record(s, kind, digest, err);
        present = 0;
    }
    bool swap = rc == 0 && present && replace && replace(s, ud);
    bool in_place = swap && strcmp(had, rel) == 0;
    if (rc == 0 && in_place) {
        /* another file of the same name (an unchecked layer's other blob):
         * renamed over it, so a reader opening it finds one or the other.
         * Not undone on a failure below: the record then still names the old
         * file's digest, which the first check (a reader's, fsck's) repairs. */
        if (renameat(s->root_fd, to, s->root_fd, rel) < 0)
            rc = sbx_store__io_err(s, err, errno, "replace object");
        if (rc == 0)
            rc = fsync_parent(s, kind, err);
    } else if (rc == 0 && (!present || swap)) {
        rc = link_into_place(s, named, rel, err);
        linked = rc == 0;
        if (rc == 0)
            rc = fsync_parent(s, kind, err);
    }
    if (rc == 0)
        rc = insert(s, ud, swap ? 2 : present, err);
    if (rc == 0)
        rc = sbx_store__lease_self(s, digest, err);
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    if (rc < 0) {
        sbx_store__rollback(s);
        if (linked)
            unlinkat(s->root_fd, rel, 0);
    }
    /* the replaced file (a reader's open fd keeps it; if this process dies
     * first, it is a file beside a record of the other format, which gc and
     * fsck remove) */
    if (rc == 0 && swap && !in_place)
        unlinkat(s->root_fd, had, 0);
    sbx_store__unlock(s);
    unlinkat(s->root_fd, to, 0);
    return rc;
}

/* ---- space reserve ---------------------------------------------------------- */

/* <root>/reserve holds a little disk space back so that on a full disk the
 * operations that free space (rm, gc) can still write their metadata: they
 * release the reserve and retry once. */
#define RESERVE_BYTES (4 << 20)

void sbx_store__reserve_ensure(sbx_store *s)
{
    if (faccessat(s->root_fd, "reserve", F_OK, 0) == 0)
        return;
    int fd = openat(s->root_fd, "reserve", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (posix_fallocate(fd, 0, RESERVE_BYTES) != 0)
        unlinkat(s->root_fd, "reserve", 0); /* no room: try again next time */
    close(fd);
}

int sbx_store__reserve_release(sbx_store *s)
{
    if (unlinkat(s->root_fd, "reserve", 0) < 0)
        return 0;
    sbx__log(s->ctx, SBX_LOG_WARN, "store '%s' is out of disk space; using its reserve", s->root);
    return 1;
}

/* ---- open / free ------------------------------------------------------------ */

int sbx_store_default_root(char *buf, size_t len, sbx_error *err)
{
    const char *env = getenv("SBX_STORE");
    int n;
    if (env && *env) {
        n = snprintf(buf, len, "%s", env);
    } else if (geteuid() == 0) {
        n = snprintf(buf, len, "/var/lib/sbx-image");
    } else {
        const char *xdg = getenv("XDG_DATA_HOME");
        const char *home = getenv("HOME");
        if (xdg && *xdg == '/') {
            n = snprintf(buf, len, "%s/sbx-image", xdg);
        } else {
            if (!home || !*home) {
                struct passwd *pw = getpwuid(geteuid());
                home = pw ? pw->pw_dir : NULL;
            }
            if (!home || !*home)
                return sbx_error_set(err, SBX_EINVAL,
                                     "find the store: set SBX_STORE, XDG_DATA_HOME or HOME");
            n = snprintf(buf, len, "%s/.local/share/sbx-image", home);
        }
    }
    if (n < 0 || (size_t)n >= len)
        return sbx_error_set(err, SBX_ELIMIT, "find the store: path too long");
    return 0;
}

/* Per connection.  With PERSIST_WAL the WAL file is never deleted, and
 * without a size limit it is never truncated either: it stayed at a few MB of
 * checkpointed frames, which every first opener read back to rebuild the WAL
 * index (hundreds of preads) and whose last closer checkpointed again (3
 * fsyncs), even when neither wrote anything.  With a limit, the last close
 * truncates the WAL to 0 bytes after its checkpoint (the file stays), and a
 * writer restarting the WAL after a checkpoint trims it to the limit (the
 * auto-checkpoint size, so a busy store keeps its WAL's blocks). */
static const char PRAGMAS[] = "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=4194304;";

static int open_db(sbx_store *s, sbx_error *err)
{
    char *path = sbx__strdup_printf("%s/meta.db", s->root);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "open store: out of memory");
    /* Private even if the root's mode was loosened (SQLite gives -wal and
     * -shm the database's mode).  Only ever create it here: closing another
     * fd on an open database would drop this process's SQLite locks. */
    struct stat st;
    if (stat(path, &st) < 0 && errno == ENOENT) {
        int pfd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (pfd >= 0)
            close(pfd);
    }
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    free(path);
    if (rc != SQLITE_OK)
        return sbx_store__sql_err(s, err, "open metadata");
    sqlite3_busy_timeout(s->db, 120000);
    /* Keep -wal and -shm when the last connection closes, so a store on a
     * full disk can still be opened (and gc can free space). */
    int one = 1;
    sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    /* An existing store needs no schema work (and so no wait for a running gc). */
    sqlite3_stmt *vst = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &vst, NULL) == SQLITE_OK &&
        sqlite3_step(vst) == SQLITE_ROW)
        version = sqlite3_column_int(vst, 0);
    sqlite3_finalize(vst);
    if (version == 6)
        return sbx_store__exec(s, PRAGMAS, err);
    /* Schema and journal mode under the exclusive lock: two first opens at
     * once would otherwise race on the WAL switch. */
    if (sbx_store__lock(s, 1, err) < 0)
        return err->code;
    rc = sbx_store__exec(s, "PRAGMA journal_mode=WAL", err);
    if (rc == 0)
        rc = sbx_store__exec(s, PRAGMAS, err);
    if (rc == 0)
        rc = sbx_store__begin(s, err);
    if (rc == 0) {
        /* again, now that no one else can be migrating */
        version = 0;
        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &vst, NULL) == SQLITE_OK &&
            sqlite3_step(vst) == SQLITE_ROW)
            version = sqlite3_column_int(vst, 0);
        sqlite3_finalize(vst);
        if (version == 1 || version == 2)
            rc = migrate_to_3(s, err);
        if (rc == 0 && version >= 1 && version <= 3)
            rc = sbx_store__exec(s, MIGRATE_3_4, err);
        if (rc == 0 && version >= 1 && version <= 4 && !has_column(s, "layers", "format"))
            rc = sbx_store__exec(s, MIGRATE_4_5_FORMAT, err);
        if (rc == 0 && version >= 1 && version <= 5 && !has_column(s, "layers", "verified"))
            rc = sbx_store__exec(s, MIGRATE_5_6_VERIFIED, err);
        if (rc == 0 && version >= 1 && version <= 5)
            rc = sbx_store__exec(s, "PRAGMA user_version=6;", err);
        else if (rc == 0 && version == 0)
            rc = sbx_store__exec(s, SCHEMA, err);
        else if (rc == 0 && version != 6)
            rc = sbx_error_set(err, SBX_EUNSUPPORTED, "metadata version %d is newer than this "
                               "sbx-image knows (6)", version);
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    sbx_store__unlock(s);
    return rc < 0 ? sbx_error_wrap(err, "open store '%s'", s->root) : 0;
}

int sbx_store_open(sbx_store **out, const char *root, sbx_error *err)
{
    char def[PATH_MAX];
    *out = NULL;
    if (root && !*root) /* an unset variable, most likely: never the default store */
        return sbx_error_set(err, SBX_EINVAL, "open store: the path is empty (give a "
                             "directory, or none for the default store)");
    if (!root) {
        if (sbx_store_default_root(def, sizeof def, err) < 0)
            return err->code;
        root = def;
    }
    sbx_store *s = calloc(1, sizeof *s);
    if (!s)
        return sbx_error_set(err, SBX_ENOMEM, "open store: out of memory");
    s->root_fd = s->lock_fd = -1;
    s->root = strdup(root);
    s->start_time = sbx_store__proc_start(getpid());
    int rc = s->root ? 0 : sbx_error_set(err, SBX_ENOMEM, "open store: out of memory");
    if (rc == 0 && sbx__mkdir_p(root, 0700, err) < 0)
        rc = sbx_error_wrap(err, "open store '%s'", root);
    if (rc == 0) {
        s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->root_fd < 0)
            rc = sbx_store__io_err(s, err, errno, "open root");
    }
    if (rc == 0) {
        /* Paths handed out and compared later (scratch dirs, mountinfo) are
         * absolute and canonical: a relative root or a symlinked home would
         * otherwise name something else after a chdir, or hide a mount. */
        char *real = realpath(root, NULL);
        if (real) {
            free(s->root);
            s->root = real;
        }
    }
    for (size_t i = 0; rc == 0 && i < SBX_ARRAY_LEN(SUBDIRS); i++)
        if (mkdirat(s->root_fd, SUBDIRS[i], 0700) < 0 && errno != EEXIST)
            rc = sbx_store__io_err(s, err, errno, "create directory");
    if (rc == 0) {
        s->lock_fd = openat(s->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (s->lock_fd < 0)
            rc = sbx_store__io_err(s, err, errno, "open lock file");
    }
    if (rc == 0)
        rc = open_db(s, err);
    if (rc < 0) {
        sbx_store_free(s);
        return rc;
    }
    sbx_store__clean_tmp(s);
    sbx_error ignore = SBX_ERROR_INIT; /* the next open or gc tries again */
    sbx_store_mount_reap(s, false, NULL, &ignore);
    sbx_store__reserve_ensure(s);
    *out = s;
    return 0;
}

int sbx_store_open_existing(sbx_store **out, const char *root, sbx_error *err)
{
    char def[PATH_MAX];
    *out = NULL;
    if (root && !*root)
        return sbx_store_open(out, root, err); /* the same refusal */
    if (!root) {
        if (sbx_store_default_root(def, sizeof def, err) < 0)
            return err->code;
        root = def;
    }
    char *db = sbx__strdup_printf("%s/meta.db", root);
    if (!db)
        return sbx_error_set(err, SBX_ENOMEM, "open store: out of memory");
    struct stat st;
    int e = stat(db, &st) == 0 ? 0 : errno;
    free(db);
    if (e == ENOENT) { /* (a file in the way is open's error to give) */
        sbx_error_set(err, SBX_ENOTFOUND, "no store at '%s' (a pull or a build makes one)", root);
        sbx_error_where(err, "%s", root);
        return SBX_ENOTFOUND;
    }
    return sbx_store_open(out, root, err);
}

void sbx_store_free(sbx_store *s)
{
    if (!s)
        return;
    if (s->db && s->lease_id) {
        sbx_error err = SBX_ERROR_INIT;
        char sql[160];
        snprintf(sql, sizeof sql,
                 "DELETE FROM lease_refs WHERE lease=%lld; DELETE FROM leases WHERE id=%lld;",
                 (long long)s->lease_id, (long long)s->lease_id);
        sbx_store__relaxed(s, true);
        if (sbx_store__begin(s, &err) == 0 && sbx_store__exec(s, sql, &err) == 0)
            sbx_store__commit(s, &err);
        sbx_store__rollback(s);
        sbx_store__relaxed(s, false);
    }
    if (s->db)
        sqlite3_close_v2(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->root_fd >= 0)
        close(s->root_fd);
    free(s->root);
    free(s);
}

int sbx_store_lease_clear(sbx_store *s, sbx_error *err)
{
    if (!s->lease_id)
        return 0;
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM lease_refs WHERE lease=%lld", (long long)s->lease_id);
    sbx_store__relaxed(s, true);
    int rc = sbx_store__exec(s, sql, err);
    sbx_store__relaxed(s, false);
    return rc;
}

const char *sbx_store_root(const sbx_store *s) { return s ? s->root : NULL; }
