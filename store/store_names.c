/* Names (ref or recipe digest -> manifest digest), small key/value metadata,
 * and leases.  Every change is one transaction; changes that make something
 * reachable hold the lock file shared so gc cannot sweep in between. */
#include <string.h>

#include "store_internal.h"

#define NAME_MAX_LEN 1024

struct sbx_lease {
    sbx_store *s;
    int64_t id;
};

static int check_text(const char *what, const char *v, size_t max, sbx_error *err)
{
    if (!v || !*v)
        return sbx_error_set(err, SBX_EINVAL, "%s is empty", what);
    if (strlen(v) > max)
        return sbx_error_set(err, SBX_ELIMIT, "%s is longer than %zu bytes", what, max);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return sbx_error_set(err, SBX_EINVAL, "%s '%s' holds a control character", what, v);
    return 0;
}

static int name_not_found(sbx_store *s, const char *what, const char *name, sbx_error *err)
{
    return sbx_error_set(err, SBX_ENOTFOUND, "%s: no image named '%s' in store '%s'", what, name,
                         s->root);
}

int sbx_store_name_set(sbx_store *s, const char *name, const char *manifest_digest,
                       sbx_error *err)
{
    return sbx_store_name_set_ttl(s, name, manifest_digest, 0, err);
}

int sbx_store_name_set_ttl(sbx_store *s, const char *name, const char *manifest_digest,
                           int64_t ttl_seconds, sbx_error *err)
{
    if (check_text("name", name, NAME_MAX_LEN, err) < 0 ||
        sbx__digest_parse(NULL, manifest_digest, err) < 0)
        return sbx_error_wrap(err, "set name");
    if (ttl_seconds < 0 || ttl_seconds > SBX_NAME_TTL_MAX)
        return sbx_error_set(err, SBX_EINVAL, "set name '%s': expiry of %lld seconds is out of "
                             "range (0 to %lld)", name, (long long)ttl_seconds,
                             (long long)SBX_NAME_TTL_MAX);
    if (sbx_store__lock(s, 0, err) < 0)
        return err->code;
    int rc = sbx_store__begin(s, err);
    if (rc == 0) {
        int have = sbx_store__exists(s, "SELECT 1 FROM blobs WHERE digest=?", manifest_digest,
                                     err);
        if (have == 0) {
            sbx_error_set(err, SBX_ENOTFOUND, "set name '%s': manifest '%s' is not in the store",
                          name, manifest_digest);
            sbx_error_where(err, "%s", manifest_digest);
        }
        rc = have == 1 ? 0 : err->code;
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = sbx_store__prepare(s, &st,
                                "INSERT INTO names(name, digest, created, last_used, expires,"
                                " ttl) VALUES(?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT(name) DO"
                                " UPDATE SET digest=excluded.digest, created=excluded.created,"
                                " last_used=excluded.last_used, expires=excluded.expires,"
                                " ttl=excluded.ttl",
                                err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, manifest_digest, -1, SQLITE_STATIC);
        int64_t now = sbx__now_unix();
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int64(st, 4, ttl_seconds ? now + ttl_seconds : 0);
        sqlite3_bind_int64(st, 5, ttl_seconds);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sbx_store__sql_err(s, err, "set name");
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    sbx_store__unlock(s);
    return rc;
}

int sbx_store_name_get(sbx_store *s, const char *name, char digest_out[SBX_DIGEST_BUFSZ],
                       sbx_error *err)
{
    if (check_text("name", name, NAME_MAX_LEN, err) < 0)
        return sbx_error_wrap(err, "get name");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "SELECT digest FROM names WHERE name=?", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return name_not_found(s, "get name", name, err);
    if (rc != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "get name");
    snprintf(digest_out, SBX_DIGEST_BUFSZ, "%s", (const char *)sqlite3_column_text(st, 0));
    return 0;
}

static int name_remove_once(sbx_store *s, const char *name, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "DELETE FROM names WHERE name=?", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "remove name");
    if (sqlite3_changes(s->db) == 0)
        return name_not_found(s, "remove name", name, err);
    return 0;
}

int sbx_store_name_remove(sbx_store *s, const char *name, sbx_error *err)
{
    if (check_text("name", name, NAME_MAX_LEN, err) < 0)
        return sbx_error_wrap(err, "remove name");
    int rc = name_remove_once(s, name, err);
    if (rc == SBX_ENOSPC && sbx_store__reserve_release(s))
        rc = name_remove_once(s, name, err);
    return rc;
}

