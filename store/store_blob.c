/* Blobs: exact bytes (manifests, configs) under blobs/sha256/<hex>. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "store_internal.h"

struct sbx_blob_writer {
    sbx_store *s;
    int fd;
    char tmpname[128];
    sbx__sha256 *hash;
    uint64_t size;
    int failed; /* a write failed: the hash no longer matches the file */
    char expected[SBX_DIGEST_BUFSZ];
    char *media_type;
    /* put_manifest: child edges to record with the blob. */
    const sbx_store_child *children;
    size_t nchildren;
};

int sbx_store_blob_begin(sbx_blob_writer **out, sbx_store *s, const char *expected_digest,
                         sbx_error *err)
{
    *out = NULL;
    if (expected_digest && sbx__digest_parse(NULL, expected_digest, err) < 0)
        return sbx_error_wrap(err, "write blob");
    sbx_blob_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sbx_error_set(err, SBX_ENOMEM, "write blob: out of memory");
    w->s = s;
    w->fd = -1;
    if (expected_digest)
        snprintf(w->expected, sizeof w->expected, "%s", expected_digest);
    if (sbx__sha256_new(&w->hash, err) < 0) {
        free(w);
        return err->code;
    }
    w->fd = sbx_store__tmp_entry(s, "w", false, false, w->tmpname, sizeof w->tmpname, err);
    if (w->fd < 0) {
        int rc = err->code;
        sbx_error_wrap(err, "write blob");
        w->fd = -1;
        sbx_blob_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int sbx_blob_writer_write(sbx_blob_writer *w, const void *buf, size_t len, sbx_error *err)
{
    if (len == 0)
        return 0;
    sbx__sha256_update(w->hash, buf, len);
    w->size += len;
    const char *b = buf;
    while (len > 0) {
        ssize_t n = write(w->fd, b, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->failed = 1;
            return sbx_store__io_err(w->s, err, errno, "write blob");
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

void sbx_blob_writer_abort(sbx_blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        char rel[160];
        snprintf(rel, sizeof rel, "tmp/%s", w->tmpname);
        unlinkat(w->s->root_fd, rel, 0);
    }
    sbx__sha256_free(w->hash);
    free(w->media_type);
    free(w);
}

typedef struct {
    sbx_blob_writer *w;
    const char *digest;
} blob_insert_ctx;

static int check_children(sbx_store *s, const sbx_store_child *c, size_t n, sbx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!sbx__digest_valid(c[i].digest))
            return sbx_error_set(err, SBX_EINVAL, "invalid child digest '%s'",
                                 c[i].digest ? c[i].digest : "(null)");
        const char *sql = c[i].kind == SBX_CHILD_LAYER ? "SELECT 1 FROM layers WHERE diff_id=?"
                                                       : "SELECT 1 FROM blobs WHERE digest=?";
        if (c[i].kind != SBX_CHILD_BLOB && c[i].kind != SBX_CHILD_LAYER &&
            c[i].kind != SBX_CHILD_MANIFEST)
            return sbx_error_set(err, SBX_EINVAL, "invalid child kind %d for '%s'",
                                 (int)c[i].kind, c[i].digest);
        int have = sbx_store__exists(s, sql, c[i].digest, err);
        if (have < 0)
            return have;
        if (!have)
            return sbx_error_set(err, SBX_ENOTFOUND, "%s '%s' is not in the store",
                                 c[i].kind == SBX_CHILD_LAYER      ? "layer"
                                 : c[i].kind == SBX_CHILD_MANIFEST ? "manifest"
                                                                   : "blob",
                                 c[i].digest);
    }
    return 0;
}

static int blob_insert(sbx_store *s, void *ud, int present, sbx_error *err)
{
    blob_insert_ctx *c = ud;
    sbx_blob_writer *w = c->w;
    if (w->children && check_children(s, w->children, w->nchildren, err) < 0)
        return err->code;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (!present) {
        if (sbx_store__prepare(s, &st,
                               "INSERT INTO blobs(digest, size, media_type, is_manifest, created)"
                               " VALUES(?, ?, ?, ?, ?)",
                               err) < 0)
            return err->code;
        sqlite3_bind_text(st, 1, c->digest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)w->size);
        sqlite3_bind_text(st, 3, w->media_type, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, w->children != NULL);
        sqlite3_bind_int64(st, 5, sbx__now_unix());
        if (sqlite3_step(st) != SQLITE_DONE)
            return sbx_store__sql_err(s, err, "record blob");
    } else if (w->children || w->media_type) {
        /* Stored before as a plain blob: now it is known as a manifest. */
        if (sbx_store__prepare(s, &st,
                               "UPDATE blobs SET is_manifest = max(is_manifest, ?),"
                               " media_type = coalesce(media_type, ?) WHERE digest=?",
                               err) < 0)
            return err->code;
        sqlite3_bind_int(st, 1, w->children != NULL);
        sqlite3_bind_text(st, 2, w->media_type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->digest, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return sbx_store__sql_err(s, err, "record blob");
    }
    for (size_t i = 0; w->children && i < w->nchildren; i++) {
        _cleanup_stmt_ sqlite3_stmt *ci = NULL;
        if (sbx_store__prepare(s, &ci,
                               "INSERT OR IGNORE INTO children(parent, kind, child)"
                               " VALUES(?, ?, ?)",
                               err) < 0)
            return err->code;
        sqlite3_bind_text(ci, 1, c->digest, -1, SQLITE_STATIC);
        sqlite3_bind_int(ci, 2, (int)w->children[i].kind);
        sqlite3_bind_text(ci, 3, w->children[i].digest, -1, SQLITE_STATIC);
        if (sqlite3_step(ci) != SQLITE_DONE)
            return sbx_store__sql_err(s, err, "record manifest children");
    }
    return 0;
}

int sbx_blob_writer_commit(sbx_blob_writer *w, char digest_out[SBX_DIGEST_BUFSZ],
                           sbx_error *err)
{
    char digest[SBX_DIGEST_BUFSZ];
    sbx_store *s = w->s;
    struct stat st;
    if (w->failed || fstat(w->fd, &st) < 0 || (uint64_t)st.st_size != w->size) {
        sbx_error_set(err, SBX_EIO, "store blob: an earlier write failed; nothing stored");
        sbx_blob_writer_abort(w);
        return SBX_EIO;
    }
    sbx__sha256_final(w->hash, digest);
    if (w->expected[0] && strcmp(digest, w->expected) != 0) {
        sbx_error_set(err, SBX_EDIGEST, "write blob: digest mismatch: expected '%s', got '%s'",
                      w->expected, digest);
        sbx_error_where(err, "%s", w->expected);
        sbx_blob_writer_abort(w);
        return SBX_EDIGEST;
    }
    if (fsync(w->fd) < 0) {
        int rc = sbx_store__io_err(s, err, errno, "sync blob");
        sbx_blob_writer_abort(w);
        return rc;
    }
    /* The fd stays open through the commit: its flock tells the reaper the
     * temp file (renamed, then linked) is still someone's. */
    blob_insert_ctx ctx = {w, digest};
    int rc = sbx_store__commit_object(s, SBX_OBJ_BLOB, 0, NULL, w->tmpname, digest, blob_insert,
                                      &ctx, err);
    close(w->fd);
    w->fd = -1;
    sbx_blob_writer_abort(w); /* the temp file is gone; frees the writer */
    if (rc < 0)
        return sbx_error_wrap(err, "store blob '%s'", digest);
    if (digest_out)
        memcpy(digest_out, digest, SBX_DIGEST_BUFSZ);
    return 0;
}

static int put_bytes(sbx_store *s, const void *data, size_t len, const char *media_type,
                     const char *expected, const sbx_store_child *children, size_t nchildren,
                     char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    sbx_blob_writer *w = NULL;
    if (sbx_store_blob_begin(&w, s, expected, err) < 0)
        return err->code;
    if (media_type && !(w->media_type = strdup(media_type))) {
        sbx_blob_writer_abort(w);
        return sbx_error_set(err, SBX_ENOMEM, "write blob: out of memory");
    }
    w->children = children;
    w->nchildren = nchildren;
    if (sbx_blob_writer_write(w, data, len, err) < 0) {
        sbx_blob_writer_abort(w);
        return err->code;
    }
    return sbx_blob_writer_commit(w, digest_out, err);
}

int sbx_store_put_blob(sbx_store *s, const void *data, size_t len, const char *media_type,
                       const char *expected_digest, char digest_out[SBX_DIGEST_BUFSZ],
                       sbx_error *err)
{
    return put_bytes(s, data, len, media_type, expected_digest, NULL, 0, digest_out, err);
}

int sbx_store_put_manifest(sbx_store *s, const void *data, size_t len, const char *media_type,
                           const char *expected_digest, const sbx_store_child *children,
                           size_t nchildren, char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    static const sbx_store_child none[1];
    if (nchildren && !children)
        return sbx_error_set(err, SBX_EINVAL, "store manifest: children missing");
    int rc = put_bytes(s, data, len, media_type, expected_digest, nchildren ? children : none,
                       nchildren, digest_out, err);
    return rc < 0 ? rc : 0;
}

/* Present and recorded; adds it to this handle's lease so gc keeps it while
 * the caller relies on the answer. */
int sbx_store__has(sbx_store *s, sbx_obj_kind kind, const char *digest, sbx_error *err)
{
    sbx_error local = SBX_ERROR_INIT;
    if (!err)
        err = &local; /* callers that only want the answer */
    if (!sbx__digest_valid(digest))
        return 0;
    const char *sql = kind == SBX_OBJ_LAYER ? "SELECT 1 FROM layers WHERE diff_id=?"
                                            : "SELECT 1 FROM blobs WHERE digest=?";
    const char *what = kind == SBX_OBJ_LAYER ? "layer" : "blob";
    sbx_layer_format fmt = SBX_LAYER_ZSTD;
    int have = kind == SBX_OBJ_LAYER ? sbx_store__layer_lookup(s, digest, &fmt, err)
                                     : sbx_store__exists(s, sql, digest, err);
    if (have < 0)
        return sbx_error_wrap(err, "looking up %s '%s'", what, digest);
    char rel[128];
    sbx_store__obj_relpath(rel, sizeof rel, kind, digest + 7, fmt);
    if (have == 0)
        return 0;
    if (faccessat(s->root_fd, rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0; /* a record whose file is gone (fsck repairs it) */
        return sbx_store__io_err(s, err, errno, "look up the object file");
    }
    /* Present only once leased: the caller relies on gc keeping it. */
    int r = sbx_store__lock(s, 0, err);
    sbx_store__relaxed(s, true);
    if (r == 0 && (r = sbx_store__begin(s, err)) == 0) {
        have = sbx_store__exists(s, sql, digest, err);
        r = have < 0 ? have : 0;
        if (r == 0 && have == 1 && (r = sbx_store__lease_self(s, digest, err)) == 0)
            r = sbx_store__commit(s, err);
        sbx_store__rollback(s);
    }
    sbx_store__relaxed(s, false);
    sbx_store__unlock(s);
    if (r < 0)
        return sbx_error_wrap(err, "leasing %s '%s'", what, digest);
    return have == 1;
}

int sbx_store_has_blob(sbx_store *s, const char *digest, sbx_error *err)
{
    return sbx_store__has(s, SBX_OBJ_BLOB, digest, err);
}

int sbx_store_read_blob(sbx_store *s, const char *digest, size_t max, char **out, size_t *len,
                        sbx_error *err)
{
    const char *hex;
    *out = NULL;
    if (sbx__digest_parse(&hex, digest, err) < 0)
        return sbx_error_wrap(err, "read blob");
    char rel[128];
    sbx_store__obj_relpath(rel, sizeof rel, SBX_OBJ_BLOB, hex, 0);
    _cleanup_close_ int fd = openat(s->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            sbx_error_set(err, SBX_ENOTFOUND, "read blob '%s': not in store '%s'", digest,
                          s->root);
            sbx_error_where(err, "%s", digest);
            return SBX_ENOTFOUND;
        }
        return sbx_store__io_err(s, err, errno, "open blob");
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_store__io_err(s, err, errno, "stat blob");
    if ((uint64_t)st.st_size > max) {
        sbx_error_set(err, SBX_ELIMIT, "read blob '%s': %llu bytes exceeds the limit of %zu",
                      digest, (unsigned long long)st.st_size, max);
        sbx_error_where(err, "%s", digest);
        return SBX_ELIMIT;
    }
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "read blob '%s': out of memory", digest);
    ssize_t n = sbx__read_full(fd, buf, (size_t)st.st_size);
    if (n < 0)
        return sbx_store__io_err(s, err, errno, "read blob");
    buf[n] = '\0';
    char got[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(buf, (size_t)n, got);
    if (strcmp(got, digest) != 0) {
        sbx_error_set(err, SBX_EDIGEST,
                      "read blob '%s': stored file is damaged (hashes to '%s'); run "
                      "'sbx-image fsck'",
                      digest, got);
        sbx_error_where(err, "%s/%s", s->root, rel);
        return SBX_EDIGEST;
    }
    if (len)
        *len = (size_t)n;
    *out = SBX_STEAL(buf);
    return 0;
}
