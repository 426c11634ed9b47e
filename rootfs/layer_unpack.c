/* Unpack a layer tar into a directory usable as an overlayfs lower.
 *
 * Trust: the tar is untrusted.  libarchive extracts relative to the current
 * directory, so extraction runs in a child process (exec'd when the program
 * set an extractor, sbx_rootfs_set_extractor; else forked) that chdir()s into the temp
 * dir and chroot()s there: nothing it writes can land outside, and the
 * parent's cwd (and its threads) are never disturbed.  Inside, ".." and
 * absolute paths are refused by libarchive (ARCHIVE_EXTRACT_SECURE_NODOTDOT,
 * _NOABSOLUTEPATHS) and paths through symlinks by the child's own record of
 * the symlinks it made (or ARCHIVE_EXTRACT_SECURE_SYMLINKS when it cannot
 * chroot).  Overlay-private xattrs and our own marker xattr in the tar are
 * dropped, so a layer cannot forge overlay metadata or claim to be unpacked;
 * the only overlay markers in the result are the ones made from OCI
 * whiteouts.
 *
 * Atomicity: the dir is built in a scratch dir of the store
 * (tmp/unpack.<id>/tree, flock()ed by us: if we die, the store's reaper
 * removes it) and renamed to <dest>; losing a rename race to another
 * unpacker is success.  Every change of <dest> (rename into place, moving an
 * untrusted one aside into the same scratch dir) happens under an flock of
 * its parent dir, so a trusted <dest> is never replaced or removed by an
 * unpacker (only gc removes it).  Without a store (sbx_rootfs_unpack_tar_fd)
 * the temp dir is a sibling <dest>.tmp-<pid>-<n>.
 *
 * Durability without syncing: nothing is fsync'ed (a syncfs of the whole
 * filesystem cost 1.7 s per unpack on a busy host).  Instead the finished
 * tree's root carries the xattr SBX_UNPACK_MARK_XATTR = this boot's id
 * (/proc/sys/kernel/random/boot_id), set before the rename.  A <dest> is
 * trusted only when its mark names the current boot: a process crash keeps
 * the page cache, so a dir renamed into place in this boot is complete; a
 * power cut or kernel crash means a new boot, and then every dir unpacked
 * before it (possibly half on disk) is moved aside and unpacked again.  A dir
 * without a mark (from an interrupted or older unpacker) is untrusted too.
 * The mark is an xattr of the root dir rather than a file so containers do
 * not see it: the overlay's root is the upper dir, whose xattrs it shows.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "archive_lazy.h"
#include "rootfs_internal.h"
#include "sbx_common.h"

/* _SPARSE: blocks of zeros become holes (layers are dense tars). */
#define UNPACK_FLAGS                                                                        \
    (ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |                  \
     ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                              \
     ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |             \
     ARCHIVE_EXTRACT_SPARSE)

/* Bytes per read of the tar and per chunk fed to the extractor: large files
 * are then written in 1 MiB pieces rather than 64 KiB ones. */
#define UNPACK_BLOCK (1u << 20)

/* ---- child side: runs after fork, reports one message on errfd --------- */

/* The exit status says what kind of failure the message reports. */
#define CHILD_EXIT_FAILED 1  /* reading or writing failed: SBX_EIO */
#define CHILD_EXIT_REFUSED 2 /* a hostile or malformed entry: SBX_EINVAL */

static __attribute__((noreturn)) void child_report(int errfd, int status, const char *fmt,
                                                 va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    (void)!write(errfd, msg, strlen(msg));
    _exit(status);
}

