#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <string.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sbx_common.h"

int sbx__open_beneath(int dirfd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof how);
}

bool sbx__is_sparse(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
}

/* [off, off + len) of sfd to the same offsets of dfd. */
static int copy_range(int sfd, int dfd, off_t off, uint64_t len, sbx_error *err)
{
    loff_t in = off, out = off;
    bool cfr = true;
    char buf[65536];
    while (len > 0) {
        ssize_t n;
        if (cfr) {
            n = copy_file_range(sfd, &in, dfd, &out, len > (1u << 30) ? 1u << 30 : len, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                          errno == EOPNOTSUPP)) {
                cfr = false;
                continue;
            }
        } else {
            n = pread(sfd, buf, len < sizeof buf ? len : sizeof buf, in);
            if (n > 0 && pwrite(dfd, buf, (size_t)n, out) != n)
                n = -1;
            if (n > 0) {
                in += n;
                out += n;
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(err, sbx__errno_code(errno), errno, "copying data");
        if (n == 0)
            return sbx_error_set(err, SBX_EIO, "copying data: the file shrank");
        len -= (uint64_t)n;
    }
    return 0;
}

int sbx__copy_sparse(int sfd, int dfd, uint64_t size, sbx_error *err)
{
    off_t off = 0;
    bool wrote = false;
    while ((uint64_t)off < size) {
        off_t data = lseek(sfd, off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* holes to the end */
        off_t hole = data < 0 ? -1 : lseek(sfd, data, SEEK_HOLE);
        if (data < 0 || hole < 0) {
            int e = errno;
            if (!wrote && (e == EINVAL || e == EOPNOTSUPP)) {
                /* the caller copies the plain way, from the start */
                if (lseek(sfd, 0, SEEK_SET) < 0)
                    return sbx_error_sys(err, SBX_EIO, errno, "finding the holes");
                return sbx_error_set(err, SBX_EUNSUPPORTED, "no SEEK_DATA here");
            }
            errno = e;
            return sbx_error_sys(err, SBX_EIO, errno, "finding the holes");
        }
        if ((uint64_t)hole > size)
            hole = (off_t)size;
        if (hole > data) {
            int r = copy_range(sfd, dfd, data, (uint64_t)(hole - data), err);
            if (r < 0)
                return r;
            wrote = true;
        }
        off = hole;
    }
    if (ftruncate(dfd, (off_t)size) < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "setting the size");
    return 0;
}

int sbx__mkdir_p(const char *path, mode_t mode, sbx_error *err)
{
    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return sbx_error_set(err, SBX_ENOMEM, "allocate path");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return sbx_error_sys(err, sbx__errno_code(errno), errno, "create directory '%s'", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "create directory '%s'", p);
    return 0;
}

int sbx__write_all(int fd, const void *buf, size_t len, sbx_error *err)
{
    const char *b = buf;
    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sbx_error_sys(err, sbx__errno_code(errno), errno, "write");
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t sbx__read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int sbx__fsync_dir(const char *path, sbx_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "sync directory '%s'", path);
    return 0;
}

int sbx__read_fd(char **out, size_t *len, int fd, const char *name, size_t max, sbx_error *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "stat '%s'", name);
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
        return sbx_error_set(err, SBX_ELIMIT, "read '%s': %lld bytes exceeds the limit of %zu",
                             name, (long long)st.st_size, max);
    /* a pipe or a terminal says size 0: read to the end, up to max */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, n = 0;
    _cleanup_free_ char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return sbx_error_set(err, SBX_ENOMEM, "read '%s': out of memory", name);
        if (n + 1 == cap) {
            if (S_ISREG(st.st_mode) || cap > max + 1)
                break;
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                return sbx_error_set(err, SBX_ENOMEM, "read '%s': out of memory", name);
            buf = nb;
            cap *= 2;
        }
        ssize_t r = sbx__read_full(fd, buf + n, cap - 1 - n);
        if (r < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "read '%s'", name);
        n += (size_t)r;
        if ((size_t)r < cap - 1 - (n - (size_t)r))
            break; /* the end */
    }
    if (n > max)
        return sbx_error_set(err, SBX_ELIMIT, "read '%s': more than the limit of %zu bytes", name,
                             max);
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = SBX_STEAL(buf);
    return 0;
}

