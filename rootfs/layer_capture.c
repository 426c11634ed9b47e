/* Capture a directory tree as a deterministic layer tar (libarchive).
 *
 * Determinism: the walk is depth first with each directory's names sorted by
 * bytes; mtimes are clamped to the epoch with no sub-second part; atime and
 * ctime are never written; owners are numeric with no names; xattrs are added
 * in name order; the format is PAX restricted (ustar unless an entry needs
 * more).  Nothing from the capturing process (pid, clock, umask) reaches the
 * stream, so the same tree gives the same bytes and the same diff_id.
 *
 * Overlay uppers: a 0/0 character device is a whiteout and becomes an empty
 * `.wh.NAME` file; a directory with trusted.overlay.opaque=y (or the
 * user.overlay variant) gets a `.wh..wh..opq` entry right after it.  Other
 * overlay-private xattrs never leave the host.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "archive_lazy.h"
#include "rootfs_internal.h"
#include "sbx_common.h"

typedef struct hardlink {
    dev_t dev;
    ino_t ino;
    char *path;
} hardlink;

typedef struct capture_ctx {
    const sbx_capture_options *opts;
    int64_t epoch;
    struct archive *ar;
    struct archive_entry *entry;
    sbx__sha256 *hash;
    sbx_capture_write_fn write_fn;
    void *ud;
    sbx_error *err;
    const sbx_ctx *ctx;
    int write_failed;
    bool discard;
    uint64_t size, entries;
    /* The directory being walked, opened without following a symlink from
     * its parent's fd: entries are reached as /proc/self/fd/<dirfd>/<name>,
     * one component from a pinned directory, so a sandbox that swaps a dir
     * for a symlink mid-walk gets an error, never the host's files. */
    int dirfd;
    hardlink *links;
    size_t nlinks, caplinks;
    char buf[65536];
} capture_ctx;

static la_ssize_t ar_write_cb(struct archive *a, void *p, const void *buf, size_t len)
{
    capture_ctx *c = p;
    if (c->discard)
        return (la_ssize_t)len;
    if (c->write_fn && c->write_fn(c->ud, buf, len, c->err) < 0) {
        c->write_failed = 1;
        archive_set_error(a, EIO, "layer sink failed");
        return -1;
    }
    if (c->hash)
        sbx__sha256_update(c->hash, buf, len);
    c->size += len;
    return (la_ssize_t)len;
}

static int ar_fail(capture_ctx *c, const char *what, const char *path)
{
    if (c->write_failed)
        return sbx_error_wrap(c->err, "capturing '%s'", path);
    sbx_error_set(c->err, SBX_EIO, "capturing '%s': %s: %s", path, what,
                  archive_error_string(c->ar) ? archive_error_string(c->ar) : "unknown error");
    sbx_error_where(c->err, "%s", path);
    return SBX_EIO;
}

static int64_t resolve_epoch(int64_t want)
{
    if (want >= 0)
        return want;
    const char *s = getenv("SOURCE_DATE_EPOCH");
    if (s && *s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!errno && !*end && v >= 0)
            return v;
    }
    return 0;
}

static bool overlay_private_xattr(const char *name)
{
    return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13);
}

