/* Per-file content hash cache: (dev, inode, size, mtime_ns, ctime_ns) ->
 * sha256 of the content.
 *
 * One file, <cache dir>/file-hashes.v1, read whole at open and replaced
 * atomically (temp file + rename) at close when something was added, so a
 * reader never sees half a cache and concurrent writers lose at most each
 * other's additions.  It is not fsynced: a cache may be lost in a power cut,
 * and the trailing sha256 over the whole file makes a torn or zero-filled one
 * read as empty rather than as wrong hashes.  A missing, foreign or damaged
 * file is an empty cache.  In memory: an open-addressing table keyed by
 * (dev, inode); an entry whose size or times differ is a miss and is
 * replaced.  Layout: "SBXHC1\n\0", u64 count, count records of five u64/i64
 * fields and 32 hash bytes, native byte order (the cache is local), then the
 * sha256 of everything before it.
 */
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "recipe_internal.h"

#define MAGIC "SBXHC1\n"
/* The file keeps at most this many entries (18 MiB): those used by the last
 * run first, then others, so entries of deleted files and old trees age out. */
#define KEEP_ENTRIES (1u << 18)
#define MAX_TABLE (4 * (size_t)KEEP_ENTRIES) /* slots; the table is kept under half full */

static size_t g_keep = KEEP_ENTRIES; /* lowered by tests only */

void rcp_hash_cache_set_keep(size_t n) { g_keep = n && n < KEEP_ENTRIES ? n : KEEP_ENTRIES; }

typedef struct rec {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    unsigned char hash[32];
} rec;

typedef struct slot {
    rec r;        /* dev == 0 && ino == 0: empty */
    bool touched; /* looked up or added by this run */
} slot;

struct rcp_hash_cache {
    pthread_mutex_t lock;
    char *path;
    slot *slots;
    size_t cap, used;
    bool dirty;
    const sbx_ctx *ctx; /* of the call that opened it: debug logs */
};

int sbx_recipe_cache_dir(char *buf, size_t len, sbx_error *err)
{
    const char *e = getenv("SBX_CACHE_DIR");
    int n;
    if (e && *e)
        n = snprintf(buf, len, "%s", e);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/var/cache/sbx-image");
    else if ((e = getenv("XDG_CACHE_HOME")) && *e == '/')
        n = snprintf(buf, len, "%s/sbx-image", e);
    else if ((e = getenv("HOME")) && *e)
        n = snprintf(buf, len, "%s/.cache/sbx-image", e);
    else
        return sbx_error_set(err, SBX_ENOTFOUND,
                             "find the cache directory: set SBX_CACHE_DIR or HOME");
    if (n < 0 || (size_t)n >= len)
        return sbx_error_set(err, SBX_ELIMIT, "find the cache directory: path too long");
    return 0;
}

static size_t slot_of(const rcp_hash_cache *c, uint64_t dev, uint64_t ino)
{
    uint64_t h = (ino * 0x9E3779B97F4A7C15ull) ^ (dev * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    return (size_t)h & (c->cap - 1);
}

static bool is_empty(const rec *r) { return r->dev == 0 && r->ino == 0; }

static slot *find(rcp_hash_cache *c, uint64_t dev, uint64_t ino)
{
    for (size_t i = slot_of(c, dev, ino);; i = (i + 1) & (c->cap - 1)) {
        slot *s = &c->slots[i];
        if ((s->r.dev == dev && s->r.ino == ino) || is_empty(&s->r))
            return s;
    }
}

static bool insert(rcp_hash_cache *c, const rec *in, bool touched)
{
    if (is_empty(in))
        return false;
    slot *s = find(c, in->dev, in->ino);
    if (is_empty(&s->r)) {
        if (c->used + 1 > c->cap / 2)
            return false; /* full: the table never grows past half */
        c->used++;
    }
    s->r = *in;
    s->touched = touched;
    return true;
}

static void load(rcp_hash_cache *c)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, c->path, 48 + (size_t)KEEP_ENTRIES * sizeof(rec), &err) < 0)
        return;
    uint64_t count;
    unsigned char sum[32];
    if (len < 48 || memcmp(data, MAGIC, 8) != 0)
        return;
    memcpy(&count, data + 8, 8);
    if (count > KEEP_ENTRIES || len != 48 + count * sizeof(rec))
        return;
    sbx__sha256_raw(data, len - 32, sum);
    if (memcmp(sum, data + len - 32, 32) != 0)
        return;
    for (uint64_t i = 0; i < count; i++) {
        rec r;
        memcpy(&r, data + 16 + i * sizeof(rec), sizeof r);
        insert(c, &r, false);
    }
}

