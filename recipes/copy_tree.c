/* What a `copy` step takes from the build context, as a tree.
 *
 * Trust: the context is the user's, but a recipe may name any path.  The
 * source is resolved with realpath (so ".." and symlinks are followed) and
 * refused unless it lands inside the context.  Below the source nothing is
 * followed: symlinks are entries (their target text is what is copied and
 * hashed), and only regular files, directories and symlinks are accepted.
 * The walk reads from descriptors, never through paths: the source is
 * opened beneath the context through no symlink, and every entry is
 * stat'ed and opened relative to its parent's descriptor (O_NOFOLLOW), so a
 * directory swapped for a symlink while the walk runs is an error, never a
 * way out of the context.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recipe_internal.h"

void rcp_copy_tree_free(rcp_copy_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n_children; i++)
        rcp_copy_tree_free(n->children[i]);
    free(n->children);
    free(n->name);
    free(n->relpath);
    free(n->path);
    free(n->link_target);
    free(n);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct walk {
    const rcp_ignore *ig;
    size_t ctx_len; /* strlen(context) + 1: strip to get the context-relative path */
} walk;

static char *join(const char *a, const char *b)
{
    if (!*a)
        return strdup(b);
    return sbx__strdup_printf("%s/%s", a, b);
}

/* dirfd/name is what n was stat'ed as (for symlinks: read from there). */
static int node_from_stat(rcp_copy_node *n, const struct stat *st, int dirfd, const char *name,
                          sbx_error *err)
{
    n->dev = (uint64_t)st->st_dev;
    n->ino = (uint64_t)st->st_ino;
    n->size = (uint64_t)st->st_size;
    n->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    n->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
    n->type = st->st_mode & S_IFMT;
    n->executable = n->type == S_IFREG && (st->st_mode & S_IXUSR);
    if (n->type == S_IFLNK) {
        size_t cap = (size_t)st->st_size + 1;
        if (cap < 64 || cap > 65536)
            cap = 4096;
        n->link_target = malloc(cap);
        if (!n->link_target)
            return sbx_error_set(err, SBX_ENOMEM, "allocate link target");
        ssize_t len = readlinkat(dirfd, name, n->link_target, cap - 1);
        if (len < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "read symlink '%s'", n->path);
        n->link_target[len] = '\0';
    } else if (n->type != S_IFREG && n->type != S_IFDIR) {
        return sbx_error_set(err, SBX_EUNSUPPORTED,
                             "copy '%s': expected a regular file, directory or symlink "
                             "(exclude it in .sbxignore)",
                             n->path);
    }
    return 0;
}

static int build_dir(rcp_copy_node *dir, int dfd, const walk *w, sbx_error *err);

/* The directory dirfd/name, opened through no symlink, checked to be what
 * st describes; -1 with err set when it changed. */
static int open_subdir(int dirfd, const char *name, const struct stat *st, const char *path,
                       sbx_error *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat now;
    if (fd >= 0 && fstat(fd, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    sbx_error_set(err, SBX_EINVAL, "copy: '%s' changed while the context was read (%s)", path,
                  fd >= 0 || e == ELOOP || e == ENOTDIR ? "replaced" : strerror(e));
    return -1;
}

/* Returns 1 when the child was added, 0 when it was left out. */
static int add_child(rcp_copy_node *dir, int dfd, const char *name, const walk *w,
                     sbx_error *err)
{
    rcp_copy_node *c = calloc(1, sizeof *c);
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "allocate copy entry");
    c->name = strdup(name);
    c->relpath = join(dir->relpath, name);
    c->path = sbx__strdup_printf("%s/%s", dir->path, name);
    if (!c->name || !c->relpath || !c->path) {
        rcp_copy_tree_free(c);
        return sbx_error_set(err, SBX_ENOMEM, "allocate copy entry");
    }
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        int e = errno;
        rcp_copy_tree_free(c);
        if (e == ENOENT) /* removed while we walked: it is not there */
            return 0;
        return sbx_error_sys(err, SBX_EIO, e, "stat '%s'", c->path);
    }
    const char *ctxrel = c->path + w->ctx_len;
    bool excluded = rcp_ignore_match(w->ig, ctxrel);
    bool is_dir = S_ISDIR(st.st_mode);
    if (excluded && !(is_dir && rcp_ignore_has_negations(w->ig))) {
        rcp_copy_tree_free(c);
        return 0;
    }
    int cfd = -1;
    if (node_from_stat(c, &st, dfd, name, err) < 0 ||
        (is_dir && ((cfd = open_subdir(dfd, name, &st, c->path, err)) < 0 ||
                    build_dir(c, cfd, w, err) < 0))) {
        if (cfd >= 0)
            close(cfd);
        rcp_copy_tree_free(c);
        return err->code;
    }
    if (cfd >= 0)
        close(cfd);
    if (excluded && c->n_children == 0) { /* walked only for re-included entries */
        rcp_copy_tree_free(c);
        return 0;
    }
    dir->children[dir->n_children++] = c;
    return 1;
}

