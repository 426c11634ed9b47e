/* fsck of the unpacked layer cache (sbx_rootfs_check_unpacked).
 *
 * A `--link` tree shares inodes with the cache, so a write into it changes
 * every later unpack and mount of that layer while the stored layer file,
 * which the store's fsck re-hashes, stays right.  Hardlinks rule out making
 * the shared inodes immutable (link(2) refuses an immutable inode, and so
 * would rm -rf of the user's tree), so the cache is checked instead: each
 * unpacked layer dir is compared with a fresh extraction of its stored
 * layer, checked against the diff_id as it is fed (names, types, modes,
 * owners, sizes, file mtimes, device numbers, symlink targets, xattrs and
 * every file's bytes).  A dir that differs is taken out of the cache and made
 * again on its next use; one that a mount or a running unpack holds is
 * reported and kept. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "rootfs_internal.h"

typedef struct {
    char **v;
    size_t n;
} names;

static void names_free(names *ns)
{
    rfs_free_names(ns->v, ns->n);
    ns->v = NULL;
    ns->n = 0;
}

/* The sorted entries of dirfd (the module's listing); -1 when unreadable. */
static int list_dir(int dirfd, names *out)
{
    sbx_error e = SBX_ERROR_INIT;
    out->v = NULL;
    out->n = 0;
    return rfs_list_dir_fd(&out->v, &out->n, dirfd, ".", &e) < 0 ? -1 : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "name\0value-len value..." of every xattr of dirfd/name, sorted by name,
 * into a malloc'd buffer; NULL when they cannot be read whole. */
static __attribute__((noinline)) char *xattrs_of(int dirfd, const char *name, size_t *len)
{
    char path[64 + 256];
    snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd, name);
    *len = 0;
    ssize_t n = llistxattr(path, NULL, 0);
    if (n <= 0)
        return n == 0 ? calloc(1, 1) : NULL;
    _cleanup_free_ char *list = malloc((size_t)n);
    if (!list || (n = llistxattr(path, list, (size_t)n)) < 0)
        return NULL;
    size_t count = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
        count++;
    _cleanup_free_ const char **keys = calloc(count ? count : 1, sizeof *keys);
    if (!keys)
        return NULL;
    count = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1)
        keys[count++] = list + i;
    qsort(keys, count, sizeof *keys, cmp_str);
    char *out = NULL;
    size_t olen = 0;
    for (size_t i = 0; i < count; i++) {
        ssize_t vl = lgetxattr(path, keys[i], NULL, 0);
        size_t kl = strlen(keys[i]) + 1, need = kl + sizeof vl + (vl > 0 ? (size_t)vl : 0);
        char *no = realloc(out, olen + need);
        if (!no) {
            free(out);
            return NULL;
        }
        out = no;
        memcpy(out + olen, keys[i], kl);
        if (vl > 0 && lgetxattr(path, keys[i], out + olen + kl + sizeof vl, (size_t)vl) != vl)
            vl = -1; /* changed meanwhile: the size alone says so */
        memcpy(out + olen + kl, &vl, sizeof vl);
        olen += kl + sizeof vl + (vl > 0 ? (size_t)vl : 0);
    }
    *len = olen;
    return out ? out : calloc(1, 1);
}

static bool same_bytes(int a, int b)
{
    char ba[65536], bb[65536];
    for (;;) {
        ssize_t na = sbx__read_full(a, ba, sizeof ba);
        ssize_t nb = sbx__read_full(b, bb, sizeof bb);
        if (na < 0 || nb < 0 || na != nb || memcmp(ba, bb, (size_t)na) != 0)
            return false;
        if (na == 0)
            return true;
    }
}

/* Out of cmp_entry's frame, which recursion stacks once per level of a
 * (hostile, deep) tree. */
static __attribute__((noinline)) bool same_link(int a, int b, const char *name)
{
    char ta[4096], tb[4096];
    ssize_t la = readlinkat(a, name, ta, sizeof ta), lb = readlinkat(b, name, tb, sizeof tb);
    return la >= 0 && la == lb && memcmp(ta, tb, (size_t)la) == 0;
}

