/* Merge overlay-form layer directories into one tree (sbx_rootfs_merge).
 *
 * Layers are walked top-most first.  An entry is created in the destination
 * unless something hides it, exactly as overlayfs would resolve the path:
 *  - the same path already placed by an upper layer wins (two directories
 *    merge; anything else stops there);
 *  - a whiteout (0/0 char device) at P hides P in every lower layer;
 *  - an opaque directory (trusted.overlay.opaque=y) at P, and a non-directory
 *    at P under an upper directory at P, hide everything of P below.
 * Hidden paths go into a "stop" set that lower layers consult; the first
 * layer never needs it, so the common case is one create call per entry.
 *
 * Safety: the destination starts empty and only this code writes to it;
 * every call is relative to a directory fd opened with O_NOFOLLOW and takes
 * a single name from readdir, so nothing can be written through a symlink
 * or outside the destination.  Source layer dirs are opened the same way.
 *
 * Directory mtimes are set in a final pass, since adding entries from lower
 * layers changes them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "sbx_common.h"
#include "sbx/rootfs.h"

#define PATH_BUF 4096
#define XATTR_LIST_MAX_ 65536
#define XATTR_VAL_MAX_ 65536

/* ---- a small string map (stop set, hardlink map) ------------------------- */

typedef struct smap_node {
    struct smap_node *next;
    uint64_t hash;
    char *val; /* NULL in a set */
    char key[];
} smap_node;

typedef struct smap {
    smap_node **b;
    size_t nb, n;
} smap;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static smap_node *smap_find(const smap *m, const char *key)
{
    if (!m->n)
        return NULL;
    uint64_t h = fnv1a(key);
    for (smap_node *e = m->b[h % m->nb]; e; e = e->next)
        if (e->hash == h && !strcmp(e->key, key))
            return e;
    return NULL;
}

static int smap_put(smap *m, const char *key, const char *val)
{
    if (smap_find(m, key))
        return 0;
    if (m->n >= m->nb) {
        size_t nb = m->nb ? m->nb * 2 : 256;
        smap_node **b = calloc(nb, sizeof *b);
        if (!b)
            return -1;
        for (size_t i = 0; i < m->nb; i++)
            for (smap_node *e = m->b[i], *nx; e; e = nx) {
                nx = e->next;
                e->next = b[e->hash % nb];
                b[e->hash % nb] = e;
            }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    size_t kl = strlen(key) + 1;
    smap_node *e = malloc(sizeof *e + kl);
    if (!e)
        return -1;
    memcpy(e->key, key, kl);
    e->hash = fnv1a(key);
    e->val = NULL;
    if (val && !(e->val = strdup(val))) {
        free(e);
        return -1;
    }
    e->next = m->b[e->hash % m->nb];
    m->b[e->hash % m->nb] = e;
    m->n++;
    return 0;
}

static void smap_free(smap *m)
{
    for (size_t i = 0; i < m->nb; i++)
        for (smap_node *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->val);
            free(e);
        }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---- merge state --------------------------------------------------------- */

typedef struct dir_time {
    char *path; /* relative to dest; "" for the root */
    struct timespec ts[2];
} dir_time;

typedef struct merge {
    bool link;
    bool try_clone;  /* FICLONE not refused yet */
    bool try_cfr;    /* copy_file_range not refused yet */
    int dest_fd;
    smap stops;      /* paths hidden from lower layers */
    smap hardlinks;  /* "dev:ino" of a copied multi-link source -> dest path */
    dir_time *dirs;
    size_t ndirs, capdirs;
    sbx_rootfs_stats st;
    char *buf;       /* copy buffer for the read/write fallback */
    sbx_ctx *ctx;
} merge;

static bool overlay_private(const char *name)
{
    /* also the unpack cache's boot mark (rootfs/layer_unpack.c) on a layer dir's root */
    return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13) ||
           !strncmp(name, "trusted.sbx.", 12) || !strncmp(name, "user.sbx.", 9);
}

/* Copy xattrs (except overlay-private ones) from src to dst: by fd when both
 * are given, else by the /proc/self/fd/<dirfd>/<name> paths (symlinks,
 * devices), without following the final symlink. */
