/* The Merkle content hash of a copy source, computed in parallel.
 *
 * Leaves (file contents) are hashed by one worker thread per online CPU
 * (at most 8) pulling files off a shared counter; directories are then hashed
 * bottom-up in one thread.  The per-file cache (hash_cache.c) is consulted
 * first; an entry is only stored when the file did not change while it was
 * read and its ctime is old enough that any later change must give it a new
 * ctime (the "racy clean" guard git uses for its index).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "recipe_internal.h"

__thread rcp_copy_stats rcp_copy_last_stats;

#define READ_CHUNK (128u << 10) /* stays in L2 between the copy and the hash */
#define MAX_THREADS 8

typedef struct job {
    rcp_copy_node **files;
    size_t n_files;
    size_t next; /* atomic */
    rcp_hash_cache *cache;
    int64_t safe_before_ns; /* cache only files whose ctime is older than this */
    pthread_mutex_t lock;   /* guards err, failed, stats */
    bool failed;
    sbx_error err;
    size_t hits, bytes;
    /* Progress, reported by the calling thread only (sinks need not be
     * thread-safe): bytes of finished files, atomic. */
    const char *progress_id;
    uint64_t done_bytes, total_bytes, last_report_ns;
    const sbx_ctx *sctx; /* the call's context: progress, log, cancel */
    int ctx_fd;          /* the build context: files are opened beneath it */
    size_t ctx_len;      /* strip from a node's path to get it relative to ctx_fd */
} job;

#define PROGRESS_MIN_BYTES (64u << 20) /* smaller sources finish before anyone looks */
#define PROGRESS_EVERY_NS 200000000ull

static void report(job *j)
{
    uint64_t now = sbx__now_monotonic_ns();
    if (now - j->last_report_ns < PROGRESS_EVERY_NS)
        return;
    j->last_report_ns = now;
    sbx__progress(j->sctx, j->progress_id, "hash",
                  __atomic_load_n(&j->done_bytes, __ATOMIC_RELAXED), j->total_bytes);
}

static void collect_files(rcp_copy_node *n, rcp_copy_node ***v, size_t *len, size_t *cap,
                          bool *oom)
{
    if (*oom)
        return;
    if (n->type == S_IFREG) {
        if (*len == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            rcp_copy_node **nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                *oom = true;
                return;
            }
            *v = nv;
            *cap = nc;
        }
        (*v)[(*len)++] = n;
    }
    for (size_t i = 0; i < n->n_children; i++)
        collect_files(n->children[i], v, len, cap, oom);
}

static int hash_file(const job *j, rcp_copy_node *n, EVP_MD_CTX *ctx, unsigned char *buf,
                     bool *stable, size_t *bytes, sbx_error *err)
{
    /* Beneath the context, through no symlink: what the walk saw, or an
     * error.  O_NONBLOCK: never wait on a fifo swapped in after the walk. */
    _cleanup_close_ int fd = strlen(n->path) >= j->ctx_len
                                 ? sbx__open_beneath(j->ctx_fd, n->path + j->ctx_len,
                                                     O_RDONLY | O_NONBLOCK)
                                 : -1;
    if (fd < 0)
        return errno == ELOOP || errno == EXDEV
                   ? sbx_error_set(err, SBX_EINVAL, "hash '%s': a directory on its way was "
                                   "replaced by a symlink while the context was read", n->path)
                   : sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                                   "open '%s' to hash it", n->path);
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    uint64_t total = 0;
    /* Read up to the size seen by the walk; a file that grows or shrinks
     * meanwhile shows in the fstat below and is not cached. */
    while (total < n->size) {
        size_t want = n->size - total < READ_CHUNK ? (size_t)(n->size - total) : READ_CHUNK;
        ssize_t r = read(fd, buf, want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return sbx_error_sys(err, SBX_EIO, errno, "read '%s'", n->path);
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        total += (uint64_t)r;
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, n->hash, &len);
    struct stat after;
    if (fstat(fd, &after) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "stat '%s'", n->path);
    if (!S_ISREG(after.st_mode) || (uint64_t)after.st_ino != n->ino ||
        (uint64_t)after.st_dev != n->dev)
        return sbx_error_set(err, SBX_EIO, "hash '%s': it was replaced while the context was read",
                             n->path);
    if (total != n->size || (uint64_t)after.st_size != n->size)
        return sbx_error_set(err, SBX_EIO,
                             "hash '%s': it changed size while it was read (try again)", n->path);
    *stable = (int64_t)after.st_mtim.tv_sec * 1000000000 + after.st_mtim.tv_nsec == n->mtime_ns &&
              (int64_t)after.st_ctim.tv_sec * 1000000000 + after.st_ctim.tv_nsec == n->ctime_ns;
    *bytes = (size_t)total;
    return 0;
}