static void child_fail(int errfd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void child_fail(int errfd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    child_report(errfd, CHILD_EXIT_FAILED, fmt, ap);
}

static void child_refuse(int errfd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void child_refuse(int errfd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    child_report(errfd, CHILD_EXIT_REFUSED, fmt, ap);
}

static void drop_overlay_xattrs(struct archive_entry *e)
{
    if (archive_entry_xattr_reset(e) == 0)
        return;
    /* Rebuild the list without overlay-private names. */
    struct { char *name; void *val; size_t len; } keep[64];
    size_t n = 0;
    const char *name;
    const void *val;
    size_t len;
    bool dropped = false;
    while (archive_entry_xattr_next(e, &name, &val, &len) == ARCHIVE_OK) {
        if (!strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13) ||
            !strncmp(name, "trusted.sbx.", 12) || !strncmp(name, "user.sbx.", 9)) {
            dropped = true;
            continue;
        }
        if (n < SBX_ARRAY_LEN(keep)) {
            keep[n].name = strdup(name);
            keep[n].val = malloc(len ? len : 1);
            if (keep[n].name && keep[n].val) {
                memcpy(keep[n].val, val, len);
                keep[n].len = len;
                n++;
            }
        }
    }
    if (dropped) {
        archive_entry_xattr_clear(e);
        for (size_t i = 0; i < n; i++)
            archive_entry_xattr_add_entry(e, keep[i].name, keep[i].val, keep[i].len);
    }
    for (size_t i = 0; i < n; i++) {
        free(keep[i].name);
        free(keep[i].val);
    }
}

/* ---- the boot mark (see the top comment) -------------------------------- */

static int set_mark(const char *dir, const char *boot_id)
{
    size_t n = strlen(boot_id);
    if (lsetxattr(dir, SBX_UNPACK_MARK_XATTR, boot_id, n, 0) == 0)
        return 0;
    if (errno != EPERM && errno != ENOTSUP)
        return -1;
    /* No CAP_SYS_ADMIN (or no trusted.* here): the user namespace. */
    return lsetxattr(dir, SBX_UNPACK_MARK_XATTR_USER, boot_id, n, 0);
}

int rfs_mark_current(const char *dir, sbx_error *err)
{
    char boot[80];
    if (sbx__boot_id(boot, sizeof boot, err) < 0)
        return err->code;
    if (set_mark(dir, boot) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "marking '%s'", dir);
    return 0;
}

static bool mark_is(const char *dir, const char *boot_id)
{
    char v[80];
    ssize_t n = lgetxattr(dir, SBX_UNPACK_MARK_XATTR, v, sizeof(v));
    if (n < 0)
        n = lgetxattr(dir, SBX_UNPACK_MARK_XATTR_USER, v, sizeof(v));
    return n > 0 && (size_t)n == strlen(boot_id) && !memcmp(v, boot_id, (size_t)n);
}

static int read_boot_id(char *out, size_t len, sbx_error *err)
{
    if (sbx__boot_id(out, len, err) < 0)
        return sbx_error_wrap(err, "unpacking");
    return 0;
}

bool sbx_rootfs_layer_is_current(const char *dir)
{
    char boot[80];
    sbx_error ignore = SBX_ERROR_INIT;
    return read_boot_id(boot, sizeof(boot), &ignore) == 0 && mark_is(dir, boot);
}

/* Mark a dir opaque; the path was already accepted by libarchive's checks
 * (it is an entry's parent), and O_NOFOLLOW on every part keeps it inside. */
static int mark_opaque(const char *dir)
{
    int fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", dir);
    for (char *part = strtok(buf, "/"); part && fd >= 0; part = strtok(NULL, "/")) {
        if (!strcmp(part, "."))
            continue;
        mkdirat(fd, part, 0755);
        int next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = next;
    }
    if (fd < 0)
        return -1;
    int r = fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0);
    close(fd);
    return r;
}

static void copy_data(struct archive *in, struct archive *out, int errfd, const char *name)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    for (;;) {
        int r = archive_read_data_block(in, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            return;
        if (r != ARCHIVE_OK)
            child_fail(errfd, "reading '%s': %s", name, archive_error_string(in));
        if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK)
            child_fail(errfd, "writing '%s': %s", name, archive_error_string(out));
    }
}

/* Whiteout ".wh.NAME" in dir D becomes a 0/0 char device D/NAME. */
static void to_overlay_whiteout(struct archive_entry *e, const char *name, const char *base)
{
    char path[4096];
    size_t dirlen = (size_t)(base - name);
    snprintf(path, sizeof(path), "%.*s%s", (int)dirlen, name, base + 4);
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFCHR);
    archive_entry_set_perm(e, 0);
    archive_entry_set_rdev(e, 0);
    archive_entry_set_size(e, 0);
    archive_entry_set_hardlink(e, NULL);
    archive_entry_set_symlink(e, NULL);
    archive_entry_xattr_clear(e);
}

typedef enum {
    WH_NONE,        /* an ordinary entry */
    WH_WHITEOUT,    /* ".wh.NAME": a whiteout of NAME (whatever the entry's type) */
    WH_OPAQUE,      /* "DIR/.wh..wh..opq" */
    WH_ROOT_OPAQUE, /* ".wh..wh..opq" at the root */
    WH_SKIP,        /* aufs metadata: ".wh..wh.*", and the root's ".wh..wh.plnk/" tree */
    WH_INSIDE,      /* below a ".wh.X" component */
} wh_kind;

/* rel: the entry's path without "./" prefixes or trailing slashes; base: its
 * last component. */
static wh_kind whiteout_kind(const char *rel, const char *base)
{
    if (!strncmp(rel, ".wh..wh.", 8) && (strchr(rel, '/') || strcmp(rel, ".wh..wh..opq")))
        return WH_SKIP; /* the root's aufs dirs (.wh..wh.plnk/...) */
    for (const char *c = rel; c < base; c = strchr(c, '/') + 1)
        if (!strncmp(c, ".wh.", 4))
            return WH_INSIDE;
    if (!strcmp(base, ".wh..wh..opq"))
        return base == rel ? WH_ROOT_OPAQUE : WH_OPAQUE;
    if (!strncmp(base, ".wh..wh.", 8))
        return WH_SKIP;
    return !strncmp(base, ".wh.", 4) && base[4] ? WH_WHITEOUT : WH_NONE;
}

