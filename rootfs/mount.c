/* Mounts: an image's root filesystem as an overlay of the store's cached
 * unpacked layers and a writable upper dir the store owns; umount; and
 * commit, which turns what a sandbox changed into a layer and a new image.
 *
 * A mount costs O(layers), not O(files): each layer is unpacked into the
 * cache once (shared by every mount, every later unpack) and the overlay
 * is one mount(2).  The store keeps the record (store_mounts.c), which
 * holds the image against gc and says when a mount is dead.
 *
 * The overlay's source is "sbx-<id>", so the mount can be found in any
 * mount namespace's mountinfo (a runtime bind-mounting the rootfs into a
 * container keeps it).  Options: index, metacopy and redirect_dir off, so
 * every change is a real file, a whiteout or an opaque dir in the upper,
 * which is all a commit reads; nodev, so a device node shipped in an image
 * does not open; volatile (no syncs for the sandbox's writes): a mount does
 * not survive a reboot anyway, and a commit syncs what it stores.
 *
 * Deep chains: overlayfs stacks at most 500 lowers, and lookups get slower
 * with every one.  An image with more than SBX_MOUNT_MAX_LOWERS layers is
 * mounted with its bottom layers flattened into one directory (flatten.c),
 * cached by the chain of layers it holds; see docs/runtime.md. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "outdir.h"
#include "rootfs_internal.h"
#include "sbx/image.h"

void sbx_mount_result_clear(sbx_mount_result *r)
{
    if (!r)
        return;
    free(r->dir);
    free(r->upper);
    free(r->work);
    free(r->options);
    rfs_strv_free(r->lowers);
    memset(r, 0, sizeof *r);
}

/* ---- the mount point ---------------------------------------------------------- */

/* dir: created when missing (its parent must exist); else an empty
 * directory that is not a mount point.  *real gets its canonical path. */
