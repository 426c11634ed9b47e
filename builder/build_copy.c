/* copy: from the build context into the image, as one layer made directly
 * from a staged tree (no sandbox).  Owner and mode are applied while
 * staging, so there is never a second layer for a chown.
 *
 * What the layer holds is a function of the recipe's copy digest only:
 * regular files get `mode` when given, else 0755 or 0644 by their
 * executable bit; directories 0755; symlinks as they are; every entry the
 * owner (root by default).  The parents of the destination are emitted with
 * the metadata they have in the image (found through the lower layers,
 * following the image's symlinks, e.g. /bin -> usr/bin), so a copy never
 * changes a parent's mode or replaces a symlink with a directory.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "build_copy.h"
#include "sandbox.h"
#include "sbx_common.h"

/* snprintf into a path buffer; truncation is refused by callers through
 * the return value (vsnprintf keeps the compiler's truncation checks quiet
 * where lengths are already bounded by PATH_MAX). */
static int __attribute__((format(printf, 3, 4))) pfmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static bool is_opaque(int dirfd)
{
    char v = 0;
    return (fgetxattr(dirfd, "trusted.overlay.opaque", &v, 1) == 1 ||
            fgetxattr(dirfd, "user.overlay.opaque", &v, 1) == 1) &&
           v == 'y';
}

/* Look relpath ("a/b", no leading '/') up in one layer, component by
 * component from the layer's root fd, never following a symlink.  1: found
 * (*st, and for a symlink its target in link); 0: absent here, look below;
 * -1: absent in the merged view (a whiteout, a non-directory on the way, or
 * an opaque directory above it hides the layers below). */