rcp_hash_cache *rcp_hash_cache_open(const char *dir, const sbx_ctx *ctx)
{
    char buf[4096];
    sbx_error err = SBX_ERROR_INIT;
    if (!dir) {
        if (sbx_recipe_cache_dir(buf, sizeof buf, &err) < 0) {
            sbx__log(ctx, SBX_LOG_DEBUG, "file hash cache off: %s", err.msg);
            return NULL;
        }
        dir = buf;
    }
    rcp_hash_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->ctx = ctx;
    c->path = sbx__strdup_printf("%s/file-hashes.v1", dir);
    c->cap = 1u << 16;
    /* Size the table for what is on disk, with room to add. */
    struct stat st;
    if (c->path && stat(c->path, &st) == 0 && st.st_size > 16) {
        size_t n = (size_t)st.st_size / sizeof(rec);
        while (c->cap < 4 * n && c->cap < MAX_TABLE)
            c->cap <<= 1;
    }
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->path || !c->slots) {
        free(c->path);
        free(c->slots);
        free(c);
        return NULL;
    }
    load(c);
    return c;
}

static void grow(rcp_hash_cache *c)
{
    if (c->used + 1 <= c->cap / 2 || c->cap >= MAX_TABLE)
        return;
    slot *old = c->slots;
    size_t oldcap = c->cap;
    slot *n = calloc(oldcap * 2, sizeof *n);
    if (!n)
        return;
    c->slots = n;
    c->cap = oldcap * 2;
    c->used = 0;
    for (size_t i = 0; i < oldcap; i++)
        insert(c, &old[i].r, old[i].touched);
    free(old);
}

bool rcp_hash_cache_get(rcp_hash_cache *c, const rcp_copy_node *n, unsigned char out[32])
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    slot *s = find(c, n->dev, n->ino);
    const rec *r = &s->r;
    bool hit = !is_empty(r) && r->dev == n->dev && r->ino == n->ino && r->size == n->size &&
               r->mtime_ns == n->mtime_ns && r->ctime_ns == n->ctime_ns;
    if (hit) {
        memcpy(out, r->hash, 32);
        if (!s->touched && c->used > g_keep)
            c->dirty = true; /* over the cap, being used decides what is kept */
        s->touched = true;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void rcp_hash_cache_put(rcp_hash_cache *c, const rcp_copy_node *n, const unsigned char h[32])
{
    if (!c)
        return;
    rec r = {n->dev, n->ino, n->size, n->mtime_ns, n->ctime_ns, {0}};
    memcpy(r.hash, h, 32);
    pthread_mutex_lock(&c->lock);
    grow(c);
    if (insert(c, &r, true))
        c->dirty = true;
    pthread_mutex_unlock(&c->lock);
}

/* Temp file + rename, without fsync (see the top of this file). */
static int write_replace(const char *path, const void *data, size_t len, sbx_error *err)
{
    _cleanup_free_ char *tmp = sbx__strdup_printf("%s.tmp.XXXXXX", path);
    if (!tmp)
        return sbx_error_set(err, SBX_ENOMEM, "allocate path");
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "create '%s'", tmp);
    if (sbx__write_all(fd, data, len, err) < 0 || rename(tmp, path) < 0) {
        if (!err->code)
            sbx_error_sys(err, SBX_EIO, errno, "rename '%s'", tmp);
        unlink(tmp);
        return err->code;
    }
    return 0;
}

/* Write up to g_keep records: touched ones first. */
static void save(rcp_hash_cache *c)
{
    size_t keep = c->used < g_keep ? c->used : g_keep;
    _cleanup_free_ char *data = malloc(48 + keep * sizeof(rec));
    if (!data)
        return;
    memcpy(data, MAGIC, 8);
    uint64_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->cap && count < keep; i++) {
            const slot *s = &c->slots[i];
            if (is_empty(&s->r) || s->touched != (pass == 0))
                continue;
            memcpy(data + 16 + count * sizeof(rec), &s->r, sizeof(rec));
            count++;
        }
    }
    memcpy(data + 8, &count, 8);
    size_t len = 16 + count * sizeof(rec);
    sbx__sha256_raw(data, len, (unsigned char *)data + len);
    len += 32;
    sbx_error err = SBX_ERROR_INIT;
    _cleanup_free_ char *dir = strdup(c->path);
    if (!dir)
        return;
    *strrchr(dir, '/') = '\0';
    if (sbx__mkdir_p(dir, 0700, &err) < 0 || write_replace(c->path, data, len, &err) < 0)
        sbx__log(c->ctx, SBX_LOG_DEBUG, "file hash cache not saved: %s", err.msg);
}

void rcp_hash_cache_close(rcp_hash_cache *c)
{
    if (!c)
        return;
    if (c->dirty)
        save(c);
    pthread_mutex_destroy(&c->lock);
    free(c->slots);
    free(c->path);
    free(c);
}