static void work(job *j, bool reporter);

static void *worker(void *arg)
{
    work(arg, false);
    return NULL;
}

static void work(job *j, bool reporter)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(READ_CHUNK);
    size_t hits = 0, bytes = 0;
    if (!ctx || !buf) {
        pthread_mutex_lock(&j->lock);
        if (!j->failed)
            sbx_error_set(&j->err, SBX_ENOMEM, "allocate hashing buffers");
        j->failed = true;
        pthread_mutex_unlock(&j->lock);
        goto out;
    }
    for (;;) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->n_files || __atomic_load_n(&j->failed, __ATOMIC_RELAXED))
            break;
        rcp_copy_node *n = j->files[i];
        if (j->cache && rcp_hash_cache_get(j->cache, n, n->hash)) {
            hits++;
            __atomic_add_fetch(&j->done_bytes, n->size, __ATOMIC_RELAXED);
            continue;
        }
        sbx_error e = SBX_ERROR_INIT;
        bool stable = false;
        size_t got = 0;
        if (sbx__check_cancel(j->sctx, &e) < 0 || hash_file(j, n, ctx, buf, &stable, &got, &e) < 0) {
            pthread_mutex_lock(&j->lock);
            if (!j->failed)
                j->err = e;
            __atomic_store_n(&j->failed, true, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&j->lock);
            break;
        }
        bytes += got;
        __atomic_add_fetch(&j->done_bytes, n->size, __ATOMIC_RELAXED);
        if (reporter && j->progress_id)
            report(j);
        if (j->cache && stable && n->ctime_ns < j->safe_before_ns &&
            n->mtime_ns < j->safe_before_ns)
            rcp_hash_cache_put(j->cache, n, n->hash);
    }
out:
    pthread_mutex_lock(&j->lock);
    j->hits += hits;
    j->bytes += bytes;
    pthread_mutex_unlock(&j->lock);
    free(buf);
    EVP_MD_CTX_free(ctx);
}

static char type_char(const rcp_copy_node *n)
{
    switch (n->type) {
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    default: return n->executable ? 'x' : 'f';
    }
}

/* Directories and symlinks, bottom-up (files are already hashed). */
static int hash_tree(rcp_copy_node *n, EVP_MD_CTX *ctx)
{
    if (n->type == S_IFLNK) {
        sbx__sha256_raw(n->link_target, strlen(n->link_target), n->hash);
        return 0;
    }
    if (n->type != S_IFDIR)
        return 0;
    for (size_t i = 0; i < n->n_children; i++)
        if (hash_tree(n->children[i], ctx) < 0)
            return -1;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        return -1;
    for (size_t i = 0; i < n->n_children; i++) {
        const rcp_copy_node *c = n->children[i];
        char head[2 + 64 + 2];
        head[0] = type_char(c);
        head[1] = ' ';
        sbx__hex_encode(c->hash, 32, head + 2);
        head[66] = ' ';
        EVP_DigestUpdate(ctx, head, 67);
        EVP_DigestUpdate(ctx, c->name, strlen(c->name) + 1); /* with its NUL */
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, n->hash, &len);
    return 0;
}

/* How far back a ctime must be for a later change to be guaranteed to
 * produce a different one: filesystems with nanosecond timestamps need a
 * clock tick, others (FAT, some network filesystems) whole seconds. */