static int copy_xattrs(int sfd, int dfd, const char *spath, const char *dpath, const char *rel,
                       sbx_error *err)
{
    char list[XATTR_LIST_MAX_];
    ssize_t n = sfd >= 0 ? flistxattr(sfd, list, sizeof list) : llistxattr(spath, list, sizeof list);
    if (n < 0) {
        if (errno == ENOTSUP || errno == EOPNOTSUPP)
            return 0;
        return sbx_error_sys(err, SBX_EIO, errno, "merging: listing xattrs of '%s'", rel);
    }
    _cleanup_free_ char *val = NULL;
    for (char *k = list; k < list + n; k += strlen(k) + 1) {
        if (overlay_private(k))
            continue;
        if (!val && !(val = malloc(XATTR_VAL_MAX_)))
            return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
        ssize_t vl = sfd >= 0 ? fgetxattr(sfd, k, val, XATTR_VAL_MAX_)
                              : lgetxattr(spath, k, val, XATTR_VAL_MAX_);
        if (vl < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "merging: reading xattr '%s' of '%s'", k,
                                 rel);
        int r = dfd >= 0 ? fsetxattr(dfd, k, val, (size_t)vl, 0)
                         : lsetxattr(dpath, k, val, (size_t)vl, 0);
        if (r < 0)
            return sbx_error_sys(err, sbx__errno_code(errno), errno,
                                 "merging: setting xattr '%s' on '%s'", k, rel);
    }
    return 0;
}

static int record_dir_time(merge *m, const char *rel, const struct stat *st, sbx_error *err)
{
    if (m->ndirs == m->capdirs) {
        size_t cap = m->capdirs ? m->capdirs * 2 : 256;
        dir_time *d = realloc(m->dirs, cap * sizeof *d);
        if (!d)
            return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
        m->dirs = d;
        m->capdirs = cap;
    }
    dir_time *d = &m->dirs[m->ndirs];
    if (!(d->path = strdup(rel)))
        return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
    d->ts[0] = st->st_atim;
    d->ts[1] = st->st_mtim;
    m->ndirs++;
    return 0;
}

/* Owner, mode and xattrs of a dir or regular file, on open fds.  chown
 * before chmod (chown clears set-id bits) and before xattrs (it clears
 * security.capability). */
static int apply_meta_fd(int sfd, int dfd, const struct stat *st, const char *rel, sbx_error *err)
{
    if (fchown(dfd, st->st_uid, st->st_gid) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: setting owner %u:%u of '%s'",
                             (unsigned)st->st_uid, (unsigned)st->st_gid, rel);
    if (fchmod(dfd, st->st_mode & 07777) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: setting mode of '%s'", rel);
    return copy_xattrs(sfd, dfd, NULL, NULL, rel, err);
}

static int copy_data(merge *m, int sfd, int dfd, const char *rel, sbx_error *err)
{
    if (m->try_clone) {
        if (ioctl(dfd, FICLONE, sfd) == 0)
            return 0;
        if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == EINVAL ||
            errno == ENOSYS || errno == EPERM)
            m->try_clone = false;
    }
    struct stat st;
    if (sbx__is_sparse(sfd) && fstat(sfd, &st) == 0) { /* holes stay holes */
        int r = sbx__copy_sparse(sfd, dfd, (uint64_t)st.st_size, err);
        if (r != SBX_EUNSUPPORTED)
            return r < 0 ? sbx_error_wrap(err, "merging: copying '%s'", rel) : 0;
        sbx_error_clear(err);
    }
    while (m->try_cfr) {
        ssize_t n = copy_file_range(sfd, NULL, dfd, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL) {
            /* nothing written yet when it is refused outright */
            if (lseek(sfd, 0, SEEK_SET) < 0 || lseek(dfd, 0, SEEK_SET) < 0 || ftruncate(dfd, 0) < 0)
                return sbx_error_sys(err, SBX_EIO, errno, "merging: copying '%s'", rel);
            m->try_cfr = false;
            break;
        }
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "merging: copying '%s'", rel);
    }
    if (!m->buf && !(m->buf = malloc(1 << 20)))
        return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
    for (;;) {
        ssize_t n = read(sfd, m->buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "merging: reading '%s'", rel);
        if (n == 0)
            return 0;
        int r = sbx__write_all(dfd, m->buf, (size_t)n, err);
        if (r < 0)
            return sbx_error_wrap(err, "merging: copying '%s'", rel);
    }
}

/* Copy a regular file; EEXIST is returned as -EEXIST without an error set. */
static int copy_file(merge *m, int sdir, int ddir, const char *name, const struct stat *st,
                     const char *rel, sbx_error *err)
{
    _cleanup_close_ int sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: opening '%s'", rel);
    _cleanup_close_ int dfd =
        openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (dfd < 0) {
        if (errno == EEXIST)
            return -EEXIST;
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "merging: creating '%s'", rel);
    }
    int r = copy_data(m, sfd, dfd, rel, err);
    if (r == 0)
        r = apply_meta_fd(sfd, dfd, st, rel, err);
    if (r == 0 && futimens(dfd, (struct timespec[2]){st->st_atim, st->st_mtim}) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "merging: setting times of '%s'", rel);
    if (r < 0)
        unlinkat(ddir, name, 0);
    else
        m->st.copied++;
    return r;
}