static __attribute__((noinline)) bool same_file(int a, int b, const char *name)
{
    int fa = openat(a, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int fb = openat(b, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    bool same = fa >= 0 && fb >= 0 && same_bytes(fa, fb);
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    return same;
}

static int differs(char *why, size_t len, const char *rel, const char *what)
{
    snprintf(why, len, "/%s: %s", rel, what);
    return 1;
}

/* 0 when the entries at a/name (the cache) and b/name (fresh) are alike
 * (recursively); 1 with why set when not; -1 out of memory; -2 too deep
 * for the open file limit. */
static int cmp_entry(int a, int b, const char *name, const char *rel, bool root, char *why,
                     size_t wlen)
{
    struct stat sa, sb;
    if (fstatat(a, name, &sa, AT_SYMLINK_NOFOLLOW) < 0)
        return differs(why, wlen, rel, "unreadable in the cache");
    if (fstatat(b, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return differs(why, wlen, rel, "unreadable in the fresh tree");
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
        return differs(why, wlen, rel, "type");
    if ((sa.st_mode & 07777) != (sb.st_mode & 07777))
        return differs(why, wlen, rel, "mode");
    if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)
        return differs(why, wlen, rel, "owner");
    if ((S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) && sa.st_rdev != sb.st_rdev)
        return differs(why, wlen, rel, "device number");
    if (!S_ISDIR(sa.st_mode) && sa.st_size != sb.st_size)
        return differs(why, wlen, rel, "size");
    /* not a directory's: a parent a tar does not list is made with the time
     * of its extraction (the names inside are compared instead) */
    if (!root && !S_ISDIR(sa.st_mode) &&
        (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec))
        return differs(why, wlen, rel, "mtime");
    size_t xa = 0, xb = 0;
    char *va = xattrs_of(a, name, &xa), *vb = xattrs_of(b, name, &xb);
    bool xsame = va && vb && xa == xb && memcmp(va, vb, xa) == 0;
    free(va);
    free(vb);
    if (!xsame)
        return differs(why, wlen, rel, "xattrs");
    if (S_ISLNK(sa.st_mode))
        return same_link(a, b, name) ? 0 : differs(why, wlen, rel, "symlink target");
    if (S_ISREG(sa.st_mode))
        return same_file(a, b, name) ? 0 : differs(why, wlen, rel, "content");
    if (!S_ISDIR(sa.st_mode))
        return 0;
    int da = openat(a, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int db = openat(b, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    names na = {0}, nb = {0};
    int rc = 0;
    if ((da < 0 || db < 0) && (errno == EMFILE || errno == ENFILE))
        rc = -2; /* deeper than this process may hold directories open: not checked */
    else if (da < 0 || db < 0 || list_dir(da, &na) < 0 || list_dir(db, &nb) < 0)
        rc = differs(why, wlen, rel, "directory unreadable");
    for (size_t i = 0; rc == 0 && (i < na.n || i < nb.n); i++) {
        if (i >= na.n || i >= nb.n || strcmp(na.v[i], nb.v[i]) != 0) {
            const char *odd = i >= na.n ? nb.v[i] : i >= nb.n ? na.v[i]
                              : strcmp(na.v[i], nb.v[i]) < 0 ? na.v[i] : nb.v[i];
            _cleanup_free_ char *r = sbx__strdup_printf("%s%s%s", rel, *rel ? "/" : "", odd);
            rc = differs(why, wlen, r ? r : rel, "present in only one of the trees");
            break;
        }
        _cleanup_free_ char *r = sbx__strdup_printf("%s%s%s", rel, *rel ? "/" : "", na.v[i]);
        rc = r ? cmp_entry(da, db, na.v[i], r, false, why, wlen) : -1;
    }
    names_free(&na);
    names_free(&nb);
    if (da >= 0)
        close(da);
    if (db >= 0)
        close(db);
    return rc;
}

/* Check one unpacked dir against a fresh extraction; 1 with why when it
 * differs. */
static int check_one(sbx_store *s, const char *diff_id, const char *dir, char *why, size_t wlen,
                     sbx_ctx *ctx, sbx_error *err)
{
    sbx_scratch *sc = NULL;
    if (sbx_store_scratch_new(&sc, s, "fsck", 0, err) < 0)
        return err->code;
    /* not directly in the scratch dir: installing into a dir flocks it, and
     * the scratch dir is flocked by its handle already */
    _cleanup_free_ char *fresh = sbx__strdup_printf("%s/t/fresh", sbx_scratch_path(sc));
    int rc = fresh ? rfs_layer_extract(s, diff_id, fresh, ctx, err)
                   : sbx_error_set(err, SBX_ENOMEM, "out of memory");
    if (rc == 0) {
        int da = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int db = open(fresh, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        rc = da < 0 || db < 0 ? sbx_error_sys(err, SBX_EIO, errno, "opening '%s'", dir)
                              : cmp_entry(da, db, ".", "", true, why, wlen);
        if (rc == -2)
            rc = sbx_error_set(err, SBX_ELIMIT, "the tree is deeper than the open file limit "
                               "lets it be walked");
        else if (rc < 0 && !err->code)
            rc = sbx_error_set(err, SBX_ENOMEM, "out of memory");
        if (da >= 0)
            close(da);
        if (db >= 0)
            close(db);
    }
    sbx_error e2 = SBX_ERROR_INIT;
    sbx_scratch_free(sc, &e2);
    return rc;
}

int sbx_rootfs_check_unpacked(sbx_unpacked_check *out, sbx_store *s, sbx_ctx *ctx,
                              sbx_error *err)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *root = sbx__strdup_printf("%s/unpacked", sbx_store_root(s));
    if (!root)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    if (access(root, F_OK) != 0 && errno == ENOENT)
        return 0;
    names ns = {0};
    int rc = rfs_list_dir_fd(&ns.v, &ns.n, -1, root, err);
    for (size_t i = 0; rc == 0 && i < ns.n; i++) {
        char diff_id[SBX_DIGEST_BUFSZ + 8], dir[4096], why[600] = "";
        snprintf(diff_id, sizeof diff_id, "sha256:%s", ns.v[i]);
        sbx_layer_info info;
        sbx_error e = SBX_ERROR_INIT;
        /* layers only (flattened dirs are merges of checked ones), complete ones */
        if (!sbx__digest_valid(diff_id) || sbx_store_layer_info(s, diff_id, &info, &e) < 0 ||
            sbx_store_layer_unpacked_path(s, diff_id, dir, sizeof dir, &e) < 0 ||
            !sbx_rootfs_layer_is_current(dir))
            continue;
        if ((rc = sbx__check_cancel(ctx, err)) < 0)
            break;
        int c = check_one(s, diff_id, dir, why, sizeof why, ctx, &e);
        if (c < 0) {
            if (c == SBX_ECANCELED || c == SBX_ENOMEM) {
                *err = e;
                rc = c;
                break;
            }
            /* the layer itself is bad (the store's fsck says so) or went */
            sbx__log(ctx, SBX_LOG_WARN, "unpacked layer %.19s not checked: %s", diff_id, e.msg);
            continue;
        }
        out->checked++;
        if (c == 0)
            continue;
        out->corrupt++;
        sbx_error de = SBX_ERROR_INIT;
        if (sbx_store_unpacked_discard(s, diff_id, &de) == 0) {
            out->discarded++;
            sbx__log(ctx, SBX_LOG_WARN, "unpacked layer %.19s differs from its layer at %s: "
                     "removed from the cache (a --link tree written to?); it is unpacked again "
                     "when next used", diff_id, why);
        } else {
            out->busy++;
            sbx__log(ctx, SBX_LOG_WARN, "unpacked layer %.19s differs from its layer at %s, "
                     "and is kept: %s; unmount, then run fsck again", diff_id, why, de.msg);
        }
    }
    names_free(&ns);
    if (rc == 0 && out->corrupt)
        rc = sbx_error_set(err, SBX_ECORRUPT, "%llu unpacked layer(s) differ from their layers",
                           (unsigned long long)out->corrupt);
    return rc;
}
