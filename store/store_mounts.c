/* Mount records: the writable layers the store owns over stored images.
 *
 * A mount is a directory mounts/<id>/ (u: the overlay's upper dir, w: its
 * work dir, l/: links to the lower dirs) and a row in `mounts` naming the
 * image's manifest digest, which gc treats as a root for as long as the
 * record lives, and the layers' unpacked dirs with it.  The rootfs module
 * does the mounting; the store keeps the records and decides when one is
 * dead.
 *
 * Liveness, with no pid recorded anywhere:
 *  - a maker (mount, commit, umount) holds an flock on mounts/<id> while it
 *    works; a locked record is live, whatever its state;
 *  - an unlocked record in state 0 (its maker died before finishing) is dead;
 *  - a record made in another boot is dead (nothing survives a reboot);
 *  - otherwise the record lives while an overlay whose source is
 *    "sbx-<id>" is mounted in any mount namespace a process in /proc is in
 *    (a runtime's bind mount of the rootfs in its own namespace counts).
 *    A mount unmounted by hand, or whose namespace died, is dead.
 * Reaping a dead record unmounts what this namespace still has of it
 * (lazily), removes its directory, then its row.
 *
 * Creation: the directory is built as tmp/mnt.<id> (flock()ed, so the
 * generic reaper removes it if the maker dies), the row is inserted and the
 * directory renamed to mounts/<id> in one transaction; a directory under
 * mounts/ without a row is debris of a maker killed in between. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "store_internal.h"

struct sbx_store_mount {
    sbx_store *s;
    int fd; /* mounts/<id>, flock()ed */
    char id[SBX_MOUNT_ID_BUFSZ];
    char *path;
};

static bool mount_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n != 12)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
            return false;
    return true;
}

const char *sbx_store_mount_path(const sbx_store_mount *m) { return m->path; }
const char *sbx_store_mount_id(const sbx_store_mount *m) { return m->id; }

static void mount_free(sbx_store_mount *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    free(m);
}

int sbx_store_mount_begin(sbx_store_mount **out, sbx_store *s, const char *image,
                          const char *digest, const char *dir, bool read_only, sbx_error *err)
{
    *out = NULL;
    char boot[80], name[64];
    if (sbx__digest_parse(NULL, digest, err) < 0)
        return sbx_error_wrap(err, "record mount");
    if (sbx__boot_id(boot, sizeof boot, err) < 0)
        return sbx_error_wrap(err, "record mount");
    sbx_store_mount *m = calloc(1, sizeof *m);
    if (!m)
        return sbx_error_set(err, SBX_ENOMEM, "record mount: out of memory");
    m->s = s;
    m->fd = sbx_store__tmp_entry(s, "mnt", true, false, name, sizeof name, err);
    if (m->fd < 0) {
        free(m);
        return sbx_error_wrap(err, "record mount");
    }
    snprintf(m->id, sizeof m->id, "%.12s", name + 4);
    m->path = sbx__strdup_printf("%s/mounts/%s", s->root, m->id);
    int rc = m->path ? 0 : sbx_error_set(err, SBX_ENOMEM, "record mount: out of memory");
    static const char *const sub[] = {"u", "w", "l"};
    for (size_t i = 0; rc == 0 && i < SBX_ARRAY_LEN(sub); i++)
        if ((i < 2 && read_only) ? 0 : mkdirat(m->fd, sub[i], i == 0 ? 0755 : 0700) < 0)
            rc = sbx_store__io_err(s, err, errno, "create mount dir");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    sbx_store__relaxed(s, true); /* mount records do not outlive the boot */
    if (rc == 0 && (rc = sbx_store__begin(s, err)) == 0)
        rc = sbx_store__prepare(s, &st,
                                "INSERT INTO mounts(id, image, digest, dir, created, boot_id,"
                                " read_only, state) VALUES(?, ?, ?, ?, ?, ?, ?, 0)",
                                err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, image, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, dir, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, sbx__now_unix());
        sqlite3_bind_text(st, 6, boot, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 7, read_only);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sbx_store__sql_err(s, err, "record mount");
    }
    if (rc == 0) {
        char from[80], to[80];
        snprintf(from, sizeof from, "tmp/%s", name);
        snprintf(to, sizeof to, "mounts/%s", m->id);
        if (renameat(s->root_fd, from, s->root_fd, to) < 0)
            rc = sbx_store__io_err(s, err, errno, "place mount dir");
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    sbx_store__relaxed(s, false);
    if (rc < 0) {
        /* still in tmp/ (or, after a failed commit, under mounts/ with no
         * row): the reapers take it once the lock goes */
        mount_free(m);
        return sbx_error_wrap(err, "record mount");
    }
    *out = m;
    return 0;
}