/* ---- symlinks made by this extraction ----------------------------------- */

/* The tree starts empty and only this child writes to it, so the symlinks an
 * entry could pass through are exactly the symlink entries seen so far, and
 * the hardlinks made to them (the same inode).
 * Checking against this set costs no syscalls, where libarchive's
 * SECURE_SYMLINKS lstat()s every component of every entry (measured: three
 * times the openat calls of `tar -x`).  Inside the chroot an escape is
 * impossible anyway; the set keeps the layer's meaning exact (an entry
 * through a symlink is refused, as OCI layers never need it). */
typedef struct linkset {
    char **slot;
    size_t cap, n;
} linkset;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static bool linkset_has(const linkset *ls, const char *s, size_t n)
{
    if (!ls->cap)
        return false;
    for (size_t i = hash_bytes(s, n) & (ls->cap - 1);; i = (i + 1) & (ls->cap - 1)) {
        const char *v = ls->slot[i];
        if (!v)
            return false;
        if (strlen(v) == n && !memcmp(v, s, n))
            return true;
    }
}

static void linkset_insert(linkset *ls, char *v)
{
    size_t n = strlen(v);
    size_t i = hash_bytes(v, n) & (ls->cap - 1);
    while (ls->slot[i])
        i = (i + 1) & (ls->cap - 1);
    ls->slot[i] = v;
    ls->n++;
}

static void linkset_add(linkset *ls, const char *path, int errfd)
{
    if (linkset_has(ls, path, strlen(path)))
        return;
    if ((ls->n + 1) * 2 > ls->cap) {
        linkset bigger = {calloc(ls->cap ? ls->cap * 2 : 64, sizeof(char *)),
                          ls->cap ? ls->cap * 2 : 64, 0};
        if (!bigger.slot)
            child_fail(errfd, "out of memory");
        for (size_t i = 0; i < ls->cap; i++)
            if (ls->slot[i])
                linkset_insert(&bigger, ls->slot[i]);
        free(ls->slot);
        *ls = bigger;
    }
    char *v = strdup(path);
    if (!v)
        child_fail(errfd, "out of memory");
    linkset_insert(ls, v);
}

/* "./a//b/./c/" -> "a/b/c".  1: done; 0: a ".." part (libarchive refuses
 * those itself); -1: longer than len. */