/* Symlinks, devices, fifos created anew (copy mode, or a refused link). */
static int make_special(int sdir, int ddir, const char *name, const struct stat *st,
                        const char *rel, sbx_error *err)
{
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_BUF];
        ssize_t n = readlinkat(sdir, name, target, sizeof target - 1);
        if (n < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "merging: reading link '%s'", rel);
        target[n] = '\0';
        if (symlinkat(target, ddir, name) < 0)
            return errno == EEXIST ? -EEXIST
                                   : sbx_error_sys(err, sbx__errno_code(errno), errno,
                                                   "merging: creating link '%s'", rel);
    } else if (mknodat(ddir, name, st->st_mode & (S_IFMT | 0600), st->st_rdev) < 0) {
        return errno == EEXIST ? -EEXIST
                               : sbx_error_sys(err, sbx__errno_code(errno), errno,
                                               "merging: creating node '%s'", rel);
    }
    int r = 0;
    if (fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "merging: setting owner of '%s'", rel);
    /* the node is ours in a dir only we write: no symlink can replace it */
    if (r == 0 && !S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "merging: setting mode of '%s'", rel);
    if (r == 0) {
        char sp[64 + NAME_MAX], dp[64 + NAME_MAX];
        snprintf(sp, sizeof sp, "/proc/self/fd/%d/%s", sdir, name);
        snprintf(dp, sizeof dp, "/proc/self/fd/%d/%s", ddir, name);
        r = copy_xattrs(-1, -1, sp, dp, rel, err);
    }
    if (r == 0 && utimensat(ddir, name, (struct timespec[2]){st->st_atim, st->st_mtim},
                            AT_SYMLINK_NOFOLLOW) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "merging: setting times of '%s'", rel);
    if (r < 0)
        unlinkat(ddir, name, 0);
    return r;
}

/* Place one non-directory entry.  Returns 0, -EEXIST (the path is taken:
 * no error set), or an SBX_E* code. */