void sbx_name_entries_free(sbx_name_entry *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

int sbx_store_name_list(sbx_store *s, const char *prefix, sbx_name_entry **out, size_t *n,
                        sbx_error *err)
{
    *out = NULL;
    *n = 0;
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "SELECT name, digest, created, last_used, expires, ttl FROM names"
                           " WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, prefix ? prefix : "", -1, SQLITE_STATIC);
    sbx_name_entry *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            sbx_name_entry *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                sbx_name_entries_free(v, len);
                return sbx_error_set(err, SBX_ENOMEM, "list names: out of memory");
            }
            v = nv;
        }
        sbx_name_entry *e = &v[len];
        memset(e, 0, sizeof *e);
        e->name = strdup((const char *)sqlite3_column_text(st, 0));
        if (!e->name) {
            sbx_name_entries_free(v, len);
            return sbx_error_set(err, SBX_ENOMEM, "list names: out of memory");
        }
        snprintf(e->digest, sizeof e->digest, "%s", (const char *)sqlite3_column_text(st, 1));
        e->created = sqlite3_column_int64(st, 2);
        e->last_used = sqlite3_column_int64(st, 3);
        e->expires_at = sqlite3_column_int64(st, 4);
        e->ttl = sqlite3_column_int64(st, 5);
        len++;
    }
    if (rc != SQLITE_DONE) {
        sbx_name_entries_free(v, len);
        return sbx_store__sql_err(s, err, "list names");
    }
    *out = v;
    *n = len;
    return 0;
}

int sbx_store_touch(sbx_store *s, const char *digest, sbx_error *err)
{
    if (sbx__digest_parse(NULL, digest, err) < 0)
        return sbx_error_wrap(err, "mark used");
    int have = sbx_store__exists(s, "SELECT 1 FROM blobs WHERE digest=?", digest, err);
    if (have < 0)
        return have;
    if (!have) {
        sbx_error_set(err, SBX_ENOTFOUND, "mark used: manifest '%s' is not in the store",
                      digest);
        sbx_error_where(err, "%s", digest);
        return SBX_ENOTFOUND;
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    /* a name with an expiry is kept ttl seconds past its last use */
    if (sbx_store__prepare(s, &st,
                           "UPDATE names SET last_used=?1, expires=CASE WHEN ttl > 0 THEN"
                           " ?1 + ttl ELSE expires END WHERE digest=?2",
                           err) < 0)
        return err->code;
    sqlite3_bind_int64(st, 1, sbx__now_unix());
    sqlite3_bind_text(st, 2, digest, -1, SQLITE_STATIC);
    sbx_store__relaxed(s, true); /* a use time is a hint: no wait for the disk */
    int step = sqlite3_step(st);
    sbx_store__relaxed(s, false);
    if (step != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "mark used");
    return 0;
}

/* ---- key/value metadata --------------------------------------------------- */

int sbx_store_meta_set(sbx_store *s, const char *ns, const char *key, const char *value,
                       sbx_error *err)
{
    if (check_text("namespace", ns, 256, err) < 0 || check_text("key", key, 4096, err) < 0)
        return sbx_error_wrap(err, "set metadata");
    if (!value)
        return sbx_error_set(err, SBX_EINVAL, "set metadata '%s/%s': value is missing", ns, key);
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT OR REPLACE INTO meta(ns, key, value, stamp) VALUES(?, ?, ?, ?)",
                           err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, sbx__now_unix());
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "set metadata");
    return 0;
}

int sbx_store_meta_get(sbx_store *s, const char *ns, const char *key, char **value_out,
                       int64_t *stamp_out, sbx_error *err)
{
    *value_out = NULL;
    if (check_text("namespace", ns, 256, err) < 0 || check_text("key", key, 4096, err) < 0)
        return sbx_error_wrap(err, "get metadata");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "SELECT value, stamp FROM meta WHERE ns=? AND key=?", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sbx_error_set(err, SBX_ENOTFOUND, "get metadata: no '%s' in '%s'", key, ns);
        sbx_error_where(err, "%s/%s", ns, key);
        return SBX_ENOTFOUND;
    }
    if (rc != SQLITE_ROW)
        return sbx_store__sql_err(s, err, "get metadata");
    *value_out = strdup((const char *)sqlite3_column_text(st, 0));
    if (!*value_out)
        return sbx_error_set(err, SBX_ENOMEM, "get metadata: out of memory");
    if (stamp_out)
        *stamp_out = sqlite3_column_int64(st, 1);
    return 0;
}

static void free_pairs(char **k, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(k[i]);
        free(v[i]);
    }
    free(k);
    free(v);
}

