/* Atomic destination directories for unpack and export (see outdir.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outdir.h"
#include "sbx/context.h"
#include "sbx_common.h"

static atomic_uint tmp_counter;

int rfs_open_image(sbx_image **out, sbx_store *s, const char *image, const char *platform,
                   const char *verb, sbx_error *err)
{
    if (sbx_image_open(out, s, image, platform, err) < 0)
        return sbx_error_wrap(err, "%s '%s'", verb, image);
    return 0;
}

void rfs_outdir_free(rfs_outdir *d)
{
    free(d->path);
    free(d->parent);
    free(d->base);
    free(d->tmp);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    d->path = d->parent = d->base = d->tmp = NULL;
    d->lock_fd = -1;
}

int rfs_outdir_split(rfs_outdir *d, const char *dir, sbx_error *err)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (!(d->path = strndup(dir, n)))
        return sbx_error_set(err, SBX_ENOMEM, "%s: out of memory", d->verb);
    char *slash = strrchr(d->path, '/');
    d->parent = slash ? (slash == d->path ? strdup("/") : strndup(d->path, (size_t)(slash - d->path)))
                      : strdup(".");
    d->base = strdup(slash ? slash + 1 : d->path);
    if (!d->parent || !d->base)
        return sbx_error_set(err, SBX_ENOMEM, "%s: out of memory", d->verb);
    if (!d->base[0] || !strcmp(d->base, ".") || !strcmp(d->base, ".."))
        return sbx_error_set(err, SBX_EINVAL, "%s: '%s' is not a usable directory name", d->verb,
                             dir);
    return 0;
}

void rfs_outdir_clean_stale(const rfs_outdir *d)
{
    DIR *dd = opendir(d->parent);
    if (!dd)
        return;
    _cleanup_free_ char *prefix = sbx__strdup_printf(".%s.sbx-%s-", d->base, d->kind);
    size_t pl = prefix ? strlen(prefix) : 0;
    struct dirent *de;
    while (prefix && (de = readdir(dd))) {
        if (strncmp(de->d_name, prefix, pl) != 0)
            continue;
        int fd = openat(dirfd(dd), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", d->parent, de->d_name);
            sbx_error e = SBX_ERROR_INIT;
            if (p) {
                sbx__log(d->ctx, SBX_LOG_DEBUG, "removing '%s' left by a killed %s", p, d->kind);
                sbx__rm_rf(p, &e);
            }
        }
        close(fd);
    }
    closedir(dd);
}

int rfs_outdir_make_tmp(rfs_outdir *d, sbx_error *err)
{
    for (int tries = 0; tries < 8; tries++) {
        free(d->tmp);
        d->tmp = sbx__strdup_printf("%s/.%s.sbx-%s-%ld-%u", d->parent, d->base, d->kind,
                                   (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
        if (!d->tmp)
            return sbx_error_set(err, SBX_ENOMEM, "%s: out of memory", d->verb);
        if (mkdir(d->tmp, 0700) < 0) {
            if (errno == EEXIST)
                continue;
            int e = errno;
            free(d->tmp);
            d->tmp = NULL;
            return sbx_error_sys(err, sbx__errno_code(e), e, "%s: creating a temp dir in '%s'",
                                 d->verb, d->parent);
        }
        d->lock_fd = open(d->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (d->lock_fd >= 0 && flock(d->lock_fd, LOCK_EX) == 0 && fstat(d->lock_fd, &st) == 0 &&
            st.st_nlink > 0)
            return 0;
        /* a stale-dir cleaner took it between mkdir and flock: try another name */
        if (d->lock_fd >= 0)
            close(d->lock_fd);
        d->lock_fd = -1;
    }
    return sbx_error_set(err, SBX_EIO, "%s: could not make a temp dir in '%s'", d->verb,
                         d->parent);
}

int rfs_outdir_run(const char *dir, const char *verb, const char *kind,
                   int (*check)(rfs_outdir *d, sbx_error *err),
                   int (*work)(rfs_outdir *d, void *ud, sbx_error *err), void *ud,
                   sbx_ctx *ctx, sbx_error *err)
{
    rfs_outdir d = RFS_OUTDIR_INIT(verb, kind, ctx);
    int r = rfs_outdir_split(&d, dir, err);
    if (r == 0 && check)
        r = check(&d, err);
    if (r == 0) {
        rfs_outdir_clean_stale(&d);
        r = work(&d, ud, err);
    }
    if (d.tmp) {
        sbx_error e = SBX_ERROR_INIT;
        sbx__rm_rf(d.tmp, &e);
    }
    if (r < 0 && !err->where[0])
        sbx_error_where(err, "%s", dir);
    rfs_outdir_free(&d);
    return r;
}

void rfs_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}