static bool is_whiteout(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy xattrs of path (sorted, overlay ones dropped) into the entry; sets
 * *opaque when an overlay opaque marker is present. */
static int add_xattrs(capture_ctx *c, const char *path, bool *opaque)
{
    *opaque = false;
    ssize_t n = llistxattr(path, NULL, 0);
    if (n < 0) {
        if (errno == ENOTSUP)
            return 0;
        return sbx_error_sys(c->err, SBX_EIO, errno, "listing xattrs of '%s'", path);
    }
    if (n == 0)
        return 0;
    _cleanup_free_ char *list = malloc((size_t)n + 1);
    if (!list)
        return sbx_error_set(c->err, SBX_ENOMEM, "listing xattrs of '%s': out of memory", path);
    n = llistxattr(path, list, (size_t)n);
    if (n < 0)
        return sbx_error_sys(c->err, SBX_EIO, errno, "listing xattrs of '%s'", path);
    list[n] = '\0';
    size_t count = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
        count++;
    _cleanup_free_ char **names = calloc(count ? count : 1, sizeof(char *));
    if (!names)
        return sbx_error_set(c->err, SBX_ENOMEM, "listing xattrs of '%s': out of memory", path);
    count = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
        names[count++] = list + i;
    qsort(names, count, sizeof(char *), cmp_str);
    for (size_t i = 0; i < count; i++) {
        char val[65536];
        ssize_t vl = lgetxattr(path, names[i], val, sizeof(val));
        if (vl < 0)
            return sbx_error_sys(c->err, SBX_EIO, errno, "reading xattr '%s' of '%s'", names[i],
                                 path);
        if (overlay_private_xattr(names[i])) {
            if (c->opts->overlay_upper && vl >= 1 && val[0] == 'y' &&
                (!strcmp(names[i], "trusted.overlay.opaque") ||
                 !strcmp(names[i], "user.overlay.opaque")))
                *opaque = true;
            continue;
        }
        archive_entry_xattr_add_entry(c->entry, names[i], val, (size_t)vl);
    }
    return 0;
}

static void entry_common(capture_ctx *c, const char *name, const struct stat *st)
{
    archive_entry_clear(c->entry);
    archive_entry_set_pathname(c->entry, name);
    archive_entry_set_mode(c->entry, st->st_mode);
    archive_entry_set_uid(c->entry, st->st_uid);
    archive_entry_set_gid(c->entry, st->st_gid);
    int64_t mt = st->st_mtim.tv_sec;
    if (c->opts->keep_mtimes) {
        archive_entry_set_mtime(c->entry, mt, st->st_mtim.tv_nsec);
    } else {
        if (mt > c->epoch || mt < 0)
            mt = c->epoch;
        archive_entry_set_mtime(c->entry, mt, 0);
    }
    if (c->opts->set_owner) {
        archive_entry_set_uid(c->entry, c->opts->uid);
        archive_entry_set_gid(c->entry, c->opts->gid);
    }
    if (S_ISREG(st->st_mode) && c->opts->file_mode >= 0)
        archive_entry_set_perm(c->entry, (mode_t)c->opts->file_mode);
    if (S_ISDIR(st->st_mode) && c->opts->dir_mode >= 0)
        archive_entry_set_perm(c->entry, (mode_t)c->opts->dir_mode);
}

static int write_header(capture_ctx *c, const char *path)
{
    if (archive_write_header(c->ar, c->entry) != ARCHIVE_OK)
        return ar_fail(c, "writing header", path);
    c->entries++;
    return 0;
}

/* A synthetic entry: a whiteout file, an opaque marker or a prefix dir. */
static int write_marker(capture_ctx *c, const char *name, mode_t mode, const char *path)
{
    archive_entry_clear(c->entry);
    archive_entry_set_pathname(c->entry, name);
    archive_entry_set_mode(c->entry, mode);
    archive_entry_set_uid(c->entry, 0);
    archive_entry_set_gid(c->entry, 0);
    archive_entry_set_mtime(c->entry, c->epoch, 0);
    if (S_ISREG(mode))
        archive_entry_set_size(c->entry, 0);
    return write_header(c, path);
}

static int write_file_data(capture_ctx *c, const char *path, const char *sp,
                           const struct stat *st)
{
    _cleanup_close_ int fd = open(sp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(c->err, SBX_EIO, errno, "capturing '%s': opening", path);
    uint64_t left = (uint64_t)st->st_size;
    while (left > 0) {
        ssize_t n = read(fd, c->buf, left < sizeof(c->buf) ? left : sizeof(c->buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(c->err, SBX_EIO, errno, "capturing '%s': reading", path);
        if (n == 0)
            return sbx_error_set(c->err, SBX_EIO, "capturing '%s': file shrank while read",
                                 path);
        if (archive_write_data(c->ar, c->buf, (size_t)n) != n)
            return ar_fail(c, "writing data", path);
        left -= (uint64_t)n;
    }
    return 0;
}

/* If st is a second name of an already written inode, returns its first name. */
static const char *hardlink_seen(capture_ctx *c, const struct stat *st, const char *name, int *r)
{
    *r = 0;
    if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
        return NULL;
    for (size_t i = 0; i < c->nlinks; i++)
        if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino)
            return c->links[i].path;
    if (c->nlinks == c->caplinks) {
        size_t cap = c->caplinks ? c->caplinks * 2 : 16;
        hardlink *n = realloc(c->links, cap * sizeof(*n));
        if (!n) {
            *r = sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
            return NULL;
        }
        c->links = n;
        c->caplinks = cap;
    }
    char *dup = strdup(name);
    if (!dup) {
        *r = sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
        return NULL;
    }
    c->links[c->nlinks++] = (hardlink){st->st_dev, st->st_ino, dup};
    return NULL;
}

static int capture_dir(capture_ctx *c, const char *path, const char *sp, const char *name);

/* One entry: path on disk, name in the tar (no leading "./", no trailing "/"). */
static int capture_one(capture_ctx *c, const char *path, const char *name, const char *base)
{
    struct stat st;
    if (sbx__check_cancel(c->ctx, c->err) < 0)
        return sbx_error_wrap(c->err, "capturing");
    /* sp: the name for syscalls (see capture_ctx.dirfd); path: for messages */
    char spbuf[320]; /* "/proc/self/fd/N/" + one name (NAME_MAX) */
    const char *sp = path;
    if (c->dirfd >= 0) {
        snprintf(spbuf, sizeof spbuf, "/proc/self/fd/%d/%s", c->dirfd, base);
        sp = spbuf;
    }
    if (lstat(sp, &st) < 0)
        return sbx_error_sys(c->err, SBX_EIO, errno, "capturing '%s'", path);

    if (c->opts->overlay_upper && is_whiteout(&st)) {
        const char *slash = strrchr(name, '/');
        _cleanup_free_ char *wh =
            slash ? sbx__strdup_printf("%.*s/.wh.%s", (int)(slash - name), name, base)
                  : sbx__strdup_printf(".wh.%s", base);
        if (!wh)
            return sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
        return write_marker(c, wh, S_IFREG | 0644, path);
    }

    entry_common(c, name, &st);
    bool opaque = false;
    int r = add_xattrs(c, sp, &opaque);
    if (r < 0)
        return r;

    const char *target = hardlink_seen(c, &st, name, &r);
    if (r < 0)
        return r;
    if (target) {
        archive_entry_set_hardlink(c->entry, target);
        archive_entry_set_size(c->entry, 0);
        return write_header(c, path);
    }

    if (S_ISREG(st.st_mode)) {
        archive_entry_set_size(c->entry, st.st_size);
        r = write_header(c, path);
        return r < 0 ? r : write_file_data(c, path, sp, &st);
    }
    if (S_ISLNK(st.st_mode)) {
        char tgt[4097];
        ssize_t n = readlink(sp, tgt, sizeof(tgt) - 1);
        if (n < 0)
            return sbx_error_sys(c->err, SBX_EIO, errno, "capturing '%s': readlink", path);
        tgt[n] = '\0';
        archive_entry_set_symlink(c->entry, tgt);
        archive_entry_set_size(c->entry, 0);
        return write_header(c, path);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        archive_entry_set_rdevmajor(c->entry, major(st.st_rdev));
        archive_entry_set_rdevminor(c->entry, minor(st.st_rdev));
        return write_header(c, path);
    }
    if (S_ISFIFO(st.st_mode))
        return write_header(c, path);
    if (S_ISSOCK(st.st_mode))
        return 0; /* sockets cannot live in a tar; a stale one is no content */
    if (!S_ISDIR(st.st_mode))
        return 0;

    r = write_header(c, path);
    if (r < 0)
        return r;
    if (opaque) {
        _cleanup_free_ char *opq = sbx__strdup_printf("%s/.wh..wh..opq", name);
        if (!opq)
            return sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
        r = write_marker(c, opq, S_IFREG | 0644, path);
        if (r < 0)
            return r;
    }
    return capture_dir(c, path, sp, name);
}

void rfs_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int rfs_list_dir_fd(char ***out, size_t *n_out, int fd, const char *path, sbx_error *err)
{
    int dfd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return sbx_error_sys(err, SBX_EIO, e, "opening the directory '%s'", path);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof(char *));
            if (!nn) {
                r = sbx_error_set(err, SBX_ENOMEM, "listing '%s': out of memory", path);
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            r = sbx_error_set(err, SBX_ENOMEM, "listing '%s': out of memory", path);
            break;
        }
        n++;
    }
    closedir(d);
    if (r < 0) {
        rfs_free_names(names, n);
        return r;
    }
    if (n)
        qsort(names, n, sizeof(char *), cmp_str);
    *out = names;
    *n_out = n;
    return 0;
}

static int list_dir(char ***out, size_t *n_out, const char *path, sbx_error *err)
{
    return rfs_list_dir_fd(out, n_out, -1, path, err);
}

static int capture_dir(capture_ctx *c, const char *path, const char *sp, const char *name)
{
    char **names = NULL;
    size_t n = 0;
    _cleanup_close_ int fd = open(sp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(c->err, SBX_EIO, errno, "capturing '%s': opening directory "
                             "(changed during the capture?)", path);
    int r = rfs_list_dir_fd(&names, &n, fd, path, c->err);
    if (r < 0)
        return sbx_error_wrap(c->err, "capturing");
    int saved = c->dirfd;
    c->dirfd = fd;
    for (size_t i = 0; i < n && r == 0; i++) {
        char *child = sbx__strdup_printf("%s/%s", path, names[i]);
        char *cname = *name ? sbx__strdup_printf("%s/%s", name, names[i]) : strdup(names[i]);
        if (!child || !cname)
            r = sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
        else
            r = capture_one(c, child, cname, names[i]);
        free(child);
        free(cname);
    }
    c->dirfd = saved;
    rfs_free_names(names, n);
    return r;
}

/* Emit the prefix's directories ("a", "a/b"); the last one carries the
 * requested owner and dir mode. */
static int write_prefix(capture_ctx *c, const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && prefix[i] != '/')
            continue;
        _cleanup_free_ char *part = strndup(prefix, i);
        if (!part)
            return sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
        bool last = i == len;
        int mode = last && c->opts->dir_mode >= 0 ? c->opts->dir_mode : 0755;
        archive_entry_clear(c->entry);
        archive_entry_set_pathname(c->entry, part);
        archive_entry_set_mode(c->entry, S_IFDIR | (mode_t)mode);
        bool own = last && c->opts->set_owner;
        archive_entry_set_uid(c->entry, own ? c->opts->uid : 0);
        archive_entry_set_gid(c->entry, own ? c->opts->gid : 0);
        archive_entry_set_mtime(c->entry, c->epoch, 0);
        int r = write_header(c, part);
        if (r < 0)
            return r;
    }
    return 0;
}

