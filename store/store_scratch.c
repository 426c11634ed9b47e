/* Everything under <root>/tmp, and the one reaper of what dead processes left.
 *
 * An entry of tmp/ is "<kind>.<id>": a writer's temp file (w, b, l), a tree
 * gc is removing (u), or a scratch directory another module asked for (run,
 * build, unpack, ...).  Its maker holds an flock on it (on the file, or on
 * the directory itself) from before it appears under that name until it is
 * gone; the lock goes with the open file description, so it survives a
 * rename and is released by the kernel when the last holder dies, whatever
 * the pid namespace and however the pid is reused.  So "can I take its lock?"
 * is the whole liveness test: no pid is recorded or parsed.
 *
 * Creation is race-free: the entry is made as ".n.<kind>.<id>", locked, and
 * only then renamed to its name, all while the maker holds tmp/ itself
 * shared.  The reaper takes tmp/ exclusively for a moment to remove the ".n."
 * entries it finds then (their makers died between create and rename; such
 * an entry is still empty), so it never sees one mid-creation.
 *
 * A dead directory with a mount below it is never removed by the generic
 * reaper (rm -rf would stop at the mount anyway); nor is one its maker
 * marked ".owner-reaps" (a sandbox bundle, whose container only the builder
 * knows how to kill): those are left to sbx_store_scratch_reap with the
 * kind's hook. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "store_internal.h"

#define NEW_PREFIX ".n."
#define OWNER_MARK ".owner-reaps"

struct sbx_scratch {
    sbx_store *s;
    int fd;         /* the directory, flock()ed */
    char *path;
    char name[64];  /* "<kind>.<id>" */
    const char *id; /* into name */
};

static bool kind_valid(const char *kind)
{
    size_t n = strlen(kind);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (kind[i] < 'a' || kind[i] > 'z')
            return false;
    return true;
}

static void random_id(char out[13])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 32);
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            r[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < sizeof r; i++)
        out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    out[12] = '\0';
}