static int normalize(char *out, size_t len, const char *name)
{
    size_t o = 0;
    for (const char *p = name; *p;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        if (!(n == 1 && p[0] == '.')) {
            if (o + n + 2 > len)
                return -1;
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
    return 1;
}

/* The first proper prefix of path that is a symlink made earlier, or NULL;
 * a path too long to check counts as passing through one. */
static const char *through_link(const linkset *ls, const char *path, char *buf, size_t len)
{
    int n = normalize(buf, len, path);
    if (n < 0) {
        snprintf(buf, len, "(path too long to check)");
        return buf;
    }
    if (n == 0)
        return NULL;
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/'))
        if (linkset_has(ls, buf, (size_t)(p - buf))) {
            *p = '\0';
            return buf;
        }
    return NULL;
}

static void check_entry_paths(const linkset *ls, struct archive_entry *e, const char *orig,
                              int errfd)
{
    char buf[4096];
    const char *via = through_link(ls, archive_entry_pathname(e), buf, sizeof(buf));
    if (via)
        child_refuse(errfd, "refusing entry '%s': it passes through the symlink '%s'", orig, via);
    const char *hl = archive_entry_hardlink(e);
    if (hl && (via = through_link(ls, hl, buf, sizeof(buf))))
        child_refuse(errfd, "refusing entry '%s': its link target passes through the symlink "
                   "'%s'", orig, via);
}

static void child_extract(int tarfd, const char *dir, const char *boot_id, int errfd)
{
    int keep[] = {tarfd, errfd};
    sbx__close_fds_except(keep, 2); /* no lock of the parent's lives on in us */
    if (chdir(dir) < 0)
        child_fail(errfd, "entering '%s': %s", dir, strerror(errno));
    /* Confine the extractor to the new dir; without CAP_SYS_CHROOT, fall
     * back to libarchive's per-component symlink checks. */
    bool chrooted = chroot(".") == 0;
    /* Listed entries get their exact modes (ARCHIVE_EXTRACT_PERM); the umask
     * only shapes the directories a tar does not list, the parents of its
     * entries, which libarchive makes 0777 & ~umask (at most 0775): 022
     * makes them 0755, as Docker's unpacker does, so a layer that adds
     * etc/motd without etc/ does not widen etc/ in the merged root. */
    umask(022);
    struct archive *in = archive_read_new();
    struct archive *out = archive_write_disk_new();
    if (!in || !out)
        child_fail(errfd, "out of memory");
    archive_read_support_format_tar(in);
    archive_read_support_format_gnutar(in);
    archive_write_disk_set_options(out, chrooted ? UNPACK_FLAGS & ~ARCHIVE_EXTRACT_SECURE_SYMLINKS
                                                 : UNPACK_FLAGS);
    linkset links = {0};
    if (archive_read_open_fd(in, tarfd, UNPACK_BLOCK) != ARCHIVE_OK)
        child_fail(errfd, "reading the tar: %s", archive_error_string(in));

    char **opaque = NULL;
    size_t nopaque = 0;
    bool root_set = false;
    mode_t root_mode = 0755;
    uid_t root_uid = 0;
    gid_t root_gid = 0;
    struct timespec root_times[2];
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!name || !*name)
            child_refuse(errfd, "refusing an entry without a name");
        char orig[4096];
        snprintf(orig, sizeof(orig), "%s", name);
        /* Whiteout names are read from the entry's base, trailing slashes
         * dropped ("a/.wh.x/" is a whiteout of a/x), as Docker and
         * containerd read them. */
        char clean[4096];
        snprintf(clean, sizeof(clean), "%s", name);
        for (size_t l = strlen(clean); l > 1 && clean[l - 1] == '/'; l--)
            clean[l - 1] = '\0';
        const char *rel = clean;
        while (!strncmp(rel, "./", 2))
            rel += 2;
        const char *slash = strrchr(rel, '/');
        const char *base = slash ? slash + 1 : rel;
        switch (whiteout_kind(rel, base)) {
        case WH_NONE:
            break;
        case WH_SKIP: /* aufs metadata: no meaning for overlay */
            continue;
        case WH_INSIDE:
            child_refuse(errfd, "refusing entry '%s': it lies inside a whiteout", orig);
        case WH_ROOT_OPAQUE:
            child_refuse(errfd, "refusing entry '%s': an opaque whiteout at the layer's root "
                         "(Docker's applier would hide every lower layer, overlayfs none)",
                         orig);
        case WH_OPAQUE:
            break;
        case WH_WHITEOUT:
            archive_entry_set_pathname(e, clean);
            name = archive_entry_pathname(e);
            slash = strrchr(name, '/');
            base = slash ? slash + 1 : name;
            break;
        }
        if (!*rel || !strcmp(rel, ".")) {
            /* The layer's root ("./", as snapshots carry it): libarchive
             * leaves the existing dir alone, so its owner, mode and times
             * are applied here after the rest. */
            if (archive_entry_filetype(e) != AE_IFDIR)
                child_refuse(errfd, "refusing entry '%s': the layer's root is not a directory",
                             orig);
            root_set = true;
            root_mode = archive_entry_perm(e);
            root_uid = (uid_t)archive_entry_uid(e);
            root_gid = (gid_t)archive_entry_gid(e);
            root_times[0].tv_sec = root_times[1].tv_sec = archive_entry_mtime(e);
            root_times[0].tv_nsec = root_times[1].tv_nsec = archive_entry_mtime_nsec(e);
            continue;
        }
        if (!strcmp(base, ".wh..wh..opq")) {
            /* Check the parent path the same way libarchive would. */
            if (name[0] == '/' || strstr(name, "../") || !strncmp(name, "..", 2))
                child_refuse(errfd, "refusing entry '%s': path escapes the layer", orig);
            char **n = realloc(opaque, (nopaque + 1) * sizeof(char *));
            if (!n)
                child_fail(errfd, "out of memory");
            opaque = n;
            opaque[nopaque++] = strndup(rel, (size_t)(base - rel));
            continue;
        }
        if (!strncmp(base, ".wh.", 4) && base[4])
            to_overlay_whiteout(e, name, base);
        else
            drop_overlay_xattrs(e);
        if (chrooted)
            check_entry_paths(&links, e, orig, errfd);
        if (archive_write_header(out, e) != ARCHIVE_OK)
            child_refuse(errfd, "refusing entry '%s': %s", orig, archive_error_string(out));
        if (chrooted) {
            /* What is a symlink now: a symlink entry, or a hardlink to one
             * (it is the same inode, so nothing may pass through it either). */
            char norm[4096], target[4096];
            const char *hl = archive_entry_hardlink(e);
            bool is_link = archive_entry_filetype(e) == AE_IFLNK ||
                           (hl && normalize(target, sizeof(target), hl) == 1 &&
                            linkset_has(&links, target, strlen(target)));
            if (is_link && normalize(norm, sizeof(norm), archive_entry_pathname(e)) == 1)
                linkset_add(&links, norm, errfd);
        }
        if (archive_entry_size(e) > 0)
            copy_data(in, out, errfd, orig);
        if (archive_write_finish_entry(out) != ARCHIVE_OK)
            child_fail(errfd, "finishing entry '%s': %s", orig, archive_error_string(out));
    }
    if (r != ARCHIVE_EOF)
        child_fail(errfd, "reading the tar: %s", archive_error_string(in));
    /* Directory times and modes are applied at close. */
    if (archive_write_close(out) != ARCHIVE_OK)
        child_fail(errfd, "finishing: %s", archive_error_string(out));
    for (size_t i = 0; i < nopaque; i++)
        if (mark_opaque(*opaque[i] ? opaque[i] : ".") < 0)
            child_fail(errfd, "marking '%s' opaque: %s", opaque[i], strerror(errno));
    /* A layer without a root entry (most registries' layers) gets fixed
     * ones, not the unpacking process's umask and clock: the root a mount
     * shows, and a snapshot's "./", are then the same in every boot. */
    if (!root_set) {
        root_mode = 0755;
        root_uid = 0;
        root_gid = 0;
        root_times[0] = root_times[1] = (struct timespec){0, 0};
    }
    if (lchown(".", root_uid, root_gid) < 0 || chmod(".", root_mode) < 0 ||
        utimensat(AT_FDCWD, ".", root_times, 0) < 0)
        child_fail(errfd, "setting the layer root's owner, mode and times: %s", strerror(errno));
    archive_read_free(in);
    archive_write_free(out);
    /* Last, so a tree with the mark is complete (see the top comment). */
    if (set_mark(".", boot_id) < 0)
        child_fail(errfd, "marking the unpacked dir: %s", strerror(errno));
    _exit(0);
}