static int layer_lookup(const char *layer, const char *relpath, struct stat *st, char *link,
                        size_t linklen)
{
    char work[PATH_MAX];
    pfmt(work, sizeof work, "%s", relpath);
    int fd = open(layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int r = 0;
    bool opaque = false;
    char *save = NULL;
    for (char *c = strtok_r(work, "/", &save); c;) {
        char *next = strtok_r(NULL, "/", &save);
        struct stat cs;
        if (fstatat(fd, c, &cs, AT_SYMLINK_NOFOLLOW) < 0)
            break; /* not in this layer */
        if (S_ISCHR(cs.st_mode) && cs.st_rdev == makedev(0, 0)) {
            r = -1; /* whited out */
            break;
        }
        if (!next) {
            *st = cs;
            ssize_t n = link && S_ISLNK(cs.st_mode) ? readlinkat(fd, c, link, linklen - 1) : -1;
            if (link)
                link[n > 0 ? n : 0] = '\0';
            r = 1;
            break;
        }
        if (!S_ISDIR(cs.st_mode)) {
            r = -1; /* a non-directory hides the path below it */
            break;
        }
        int sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = sub;
        if (fd < 0)
            break;
        opaque |= is_opaque(fd);
        c = next;
    }
    if (fd >= 0)
        close(fd);
    return r == 0 && opaque ? -1 : r;
}

/* relpath in the merged view of the lowers (top-most first), as overlayfs
 * shows it, each layer read by itself (a lower's "a -> /etc" is never the
 * host's /etc).  0 and the layer's index when found, -1 when absent. */
static int lower_lookup(const char *const *lowers, size_t n, const char *relpath,
                        struct stat *st, char *link, size_t linklen, size_t *layer)
{
    for (size_t i = 0; i < n; i++) {
        int r = layer_lookup(lowers[i], relpath, st, link, linklen);
        if (r < 0)
            return -1;
        if (r > 0) {
            if (layer)
                *layer = i;
            return 0;
        }
    }
    return -1;
}

/* Resolve the absolute path `in` inside the image, following symlinks found
 * in the lowers (at most 40), into out as a relative path without a leading
 * '/' ("" for the root). */
static int resolve_in_image(char *out, size_t outlen, const char *in,
                            const char *const *lowers, size_t n, int depth, sbx_error *err)
{
    if (depth > 40)
        return sbx_error_set(err, SBX_EINVAL, "resolve '%s' in the image: too many symlinks", in);
    char work[PATH_MAX];
    pfmt(work, sizeof work, "%s", in);
    out[0] = '\0';
    char *save = NULL;
    for (char *c = strtok_r(work, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(out, '/');
            if (slash)
                *slash = '\0';
            else
                out[0] = '\0';
            continue;
        }
        char cand[PATH_MAX], target[PATH_MAX];
        if (pfmt(cand, sizeof cand, "%s%s%s", out, out[0] ? "/" : "", c) < 0)
            return sbx_error_set(err, SBX_ELIMIT, "resolve '%s' in the image: path too long", in);
        struct stat st;
        if (lower_lookup(lowers, n, cand, &st, target, sizeof target, NULL) == 0 &&
            S_ISLNK(st.st_mode)) {
            const char *rest = save && *save ? save : "";
            char next[PATH_MAX];
            int r = target[0] == '/' ? pfmt(next, sizeof next, "%s/%s", target, rest)
                                     : pfmt(next, sizeof next, "/%s/%s/%s", out, target, rest);
            if (r < 0)
                return sbx_error_set(err, SBX_ELIMIT, "resolve '%s' in the image: path too long",
                                     in);
            return resolve_in_image(out, outlen, next, lowers, n, depth + 1, err);
        }
        pfmt(out, outlen, "%s", cand);
    }
    return 0;
}

/* Create stage/<rel>'s parents and rel itself as directories carrying the
 * image's metadata (or 0755 root:root when the image has none). */
static int stage_image_dirs(const char *stage, const char *rel, const char *const *lowers,
                            size_t n, sbx_error *err)
{
    char cur[PATH_MAX] = "";
    char work[PATH_MAX];
    pfmt(work, sizeof work, "%s", rel);
    char *save = NULL;
    for (char *c = strtok_r(work, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t l = strlen(cur);
        char path[PATH_MAX];
        if (pfmt(cur + l, sizeof cur - l, "%s%s", l ? "/" : "", c) < 0 ||
            pfmt(path, sizeof path, "%s/%s", stage, cur) < 0)
            return sbx_error_set(err, SBX_ELIMIT, "copy: path '%s' too long", rel);
        struct stat st;
        mode_t mode = 0755;
        uid_t uid = 0;
        gid_t gid = 0;
        if (lower_lookup(lowers, n, cur, &st, NULL, 0, NULL) == 0 && S_ISDIR(st.st_mode)) {
            mode = st.st_mode & 07777;
            uid = st.st_uid;
            gid = st.st_gid;
        }
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return sbx_error_sys(err, SBX_EIO, errno, "create '%s'", path);
        if (lchown(path, uid, gid) < 0 || chmod(path, mode) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "set owner and mode of '%s'", path);
    }
    return 0;
}

typedef struct copy_ctx {
    const char *stage;
    char target[PATH_MAX]; /* relative to the image root */
    uid_t uid;
    gid_t gid;
    int mode;
    const char *const *lowers;
    size_t nlowers;
    uint64_t files, bytes;
    const sbx_ctx *ctx;
    int ctx_fd;          /* the build context, the root every source is opened beneath */
    const char *ctx_real; /* its canonical path, the prefix of every entry's path */
} copy_ctx;

/* Open a source file the walk listed, beneath the context and through no
 * symlink: a context directory swapped for a symlink to the host after the
 * walk (or during it) cannot make a host file the layer's content. */
static int open_source(const copy_ctx *c, const char *path, sbx_error *err)
{
    size_t n = strlen(c->ctx_real);
    if (strncmp(path, c->ctx_real, n) != 0 || path[n] != '/')
        return sbx_error_set(err, SBX_EINVAL, "copy: '%s' is outside the build context", path);
    int fd = sbx__open_beneath(c->ctx_fd, path + n + 1, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == EXDEV)
            return sbx_error_set(err, SBX_EINVAL, "copy: '%s' no longer lies in the build "
                                 "context (a directory on its way was replaced by a symlink "
                                 "while the build ran)", path);
        return sbx_error_sys(err, e == ENOENT ? SBX_ENOTFOUND : SBX_EIO, e, "open '%s'", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sbx_error_set(err, SBX_EINVAL, "copy: '%s' is no longer a regular file", path);
    }
    return fd;
}

static int copy_file(const copy_ctx *c, const char *from, const char *to, mode_t mode,
                     sbx_error *err)
{
    _cleanup_close_ int in = open_source(c, from, err);
    if (in < 0)
        return in;
    uid_t uid = c->uid;
    gid_t gid = c->gid;
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                                   0600);
    if (out < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "create '%s'", to);
    struct stat st;
    int sr = sbx__is_sparse(in) && fstat(in, &st) == 0
                 ? sbx__copy_sparse(in, out, (uint64_t)st.st_size, err) /* holes stay holes */
                 : SBX_EUNSUPPORTED;
    if (sr < 0 && sr != SBX_EUNSUPPORTED)
        return sbx_error_wrap(err, "copy '%s'", from);
    sbx_error_clear(err);
    char buf[65536];
    for (; sr != 0;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "read '%s'", from);
        if (r == 0)
            break;
        if (sbx__write_all(out, buf, (size_t)r, err) < 0)
            return sbx_error_wrap(err, "write '%s'", to);
    }
    if (fchown(out, uid, gid) < 0 || fchmod(out, mode) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "set owner and mode of '%s'", to);
    return 0;
}