static int prepare_dir(char **real, bool *created, const char *dir, sbx_error *err)
{
    *created = false;
    if (mkdir(dir, 0755) == 0)
        *created = true;
    else if (errno != EEXIST)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: creating '%s'", dir);
    struct statx sx;
    if (statx(AT_FDCWD, dir, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: checking '%s'", dir);
    if (!S_ISDIR(sx.stx_mode))
        return sbx_error_set(err, SBX_EINVAL, "mounting: '%s' is not a directory", dir);
    if ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
        (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return sbx_error_set(err, SBX_EINVAL, "mounting: '%s' is already a mount point "
                             "(sbx-image mounts lists this store's)", dir);
    bool empty = true;
    int r = rfs_dir_is_empty(dir, &empty, err);
    if (r < 0)
        return r;
    if (!empty)
        return sbx_error_set(err, SBX_EINVAL, "mounting: '%s' is not empty (give a new or empty "
                             "directory)", dir);
    if (!(*real = realpath(dir, NULL)))
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: resolving '%s'", dir);
    return 0;
}

/* For a runtime's mount: dir as an absolute path (it need not exist). */
static int absolute(char **out, const char *dir, sbx_error *err)
{
    *out = realpath(dir, NULL);
    if (*out)
        return 0;
    char cwd[PATH_MAX];
    if (dir[0] == '/')
        *out = strdup(dir);
    else if (getcwd(cwd, sizeof cwd))
        *out = sbx__strdup_printf("%s/%s", cwd, dir);
    else
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: resolving '%s'", dir);
    return *out ? 0 : sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
}

/* ---- the overlay ------------------------------------------------------------- */

/* Lowers are given as the links l/0 (top-most) .. l/N-1 in the mount's dir,
 * relative to it: short options whatever the store's path, so hundreds of
 * layers fit in mount(2)'s one page.  Relative paths resolve against the
 * mounter's cwd: mount from a child, so the caller's cwd (shared by every
 * thread of a host process) is never touched. */
static int do_mount(const char *mpath, const char *id, const char *target, size_t nlowers,
                    bool read_only, sbx_error *err)
{
    size_t cap = 64 + nlowers * 12;
    _cleanup_free_ char *opts = malloc(cap);
    if (!opts)
        return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
    size_t len = (size_t)snprintf(opts, cap, "lowerdir=");
    for (size_t i = 0; i < nlowers; i++)
        len += (size_t)snprintf(opts + len, cap - len, "%sl/%zu", i ? ":" : "", i);
    if (!read_only)
        len += (size_t)snprintf(opts + len, cap - len, ",upperdir=u,workdir=w");
    if (len > 4000)
        return sbx_error_set(err, SBX_ELIMIT, "mounting: %zu lower layers do not fit in the "
                             "mount options", nlowers);
    char source[32];
    snprintf(source, sizeof source, "sbx-%s", id);
    unsigned long flags = MS_NODEV | (read_only ? MS_RDONLY : 0);
    pid_t pid = fork();
    if (pid < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: fork");
    if (pid == 0) {
        if (chdir(mpath) < 0)
            _exit(errno);
        /* volatile (5.10) may go on an older kernel; the others may not: a
         * redirect or metacopy upper would lose data in a commit */
        static const char *const extras[] = {
            ",index=off,metacopy=off,redirect_dir=off,volatile",
            ",index=off,metacopy=off,redirect_dir=off"};
        char full[4200];
        int e = 0;
        for (size_t i = 0; i < SBX_ARRAY_LEN(extras); i++) {
            snprintf(full, sizeof full, "%s%s", opts, read_only ? "" : extras[i]);
            if (mount(source, target, "overlay", flags, full) == 0)
                _exit(0);
            e = errno;
            if (read_only)
                break;
        }
        _exit(e ? e : EIO);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    int e = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    if (e == EPERM)
        return sbx_error_sys(err, SBX_EIO, e, "mounting the overlay at '%s': not permitted "
                             "(mount needs root, CAP_SYS_ADMIN)", target);
    return sbx_error_sys(err, SBX_EIO, e, "mounting the overlay at '%s' (%zu lower layers)",
                         target, nlowers);
}

/* l/<i> -> lower i (top-most first); empty dirs l/<n>... when overlayfs would get
 * too few lowers (no layers, or one without an upper). */
static int link_lowers(const char *mpath, char **lowers, size_t *n, bool read_only,
                       sbx_error *err)
{
    for (size_t i = 0; i < *n; i++) {
        _cleanup_free_ char *p = sbx__strdup_printf("%s/l/%zu", mpath, i);
        if (!p)
            return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
        if (symlink(lowers[i], p) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "mounting: linking '%s'", p);
    }
    while (*n < (read_only ? 2u : 1u)) {
        _cleanup_free_ char *e = sbx__strdup_printf("%s/l/%zu", mpath, *n);
        if (!e)
            return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
        if (mkdir(e, 0755) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "mounting: creating '%s'", e);
        (*n)++;
    }
    return 0;
}

/* The options a runtime mounts the overlay with: absolute paths to the
 * lower links, so they fit one page for up to about 100 layers. */
static int runtime_options(char **out, const char *mpath, size_t nlinks, bool read_only,
                           sbx_error *err)
{
    size_t cap = 256 + nlinks * (strlen(mpath) + 16) + 2 * strlen(mpath);
    char *o = malloc(cap);
    if (!o)
        return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
    size_t len = (size_t)snprintf(o, cap, "lowerdir=");
    for (size_t i = 0; i < nlinks; i++)
        len += (size_t)snprintf(o + len, cap - len, "%s%s/l/%zu", i ? ":" : "", mpath, i);
    if (!read_only)
        len += (size_t)snprintf(o + len, cap - len, ",upperdir=%s/u,workdir=%s/w", mpath, mpath);
    snprintf(o + len, cap - len, ",index=off,metacopy=off,redirect_dir=off");
    *out = o;
    return 0;
}

/* lowers: the n real lower dirs; nlinks >= n counts the empty one too. */
/* overlayfs shows the upper dir's own owner, mode and times for the root:
 * give it the image's (the top-most lower's root, as a merge would). */
static int upper_like_image_root(const char *mpath, const char *top, sbx_error *err)
{
    struct stat st;
    _cleanup_free_ char *u = sbx__strdup_printf("%s/u", mpath);
    if (!u)
        return sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
    if (!top)
        return 0; /* no layers: the empty lower's defaults */
    if (stat(top, &st) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: reading '%s'", top);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (chown(u, st.st_uid, st.st_gid) < 0 || chmod(u, st.st_mode & 07777) < 0 ||
        utimensat(AT_FDCWD, u, ts, 0) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting: preparing '%s'", u);
    return 0;
}

static int fill_result(sbx_mount_result *out, const sbx_image *img, const char *id,
                       const char *mpath, const char *dir, char **lowers, size_t n,
                       size_t nlinks, bool read_only, sbx_error *err)
{
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->digest, sizeof out->digest, "%s", img->digest);
    out->layers = img->nlayers;
    out->dir = strdup(dir);
    out->lowers = calloc(nlinks + 1, sizeof *out->lowers);
    out->nlowers = nlinks;
    if (!read_only) {
        out->upper = sbx__strdup_printf("%s/u", mpath);
        out->work = sbx__strdup_printf("%s/w", mpath);
    }
    bool ok = out->dir && out->lowers && (read_only || (out->upper && out->work));
    for (size_t i = 0; ok && i < nlinks; i++)
        ok = (out->lowers[i] = i < n ? strdup(lowers[i])
                                     : sbx__strdup_printf("%s/l/%zu", mpath, i)) != NULL;
    return ok ? 0 : sbx_error_set(err, SBX_ENOMEM, "mounting: out of memory");
}

static int mount_image(sbx_mount_result *out, sbx_store *s, const char *image, const char *dir,
                       const sbx_mount_options *o, sbx_ctx *ctx, sbx_error *err)
{
    sbx_image *img = NULL;
    int r = rfs_open_image(&img, s, image, o->platform, "mounting", err);
    if (r < 0)
        return r;
    char **dirs = NULL, **lowers = NULL;
    sbx_store_mount *m = NULL;
    char flat[SBX_DIGEST_BUFSZ] = "";
    size_t nlowers = 0;
    int flat_fd = -1; /* holds the flattened lower until the record names it */
    if ((r = rfs_unpack_layers(&dirs, s, img, ctx, err)) < 0)
        goto out;
    if ((r = rfs_mount_lowers(&lowers, &nlowers, flat, &flat_fd, s, img, dirs, ctx, err)) < 0)
        goto out;
    if ((r = sbx__check_cancel(ctx, err)) < 0)
        goto out;
    if ((r = sbx_store_mount_begin(&m, s, image, img->digest, dir, o->read_only, err)) < 0)
        goto out;
    const char *mpath = sbx_store_mount_path(m);
    if (flat[0] && (r = sbx_store_mount_set_flat(m, flat, err)) < 0)
        goto out;
    size_t nlinks = nlowers;
    if ((r = link_lowers(mpath, lowers, &nlinks, o->read_only, err)) < 0)
        goto out;
    if (!o->read_only &&
        (r = upper_like_image_root(mpath, nlowers ? lowers[0] : NULL, err)) < 0)
        goto out;
    sbx__progress(ctx, "rootfs", "mount", 0, 0);
    if (o->no_mount)
        r = sbx_store_mount_set_external(m, err);
    else
        r = do_mount(mpath, sbx_store_mount_id(m), dir, nlinks, o->read_only, err);
    if (r < 0)
        goto out;
    snprintf(out->source, sizeof out->source, "sbx-%s", sbx_store_mount_id(m));
    if ((r = runtime_options(&out->options, mpath, nlinks, o->read_only, err)) < 0) {
        if (!o->no_mount)
            umount2(dir, MNT_DETACH);
        goto out;
    }
    if ((r = fill_result(out, img, sbx_store_mount_id(m), mpath, dir, lowers, nlowers, nlinks,
                         o->read_only, err)) < 0 ||
        (r = sbx__check_cancel(ctx, err)) < 0) {
        if (!o->no_mount)
            umount2(dir, MNT_DETACH);
        goto out;
    }
    out->flattened = flat[0] != '\0';
    if (o->no_mount && strlen(out->options) > 4000) {
        r = sbx_error_set(err, SBX_ELIMIT, "mounting: %zu lower layers do not fit in one page "
                          "of mount options for a runtime; mount it on the host instead", nlinks);
        goto out;
    }
    r = sbx_store_mount_ready(m, err);
    m = NULL;
    if (r < 0) {
        if (!o->no_mount)
            umount2(dir, MNT_DETACH); /* the record stays unfinished: the reaper takes it */
        goto out;
    }
    sbx_error te = SBX_ERROR_INIT;
    sbx_store_touch(s, img->digest, &te);
    sbx__progress(ctx, "rootfs", "done", 0, 0);
out:
    sbx_store_mount_abort(m);
    if (flat_fd >= 0)
        close(flat_fd);
    rfs_strv_free(dirs);
    rfs_strv_free(lowers);
    sbx_image_close(img);
    return r;
}

int sbx_rootfs_mount(sbx_mount_result *out, sbx_store *s, const char *image, const char *dir,
                     const sbx_mount_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    static const sbx_mount_options defaults = SBX_MOUNT_OPTIONS_INIT;
    const sbx_mount_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    if (!image || !*image || !dir || !*dir)
        return sbx_error_set(err, SBX_EINVAL, "mounting: an image and a directory are needed");
    _cleanup_free_ char *real = NULL;
    bool created = false;
    int r = o->no_mount ? absolute(&real, dir, err) : prepare_dir(&real, &created, dir, err);
    if (r == 0)
        r = mount_image(out, s, image, real, o, ctx, err);
    if (r < 0) {
        sbx_mount_result_clear(out);
        if (created)
            rmdir(dir);
        if (!err->where[0])
            sbx_error_where(err, "%s", dir);
    }
    return r;
}

/* ---- umount ------------------------------------------------------------------ */

/* Whether this namespace has mount id at its recorded dir (here), and
 * whether something else uses it: a bind mount of it here, or a mount
 * namespace that has it as its root (a runtime's container, after its
 * pivot_root).  Other namespaces that merely hold a copy at some path (any
 * `unshare -m` made while the mount existed copies every mount) do not
 * count: they would block every umount, and nothing runs in them. */
static int where_mounted(const char *id, const char *dir, bool external, bool *here,
                         bool *elsewhere, sbx_error *err)
{
    char src[32];
    snprintf(src, sizeof src, "sbx-%s", id);
    *here = *elsewhere = false;
    sbx__mount_src *v = NULL;
    size_t n = 0;
    if (sbx__mount_sources(src, true, &v, &n, NULL) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "unmounting: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].source, src) != 0)
            continue;
        if (!external && !v[i].other_ns && !strcmp(v[i].mountpoint, dir) && !*here)
            *here = true;
        else if (external || !v[i].other_ns || !strcmp(v[i].mountpoint, "/"))
            *elsewhere = true; /* a runtime's own mount of it is always a use */
    }
    sbx__mount_srcs_free(v, n);
    return 0;
}

int sbx_rootfs_umount(sbx_store *s, const char *id_or_dir, sbx_ctx *ctx, sbx_error *err)
{
    sbx_mount_entry e;
    int r = sbx_store_mount_find(&e, s, id_or_dir, err);
    if (r < 0)
        return sbx_error_wrap(err, "unmounting");
    _cleanup_close_ int lock = -1;
    r = sbx_store_mount_lock(&lock, s, e.id, ctx, err);
    bool here = false, elsewhere = false;
    if (r == 0)
        r = where_mounted(e.id, e.dir, e.external, &here, &elsewhere, err);
    /* Still mounted anywhere but here (a runtime's container, a bind mount):
     * refused, or the upper would be removed under a live sandbox.  Here, a
     * busy mount (a process still in it) is an error too, never a lazy
     * detach. */
    if (r == 0 && elsewhere)
        r = sbx_error_set(err, SBX_EBUSY, "unmounting '%s': mount %s is also mounted elsewhere "
                          "(a bind mount, or the root of a runtime's container); stop the "
                          "sandbox and unmount those first", e.dir, e.id);
    else if (r == 0 && here && umount2(e.dir, 0) < 0)
        r = errno == EBUSY
                ? sbx_error_set(err, SBX_EBUSY, "unmounting '%s': busy (a process still uses "
                                "it: stop the sandbox first)", e.dir)
                : sbx_error_sys(err, SBX_EIO, errno, "unmounting '%s'", e.dir);
    if (r == 0)
        r = sbx_store_mount_remove(s, e.id, lock, err);
    if (r < 0) {
        sbx_error_where(err, "%s", id_or_dir);
        r = sbx_error_wrap(err, "unmounting mount %s", e.id);
    }
    sbx_mount_entry_clear(&e);
    return r;
}

/* ---- commit ------------------------------------------------------------------ */

static int capture_upper(sbx_capture_result *cap, sbx_store *s, const sbx_mount_entry *e,
                         sbx_ctx *ctx, sbx_error *err)
{
    _cleanup_free_ char *upper = sbx__strdup_printf("%s/u", e->path);
    if (!upper)
        return sbx_error_set(err, SBX_ENOMEM, "committing: out of memory");
    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    co.overlay_upper = true;
    co.keep_mtimes = true;
    co.epoch = 0;
    sbx__progress(ctx, "layer", "capture", 0, 0);
    if (sbx_rootfs_capture(cap, s, upper, &co, ctx, err) < 0)
        return sbx_error_wrap(err, "committing mount %s", e->id);
    return 0;
}

static int write_child(char digest[SBX_DIGEST_BUFSZ], sbx_store *s, const sbx_image *parent,
                       const char *diff_id, sbx_error *err)
{
    char *cfg = NULL;
    size_t len = 0;
    char comment[128];
    snprintf(comment, sizeof comment, "snapshot of %s", parent->digest);
    if (sbx_image_config_add_layer(&cfg, &len, parent->config_raw, parent->config_len, diff_id,
                                   "sbx-image commit", comment, err) < 0)
        return sbx_error_wrap(err, "committing");
    int r = sbx_image_write(digest, s, cfg, len, err);
    free(cfg);
    return r < 0 ? sbx_error_wrap(err, "committing") : 0;
}

int sbx_rootfs_commit(sbx_commit_result *out, sbx_store *s, const char *id_or_dir,
                      const sbx_commit_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    static const sbx_commit_options defaults = SBX_COMMIT_OPTIONS_INIT;
    const sbx_commit_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    if (o->expires_in < 0 || o->expires_in > SBX_NAME_TTL_MAX)
        return sbx_error_set(err, SBX_EINVAL, "committing: expiry of %lld seconds is out of "
                             "range", (long long)o->expires_in);
    sbx_mount_entry e;
    int r = sbx_store_mount_find(&e, s, id_or_dir, err);
    if (r < 0)
        return sbx_error_wrap(err, "committing");
    _cleanup_close_ int lock = -1;
    sbx_image *parent = NULL;
    if (e.read_only)
        r = sbx_error_set(err, SBX_EINVAL, "committing: mount %s is read-only (nothing can "
                          "change)", e.id);
    else if (!e.ready)
        r = sbx_error_set(err, SBX_EINVAL, "committing: mount %s was never finished", e.id);
    if (r == 0)
        r = sbx_store_mount_lock(&lock, s, e.id, ctx, err);
    if (r == 0)
        r = sbx_image_open(&parent, s, e.digest, NULL, err);
    sbx_capture_result cap = {0};
    if (r == 0)
        r = capture_upper(&cap, s, &e, ctx, err);
    if (r == 0)
        r = sbx__check_cancel(ctx, err);
    if (r == 0) {
        snprintf(out->parent, sizeof out->parent, "%s", e.digest);
        out->changed = cap.changed;
        snprintf(out->diff_id, sizeof out->diff_id, "%s", cap.diff_id);
        if (cap.changed)
            r = write_child(out->digest, s, parent, cap.diff_id, err);
        else /* nothing changed: the snapshot is the image itself */
            snprintf(out->digest, sizeof out->digest, "%s", e.digest);
    }
    if (r == 0) {
        if (o->tag)
            r = sbx_image_tag_name(out->name, sizeof out->name, o->tag, err);
        else
            snprintf(out->name, sizeof out->name, "snapshot:%s", out->digest);
        sbx_error me = SBX_ERROR_INIT; /* lineage is informational */
        if (r == 0 && cap.changed)
            sbx_store_meta_set(s, "parent", out->digest, e.digest, &me);
        if (r == 0)
            r = sbx_store_name_set_ttl(s, out->name, out->digest, o->expires_in, err);
    }
    if (r == 0)
        r = sbx_store_image_usage(s, out->digest, out->name, &out->usage, err);
    if (r == 0 && o->expires_in)
        out->expires_at = sbx__now_unix() + o->expires_in;
    sbx_image_close(parent);
    sbx_mount_entry_clear(&e);
    if (r < 0 && !err->where[0])
        sbx_error_where(err, "%s", id_or_dir);
    return r;
}