static int place(merge *m, int sdir, int ddir, const char *name, const struct stat *st,
                 const char *rel, sbx_error *err)
{
    if (m->link) {
        if (linkat(sdir, name, ddir, name, 0) == 0) {
            m->st.linked++;
            return 0;
        }
        if (errno == EEXIST)
            return -EEXIST;
        if (errno != EXDEV && errno != EMLINK && errno != EPERM)
            return sbx_error_sys(err, sbx__errno_code(errno), errno, "merging: linking '%s'", rel);
        /* another filesystem, link count at its limit, or protected_hardlinks: copy */
    }
    if (!S_ISREG(st->st_mode))
        return make_special(sdir, ddir, name, st, rel, err);
    char key[64];
    smap_node *hl = NULL;
    if (st->st_nlink > 1) {
        snprintf(key, sizeof key, "%llx:%llx", (unsigned long long)st->st_dev,
                 (unsigned long long)st->st_ino);
        hl = smap_find(&m->hardlinks, key);
    }
    if (hl) {
        if (linkat(m->dest_fd, hl->val, ddir, name, 0) == 0)
            return 0;
        if (errno == EEXIST)
            return -EEXIST;
        if (errno != EMLINK)
            return sbx_error_sys(err, sbx__errno_code(errno), errno,
                                 "merging: linking '%s' to '%s'", rel, hl->val);
    }
    int r = copy_file(m, sdir, ddir, name, st, rel, err);
    if (r == 0 && st->st_nlink > 1 && !hl && smap_put(&m->hardlinks, key, rel) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
    return r;
}

static int walk(merge *m, int sdir, int ddir, char *rel, size_t rlen, sbx_error *err);

/* A directory entry of a layer at rel (already in the path buffer). */
static int merge_dir(merge *m, int sdir, int ddir, const char *name, const struct stat *st,
                     char *rel, size_t rlen, sbx_error *err)
{
    bool created = mkdirat(ddir, name, 0700) == 0;
    if (!created) {
        if (errno != EEXIST)
            return sbx_error_sys(err, sbx__errno_code(errno), errno, "merging: creating dir '%s'",
                                 rel);
        struct stat dst;
        if (fstatat(ddir, name, &dst, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "merging: checking '%s'", rel);
        if (!S_ISDIR(dst.st_mode))
            return 0; /* an upper non-dir hides this dir and all below it */
    }
    _cleanup_close_ int s2 = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s2 < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: opening layer dir '%s'", rel);
    _cleanup_close_ int d2 = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d2 < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: opening dir '%s'", rel);
    if (created) {
        int r = apply_meta_fd(s2, d2, st, rel, err);
        if (r == 0)
            r = record_dir_time(m, rel, st, err);
        if (r < 0)
            return r;
        m->st.dirs++;
    }
    char v[2];
    bool opaque = fgetxattr(s2, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y';
    int r = walk(m, s2, d2, rel, rlen, err);
    if (r == 0 && opaque && smap_put(&m->stops, rel, NULL) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
    return r;
}

static int entry(merge *m, int sdir, int ddir, const char *name, char *rel, size_t rlen,
                 sbx_error *err)
{
    if (m->stops.n && smap_find(&m->stops, rel))
        return 0;
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: reading '%s'", rel);
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
        if (smap_put(&m->stops, rel, NULL) < 0)
            return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return merge_dir(m, sdir, ddir, name, &st, rel, rlen, err);
    if (S_ISSOCK(st.st_mode))
        return 0;
    int r = place(m, sdir, ddir, name, &st, rel, err);
    if (r == -EEXIST) {
        /* taken by an upper layer; if that is a dir, lower dirs must not merge into it */
        struct stat dst;
        if (fstatat(ddir, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(dst.st_mode) &&
            smap_put(&m->stops, rel, NULL) < 0)
            return sbx_error_set(err, SBX_ENOMEM, "merging: out of memory");
        return 0;
    }
    if (r == 0) {
        m->st.files++;
        if (S_ISREG(st.st_mode))
            m->st.bytes += (uint64_t)st.st_size;
    }
    return r;
}

static int walk(merge *m, int sdir, int ddir, char *rel, size_t rlen, sbx_error *err)
{
    int fd = dup(sdir);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: reading dir '%s'", rel);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return sbx_error_sys(err, SBX_EIO, errno, "merging: reading dir '%s'", rel);
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (errno = 0, de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
            continue;
        if ((r = sbx__check_cancel(m->ctx, err)) < 0) {
            sbx_error_wrap(err, "merging");
            break;
        }
        size_t nl = strlen(n);
        if (rlen + 1 + nl >= PATH_BUF) {
            r = sbx_error_set(err, SBX_ELIMIT, "merging: path '%s/%s' is too long", rel, n);
            break;
        }
        size_t l2 = rlen;
        if (rlen)
            rel[l2++] = '/';
        memcpy(rel + l2, n, nl + 1);
        r = entry(m, sdir, ddir, n, rel, l2 + nl, err);
        rel[rlen] = '\0';
    }
    if (r == 0 && errno)
        r = sbx_error_sys(err, SBX_EIO, errno, "merging: reading dir '%s'", rel);
    closedir(d);
    return r;
}

static int finish_times(merge *m, sbx_error *err)
{
    for (size_t i = 0; i < m->ndirs; i++) {
        const dir_time *d = &m->dirs[i];
        int r = d->path[0] ? utimensat(m->dest_fd, d->path, d->ts, AT_SYMLINK_NOFOLLOW)
                           : futimens(m->dest_fd, d->ts);
        if (r < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "merging: setting times of '%s'",
                                 d->path[0] ? d->path : "/");
    }
    return 0;
}

int sbx_rootfs_merge(const char *dest, const char *const *layers, size_t nlayers, bool link,
                     sbx_rootfs_stats *stats, sbx_ctx *ctx, sbx_error *err)
{
    merge m = {.link = link, .try_clone = true, .try_cfr = true, .dest_fd = -1, .ctx = ctx};
    char rel[PATH_BUF];
    int r = 0;
    m.dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (m.dest_fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "merging: opening '%s'", dest);
    for (size_t i = 0; i < nlayers && r == 0; i++) {
        _cleanup_close_ int sfd = open(layers[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0) {
            r = sbx_error_sys(err, SBX_EIO, errno, "merging: opening layer dir '%s'", layers[i]);
            break;
        }
        if (i == 0) {
            /* the root dir's attributes come from the top-most layer, as in overlayfs */
            struct stat st;
            if (fstat(sfd, &st) < 0)
                r = sbx_error_sys(err, SBX_EIO, errno, "merging: reading '%s'", layers[i]);
            else if ((r = apply_meta_fd(sfd, m.dest_fd, &st, "/", err)) == 0)
                r = record_dir_time(&m, "", &st, err);
            if (r < 0)
                break;
        }
        rel[0] = '\0';
        r = walk(&m, sfd, m.dest_fd, rel, 0, err);
        if (r < 0 && r != SBX_ECANCELED)
            sbx_error_where(err, "%s", layers[i]);
    }
    if (r == 0)
        r = finish_times(&m, err);
    if (stats)
        *stats = m.st;
    for (size_t i = 0; i < m.ndirs; i++)
        free(m.dirs[i].path);
    free(m.dirs);
    free(m.buf);
    smap_free(&m.stops);
    smap_free(&m.hardlinks);
    close(m.dest_fd);
    return r;
}