static int build_dir(rcp_copy_node *dir, int dfd, const walk *w, sbx_error *err)
{
    int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        if (lfd >= 0)
            close(lfd);
        return sbx_error_sys(err, SBX_EIO, errno, "open directory '%s'", dir->path);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = sbx_error_set(err, SBX_ENOMEM, "allocate directory listing");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = sbx_error_set(err, SBX_ENOMEM, "allocate directory listing");
            break;
        }
        n++;
        errno = 0;
    }
    if (rc == 0 && errno)
        rc = sbx_error_sys(err, SBX_EIO, errno, "read directory '%s'", dir->path);
    closedir(d);
    if (rc == 0 && n) {
        qsort(names, n, sizeof *names, cmp_str);
        dir->children = calloc(n, sizeof *dir->children);
        if (!dir->children)
            rc = sbx_error_set(err, SBX_ENOMEM, "allocate directory listing");
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (add_child(dir, dfd, names[i], w, err) < 0)
            rc = err->code;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static bool inside(const char *path, const char *ctx)
{
    size_t n = strlen(ctx);
    if (strncmp(path, ctx, n) != 0)
        return false;
    return path[n] == '\0' || path[n] == '/' || (n == 1 && ctx[0] == '/');
}

int rcp_copy_tree_build(rcp_copy_node **out, const char *context_dir, const char *src,
                        sbx_error *err)
{
    *out = NULL;
    if (rcp_rv_rel_path(src, "copy src", err) < 0)
        return err->code;
    _cleanup_free_ char *ctx = realpath(context_dir, NULL);
    if (!ctx)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "open build context '%s'", context_dir);
    _cleanup_free_ char *clean = rcp_path_clean(src, false);
    _cleanup_free_ char *full = clean ? sbx__strdup_printf("%s/%s", ctx, clean) : NULL;
    if (!full)
        return sbx_error_set(err, SBX_ENOMEM, "allocate path");
    _cleanup_free_ char *real = realpath(full, NULL);
    if (!real) {
        int e = errno;
        return sbx_error_sys(err, e == ENOENT ? SBX_ENOTFOUND : SBX_EIO, e,
                             "copy '%s': expected a path in the build context '%s'", src, ctx);
    }
    if (!inside(real, ctx))
        return sbx_error_set(err, SBX_EINVAL,
                             "copy '%s': refusing a source outside the build context '%s' "
                             "(it resolves to '%s')",
                             src, ctx, real);
    rcp_ignore *ig = NULL;
    if (rcp_ignore_load(&ig, ctx, err) < 0)
        return err->code;
    walk w = {.ig = ig, .ctx_len = strlen(ctx) + (strcmp(ctx, "/") ? 1 : 0)};
    int rc = 0, src_fd = -1;
    rcp_copy_node *root = calloc(1, sizeof *root);
    if (!root || !(root->name = strdup("")) || !(root->relpath = strdup("")) ||
        !(root->path = strdup(real))) {
        rc = sbx_error_set(err, SBX_ENOMEM, "allocate copy entry");
        goto out;
    }
    struct stat st;
    bool is_root = !strcmp(real, ctx);
    bool excluded = !is_root && rcp_ignore_match(ig, real + w.ctx_len);
    /* realpath's answer, opened beneath the context through no symlink: a
     * component swapped since is an error, not a way out */
    int ctx_fd = open(ctx, O_PATH | O_DIRECTORY | O_CLOEXEC);
    src_fd = ctx_fd < 0 ? -1 : sbx__open_beneath(ctx_fd, is_root ? "" : real + w.ctx_len, O_PATH);
    int e = errno;
    if (ctx_fd >= 0)
        close(ctx_fd);
    if (src_fd < 0 || fstat(src_fd, &st) < 0) {
        rc = e == ELOOP || e == EXDEV
                 ? sbx_error_set(err, SBX_EINVAL, "copy '%s': the source changed while it was "
                                 "read (a symlink on its way)", src)
                 : sbx_error_sys(err, SBX_EIO, e, "open '%s'", real);
        goto out;
    }
    if (S_ISLNK(st.st_mode)) { /* realpath's answer has no symlink: it was just swapped */
        rc = sbx_error_set(err, SBX_EINVAL, "copy '%s': the source changed while it was read "
                           "(now a symlink)", src);
        goto out;
    }
    if (excluded && !S_ISDIR(st.st_mode)) {
        rc = sbx_error_set(err, SBX_ENOTFOUND, "copy '%s': the source is excluded by .sbxignore",
                           src);
        goto out;
    }
    if (node_from_stat(root, &st, src_fd, "", err) < 0 ||
        (S_ISDIR(st.st_mode) && build_dir(root, src_fd, &w, err) < 0)) {
        rc = err->code;
        goto out;
    }
    if (excluded && root->n_children == 0) {
        rc = sbx_error_set(err, SBX_ENOTFOUND, "copy '%s': the source is excluded by .sbxignore",
                           src);
        goto out;
    }
    *out = SBX_STEAL(root);
out:
    if (src_fd >= 0)
        close(src_fd);
    rcp_copy_tree_free(root);
    rcp_ignore_free(ig);
    return rc;
}

static int visit(const rcp_copy_node *n, sbx_copy_visit_fn fn, void *ud, sbx_error *err)
{
    sbx_copy_entry e = {
        .relpath = n->relpath,
        .path = n->path,
        .type = n->type,
        .executable = n->executable,
        .link_target = n->link_target,
        .size = n->type == S_IFREG ? n->size : 0,
    };
    int rc = fn(&e, ud, err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n->n_children; i++)
        if ((rc = visit(n->children[i], fn, ud, err)) < 0)
            return rc;
    return 0;
}

int sbx_recipe_copy_walk(const char *context_dir, const char *src, sbx_copy_visit_fn fn,
                         void *ud, sbx_error *err)
{
    rcp_copy_node *root = NULL;
    if (rcp_copy_tree_build(&root, context_dir, src, err) < 0)
        return err->code;
    int rc = visit(root, fn, ud, err);
    rcp_copy_tree_free(root);
    return rc;
}