static int check_prefix(const char *prefix, sbx_error *err)
{
    if (!*prefix || prefix[0] == '/' || prefix[strlen(prefix) - 1] == '/' ||
        strstr(prefix, "//"))
        return sbx_error_set(err, SBX_EINVAL, "capturing: bad prefix '%s' (want a relative "
                             "path without empty parts)", prefix);
    for (const char *p = prefix; p; p = strchr(p, '/')) {
        if (*p == '/')
            p++;
        if ((p[0] == '.' && (p[1] == '/' || !p[1])) ||
            (p[0] == '.' && p[1] == '.' && (p[2] == '/' || !p[2])))
            return sbx_error_set(err, SBX_EINVAL, "capturing: bad prefix '%s' ('.' or '..' "
                                 "part)", prefix);
    }
    return 0;
}

static int capture_run(capture_ctx *c, const char *dir)
{
    const char *prefix = c->opts->prefix;
    struct stat st;
    if (lstat(dir, &st) < 0) {
        int e = errno;
        sbx_error_where(c->err, "%s", dir);
        return sbx_error_sys(c->err, e == ENOENT ? SBX_ENOTFOUND : SBX_EIO, e,
                             "capturing '%s'", dir);
    }
    if (prefix) {
        int r = check_prefix(prefix, c->err);
        if (r < 0)
            return r;
    }
    if (!S_ISDIR(st.st_mode)) {
        /* A single file becomes the entry named by the prefix. */
        if (!prefix)
            return sbx_error_set(c->err, SBX_EINVAL,
                                 "capturing '%s': not a directory and no prefix given", dir);
        const char *slash = strrchr(prefix, '/');
        if (slash) {
            _cleanup_free_ char *parent = strndup(prefix, (size_t)(slash - prefix));
            if (!parent)
                return sbx_error_set(c->err, SBX_ENOMEM, "capturing: out of memory");
            /* parents plain 0755 root, like docker COPY */
            sbx_capture_options o = *c->opts;
            o.set_owner = false;
            o.dir_mode = -1;
            const sbx_capture_options *saved = c->opts;
            c->opts = &o;
            int r = write_prefix(c, parent);
            c->opts = saved;
            if (r < 0)
                return r;
        }
        return capture_one(c, dir, prefix, slash ? slash + 1 : prefix);
    }
    if (prefix) {
        int r = write_prefix(c, prefix);
        if (r < 0)
            return r;
    }
    if (!prefix && c->opts->keep_mtimes) {
        /* A snapshot keeps its root's owner, mode, xattrs and times too
         * (overlayfs shows the upper root's own). */
        entry_common(c, "./", &st);
        bool opaque = false;
        int r = add_xattrs(c, dir, &opaque);
        if (r == 0)
            r = write_header(c, dir);
        if (r < 0)
            return r;
    }
    return capture_dir(c, dir, dir, prefix ? prefix : "");
}