static int open_tmp(sbx_store *s, sbx_error *err)
{
    int fd = openat(s->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return sbx_store__io_err(s, err, errno, "open tmp/");
    return fd;
}

int sbx_store__tmp_entry(sbx_store *s, const char *kind, bool dir, bool owner_reaps,
                         char *name_out, size_t len, sbx_error *err)
{
    if (!kind_valid(kind))
        return sbx_error_set(err, SBX_EINVAL, "scratch kind '%s': want 1-16 letters a-z", kind);
    _cleanup_close_ int tfd = open_tmp(s, err);
    if (tfd < 0)
        return tfd;
    while (flock(tfd, LOCK_SH) < 0) /* released with tfd, after the rename */
        if (errno != EINTR)
            return sbx_store__io_err(s, err, errno, "lock tmp/");
    /* (a reaper holds tmp/ exclusively only for a moment, never waiting) */
    char id[13], hidden[64], name[64];
    for (int attempt = 0;; attempt++) {
        random_id(id);
        snprintf(hidden, sizeof hidden, NEW_PREFIX "%s.%s", kind, id);
        int fd;
        if (dir) {
            if (mkdirat(tfd, hidden, 0700) < 0) {
                if (errno == EEXIST && attempt < 8)
                    continue;
                return sbx_store__io_err(s, err, errno, "create scratch dir");
            }
            fd = openat(tfd, hidden, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else {
            fd = openat(tfd, hidden, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 && errno == EEXIST && attempt < 8)
                continue;
        }
        if (fd < 0)
            return sbx_store__io_err(s, err, errno, "create temp entry");
        int r = flock(fd, LOCK_EX | LOCK_NB) < 0 ? -errno : 0;
        if (r == 0 && owner_reaps) {
            int m = openat(fd, OWNER_MARK, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            r = m < 0 ? -errno : 0;
            if (m >= 0)
                close(m);
        }
        snprintf(name, sizeof name, "%s.%s", kind, id);
        if (r == 0 && renameat(tfd, hidden, tfd, name) < 0)
            r = -errno;
        if (r < 0) {
            close(fd);
            if (dir) {
                _cleanup_close_ int d = openat(tfd, hidden, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (d >= 0)
                    unlinkat(d, OWNER_MARK, 0);
                unlinkat(tfd, hidden, AT_REMOVEDIR);
            } else {
                unlinkat(tfd, hidden, 0);
            }
            return sbx_store__io_err(s, err, -r, "create temp entry");
        }
        snprintf(name_out, len, "%s", name);
        return fd;
    }
}

/* ---- scratch directories (public) ---------------------------------------- */

int sbx_store_scratch_new(sbx_scratch **out, sbx_store *s, const char *kind, unsigned flags,
                          sbx_error *err)
{
    *out = NULL;
    sbx_scratch *sc = calloc(1, sizeof *sc);
    if (!sc)
        return sbx_error_set(err, SBX_ENOMEM, "scratch dir: out of memory");
    sc->s = s;
    sc->fd = sbx_store__tmp_entry(s, kind, true, flags & SBX_SCRATCH_OWNER_REAPS, sc->name,
                                  sizeof sc->name, err);
    if (sc->fd < 0) {
        int r = sc->fd;
        free(sc);
        return r;
    }
    sc->id = strchr(sc->name, '.') + 1;
    sc->path = sbx__strdup_printf("%s/tmp/%s", s->root, sc->name);
    if (!sc->path) {
        sbx_error e = SBX_ERROR_INIT;
        sbx_scratch_free(sc, &e);
        return sbx_error_set(err, SBX_ENOMEM, "scratch dir: out of memory");
    }
    *out = sc;
    return 0;
}

const char *sbx_scratch_path(const sbx_scratch *sc) { return sc->path; }
const char *sbx_scratch_id(const sbx_scratch *sc) { return sc->id; }

int sbx_scratch_free(sbx_scratch *sc, sbx_error *err)
{
    if (!sc)
        return 0;
    int r = 0;
    if (sc->path) {
        r = sbx__rm_rf(sc->path, err);
        if (r < 0)
            sbx_error_wrap(err, "removing scratch dir"); /* the reaper retries later */
    }
    if (sc->fd >= 0) {
        flock(sc->fd, LOCK_UN); /* after the removal; also for any forked copy of the fd */
        close(sc->fd);
    }
    free(sc->path);
    free(sc);
    return r;
}

void sbx_scratch_release(sbx_scratch *sc)
{
    if (!sc)
        return;
    if (sc->fd >= 0) {
        flock(sc->fd, LOCK_UN);
        close(sc->fd);
    }
    free(sc->path);
    free(sc);
}

/* ---- the reaper ---------------------------------------------------------- */

/* A writer died after linking its named temp file into place but before its
 * record committed: remove the unrecorded object (same inode) so the store is
 * back to "not stored". */
static void undo_half_link(sbx_store *s, char kind, const char *hex, const struct stat *tst)
{
    sbx_error err = SBX_ERROR_INIT;
    char digest[SBX_DIGEST_BUFSZ], rel[128];
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    sbx_obj_kind k = kind == 'b' ? SBX_OBJ_BLOB : SBX_OBJ_LAYER;
    sbx_store__obj_relpath(rel, sizeof rel, k, hex, kind == 'g' ? SBX_LAYER_GZIP : SBX_LAYER_ZSTD);
    if (sbx_store__begin(s, &err) < 0)
        return;
    int have = sbx_store__exists(s,
                                 k == SBX_OBJ_LAYER ? "SELECT 1 FROM layers WHERE diff_id=?"
                                                    : "SELECT 1 FROM blobs WHERE digest=?",
                                 digest, &err);
    struct stat fst;
    if (have == 0 && fstatat(s->root_fd, rel, &fst, AT_SYMLINK_NOFOLLOW) == 0 &&
        fst.st_ino == tst->st_ino && fst.st_dev == tst->st_dev)
        unlinkat(s->root_fd, rel, 0);
    sbx_store__rollback(s);
}

static bool id_valid(const char *id)
{
    if (strlen(id) != 12)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

/* After "<kind>.": "<id>", or for a named object file (b, l) "<64 hex>.<id>".
 * The hex goes to hex ("" when none); false for any other name, such as the
 * "w.<pid>.<start>.<rand>" of an older sbx-image still running on this store
 * (it has no lock to test: it is left to that version's own reaper). */
static bool entry_name_valid(const char *kind, const char *rest, char hex[65])
{
    hex[0] = '\0';
    if ((!strcmp(kind, "b") || !strcmp(kind, "l") || !strcmp(kind, "g")) &&
        strlen(rest) == 64 + 1 + 12 &&
        rest[64] == '.') {
        for (size_t i = 0; i < 64; i++)
            if (!((rest[i] >= '0' && rest[i] <= '9') || (rest[i] >= 'a' && rest[i] <= 'f')))
                return false;
        memcpy(hex, rest, 64);
        hex[64] = '\0';
        rest += 65;
    }
    return id_valid(rest);
}

/* With tmp/ held exclusively (no maker is between create and rename), every
 * ".n." entry is a dead maker's: an empty file, or a dir with at most the
 * owner mark. */
static void remove_unfinished(int tfd)
{
    int dfd = openat(tfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset */
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    /* Never wait: a maker mid-creation is microseconds away from done, and
     * the next reaper will look again. */
    if (flock(tfd, LOCK_EX | LOCK_NB) == 0) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, NEW_PREFIX, strlen(NEW_PREFIX)))
                continue;
            if (unlinkat(tfd, de->d_name, 0) == 0)
                continue;
            int sub = openat(tfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                unlinkat(sub, OWNER_MARK, 0);
                close(sub);
            }
            unlinkat(tfd, de->d_name, AT_REMOVEDIR);
        }
        flock(tfd, LOCK_UN);
    }
    closedir(d);
}

int sbx_store_scratch_reap(sbx_store *s, const char *kind, sbx_scratch_reap_fn fn, void *ud,
                           unsigned *removed, sbx_error *err)
{
    if (removed)
        *removed = 0;
    int tfd = open_tmp(s, err);
    if (tfd < 0)
        return tfd;
    remove_unfinished(tfd);
    DIR *d = fdopendir(tfd);
    if (!d) {
        close(tfd);
        return sbx_store__io_err(s, err, errno, "list tmp/");
    }
    size_t kl = kind ? strlen(kind) : 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        const char *base = name;
        const char *dot = strchr(base, '.');
        if (name[0] == '.' || !dot || dot == base)
            continue; /* ".", "..", ".n." (see above), and names that are not ours */
        char k[17];
        size_t klen = (size_t)(dot - base);
        if (klen >= sizeof k)
            continue;
        memcpy(k, base, klen);
        k[klen] = '\0';
        char hex[65];
        if (!kind_valid(k) || (kind && (klen != kl || memcmp(k, kind, kl))) ||
            !entry_name_valid(k, dot + 1, hex))
            continue;
        _cleanup_close_ int fd = openat(tfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
            continue; /* its maker holds it */
        struct stat st;
        if (fstat(fd, &st) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            if (st.st_nlink > 1 && hex[0])
                undo_half_link(s, base[0], hex, &st);
            if (unlinkat(tfd, name, 0) == 0 && removed)
                (*removed)++;
            continue;
        }
        if (!S_ISDIR(st.st_mode))
            continue;
        _cleanup_free_ char *path = sbx__strdup_printf("%s/tmp/%s", s->root, name);
        if (!path)
            continue;
        bool owner_reaps = faccessat(fd, OWNER_MARK, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        sbx_error e = SBX_ERROR_INIT;
        if (fn) {
            if (fn(ud, path, dot + 1, &e) < 0) {
                sbx__log(s->ctx, SBX_LOG_WARN, "leaving '%s': %s", path, e.msg);
                continue;
            }
        } else if (owner_reaps) {
            continue; /* its module's reaper knows what else it holds */
        }
        if (sbx__mounted_below(path)) {
            sbx__log(s->ctx, SBX_LOG_WARN, "leaving '%s': something is mounted in it", path);
            continue;
        }
        if (sbx__rm_rf(path, &e) == 0) {
            sbx__log(s->ctx, SBX_LOG_DEBUG, "removed '%s', left by a process that died", path);
            if (removed)
                (*removed)++;
        }
    }
    closedir(d);
    return 0;
}

void sbx_store__clean_tmp(sbx_store *s)
{
    sbx_error err = SBX_ERROR_INIT;
    sbx_store_scratch_reap(s, NULL, NULL, NULL, NULL, &err);
}

/* ---- named locks --------------------------------------------------------- */

int sbx_store_lock_named(int *fd_out, sbx_store *s, const char *name, sbx_ctx *ctx,
                         sbx_error *err)
{
    return sbx_store_lock_named_wait(fd_out, s, name, 0, ctx, err);
}

int sbx_store_lock_named_wait(int *fd_out, sbx_store *s, const char *name,
                              unsigned timeout_seconds, sbx_ctx *ctx, sbx_error *err)
{
    *fd_out = -1;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return sbx_error_set(err, SBX_EINVAL, "lock name '%s': want [a-z0-9_-]", name);
    char rel[128];
    snprintf(rel, sizeof rel, "locks/%s.lock", name);
    int fd = openat(s->root_fd, rel, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx_store__io_err(s, err, errno, "open lock");
    uint64_t deadline = timeout_seconds
                            ? sbx__now_monotonic_ns() + (uint64_t)timeout_seconds * 1000000000ull
                            : 0;
    if (sbx__flock_wait_until(fd, LOCK_EX, ctx, deadline, err) < 0) {
        close(fd);
        return sbx_error_wrap(err, "waiting for the lock '%s'", name);
    }
    *fd_out = fd;
    return 0;
}