int sbx__read_file(char **out, size_t *len, const char *path, size_t max, sbx_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno, "open '%s'",
                             path);
    return sbx__read_fd(out, len, fd, path, max, err);
}

int sbx__write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          sbx_error *err)
{
    _cleanup_free_ char *tmp = sbx__strdup_printf("%s.tmp.XXXXXX", path);
    _cleanup_free_ char *dir = strdup(path);
    if (!tmp || !dir)
        return sbx_error_set(err, SBX_ENOMEM, "write '%s': out of memory", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        strcpy(dir, ".");
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "create temp file for '%s'", path);
    int rc = sbx__write_all(fd, data, len, err);
    if (rc == 0 && fchmod(fd, mode) < 0)
        rc = sbx_error_sys(err, SBX_EIO, errno, "chmod");
    if (rc == 0 && fsync(fd) < 0)
        rc = sbx_error_sys(err, sbx__errno_code(errno), errno, "sync");
    if (rc == 0 && rename(tmp, path) < 0)
        rc = sbx_error_sys(err, sbx__errno_code(errno), errno, "rename");
    if (rc < 0) {
        unlink(tmp);
        return sbx_error_wrap(err, "write '%s'", path);
    }
    return sbx__fsync_dir(dir, err);
}

static int rm_rf_at(int parent, const char *name, dev_t dev, sbx_error *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : sbx_error_sys(err, SBX_EIO, errno, "stat '%s'", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
            return sbx_error_sys(err, SBX_EIO, errno, "remove '%s'", name);
        return 0;
    }
    /* A mount point below: never remove what is mounted there.  st_dev
     * misses a bind mount from the same filesystem; statx's mount-root
     * attribute does not. */
    struct statx sx;
    bool mount_root = parent != AT_FDCWD &&
                      statx(parent, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx) == 0 &&
                      (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                      (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    if (st.st_dev != dev || mount_root)
        return sbx_error_set(err, SBX_EBUSY, "remove '%s': a mount point is in the way", name);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "open '%s'", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return sbx_error_sys(err, SBX_EIO, errno, "list '%s'", name);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        rc = rm_rf_at(dirfd(d), de->d_name, dev, err);
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = sbx_error_sys(err, SBX_EIO, errno, "remove directory '%s'", name);
    return rc;
}

int sbx__rm_rf(const char *path, sbx_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : sbx_error_sys(err, SBX_EIO, errno, "stat '%s'", path);
    int rc = rm_rf_at(AT_FDCWD, path, st.st_dev, err);
    return rc < 0 ? sbx_error_wrap(err, "remove '%s'", path) : 0;
}

char *sbx__strdup_printf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

int64_t sbx__now_unix(void) { return (int64_t)time(NULL); }

uint64_t sbx__now_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sbx__close_fds_except(const int *keep, size_t n)
{
    unsigned lo = 3;
    for (;;) {
        /* the smallest kept fd at or above lo */
        unsigned next = ~0u;
        for (size_t i = 0; i < n; i++)
            if (keep[i] >= 0 && (unsigned)keep[i] >= lo && (unsigned)keep[i] < next)
                next = (unsigned)keep[i];
        if (next == ~0u) {
            close_range(lo, ~0u, 0);
            return;
        }
        if (next > lo)
            close_range(lo, next - 1, 0);
        lo = next + 1;
    }
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Calls fn for each mount point at or below path; stops when fn returns true. */
static void each_mount_below(const char *path, bool (*fn)(void *ud, const char *mp), void *ud)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    size_t pl = strlen(path);
    char line[8192], mp[4096];
    while (fgets(line, sizeof line, f)) {
        /* "id parent maj:min root mountpoint ..." */
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
            continue;
        unescape_octal(mp);
        if (!strncmp(mp, path, pl) && (mp[pl] == '\0' || mp[pl] == '/') && fn(ud, mp))
            break;
    }
    fclose(f);
}

static bool found_one(void *ud, const char *mp)
{
    (void)mp;
    *(bool *)ud = true;
    return true;
}

bool sbx__mounted_below(const char *path)
{
    bool found = false;
    each_mount_below(path, found_one, &found);
    return found;
}

typedef struct deepest {
    char mp[4096];
    size_t len;
} deepest;

static bool keep_deepest(void *ud, const char *mp)
{
    deepest *d = ud;
    size_t l = strlen(mp);
    if (l > d->len) {
        snprintf(d->mp, sizeof d->mp, "%s", mp);
        d->len = l;
    }
    return false;
}

int sbx__umount_below(const char *path)
{
    /* deepest first; a stacked or stuck mount point gets a few tries */
    for (int tries = 0; tries < 64; tries++) {
        deepest d = {"", 0};
        each_mount_below(path, keep_deepest, &d);
        if (!d.len)
            return 0;
        if (umount2(d.mp, 0) < 0 && umount2(d.mp, MNT_DETACH) < 0)
            return 1;
    }
    return sbx__mounted_below(path) ? 1 : 0;
}

int sbx__boot_id(char *out, size_t len, sbx_error *err)
{
    static const char path[] = "/proc/sys/kernel/random/boot_id";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "reading '%s'", path);
    ssize_t n = sbx__read_full(fd, out, len - 1);
    close(fd);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        n--;
    if (n <= 0)
        return sbx_error_set(err, SBX_EIO, "no boot id in '%s'", path);
    out[n] = '\0';
    return 0;
}

void sbx__mount_srcs_free(sbx__mount_src *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].source);
        free(v[i].mountpoint);
    }
    free(v);
}