/* The walk is done once to know whether anything is there (an empty upper
 * must write no bytes at all), then for real. */
int rfs_dir_is_empty(const char *dir, bool *empty, sbx_error *err)
{
    struct stat st;
    if (lstat(dir, &st) < 0) {
        int e = errno;
        sbx_error_where(err, "%s", dir);
        return sbx_error_sys(err, e == ENOENT ? SBX_ENOTFOUND : SBX_EIO, e, "capturing '%s'",
                             dir);
    }
    if (!S_ISDIR(st.st_mode)) {
        *empty = false;
        return 0;
    }
    char **names = NULL;
    size_t n = 0;
    int r = list_dir(&names, &n, dir, err);
    if (r < 0)
        return r;
    rfs_free_names(names, n);
    *empty = n == 0;
    return 0;
}

/* hash: compute the diff_id here (false: the sink hashes, as the store's
 * layer writer does; out->diff_id is then left empty). */
static int capture_stream(sbx_capture_result *out, const char *dir,
                          const sbx_capture_options *opts, sbx_capture_write_fn write_fn,
                          void *ud, bool hash, sbx_ctx *ctx, sbx_error *err)
{
    sbx_capture_options defaults = SBX_CAPTURE_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    memset(out, 0, sizeof(*out));

    bool empty = false;
    int r = rfs_dir_is_empty(dir, &empty, err);
    if (r < 0)
        return r;
    if (empty && !opts->prefix)
        return 0;
    r = rfs_archive_load(err);
    if (r < 0)
        return sbx_error_wrap(err, "capturing '%s'", dir);

    capture_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "capturing '%s': out of memory", dir);
    c->opts = opts;
    c->dirfd = -1;
    c->epoch = resolve_epoch(opts->epoch);
    c->write_fn = write_fn;
    c->ud = ud;
    c->err = err;
    c->ctx = ctx;
    r = hash ? sbx__sha256_new(&c->hash, err) : 0;
    if (r == 0) {
        c->ar = archive_write_new();
        c->entry = archive_entry_new();
        if (!c->ar || !c->entry)
            r = sbx_error_set(err, SBX_ENOMEM, "capturing '%s': out of memory", dir);
    }
    /* hdrcharset=BINARY: names are bytes; without it libarchive converts them
     * through the C locale and fails on non-ASCII (ca-certificates' links). */
    /* pax proper when times keep their nanoseconds: restricted pax writes
     * an extended header only where ustar cannot say it, and drops them */
    if (r == 0 && ((opts->keep_mtimes ? archive_write_set_format_pax(c->ar)
                                      : archive_write_set_format_pax_restricted(c->ar)) !=
                       ARCHIVE_OK ||
                   archive_write_set_format_option(c->ar, "pax", "hdrcharset", "BINARY") !=
                       ARCHIVE_OK ||
                   archive_write_set_bytes_per_block(c->ar, 10240) != ARCHIVE_OK ||
                   archive_write_set_bytes_in_last_block(c->ar, 1) != ARCHIVE_OK ||
                   archive_write_open(c->ar, c, NULL, ar_write_cb, NULL) != ARCHIVE_OK))
        r = ar_fail(c, "starting the tar stream", dir);
    if (r == 0)
        r = capture_run(c, dir);
    if (r == 0 && archive_write_close(c->ar) != ARCHIVE_OK)
        r = ar_fail(c, "finishing the tar stream", dir);
    if (r == 0) {
        if (c->hash)
            sbx__sha256_final(c->hash, out->diff_id);
        out->changed = c->entries > 0;
        out->size = c->size;
        out->entries = c->entries;
        if (!out->changed)
            out->diff_id[0] = '\0';
    }
    if (c->ar) {
        c->discard = r < 0; /* no trailer into the sink after a failure */
        archive_write_free(c->ar);
    }
    if (c->entry)
        archive_entry_free(c->entry);
    sbx__sha256_free(c->hash);
    for (size_t i = 0; i < c->nlinks; i++)
        free(c->links[i].path);
    free(c->links);
    free(c);
    return r;
}