/* One statement on mount id's row (?1; ?2 is text when given), committed
 * without waiting for the disk: mount records do not outlive the boot. */
static int mount_exec(sbx_store *s, const char *sql, const char *id, const char *text,
                      sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (text)
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    sbx_store__relaxed(s, true);
    int step = sqlite3_step(st);
    sbx_store__relaxed(s, false);
    if (step != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "update mount record");
    return 0;
}

int sbx_store_mount_set_flat(sbx_store_mount *m, const char *flat, sbx_error *err)
{
    return mount_exec(m->s, "UPDATE mounts SET flat=?2 WHERE id=?1", m->id, flat ? flat : "",
                      err);
}

int sbx_store_mount_set_external(sbx_store_mount *m, sbx_error *err)
{
    return mount_exec(m->s, "UPDATE mounts SET external=1 WHERE id=?1", m->id, NULL, err);
}

int sbx_store_mount_ready(sbx_store_mount *m, sbx_error *err)
{
    int rc = mount_exec(m->s, "UPDATE mounts SET state=1 WHERE id=?1", m->id, NULL, err);
    mount_free(m);
    return rc;
}

/* Remove a mount's leftovers, directory and row (its lock is the caller's). */
static int drop(sbx_store *s, const char *id, sbx_error *err)
{
    char rel[80];
    snprintf(rel, sizeof rel, "mounts/%s", id);
    _cleanup_free_ char *path = sbx__strdup_printf("%s/%s", s->root, rel);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "remove mount: out of memory");
    /* whatever this namespace still has of it (a maker killed after its
     * mount(2)) goes first: an upper must never be emptied under a mount */
    char src[32];
    snprintf(src, sizeof src, "sbx-%s", id);
    sbx__mount_src *v = NULL;
    size_t n = 0;
    if (sbx__mount_sources(src, false, &v, &n, NULL) == 0)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(v[i].source, src))
                umount2(v[i].mountpoint, MNT_DETACH);
    sbx__mount_srcs_free(v, n);
    if (sbx__mounted_below(path))
        sbx__umount_below(path);
    if (sbx__rm_rf(path, err) < 0)
        return sbx_error_wrap(err, "remove mount '%s'", id);
    return mount_exec(s, "DELETE FROM mounts WHERE id=?1", id, NULL, err);
}

void sbx_store_mount_abort(sbx_store_mount *m)
{
    if (!m)
        return;
    sbx_error err = SBX_ERROR_INIT;
    drop(m->s, m->id, &err);
    mount_free(m);
}

/* ---- lookups -------------------------------------------------------------- */

void sbx_mount_entry_clear(sbx_mount_entry *e)
{
    if (!e)
        return;
    free(e->image);
    free(e->dir);
    free(e->path);
    free(e->flat);
    memset(e, 0, sizeof *e);
}

void sbx_mount_entries_free(sbx_mount_entry *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        sbx_mount_entry_clear(&v[i]);
    free(v);
}

static const char *const SELECT_MOUNT =
    "SELECT id, image, digest, dir, created, boot_id, read_only, state, flat, external"
    " FROM mounts";