int sbx_store_meta_list(sbx_store *s, const char *ns, char ***keys_out, char ***values_out,
                        size_t *n_out, sbx_error *err)
{
    *keys_out = *values_out = NULL;
    *n_out = 0;
    if (check_text("namespace", ns, 256, err) < 0)
        return sbx_error_wrap(err, "list metadata");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "SELECT key, value FROM meta WHERE ns=? ORDER BY key", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    char **k = NULL, **v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nk = realloc(k, cap * sizeof *nk);
            if (nk)
                k = nk;
            char **nv = nk ? realloc(v, cap * sizeof *nv) : NULL;
            if (nv)
                v = nv;
            if (!nk || !nv)
                goto oom;
        }
        k[n] = strdup((const char *)sqlite3_column_text(st, 0));
        v[n] = strdup((const char *)sqlite3_column_text(st, 1));
        n++;
        if (!k[n - 1] || !v[n - 1])
            goto oom;
    }
    if (rc == SQLITE_DONE) {
        *keys_out = k;
        *values_out = v;
        *n_out = n;
        return 0;
    }
    free_pairs(k, v, n);
    return sbx_store__sql_err(s, err, "list metadata");
oom:
    free_pairs(k, v, n);
    return sbx_error_set(err, SBX_ENOMEM, "list metadata: out of memory");
}

int sbx_store_meta_delete(sbx_store *s, const char *ns, const char *key, sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, "DELETE FROM meta WHERE ns=? AND key=?", err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sbx_store__sql_err(s, err, "delete metadata");
    return 0;
}

/* ---- leases ----------------------------------------------------------------- */

int sbx_store_lease_acquire(sbx_lease **out, sbx_store *s, int64_t ttl_seconds, sbx_error *err)
{
    *out = NULL;
    if (ttl_seconds < 0)
        return sbx_error_set(err, SBX_EINVAL, "acquire lease: negative ttl %lld",
                             (long long)ttl_seconds);
    sbx_lease *l = calloc(1, sizeof *l);
    if (!l)
        return sbx_error_set(err, SBX_ENOMEM, "acquire lease: out of memory");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT INTO leases(pid, start_time, expires, created, implicit)"
                           " VALUES(?, ?, ?, ?, 0)",
                           err) < 0) {
        free(l);
        return err->code;
    }
    int64_t now = sbx__now_unix();
    sqlite3_bind_int64(st, 1, getpid());
    sqlite3_bind_int64(st, 2, s->start_time);
    sqlite3_bind_int64(st, 3, ttl_seconds ? now + ttl_seconds : 0);
    sqlite3_bind_int64(st, 4, now);
    sbx_store__relaxed(s, true);
    int step = sqlite3_step(st);
    sbx_store__relaxed(s, false);
    if (step != SQLITE_DONE) {
        free(l);
        return sbx_store__sql_err(s, err, "acquire lease");
    }
    l->s = s;
    l->id = sqlite3_last_insert_rowid(s->db);
    *out = l;
    return 0;
}

int sbx_lease_add(sbx_lease *l, const char *digest, sbx_error *err)
{
    if (!l)
        return sbx_error_set(err, SBX_EINVAL, "add to lease: no lease");
    if (sbx__digest_parse(NULL, digest, err) < 0)
        return sbx_error_wrap(err, "add to lease");
    sbx_store *s = l->s;
    if (sbx_store__lock(s, 0, err) < 0)
        return err->code;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)l->id);
    sbx_store__relaxed(s, true);
    int rc = sbx_store__begin(s, err);
    if (rc == 0) {
        int live = sbx_store__exists(s, "SELECT 1 FROM leases WHERE id=CAST(? AS INTEGER)", id,
                                     err);
        if (live == 0)
            sbx_error_set(err, SBX_EBUSY,
                          "add '%s' to lease: the lease expired and gc removed it", digest);
        rc = live == 1 ? 0 : err->code;
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (rc == 0)
        rc = sbx_store__prepare(s, &st,
                                "INSERT OR IGNORE INTO lease_refs(lease, digest) VALUES(?, ?)",
                                err);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, l->id);
        sqlite3_bind_text(st, 2, digest, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sbx_store__sql_err(s, err, "add to lease");
    }
    if (rc == 0)
        rc = sbx_store__commit(s, err);
    sbx_store__rollback(s);
    sbx_store__relaxed(s, false);
    sbx_store__unlock(s);
    return rc;
}

void sbx_lease_release(sbx_lease *l)
{
    if (!l)
        return;
    sbx_error err = SBX_ERROR_INIT;
    char sql[160];
    snprintf(sql, sizeof sql,
             "DELETE FROM lease_refs WHERE lease=%lld; DELETE FROM leases WHERE id=%lld;",
             (long long)l->id, (long long)l->id);
    sbx_store__relaxed(l->s, true);
    if (sbx_store__begin(l->s, &err) == 0 && sbx_store__exec(l->s, sql, &err) == 0)
        sbx_store__commit(l->s, &err);
    sbx_store__rollback(l->s);
    sbx_store__relaxed(l->s, false);
    free(l);
}