int sbx_rootfs_capture_stream(sbx_capture_result *out, const char *dir,
                              const sbx_capture_options *opts, sbx_capture_write_fn write_fn,
                              void *ud, sbx_ctx *ctx, sbx_error *err)
{
    return capture_stream(out, dir, opts, write_fn, ud, true, ctx, err);
}

static int layer_sink(void *ud, const void *buf, size_t len, sbx_error *err)
{
    return sbx_layer_writer_write(ud, buf, len, err);
}

int sbx_rootfs_capture(sbx_capture_result *out, sbx_store *s, const char *dir,
                       const sbx_capture_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    sbx_capture_options defaults = SBX_CAPTURE_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    memset(out, 0, sizeof(*out));
    bool empty = false;
    int r = rfs_dir_is_empty(dir, &empty, err);
    if (r < 0)
        return r;
    if (empty && !opts->prefix)
        return 0;
    /* Before a layer write is begun, so a missing library leaves nothing. */
    r = rfs_archive_load(err);
    if (r < 0)
        return sbx_error_wrap(err, "capturing '%s'", dir);

    sbx_layer_writer *w = NULL;
    r = sbx_store_layer_begin(&w, s, NULL, err);
    if (r < 0)
        return sbx_error_wrap(err, "capturing '%s'", dir);
    /* the writer hashes the stream for the diff_id: once is enough */
    r = capture_stream(out, dir, opts, layer_sink, w, false, ctx, err);
    if (r < 0 || !out->changed) {
        sbx_layer_writer_abort(w);
        return r;
    }
    r = sbx_layer_writer_commit(w, out->diff_id, err);
    if (r < 0)
        return sbx_error_wrap(err, "capturing '%s'", dir);
    return 0;
}