/* A process vanished between readdir and the read, or is exiting (its
 * namespace already let go: EINVAL): not a failure (its namespace, if
 * another process is in it, is read through that one). */
static bool vanished(int e) { return e == ENOENT || e == ESRCH || e == EINVAL; }

/* Add the mounts of one mountinfo (an open fd, consumed) whose source
 * starts with prefix.  -1: out of memory; -2: a read error; -3: the
 * process went while it was read. */
static int scan_mountinfo(int fd, bool other_ns, const char *prefix, sbx__mount_src **v,
                          size_t *n, size_t *cap)
{
    FILE *f = fdopen(fd, "re");
    if (!f) {
        close(fd);
        return -1;
    }
    size_t pl = strlen(prefix);
    char *line = NULL;
    size_t llen = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &llen, f) > 0) {
        /* "id parent maj:min root mountpoint options [optional...] - fstype source super" */
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        char mp[4096], fstype[32], source[512];
        int id = 0;
        if (sscanf(line, "%d %*s %*s %*s %4095s", &id, mp) != 2 ||
            sscanf(sep + 3, "%31s %511s", fstype, source) != 2)
            continue;
        unescape_octal(source);
        if (strncmp(source, prefix, pl) != 0)
            continue;
        /* mount ids are unique on the host: one already listed is the same
         * mount seen through another process of its namespace */
        bool dup = false;
        for (size_t i = 0; i < *n && !dup; i++)
            dup = (*v)[i].mnt_id == id;
        if (dup)
            continue;
        unescape_octal(mp);
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            sbx__mount_src *nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                rc = -1;
                break;
            }
            *v = nv;
            *cap = nc;
        }
        (*v)[*n].source = strdup(source);
        (*v)[*n].mountpoint = strdup(mp);
        snprintf((*v)[*n].fstype, sizeof (*v)[*n].fstype, "%s", fstype);
        (*v)[*n].other_ns = other_ns;
        (*v)[*n].mnt_id = id;
        if (!(*v)[*n].source || !(*v)[*n].mountpoint) {
            free((*v)[*n].source);
            free((*v)[*n].mountpoint);
            rc = -1;
            break;
        }
        (*n)++;
    }
    if (rc == 0 && ferror(f))
        rc = vanished(errno) ? -3 : -2;
    free(line);
    fclose(f);
    return rc;
}