static int64_t racy_margin_ns(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) == 0) {
        switch ((unsigned long)sf.f_type) {
        case 0xEF53:     /* ext2/3/4 */
        case 0x58465342: /* xfs */
        case 0x9123683E: /* btrfs */
        case 0x01021994: /* tmpfs */
        case 0x794c7630: /* overlayfs */
        case 0x2fc12fc1: /* zfs */
            return 20 * 1000000LL;
        }
    }
    return 2 * 1000000000LL;
}

static int hash_files(rcp_copy_node *root, const char *context_dir, const char *src,
                      sbx_ctx *sctx, sbx_error *err)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    int64_t start_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    job j = {.lock = PTHREAD_MUTEX_INITIALIZER, .err = SBX_ERROR_INIT, .sctx = sctx};
    size_t cap = 0;
    bool oom = false;
    collect_files(root, &j.files, &j.n_files, &cap, &oom);
    if (oom) {
        free(j.files);
        return sbx_error_set(err, SBX_ENOMEM, "allocate file list");
    }
    j.safe_before_ns = start_ns - racy_margin_ns(context_dir);
    _cleanup_free_ char *ctx_real = realpath(context_dir, NULL);
    _cleanup_close_ int ctx_fd = ctx_real ? open(ctx_real, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (ctx_fd < 0) {
        free(j.files);
        return sbx_error_sys(err, SBX_EIO, errno, "open build context '%s'", context_dir);
    }
    j.ctx_fd = ctx_fd;
    j.ctx_len = strlen(ctx_real) + (strcmp(ctx_real, "/") ? 1 : 0);
    for (size_t i = 0; i < j.n_files; i++)
        j.total_bytes += j.files[i]->size;
    _cleanup_free_ char *id = NULL;
    if (j.total_bytes >= PROGRESS_MIN_BYTES) {
        id = sbx__strdup_printf("copy '%s'", src);
        j.progress_id = id;
        j.last_report_ns = sbx__now_monotonic_ns();
    }
    j.cache = j.n_files ? rcp_hash_cache_open(NULL, sctx) : NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nthreads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (size_t)ncpu;
    if (nthreads > j.n_files)
        nthreads = j.n_files;
    pthread_t tids[MAX_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < nthreads; i++) {
        if (pthread_create(&tids[started], NULL, worker, &j) != 0)
            break; /* fewer threads is still correct */
        started++;
    }
    if (j.n_files)
        work(&j, true);
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    rcp_copy_last_stats = (rcp_copy_stats){j.n_files, j.hits, j.bytes};
    sbx__log(sctx, SBX_LOG_DEBUG, "copy '%s': %zu files, %zu from the hash cache, %zu bytes hashed%s", src,
            j.n_files, j.hits, j.bytes, j.cache ? "" : " (no cache)");
    if (j.progress_id && !j.failed)
        sbx__progress(sctx, j.progress_id, "done", j.total_bytes, j.total_bytes);
    rcp_hash_cache_close(j.cache);
    free(j.files);
    pthread_mutex_destroy(&j.lock);
    if (j.failed) {
        *err = j.err;
        return err->code;
    }
    return 0;
}

int sbx_recipe_copy_digest(char out[SBX_DIGEST_BUFSZ], const char *context_dir, const char *src,
                           sbx_ctx *sctx, sbx_error *err)
{
    rcp_copy_node *root = NULL;
    if (rcp_copy_tree_build(&root, context_dir, src, err) < 0)
        return err->code;
    int rc = hash_files(root, context_dir, src, sctx, err);
    EVP_MD_CTX *ctx = rc == 0 ? EVP_MD_CTX_new() : NULL;
    if (rc == 0 && (!ctx || hash_tree(root, ctx) < 0))
        rc = sbx_error_set(err, SBX_EINTERNAL, "hash copy source '%s'", src);
    EVP_MD_CTX_free(ctx);
    if (rc == 0) {
        char line[16 + 64 + 1];
        int n = snprintf(line, sizeof line, "sbx-copy-v1 %c ", type_char(root));
        sbx__hex_encode(root->hash, 32, line + n);
        sbx__sha256_buf(line, strlen(line), out);
    }
    rcp_copy_tree_free(root);
    return rc;
}