/* ---- parent side -------------------------------------------------------- */

static atomic_uint tmp_counter;

/* Where the tar comes from: an fd the child reads directly, or a function
 * this process calls to push bytes through a socket (the store handle never
 * crosses a fork). */
typedef int (*feed_fn)(void *ud, int sock, sbx_error *err);

/* The extractor as a program of its own (sbx_rootfs_set_extractor): started
 * with posix_spawn rather than a bare fork.  A fork of a process whose other
 * threads allocate (a pull's downloads and zstd workers, beside pull
 * --unpack's extractor) copies whatever lock they held at that instant; the
 * child then waits on it forever (seen with ASan's allocator).  An exec'd
 * child starts with nothing of the parent's. */
static const char *g_extractor;

void sbx_rootfs_set_extractor(const char *exe) { g_extractor = exe; }

int sbx_rootfs_extractor_main(int argc, char **argv)
{
    /* argv: DIR BOOT_ID; the tar on fd 0, the report to fd 3 */
    if (argc != 3)
        return 2;
    sbx_error err = SBX_ERROR_INIT;
    if (rfs_archive_load(&err) < 0) /* before the chroot: it cannot be found after */
        child_fail(3, "loading libarchive: %s", err.msg);
    child_extract(0, argv[1], argv[2], 3);
    return 1; /* not reached */
}

/* Start the extractor on tarfd, reporting on errfd: exec'd when set, else
 * forked.  0 and *pid, or -1 with errno. */