int sbx__mount_sources(const char *prefix, bool all_ns, sbx__mount_src **out, size_t *nout,
                       bool *incomplete)
{
    sbx__mount_src *v = NULL;
    size_t n = 0, cap = 0;
    ino_t *seen = NULL;
    size_t nseen = 0, capseen = 0;
    DIR *d = NULL;
    *out = NULL;
    *nout = 0;
    if (incomplete)
        *incomplete = false;
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    int r = fd >= 0 ? scan_mountinfo(fd, false, prefix, &v, &n, &cap) : -2;
    if (r == -1)
        goto oom;
    if (r == -2 && incomplete)
        *incomplete = true;
    if (!all_ns)
        goto done;
    struct stat self;
    if (stat("/proc/self/ns/mnt", &self) < 0)
        self.st_ino = 0;
    d = opendir("/proc");
    if (!d && incomplete)
        *incomplete = true;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        /* through one fd of the process's /proc dir: its namespace and its
         * mountinfo are the same process's, even if the pid is reused */
        int pfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0)
            continue;
        /* the namespace link may be closed to us (pid 1 in a container)
         * while mountinfo is not: then read it anyway, mount ids dedupe */
        struct stat st;
        bool known = fstatat(pfd, "ns/mnt", &st, 0) == 0;
        if (!known && vanished(errno)) {
            close(pfd);
            continue;
        }
        bool dup = known && st.st_ino == self.st_ino;
        for (size_t i = 0; known && i < nseen && !dup; i++)
            dup = seen[i] == st.st_ino;
        if (dup) {
            close(pfd);
            continue;
        }
        int mfd = openat(pfd, "mountinfo", O_RDONLY | O_CLOEXEC);
        int e = errno;
        close(pfd);
        if (mfd < 0) {
            if (!vanished(e) && incomplete)
                *incomplete = true;
            continue;
        }
        r = scan_mountinfo(mfd, true, prefix, &v, &n, &cap);
        if (r == -1)
            goto oom;
        if (r == -2 || r == -3) { /* not seen: another process of it may still be read */
            if (r == -2 && incomplete)
                *incomplete = true;
            continue;
        }
        if (!known)
            continue;
        if (nseen == capseen) {
            size_t nc = capseen ? capseen * 2 : 64;
            ino_t *ns = realloc(seen, nc * sizeof *ns);
            if (!ns)
                goto oom;
            seen = ns;
            capseen = nc;
        }
        seen[nseen++] = st.st_ino;
    }
done:
    if (d)
        closedir(d);
    free(seen);
    *out = v;
    *nout = n;
    return 0;
oom:
    if (d)
        closedir(d);
    free(seen);
    sbx__mount_srcs_free(v, n);
    return -1;
}

const char *sbx__url_redact(char *buf, size_t len, const char *url, bool drop_query)
{
    if (!len)
        return buf;
    url = url ? url : "";
    size_t n = drop_query ? strcspn(url, "?") : strlen(url);
    const char *p = strstr(url, "://");
    const char *auth = p && (size_t)(p - url) < n ? p + 3 : NULL;
    size_t alen = auth ? strcspn(auth, "/?#") : 0;
    const char *at = auth ? memchr(auth, '@', alen) : NULL;
    if (!at) {
        snprintf(buf, len, "%.*s", (int)n, url);
        return buf;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    size_t rest = n - (size_t)(at + 1 - url);
    if (colon)
        snprintf(buf, len, "%.*s:****@%.*s", (int)(colon - url), url, (int)rest, at + 1);
    else
        snprintf(buf, len, "%.*s****@%.*s", (int)(auth - url), url, (int)rest, at + 1);
    return buf;
}