static int row_to_entry(sbx_store *s, sqlite3_stmt *st, sbx_mount_entry *e, sbx_error *err)
{
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", (const char *)sqlite3_column_text(st, 0));
    e->image = strdup((const char *)sqlite3_column_text(st, 1));
    snprintf(e->digest, sizeof e->digest, "%s", (const char *)sqlite3_column_text(st, 2));
    e->dir = strdup((const char *)sqlite3_column_text(st, 3));
    e->created = sqlite3_column_int64(st, 4);
    snprintf(e->boot_id, sizeof e->boot_id, "%s", (const char *)sqlite3_column_text(st, 5));
    e->read_only = sqlite3_column_int(st, 6) != 0;
    e->ready = sqlite3_column_int(st, 7) == 1;
    e->flat = strdup((const char *)sqlite3_column_text(st, 8));
    e->external = sqlite3_column_int(st, 9) != 0;
    e->path = sbx__strdup_printf("%s/mounts/%s", s->root, e->id);
    if (!e->image || !e->dir || !e->path || !e->flat) {
        sbx_mount_entry_clear(e);
        return sbx_error_set(err, SBX_ENOMEM, "read mount record: out of memory");
    }
    return 0;
}

int sbx_store_mount_list(sbx_mount_entry **out, size_t *n, sbx_store *s, sbx_error *err)
{
    *out = NULL;
    *n = 0;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    _cleanup_free_ char *sql = sbx__strdup_printf("%s ORDER BY created, id", SELECT_MOUNT);
    if (!sql)
        return sbx_error_set(err, SBX_ENOMEM, "list mounts: out of memory");
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    sbx_mount_entry *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8;
            sbx_mount_entry *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                sbx_mount_entries_free(v, len);
                return sbx_error_set(err, SBX_ENOMEM, "list mounts: out of memory");
            }
            v = nv;
        }
        if (row_to_entry(s, st, &v[len], err) < 0) {
            sbx_mount_entries_free(v, len);
            return err->code;
        }
        len++;
    }
    if (rc != SQLITE_DONE) {
        sbx_mount_entries_free(v, len);
        return sbx_store__sql_err(s, err, "list mounts");
    }
    *out = v;
    *n = len;
    return 0;
}

int sbx_store_mount_find(sbx_mount_entry *out, sbx_store *s, const char *id_or_dir,
                         sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!id_or_dir || !*id_or_dir)
        return sbx_error_set(err, SBX_EINVAL, "find mount: give a mount id or directory");
    /* a directory is matched by its canonical path (as mount recorded it);
     * a name that could be either is tried as both */
    _cleanup_free_ char *real = realpath(id_or_dir, NULL);
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    _cleanup_free_ char *sql = sbx__strdup_printf(
        "%s WHERE id=?1 OR dir=?2 ORDER BY id=?1 DESC, state DESC, created DESC, rowid DESC"
        " LIMIT 1", SELECT_MOUNT);
    if (!sql)
        return sbx_error_set(err, SBX_ENOMEM, "find mount: out of memory");
    if (sbx_store__prepare(s, &st, sql, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, id_or_dir, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, real ? real : id_or_dir, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sbx_error_set(err, SBX_ENOTFOUND, "no mount '%s' in store '%s' (see sbx-image mounts)",
                      id_or_dir, s->root);
        sbx_error_where(err, "%s", id_or_dir);
        return SBX_ENOTFOUND;
    }
    if (rc != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "find mount");
    return row_to_entry(s, st, out, err);
}

int sbx_store_mount_lock(int *fd_out, sbx_store *s, const char *id, sbx_ctx *ctx,
                         sbx_error *err)
{
    *fd_out = -1;
    if (!mount_id_valid(id))
        return sbx_error_set(err, SBX_EINVAL, "lock mount: '%s' is not a mount id", id);
    char rel[80];
    snprintf(rel, sizeof rel, "mounts/%s", id);
    int fd = openat(s->root_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx_store__io_err(s, err, errno, "open mount dir");
    if (sbx__flock_wait(fd, LOCK_EX, ctx, err) < 0) {
        close(fd);
        return sbx_error_wrap(err, "waiting for mount '%s'", id);
    }
    /* removed while we waited (umount, or a reaper) */
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_nlink == 0) {
        close(fd);
        return sbx_error_set(err, SBX_ENOTFOUND, "mount '%s' was removed meanwhile", id);
    }
    *fd_out = fd;
    return 0;
}

int sbx_store_mount_remove(sbx_store *s, const char *id, int lock_fd, sbx_error *err)
{
    if (!mount_id_valid(id))
        return sbx_error_set(err, SBX_EINVAL, "remove mount: '%s' is not a mount id", id);
    (void)lock_fd; /* the caller's proof it holds the mount: what drop needs */
    return drop(s, id, err);
}