static int start_extractor(pid_t *pid, int tarfd, int errfd, const char *tmp, const char *boot_id)
{
    if (g_extractor) {
        posix_spawn_file_actions_t fa;
        if ((errno = posix_spawn_file_actions_init(&fa)) != 0)
            return -1;
        int e = posix_spawn_file_actions_adddup2(&fa, tarfd, 0);
        if (!e)
            e = posix_spawn_file_actions_adddup2(&fa, errfd, 3);
        char *argv[] = {(char *)g_extractor, "__extract", (char *)tmp, (char *)boot_id, NULL};
        extern char **environ;
        if (!e)
            e = posix_spawn(pid, g_extractor, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        errno = e;
        return e ? -1 : 0;
    }
    *pid = fork();
    if (*pid < 0)
        return -1;
    if (*pid == 0)
        child_extract(tarfd, tmp, boot_id, errfd);
    return 0;
}

static int wait_child(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static int extract_in_child(int tarfd, feed_fn feed, void *feed_ud, const char *tmp,
                            const char *boot_id, sbx_error *err)
{
    int pfd[2], sock[2] = {-1, -1};
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "unpacking: pipe");
    if (feed && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return sbx_error_sys(err, SBX_EIO, e, "unpacking: socketpair");
    }
    pid_t pid;
    if (start_extractor(&pid, feed ? sock[1] : tarfd, pfd[1], tmp, boot_id) < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        if (feed) {
            close(sock[0]);
            close(sock[1]);
        }
        return sbx_error_sys(err, SBX_EIO, e, "unpacking: starting the extractor");
    }
    close(pfd[1]);
    int r = 0;
    if (feed) {
        close(sock[1]);
        r = feed(feed_ud, sock[0], err);
        close(sock[0]);
        if (r < 0)
            kill(pid, SIGKILL); /* a broken stream must never be renamed into place */
    }
    char msg[1024];
    ssize_t n = sbx__read_full(pfd[0], msg, sizeof(msg) - 1);
    close(pfd[0]);
    msg[n > 0 ? n : 0] = '\0';
    int status = wait_child(pid);
    if (r < 0)
        return r;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (!msg[0])
        snprintf(msg, sizeof(msg), "extractor died (status 0x%x)", status);
    bool hostile = WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXIT_REFUSED;
    return sbx_error_set(err, hostile ? SBX_EINVAL : SBX_EIO, "unpacking: %s", msg);
}

/* Put the finished tmp at dest unless a trusted dest is already there; an
 * untrusted dest (another boot's, or unmarked) is first moved to *trash.  All
 * under an flock of the parent, so no unpacker ever moves a trusted dir. */
static int install(const char *parent, const char *tmp, const char *dest, const char *boot,
                   const char *scratch, char **trash, bool *installed, const sbx_ctx *ctx,
                   sbx_error *err)
{
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "unpacking: opening '%s'", parent);
    int r;
    while ((r = flock(pfd, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        r = sbx_error_sys(err, SBX_EIO, errno, "unpacking: locking '%s'", parent);
        goto out;
    }
    if (mark_is(dest, boot))
        goto out; /* another unpacker won; its dir is the same layer */
    struct stat st;
    if (lstat(dest, &st) == 0) {
        *trash = scratch ? sbx__strdup_printf("%s/old", scratch)
                         : sbx__strdup_printf("%s.tmp-%ld-%u", dest, (long)getpid(),
                                              atomic_fetch_add(&tmp_counter, 1));
        if (!*trash) {
            r = sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
            goto out;
        }
        if (rename(dest, *trash) < 0) {
            r = sbx_error_sys(err, SBX_EIO, errno, "unpacking: moving the untrusted '%s' aside",
                              dest);
            free(*trash);
            *trash = NULL;
            goto out;
        }
        sbx__log(ctx, SBX_LOG_INFO, "unpacked dir '%s' has no mark of this boot: unpacking it again",
                dest);
    }
    if (rename(tmp, dest) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "unpacking: renaming '%s' into place", tmp);
    else
        *installed = true;
out:
    close(pfd); /* drops the lock */
    return r;
}

static int unpack_into(sbx_store *s, const char *dest, int tarfd, feed_fn feed, void *feed_ud,
                       const sbx_ctx *ctx, sbx_error *err)
{
    char boot[80];
    int r = read_boot_id(boot, sizeof(boot), err);
    if (r < 0) {
        sbx_error_where(err, "%s", dest);
        return r;
    }
    if (mark_is(dest, boot))
        return 0;
    /* Here, before the fork: the chrooted extractor could not find it. */
    r = rfs_archive_load(err);
    if (r < 0) {
        sbx_error_where(err, "%s", dest);
        return sbx_error_wrap(err, "unpacking");
    }
    _cleanup_free_ char *parent = strdup(dest);
    if (!parent)
        return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    char *slash = strrchr(parent, '/');
    if (!slash) {
        free(parent);
        parent = strdup(".");
        if (!parent)
            return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    } else if (slash == parent) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
        r = sbx__mkdir_p(parent, 0700, err);
        if (r < 0)
            return r;
    }
    sbx_scratch *sc = NULL;
    if (s && (r = sbx_store_scratch_new(&sc, s, "unpack", 0, err)) < 0)
        return sbx_error_wrap(err, "unpacking");
    _cleanup_free_ char *tmp = sc ? sbx__strdup_printf("%s/tree", sbx_scratch_path(sc))
                                  : sbx__strdup_printf("%s.tmp-%ld-%u", dest, (long)getpid(),
                                                       atomic_fetch_add(&tmp_counter, 1));
    if (!tmp)
        r = sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    else if (mkdir(tmp, 0755) < 0)
        r = sbx_error_sys(err, SBX_EIO, errno, "unpacking: creating '%s'", tmp);
    else
        r = extract_in_child(tarfd, feed, feed_ud, tmp, boot, err);
    bool installed = false;
    _cleanup_free_ char *trash = NULL;
    if (r == 0)
        r = install(parent, tmp, dest, boot, sc ? sbx_scratch_path(sc) : NULL, &trash,
                    &installed, ctx, err);
    sbx_error tmp_err = SBX_ERROR_INIT;
    if (sc) {
        sbx_scratch_free(sc, &tmp_err); /* what was not renamed into place */
    } else {
        if (!installed && tmp)
            sbx__rm_rf(tmp, &tmp_err);
        if (trash)
            sbx__rm_rf(trash, &tmp_err);
    }
    if (r < 0)
        sbx_error_where(err, "%s", dest);
    return r;
}

int sbx_rootfs_unpack_tar_fd(int fd, const char *dest, sbx_error *err)
{
    return unpack_into(NULL, dest, fd, NULL, NULL, NULL, err);
}

/* All of buf to a socket; false when the reader is gone (the extractor
 * stopped, as on a refused entry: it reports why itself). */
static bool send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

typedef struct feed_state {
    sbx_layer_reader *rd;
    const char *diff_id;
    uint64_t done, total, next_report;
    const sbx_ctx *ctx;
} feed_state;

/* Feed the stored layer to the extractor, hashing what is fed: the stream
 * must be the diff_id's (zstd's frame checksum only proves the file is the
 * one written, not that it is this layer).  On a mismatch the extractor is
 * killed and nothing is renamed into place.  A layer a pull stored unchecked
 * is hashed by its reader, whose last read fails on a mismatch: not twice. */
static int feed_layer(void *ud, int sock, sbx_error *err)
{
    feed_state *f = ud;
    _cleanup_free_ char *buf = malloc(UNPACK_BLOCK);
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    if (!sbx_layer_reader_checks(f->rd) && sbx__sha256_new(&h, err) < 0)
        return err->code;
    for (;;) {
        size_t n = 0;
        int r = sbx__check_cancel(f->ctx, err);
        if (r == 0)
            r = sbx_layer_reader_read(f->rd, buf, UNPACK_BLOCK, &n, err);
        if (r < 0)
            return r;
        if (n == 0) {
            char got[SBX_DIGEST_BUFSZ] = "";
            if (h)
                sbx__sha256_final(h, got);
            if (h && strcmp(got, f->diff_id) != 0)
                return sbx_error_set(err, SBX_EDIGEST,
                                     "unpacking: the stored layer does not match its diff_id "
                                     "'%s' (it hashes to '%s'): run sbx-image fsck",
                                     f->diff_id, got);
            sbx__progress(f->ctx, f->diff_id, "unpack", f->done, f->total);
            return 0;
        }
        if (h)
            sbx__sha256_update(h, buf, n);
        f->done += n;
        if (f->done >= f->next_report) {
            sbx__progress(f->ctx, f->diff_id, "unpack", f->done, f->total);
            f->next_report = f->done + (8u << 20);
        }
        if (!send_all(sock, buf, n))
            return 0; /* the extractor stopped: it reports why */
    }
}

int sbx_rootfs_layer_unpack(char *path_out, size_t path_len, sbx_store *s, const char *diff_id,
                            sbx_ctx *ctx, sbx_error *err)
{
    int r = sbx_store_layer_unpacked_path(s, diff_id, path_out, path_len, err);
    if (r < 0)
        return r;
    if (sbx_rootfs_layer_is_current(path_out))
        return 0;
    /* One unpacker per layer (16 sandboxes starting from a new image unpack
     * it once): the others wait, then find it done.  Locks are striped by
     * the diff_id's first byte, so locks/ stays small. */
    char lock_name[32];
    snprintf(lock_name, sizeof lock_name, "unpack-%.2s", diff_id + 7);
    _cleanup_close_ int lock_fd = -1;
    if (sbx_store_lock_named(&lock_fd, s, lock_name, ctx, err) < 0)
        return sbx_error_wrap(err, "unpacking layer '%s'", diff_id);
    if (sbx_rootfs_layer_is_current(path_out))
        return 0;
    return rfs_layer_extract(s, diff_id, path_out, ctx, err);
}

int rfs_layer_extract(sbx_store *s, const char *diff_id, const char *dest, sbx_ctx *ctx,
                      sbx_error *err)
{
    sbx_layer_reader *rd = NULL;
    int r = sbx_store_layer_open(&rd, s, diff_id, err);
    if (r < 0)
        return sbx_error_wrap(err, "unpacking layer '%s'", diff_id);
    feed_state f = {rd, diff_id, 0, 0, 0, ctx};
    sbx_layer_info info;
    sbx_error ignore = SBX_ERROR_INIT;
    if (sbx_store_layer_info(s, diff_id, &info, &ignore) == 0)
        f.total = info.size;
    r = unpack_into(s, dest, -1, feed_layer, &f, ctx, err);
    sbx_layer_reader_free(rd);
    if (r < 0)
        return sbx_error_wrap(err, "unpacking layer '%s'", diff_id);
    return 0;
}

/* ---- unpacking while a layer downloads (pull --unpack) ------------------------
 *
 * The puller hands the layer's tar bytes, as it decompresses them, to
 * sbx_rootfs_tap_write; a thread of the tap feeds them to the confined
 * extractor (unpack_into, as for a stored layer), so extraction runs beside
 * the download, decompression and hashing, and every byte is decompressed
 * once.  The socket between them is small, so a slow extractor slows the
 * download rather than growing memory.  Nothing is renamed into place until
 * the puller says the layer verified (its blob digest and size, and its
 * diff_id as the store committed it): at the end of the stream the feeder
 * waits for that verdict, and on anything else returns an error, which
 * kills the extractor, so the scratch tree is removed and the cache never
 * holds a layer the store does not.  A kill at any point leaves a scratch dir
 * the store's reaper removes. */

struct sbx_rootfs_tap {
    sbx_store *store; /* the tap's own handle: the puller's serves its thread */
    char diff_id[SBX_DIGEST_BUFSZ];
    char dest[4096];
    int wfd, rfd;     /* the puller writes wfd; the feeder reads rfd */
    pthread_t tid;
    bool started, write_failed;
    atomic_int verdict; /* 0 undecided, 1 verified, -1 not */
    int rc;
    sbx_error err;
    sbx_ctx *ctx;
};

static int feed_tap(void *ud, int sock, sbx_error *err)
{
    sbx_rootfs_tap *t = ud;
    _cleanup_free_ char *buf = malloc(UNPACK_BLOCK);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
    bool child_gone = false;
    for (;;) {
        ssize_t n = read(t->rfd, buf, UNPACK_BLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "unpacking: reading the download");
        if (n == 0)
            break;
        /* once the extractor stopped, keep draining: the puller must not block */
        if (!child_gone && !send_all(sock, buf, (size_t)n))
            child_gone = true;
    }
    if (atomic_load(&t->verdict) != 1)
        return sbx_error_set(err, SBX_ECANCELED, "unpacking: the download of '%s' was not "
                             "verified", t->diff_id);
    return 0;
}

static void *tap_main(void *arg)
{
    sbx_rootfs_tap *t = arg;
    t->rc = unpack_into(t->store, t->dest, -1, feed_tap, t, t->ctx, &t->err);
    close(t->rfd); /* a writer still writing gets EPIPE, not a hang */
    t->rfd = -1;
    return NULL;
}

static void tap_free(sbx_rootfs_tap *t)
{
    if (t->wfd >= 0)
        close(t->wfd);
    if (t->rfd >= 0)
        close(t->rfd);
    sbx_store_free(t->store);
    free(t);
}

void *sbx_rootfs_tap_begin(void *ud, sbx_store *store, const char *diff_id, sbx_ctx *ctx,
                           sbx_error *err)
{
    (void)ud;
    sbx_rootfs_tap *t = calloc(1, sizeof *t);
    if (!t) {
        sbx_error_set(err, SBX_ENOMEM, "unpacking: out of memory");
        return NULL;
    }
    t->wfd = t->rfd = -1;
    t->ctx = ctx;
    snprintf(t->diff_id, sizeof t->diff_id, "%s", diff_id);
    int sp[2];
    int r = sbx_store_open(&t->store, sbx_store_root(store), err);
    if (r == 0)
        r = sbx_store_layer_unpacked_path(t->store, diff_id, t->dest, sizeof t->dest, err);
    /* No unpackers' lock (sbx_rootfs_layer_unpack's): it would be held for
     * a whole download and stall unrelated unpacks of its stripe.  A layer
     * not yet stored has no other unpacker but another pull's tap, and
     * install() makes a race between two end in one dir. */
    if (r < 0 || sbx_rootfs_layer_is_current(t->dest)) {
        if (r < 0)
            sbx_error_wrap(err, "unpacking layer '%s'", diff_id);
        tap_free(t); /* done already (or failed): nothing to tap */
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        sbx_error_sys(err, SBX_EIO, errno, "unpacking layer '%s': socketpair", diff_id);
        tap_free(t);
        return NULL;
    }
    t->rfd = sp[0];
    t->wfd = sp[1];
    if (pthread_create(&t->tid, NULL, tap_main, t) != 0) {
        sbx_error_set(err, SBX_EINTERNAL, "unpacking layer '%s': starting a thread", diff_id);
        tap_free(t);
        return NULL;
    }
    t->started = true;
    return t;
}

int sbx_rootfs_tap_write(void *layer, const void *buf, size_t len, sbx_error *err)
{
    (void)err;
    sbx_rootfs_tap *t = layer;
    /* the extractor ended early: its error comes at the end */
    if (!t->write_failed && !send_all(t->wfd, buf, len))
        t->write_failed = true;
    return 0;
}

int sbx_rootfs_tap_end(void *layer, bool commit, sbx_error *err)
{
    sbx_rootfs_tap *t = layer;
    if (!t)
        return 0;
    atomic_store(&t->verdict, commit ? 1 : -1);
    close(t->wfd); /* the feeder sees the end, then the verdict */
    t->wfd = -1;
    if (t->started)
        pthread_join(t->tid, NULL);
    int rc = 0;
    if (commit && t->rc < 0) {
        *err = t->err;
        rc = sbx_error_wrap(err, "unpacking layer '%s'", t->diff_id);
    }
    tap_free(t);
    return rc;
}
