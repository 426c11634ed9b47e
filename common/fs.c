#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sbx_common.h"

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

int sbx__read_file(char **out, size_t *len, const char *path, size_t max, sbx_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno, "open '%s'",
                             path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "stat '%s'", path);
    if ((uint64_t)st.st_size > max)
        return sbx_error_set(err, SBX_ELIMIT, "read '%s': %lld bytes exceeds the limit of %zu",
                             path, (long long)st.st_size, max);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "read '%s': out of memory", path);
    ssize_t n = sbx__read_full(fd, buf, (size_t)st.st_size);
    if (n < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "read '%s'", path);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    *out = SBX_STEAL(buf);
    return 0;
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
    if (st.st_dev != dev)
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