/* ---- reaping -------------------------------------------------------------- */

/* An overlay (not anything else someone named so) with source sbx-<id>. */
static bool has_source(const sbx__mount_src *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(v[i].source, "sbx-", 4) && !strcmp(v[i].source + 4, id) &&
            !strcmp(v[i].fstype, "overlay"))
            return true;
    return false;
}

/* Whether the record's maker holds it (then it is live).  Takes the lock
 * into *fd when free, so no one starts on it while it is judged. */
static bool held(sbx_store *s, const char *id, int *fd)
{
    char rel[80];
    snprintf(rel, sizeof rel, "mounts/%s", id);
    *fd = openat(s->root_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0)
        return false; /* no dir: nothing to hold */
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        close(*fd);
        *fd = -1;
        return true;
    }
    return false;
}

int sbx_store_mount_reap(sbx_store *s, bool full, unsigned *reaped, sbx_error *err)
{
    if (reaped)
        *reaped = 0;
    char boot[80];
    if (sbx__boot_id(boot, sizeof boot, err) < 0)
        return sbx_error_wrap(err, "check mounts");
    sbx_mount_entry *v = NULL;
    size_t n = 0;
    if (sbx_store_mount_list(&v, &n, s, err) < 0)
        return err->code;
    sbx__mount_src *all = NULL;
    size_t nall = 0;
    bool incomplete = false;
    int rc = 0;
    if (n && full && sbx__mount_sources("sbx-", true, &all, &nall, &incomplete) < 0)
        rc = sbx_error_set(err, SBX_ENOMEM, "check mounts: out of memory");
    /* a namespace that could not be read may hold any of them: then only
     * the other rules apply */
    if (incomplete) {
        sbx__log(s->ctx, SBX_LOG_WARN, "check mounts: some processes' mount namespaces could "
                 "not be read; mounts are kept unless unfinished or from another boot");
        full = false;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sbx_mount_entry *e = &v[i];
        int fd = -1;
        /* an external mount (the runtime mounts it) lives until umount or
         * a reboot, mounted or not: between a stop and a commit it is not */
        bool dead = !e->ready || strcmp(e->boot_id, boot) != 0 ||
                    (full && !e->external && !has_source(all, nall, e->id));
        if (!dead || held(s, e->id, &fd))
            continue;
        /* its maker may have finished between the list and the lock */
        sbx_error se = SBX_ERROR_INIT;
        if (!e->ready &&
            sbx_store__exists(s, "SELECT 1 FROM mounts WHERE id=? AND state=1", e->id, &se) != 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        sbx_error de = SBX_ERROR_INIT;
        if (drop(s, e->id, &de) < 0) {
            char buf[1400];
            sbx__log(s->ctx, SBX_LOG_WARN, "%s", sbx_error_format(&de, buf, sizeof buf));
        } else if (reaped) {
            (*reaped)++;
        }
        if (fd >= 0)
            close(fd);
    }
    sbx_mount_entries_free(v, n);
    sbx__mount_srcs_free(all, nall);
    if (rc < 0 || !full)
        return rc;
    /* directories under mounts/ with no record: a maker killed between the
     * rename and the commit */
    int dfd = openat(s->root_fd, "mounts", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!mount_id_valid(de->d_name))
            continue;
        sbx_error e2 = SBX_ERROR_INIT;
        int have = sbx_store__exists(s, "SELECT 1 FROM mounts WHERE id=?", de->d_name, &e2);
        int fd = -1;
        if (have != 0 || held(s, de->d_name, &fd))
            continue;
        /* the row may have been committed just before we took the lock */
        if (sbx_store__exists(s, "SELECT 1 FROM mounts WHERE id=?", de->d_name, &e2) == 0) {
            _cleanup_free_ char *path = sbx__strdup_printf("%s/mounts/%s", s->root, de->d_name);
            if (path && !sbx__mounted_below(path) && sbx__rm_rf(path, &e2) == 0 && reaped)
                (*reaped)++;
        }
        close(fd);
    }
    closedir(d);
    return 0;
}