static int visit(const sbx_copy_entry *e, void *ud, sbx_error *err)
{
    copy_ctx *c = ud;
    if (sbx__check_cancel(c->ctx, err) < 0)
        return sbx_error_wrap(err, "copy");
    char to[PATH_MAX];
    if (e->relpath[0] == '\0') {
        /* src itself: the target path computed by bld_copy_stage */
        if (pfmt(to, sizeof to, "%s/%s", c->stage, c->target) < 0)
            return sbx_error_set(err, SBX_ELIMIT, "copy: target '%s' too long", c->target);
    } else {
        if (pfmt(to, sizeof to, "%s/%s/%s", c->stage, c->target, e->relpath) < 0)
            return sbx_error_set(err, SBX_ELIMIT, "copy '%s': path too long", e->relpath);
    }
    if (e->type == S_IFDIR) {
        if (mkdir(to, 0700) < 0 && errno != EEXIST)
            return sbx_error_sys(err, SBX_EIO, errno, "create '%s'", to);
        if (lchown(to, c->uid, c->gid) < 0 || chmod(to, 0755) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "set owner and mode of '%s'", to);
        return 0;
    }
    if (e->type == S_IFLNK) {
        if (symlink(e->link_target, to) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "create link '%s'", to);
        if (lchown(to, c->uid, c->gid) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "set owner of '%s'", to);
        return 0;
    }
    mode_t mode = c->mode >= 0 ? (mode_t)c->mode : e->executable ? 0755 : 0644;
    c->files++;
    c->bytes += e->size;
    return copy_file(c, e->path, to, mode, err);
}

/* Which lower holds the image's /etc/passwd (as the merged view shows it). */
static const char *passwd_root(const char *const *lowers, size_t n)
{
    struct stat st;
    size_t i;
    if (lower_lookup(lowers, n, "etc/passwd", &st, NULL, 0, &i) == 0 && S_ISREG(st.st_mode))
        return lowers[i];
    return NULL;
}

int bld_copy_stage(const char *stage, const char *context_dir, const sbx_step *st,
                   const char *const *lowers, size_t nlowers, const sbx_ctx *ctx,
                   sbx_error *err)
{
    copy_ctx c = {.stage = stage, .mode = st->u.copy.mode, .lowers = lowers,
                  .nlowers = nlowers, .ctx = ctx, .ctx_fd = -1};
    _cleanup_free_ char *ctx_real = realpath(context_dir, NULL);
    if (!ctx_real)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "copy: open build context '%s'", context_dir);
    _cleanup_close_ int ctx_fd = open(ctx_real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ctx_fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "copy: open build context '%s'", ctx_real);
    c.ctx_fd = ctx_fd;
    c.ctx_real = ctx_real;
    if (st->u.copy.owner) {
        bld_user_ids ids;
        const char *root = passwd_root(lowers, nlowers);
        if (bld_user_resolve(&ids, root ? root : stage, st->u.copy.owner, err) < 0)
            return sbx_error_wrap(err, "copy: resolve owner '%s'", st->u.copy.owner);
        c.uid = ids.uid;
        c.gid = ids.gid;
    }
    /* Is src a directory?  The walk's first entry says; look before staging. */
    char src[PATH_MAX];
    pfmt(src, sizeof src, "%s/%s", context_dir, st->u.copy.src);
    struct stat sst;
    int src_dir = stat(src, &sst) == 0 && S_ISDIR(sst.st_mode);

    const char *dest = st->u.copy.dest;
    size_t dl = strlen(dest);
    char full[PATH_MAX];
    const char *base = strrchr(st->u.copy.src, '/');
    base = base ? base + 1 : st->u.copy.src;
    if ((!src_dir && dl && dest[dl - 1] == '/') ? pfmt(full, sizeof full, "%s%s", dest, base) < 0
                                                : pfmt(full, sizeof full, "%s", dest) < 0)
        return sbx_error_set(err, SBX_ELIMIT, "copy: destination '%s' too long", dest);
    /* Parent of the target resolved in the image; the target's own name kept. */
    char *slash = strrchr(full, '/');
    const char *name = slash ? slash + 1 : full;
    char parent_in[PATH_MAX];
    pfmt(parent_in, sizeof parent_in, "%.*s", slash ? (int)(slash - full) : 0, full);
    while (*name == '\0' && slash && slash != full) { /* "/a/b/" -> name "b" */
        *slash = '\0';
        slash = strrchr(full, '/');
        name = slash ? slash + 1 : full;
        pfmt(parent_in, sizeof parent_in, "%.*s", slash ? (int)(slash - full) : 0, full);
    }
    char parent[PATH_MAX];
    if (resolve_in_image(parent, sizeof parent, parent_in[0] ? parent_in : "/", lowers, nlowers,
                         0, err) < 0)
        return err->code;
    if (stage_image_dirs(stage, parent, lowers, nlowers, err) < 0)
        return err->code;
    int r = *name == '\0' /* dest is "/": copy into the root */
                ? pfmt(c.target, sizeof c.target, "%s", parent[0] ? parent : ".")
                : pfmt(c.target, sizeof c.target, "%s%s%s", parent, parent[0] ? "/" : "", name);
    if (r < 0)
        return sbx_error_set(err, SBX_ELIMIT, "copy: destination '%s' too long", dest);
    if (sbx_recipe_copy_walk(context_dir, st->u.copy.src, visit, &c, err) < 0)
        return err->code;
    sbx__log(ctx, SBX_LOG_DEBUG, "copy: staged %llu files, %llu bytes", (unsigned long long)c.files,
            (unsigned long long)c.bytes);
    return 0;
}
